"""nsp: masked LM + next-sentence prediction (Devlin et al. 2018, https://arxiv.org/abs/1810.04805).

The rule: each example is `[CLS] A [SEP] B [SEP]`, with A a run of sentences from one document
and B, half of the time, the sentences that really follow A, and otherwise a run of sentences
from another document (label 1 = "random"; Hugging Face's next_sentence_label). Tokens are then
masked as in mlm. Pairs are drawn once, when examples are built (as BERT's data preparation
did), from `seed`; the masking is redrawn for every batch.

Runs of whole sentences fill max_seq_length - 3 tokens; when a pair is still too long (a sentence
longer than the room), the longer segment loses tokens from its front until it fits. Documents with
a single sentence give no pair: they are skipped and counted in `skipped_documents`.

Neither segment may be told apart from the other by its shape, or sop learns the shape instead of
the order: where they end (`truncate_pair`), and how long they are (`runs`: a run laid from a
document's start has a long first sentence, so each document's runs are laid from its start or its
end by a coin; `truncate_pair`: which segment keeps the odd token when both are cut).
"""

import logging

import numpy as np
import torch

from minibert.data.objectives.base import masked_accuracy
from minibert.data.objectives.mlm import MaskedLM

logger = logging.getLogger(__name__)


def truncate_pair(len_a: int, len_b: int, room: int, tie_cuts_a: bool) -> tuple[int, int]:
    """How many tokens to cut from the front of A and of B so that they fit in `room`: the longer one is cut
    first; once they are as long as each other both are, and the odd token goes from A when `tie_cuts_a`
    (drawn at random: always taking it from B made A the longer segment in every pair cut on both sides,
    part of a 0.65 "the first segment is the longer -> in order" rule on the held-out Shakespeare pairs).

    From the front, never the end: every segment then ends where its last sentence ends, so the token
    before a [SEP] says nothing about the label. Cutting ends gave SOP a shortcut: the segment holding the
    run's overflowing last sentence (B) was cut more often, so "the first segment stops mid-sentence" meant
    "swapped": 0.58 on the held-out Shakespeare pairs alone, 0.71 with the length rule (bench/sop_shortcut.py;
    the test is tests/test_objectives.py::test_segment_shapes_do_not_give_the_label_away).
    BERT's truncate_seq_pair picks an end at random for each token it cuts, against such biases; but a
    segment cut by k tokens then keeps a clean end only with probability 2^-k, so the cue stays."""
    excess = len_a + len_b - room
    if excess <= 0:
        return 0, 0
    gap = abs(len_a - len_b)
    if excess <= gap:  # cutting the longer one is enough
        return (excess, 0) if len_a > len_b else (0, excess)
    half, odd = divmod(excess - gap, 2)  # both cut to the same length, then the odd token
    cut_a = half + (gap if len_a > len_b else 0) + (odd if tie_cuts_a else 0)
    return cut_a, excess - cut_a


def fitted(a: tuple[int, int, int], b: tuple[int, int, int], label: int, room: int,
           rng: np.random.Generator) -> tuple[int, ...]:
    """One example row: segments a and b as (shard, first token, end token), cut to fit `room`, and the label."""
    cut_a, cut_b = truncate_pair(a[2] - a[1], b[2] - b[1], room, tie_cuts_a=bool(rng.random() < 0.5))
    return a[0], a[1] + cut_a, a[2], b[0], b[1] + cut_b, b[2], label


class SentencePairObjective(MaskedLM):
    """What nsp and sop share: runs of sentences split into segments A and B, and the pair batch."""

    relationship = "nsp"

    def model_class(self) -> type:
        from minibert.models.bert import BertForPreTraining

        return BertForPreTraining

    def runs(self, corpus, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]]]:
        """(documents (D, 3): shard, first token, end token; runs: (document number, shard, the run's
        sentence offsets)): runs of >= 2 consecutive sentences filling the room.

        A run ends before the sentence that would overflow the room, and that sentence starts the next
        run, so no text is cut except from a sentence too long to share the room with another, and a
        document's last sentence when it is left alone in a run (a run needs two: under 1% of the
        shipped Shakespeare's tokens). (BERT's
        create_pretraining_data.py adds the overflowing sentence and truncates the pair: on the shipped
        Shakespeare's training plays that kept 607K of their 888K tokens in 10,049 pairs, against 683K in
        12,870 pairs here.)

        Runs laid from a document's start begin with the sentence that overflowed the run before, which
        is long more often than not, and end with one that fitted, short more often than not: A would be
        the longer segment in 58% of two-sentence runs, a cue sop reads from where the middle [SEP] sits.
        So each document's runs are laid from its start or from its end (mirrored), by a coin from `rng`."""
        room = self.max_seq_length - 3
        self.skipped_documents = 0
        documents, found = [], []
        for d, (k, offsets) in enumerate(corpus.documents()):
            documents.append((k, int(offsets[0]), int(offsets[-1])))
            if len(offsets) < 3:  # fewer than two sentences
                self.skipped_documents += 1
                continue
            lengths = np.diff(offsets).tolist()
            backwards = rng.random() < 0.5
            if backwards:
                lengths = lengths[::-1]
            n, spans = len(lengths), []  # runs as [first, end) sentence numbers in the order laid
            first, used = 0, 0  # the current run: its first sentence, its tokens so far
            for s, length in enumerate(lengths):
                if used + length > room and s - first >= 2:  # full: close it before sentence s
                    spans.append((first, s))
                    first, used = s, 0
                used += length
            if n - first >= 2:
                spans.append((first, n))
            if backwards:  # sentence s of the reversed document is sentence n - 1 - s
                spans = [(n - end, n - start) for start, end in reversed(spans)]
            found.extend((d, k, offsets[start:end + 1]) for start, end in spans)
        if self.skipped_documents:
            logger.info("%s: skipped %d documents with a single sentence", self.name, self.skipped_documents)
        if not found:
            raise ValueError(
                f"no document is long enough for {self.name}: each needs at least two sentences "
                f"({self.skipped_documents} documents had fewer); use a corpus of multi-sentence documents, or an "
                "objective without sentence pairs, which reads documents of one sentence: --objective mlm, wwm or span"
            )
        return np.asarray(documents, dtype=np.int64), found

    def example_index(self, corpus) -> np.ndarray:
        """(N, 7) rows: shard and token range of A, shard and token range of B, label. Pairs are drawn here,
        once, from `seed`, in the order BERT's data preparation draws them."""
        if len(corpus) < 2:
            raise ValueError("nsp draws random next segments from other documents, so it needs at least 2 "
                             "documents; use a larger corpus or the sop objective")
        rng = np.random.default_rng(self.seed)
        documents, runs = self.runs(corpus, rng)
        room = self.max_seq_length - 3
        rows = []
        for d, k, offsets in runs:
            split = int(rng.integers(1, len(offsets) - 1))
            a = (k, int(offsets[0]), int(offsets[split]))
            if rng.random() < 0.5:
                other = int(rng.integers(len(documents) - 1))
                other += other >= d  # any document but this one
                shard, first, end = documents[other].tolist()
                sentences = corpus.shards[shard].sentences
                bounds = np.asarray(sentences[np.searchsorted(sentences, first):np.searchsorted(sentences, end)])
                first_sentence = int(rng.integers(len(bounds)))
                start = int(bounds[first_sentence])
                # whole sentences, so that a random B ends where a sentence ends, as the real one does (one cut
                # mid-sentence would tell "random" by itself), until it is as long as the real B would be, or
                # as many as fit beside A (at least one); filling the room instead gave random Bs more
                # sentences than real ones (1.71 against 1.43 on held-out plays, a 0.56 cue; now 1.58 against
                # 1.43, the best threshold on any length or count 0.54)
                ends = np.append(bounds[first_sentence + 1:], end)
                long_enough = np.flatnonzero(ends - start >= offsets[-1] - offsets[split])
                ends = ends[:long_enough[0] + 1] if len(long_enough) else ends
                fits = ends[ends - start <= room - (a[2] - a[1])]
                rows.append(fitted(a, (shard, start, int(fits[-1] if len(fits) else ends[0])), 1, room, rng))
            else:
                rows.append(fitted(a, (k, int(offsets[split]), int(offsets[-1])), 0, room, rng))
        return np.asarray(rows, dtype=np.int64)

    def build_example(self, corpus, row: np.ndarray) -> dict:
        ka, a0, a1, kb, b0, b1, label = row.tolist()  # the ranges are already cut to fit (fitted)
        return {"a": corpus.tokens(ka, a0, a1), "b": corpus.tokens(kb, b0, b1), "next_sentence_label": label}

    def pair_batch(self, pairs: list[tuple[np.ndarray, np.ndarray]], labels: torch.Tensor, generator) -> dict:
        cls, sep, pad = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id, self.tokenizer.pad_token_id
        rows = [np.concatenate([[cls], a, [sep], b, [sep]]) for a, b in pairs]
        types = [np.concatenate([np.zeros(len(a) + 2, dtype=np.int64), np.ones(len(b) + 1, dtype=np.int64)])
                 for a, b in pairs]
        input_ids = self.pad(rows, pad)
        batch = {"input_ids": input_ids, "attention_mask": (input_ids != pad).long(),
                 "token_type_ids": self.pad(types, 0), "next_sentence_label": labels}
        return self.mask(batch, generator)

    def collate(self, examples: list[dict], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        labels = torch.tensor([e["next_sentence_label"] for e in examples], dtype=torch.long)
        return self.pair_batch([(e["a"], e["b"]) for e in examples], labels, generator)

    def metrics(self, batch: dict[str, torch.Tensor], outputs) -> dict[str, float]:
        right = outputs.seq_relationship_logits.argmax(dim=-1) == batch["next_sentence_label"]
        return {"mlm_accuracy": masked_accuracy(outputs.prediction_logits, batch["labels"]),
                f"{self.relationship}_accuracy": right.float().mean().item()}


class NextSentencePrediction(SentencePairObjective):
    name = "nsp"
    relationship = "nsp"

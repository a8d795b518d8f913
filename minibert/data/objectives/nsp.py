"""nsp: masked LM + next-sentence prediction (Devlin et al. 2018, https://arxiv.org/abs/1810.04805).

The rule: each example is `[CLS] A [SEP] B [SEP]`, with A a run of sentences from one document
and B, half of the time, the sentences that really follow A, and otherwise a run of sentences
from another document (label 1 = "random"; Hugging Face's next_sentence_label). Tokens are then
masked as in mlm. Pairs are drawn once, when examples are built (as BERT's data preparation
did), from `seed`; the masking is redrawn for every batch.

Runs fill max_seq_length - 3 tokens; when a pair is too long, the longer segment loses its last
token until it fits. Documents with a single sentence give no pair: they are skipped and
counted in `skipped_documents`.
"""

import logging

import numpy as np
import torch

from minibert.data.objectives.base import masked_accuracy
from minibert.data.objectives.mlm import MaskedLM

logger = logging.getLogger(__name__)


def truncate_pair(a: np.ndarray, b: np.ndarray, room: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut the longer of the two (b on a tie), one token at a time from its front, until len(a) + len(b) <= room.

    From the front, never the end: every segment then ends where its last sentence ends, so the token
    before a [SEP] says nothing about the label. Cutting ends gave SOP a shortcut: the segment holding the
    run's overflowing last sentence (B) was cut more often, so "the first segment stops mid-sentence" meant
    "swapped", and that one rule scored 0.68 on the held-out Shakespeare pairs (bench/sop_shortcut.py; the
    test is tests/test_objectives.py::test_segment_ends_do_not_give_the_label_away).
    BERT's truncate_seq_pair picks an end at random for each token it cuts, against such biases; but a
    segment cut by k tokens then keeps a clean end only with probability 2^-k, so the cue stays."""
    cut_a = cut_b = 0
    while len(a) - cut_a + len(b) - cut_b > room:
        if len(a) - cut_a > len(b) - cut_b:
            cut_a += 1
        else:
            cut_b += 1
    return a[cut_a:], b[cut_b:]


class SentencePairObjective(MaskedLM):
    """What nsp and sop share: runs of sentences split into segments A and B, and the pair batch."""

    relationship = "nsp"

    def model_class(self) -> type:
        from minibert.models.bert import BertForPreTraining

        return BertForPreTraining

    def runs(self, corpus) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]]]:
        """(documents (D, 3): shard, first token, end token; runs: (document number, shard, the run's
        sentence offsets)): runs of >= 2 consecutive sentences filling the room.

        A run ends before the sentence that would overflow the room, and that sentence starts the next
        run, so no text is cut except from a sentence too long to share the room with another. (BERT's
        create_pretraining_data.py adds the overflowing sentence and truncates the pair: on the shipped
        Shakespeare's training plays that kept 607K of their 888K tokens in 10,049 pairs, against 683K in
        12,868 pairs here.)"""
        room = self.max_seq_length - 3
        self.skipped_documents = 0
        documents, found = [], []
        for d, (k, offsets) in enumerate(corpus.documents()):
            documents.append((k, int(offsets[0]), int(offsets[-1])))
            if len(offsets) < 3:  # fewer than two sentences
                self.skipped_documents += 1
                continue
            first, used = 0, 0  # the current run: its first sentence, its tokens so far
            for s, length in enumerate(np.diff(offsets).tolist()):
                if used + length > room and s - first >= 2:  # full: close it before sentence s
                    found.append((d, k, offsets[first:s + 1]))
                    first, used = s, 0
                used += length
            if len(offsets) - 1 - first >= 2:
                found.append((d, k, offsets[first:]))
        if self.skipped_documents:
            logger.info("%s: skipped %d documents with a single sentence", self.name, self.skipped_documents)
        if not found:
            raise ValueError(
                f"no document is long enough for {self.name}: each needs at least two sentences "
                f"({self.skipped_documents} documents had fewer); use a corpus of multi-sentence documents"
            )
        return np.asarray(documents, dtype=np.int64), found

    def example_index(self, corpus) -> np.ndarray:
        """(N, 7) rows: shard and token range of A, shard and token range of B, label. Pairs are drawn here,
        once, from `seed`, in the order BERT's data preparation draws them."""
        if len(corpus) < 2:
            raise ValueError("nsp draws random next segments from other documents, so it needs at least 2 "
                             "documents; use a larger corpus or the sop objective")
        rng = np.random.default_rng(self.seed)
        documents, runs = self.runs(corpus)
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
                # whole sentences, as many as fit beside A (at least one), so that a random B ends where a
                # sentence ends, as the real one does: a B cut mid-sentence would tell "random" by itself
                ends = np.append(bounds[first_sentence + 1:], end)
                fits = ends[ends - start <= room - (a[2] - a[1])]
                rows.append((*a, shard, start, int(fits[-1] if len(fits) else ends[0]), 1))
            else:
                rows.append((*a, k, int(offsets[split]), int(offsets[-1]), 0))
        return np.asarray(rows, dtype=np.int64)

    def build_example(self, corpus, row: np.ndarray) -> dict:
        ka, a0, a1, kb, b0, b1, label = row.tolist()
        a, b = truncate_pair(corpus.tokens(ka, a0, a1), corpus.tokens(kb, b0, b1), self.max_seq_length - 3)
        return {"a": a, "b": b, "next_sentence_label": label}

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

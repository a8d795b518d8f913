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
    """Cut the longer of the two (its end; b on a tie), one token at a time, until len(a) + len(b) <= room."""
    la, lb = len(a), len(b)
    while la + lb > room:
        if la > lb:
            la -= 1
        else:
            lb -= 1
    return a[:la], b[:lb]


class SentencePairObjective(MaskedLM):
    """What nsp and sop share: runs of sentences split into segments A and B, and the pair batch."""

    relationship = "nsp"

    def model_class(self) -> type:
        from minibert.models.bert import BertForPreTraining

        return BertForPreTraining

    def runs(self, corpus) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]]]:
        """(documents (D, 3): shard, first token, end token; runs: (document number, shard, the run's
        sentence offsets)): runs of >= 2 consecutive sentences filling the room."""
        room = self.max_seq_length - 3
        self.skipped_documents = 0
        documents, found = [], []
        for d, (k, offsets) in enumerate(corpus.documents()):
            documents.append((k, int(offsets[0]), int(offsets[-1])))
            if len(offsets) < 3:  # fewer than two sentences
                self.skipped_documents += 1
                continue
            first, used = 0, 0
            for s, length in enumerate(np.diff(offsets).tolist()):
                used += length
                if used >= room and s + 1 - first >= 2:
                    found.append((d, k, offsets[first:s + 2]))
                    first, used = s + 1, 0
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
                start = int(bounds[int(rng.integers(len(bounds)))])
                rows.append((*a, shard, start, min(end, start + max(room - (a[2] - a[1]), 1)), 1))
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

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
    """Cut the longer of the two (its end) until len(a) + len(b) <= room."""
    while len(a) + len(b) > room:
        if len(a) > len(b):
            a = a[:-1]
        else:
            b = b[:-1]
    return a, b


class SentencePairObjective(MaskedLM):
    """What nsp and sop share: runs of sentences split into segments A and B, and the pair batch."""

    relationship = "nsp"

    def model_class(self) -> type:
        from minibert.models.bert import BertForPreTraining

        return BertForPreTraining

    def runs(self, documents: list[list[str]]):
        """(document index, list of token arrays): runs of >= 2 consecutive sentences filling the room."""
        room = self.max_seq_length - 3
        self.skipped_documents = 0
        tokenized = self.tokenize_documents(documents)
        found = []
        for d, doc in enumerate(tokenized):
            doc = [s.ids for s in doc if len(s.ids)]
            if len(doc) < 2:
                self.skipped_documents += 1
                continue
            current, used = [], 0
            for ids in doc:
                current.append(ids)
                used += len(ids)
                if used >= room:
                    if len(current) >= 2:
                        found.append((d, current))
                        current, used = [], 0
            if len(current) >= 2:
                found.append((d, current))
        if self.skipped_documents:
            logger.info("%s: skipped %d documents with a single sentence", self.name, self.skipped_documents)
        if not found:
            raise ValueError(
                f"no document is long enough for {self.name}: each needs at least two sentences "
                f"({self.skipped_documents} documents had fewer); use a corpus of multi-sentence documents"
            )
        return tokenized, found

    def examples(self, documents: list[list[str]]) -> list[dict]:
        if len(documents) < 2:
            raise ValueError("nsp draws random next segments from other documents, so it needs at least 2 "
                             "documents; use a larger corpus or the sop objective")
        rng = np.random.default_rng(self.seed)
        tokenized, runs = self.runs(documents)
        room = self.max_seq_length - 3
        out = []
        for d, run in runs:
            split = int(rng.integers(1, len(run)))
            a = np.concatenate(run[:split])
            if rng.random() < 0.5:
                other = int(rng.integers(len(tokenized) - 1))
                other += other >= d  # any document but this one
                sentences = [s.ids for s in tokenized[other] if len(s.ids)] or [run[-1]]
                start = int(rng.integers(len(sentences)))
                b = np.concatenate(sentences[start:])[: max(room - len(a), 1)]
                label = 1
            else:
                b, label = np.concatenate(run[split:]), 0
            a, b = truncate_pair(a, b, room)
            out.append({"a": a, "b": b, "next_sentence_label": label})
        return out

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

"""sop: masked LM + sentence-order prediction (ALBERT, Lan et al. 2019, https://arxiv.org/abs/1909.11942).

The rule: take a run of consecutive sentences from one document and split it at a random point
into segments A and B (with 3 or more sentences the split point is uniform; with 2, A is the
first). With probability 0.5 swap them: `[CLS] B [SEP] A [SEP]`, label 1 = swapped. Both
segments always come from the same document, so, unlike NSP, topic gives nothing away: the model
must learn discourse order. Why ALBERT replaced NSP with it: NSP is mostly solved by topic.

Runs and splits are drawn once (from `seed`); the swap and the masking are redrawn for every
batch, from the collate generator. Single-sentence documents are skipped and counted.
"""

import numpy as np
import torch

from minibert.data.objectives.nsp import SentencePairObjective, fitted


class SentenceOrderPrediction(SentencePairObjective):
    name = "sop"
    relationship = "sop"

    def __init__(self, tokenizer, max_seq_length: int, swap_probability: float = 0.5, **options):
        super().__init__(tokenizer, max_seq_length, **options)
        if not 0.0 <= swap_probability <= 1.0:  # (1.5 made every pair swapped, without a word)
            raise ValueError(f"swap_probability must be in [0, 1], got {swap_probability}; ALBERT uses 0.5")
        self.swap_probability = swap_probability

    def example_index(self, corpus) -> np.ndarray:
        """(N, 7) rows as nsp's (A and B from the same run, label unused): the split drawn once from `seed`."""
        rng = np.random.default_rng(self.seed)
        _, runs = self.runs(corpus, rng)
        room, rows = self.max_seq_length - 3, []
        for _, k, offsets in runs:
            split = int(rng.integers(1, len(offsets) - 1)) if len(offsets) >= 4 else 1
            a, b = (k, int(offsets[0]), int(offsets[split])), (k, int(offsets[split]), int(offsets[-1]))
            rows.append(fitted(a, b, -1, room, rng))
        return np.asarray(rows, dtype=np.int64)

    def build_example(self, corpus, row: np.ndarray) -> dict:
        k, a0, a1, _, b0, b1, _ = row.tolist()  # the ranges are already cut to fit (fitted)
        return {"a": corpus.tokens(k, a0, a1), "b": corpus.tokens(k, b0, b1)}

    def collate(self, examples: list[dict], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        swapped = torch.rand(len(examples), generator=generator) < self.swap_probability
        pairs = [(e["b"], e["a"]) if s else (e["a"], e["b"]) for e, s in zip(examples, swapped.tolist(), strict=True)]
        return self.pair_batch(pairs, swapped.long(), generator)

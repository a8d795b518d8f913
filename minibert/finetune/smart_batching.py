"""Smart batching: dynamic padding and uniform-length batching.

Dynamic padding: pad each batch to its own longest sequence, not to a fixed max_length.
Uniform-length batching: sort the examples by length, cut the sorted list into batches, shuffle
the order of the batches (the last, partial batch is kept unless drop_last), so each batch holds sequences of
similar length and almost no padding. Why: on data with mixed lengths most of a fixed-length
batch is padding, computed and thrown away; attention is quadratic in the padded length.
Accuracy does not suffer (McCormick 2020, https://mccormickml.com/2020/07/29/smart-batching-tutorial/),
and it is faster by
the ratio of padded to real tokens (see bench/bench_smart_batching.py).
"""

import torch
import torch.distributed as dist

from minibert.nn.losses import IGNORE_INDEX


class PaddingCollator:
    """Examples (dicts with "input_ids", optional "token_type_ids" and "labels") -> a batch of
    tensors: input_ids and attention_mask (B, T), token_type_ids (B, T), labels (B, ...).

    padding="longest" (dynamic) pads to the batch's longest sequence; padding="max_length" pads
    every batch to max_length (the baseline that smart batching beats). token_labels=True: each example's
    labels are one per token (token classification), padded with IGNORE_INDEX like the input_ids."""

    def __init__(self, pad_token_id: int, max_length: int | None = None, padding: str = "longest",
                 token_labels: bool = False):
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        self.pad_token_id, self.max_length, self.padding = pad_token_id, max_length, padding
        self.token_labels = token_labels

    def __call__(self, examples: list[dict]) -> dict:
        ids = [list(e["input_ids"])[: self.max_length] if self.max_length else list(e["input_ids"]) for e in examples]
        T = self.max_length if self.padding == "max_length" else max(len(x) for x in ids)
        input_ids = torch.full((len(ids), T), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), T), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            attention_mask[i, : len(x)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in examples[0]:
            types = torch.zeros((len(ids), T), dtype=torch.long)
            for i, e in enumerate(examples):
                t = list(e["token_type_ids"])[: len(ids[i])]
                types[i, : len(t)] = torch.tensor(t, dtype=torch.long)
            batch["token_type_ids"] = types
        if "labels" in examples[0] and self.token_labels:
            labels = torch.full((len(ids), T), IGNORE_INDEX, dtype=torch.long)  # (B, T), like input_ids
            for i, e in enumerate(examples):
                labels[i, : len(ids[i])] = torch.tensor(list(e["labels"])[: len(ids[i])], dtype=torch.long)
            batch["labels"] = labels
        elif "labels" in examples[0]:
            batch["labels"] = torch.tensor([e["labels"] for e in examples])
        return batch


class UniformLengthSampler:
    """Yields batches (lists of example indices) of similar length, in a shuffled batch order.

    Examples of equal length are shuffled among themselves first, so batches differ from epoch
    to epoch. Randomness comes from `generator`, or from torch's global generator (which the
    engine seeds per epoch), so runs are reproducible.

    drop_last (--dataloader_drop_last): every batch full; the len % (world_size * batch_size) examples left out are
    drawn afresh each epoch, as a shuffled DataLoader's are (not always the longest ones, which the
    partial batch of the sorted list would hold).

    Under DDP (world_size processes; default: the process group's size when iterated, 1 without one) the
    sorted list is cut into global batches of world_size * batch_size, each given as world_size batches in a
    row, which the engine deals out one per process (rank r reads batches r, r + world_size, ...): a step
    reads the examples one process would read with the global batch. (Cutting per-process batches gave a step
    two unrelated stretches of the sorted list.) The last global batch is completed with the shortest
    examples, as the engine completes a plain epoch's, so every process has a full share."""

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool = True,
                 generator: torch.Generator | None = None, drop_last: bool = False, world_size: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = torch.as_tensor(lengths)
        self.batch_size, self.shuffle, self.generator, self.drop_last = batch_size, shuffle, generator, drop_last
        self.world_size = world_size

    def _world_size(self) -> int:
        if self.world_size is not None:
            return self.world_size
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    def __len__(self) -> int:
        world = self._world_size()
        step = self.batch_size * world
        if self.drop_last:
            return len(self.lengths) // step * world
        return -(-len(self.lengths) // step) * world

    def batches(self) -> list[list[int]]:
        n, world = len(self.lengths), self._world_size()
        step = self.batch_size * world  # a global batch: one step of every process
        tie_break = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        if self.drop_last:  # leave out the last len % step of the shuffled order
            tie_break = tie_break[: n - n % step]
        order = tie_break[torch.argsort(self.lengths[tie_break], stable=True)]  # by length
        batches = [order[i : i + step].tolist() for i in range(0, len(order), step)]
        if world > 1 and batches and len(batches[-1]) < step:  # every process needs a full share
            batches[-1] += order.repeat(step // n + 1)[: step - len(batches[-1])].tolist()
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        size = self.batch_size  # each global batch as world_size batches in a row, one per process
        return [b[r * size : (r + 1) * size] for b in batches for r in range(world)]

    def __iter__(self):
        return iter(self.batches())


def padding_share(batches: list[dict]) -> float:
    """Share of the positions in these batches that are padding."""
    total = sum(b["attention_mask"].numel() for b in batches)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    return 1.0 - real / max(total, 1)

"""Dynamic padding and uniform-length batching."""

import pytest
import torch

from minibert.finetune.smart_batching import PaddingCollator, UniformLengthSampler, padding_share


def examples(lengths):
    return [{"input_ids": list(range(1, n + 1)), "token_type_ids": [0] * n, "labels": i % 2}
            for i, n in enumerate(lengths)]


def test_dynamic_padding_pads_to_the_batch_longest_and_truncates():
    batch = PaddingCollator(pad_token_id=0)(examples([3, 5, 2]))
    assert batch["input_ids"].shape == (3, 5)
    assert batch["attention_mask"].sum(1).tolist() == [3, 5, 2]
    assert batch["input_ids"][2].tolist() == [1, 2, 0, 0, 0] and batch["labels"].tolist() == [0, 1, 0]
    fixed = PaddingCollator(0, max_length=8, padding="max_length")(examples([3, 10]))
    assert fixed["input_ids"].shape == (2, 8) and fixed["attention_mask"][1].sum() == 8
    with pytest.raises(ValueError, match="max_length"):
        PaddingCollator(0, padding="max_length")


def test_uniform_length_sampler_groups_similar_lengths_keeps_every_example_and_shuffles():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 100, (203,), generator=g).tolist()
    sampler = UniformLengthSampler(lengths, batch_size=16, generator=torch.Generator().manual_seed(1))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13
    assert sorted(i for b in batches for i in b) == list(range(203))  # the partial batch is kept
    assert sorted(len(b) for b in batches)[0] == 203 % 16
    spread = max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread <= 20  # sorted by length: each batch is narrow
    order = [min(lengths[i] for i in b) for b in batches]
    assert order != sorted(order)  # the batch order is shuffled
    assert list(sampler) != batches  # and differs between epochs


def test_smart_batching_cuts_padding():
    g = torch.Generator().manual_seed(0)
    data = examples(torch.randint(5, 120, (256,), generator=g).tolist())
    collate = PaddingCollator(0, max_length=128)
    smart = [collate([data[i] for i in b]) for b in UniformLengthSampler([len(e["input_ids"]) for e in data], 32)]
    fixed = PaddingCollator(0, max_length=128, padding="max_length")
    baseline = [fixed(data[i : i + 32]) for i in range(0, 256, 32)]
    assert padding_share(smart) < 0.15 < 0.4 < padding_share(baseline)


def test_drop_last_keeps_full_batches_and_leaves_out_different_examples_each_epoch():
    """--dataloader_drop_last did nothing under smart batching (its batches are the sampler's own); the partial
    batch of the sorted list would always hold the longest examples, so the ones left out are drawn instead."""
    lengths = list(range(10))  # example i has length i: the two longest are 8 and 9
    left_out = set()
    for seed in range(20):
        sampler = UniformLengthSampler(lengths, 4, generator=torch.Generator().manual_seed(seed), drop_last=True)
        batches = list(sampler)
        assert len(sampler) == len(batches) == 2 and all(len(b) == 4 for b in batches)
        flat = [i for b in batches for i in b]
        assert len(set(flat)) == 8
        for b in batches:  # still grouped by length: sorted order cut into batches
            assert max(lengths[i] for i in b) <= min(lengths[i] for i in (set(flat) - set(b))) or \
                min(lengths[i] for i in b) >= max(lengths[i] for i in (set(flat) - set(b)))
        left_out |= set(range(10)) - set(flat)
    assert left_out - {8, 9}  # not always the longest

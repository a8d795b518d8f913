"""Pooling heads: shapes, masks honoured, SBERT-WK against the slow direct implementation."""

import pytest
import torch

from minibert.finetune.classifier import PooledClassifier
from minibert.finetune.pooling import POOLINGS, build_pooling, masked_max, masked_mean, sbert_wk, sbert_wk_loops
from minibert.models.bert import BertConfig, BertModel


def hidden(B=3, T=7, E=8, layers=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    states = tuple(torch.randn(B, T, E, generator=g) for _ in range(layers + 1))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    return states, mask


@pytest.mark.parametrize("name", POOLINGS)
def test_every_pooling_shape_and_padding_invariance(name):
    torch.manual_seed(0)
    states, mask = hidden()
    pooling = build_pooling(name, 8, 4).eval()
    pooler_output = torch.randn(3, 8)
    out = pooling(states, mask, pooler_output)
    assert out.shape == (3, pooling.out_dim) and torch.isfinite(out).all()
    # changing what sits at padded positions changes nothing
    noisy = tuple(h.masked_fill(~mask.bool().unsqueeze(-1), 1e4) for h in states)
    torch.testing.assert_close(pooling(noisy, mask, pooler_output), out)


@pytest.mark.parametrize("name", POOLINGS)
def test_every_pooling_ignores_how_much_padding_the_batch_needs(name):
    # The same sentence alone and right-padded to a longer batch mate's length must get the same
    # logits: training and evaluation batches pad differently. float64, so rounding cannot hide a leak.
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = PooledClassifier(BertModel(config), name, num_labels=3).double().eval()
    short, long = torch.randint(1, 40, (1, 5)), torch.randint(1, 40, (1, 11))
    batch = torch.cat([torch.cat([short, torch.zeros(1, 6, dtype=torch.long)], 1), long])
    mask = torch.ones_like(batch)
    mask[0, 5:] = 0
    with torch.no_grad():
        alone = model(short, torch.ones_like(short)).logits[0]
        padded = model(batch, mask).logits[0]
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-10)


def test_mask_aware_mean_and_max():
    h = torch.tensor([[[1.0], [3.0], [100.0]], [[-5.0], [-7.0], [-1.0]]])  # (2, 3, 1)
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    torch.testing.assert_close(masked_mean(h, mask), torch.tensor([[2.0], [-6.0]]))
    # padding (100 / -1) never wins the max, even when all real values are negative
    torch.testing.assert_close(masked_max(h, mask), torch.tensor([[3.0], [-5.0]]))


def test_cls_layer_defaults_to_second_to_last_and_concat_last4():
    states, mask = hidden()
    torch.testing.assert_close(build_pooling("cls_layer", 8, 4)(states, mask), states[-2][:, 0])
    expected = torch.cat([states[i][:, 0] for i in (-4, -3, -2, -1)], dim=-1)
    torch.testing.assert_close(build_pooling("concat_last4", 8, 4)(states, mask), expected)


def test_concat_last4_on_a_model_with_fewer_than_3_layers_is_refused_when_built():
    with pytest.raises(ValueError, match=r"--pooling concat_last4 .* a model with 2 layers has 3 .* use a model with "
                                         r"at least 3 layers, or --pooling cls_layer"):
        build_pooling("concat_last4", 8, 2)
    assert build_pooling("concat_last4", 8, 3).out_dim == 32


def test_weighted_layer_pooling_starts_as_a_mean_of_cls():
    states, mask = hidden()
    pooling = build_pooling("weighted_layer", 8, 4)
    start = pooling.layer_start
    expected = torch.stack([h[:, 0] for h in states[start:]]).mean(0)
    torch.testing.assert_close(pooling(states, mask), expected)


def test_sbert_wk_vectorised_matches_the_direct_loops():
    states, mask = hidden(B=3, T=9, E=12, layers=6, seed=3)
    fast = sbert_wk(states, mask, layer_start=2, window=2)
    slow = sbert_wk_loops(states, mask, layer_start=2, window=2)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    # a different window changes the answer (the window is used)
    assert not torch.allclose(sbert_wk(states, mask, 2, 1), fast)


def test_sbert_wk_gradients_are_finite_with_zero_padding():
    states, mask = hidden(B=3, T=6, E=8, layers=4)
    states = tuple((h * mask.unsqueeze(-1)).requires_grad_() for h in states)
    sbert_wk(states, mask, 1, 2).sum().backward()
    assert all(torch.isfinite(h.grad).all() for h in states[1:])


def test_unknown_pooling_lists_choices():
    with pytest.raises(ValueError, match="mean_max"):
        build_pooling("median", 8, 4)


@pytest.mark.parametrize("name", ["mean_max_cls", "lstm", "sbert_wk"])
def test_pooled_classifier_trains_and_round_trips(name, tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
    model = PooledClassifier(BertModel(config), name, num_labels=3)
    ids = torch.randint(1, 40, (4, 6))
    mask = torch.ones_like(ids)
    mask[0, 3:] = 0
    out = model(ids, mask, labels=torch.tensor([0, 1, 2, 1]))
    out.loss.backward()
    assert model.classifier.weight.grad is not None and out.logits.shape == (4, 3)
    model.save(tmp_path)
    again = PooledClassifier.load(tmp_path, BertModel)
    model.eval()
    torch.testing.assert_close(again(ids, mask).logits, model(ids, mask).logits)

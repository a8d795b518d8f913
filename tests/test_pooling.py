"""Pooling heads: shapes, masks honoured, the formulas, SBERT-WK against the slow direct implementation and
a by-hand numpy one, autocast and half precision."""

import numpy as np
import pytest
import torch

from minibert.finetune.classifier import PooledClassifier
from minibert.finetune.pooling import (
    POOLINGS,
    SBERTWKPooling,
    _window,
    build_pooling,
    masked_max,
    masked_mean,
    sbert_wk,
    sbert_wk_loops,
)
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
def test_every_pooling_runs_under_cpu_bfloat16_autocast(name):
    # train.py --bf16 on a CPU. oneDNN has no bfloat16 LSTM on CPUs without AVX-512 (this project's),
    # so the RNN heads run in float32 outside autocast: they give exactly the float32 answer.
    torch.manual_seed(0)
    states, mask = hidden()
    pooling = build_pooling(name, 8, 4).eval()
    pooler_output = torch.randn(3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pooling(states, mask, pooler_output)
    full = pooling(states, mask, pooler_output)
    assert torch.isfinite(out).all()
    exact = name in ("lstm", "gru", "sbert_wk")  # run outside autocast, or in float64 (which it leaves alone)
    torch.testing.assert_close(out.float(), full, **({} if exact else {"rtol": 0.05, "atol": 0.05}))


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
    # a row with no real token averages to 0, not 0 / 0 = NaN
    torch.testing.assert_close(masked_mean(h, torch.tensor([[1, 1, 0], [0, 0, 0]])), torch.tensor([[2.0], [0.0]]))


def test_cls_layer_defaults_to_second_to_last_and_concat_last4():
    states, mask = hidden()
    torch.testing.assert_close(build_pooling("cls_layer", 8, 4)(states, mask), states[-2][:, 0])
    torch.testing.assert_close(build_pooling("cls_layer", 8, 4, layer=1)(states, mask), states[1][:, 0])
    with pytest.raises(ValueError, match=r"--pooling_layer \(embed's layer=\) 5 is out of range .* indexed -5..4"):
        build_pooling("cls_layer", 8, 4, layer=5)
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
    # trained weights w: sum_l w_l / sum(w) [CLS]_l (a plain normalisation, not a softmax)
    with torch.no_grad():
        pooling.layer_weights.copy_(torch.tensor([0.5, 1.0, 2.0, 4.5]))
    expected = sum(w / 8.0 * h[:, 0] for w, h in zip([0.5, 1.0, 2.0, 4.5], states[start:], strict=True))
    torch.testing.assert_close(pooling(states, mask), expected)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_pooling_is_the_last_output_over_the_layers_cls(cell):
    states, mask = hidden()
    pooling = build_pooling(cell, 8, 4)
    out, _ = pooling.rnn(torch.stack([h[:, 0] for h in states[1:]], dim=1))  # layers 1..4, bottom to top
    torch.testing.assert_close(pooling(states, mask), out[:, -1])


def test_attention_pooling_weighs_the_layers_cls_by_its_query():
    states, mask = hidden()
    pooling = build_pooling("attention", 8, 4)
    cls = torch.stack([h[:, 0] for h in states[1:]], dim=1)  # (B, L, E)
    weights = torch.softmax((cls * pooling.q).sum(-1), dim=-1)  # (B, L)
    expected = (weights.unsqueeze(-1) * cls).sum(1) @ pooling.w
    torch.testing.assert_close(pooling(states, mask), expected)


def test_sbert_wk_vectorised_matches_the_direct_loops():
    states, mask = hidden(B=3, T=9, E=12, layers=6, seed=3)
    fast = sbert_wk(states, mask, layer_start=2, window=2)
    slow = sbert_wk_loops(states, mask, layer_start=2, window=2)
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-7)  # both computed in float64
    # a different window changes the answer (the window is used)
    assert not torch.allclose(sbert_wk(states, mask, 2, 1), fast)


def test_sbert_wk_on_dependent_layers_matches_the_loops_and_trains_as_before():
    """The R of each window comes from a Cholesky of the tokens' Gram matrices, which loses the digits a QR keeps
    when states are (nearly) dependent: such tokens take the QR. Two equal layers put 1.29 (on a norm of 3)
    between the Cholesky's vectors and the loops' before that fallback; the gradient equals a batched QR's."""
    g = torch.Generator().manual_seed(0)
    states = [torch.randn(3, 7, 16, generator=g, dtype=torch.float64) for _ in range(6)]
    states[3] = states[2].clone()  # every window holding both is singular
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 4 + [0] * 3])
    torch.testing.assert_close(sbert_wk(tuple(states), mask, 1), sbert_wk_loops(tuple(states), mask, 1),
                               rtol=1e-12, atol=1e-12)
    states = [torch.randn(3, 7, 16, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(6)]
    sbert_wk(tuple(states), mask, 1).sum().backward()
    grads = [s.grad for s in states[1:]]
    for s in states:
        s.grad = None
    sbert_wk_loops(tuple(states), mask, 1).sum().backward()
    for ours, loops in zip(grads, [s.grad for s in states[1:]], strict=True):
        torch.testing.assert_close(ours, loops, rtol=1e-9, atol=1e-10)


# The context windows of 4 used layers at window 2, written out: each layer's neighbours within 2,
# clipped to the used layers, then the layer itself. The authors' published code gives layer 1
# [2, 3, 1] (its left slice token_feature[k-2:k] is empty for k < 2): this pins minibert's choice.
WINDOWS = [[1, 2, 0], [0, 2, 3, 1], [0, 1, 3, 2], [1, 2, 3]]


def sbert_wk_by_hand(states: np.ndarray, n: int) -> np.ndarray:
    """The paper's formulas for one sentence, in numpy, with WINDOWS: states (4, T, E) of the used
    layers, n real tokens (the last, [SEP], left out)."""
    tokens, importance = [], []
    for f in states[:, : n - 1].transpose(1, 0, 2):  # (4, E): one token's layers
        align, novel = [], []
        for cols in WINDOWS:
            _, R = np.linalg.qr(f[cols].T)  # f[cols].T = QR: the layer's state is the last column
            unit = R[:-1, :-1] / np.linalg.norm(R[:-1, :-1], axis=0)
            align.append(1 / (unit.mean(1) @ R[:-1, -1] / np.linalg.norm(R[:-1, -1]) * len(cols) * 2))
            novel.append(abs(R[-1, -1]) / np.linalg.norm(R[:, -1]))
        alpha = np.array(align) / sum(align) + np.array(novel) / sum(novel)
        tokens.append(f.T @ alpha / alpha.sum())
        unit = f / np.linalg.norm(f, axis=1, keepdims=True)
        importance.append(np.var((unit[1:] * unit[:-1]).sum(1)))  # over adjacent-layer cosines
    return np.array(tokens).T @ (np.array(importance) / sum(importance))


def test_sbert_wk_windows_are_clipped_and_equal_a_by_hand_reference():
    assert [_window(layer, 4, 2) for layer in range(4)] == WINDOWS
    assert _window(1, 9, 2) == [0, 2, 3, 1] and _window(8, 9, 2) == [6, 7, 8]
    states, mask = hidden(E=8, layers=5, seed=1)
    states = tuple(h.double() for h in states)
    used = torch.stack(states[2:]).numpy()  # layer_start 2: the 4 top hidden states
    expected = np.stack([sbert_wk_by_hand(used[:, b], int(mask[b].sum())) for b in range(3)])
    np.testing.assert_allclose(sbert_wk(states, mask, layer_start=2).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_sbert_wk_computes_in_float64_whatever_the_states_dtype():
    # Nearly parallel layers (cosine ~0.9999, as in shallow or untrained models): float32's rounding in
    # the QR moved the vectors by ~1e-3; computed in float64, float32 states give the float64 answer.
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 6, 32, generator=g)
    states = tuple(base + 0.01 * torch.randn(2, 6, 32, generator=g) for _ in range(5))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    reference = sbert_wk(tuple(h.double() for h in states), mask, 1)
    torch.testing.assert_close(sbert_wk(states, mask, 1), reference.float(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(sbert_wk_loops(states, mask, 1), reference.float(), rtol=1e-6, atol=1e-7)
    # torch has no float16 / bfloat16 QR: half states are computed in float64 and come back in their dtype
    for dtype in (torch.float16, torch.bfloat16):
        half = tuple(h.to(dtype) for h in states)
        out = sbert_wk(half, mask, 1)
        assert out.dtype == dtype
        torch.testing.assert_close(out, sbert_wk(tuple(h.double() for h in half), mask, 1).to(dtype))


def test_sbert_wk_default_layer_start_and_depth_errors():
    assert build_pooling("sbert_wk", 8, 12).layer_start == 4  # 4 of BERT-base's 13 hidden states
    assert build_pooling("sbert_wk", 8, 4).layer_start == 2 and build_pooling("sbert_wk", 8, 2).layer_start == 0
    with pytest.raises(ValueError, match=r"--pooling sbert_wk .* needs at least 3 hidden states, and a model with 1 "
                                         r"layer\(s\) has 2 .* use a model with at least 2 layers"):
        build_pooling("sbert_wk", 8, 1)
    with pytest.raises(ValueError, match=r"layer_start 3 leaves 2 of the 5 hidden states.*; pass layer_start in "
                                         r"\[0, 2\] \(or None: 2 for this model\)"):
        SBERTWKPooling(8, 4, layer_start=3)


def test_sbert_wk_gradients_are_finite_with_zero_padding():
    states, mask = hidden(B=3, T=6, E=8, layers=4)
    states = tuple((h * mask.unsqueeze(-1)).requires_grad_() for h in states)
    sbert_wk(states, mask, 1, 2).sum().backward()
    assert all(torch.isfinite(h.grad).all() for h in states[1:])


def test_unknown_pooling_lists_choices():
    with pytest.raises(ValueError, match="mean_max"):
        build_pooling("median", 8, 4)


@pytest.mark.parametrize("name", ["mean_max_cls", "lstm", "sbert_wk", "cls_layer"])
def test_pooled_classifier_trains_and_round_trips(name, tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
    # not the defaults (the encoder's 0.1, layer -2): load must bring back what was trained
    model = PooledClassifier(BertModel(config), name, num_labels=3, dropout=0.3, layer=-3)
    ids = torch.randint(1, 40, (4, 6))
    mask = torch.ones_like(ids)
    mask[0, 3:] = 0
    out = model(ids, mask, labels=torch.tensor([0, 1, 2, 1]))
    out.loss.backward()
    assert model.classifier.weight.grad is not None and out.logits.shape == (4, 3)
    model.save(tmp_path)
    again = PooledClassifier.load(tmp_path, BertModel)
    assert again.dropout.p == 0.3 and again.settings == model.settings
    model.eval()
    torch.testing.assert_close(again(ids, mask).logits, model(ids, mask).logits)

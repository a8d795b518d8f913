import pytest
import torch

from minibert.nn import (
    FeedForward,
    MultiHeadAttention,
    apply_chunked,
    causal_mask,
    combine,
    eager_attention,
    get_activation,
    padding_mask,
    sdpa_attention,
)


def _qkv(B=3, H=4, Tq=7, Tk=7, D=8):
    return torch.randn(B, H, Tq, D), torch.randn(B, H, Tk, D), torch.randn(B, H, Tk, D)


@pytest.mark.parametrize("kind", ["none", "padding", "causal", "causal+left-padding"])
def test_sdpa_equals_eager(kind):
    q, k, v = _qkv()
    attn = torch.ones(3, 7, dtype=torch.long)
    attn[1, 5:] = 0
    attn[2, :3] = 0  # left padding: in the causal case the first queries see no key at all
    keep = {
        "none": None,
        "padding": padding_mask(attn),
        "causal": causal_mask(7, 7),
        "causal+left-padding": combine(causal_mask(7, 7), padding_mask(attn)),
    }[kind]
    ref, probs = eager_attention(q, k, v, keep)
    fast = sdpa_attention(q, k, v, keep)
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-5)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
    if kind == "padding":
        assert (probs[1, :, :, 5:] == 0).all()


@pytest.mark.parametrize("kind", ["padding", "causal+left-padding", "a row of padding"])
def test_sdpa_gradients_equal_eager_even_for_a_query_that_sees_no_key(kind):
    """The CPU kernel's backward for a query with no visible key was T_k times the eager one (a left-padded
    GPT-2 row whose first real token is labelled: the loss reads the last pad's output)."""
    attn = torch.ones(3, 7, dtype=torch.long)
    attn[1, 5:] = 0
    attn[2, :3] = 0
    if kind == "a row of padding":
        attn[0] = 0
    keep = combine(causal_mask(7, 7), padding_mask(attn)) if kind == "causal+left-padding" else padding_mask(attn)
    grads = []
    for attention in (lambda *a: eager_attention(*a)[0], sdpa_attention):
        torch.manual_seed(0)
        q, k, v = (t.requires_grad_() for t in _qkv())
        attention(q, k, v, keep).square().sum().backward()
        grads.append((q.grad, k.grad, v.grad))
    for ours, reference in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_causal_mask_with_past():
    keep = causal_mask(2, 5)[0, 0]
    assert keep.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


def test_module_cache_matches_full_forward():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, implementation="eager").eval()
    x = torch.randn(2, 6, 16)
    full = mha(x, keep=causal_mask(6, 6)).output
    cache, steps = None, []
    for t in range(6):
        out = mha(x[:, t : t + 1], keep=causal_mask(1, t + 1), past_key_value=cache, use_cache=True)
        cache = out.cache
        steps.append(out.output)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-6, rtol=1e-5)


def test_chunked_feed_forward_equals_unchunked():
    ff = FeedForward(16, 64, "gelu", chunk_size=0).eval()
    x = torch.randn(2, 13, 16)
    ref = ff(x)
    ff.chunk_size = 4
    torch.testing.assert_close(ff(x), ref)
    torch.testing.assert_close(apply_chunked(lambda t: t * 2, x, 5), x * 2)


def test_chunked_feed_forward_runs_one_chunk_at_a_time():
    pieces = []

    def double(t):
        pieces.append(t.shape[-2])
        return t * 2

    x = torch.randn(2, 13, 16)
    torch.testing.assert_close(apply_chunked(double, x, 5), x * 2)
    assert pieces == [5, 5, 3]
    pieces.clear()
    packed = torch.randn(11, 16)  # unpadded (N, E): chunks of positions too
    torch.testing.assert_close(apply_chunked(double, packed, 4), packed * 2)
    assert pieces == [4, 4, 3]
    pieces.clear()
    apply_chunked(double, x, 0)  # 0: no chunking; a chunk as long as the sequence: one piece
    apply_chunked(double, x, 13)
    assert pieces == [13, 13]
    ff = FeedForward(16, 64, "gelu", chunk_size=4).eval()
    ff.up.register_forward_hook(lambda module, args, out: pieces.append(args[0].shape[-2]))
    pieces.clear()
    ff(x)
    assert pieces == [4, 4, 4, 1]


def test_unknown_activation_lists_choices():
    with pytest.raises(ValueError, match="gelu_new"):
        get_activation("gelu_newest")


def test_head_divisibility_error():
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(10, 3)


def test_padding_mask_is_none_when_nothing_is_padded():
    assert padding_mask(None) is None
    assert padding_mask(torch.ones(2, 5, dtype=torch.long)) is None
    assert padding_mask(torch.tensor([[1, 1, 0]])).tolist() == [[[[True, True, False]]]]

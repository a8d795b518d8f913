"""A second audit of the building blocks (attention and its masks and caches, feed-forward, packing, losses).
The test under "fixed" failed before its fix; the others keep what already matched, matched: against a
hand-written formula, PyTorch's fused kernel and Hugging Face (tiny random models, offline)."""

import pytest
import torch
import torch.nn.functional as F
import transformers

from minibert.nn import (
    FeedForward,
    MultiHeadAttention,
    Packing,
    causal_mask,
    combine,
    eager_attention,
    filled_slots_mask,
    padding_mask,
    sdpa_attention,
)
from minibert.nn.losses import causal_lm_loss, span_extraction_loss, token_classification_loss


# -- fixed --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["eager", "sdpa", "module"])
@pytest.mark.parametrize("form", ["(B, T) bool, B = T", "(B, T) 0/1 integers", "(B, T_q, T_k) bool"])
def test_an_attention_mask_of_another_form_is_refused_with_the_fix(path, form):
    """A (B, T) mask passed as it is broadcast as (1, 1, B, T): with B = T_q it ran, each query reading another
    row's padding (the output 0.39 off the padding_mask one); an integer mask failed in torch.where with no word
    of the fix; a (B, T_q, T_k) mask broadcast its batch over the heads."""
    torch.manual_seed(0)
    attention_mask = torch.ones(5, 5, dtype=torch.long)
    attention_mask[1, 3:] = 0
    keep = {"(B, T) bool, B = T": attention_mask.bool(), "(B, T) 0/1 integers": attention_mask,
            "(B, T_q, T_k) bool": attention_mask.bool()[:, None, :].expand(5, 5, 5)}[form]
    mha = MultiHeadAttention(16, 4, implementation="sdpa").eval()
    x = torch.randn(5, 5, 16)
    q, k, v = (torch.randn(5, 4, 5, 4) for _ in range(3))
    call = {"eager": lambda: eager_attention(q, k, v, keep), "sdpa": lambda: sdpa_attention(q, k, v, keep),
            "module": lambda: mha(x, keep=keep)}[path]
    with pytest.raises(ValueError, match=r"boolean keep mask of 4 dimensions.*padding_mask\(attention_mask\)"):
        call()
    # the form it asks for gives the padded computation
    torch.testing.assert_close(mha(x, keep=padding_mask(attention_mask)).output[1, :3],
                               mha(x[1:2, :3]).output[0], atol=1e-6, rtol=1e-5)


# -- kept: attention ------------------------------------------------------------------------------------------
def _forms(B=3, H=2, T=5):
    g = torch.Generator().manual_seed(0)
    attention_mask = torch.ones(B, T, dtype=torch.long)
    attention_mask[1, 3:] = 0  # right padding
    attention_mask[2, :2] = 0  # left padding: with a causal mask its first queries see no key
    per_head = torch.rand(B, H, T, T, generator=g) > 0.3
    per_head[0, 0, 1] = False  # one query of one head that sees nothing
    return {
        "padding (B, 1, 1, T)": padding_mask(attention_mask),
        "per query (B, 1, T, T)": torch.rand(B, 1, T, T, generator=g) > 0.3,
        "per head (B, H, T, S)": per_head,
        "causal + left padding": combine(causal_mask(T, T), padding_mask(attention_mask)),
        "everything masked": torch.zeros(B, 1, T, T, dtype=torch.bool),
    }


@pytest.mark.parametrize("form", list(_forms()))
def test_eager_and_sdpa_give_the_formulas_values_and_gradients_for_every_mask_form(form):
    """softmax(q k^T / sqrt(D) + mask) v in float64, a query with no visible key uniform over the keys (as Hugging
    Face's additive masks give), never NaN; the fused path's gradients equal the eager ones."""
    keep = _forms()[form]
    results = []
    for attention in (lambda *a: eager_attention(*a)[0], sdpa_attention):
        torch.manual_seed(0)
        q, k, v = (torch.randn(3, 2, 5, 8, requires_grad=True) for _ in range(3))
        out = attention(q, k, v, keep)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        results.append((out, *torch.autograd.grad((out * weights).sum(), (q, k, v))))
        scores = (q.double() @ k.double().transpose(-1, -2) / 8**0.5).masked_fill(~keep, -1e300)
        torch.testing.assert_close(out.double(), scores.softmax(-1) @ v.double(), atol=1e-6, rtol=1e-5)
        assert torch.isfinite(out).all()
    for ours, reference in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_grown_and_preallocated_caches_give_the_full_forward_step_by_step(implementation):
    """Left-padded causal self-attention one token at a time: appended to the cache, and written into a static
    cache of 8 slots at cache_position (a prompt of 3 first, then one token a step), equal to one forward over the
    whole sequence at every real position; cross-attention reuses its cached keys and values."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, implementation=implementation).eval()
    x = torch.randn(2, 6, 16)
    attention_mask = torch.ones(2, 6, dtype=torch.long)
    attention_mask[1, :2] = 0
    real = attention_mask.bool()
    with torch.no_grad():
        full = mha(x, keep=combine(causal_mask(6, 6), padding_mask(attention_mask))).output
        cache, grown = None, []
        for t in range(6):
            step = mha(x[:, t:t + 1], keep=combine(causal_mask(1, t + 1), padding_mask(attention_mask[:, :t + 1])),
                       past_key_value=cache, use_cache=True)
            cache = step.cache
            grown.append(step.output)
        static, slots = (torch.zeros(2, 4, 8, 4), torch.zeros(2, 4, 8, 4)), []
        padded = torch.cat([attention_mask, torch.ones(2, 2, dtype=torch.long)], 1).bool()[:, None, None, :]
        for positions in (torch.arange(3), torch.tensor([3]), torch.tensor([4]), torch.tensor([5])):
            slots.append(mha(x[:, positions], keep=combine(filled_slots_mask(positions, 8), padded),
                             past_key_value=static, use_cache=True, cache_position=positions).output)
        memory = torch.randn(2, 4, 16)
        memory_keep = padding_mask(torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))
        first = mha(x, keep=memory_keep, key_value_states=memory, use_cache=True)
        again = mha(x, keep=memory_keep, key_value_states=memory, past_key_value=first.cache)
    torch.testing.assert_close(torch.cat(grown, 1)[real], full[real], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(torch.cat(slots, 1)[real], full[real], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(again.output, first.output, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_half_precision_masks_stay_finite_and_real_queries_match_fp64(dtype, implementation):
    """finfo(dtype).min fits the dtype; a left pad's row (no visible key) stays finite on both paths, and the real
    queries are the float64 result to the dtype's rounding."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 6, 8) * 3 for _ in range(3))
    attention_mask = torch.ones(2, 6, dtype=torch.long)
    attention_mask[1, :3] = 0
    keep = combine(causal_mask(6, 6), padding_mask(attention_mask))
    attention = (lambda *a: eager_attention(*a)[0]) if implementation == "eager" else sdpa_attention
    out = attention(q.to(dtype), k.to(dtype), v.to(dtype), keep)
    reference = eager_attention(q.double(), k.double(), v.double(), keep)[0]
    assert torch.isfinite(out).all()
    real = keep.any(-1).expand(2, 2, 6)
    torch.testing.assert_close(out.double()[real], reference[real], atol=0.1, rtol=0.05)


# -- kept: feed-forward, packing, losses ---------------------------------------------------------------------
def test_chunked_feed_forward_gives_the_unchunked_values_and_gradients():
    torch.manual_seed(0)
    ff = FeedForward(16, 64, "gelu_new")
    x = torch.randn(2, 13, 16, requires_grad=True)
    results = []
    for chunk_size in (0, 4):
        ff.chunk_size = chunk_size
        out = ff(x)
        results.append((out, *torch.autograd.grad(out.square().sum(), (x, *ff.parameters()))))
    for chunked, whole in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_unpadded_attention_gives_the_padded_values_and_gradients_at_real_tokens(implementation):
    """Holes, an empty row, masks given as bool: packed self-attention equals the padded one at real positions;
    the gradient reaches the real tokens alone (zeros at padding)."""
    attention_mask = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0]]).bool()
    packing = Packing.from_mask(attention_mask)
    keep = padding_mask(attention_mask)
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, implementation=implementation).eval()
    x = torch.randn(3, 4, 16, requires_grad=True)
    padded = mha(x, keep).output * attention_mask[..., None]
    (padded_grad,) = torch.autograd.grad(padded.square().sum(), x)
    unpadded = packing.unpack(mha(packing.pack(x), keep, packing=packing).output)
    (unpadded_grad,) = torch.autograd.grad(unpadded.square().sum(), x)
    torch.testing.assert_close(unpadded, padded, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(unpadded_grad, padded_grad, atol=1e-5, rtol=1e-5)
    assert bool((unpadded_grad[~attention_mask] == 0).all())


def test_losses_with_every_label_ignored_are_nan_as_hugging_faces():
    """A mean over no term: NaN, as torch's cross-entropy and Hugging Face's heads give (the trainer weighs such
    a micro-batch by its zero count instead of adding the NaN)."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=7, n_embd=16, n_layer=1, n_head=2, n_positions=8, bos_token_id=0,
                                     eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 7, (2, 4))
    ignored = torch.full((2, 4), -100)
    labels = ids.clone()
    labels[0, :3] = -100
    with torch.no_grad():
        theirs_ignored = model(ids, labels=ignored)
        theirs = model(ids, labels=labels)
    assert torch.isnan(theirs_ignored.loss) and torch.isnan(causal_lm_loss(theirs_ignored.logits, ignored))
    torch.testing.assert_close(causal_lm_loss(theirs.logits, labels), theirs.loss, atol=1e-6, rtol=1e-6)
    logits = torch.randn(2, 4, 7)
    assert torch.isnan(token_classification_loss(logits, ignored))
    assert torch.isnan(F.cross_entropy(logits.view(-1, 7), ignored.view(-1)))


def test_span_loss_clamps_positions_as_hugging_faces_heads():
    """Past the sequence: ignored; negative (-100 included): clamped to position 0 and trained, as in Hugging
    Face's BertForQuestionAnswering."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32)
    model = transformers.BertForQuestionAnswering(config).eval()
    ids = torch.randint(0, 20, (3, 6))
    start, end = torch.tensor([1, 9, -100]), torch.tensor([-3, 2, 4])
    with torch.no_grad():
        out = model(ids, start_positions=start, end_positions=end)
    torch.testing.assert_close(span_extraction_loss(out.start_logits, out.end_logits, start, end), out.loss,
                               atol=1e-6, rtol=1e-6)
    as_zero = span_extraction_loss(out.start_logits, out.end_logits, torch.tensor([1, 9, 0]), torch.tensor([0, 2, 4]))
    torch.testing.assert_close(out.loss, as_zero, atol=1e-6, rtol=1e-6)


def test_a_4d_mask_of_another_dtype_is_told_to_convert_not_to_pad():
    """The fix named for every refused mask was padding_mask(attention_mask), which turns a (B, 1, 1, T) integer
    or additive float mask into a 6-dimensional one, refused again (a review's finding)."""
    q = k = v = torch.randn(2, 2, 5, 4)
    for keep in (torch.ones(2, 1, 1, 5, dtype=torch.long), torch.zeros(2, 1, 1, 5)):
        with pytest.raises(ValueError, match=r"convert it with keep.bool\(\)") as error:
            eager_attention(q, k, v, keep)
        assert "padding_mask" not in str(error.value)
    with pytest.raises(ValueError, match=r"a \(T_q, T_k\) mask: keep\[None, None\]"):
        sdpa_attention(q, k, v, torch.ones(5, 5, dtype=torch.bool))
    ok = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(eager_attention(q, k, v, ok[None, None])[0], sdpa_attention(q, k, v, ok[None, None]),
                               atol=1e-6, rtol=1e-5)

"""GPT-2 against Hugging Face, offline: tiny random HF models are saved, loaded with minibert's own
loader, and compared in fp32 on padded batches; the KV cache against full forwards; checkpoints
both ways; bad input."""

import pytest
import torch

from minibert.models import gpt
from minibert.models.gpt import (
    GPT2Config,
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
)

transformers = pytest.importorskip("transformers")


ATOL, RTOL = 1e-5, 1e-5
VOCAB = 99

CONFIGS = {
    "gelu_new": dict(activation_function="gelu_new"),
    "relu-inner48-layerscale": dict(activation_function="relu", n_inner=48, scale_attn_by_inverse_layer_idx=True),
    "noscale-1head": dict(scale_attn_weights=False, n_head=1),
}
CLASSES = [(GPT2Model, "GPT2Model"), (GPT2LMHeadModel, "GPT2LMHeadModel"),
           (GPT2ForSequenceClassification, "GPT2ForSequenceClassification"),
           (GPT2ForTokenClassification, "GPT2ForTokenClassification"),
           (GPT2ForQuestionAnswering, "GPT2ForQuestionAnswering")]


def hf_config(**overrides):
    kwargs = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=48, bos_token_id=VOCAB - 1,
                  eos_token_id=VOCAB - 1, pad_token_id=0, num_labels=3)
    kwargs.update(overrides)
    return transformers.GPT2Config(**kwargs)


def hf_and_ours(tmp_path, hf_name, ours_cls, impl="eager", save=False, **overrides):
    """A random HF model and ours with its weights: through save_pretrained/from_pretrained when
    `save`, else straight from its state dict (the same loader, without the disk)."""
    torch.manual_seed(0)
    hf = getattr(transformers, hf_name)(hf_config(**overrides)).eval()
    hf.set_attn_implementation(impl)
    if save:
        hf.save_pretrained(tmp_path)
        return hf, ours_cls.from_pretrained(tmp_path, attn_implementation=impl)
    ours = ours_cls(GPT2Config.from_dict(hf.config.to_dict(), attn_implementation=impl))
    ours.load_hf_state_dict(hf.state_dict())
    return hf, ours.eval()


def padded_batch():
    """Row 0 full, row 1 left-padded, row 2 right-padded; pad id 0 never occurs in real tokens."""
    ids = torch.randint(1, VOCAB - 1, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, 6:] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("ours_cls,hf_name", [CLASSES[0], CLASSES[2]],
                         ids=["GPT2Model", "GPT2ForSequenceClassification"])
def test_models_without_an_lm_head_load_from_an_untied_checkpoint(tmp_path, ours_cls, hf_name):
    """tie_word_embeddings false says how an LM head's matrix is stored; a model without one (the base, a
    classifier) was refused for it, where Hugging Face loads it."""
    hf, ours = hf_and_ours(tmp_path, hf_name, ours_cls, save=True, tie_word_embeddings=False)
    ids, mask = padded_batch()
    a, b = hf(input_ids=ids, attention_mask=mask), ours(input_ids=ids, attention_mask=mask)
    name = "last_hidden_state" if hf_name == "GPT2Model" else "logits"
    torch.testing.assert_close(getattr(b, name), getattr(a, name), atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match="LM head is a matrix of its own, .* load it as GPT2Model"):
        GPT2LMHeadModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("variant", list(CONFIGS))
@pytest.mark.parametrize("ours_cls,hf_name", CLASSES, ids=[c[1] for c in CLASSES])
def test_parity_with_hugging_face(tmp_path, ours_cls, hf_name, variant, impl):
    hf, ours = hf_and_ours(tmp_path, hf_name, ours_cls, impl, save=variant == "gelu_new", **CONFIGS[variant])
    ids, mask = padded_batch()
    attentions = impl == "eager"  # the fused kernel never materialises probabilities
    kwargs = dict(attention_mask=mask, output_hidden_states=True, output_attentions=attentions)
    # A label predicted from a pad position carries no meaning (the pad query sees no key): ignore it too.
    after_pad = torch.cat([torch.ones_like(mask[:, :1]), mask[:, :-1]], dim=1) == 0
    labels = {"GPT2LMHeadModel": ids.masked_fill((mask == 0) | after_pad, -100),
              "GPT2ForSequenceClassification": torch.tensor([0, 2, 1]),
              "GPT2ForTokenClassification": torch.randint(0, 3, ids.shape).masked_fill(mask == 0, -100)}.get(hf_name)
    if labels is not None:
        kwargs["labels"] = labels
    if hf_name == "GPT2ForQuestionAnswering":
        # row 0 an answer; row 1's at T = 9 or past it, so ignored (its softmax would read left padding, whose queries
        # see no key: their outputs differ, meaninglessly); row 2 (right-padded) "no answer" at its last real token
        kwargs.update(start_positions=torch.tensor([2, 11, 5]), end_positions=torch.tensor([4, 9, 5]))
    with torch.no_grad():
        theirs, mine = hf(ids, **kwargs), ours(ids, **kwargs)
    real = mask.bool()[..., None]  # compare real positions: a pad query's output is meaningless
    for a, b in zip(theirs.hidden_states, mine.hidden_states, strict=True):
        torch.testing.assert_close(b * real, a * real, atol=ATOL, rtol=RTOL)
    if attentions:
        real_queries = mask.bool()[:, None, :, None]  # (B, 1, T_q, 1)
        for a, b in zip(theirs.attentions, mine.attentions, strict=True):
            torch.testing.assert_close(b * real_queries, a * real_queries, atol=ATOL, rtol=RTOL)
    if hf_name == "GPT2Model":
        torch.testing.assert_close(mine.last_hidden_state * real, theirs.last_hidden_state * real, atol=ATOL, rtol=RTOL)
    elif hf_name == "GPT2ForQuestionAnswering":
        for name in ("start_logits", "end_logits"):
            torch.testing.assert_close(getattr(mine, name) * mask, getattr(theirs, name) * mask, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(mine.loss, theirs.loss, atol=ATOL, rtol=RTOL)
    elif hf_name in ("GPT2LMHeadModel", "GPT2ForTokenClassification"):
        torch.testing.assert_close(mine.logits * real, theirs.logits * real, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(mine.loss, theirs.loss, atol=ATOL, rtol=RTOL)
    else:
        torch.testing.assert_close(mine.logits, theirs.logits, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(mine.loss, theirs.loss, atol=ATOL, rtol=RTOL)


def test_token_type_ids_and_upcast_attention_match(tmp_path):
    hf, ours = hf_and_ours(tmp_path, "GPT2LMHeadModel", GPT2LMHeadModel, reorder_and_upcast_attn=True)
    ids, mask = padded_batch()
    segments = torch.randint(0, 2, ids.shape)
    real = mask.bool()[..., None]
    with torch.no_grad():
        a = hf(ids, attention_mask=mask, token_type_ids=segments).logits
        b = ours(ids, attention_mask=mask, token_type_ids=segments).logits
    torch.testing.assert_close(b * real, a * real, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("problem", ["regression", "multi_label_classification"])
def test_sequence_classification_losses(tmp_path, problem):
    num_labels = 1 if problem == "regression" else 3
    hf, ours = hf_and_ours(tmp_path, "GPT2ForSequenceClassification", GPT2ForSequenceClassification,
                           num_labels=num_labels, problem_type=problem)
    ids, mask = padded_batch()
    labels = torch.randn(3) if problem == "regression" else torch.randint(0, 2, (3, 3)).float()
    torch.testing.assert_close(ours(ids, attention_mask=mask, labels=labels).loss,
                               hf(ids, attention_mask=mask, labels=labels).loss, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_cache_token_by_token_equals_full_forward(impl):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=48,
                                       attn_implementation=impl)).eval()
    ids = torch.randint(0, VOCAB, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding, positions counted over real tokens as generate does
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, position_ids=positions).logits
        prefix = model(ids[:, :4], attention_mask=mask[:, :4], position_ids=positions[:, :4], use_cache=True)
        steps, past = [prefix.logits], prefix.past_key_values
        for t in range(4, 8):
            out = model(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], position_ids=positions[:, t : t + 1],
                        past_key_values=past, use_cache=True)
            steps.append(out.logits)
            past = out.past_key_values
    assert past[0][0].shape == (2, 4, 8, 8)
    real = mask.bool()[..., None]
    torch.testing.assert_close(torch.cat(steps, dim=1) * real, full * real, atol=ATOL, rtol=RTOL)


def test_cached_decoding_matches_hugging_face_cache(tmp_path):
    hf, ours = hf_and_ours(tmp_path, "GPT2LMHeadModel", GPT2LMHeadModel, "sdpa")
    ids = torch.randint(1, VOCAB, (2, 6))
    with torch.no_grad():
        a, b = hf(ids[:, :5], use_cache=True), ours(ids[:, :5], use_cache=True)
        a = hf(ids[:, 5:], past_key_values=a.past_key_values, use_cache=True)
        b = ours(ids[:, 5:], past_key_values=b.past_key_values, use_cache=True)
    torch.testing.assert_close(b.logits, a.logits, atol=ATOL, rtol=RTOL)


def test_round_trip_loads_in_transformers_with_same_logits(tmp_path):
    torch.manual_seed(0)
    ours = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=48)).eval()
    ours.save_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert hf.config.architectures == ["GPT2LMHeadModel"]
    ids = torch.randint(0, VOCAB, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=ATOL, rtol=RTOL)
    again = GPT2LMHeadModel.from_pretrained(tmp_path)
    for (k, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=k)


def test_generate_stores_linear_weights_in_the_conv1d_memory_order(tmp_path):
    """An explicit step of `generate` on the CPU, not of construction: only the memory order changes,
    the Parameter objects (which an optimizer may hold), values and outputs stay."""
    hf, ours = hf_and_ours(tmp_path, "GPT2LMHeadModel", GPT2LMHeadModel, save=True)
    weights = [m.weight for m in ours.modules() if isinstance(m, torch.nn.Linear)]
    assert len(weights) == 8 and all(w.is_contiguous() for w in weights)  # as built and loaded
    values = [w.detach().clone() for w in weights]
    ids = torch.randint(0, VOCAB, (2, 5))
    with torch.no_grad():
        before = ours(ids).logits
        ours.generate(ids, max_new_tokens=2)
        torch.testing.assert_close(ours(ids).logits, before, atol=ATOL, rtol=RTOL)
    after = [m.weight for m in ours.modules() if isinstance(m, torch.nn.Linear)]
    assert all(a is w and a.t().is_contiguous() for a, w in zip(after, weights, strict=True))
    assert all(torch.equal(a, v) for a, v in zip(after, values, strict=True))
    assert ours.transformer.h[0].attn.c_attn.weight.shape == (96, 32)  # nn.Linear's (out, in) shape


def test_lm_head_is_the_token_embedding():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=4, n_positions=16))
    assert not any("lm_head" in k for k in model.state_dict())
    assert model.get_input_embeddings() is model.transformer.wte
    assert "lm_head.weight" not in model.hf_state_dict()


def test_hub_style_checkpoint_without_prefix_and_with_mask_buffers(tmp_path):
    """openai-community/gpt2 keys: no `transformer.` prefix, h.N.attn.bias / masked_bias buffers,
    Conv1D weights (in, out). Built here from a random HF model, offline."""
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hf_config()).eval()
    state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()}
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(48, 48)).view(1, 1, 48, 48)
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    ours = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=48)).eval()
    info = ours.load_hf_state_dict(state)
    assert info["newly_initialized"] == []
    ids = torch.randint(0, VOCAB, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=ATOL, rtol=RTOL)
    base = GPT2Model(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=48))
    base.load_hf_state_dict(hf.state_dict())  # a head checkpoint into the base model: lm_head is dropped
    torch.testing.assert_close(base.h[0].attn.c_attn.weight, hf.transformer.h[0].attn.c_attn.weight.t())


def test_conv1d_weights_are_shape_checked(tmp_path):
    hf = transformers.GPT2LMHeadModel(hf_config(n_embd=32, n_inner=32))
    state = dict(hf.state_dict())
    state["transformer.h.0.mlp.c_fc.weight"] = state["transformer.h.0.mlp.c_fc.weight"].t().contiguous()[:, :16]
    ours = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_inner=32, n_layer=2, n_head=4, n_positions=48))
    with pytest.raises(ValueError, match="stored transposed"):
        ours.load_hf_state_dict(state)


def test_gradient_checkpointing_gives_the_same_gradients(monkeypatch):
    """With dropout on, so the recomputed forward must draw the masks the first one drew (the RNG state
    restored), and each block checkpointed once per forward: the path is taken, not only allowed."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=16, resid_pdrop=0.3,
                        embd_pdrop=0.3, attn_pdrop=0.3)
    model = GPT2LMHeadModel(config).train()
    calls, real = [], gpt.checkpoint
    monkeypatch.setattr(gpt, "checkpoint", lambda fn, *args, **kwargs: calls.append(fn) or real(fn, *args, **kwargs))
    ids = torch.randint(0, VOCAB, (2, 8))
    torch.manual_seed(1)
    model(ids, labels=ids).loss.backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert calls == []
    torch.manual_seed(1)
    model(ids, labels=ids).loss.backward()
    assert calls == list(model.transformer.h)
    for a, p in zip(plain, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, a)


def test_residual_projections_get_the_scaled_init():
    torch.manual_seed(0)
    model = GPT2Model(GPT2Config(vocab_size=500, n_embd=64, n_layer=8, n_head=4, n_positions=16))
    residual = torch.cat([model.h[i].attn.c_proj.weight.flatten() for i in range(8)])
    plain = torch.cat([model.h[i].attn.c_attn.weight.flatten() for i in range(8)])
    assert abs(plain.std().item() - 0.02) < 0.002
    assert abs(residual.std().item() - 0.02 / 4) < 0.0005  # 1 / sqrt(2 * 8)


def test_bad_input_is_explained():
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=4, n_positions=16, pad_token_id=None)
    model = GPT2LMHeadModel(config).eval()
    with pytest.raises(ValueError, match="n_positions"):
        model.generate(torch.zeros(1, 10, dtype=torch.long), max_new_tokens=8)  # 10 + 8 - 1 > 16 positions
    with pytest.raises(ValueError, match="n_positions"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size"):
        model(torch.full((1, 3), VOCAB))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.zeros(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match="unknown activation"):
        GPT2Config(activation_function="gelu_fancy")
    with pytest.raises(ValueError, match="divisible"):
        GPT2Config(n_embd=30, n_head=4)
    classifier = GPT2ForSequenceClassification(config)
    with pytest.raises(ValueError, match="pad_token_id"):
        classifier(torch.zeros(2, 3, dtype=torch.long))


def test_a_hugging_face_cache_is_named_not_indexed():
    """transformers' DynamicCache passed as past_key_values failed with "object is not subscriptable"."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=1,
                                                              n_head=4)).eval()
    ours = GPT2LMHeadModel(GPT2Config.from_dict(hf.config.to_dict())).eval()
    ids = torch.randint(3, VOCAB, (1, 6))
    cache = hf(ids[:, :4], use_cache=True).past_key_values
    with pytest.raises(TypeError, match=f"past_key_values is a {type(cache).__name__}; minibert's decoders take"):
        ours(ids[:, 4:], past_key_values=cache, use_cache=True)

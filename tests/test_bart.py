"""BART against Hugging Face, offline: tiny random HF models loaded with minibert's own loader and
compared in fp32 with padding on both sides of the model; the decoder's KV cache and cached
cross-attention; checkpoints both ways; bad input."""

import pytest
import torch

from minibert.models import bart
from minibert.models.bart import (
    BartConfig,
    BartForConditionalGeneration,
    BartForQuestionAnswering,
    BartForSequenceClassification,
    BartModel,
    shift_tokens_right,
)
from minibert.outputs import BaseModelOutput

transformers = pytest.importorskip("transformers")


ATOL, RTOL = 1e-5, 1e-5
VOCAB, PAD, EOS = 99, 1, 2

CONFIGS = {
    "gelu": dict(activation_function="gelu"),
    "relu-scaled-asym": dict(activation_function="relu", scale_embedding=True, encoder_layers=1,
                             decoder_attention_heads=2, decoder_ffn_dim=24),
}
CLASSES = [(BartModel, "BartModel"), (BartForConditionalGeneration, "BartForConditionalGeneration"),
           (BartForSequenceClassification, "BartForSequenceClassification")]


def hf_config(**overrides):
    kwargs = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=40,
                  num_labels=3)
    kwargs.update(overrides)
    return transformers.BartConfig(**kwargs)


def hf_and_ours(tmp_path, hf_name, ours_cls, impl="eager", save=False, **overrides):
    torch.manual_seed(0)
    hf = getattr(transformers, hf_name)(hf_config(**overrides)).eval()
    hf.set_attn_implementation(impl)
    if hf_name == "BartForConditionalGeneration":  # zeros in a fresh model: make the bias count
        hf.final_logits_bias.normal_()
    if save:
        hf.save_pretrained(tmp_path)
        return hf, ours_cls.from_pretrained(tmp_path, attn_implementation=impl)
    ours = ours_cls(BartConfig.from_dict(hf.config.to_dict(), attn_implementation=impl))
    ours.load_hf_state_dict(hf.state_dict())
    return hf, ours.eval()


def source_batch():
    """Three sources ending in </s>, row 1 padded on the right, plus a decoder input with padding."""
    ids = torch.randint(3, VOCAB, (3, 8))
    ids[:, -1] = EOS
    ids[1, 5] = EOS
    ids[1, 6:] = PAD
    mask = ids.ne(PAD).long()
    dec = torch.randint(3, VOCAB, (3, 6))
    dec[:, 0] = EOS
    dec[2, 4:] = PAD
    return ids, mask, dec, dec.ne(PAD).long()


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("variant", list(CONFIGS))
@pytest.mark.parametrize("ours_cls,hf_name", CLASSES, ids=[c[1] for c in CLASSES])
def test_parity_with_hugging_face(tmp_path, ours_cls, hf_name, variant, impl):
    hf, ours = hf_and_ours(tmp_path, hf_name, ours_cls, impl, save=variant == "gelu", **CONFIGS[variant])
    ids, mask, dec, dec_mask = source_batch()
    attentions = impl == "eager"
    kwargs = dict(attention_mask=mask, output_hidden_states=True, output_attentions=attentions)
    if hf_name != "BartForSequenceClassification":
        kwargs.update(decoder_input_ids=dec, decoder_attention_mask=dec_mask)
    if hf_name == "BartForConditionalGeneration":
        kwargs["labels"] = torch.randint(3, VOCAB, (3, 6)).masked_fill(dec_mask == 0, -100)
    if hf_name == "BartForSequenceClassification":
        kwargs["labels"] = torch.tensor([0, 2, 1])
    with torch.no_grad():
        theirs, mine = hf(ids, **kwargs), ours(ids, **kwargs)
    src_real = mask.bool()[..., None]
    dec_real = (dec_mask.bool() if "decoder_attention_mask" in kwargs else torch.ones_like(ids).bool())[..., None]
    for a, b in zip(theirs.encoder_hidden_states, mine.encoder_hidden_states, strict=True):
        torch.testing.assert_close(b * src_real, a * src_real, atol=ATOL, rtol=RTOL)
    for a, b in zip(theirs.decoder_hidden_states, mine.decoder_hidden_states, strict=True):
        torch.testing.assert_close(b * dec_real, a * dec_real, atol=ATOL, rtol=RTOL)
    if attentions:
        for name in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
            for a, b in zip(getattr(theirs, name), getattr(mine, name), strict=True):
                torch.testing.assert_close(b, a, atol=ATOL, rtol=RTOL, msg=name)
    if hf_name == "BartModel":
        torch.testing.assert_close(mine.last_hidden_state * dec_real, theirs.last_hidden_state * dec_real,
                                   atol=ATOL, rtol=RTOL)
    else:
        logits_real = dec_real if hf_name == "BartForConditionalGeneration" else True
        torch.testing.assert_close(mine.logits * logits_real, theirs.logits * logits_real, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(mine.loss, theirs.loss, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("save", [False, True])
def test_question_answering_parity_with_hugging_face(tmp_path, impl, save):
    """BartForQuestionAnswering: the span head on the decoder's states, the source shifted right as the decoder's
    input (what train.py --task_type question_answering feeds it); saved and loaded by the weight table too."""
    hf, ours = hf_and_ours(tmp_path, "BartForQuestionAnswering", BartForQuestionAnswering, impl, save=save)
    ids, mask, _, _ = source_batch()
    spans = dict(start_positions=torch.tensor([1, 3, 0]), end_positions=torch.tensor([2, 4, 0]))
    with torch.no_grad():
        theirs, mine = hf(ids, attention_mask=mask, **spans), ours(ids, attention_mask=mask, **spans)
    torch.testing.assert_close(mine.start_logits, theirs.start_logits, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(mine.end_logits, theirs.end_logits, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(mine.loss, theirs.loss, atol=ATOL, rtol=RTOL)
    if save:  # and back: Hugging Face reads what minibert saves
        ours.save_pretrained(tmp_path / "ours")
        again = transformers.BartForQuestionAnswering.from_pretrained(tmp_path / "ours").eval()
        with torch.no_grad():
            torch.testing.assert_close(again(ids, attention_mask=mask).start_logits, theirs.start_logits,
                                       atol=ATOL, rtol=RTOL)


def test_labels_alone_drive_the_decoder(tmp_path):
    hf, ours = hf_and_ours(tmp_path, "BartForConditionalGeneration", BartForConditionalGeneration)
    ids, mask, _, _ = source_batch()
    labels = torch.randint(3, VOCAB, (3, 5))
    labels[0, 3:] = -100
    with torch.no_grad():
        a, b = hf(ids, attention_mask=mask, labels=labels), ours(ids, attention_mask=mask, labels=labels)
        torch.testing.assert_close(b.logits, a.logits, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(b.loss, a.loss, atol=ATOL, rtol=RTOL)
        # neither labels nor decoder ids: the source shifted right, as in Hugging Face
        torch.testing.assert_close(ours(ids, attention_mask=mask).logits, hf(ids, attention_mask=mask).logits,
                                   atol=ATOL, rtol=RTOL)
    shifted = shift_tokens_right(labels, PAD, EOS)
    assert shifted[:, 0].eq(EOS).all() and shifted[0, 4] == PAD and torch.equal(shifted[1, 1:], labels[1, :-1])


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_cache_step_by_step_equals_full_forward(tmp_path, impl):
    hf, ours = hf_and_ours(tmp_path, "BartForConditionalGeneration", BartForConditionalGeneration, impl)
    ids, mask, dec, _ = source_batch()
    with torch.no_grad():
        full = ours(ids, attention_mask=mask, decoder_input_ids=dec).logits
        encoded = ours.model.encoder(ids, mask)
        out = ours(attention_mask=mask, decoder_input_ids=dec[:, :2], encoder_outputs=encoded, use_cache=True)
        steps, past = [out.logits], out.past_key_values
        cross_keys = past[0][2]
        for t in range(2, dec.size(1)):
            out = ours(attention_mask=mask, decoder_input_ids=dec[:, t : t + 1], encoder_outputs=encoded,
                       past_key_values=past, use_cache=True)
            steps.append(out.logits)
            past = out.past_key_values
        assert past[0][2] is cross_keys  # the encoder's keys were projected once and reused
        torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=RTOL)
        hf_out = hf(ids, attention_mask=mask, decoder_input_ids=dec[:, :-1], use_cache=True)
        hf_step = hf(attention_mask=mask, decoder_input_ids=dec[:, -1:], use_cache=True,
                     encoder_outputs=(hf_out.encoder_last_hidden_state,), past_key_values=hf_out.past_key_values)
        torch.testing.assert_close(steps[-1], hf_step.logits, atol=ATOL, rtol=RTOL)


def test_round_trip_loads_in_transformers_with_same_logits(tmp_path):
    torch.manual_seed(0)
    config = BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=40)
    ours = BartForConditionalGeneration(config).eval()
    ours.final_logits_bias.normal_()
    ours.save_pretrained(tmp_path)
    hf = transformers.BartForConditionalGeneration.from_pretrained(tmp_path).eval()
    ids, mask, dec, dec_mask = source_batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, attention_mask=mask, decoder_input_ids=dec).logits,
                                   hf(ids, attention_mask=mask, decoder_input_ids=dec).logits, atol=ATOL, rtol=RTOL)
    again = BartForConditionalGeneration.from_pretrained(tmp_path)
    torch.testing.assert_close(again.final_logits_bias, ours.final_logits_bias)
    state = ours.state_dict()
    assert "final_logits_bias" in state and not any("embed_tokens" in k or "lm_head" in k for k in state)


def test_fairseq_style_keys_and_tied_copies_load(tmp_path):
    """Released checkpoints carry embed_tokens copies of shared, lm_head, and maybe *.version."""
    torch.manual_seed(0)
    hf = transformers.BartForConditionalGeneration(hf_config()).eval()
    state = dict(hf.state_dict())
    state["lm_head.weight"] = state["model.shared.weight"]
    state["model.encoder.version"] = torch.tensor([2.0])
    base = BartModel(BartConfig.from_dict(hf.config.to_dict()))
    info = base.load_hf_state_dict(state)
    assert info["newly_initialized"] == [] and "final_logits_bias" in info["ignored"]
    torch.testing.assert_close(base.shared.weight, hf.model.shared.weight)
    head = BartForSequenceClassification(BartConfig.from_dict(hf.config.to_dict()))
    info = head.load_hf_state_dict(state)
    assert sorted(info["newly_initialized"])[0].startswith("classification_head")


def test_gradient_checkpointing_gives_the_same_gradients(monkeypatch):
    """With dropout on, so the recomputed forward must draw the masks the first one drew (the RNG state
    restored), and each encoder and decoder layer checkpointed once per forward: the path is taken."""
    torch.manual_seed(0)
    config = BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=16,
                        dropout=0.3, attention_dropout=0.3, activation_dropout=0.3)
    model = BartForConditionalGeneration(config).train()
    calls, real = [], bart.checkpoint
    monkeypatch.setattr(bart, "checkpoint", lambda fn, *args, **kwargs: calls.append(fn) or real(fn, *args, **kwargs))
    ids, mask, dec, _ = source_batch()
    torch.manual_seed(1)
    model(ids, attention_mask=mask, labels=dec).loss.backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert model.model.encoder.gradient_checkpointing and model.model.decoder.gradient_checkpointing
    assert calls == []
    torch.manual_seed(1)
    model(ids, attention_mask=mask, labels=dec).loss.backward()
    assert calls == [*model.model.encoder.layers, *model.model.decoder.layers]
    for a, p in zip(plain, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, a)


def test_bad_input_is_explained():
    config = BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=12)
    model = BartForConditionalGeneration(config).eval()
    encoded = BaseModelOutput(last_hidden_state=torch.zeros(1, 4, 32))
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(encoder_outputs=encoded)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.full((1, 13), 5))
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(torch.full((1, 5), 5), max_new_tokens=13)  # the start token and 12 new tokens fed back
    with pytest.raises(ValueError, match="vocab_size"):
        model(torch.full((1, 3), VOCAB))
    with pytest.raises(ValueError, match="unknown activation"):
        BartConfig(activation_function="swishy")
    classifier = BartForSequenceClassification(config).eval()
    with pytest.raises(ValueError, match="eos"):
        classifier(torch.tensor([[5, 6, EOS], [5, EOS, EOS]]))

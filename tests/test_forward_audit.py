"""The models' forward against Hugging Face on unusual but legitimate inputs and configs (an audit's findings,
each test failing without its fix), and the unusual masks that already matched, kept matched: holes in the
middle, an all-padding row, bool and float masks. Tiny random Hugging Face models, offline, fp32 unless said."""

import json

import pytest
import torch

import minibert
from minibert.models import bert as mb

transformers = pytest.importorskip("transformers")

ATOL, RTOL = 1e-5, 1e-5
VOCAB = 99


def saved(tmp_path, hf_class: str, config, **overrides):
    """A random Hugging Face model (eager attention: its attention maps) and minibert's load of its save."""
    torch.manual_seed(0)
    config._attn_implementation = "eager"
    hf = getattr(transformers, hf_class)(config).eval()
    hf.save_pretrained(tmp_path)
    return hf, minibert.load_pretrained(tmp_path, **overrides)


def bert_config(**overrides):
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=64, num_labels=3)
    return transformers.BertConfig(**{**kwargs, **overrides})


def gpt2_config(**overrides):
    kwargs = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=24, bos_token_id=VOCAB - 1,
                  eos_token_id=VOCAB - 1, pad_token_id=0)
    return transformers.GPT2Config(**{**kwargs, **overrides})


def bart_config(**overrides):
    kwargs = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=20)
    return transformers.BartConfig(**{**kwargs, **overrides})


def unusual_mask(B=3, T=10) -> torch.Tensor:
    """Row 0 full, row 1 with a hole in the middle, row 2 all padding."""
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 3:6] = 0
    mask[2] = 0
    return mask


# -- fixed ------------------------------------------------------------------------------------------------
# (sdpa with attention maps is left out: minibert computes the maps on its eager path, Hugging Face runs its
# sdpa kernel, and two kernels in bf16 agree only to bf16's rounding)
@pytest.mark.parametrize(("attn", "attentions"), [("eager", False), ("eager", True), ("sdpa", False)])
@pytest.mark.parametrize("half", ["autocast", "bf16 model"])
def test_gpt2_upcast_attention_gives_hugging_faces_logits_in_bf16(tmp_path, attn, attentions, half):
    """reorder_and_upcast_attn exists for mixed precision, yet under autocast the fp32 q and k went into matmuls
    that autocast ran in bf16 again: the option changed nothing there. Hugging Face, on its eager path only,
    computes the scores and softmax in fp32 with autocast off and casts the probabilities back to v's dtype
    before they weigh v; its sdpa path does not upcast. Compared on the logits (the attention maps alone hid
    a difference in how v was weighed, and a sdpa path that upcast when Hugging Face's does not)."""
    hf, ours = saved(tmp_path, "GPT2LMHeadModel", gpt2_config(n_embd=64, n_head=2, reorder_and_upcast_attn=True),
                     attn_implementation=attn)
    with torch.no_grad():  # large scores, where rounding them to bf16 shows
        for model in (hf, ours):
            for block in model.transformer.h:
                block.attn.c_attn.weight.mul_(8)
    hf.config._attn_implementation = attn  # the same path on both sides: minibert's sdpa against Hugging Face's
    if half == "bf16 model":
        hf, ours = hf.to(torch.bfloat16), ours.to(torch.bfloat16)
    ids = torch.randint(1, VOCAB, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half == "autocast"):
        a = hf(input_ids=ids, output_attentions=attentions)
        b = ours(input_ids=ids, output_attentions=attentions)
    torch.testing.assert_close(b.logits, a.logits, atol=0, rtol=0)
    if attentions:
        assert b.attentions[0].dtype == a.attentions[0].dtype == torch.bfloat16
        torch.testing.assert_close(b.attentions[0], a.attentions[0], atol=0, rtol=0)


def test_bert_config_without_pad_token_id_loads_as_in_hugging_face(tmp_path):
    """A config.json with "pad_token_id": null (Hugging Face's BERT: an embedding without a padding row) failed
    with TypeError: '<=' not supported between instances of 'int' and 'NoneType'."""
    hf, ours = saved(tmp_path, "BertForMaskedLM", bert_config(pad_token_id=None))
    assert ours.config.pad_token_id is None and ours.bert.embeddings.word_embeddings.padding_idx is None
    ids = torch.randint(3, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours(ids).logits, hf(input_ids=ids).logits, atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match="RoBERTa counts its positions from pad_token_id"):
        mb.RobertaConfig(vocab_size=VOCAB, pad_token_id=None)
    with pytest.raises(ValueError, match="pad_token_id '0' must be a token id"):
        mb.BertConfig(vocab_size=VOCAB, pad_token_id="0")


def test_relative_position_embeddings_are_refused_by_name(tmp_path):
    """transformers 4's BERT read position_embedding_type (relative_key, relative_key_query: position scores added
    inside attention, with a distance_embedding per layer); minibert's BERT has learned absolute positions only.
    Such a config.json is named, not loaded with other outputs (or refused with a list of unexpected keys)."""
    bert_config().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for kind in ("relative_key", "relative_key_query"):
        with pytest.raises(ValueError, match=f"position_embedding_type: '{kind}'"):
            mb.BertConfig.from_dict({**config, "position_embedding_type": kind})
    assert mb.BertConfig.from_dict({**config, "position_embedding_type": "absolute"}).hidden_size == 32


def test_sparse_mlm_takes_labels_flattened_as_the_dense_loss_does(tmp_path):
    """Labels (B * T,) gave the same loss as (B, T) in Hugging Face and in minibert's dense head, and an IndexError
    with sparse_mlm=True (which promises the same loss either way)."""
    hf, ours = saved(tmp_path, "BertForMaskedLM", bert_config(), sparse_mlm=True)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (3, 9), generator=g)
    labels = torch.randint(0, VOCAB, (3, 9), generator=g).masked_fill(torch.rand(3, 9, generator=g) < 0.6, -100)
    b = ours(ids, labels=labels.view(-1))
    torch.testing.assert_close(b.loss, hf(input_ids=ids, labels=labels.view(-1)).loss, atol=ATOL, rtol=RTOL)
    assert b.logits.shape == (3, 9, VOCAB)


def test_bart_takes_encoder_outputs_as_a_tuple(tmp_path):
    """Hugging Face's BART takes encoder_outputs as a tuple (its return_dict=False form); minibert's failed with
    AttributeError: 'tuple' object has no attribute 'last_hidden_state'."""
    hf, ours = saved(tmp_path, "BartForConditionalGeneration", bart_config())
    g = torch.Generator().manual_seed(1)
    source, target = torch.randint(3, VOCAB, (2, 8), generator=g), torch.randint(3, VOCAB, (2, 5), generator=g)
    memory = hf.model.encoder(source).last_hidden_state
    a = hf(encoder_outputs=(memory,), decoder_input_ids=target)
    b = ours(encoder_outputs=(memory,), decoder_input_ids=target)
    torch.testing.assert_close(b.logits, a.logits, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(b.encoder_last_hidden_state, memory)
    # the tuple's hidden states and attention maps come through as Hugging Face's do (only the first did)
    encoded = hf.model.encoder(source, output_hidden_states=True, output_attentions=True, return_dict=False)
    a = hf(encoder_outputs=encoded, decoder_input_ids=target)
    b = ours(encoder_outputs=encoded, decoder_input_ids=target)
    assert len(b.encoder_hidden_states) == len(a.encoder_hidden_states) == 3
    for theirs, ours_ in zip(a.encoder_attentions, b.encoder_attentions, strict=True):
        torch.testing.assert_close(ours_, theirs)


# -- checked, and matching: kept so ------------------------------------------------------------------------
MASK_DTYPES = [torch.long, torch.bool, torch.float32]


@pytest.mark.parametrize("unpad", [False, True])
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_encoders_match_on_holes_an_all_padding_row_and_any_mask_dtype(tmp_path, family, unpad):
    """Every real position (unpad: only those; padding is zeros there by design) and the attention maps."""
    if family == "roberta":
        config = transformers.RobertaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
                                            type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)
        hf, ours = saved(tmp_path, "RobertaForMaskedLM", config, unpad=unpad)
    else:
        hf, ours = saved(tmp_path, "BertForMaskedLM", bert_config(), unpad=unpad)
    mask = unusual_mask()
    ids = torch.randint(3, VOCAB, mask.shape, generator=torch.Generator().manual_seed(1))
    ids = ids.masked_fill(mask == 0, hf.config.pad_token_id)
    real = mask.bool()
    for dtype in MASK_DTYPES:
        a = hf(input_ids=ids, attention_mask=mask.to(dtype), output_attentions=True)
        b = ours(ids, mask.to(dtype), output_attentions=True)
        torch.testing.assert_close(b.logits[real], a.logits[real], atol=ATOL, rtol=RTOL)
        if not unpad:
            torch.testing.assert_close(b.logits, a.logits, atol=ATOL, rtol=RTOL)
            for x, y in zip(a.attentions, b.attentions, strict=True):
                torch.testing.assert_close(y, x, atol=ATOL, rtol=RTOL)


def test_gpt2_and_bart_match_on_holes_an_all_padding_row_and_any_mask_dtype(tmp_path):
    """Against Hugging Face's eager attention (its SDPA path differs from its own eager one on queries that see
    no key at all: a left pad, an all-padding row; minibert's two paths both agree with the eager one)."""
    mask = unusual_mask()
    ids = torch.randint(3, VOCAB, mask.shape, generator=torch.Generator().manual_seed(1))
    gpt_hf, gpt = saved(tmp_path / "gpt2", "GPT2LMHeadModel", gpt2_config())
    bart_hf, bart = saved(tmp_path / "bart", "BartForConditionalGeneration", bart_config())
    target = ids[:, :6].contiguous()
    for dtype in MASK_DTYPES:
        m = mask.to(dtype)
        a = gpt_hf(input_ids=ids, attention_mask=m, labels=ids.masked_fill(mask == 0, -100))
        b = gpt(ids, m, labels=ids.masked_fill(mask == 0, -100))
        torch.testing.assert_close(b.logits, a.logits, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(b.loss, a.loss, atol=ATOL, rtol=RTOL)
        a = bart_hf(input_ids=ids, attention_mask=m, decoder_input_ids=target, decoder_attention_mask=m[:, :6])
        b = bart(ids, m, decoder_input_ids=target, decoder_attention_mask=m[:, :6])
        torch.testing.assert_close(b.logits, a.logits, atol=ATOL, rtol=RTOL)

"""generate() on the less common settings and the bad inputs, against Hugging Face's generate (an audit's
findings, each test failing without its fix): eos ids outside the vocabulary under a minimum length, the
checkpoint's generation options minibert does not apply (named, nulls not), a checkpoint's cache
implementation minibert does not have, token ids given as numpy ints or tensors, rows with no real
token, and an unset pad id that falls back to an eos id outside the vocabulary."""

import json
import logging

import numpy as np
import pytest
import torch

import minibert
from minibert.generation import ban_eos
from minibert.models.bart import BartConfig, BartForConditionalGeneration
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

transformers = pytest.importorskip("transformers")
from transformers.generation import logits_process as lp  # noqa: E402

VOCAB, GPT_PAD = 99, 1


def gpt_pair(**config):
    """A tiny GPT-2 in both libraries, the same weights (std 0.3: outputs that differ show)."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     initializer_range=0.3, **config)
    hf = transformers.GPT2LMHeadModel(config).eval()
    ours = GPT2LMHeadModel(GPT2Config.from_dict(config.to_dict()))
    ours.load_hf_state_dict(hf.state_dict())
    return hf, ours.eval()


def bart_pair():
    torch.manual_seed(0)
    config = transformers.BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37,
                                     decoder_ffn_dim=37, max_position_embeddings=64, init_std=0.3)
    hf = transformers.BartForConditionalGeneration(config).eval()
    ours = BartForConditionalGeneration(BartConfig.from_dict(config.to_dict()))
    ours.load_hf_state_dict(hf.state_dict())
    return hf, ours.eval()


def gpt_prompts():
    """Two prompts, the second left-padded by three (pad id 1 never occurs in real tokens)."""
    ids = torch.randint(2, VOCAB - 1, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    return ids.masked_fill(mask == 0, GPT_PAD), mask


def bart_sources():
    ids = torch.randint(3, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))
    ids[:, -1] = 2
    ids[1, 4:], ids[1, 3] = 1, 2
    return ids, ids.ne(1).long()


def hf_generate(hf, ids, mask, **kwargs):
    with torch.no_grad():
        return hf.generate(ids, attention_mask=mask, **kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(min_new_tokens=3), dict(min_length=9, num_beams=2), dict(eos_token_id=[5, 50256], min_new_tokens=4),
    dict(do_sample=True, num_beams=2, min_new_tokens=2),
])
def test_an_eos_outside_the_vocabulary_bans_nothing_under_a_minimum_length(kwargs):
    """GPT2Config's default eos (50256) in a model with a small vocabulary is never generated, and a
    minimum length has nothing to ban (it was an IndexError)."""
    hf, ours = gpt_pair()
    assert ours.config.eos_token_id == 50256
    ids, mask = gpt_prompts()
    torch.manual_seed(0)
    theirs = hf_generate(hf, ids, mask, max_new_tokens=6, pad_token_id=GPT_PAD, **kwargs)
    torch.manual_seed(0)
    mine = ours.generate(ids, attention_mask=mask, max_new_tokens=6, pad_token_id=GPT_PAD, **kwargs)
    assert torch.equal(mine, theirs), f"\n{theirs}\n{mine}"


def test_a_negative_eos_bans_nothing():
    """eos -1 indexed the last token of the vocabulary, which the minimum length then banned."""
    scores = torch.randn(3, 10)
    prefix = torch.zeros(3, 2, dtype=torch.long)
    for eos in ([-1], [-1, 4], [10, 4], [12]):
        theirs = lp.MinLengthLogitsProcessor(5, eos)(prefix, scores.clone())
        assert torch.equal(ban_eos(scores, eos), theirs), eos


def stored(hf, path, generation_json: dict):
    hf.save_pretrained(path)
    (path / "generation_config.json").write_text(json.dumps(generation_json))
    return type(hf).from_pretrained(path).eval(), minibert.load_pretrained(path).eval()


@pytest.mark.parametrize("setting", [
    dict(do_sample=True, top_h=0.5), dict(guidance_scale=3.0), dict(watermarking_config={"bias": 50.0}),
    dict(max_time=0.0), dict(penalty_alpha=0.6, top_k=4), dict(force_words_ids=[[5]], num_beams=2),
])
def test_generation_options_hugging_face_would_apply_are_named(tmp_path, caplog, setting):
    """A checkpoint's generation_config.json with an option Hugging Face applies (top-h, classifier-free
    guidance, a watermark, a time limit) or refuses (contrastive search, constrained beams) changed
    Hugging Face's tokens while minibert dropped it without a word."""
    hf, _ = gpt_pair(eos_token_id=VOCAB - 1)
    ids, mask = gpt_prompts()
    name = next(k for k in setting if k not in ("do_sample", "top_k", "num_beams"))
    with caplog.at_level(logging.WARNING, logger="minibert.generation"):
        _, ours = stored(hf, tmp_path, dict(pad_token_id=GPT_PAD, max_new_tokens=4, **setting))
        ours.generate(ids, attention_mask=mask)
    assert "generation options minibert does not apply" in caplog.text and f"{name}=" in caplog.text


def test_unset_options_in_a_generation_config_are_not_named(tmp_path, caplog):
    """null is "not set" (Hugging Face's defaults are None since v5): no warning that it is not applied."""
    hf, _ = gpt_pair(eos_token_id=VOCAB - 1)
    ids, mask = gpt_prompts()
    nulls = dict(typical_p=None, num_beam_groups=None, diversity_penalty=None, epsilon_cutoff=None, top_h=None,
                 guidance_scale=None)
    with caplog.at_level(logging.WARNING, logger="minibert.generation"):
        hf_loaded, ours = stored(hf, tmp_path, dict(pad_token_id=GPT_PAD, max_new_tokens=4, **nulls))
        mine = ours.generate(ids, attention_mask=mask)
    assert "does not apply" not in caplog.text
    assert torch.equal(mine, hf_generate(hf_loaded, ids, mask))


@pytest.mark.parametrize("cache", ["hybrid", "sliding_window"])
def test_a_checkpoints_cache_implementation_minibert_lacks_decodes_on_the_dynamic_cache(tmp_path, caplog, cache):
    """Hugging Face generates from a checkpoint storing any of its cache implementations (the same
    tokens); minibert refused to generate at all unless the caller overrode it."""
    hf, _ = gpt_pair(eos_token_id=VOCAB - 1)
    ids, mask = gpt_prompts()
    with caplog.at_level(logging.WARNING, logger="minibert.generation"):
        hf_loaded, ours = stored(hf, tmp_path, dict(pad_token_id=GPT_PAD, max_new_tokens=5, cache_implementation=cache))
        mine = ours.generate(ids, attention_mask=mask)
    assert f"cache_implementation={cache!r}" in caplog.text
    assert torch.equal(mine, hf_generate(hf_loaded, ids, mask))
    with pytest.raises(ValueError, match="cache_implementation must be one of"):  # passed: still refused
        ours.generate(ids, attention_mask=mask, cache_implementation=cache)


def test_a_numpy_decoder_start_token_id_is_a_token_id():
    """The other token ids accept numpy's ints; decoder_start_token_id said np.int64(2) was not one."""
    hf, ours = bart_pair()
    ids, mask = bart_sources()
    start = np.int64(2)
    theirs = hf_generate(hf, ids, mask, max_new_tokens=5, decoder_start_token_id=start)
    assert torch.equal(ours.generate(ids, attention_mask=mask, max_new_tokens=5, decoder_start_token_id=start), theirs)


def test_an_eos_tensor_is_named():
    """A tensor of eos ids raised "Boolean value of Tensor with more than one value is ambiguous" from the
    check's own message."""
    _, ours = gpt_pair(eos_token_id=VOCAB - 1)
    ids, mask = gpt_prompts()
    with pytest.raises(ValueError, match=r"eos_token_id must be a token id of this model .*got tensor\(\[5, 7\]\)"):
        ours.generate(ids, attention_mask=mask, max_new_tokens=3, eos_token_id=torch.tensor([5, 7]))


@pytest.mark.parametrize("family", ["gpt", "bart"])
def test_a_row_with_no_real_token_is_refused(family):
    """A row whose mask is all zeros has nothing to generate from: its tokens came from how a fully masked
    attention row is handled (not as in Hugging Face), and a GPT-2 batch was warned as "right-padded"."""
    _, ours = gpt_pair(eos_token_id=VOCAB - 1) if family == "gpt" else bart_pair()
    ids, mask = gpt_prompts() if family == "gpt" else bart_sources()
    mask[1] = 0
    with pytest.raises(ValueError, match=r"attention_mask masks every token of row\(s\) \[1\]"):
        ours.generate(ids, attention_mask=mask, max_new_tokens=3)
    if family == "gpt":  # a prompt of pad tokens only, the mask inferred from them
        ids[1] = GPT_PAD
        with pytest.raises(ValueError, match=r"row\(s\) \[1\] \(inferred: they are all pad_token_id 1\)"):
            ours.generate(ids, max_new_tokens=3, pad_token_id=GPT_PAD)


def test_an_unset_pad_falling_back_to_an_eos_outside_the_vocabulary_is_named():
    """Without pad_token_id, rows that end are fed the first eos id: outside the vocabulary that was an
    IndexError deep in the embedding (Hugging Face's too). Beam search only writes it, and still matches."""
    hf, ours = gpt_pair()
    ids, mask = gpt_prompts()
    greedy = hf_generate(hf, ids, mask, max_new_tokens=4, pad_token_id=GPT_PAD)
    eos = [50256, int(greedy[0, -2])]  # row 0 ends on its third new token, row 1 goes on
    with pytest.raises(ValueError, match="pad_token_id is not set, so rows that end are filled with the first eos "
                                         r"id, 50256, which is not a token id of this model \(0..98\)"):
        ours.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=eos)
    mine = ours.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=eos, pad_token_id=GPT_PAD)
    assert torch.equal(mine, hf_generate(hf, ids, mask, max_new_tokens=6, eos_token_id=eos, pad_token_id=GPT_PAD))
    theirs = hf_generate(hf, ids, mask, max_new_tokens=6, eos_token_id=eos, num_beams=2)
    assert torch.equal(ours.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=eos, num_beams=2), theirs)


@pytest.mark.parametrize("family", ["gpt", "bart"])
@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_beam_search_breaks_exact_ties_as_hugging_face(family, cache):
    """Two forced eos ids both score 0 at the last step: the finished hypotheses tie exactly, and which
    one is returned depended on -inf against Hugging Face's -1e9 among the other scores topk sorts."""
    hf, ours = gpt_pair(eos_token_id=VOCAB - 1) if family == "gpt" else bart_pair()
    ids, mask = gpt_prompts() if family == "gpt" else bart_sources()
    kwargs = dict(max_new_tokens=5, num_beams=2, forced_eos_token_id=[5, 6], eos_token_id=[VOCAB - 1, 7])
    if family == "gpt":
        kwargs["pad_token_id"] = GPT_PAD
    theirs = hf_generate(hf, ids, mask, **kwargs)
    mine = ours.generate(ids, attention_mask=mask, cache_implementation=cache, **kwargs)
    assert torch.equal(mine, theirs), f"\n{theirs}\n{mine}"

"""generate() against Hugging Face's generate, token for token, for GPT-2 and BART: greedy and beam
search over batch sizes, beam counts, length penalties, early stopping, minimum lengths, eos in the
middle and left-padded prompts; the generation defaults a checkpoint stores (generation_config.json,
or an older config.json); sampling under the same seed; the score processors against Hugging Face's
logits processors on random logits; bad arguments."""

import json
import logging

import pytest
import torch

import minibert
from minibert.generation import (
    _apply,
    ban_eos,
    ban_repeated_ngrams,
    build_processors,
    force_token,
    repetition_penalty,
    top_k_filter,
    top_p_filter,
)
from minibert.models.bart import BartConfig, BartForConditionalGeneration
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

transformers = pytest.importorskip("transformers")
from transformers.generation import logits_process as lp  # noqa: E402

# Pad id 1: a real pad id. (Hugging Face's beam search pads with eos when pad_token_id is 0, as it tests
# the pad id for truth; minibert does the same, see test_beam_search_pads_with_eos_when_pad_is_zero.)
VOCAB, GPT_PAD = 99, 1


@pytest.fixture(scope="module")
def gpt_pair():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
    hf = transformers.GPT2LMHeadModel(config).eval()
    ours = GPT2LMHeadModel(GPT2Config.from_dict(config.to_dict()))
    ours.load_hf_state_dict(hf.state_dict())
    return hf, ours.eval()


@pytest.fixture(scope="module")
def bart_pair():
    torch.manual_seed(0)
    config = transformers.BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
                                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37,
                                     decoder_ffn_dim=37, max_position_embeddings=64)
    hf = transformers.BartForConditionalGeneration(config).eval()
    ours = BartForConditionalGeneration(BartConfig.from_dict(config.to_dict()))
    ours.load_hf_state_dict(hf.state_dict())
    return hf, ours.eval()


def gpt_prompts(batch: int):
    """Left-padded prompts (the pad id never occurs in real tokens) of lengths 6, 3, 5, ..."""
    ids = torch.randint(2, VOCAB - 1, (batch, 6))
    mask = torch.ones_like(ids)
    for row in range(1, batch):
        mask[row, : (row * 3) % 5] = 0
    return ids.masked_fill(mask == 0, GPT_PAD), mask


def bart_sources(batch: int):
    ids = torch.randint(3, VOCAB, (batch, 7))
    ids[:, -1] = 2
    if batch > 1:
        ids[1, 4:] = 1
        ids[1, 3] = 2
    return ids, ids.ne(1).long()


def eos_in_the_middle(hf, ids, mask, **kwargs) -> int:
    """A token that Hugging Face's greedy output produces at step 3 of row 0: used as eos, it ends
    some rows in the middle of the generation."""
    out = hf.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, **kwargs)
    return int(out[0, -1])


def both(hf, ours, ids, mask, **kwargs):
    with torch.no_grad():
        theirs = hf.generate(ids, attention_mask=mask, **kwargs)
    mine = ours.generate(ids, attention_mask=mask, **{k: v for k, v in kwargs.items() if k != "do_sample"})
    return theirs, mine


GREEDY_AND_BEAM = {
    "greedy-b1": dict(batch=1),
    "greedy-b4-eos": dict(batch=4, eos=True),
    "greedy-b3-repetition-ngram": dict(batch=3, repetition_penalty=1.5, no_repeat_ngram_size=2),
    "beam2-b3-eos": dict(batch=3, eos=True, num_beams=2),
    "beam4-b2-lp0.5-return2": dict(batch=2, eos=True, num_beams=4, length_penalty=0.5, num_return_sequences=2),
    "beam3-b3-lp2-early": dict(batch=3, eos=True, num_beams=3, length_penalty=2.0, early_stopping=True),
    "beam4-b1-lp-1-never": dict(batch=1, eos=True, num_beams=4, length_penalty=-1.0, early_stopping="never"),
    "beam3-b2-ngram-repetition": dict(batch=2, eos=True, num_beams=3, no_repeat_ngram_size=3,
                                      repetition_penalty=1.3),
    "greedy-b3-min-new-tokens": dict(batch=3, eos=True, min_new_tokens=6),
    "beam3-b2-min-new-tokens-return2": dict(batch=2, eos=True, num_beams=3, min_new_tokens=5,
                                            num_return_sequences=2),
}


@pytest.mark.parametrize("cache", ["dynamic", "static"])
@pytest.mark.parametrize("case", list(GREEDY_AND_BEAM))
def test_gpt_matches_hugging_face_token_for_token(gpt_pair, case, cache):
    hf, ours = gpt_pair
    settings = dict(GREEDY_AND_BEAM[case])
    ids, mask = gpt_prompts(settings.pop("batch"))
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=GPT_PAD, **settings)
    if kwargs.pop("eos", False):
        kwargs["eos_token_id"] = eos_in_the_middle(hf, ids, mask, pad_token_id=GPT_PAD)
    theirs, mine = both(hf, ours, ids, mask, cache_implementation=cache, **kwargs)
    assert mine.shape == theirs.shape
    assert torch.equal(mine, theirs), f"\n{theirs}\n{mine}"


@pytest.mark.parametrize("cache", ["dynamic", "static"])
@pytest.mark.parametrize("case", list(GREEDY_AND_BEAM))
def test_bart_matches_hugging_face_token_for_token(bart_pair, case, cache):
    hf, ours = bart_pair
    settings = dict(GREEDY_AND_BEAM[case])
    ids, mask = bart_sources(settings.pop("batch"))
    kwargs = dict(max_new_tokens=10, do_sample=False, **settings)
    if kwargs.pop("eos", False):
        kwargs["eos_token_id"] = eos_in_the_middle(hf, ids, mask)
    theirs, mine = both(hf, ours, ids, mask, cache_implementation=cache, **kwargs)
    assert torch.equal(mine, theirs), f"\n{theirs}\n{mine}"


@pytest.mark.parametrize("family", ["gpt", "bart"])
def test_static_cache_steps_compile_to_one_graph(gpt_pair, bart_pair, family):
    """Every decoding step on the static cache has the same shapes: once the prompt's graph and the
    first step's are captured, no later step recompiles (a dynamic cache's steps would, or go dynamic)."""
    _, ours = gpt_pair if family == "gpt" else bart_pair
    ids, mask = gpt_prompts(2) if family == "gpt" else bart_sources(1)
    extra = dict(pad_token_id=GPT_PAD) if family == "gpt" else {}
    extra["min_new_tokens"] = 12  # no row ends early
    eager = ours.generate(ids, attention_mask=mask, max_new_tokens=8, cache_implementation="static", **extra)
    captured = []

    def count_graphs(graph_module, example_inputs):
        captured.append(graph_module)
        return graph_module.forward

    decoder = ours.transformer if family == "gpt" else ours.model.decoder
    torch._dynamo.reset()
    compiled = torch.compile(decoder.forward, backend=count_graphs, dynamic=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decoder, "forward", compiled)
        with torch._dynamo.config.patch(error_on_recompile=False):
            out = ours.generate(ids, attention_mask=mask, max_new_tokens=8, cache_implementation="static", **extra)
        graphs_after_8 = len(captured)
        again = ours.generate(ids, attention_mask=mask, max_new_tokens=12, cache_implementation="static", **extra)
    torch._dynamo.reset()
    assert torch.equal(out, eager) and again.size(1) == out.size(1) + 4
    assert graphs_after_8 <= 2  # the prompt (T tokens) and one decoding step (1 token)


@pytest.mark.parametrize("family", ["gpt", "bart"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_min_length_counts_the_prompt_or_start_token(gpt_pair, bart_pair, family, num_beams):
    hf, ours = gpt_pair if family == "gpt" else bart_pair
    ids, mask = gpt_prompts(3) if family == "gpt" else bart_sources(3)
    extra = dict(pad_token_id=GPT_PAD) if family == "gpt" else {}
    eos = eos_in_the_middle(hf, ids, mask, **extra)
    start = ids.size(1) if family == "gpt" else 1
    kwargs = dict(max_new_tokens=10, num_beams=num_beams, eos_token_id=eos, **extra)
    free = ours.generate(ids, attention_mask=mask, **kwargs)
    theirs, mine = both(hf, ours, ids, mask, do_sample=False, min_length=start + 6, **kwargs)
    assert torch.equal(mine, theirs), f"\n{theirs}\n{mine}"
    assert not mine[:, start : start + 6].eq(eos).any()  # no row ends before the minimum ...
    if num_beams == 1:
        assert free[:, start : start + 6].eq(eos).any()  # ... though greedy ends a row early without it


def test_beam_search_pads_with_eos_when_pad_is_zero(gpt_pair):
    """Hugging Face's beam search fills ended rows with `pad_token_id or eos`: pad id 0 gives eos. Matched."""
    hf, ours = gpt_pair
    torch.manual_seed(0)
    ids, mask = gpt_prompts(3)
    eos = eos_in_the_middle(hf, ids, mask, pad_token_id=0)
    kwargs = dict(max_new_tokens=12, num_beams=3, num_return_sequences=3, eos_token_id=eos, pad_token_id=0,
                  length_penalty=0.5)
    theirs, mine = both(hf, ours, ids, mask, do_sample=False, **kwargs)
    assert torch.equal(mine, theirs), f"\n{theirs}\n{mine}"
    new = mine[:, ids.size(1) :]
    assert new.eq(eos).sum(dim=1).max() > 1 and not new.eq(0).any()  # an ended row is filled with eos, not 0


def test_finished_rows_are_padded(gpt_pair):
    hf, ours = gpt_pair
    ids, mask = gpt_prompts(4)
    eos = eos_in_the_middle(hf, ids, mask, pad_token_id=GPT_PAD)
    out = ours.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=GPT_PAD)
    new = out[:, ids.size(1):]
    ended = new.eq(eos).cumsum(dim=1) > 0
    after_eos = ended & ~new.eq(eos) | (ended.cumsum(dim=1) > 1)
    assert ended[0].any()
    assert new[after_eos].eq(GPT_PAD).all()


def test_prompt_without_mask_is_masked_at_pad_tokens(gpt_pair):
    hf, ours = gpt_pair
    ids, mask = gpt_prompts(3)
    with_mask = ours.generate(ids, attention_mask=mask, max_new_tokens=6, pad_token_id=GPT_PAD)
    inferred = ours.generate(ids, max_new_tokens=6, pad_token_id=GPT_PAD)
    assert torch.equal(inferred, with_mask)
    assert torch.equal(inferred, hf.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=GPT_PAD))


def test_forced_bos_token(bart_pair):
    hf, ours = bart_pair
    ids, mask = bart_sources(2)
    hf.generation_config.forced_bos_token_id = ours.config.forced_bos_token_id = 0
    try:
        theirs, mine = both(hf, ours, ids, mask, max_new_tokens=6, num_beams=2)
    finally:
        hf.generation_config.forced_bos_token_id = ours.config.forced_bos_token_id = None
    assert mine[:, 1].eq(0).all() and torch.equal(mine, theirs)


@pytest.mark.parametrize("family", ["gpt", "bart"])
@pytest.mark.parametrize("num_beams", [1, 2])
def test_sampling_matches_hugging_face_under_the_same_seed(gpt_pair, bart_pair, family, num_beams):
    """Same processors, same probabilities, same draws from the global RNG: the same tokens."""
    hf, ours = gpt_pair if family == "gpt" else bart_pair
    ids, mask = gpt_prompts(3) if family == "gpt" else bart_sources(3)
    kwargs = dict(max_new_tokens=8, num_beams=num_beams, temperature=0.7, top_k=20, top_p=0.9,
                  num_return_sequences=2, repetition_penalty=1.2)
    if family == "gpt":
        kwargs["pad_token_id"] = GPT_PAD
    torch.manual_seed(123)
    theirs = hf.generate(ids, attention_mask=mask, do_sample=True, **kwargs)
    torch.manual_seed(123)
    mine = ours.generate(ids, attention_mask=mask, do_sample=True, **kwargs)
    assert torch.equal(mine, theirs), f"\n{theirs}\n{mine}"


def test_generator_makes_sampling_reproducible(gpt_pair):
    _, ours = gpt_pair
    ids, mask = gpt_prompts(2)

    def sample(seed):
        return ours.generate(ids, attention_mask=mask, do_sample=True, max_new_tokens=10, pad_token_id=GPT_PAD,
                             generator=torch.Generator().manual_seed(seed))

    first, again, other = sample(1), sample(1), sample(2)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


# ---------------------------------------------------------------------------------------------
# The generation defaults a checkpoint stores: generation_config.json > config.json > global defaults
# ---------------------------------------------------------------------------------------------
def stored_checkpoint(hf, path, generation_json: dict | None, legacy: dict | None):
    """`hf` saved to `path` with generation_config.json holding `generation_json` (none if None) and
    config.json carrying the generation fields `legacy` (as checkpoints written before
    generation_config.json existed do); loaded back by both libraries."""
    hf.save_pretrained(path)
    (path / "generation_config.json").unlink()
    if legacy:
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**config, **legacy}))
    if generation_json is not None:
        transformers.GenerationConfig(**generation_json).save_pretrained(path)
    return type(hf).from_pretrained(path).eval(), minibert.load_pretrained(path).eval()


STORED = {  # family -> case -> (generation_config.json, config.json fields); EOS: a token produced early
    "gpt": {
        "generation_config.json": (dict(num_beams=3, max_length=16, min_new_tokens=4, length_penalty=2.0,
                                        no_repeat_ngram_size=2, early_stopping=True, eos_token_id="EOS",
                                        pad_token_id=GPT_PAD, bos_token_id=VOCAB - 1), None),
        "config.json": (None, dict(num_beams=2, max_length=15, min_length=10, repetition_penalty=1.4,
                                   num_return_sequences=2, eos_token_id="EOS", pad_token_id=GPT_PAD)),
        "both": (dict(max_new_tokens=7, eos_token_id="EOS", pad_token_id=GPT_PAD),
                 dict(num_beams=4, min_length=12, eos_token_id="EOS")),
    },
    "bart": {  # bart-large-cnn's settings (config.json), in miniature
        "config.json": (None, dict(num_beams=4, length_penalty=2.0, max_length=14, min_length=8,
                                   no_repeat_ngram_size=3, early_stopping=True, forced_bos_token_id=0,
                                   eos_token_id="EOS", forced_eos_token_id="EOS")),
        "generation_config.json": (dict(num_beams=2, max_length=12, min_new_tokens=5, eos_token_id="EOS",
                                        pad_token_id=1, decoder_start_token_id=2, repetition_penalty=1.3), None),
        "both": (dict(max_new_tokens=9, eos_token_id="EOS", decoder_start_token_id=2),
                 dict(num_beams=3, min_length=9, forced_eos_token_id=2)),
    },
}


def _with_eos(settings: dict | None, eos: int) -> dict | None:
    return None if settings is None else {k: eos if v == "EOS" else v for k, v in settings.items()}


@pytest.mark.parametrize("family,case", [(f, c) for f in STORED for c in STORED[f]])
def test_stored_generation_defaults_match_hugging_face(gpt_pair, bart_pair, tmp_path, family, case):
    hf, _ = gpt_pair if family == "gpt" else bart_pair
    ids, mask = gpt_prompts(3) if family == "gpt" else bart_sources(3)
    eos = eos_in_the_middle(hf, ids, mask, **(dict(pad_token_id=GPT_PAD) if family == "gpt" else {}))
    generation_json, legacy = (_with_eos(part, eos) for part in STORED[family][case])
    hf_loaded, ours = stored_checkpoint(hf, tmp_path, generation_json, legacy)
    for overrides in ({}, dict(num_beams=4, num_return_sequences=1, max_new_tokens=5)):  # none; explicit ones win
        with torch.no_grad():
            theirs = hf_loaded.generate(ids, attention_mask=mask, **overrides)
        mine = ours.generate(ids, attention_mask=mask, **overrides)
        assert torch.equal(mine, theirs), f"{overrides}\n{theirs}\n{mine}"
    ours.save_pretrained(tmp_path / "again")  # generation_config.json travels with the model
    if generation_json is not None:
        again = json.loads((tmp_path / "again" / "generation_config.json").read_text())
        assert {k: again[k] for k in generation_json} == generation_json


def test_bad_stored_generation_settings_name_the_file(gpt_pair, tmp_path, caplog):
    hf, _ = gpt_pair
    ids, mask = gpt_prompts(2)
    _, ours = stored_checkpoint(hf, tmp_path, dict(num_beams=0, suppress_tokens=[3]), None)
    with caplog.at_level(logging.WARNING, logger="minibert.generation"):
        with pytest.raises(ValueError, match=r"num_beams must be a whole number >= 1, got 0 \(set by the checkpoint's "
                                             r"generation_config.json\): pass num_beams="):
            ours.generate(ids, attention_mask=mask)
    assert "suppress_tokens=[3]" in caplog.text  # what Hugging Face would apply and minibert cannot
    assert ours.generate(ids, attention_mask=mask, num_beams=1, max_new_tokens=2).shape == (2, 8)
    _, ours = stored_checkpoint(hf, tmp_path / "short", None, dict(max_length=4))
    with pytest.raises(ValueError, match=r"max_length=4 \(from the checkpoint\) leaves no room after the "
                                         r"6-token prompt; pass max_new_tokens"):
        ours.generate(ids, attention_mask=mask)


def test_default_length_is_twenty_new_tokens_within_the_positions(gpt_pair):
    hf, ours = gpt_pair
    for length in (6, 50):  # 50 + 20 > n_positions 64: capped, as Hugging Face caps it
        ids = torch.randint(2, VOCAB - 1, (1, length))
        theirs, mine = both(hf, ours, ids, torch.ones_like(ids), do_sample=False, pad_token_id=GPT_PAD)
        assert torch.equal(mine, theirs) and mine.size(1) == min(length + 20, 64)


# ---------------------------------------------------------------------------------------------
# Processors against Hugging Face's, on random logits
# ---------------------------------------------------------------------------------------------
def random_case(seed=0, N=6, V=50, L=12):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(N, V, generator=g) * 3
    scores[0, :10] = 1.5  # ties
    sequences = torch.randint(0, V, (N, L), generator=g)
    sequences[1] = sequences[1, :4].repeat(3)  # repeated n-grams
    return scores, sequences


def sampling_chain(temperature, top_k, top_p):
    """generate's own sampling processors (build_processors), in its order."""
    procs = build_processors(repetition=1.0, ignore_before=None, no_repeat_ngram_size=0, eos=[], min_length=0,
                             forced_bos=None, forced_eos=None, max_length=100, do_sample=True,
                             temperature=temperature, top_k=top_k, top_p=top_p, min_keep=1)
    return lambda seqs, scores: _apply(procs, seqs, scores)


@pytest.mark.parametrize("seed", [0, 1])
def test_processors_match_hugging_face(seed):
    scores, seqs = random_case(seed)
    ignore = torch.tensor([0, 3, 0, 5, 1, 0])
    checks = [
        (top_k_filter(scores, 5), lp.TopKLogitsWarper(5)(seqs, scores)),
        (top_k_filter(scores, 1, min_keep=3), lp.TopKLogitsWarper(1, min_tokens_to_keep=3)(seqs, scores)),
        (top_k_filter(scores, 500), lp.TopKLogitsWarper(500)(seqs, scores)),
        (sampling_chain(0.6, 0, 1.0)(seqs, scores), lp.TemperatureLogitsWarper(0.6)(seqs, scores)),  # minibert's own
        (sampling_chain(0.6, 5, 0.9)(seqs, scores), lp.LogitsProcessorList(
            [lp.TemperatureLogitsWarper(0.6), lp.TopKLogitsWarper(5), lp.TopPLogitsWarper(0.9)])(seqs, scores)),
        (repetition_penalty(scores, seqs, 1.4), lp.RepetitionPenaltyLogitsProcessor(1.4)(seqs, scores)),
        (repetition_penalty(scores, seqs, 0.7, ignore),
         lp.RepetitionPenaltyLogitsProcessor(0.7, prompt_ignore_length=ignore)(seqs, scores)),
        (force_token(scores, [3, 7]), lp.ForcedEOSTokenLogitsProcessor(seqs.size(1) + 1, [3, 7])(seqs, scores)),
        (force_token(scores, [4]), lp.ForcedBOSTokenLogitsProcessor(4)(seqs[:, :1], scores)),
        (ban_eos(scores, [3, 7]), lp.MinLengthLogitsProcessor(seqs.size(1) + 1, [3, 7])(seqs, scores)),
    ]
    for p in (0.05, 0.5, 0.9, 0.999, 1.0):
        for keep in (1, 3):
            theirs = lp.TopPLogitsWarper(p, min_tokens_to_keep=keep)(seqs, scores)
            checks.append((top_p_filter(scores, p, keep), theirs))
    for n in (1, 2, 3, 4):
        checks.append((ban_repeated_ngrams(scores, seqs, n), lp.NoRepeatNGramLogitsProcessor(n)(seqs, scores)))
    for mine, theirs in checks:
        torch.testing.assert_close(mine, theirs, atol=0, rtol=0)


def test_filters_do_filter():
    scores, seqs = random_case()
    assert (top_k_filter(scores, 5) > float("-inf")).sum(dim=1).eq(5)[1:].all()
    kept = top_p_filter(scores, 0.5) > float("-inf")
    probs = scores.softmax(dim=-1)
    assert ((probs * kept).sum(dim=1) >= 0.5).all() and (kept.sum(dim=1) < scores.size(1)).all()
    assert ban_repeated_ngrams(scores, seqs, 2)[1, seqs[1, 0]] == float("-inf")  # row 1 ends "... d", then "d a"


# ---------------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_return_sequences=2), "greedy"),
    (dict(do_sample=True, top_p=0.0), "top_p"),
    (dict(do_sample=True, top_p=1.5), "top_p"),
    (dict(do_sample=True, temperature=0.0), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(no_repeat_ngram_size=-2), "no_repeat_ngram_size"),
    (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(num_beams=2, length_penalty=float("nan")), "length_penalty must be a finite number"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(min_new_tokens=-1), "min_new_tokens must be >= 0"),
    (dict(min_length=-3), "min_length must be >= 0"),
    (dict(max_length=6), "max_length=6 leaves no room after the 6-token prompt"),
    (dict(num_beams=0), "num_beams must be a whole number >= 1, got 0$"),
    (dict(num_beams=2.0), "num_beams must be a whole number, got 2.0$"),
    (dict(max_new_tokens=4.0), "max_new_tokens must be a whole number, got 4.0$"),
    (dict(max_length=10.0), "max_length must be a whole number"),
    (dict(do_sample=True, top_k=5.0), "top_k must be a whole number"),
    (dict(no_repeat_ngram_size=2.0), "no_repeat_ngram_size must be a whole number"),
    (dict(min_new_tokens=1.5), "min_new_tokens must be a whole number"),
    (dict(forced_eos_token_id=-1), r"forced_eos_token_id must be a token id of this model \(0..98\), or a list"),
    (dict(forced_bos_token_id=VOCAB), r"forced_bos_token_id must be a token id of this model \(0..98\), got 99"),
    (dict(forced_bos_token_id=[]), "forced_bos_token_id must be a token id.*None turns it off"),
    (dict(pad_token_id=VOCAB), "pad_token_id must be a token id of this model"),
    (dict(eos_token_id=[5, 2.0]), r"eos_token_id must be .* got \[5, 2.0\] \(holding 2.0\)"),
    (dict(max_new_tokens=60), "n_positions"),
])
def test_bad_arguments_are_explained(gpt_pair, kwargs, match):
    _, ours = gpt_pair
    ids, mask = gpt_prompts(2)
    with pytest.raises(ValueError, match=match):
        ours.generate(ids, attention_mask=mask, **kwargs)
    with pytest.raises(ValueError, match="attention_mask"):
        ours.generate(ids, attention_mask=mask[:, 1:])


def test_a_decoder_start_id_outside_the_vocabulary_is_named(bart_pair):
    _, ours = bart_pair
    ids, mask = bart_sources(1)
    vocab = ours.get_input_embeddings().num_embeddings
    for bad in (vocab, -1):
        with pytest.raises(ValueError, match=rf"decoder_start_token_id {bad} is not a token id of this model"):
            ours.generate(ids, attention_mask=mask, max_new_tokens=2, decoder_start_token_id=bad)


def tiny_pair(family: str):
    """A fresh pair (the module's fixtures are shared), its weights drawn wide enough (std 0.3) that
    what is forced shows in the output."""
    torch.manual_seed(0)
    if family == "gpt2":
        config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                         bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1, initializer_range=0.3)
        hf, ours = transformers.GPT2LMHeadModel(config), GPT2LMHeadModel(GPT2Config.from_dict(config.to_dict()))
    else:
        config = transformers.BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=1, decoder_layers=1,
                                         encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37,
                                         decoder_ffn_dim=37, max_position_embeddings=64, init_std=0.3)
        hf = transformers.BartForConditionalGeneration(config)
        ours = BartForConditionalGeneration(BartConfig.from_dict(config.to_dict()))
    ours.load_hf_state_dict(hf.state_dict())
    return hf.eval(), ours.eval()


def test_a_setting_passed_as_none_is_switched_off_as_in_hugging_face():
    """None passed to generate means Hugging Face's global default (for a token id: none), not the
    checkpoint's value: bart-large stores forced_bos_token_id 0, which None must be able to turn off."""
    hf, ours = tiny_pair("bart")  # BART's config stores forced_eos_token_id 2; bart-large's also forced bos 0
    hf.generation_config.forced_bos_token_id = ours.config.forced_bos_token_id = 0
    assert ours.config.forced_eos_token_id == hf.generation_config.forced_eos_token_id == 2
    ids, mask = bart_sources(2)
    for name in ("forced_bos_token_id", "forced_eos_token_id"):
        theirs, mine = both(hf, ours, ids, mask, max_new_tokens=6, do_sample=False, **{name: None})
        assert torch.equal(mine, theirs), name
        assert not torch.equal(mine, ours.generate(ids, attention_mask=mask, max_new_tokens=6)), name  # stored: on
    hf, ours = tiny_pair("gpt2")
    ids, mask = gpt_prompts(2)
    eos = eos_in_the_middle(hf, ids, mask, pad_token_id=GPT_PAD)
    hf.generation_config.eos_token_id = ours.config.eos_token_id = eos  # the checkpoint's eos ends row 0 early
    theirs, mine = both(hf, ours, ids, mask, max_new_tokens=8, do_sample=False, pad_token_id=GPT_PAD,
                        eos_token_id=None)
    assert mine.shape == (2, 6 + 8) and torch.equal(mine, theirs)


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_the_last_new_token_needs_no_position(gpt_pair, bart_pair, cache):
    """The last new token is never fed back, so a GPT-2 prompt of n_positions - 4 real tokens may take 5
    new ones (left padding takes no position), and BART max_position_embeddings new ones: as Hugging Face."""
    hf, ours = gpt_pair
    long = torch.randint(2, VOCAB - 1, (1, 60))
    full = torch.cat([long, long[:, :4]], 1)  # (1, 64)
    cases = [(long, torch.ones_like(long), 5), (full, torch.ones_like(full), 1)]
    padded = torch.randint(2, VOCAB - 1, (2, 64))
    mask = torch.ones_like(padded)
    mask[0, :10], mask[1, :24] = 0, 0  # real lengths 54 and 40
    cases.append((padded.masked_fill(mask == 0, GPT_PAD), mask, 5))
    for ids, mask, new in cases:
        theirs, mine = both(hf, ours, ids, mask, max_new_tokens=new, do_sample=False, pad_token_id=GPT_PAD,
                            cache_implementation=cache)
        assert torch.equal(mine, theirs), (ids.shape, new)
    with pytest.raises(ValueError, match=r"a prompt of 60 tokens plus max_new_tokens=6 needs 65 positions .*"
                                         r"use max_new_tokens <= 5"):
        ours.generate(long, max_new_tokens=6)
    with pytest.raises(ValueError, match="the prompt alone is past n_positions"):
        ours.generate(torch.cat([long, long], 1), max_new_tokens=1)
    hf, ours = bart_pair
    ids, mask = bart_sources(2)
    theirs, mine = both(hf, ours, ids, mask, max_new_tokens=64, min_new_tokens=64, do_sample=False,
                        cache_implementation=cache)
    assert mine.shape == (2, 65) and torch.equal(mine, theirs)
    with pytest.raises(ValueError, match="use max_new_tokens <= 64"):
        ours.generate(ids, attention_mask=mask, max_new_tokens=65)


def test_a_new_encoders_decoder_start_is_checked_against_the_decoders_vocabulary():
    """BartWithNewEncoder's config.vocab_size is the source's; the start token is the decoder's."""
    from minibert.finetune.new_encoder import BartWithNewEncoder

    _, bart = tiny_pair("bart")
    ids = torch.randint(2, 40, (1, 5))
    small = BartWithNewEncoder(bart, vocab_size=50, pad_token_id=1)
    assert small.generate(ids, max_new_tokens=2, decoder_start_token_id=60)[0, 0] == 60  # 50 <= 60 < 99
    _, bart = tiny_pair("bart")
    large = BartWithNewEncoder(bart, vocab_size=300, pad_token_id=1)
    with pytest.raises(ValueError, match=r"decoder_start_token_id 150 is not a token id of this model \(0..98\)"):
        large.generate(ids, max_new_tokens=2, decoder_start_token_id=150)


def test_a_static_cache_written_past_its_slots_is_named(gpt_pair):
    from minibert.nn.attention import StaticCache

    _, ours = gpt_pair
    cache = StaticCache([(torch.zeros(1, 4, 4, 8), torch.zeros(1, 4, 4, 8)) for _ in range(2)])
    ids = torch.randint(2, VOCAB - 1, (1, 1))
    ours.transformer(ids, past_key_values=cache, cache_position=torch.tensor([3]))  # the last slot: fine
    with pytest.raises(ValueError, match="cache_position reaches slot 4 but the StaticCache holds 4 slots"):
        ours.transformer(ids, past_key_values=cache, cache_position=torch.tensor([4]))


@pytest.mark.parametrize("family", ["gpt", "bart"])
def test_the_static_cache_works_under_gradient_checkpointing_in_train_mode(family):
    """The checkpointed blocks were called without cache_position: generate on a training model with
    gradient checkpointing on failed with a size mismatch on the static cache (the dynamic one worked)."""
    from minibert.models.bart import BartConfig, BartForConditionalGeneration
    from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    if family == "gpt":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=16, n_layer=2, n_head=2, n_positions=64,
                                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.3))
    else:
        model = BartForConditionalGeneration(BartConfig(
            vocab_size=99, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
            dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, init_std=0.3))
    model.gradient_checkpointing_enable()
    model.train()
    ids = torch.randint(3, 98, (2, 5))
    dynamic = model.generate(ids, max_new_tokens=4, cache_implementation="dynamic")
    static = model.generate(ids, max_new_tokens=4, cache_implementation="static")
    assert torch.equal(dynamic, static)

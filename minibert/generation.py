"""Text generation for every minibert decoder: greedy, sampling and beam search, on the KV cache.

`GenerationMixin.generate` returns what Hugging Face's `generate` returns, token for token: for a
decoder-only model the prompt followed by the new tokens, for an encoder-decoder model the decoder
sequence starting with its start token. Rows that end (an eos token) are padded with pad_token_id.
Shapes: B inputs, K beams, N = B * K (or B * num_return_sequences) rows decoded together,
L tokens so far (in beam search's preallocated `Beams`: max_length), V vocabulary.

Every setting an argument leaves out comes from the checkpoint, as in Hugging Face (an argument
passed as None sets Hugging Face's global default: for a token id, none, so `eos_token_id=None`
generates to the full length even when the checkpoint stores an eos):

    argument passed to generate  >  generation_config.json (the whole file, when the checkpoint has one)
                                 >  config.json's generation fields and special tokens (older checkpoints)
                                 >  Hugging Face's global defaults (GenerationConfig below)

so bart-large-cnn, which stores num_beams 4, length_penalty 2, min_length 56 and
no_repeat_ngram_size 3, summarises with them here too.

A model mixes this in and provides a small protocol:

    is_encoder_decoder                  class attribute (True for BART)
    _position_limit() -> int            the longest output the positions cover (caps the default length)
    _check_generation_length(input_ids, attention_mask, max_new_tokens)   ValueError when the positions run out
    _decoder_vocab_size() -> int        the ids the decoder reads and writes (mixin default: config.vocab_size)
    _generation_setup(input_ids, attention_mask, max_new_tokens, decoder_start) -> (sequences, state)
        the rows the output starts with (B, L0) (an encoder-decoder's: decoder_start), and a dict of
        per-row tensors (batch first, or None) that every decoding step needs: an attention mask,
        positions, encoder states ...
    _static_cache(rows, max_length, state) -> StaticCache
        cache_implementation="static": keys/values preallocated for the whole output (nn/attention.py)
    _generation_forward(tokens, state, past_key_values, cached) -> (logits (N, V), past_key_values)
        run the new tokens (the whole prompt first, then one token per row) against the cache, which
        holds `cached` positions (None, or an empty StaticCache, before the first call)
    _reorder_cache(past_key_values, beam_idx) -> past_key_values
        beam search: row i of the next step continues row beam_idx[i] of this one

One step of decoding, whatever the strategy:

    logits ─► processors (repetition penalty, no-repeat n-grams, minimum length, forced bos/eos) ─► [sampling:
    temperature, top-k, top-p] ─► argmax | multinomial | top-2K over K beams ─► append, stop at eos
"""

import dataclasses
import difflib
import inspect
import logging
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from minibert.modeling import check_ids, store_linear_weights_input_major

logger = logging.getLogger(__name__)

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (sequences (N, L), scores (N, V)) -> scores
NEG = -1.0e9  # "impossible" score for beam bookkeeping: finite, so sums and comparisons stay well defined
DEFAULT_NEW_TOKENS = 20  # Hugging Face's default length when nothing sets one: 20 new tokens
CACHE_IMPLEMENTATIONS = ("dynamic", "static")


class _Unset:
    """The default of generate's settings: "not passed", so the checkpoint's value applies (an
    explicit None is a value: Hugging Face's global default, which for a token id means none)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def _whole(value) -> bool:
    """An int (numpy's too), not a bool and not a float: counts and lengths index tensors."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value) -> bool:
    """A number (an int or a float, numpy's too), not a bool, a string or a tensor: the scores are scaled by it."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass
class GenerationConfig:
    """The settings `generate` applies, named and defaulted as Hugging Face's GenerationConfig (its
    global defaults), so a generation_config.json or an older config.json is read by copying keys."""

    max_length: int | None = None  # whole output (prompt, or decoder start token, + new tokens); None: 20 new
    max_new_tokens: int | None = None  # new tokens per row; wins over max_length
    min_length: int = 0  # eos is banned while a row is shorter than this (prompt or start token counted)
    min_new_tokens: int | None = None  # ... or has fewer new tokens than this; wins over min_length
    do_sample: bool = False  # sample from the processed distribution instead of taking the best
    num_beams: int = 1  # 1: greedy or sampling; more: beam search
    temperature: float = 1.0  # sampling: divide the scores by this
    top_k: int = 50  # sampling: keep the k best tokens (0: all)
    top_p: float = 1.0  # sampling: keep the smallest set of best tokens holding this probability
    repetition_penalty: float = 1.0  # CTRL's penalty on tokens already in the row (1.0: off)
    no_repeat_ngram_size: int = 0  # no n-gram of this size twice in a row (0: off)
    length_penalty: float = 1.0  # beam search: finished score = sum(log p) / new_length ** length_penalty
    early_stopping: bool | str = False  # beam search: True, False or "never" (see generate)
    num_return_sequences: int = 1  # rows returned per input
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None  # generation ends at any of these
    pad_token_id: int | None = None  # fills rows that ended; None: the first eos id
    decoder_start_token_id: int | None = None  # encoder-decoder: the decoder's first token; None: bos
    forced_bos_token_id: int | None = None  # encoder-decoder: the first generated token (mBART's language id)
    forced_eos_token_id: int | list[int] | None = None  # the last token max_length allows
    # "dynamic": keys/values grow by one position per step (torch.cat); "static": preallocated for the
    # whole output and written in place, so every step has the same shapes (torch.compile, CUDA graphs)
    cache_implementation: str = "dynamic"

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> "GenerationConfig":
        """The fields a generation_config.json or config.json sets (null means "not set"). Settings
        Hugging Face would apply but minibert cannot are named in a warning rather than dropped silently."""
        names = {f.name for f in dataclasses.fields(cls)}
        # null is "not set" (Hugging Face's own defaults are None since v5), so it asks for nothing
        ignored = sorted(k for k, neutral in UNSUPPORTED_SETTINGS.items()
                         if data.get(k) is not None and data[k] != neutral)
        if ignored:
            logger.warning("%s sets generation options minibert does not apply: %s", source or "the config",
                           ", ".join(f"{k}={data[k]!r}" for k in ignored))
        data = {k: v for k, v in data.items() if k in names and v is not None}
        cache = data.get("cache_implementation")
        if cache in HF_ONLY_CACHE_IMPLEMENTATIONS:  # where keys/values live, not which tokens come out
            logger.warning("%s sets cache_implementation=%r, which minibert does not have: decoding on the "
                           "dynamic cache instead (the same tokens)", source or "the config", cache)
            del data["cache_implementation"]
        return cls(**data)

    def problems(self, vocab_size: int | None = None) -> list[tuple[str, str]]:
        """(field, what is wrong and how to fix it) for every setting out of range; with `vocab_size`,
        the token ids (eos, pad, forced bos/eos) are checked against the decoder's vocabulary too."""
        found = [(name, f"{name} must be a whole number, got {value!r}")
                 for name in ("max_new_tokens", "max_length", "min_length", "min_new_tokens", "num_beams", "top_k",
                              "no_repeat_ngram_size", "num_return_sequences")
                 if (value := getattr(self, name)) is not None and not _whole(value)]
        found += [(name, f"{name} must be a number, got {value!r}")
                  for name in ("temperature", "top_p", "repetition_penalty", "length_penalty")
                  if not _real(value := getattr(self, name))]
        if found:  # the range checks below compare numbers: a string ("0.7" in a JSON file) would raise there
            return found
        for name, ok, message in (
            ("max_new_tokens", self.max_new_tokens is None or self.max_new_tokens >= 1,
             f"max_new_tokens must be at least 1, got {self.max_new_tokens}"),
            ("min_length", self.min_length >= 0, f"min_length must be >= 0 (0 = off), got {self.min_length}"),
            ("min_new_tokens", self.min_new_tokens is None or self.min_new_tokens >= 0,
             f"min_new_tokens must be >= 0 (0 = off), got {self.min_new_tokens}"),
            ("num_beams", self.num_beams >= 1, f"num_beams must be a whole number >= 1, got {self.num_beams!r}"),
            ("num_return_sequences", self.num_return_sequences >= 1,
             f"num_return_sequences must be >= 1, got {self.num_return_sequences}"),
            ("num_return_sequences", self.num_beams == 1 or self.num_return_sequences <= self.num_beams,
             f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams ({self.num_beams}): "
             "beam search returns its best beams; raise num_beams or lower num_return_sequences"),
            ("num_return_sequences", self.num_beams > 1 or self.do_sample or self.num_return_sequences == 1,
             f"greedy decoding returns one sequence per input, not {self.num_return_sequences}; "
             "use do_sample=True or num_beams >= num_return_sequences"),
            ("top_p", 0.0 < self.top_p <= 1.0, f"top_p must be in (0, 1], got {self.top_p}; 1.0 turns nucleus "
             "filtering off"),
            ("top_k", self.top_k >= 0, f"top_k must be >= 0 (0 turns top-k filtering off), got {self.top_k}"),
            ("temperature", not self.do_sample or self.temperature > 0,
             f"temperature must be > 0 when sampling, got {self.temperature}; for the most likely tokens use "
             "do_sample=False"),
            ("repetition_penalty", self.repetition_penalty > 0,
             f"repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty}"),
            ("no_repeat_ngram_size", self.no_repeat_ngram_size >= 0,
             f"no_repeat_ngram_size must be >= 0 (0 = off), got {self.no_repeat_ngram_size}"),
            ("length_penalty", math.isfinite(self.length_penalty),
             f"length_penalty must be a finite number (1.0 = scores per token, 0 = summed log-probabilities), "
             f"got {self.length_penalty}"),
            # `is`: beam search asks `early_stopping is True` (as Hugging Face does), so 1 or numpy's True
            # would pass an `in` test and then decode as False
            ("early_stopping", self.early_stopping is True or self.early_stopping is False
             or self.early_stopping == "never",
             f"early_stopping must be True, False or 'never', got {self.early_stopping!r}"),
            ("cache_implementation", self.cache_implementation in CACHE_IMPLEMENTATIONS,
             f"cache_implementation must be one of {CACHE_IMPLEMENTATIONS}, got {self.cache_implementation!r}"),
        ):
            if not ok:
                found.append((name, message))
        if vocab_size is not None:
            found += self._token_id_problems(vocab_size)
        return found

    def _token_id_problems(self, vocab_size: int) -> list[tuple[str, str]]:
        """Token ids outside the vocabulary would index the wrong row (-1: the last) or fail mid-generation
        (a pad id is fed back once a row has ended). An eos outside it is only never generated, as in
        Hugging Face (GPT2Config's default eos, 50256, in a model built with a small vocabulary)."""
        found = []
        for name, lists_allowed in (("eos_token_id", True), ("pad_token_id", False), ("forced_bos_token_id", False),
                                    ("forced_eos_token_id", True)):
            value = getattr(self, name)
            if value is None:
                continue
            values = value if lists_allowed and isinstance(value, (list, tuple)) else [value]
            ranged = name != "eos_token_id"
            bad = [v for v in values if not _whole(v) or ranged and not 0 <= v < vocab_size]
            if bad:
                what = ", or a list of them" if lists_allowed else ""
                off = "[] or None" if lists_allowed else "None"
                found.append((name, f"{name} must be a token id of this model (0..{vocab_size - 1}){what}, got "
                                    f"{value!r}{'' if value is bad[0] else f' (holding {bad[0]!r})'}; {off} turns "
                                    "it off"))
        return found


# Hugging Face options (with their "off" values) that minibert's generate does not implement.
UNSUPPORTED_SETTINGS = {
    "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "min_p": None, "bad_words_ids": None,
    "suppress_tokens": None, "begin_suppress_tokens": None, "sequence_bias": None,
    "exponential_decay_length_penalty": None, "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0, "remove_invalid_values": False, "num_beam_groups": 1,
    "diversity_penalty": 0.0, "renormalize_logits": False,
    # ... and the ones Hugging Face v5 applies as well (a processor, a stopping criterion) or refuses
    # without trust_remote_code (another decoding method): never ignored without a word either
    "top_h": None, "guidance_scale": 1.0, "watermarking_config": None, "max_time": None, "stop_strings": None,
    "token_healing": False, "penalty_alpha": None, "dola_layers": None, "constraints": None,
    "force_words_ids": None,
}


# Arguments of Hugging Face's generate() call that minibert's does not take (with their "off" values). use_cache
# is let through whatever its value: minibert always decodes on a cache, and the tokens are the same without one.
HF_CALL_ONLY_ARGUMENTS = {
    "generation_config": None, "logits_processor": None, "stopping_criteria": None, "prefix_allowed_tokens_fn": None,
    "synced_gpus": None, "assistant_model": None, "streamer": None, "negative_prompt_ids": None, "tokenizer": None,
    "output_scores": False, "output_logits": False, "output_attentions": False, "output_hidden_states": False,
    "return_dict_in_generate": False,
}


def refuse_other_arguments(other: dict) -> None:
    """generate's unknown keyword arguments, refused by name: a Hugging Face option minibert does not implement
    (bad_words_ids, force_words_ids, output_scores, ...) is said to be one, rather than a bare "unexpected keyword
    argument"; one given at its "off" value (bad_words_ids=None) is let through, as a stored one is."""
    off = {**UNSUPPORTED_SETTINGS, **HF_CALL_ONLY_ARGUMENTS}
    names = sorted(n for n in other if n != "use_cache" and not (n in off and other[n] == off[n]))
    if not names:
        return
    unsupported = [n for n in names if n in off]
    unknown = [n for n in names if n not in unsupported]
    said = []
    if unsupported:
        said.append(f"{', '.join(unsupported)}: Hugging Face generate() options that minibert does not implement "
                    "(it implements greedy, beam search, sampling and beam sampling with top-k / top-p / "
                    "temperature, repetition and no-repeat-n-gram penalties, minimum lengths and forced BOS / EOS); "
                    "drop them, or generate with transformers from the checkpoint save_pretrained writes")
    if unknown:
        takes = [n for n in inspect.signature(GenerationMixin.generate).parameters if n not in ("self", "other")]
        close = {n: difflib.get_close_matches(n, takes, n=1, cutoff=0.8) for n in unknown}  # typos, not guesses
        said.append(f"unexpected keyword argument(s) {', '.join(unknown)}"
                    + "".join(f" ({n}: did you mean {c[0]}?)" for n, c in close.items() if c)
                    + f"; generate() takes {', '.join(takes)}")
    raise TypeError("generate(): " + "; ".join(said))

# Hugging Face's other cache_implementation values: a checkpoint setting one decodes here on the dynamic
# cache (with a warning), as they change where keys and values are kept, not the tokens generated.
HF_ONLY_CACHE_IMPLEMENTATIONS = ("offloaded_static", "sliding_window", "hybrid", "hybrid_chunked", "offloaded_hybrid",
                                 "offloaded_hybrid_chunked", "offloaded", "quantized", "paged")


# --------------------------------------------------------------------------------------------
# Score processors. Each takes the sequences so far (N, L) and the next-token scores (N, V).
# --------------------------------------------------------------------------------------------
def repetition_penalty(scores, sequences, penalty: float, ignore_before: torch.Tensor | None = None):
    """CTRL's penalty (Keskar et al. 2019, https://arxiv.org/abs/1909.05858) as Hugging Face applies it:
    a token already in the row has its score divided by `penalty` if positive, multiplied if negative
    (CTRL divides always, which would raise a negative score; this way it always drops for penalty > 1).
    "Already in the row" means in `sequences`: a decoder-only model's prompt and new tokens; an
    encoder-decoder's decoder tokens, its start token included, never the source (as Hugging Face).
    `ignore_before` (N,): leading positions (left padding) that do not count."""
    V = scores.size(-1)
    tokens = sequences.clamp(max=V)
    if ignore_before is not None:
        positions = torch.arange(sequences.size(1), device=sequences.device)
        tokens = tokens.masked_fill(positions < ignore_before[:, None], V)  # V: a spare column, dropped below
    seen = torch.zeros(scores.size(0), V + 1, dtype=torch.bool, device=scores.device).scatter_(1, tokens, True)
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen[:, :V], penalised, scores)


def ban_repeated_ngrams(scores, sequences, n: int):
    """No n-gram may occur twice in a row (Paulus et al. 2017, https://arxiv.org/abs/1705.04304):
    every earlier window whose first n-1 tokens equal the row's last n-1 tokens bans its n-th."""
    L, V = sequences.size(1), scores.size(-1)
    if L < n:
        return scores
    suffix = sequences[:, L - n + 1 :]  # (N, n-1)
    windows = sequences.unfold(1, n, 1)  # (N, L-n+1, n)
    hit = (windows[..., :-1] == suffix[:, None]).all(-1)  # (N, L-n+1)
    banned_ids = torch.where(hit, windows[..., -1].clamp(max=V), V)  # misses go to a spare column V
    banned = torch.zeros(scores.size(0), V + 1, dtype=torch.bool, device=scores.device).scatter_(1, banned_ids, True)
    return scores.masked_fill(banned[:, :V], float("-inf"))


def ban_eos(scores, eos_ids: list[int]):
    """The row may not end yet (minimum length): its eos tokens become impossible. An eos id outside
    the vocabulary (GPT2Config's default 50256 in a small model, or a negative one) is never generated
    and bans nothing, as in Hugging Face (not the token -1 would index from the end)."""
    V = scores.size(-1)
    scores = scores.clone()
    scores[:, [i for i in eos_ids if 0 <= i < V]] = float("-inf")
    return scores


def force_token(scores, token_ids: list[int]):
    """Only `token_ids` remain possible (score 0, everything else -inf)."""
    forced = torch.full_like(scores, float("-inf"))
    forced[:, token_ids] = 0
    return forced


def top_k_filter(scores, k: int, min_keep: int = 1):
    """Keep the k best scores (at least min_keep), -inf the rest (Fan et al. 2018, https://arxiv.org/abs/1805.04833)."""
    k = min(max(k, min_keep), scores.size(-1))
    kth_best = scores.topk(k, dim=-1).values[..., -1:]  # (N, 1)
    return scores.masked_fill(scores < kth_best, float("-inf"))


def top_p_filter(scores, p: float, min_keep: int = 1):
    """Nucleus sampling (Holtzman et al. 2019, https://arxiv.org/abs/1904.09751): keep the smallest set
    of best tokens whose probability reaches p. Summed from the *worst* token up, a token goes when
    the mass at or below it is still <= 1 - p; this is Hugging Face's order of summation, so the
    same tokens survive to the last bit."""
    ascending, order = scores.sort(dim=-1)
    mass_below = ascending.softmax(dim=-1).cumsum(dim=-1)  # (N, V)
    drop_sorted = mass_below <= 1 - p
    drop_sorted[..., -min_keep:] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return scores.masked_fill(drop, float("-inf"))


def build_processors(*, repetition: float, ignore_before, no_repeat_ngram_size: int, eos: list[int],
                     min_length: int, forced_bos: int | None, forced_eos: list[int] | None, max_length: int,
                     do_sample: bool, temperature: float, top_k: int, top_p: float,
                     min_keep: int) -> list[Processor]:
    """The processors in Hugging Face's order; the sampling ones only when sampling."""
    procs: list[Processor] = []
    if repetition != 1.0:
        procs.append(lambda seq, s: repetition_penalty(s, seq, repetition, ignore_before))
    if no_repeat_ngram_size > 0:
        procs.append(lambda seq, s: ban_repeated_ngrams(s, seq, no_repeat_ngram_size))
    if min_length > 0 and eos:  # rows shorter than min_length (prompt or start token counted) may not end
        procs.append(lambda seq, s: ban_eos(s, eos) if seq.size(1) < min_length else s)
    if forced_bos is not None:  # the first generated token of an encoder-decoder (e.g. mBART's language id)
        procs.append(lambda seq, s: force_token(s, [forced_bos]) if seq.size(1) == 1 else s)
    if forced_eos:  # the last token allowed by max_length must end the sequence
        procs.append(lambda seq, s: force_token(s, forced_eos) if seq.size(1) == max_length - 1 else s)
    if do_sample:
        if temperature != 1.0:
            procs.append(lambda seq, s: s / temperature)
        if top_k > 0:
            procs.append(lambda seq, s: top_k_filter(s, top_k, min_keep))
        if top_p < 1.0:
            procs.append(lambda seq, s: top_p_filter(s, top_p, min_keep))
    return procs


def _apply(procs: list[Processor], sequences: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    for proc in procs:
        scores = proc(sequences, scores)
    return scores


def _token_list(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


# --------------------------------------------------------------------------------------------
# The mixin
# --------------------------------------------------------------------------------------------
class GenerationMixin:
    is_encoder_decoder = False

    def generation_defaults(self) -> GenerationConfig:
        """What `generate` falls back on, resolved as Hugging Face resolves it: the checkpoint's
        generation_config.json when it had one (then config.json's generation fields count for nothing),
        else the generation fields and special tokens of config.json, else the global defaults."""
        if self.generation_config is not None:
            return GenerationConfig.from_dict(self.generation_config, "generation_config.json")
        return GenerationConfig.from_dict(self.config.to_dict(), "config.json")

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int | None = UNSET,
        do_sample: bool | None = UNSET,
        num_beams: int | None = UNSET,
        temperature: float | None = UNSET,
        top_k: int | None = UNSET,
        top_p: float | None = UNSET,
        eos_token_id: int | list[int] | None = UNSET,
        pad_token_id: int | None = UNSET,
        length_penalty: float | None = UNSET,
        early_stopping: bool | str | None = UNSET,
        no_repeat_ngram_size: int | None = UNSET,
        repetition_penalty: float | None = UNSET,
        num_return_sequences: int | None = UNSET,
        generator: torch.Generator | None = None,
        *,
        max_length: int | None = UNSET,
        min_length: int | None = UNSET,
        min_new_tokens: int | None = UNSET,
        forced_bos_token_id: int | None = UNSET,
        forced_eos_token_id: int | list[int] | None = UNSET,
        decoder_start_token_id: int | None = UNSET,
        cache_implementation: str | None = UNSET,
        **other,
    ) -> torch.Tensor:
        """Generate new tokens per row; returns token ids (rows * num_return_sequences, L).

        Every setting not passed comes from the checkpoint (`generation_defaults`); one passed as None
        takes Hugging Face's global default (for a token id: none); the meaning of each is in
        GenerationConfig. Lengths: max_new_tokens wins over max_length (which counts the
        prompt, or the decoder start token); with neither anywhere, 20 new tokens within the model's
        positions. min_new_tokens wins over min_length alike. pad_token_id falls back to eos, as in
        Hugging Face. Beam search scores a finished hypothesis as sum(log p) / generated_length**length_penalty;
        early_stopping=True stops an input once it has num_beams finished hypotheses, False stops it
        when no running beam can still beat the worst of them at its current length, "never" when
        none could at any length. `generator` makes sampling reproducible without touching the
        global RNG. Without attention_mask, a decoder-only prompt is masked where it holds
        pad_token_id (unless pad equals eos), as Hugging Face does. cache_implementation="static"
        decodes on a preallocated key/value cache (the same tokens; a compiled model captures one
        graph for all steps). On the CPU the first call stores the model's Linear weights in (in, out)
        memory order (`modeling.store_linear_weights_input_major`: same values and Parameters, faster
        decoding) and leaves them so: `save_pretrained` writes them as before, but code that needs
        contiguous weights (`safetensors.torch.save_file(model.state_dict())`, `.view`) calls
        `.contiguous()` first. Generate on the CPU before an optimizer holds state for these weights,
        never mid-training with a fused optimizer: PyTorch's fused AdamW (`fused=True`) assumes a
        parameter, its gradient and its state share one memory order, and after the re-layout mixes up
        elements silently (GPT-2, 3 AdamW steps with a `generate` after the first: weights 3.2e-2 off
        the run without it; `fused=False`: identical).
        """
        if input_ids is None:  # (a default only so that Hugging Face's spelling, inputs=, is named)
            raise TypeError("generate() needs input_ids, the prompt's token ids (B, T)"
                            + (": Hugging Face's inputs= is input_ids= here" if "inputs" in other else ""))
        if other:
            refuse_other_arguments(other)
        explicit = {k: v for k, v in dict(
            max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=num_beams, temperature=temperature,
            top_k=top_k, top_p=top_p, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
            length_penalty=length_penalty, early_stopping=early_stopping, no_repeat_ngram_size=no_repeat_ngram_size,
            repetition_penalty=repetition_penalty, num_return_sequences=num_return_sequences, max_length=max_length,
            min_length=min_length, min_new_tokens=min_new_tokens, forced_bos_token_id=forced_bos_token_id,
            forced_eos_token_id=forced_eos_token_id, decoder_start_token_id=decoder_start_token_id,
            cache_implementation=cache_implementation,
        ).items() if v is not UNSET}
        global_defaults = GenerationConfig()
        settings = dataclasses.replace(self.generation_defaults(), **{
            k: getattr(global_defaults, k) if v is None else v for k, v in explicit.items()})
        self._check_settings(settings, explicit)
        check_ids(input_ids, self.config.vocab_size)  # the forward passes inside skip their checks
        if input_ids.device.type == "cpu":  # decoding multiplies a few rows at a time: the layout MKL reads fastest
            # Permanent, and wrong for a fused optimizer whose state already exists (the docstring above).
            store_linear_weights_input_major(self)
        if attention_mask is not None and not isinstance(attention_mask, torch.Tensor):
            raise TypeError(f"attention_mask must be a torch.Tensor like input_ids, got a "
                            f"{type(attention_mask).__name__}; convert it with torch.tensor(...) (minibert's "
                            "tokenizer returns tensors; Hugging Face's does with return_tensors=\"pt\")")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has "
                             f"{tuple(input_ids.shape)}; pass the mask the tokenizer returned with these ids")
        eos = _token_list(settings.eos_token_id)
        pad = settings.pad_token_id
        if pad is None and eos:
            pad = eos[0]
            vocab = self._decoder_vocab_size()
            if settings.num_beams == 1 and not 0 <= pad < vocab and any(0 <= e < vocab for e in eos):
                # a row that ends on another eos is fed pad_token_id from then on (beam search only writes it)
                raise ValueError(f"pad_token_id is not set, so rows that end are filled with the first eos id, {pad}, "
                                 f"which is not a token id of this model (0..{vocab - 1}) and cannot be fed back; "
                                 "pass pad_token_id=..., or list an eos id of the vocabulary first")
        start = 1 if self.is_encoder_decoder else input_ids.size(1)  # the output's length before any new token
        new_tokens = self._new_tokens(settings, start, explicit)
        min_length = start + settings.min_new_tokens if settings.min_new_tokens is not None else settings.min_length
        if min_length > start + new_tokens:
            logger.warning("min_length %d is past the longest output (%d tokens): no row can end with eos",
                           min_length, start + new_tokens)
        inferred = None
        if attention_mask is None and not self.is_encoder_decoder:
            attention_mask = inferred = _infer_attention_mask(input_ids, pad, eos)
        if attention_mask is not None and not bool(attention_mask.ne(0).any(dim=1).all()):
            # Nothing to condition on: the attention over the prompt (source) is empty, and what comes out
            # depends on how a fully masked row is handled (Hugging Face's differs), not on the input.
            empty = attention_mask.ne(0).any(dim=1).logical_not().nonzero().flatten().tolist()
            what = "source" if self.is_encoder_decoder else "prompt"
            given = "" if inferred is None else f" (inferred: they are all pad_token_id {pad})"
            raise ValueError(f"attention_mask masks every token of row(s) {empty}{given}: that {what} has no real "
                             "token to generate from; drop the row or mark its tokens with 1")
        self._check_generation_length(input_ids, attention_mask, new_tokens)
        sequences, state = self._generation_setup(input_ids, attention_mask, new_tokens,
                                                  self._decoder_start(settings))

        # Left padding must not count as "already generated" for the repetition penalty.
        ignore_before = None
        if not self.is_encoder_decoder and not bool(attention_mask.all()):
            ignore_before = attention_mask.ne(0).int().argmax(dim=1)  # index of each row's first real token
        num_beams, num_return_sequences = settings.num_beams, settings.num_return_sequences
        copies = max(num_beams, num_return_sequences)
        if copies > 1:  # each input becomes `copies` consecutive rows
            sequences = sequences.repeat_interleave(copies, dim=0)
            state = {k: v.repeat_interleave(copies, dim=0) if v is not None else None for k, v in state.items()}
            ignore_before = ignore_before.repeat_interleave(copies, dim=0) if ignore_before is not None else None

        max_length = start + new_tokens
        # Beam sampling keeps enough tokens that a beam can continue after every eos is drawn.
        min_keep = (len(eos) + 1 if eos else 2) if num_beams > 1 else 1
        procs = build_processors(
            repetition=settings.repetition_penalty, ignore_before=ignore_before,
            no_repeat_ngram_size=settings.no_repeat_ngram_size, eos=eos, min_length=min_length,
            forced_bos=settings.forced_bos_token_id,
            forced_eos=_token_list(settings.forced_eos_token_id) or None,
            max_length=max_length, do_sample=settings.do_sample, temperature=settings.temperature,
            top_k=settings.top_k, top_p=settings.top_p, min_keep=min_keep,
        )
        past = None  # the dynamic cache starts empty and grows
        if settings.cache_implementation == "static":
            past = self._static_cache(sequences.size(0), max_length, state)
        if num_beams == 1:
            return self._greedy_or_sample(sequences, state, past, max_length, procs, settings.do_sample, eos, pad,
                                          generator)
        return self._beam_search(sequences, state, past, max_length, procs, num_beams, settings.do_sample, eos, pad,
                                 settings.length_penalty, settings.early_stopping, num_return_sequences, generator)

    def _check_settings(self, settings: GenerationConfig, explicit: dict) -> None:
        """The first setting out of range, as a ValueError; one the checkpoint set is named as such."""
        for name, message in settings.problems(self._decoder_vocab_size()):
            if name in explicit:
                raise ValueError(message)
            source = "generation_config.json" if self.generation_config is not None else "config.json"
            raise ValueError(f"{message} (set by the checkpoint's {source}): pass {name}=... to generate to "
                             f"override it, or correct {source}")

    def _new_tokens(self, settings: GenerationConfig, start: int, explicit: dict) -> int:
        """How many tokens each row may add: max_new_tokens, else max_length - start, else Hugging Face's
        default of 20 within the model's positions."""
        if settings.max_new_tokens is not None:
            return settings.max_new_tokens
        if settings.max_length is not None:
            if settings.max_length <= start:
                given = "" if "max_length" in explicit else " (from the checkpoint)"
                what = "prompt" if not self.is_encoder_decoder else "decoder start token"
                raise ValueError(f"max_length={settings.max_length}{given} leaves no room after the {start}-token "
                                 f"{what}; pass max_new_tokens (it counts new tokens only) or a max_length above "
                                 f"{start}")
            return settings.max_length - start
        return max(min(start + DEFAULT_NEW_TOKENS, self._position_limit()) - start, 1)

    def _decoder_vocab_size(self) -> int:
        """The ids the decoder reads and writes (eos, pad, the start token are checked against it)."""
        return self.config.vocab_size

    def _decoder_start(self, settings: GenerationConfig) -> int | None:
        """An encoder-decoder's first decoder token: decoder_start_token_id, else bos (as Hugging Face)."""
        if not self.is_encoder_decoder:
            return None
        token = settings.decoder_start_token_id if settings.decoder_start_token_id is not None \
            else settings.bos_token_id
        if token is None:
            raise ValueError("generation needs decoder_start_token_id (or bos_token_id) for the decoder's first "
                             "token; pass decoder_start_token_id=... or set it in config.json")
        vocab = self._decoder_vocab_size()
        if not _whole(token) or not 0 <= token < vocab:  # numpy's ints too, as for the other token ids
            raise ValueError(f"decoder_start_token_id {token!r} is not a token id of this model (0..{vocab - 1}); "
                             "pass the id of its start token (BART's is eos, 2)")
        return int(token)

    # -- one row per input (or per sample) ------------------------------------------------------
    def _greedy_or_sample(self, sequences, state, past, max_length, procs, do_sample, eos, pad, generator):
        N, start = sequences.shape
        out = sequences.new_full((N, max_length), pad if pad is not None else 0)  # written in place, never grown
        out[:, :start] = sequences
        eos_ids = torch.tensor(eos, device=sequences.device) if eos else None
        running = torch.ones(N, dtype=torch.bool, device=sequences.device)
        tokens, length = sequences, start
        while length < max_length:
            logits, past = self._generation_forward(tokens, state, past, length - tokens.size(1))
            # the cache now holds `length` positions
            scores = _apply(procs, out[:, :length], logits.float())  # (N, V)
            if do_sample:
                next_tokens = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)  # (N,)
            else:
                next_tokens = scores.argmax(dim=-1)
            if eos_ids is not None:
                next_tokens = torch.where(running, next_tokens, pad)  # ended rows are padded
            out[:, length] = next_tokens
            length += 1
            if eos_ids is not None:
                running &= ~torch.isin(next_tokens, eos_ids)
                if not bool(running.any()):
                    break
            tokens = next_tokens[:, None]  # (N, 1)
        return out[:, :length]

    # -- beam search ----------------------------------------------------------------------------
    def _beam_search(self, sequences, state, past, max_length, procs, K, do_sample, eos, pad, length_penalty,
                     early_stopping, num_return_sequences, generator):
        """Vectorised beam search with the semantics of Hugging Face's (transformers v5).

        Per input it keeps K running beams and K finished hypotheses (`Beams`). Each step has three
        phases, one function each: score every beam x token and keep the best 2K candidates (more with
        several eos ids, so K survive even if the best ones all end: `_candidates`); continue the best
        K that did not end (`_continue_beams`); offer the ended ones among the top K to the finished
        set with their length-normalised score (`_offer_finished`).
        """
        N, start = sequences.shape
        B = N // K
        device = sequences.device
        eos_ids = torch.tensor(eos, device=device) if eos else None
        n_candidates = max(2, 1 + len(eos)) * K
        # Rows that end early are filled as Hugging Face fills them: with pad_token_id, but with the
        # first eos when pad_token_id is 0 (it tests the pad id for truth), and -1 without eos.
        beams = Beams.start(sequences.view(B, K, start), max_length, fill=(pad or eos[0]) if eos else -1)
        batch_offset = torch.arange(B, device=device)[:, None] * K  # (B, 1): beam k of input b is row b * K + k
        improvable = torch.ones(B, 1, dtype=torch.bool, device=device)

        tokens, length = sequences, start
        while True:
            logits, past = self._generation_forward(tokens, state, past, length - tokens.size(1))  # (N, V)
            # the cache holds `length` positions
            log_probs = F.log_softmax(logits.float(), dim=-1)
            log_probs = _apply(procs, beams.running[:, :, :length].reshape(N, length), log_probs)  # (N, V)
            cand = _candidates(beams, log_probs, length, max_length, n_candidates, eos_ids, do_sample, generator)
            origin = _continue_beams(beams, cand, K) + batch_offset  # (B, K): the rows the new beams continue
            _offer_finished(beams, cand, K, length, start, length_penalty, early_stopping, improvable)

            past = self._reorder_cache(past, origin.view(-1))  # (N,): row i now continues row origin[i]
            length += 1  # the next forward adds one position to the cache
            improvable = improvable & _can_still_improve(beams.running_scores, beams.finished_scores, beams.finished_ok,
                                                         length, start, max_length, length_penalty, early_stopping)
            all_done = bool(cand.ends.all()) or not bool(improvable.any())
            if all_done or (early_stopping is True and bool(beams.finished_ok.all())):
                break
            tokens = beams.running[:, :, length - 1].reshape(N, 1)

        R = num_return_sequences
        out_len = int(beams.finished_len[:, :R].max())  # the longest returned hypothesis sets the width
        return beams.finished[:, :R, :out_len].reshape(B * R, out_len)


@dataclass
class Beams:
    """Beam search's state per input: K running beams and the K best finished hypotheses."""

    running: torch.Tensor  # (B, K, L) tokens of the beams still going
    running_scores: torch.Tensor  # (B, K) their sums of log-probabilities
    finished: torch.Tensor  # (B, K, L) the best ended hypotheses
    finished_scores: torch.Tensor  # (B, K) sum(log p) / length**penalty; NEG: an empty slot
    finished_ok: torch.Tensor  # (B, K) bool: the slot holds a hypothesis
    finished_len: torch.Tensor  # (B, K) its length

    @classmethod
    def start(cls, prompt: torch.Tensor, max_length: int, fill: int) -> "Beams":
        """K copies of each prompt (B, K, L0): only the first may expand at step one (they are identical)."""
        B, K, start = prompt.shape
        running = prompt.new_full((B, K, max_length), fill)  # (B, K, L)
        running[:, :, :start] = prompt
        scores = torch.zeros(B, K, device=prompt.device)
        scores[:, 1:] = NEG
        zeros = torch.zeros(B, K, dtype=torch.long, device=prompt.device)
        return cls(running, scores, running.clone(), torch.full((B, K), NEG, device=prompt.device), zeros.bool(),
                   zeros)


class Candidates(NamedTuple):
    scores: torch.Tensor  # (B, C) sum of log-probabilities, C = 2K or more
    beam: torch.Tensor  # (B, C) which running beam each extends
    sequences: torch.Tensor  # (B, C, L) that beam with the new token written at the current length
    ends: torch.Tensor  # (B, C) bool: the new token is an eos, or the length is reached


def _candidates(beams: Beams, log_probs: torch.Tensor, length: int, max_length: int, n: int, eos_ids, do_sample: bool,
                generator) -> Candidates:
    """Phase 1: score every beam x token (the beam's sum of log-probabilities plus the token's) and keep the
    best n (or n sampled)."""
    B, K, _ = beams.running.shape
    V = log_probs.size(-1)
    totals = (log_probs.view(B, K, V) + beams.running_scores[..., None]).view(B, K * V)  # (B, K*V)
    if do_sample:
        picks = torch.multinomial(totals.softmax(dim=-1), n, generator=generator)
        # best first, as the top-n are: the beams kept are the best of those drawn, not the first drawn (Hugging
        # Face's BeamSearchScorer sorted them; transformers 5.0-5.23 did not, 5.24 sorts them again)
        scores, order = totals.gather(1, picks).sort(dim=-1, descending=True)  # (B, n)
        picks = picks.gather(1, order)
    else:
        scores, picks = totals.topk(n, dim=-1)  # (B, n)
    beam, token = picks // V, picks % V  # (B, n): which beam, which token
    sequences = beams.running.gather(1, beam[..., None].expand(-1, -1, max_length)).clone()  # (B, n, L)
    sequences[:, :, length] = token
    ends = torch.full_like(token, length + 1 >= max_length, dtype=torch.bool)  # (B, n)
    if eos_ids is not None:
        ends |= torch.isin(token, eos_ids)
    return Candidates(scores, beam, sequences, ends)


def _continue_beams(beams: Beams, cand: Candidates, K: int) -> torch.Tensor:
    """Phase 2: the best K candidates that go on become the running beams (ended ones cannot).
    Returns (B, K): the beam (0 .. K-1 within its input) each new beam continues. Ended ones are pushed
    down by NEG, as Hugging Face does, not to -inf: the same numbers, so exact ties (forced eos tokens)
    go to the same candidates as there (topk's order among ties depends on the other values)."""
    alive_scores = cand.scores + cand.ends.to(cand.scores.dtype) * NEG
    best = alive_scores.topk(K, dim=-1).indices  # (B, K)
    beams.running = cand.sequences.gather(1, best[..., None].expand(-1, -1, cand.sequences.size(-1)))  # (B, K, L)
    beams.running_scores = alive_scores.gather(1, best)  # (B, K)
    return cand.beam.gather(1, best)


def _offer_finished(beams: Beams, cand: Candidates, K: int, length: int, start: int, length_penalty: float,
                    early_stopping, improvable: torch.Tensor) -> None:
    """Phase 3: ended candidates among the top K compete for the finished set on sum(log p) / length**penalty;
    a candidate that may not enter is pushed down by NEG for each reason, in Hugging Face's order (the
    same numbers, so exact ties break alike): below every hypothesis, level with the empty slots (NEG),
    and if it takes one its slot stays "not ok"."""
    among_top_k = torch.arange(cand.ends.size(1), device=cand.ends.device) < K  # only the top K may finish
    new_ok = cand.ends & among_top_k  # (B, C)
    normed = cand.scores / ((length + 1 - start) ** length_penalty)
    full = beams.finished_ok.all(dim=-1, keepdim=True) & (early_stopping is True)  # (B, 1)
    for barred in (full, ~improvable, ~new_ok):
        normed = normed + barred.to(normed.dtype) * NEG
    all_scores = torch.cat([beams.finished_scores, normed], dim=1)  # (B, K + C)
    keep = all_scores.topk(K, dim=-1).indices  # (B, K)
    L = cand.sequences.size(-1)
    beams.finished = torch.cat([beams.finished, cand.sequences], dim=1).gather(1, keep[..., None].expand(-1, -1, L))
    beams.finished_scores = all_scores.gather(1, keep)
    beams.finished_ok = torch.cat([beams.finished_ok, new_ok], dim=1).gather(1, keep)
    new_len = torch.full_like(new_ok, length + 1, dtype=torch.long)
    beams.finished_len = torch.cat([beams.finished_len, new_len], dim=1).gather(1, keep)


def _can_still_improve(running_scores, finished_scores, finished_ok, length, start, max_length, length_penalty,
                       early_stopping):
    """(B, 1): could the best running beam still beat the worst finished hypothesis? Its sum of log
    probabilities only falls, so judged at its current length the answer is exact when a longer beam
    scores no better (length_penalty <= 0). With a positive length penalty a longer beam divides by
    more and may still win: "never" judges it at the longest length it could reach (exact), True and
    False at its current length, Hugging Face's heuristic, which may stop an input that could still
    have improved."""
    if early_stopping == "never" and length_penalty > 0.0:
        best_length = max_length - start
    else:
        best_length = length - start
    best_possible = running_scores[:, :1] / (best_length**length_penalty)
    worst_finished = torch.where(finished_ok, finished_scores.min(dim=1, keepdim=True).values, NEG)
    return (best_possible > worst_finished).any(dim=-1, keepdim=True)


def _infer_attention_mask(input_ids: torch.Tensor, pad: int | None, eos: list[int]) -> torch.Tensor:
    """Hugging Face's rule for a decoder-only prompt given without a mask: pad tokens are padding,
    unless the pad id is also an eos id (then nothing can be told apart and all tokens count)."""
    if pad is None or pad in eos or not bool((input_ids == pad).any()):
        return torch.ones_like(input_ids)
    return input_ids.ne(pad).long()

"""Text generation for every minibert decoder: greedy, sampling and beam search, on the KV cache.

`GenerationMixin.generate` returns what Hugging Face's `generate` returns, token for token: for a
decoder-only model the prompt followed by the new tokens, for an encoder-decoder model the decoder
sequence starting with its start token. Rows that end (an eos token) are padded with pad_token_id.
Shapes: B inputs, K beams, N = B * K (or B * num_return_sequences) rows decoded together,
L tokens so far, V vocabulary.

A model mixes this in and provides a small protocol:

    is_encoder_decoder                  class attribute (True for BART)
    _check_generation_length(input_ids, max_new_tokens)   ValueError when the positions run out
    _generation_setup(input_ids, attention_mask, max_new_tokens) -> (sequences, state)
        the rows the output starts with (B, L0), and a dict of per-row tensors (batch first, or
        None) that every decoding step needs: an attention mask, positions, encoder states ...
    _generation_forward(tokens, state, past_key_values) -> (logits (N, V), past_key_values)
        run the new tokens (the whole prompt first, then one token per row) against the cache
    _reorder_cache(past_key_values, beam_idx) -> past_key_values
        beam search: row i of the next step continues row beam_idx[i] of this one

One step of decoding, whatever the strategy:

    logits ─► processors (repetition penalty, no-repeat n-grams, forced bos/eos) ─► [sampling:
    temperature, top-k, top-p] ─► argmax | multinomial | top-2K over K beams ─► append, stop at eos
"""

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from minibert.modeling import check_ids

logger = logging.getLogger(__name__)

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (sequences (N, L), scores (N, V)) -> scores
NEG = -1.0e9  # "impossible" score for beam bookkeeping: finite, so sums and comparisons stay well defined


# --------------------------------------------------------------------------------------------
# Score processors. Each takes the sequences so far (N, L) and the next-token scores (N, V).
# --------------------------------------------------------------------------------------------
def repetition_penalty(scores, sequences, penalty: float, ignore_before: torch.Tensor | None = None):
    """CTRL's penalty (Keskar et al. 2019, https://arxiv.org/abs/1909.05858): a token already in the
    row has its score divided by `penalty` if positive, multiplied if negative (so it always drops
    for penalty > 1). `ignore_before` (N,): leading positions (left padding) that do not count."""
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


def build_processors(*, repetition: float, ignore_before, no_repeat_ngram_size: int, forced_bos: int | None,
                     forced_eos: list[int] | None, max_length: int, do_sample: bool, temperature: float,
                     top_k: int, top_p: float, min_keep: int) -> list[Processor]:
    """The processors in Hugging Face's order; the sampling ones only when sampling."""
    procs: list[Processor] = []
    if repetition != 1.0:
        procs.append(lambda seq, s: repetition_penalty(s, seq, repetition, ignore_before))
    if no_repeat_ngram_size > 0:
        procs.append(lambda seq, s: ban_repeated_ngrams(s, seq, no_repeat_ngram_size))
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

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 20,
        do_sample: bool = False,
        num_beams: int = 1,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        length_penalty: float = 1.0,
        early_stopping: bool | str = False,
        no_repeat_ngram_size: int = 0,
        repetition_penalty: float = 1.0,
        num_return_sequences: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Generate up to `max_new_tokens` tokens per row; returns token ids (rows * num_return_sequences, L).

        eos_token_id / pad_token_id default to the config's (pad falls back to eos, as in Hugging
        Face). Beam search scores a finished hypothesis as sum(log p) / generated_length**length_penalty;
        early_stopping=True stops an input once it has num_beams finished hypotheses, False stops it
        when no running beam can still beat the worst of them at its current length, "never" when
        none could at any length. `generator` makes sampling reproducible without touching the
        global RNG. Without attention_mask, a decoder-only prompt is masked where it holds
        pad_token_id (unless pad equals eos), as Hugging Face does.
        """
        config = self.config
        check_ids(input_ids, config.vocab_size)  # the forward passes inside skip their checks
        eos = _token_list(eos_token_id if eos_token_id is not None else config.eos_token_id)
        pad = pad_token_id if pad_token_id is not None else config.pad_token_id
        if pad is None and eos:
            pad = eos[0]
        self._check_generate_arguments(input_ids, attention_mask, max_new_tokens, do_sample, num_beams, temperature,
                                       top_k, top_p, repetition_penalty, no_repeat_ngram_size, num_return_sequences,
                                       early_stopping, length_penalty)
        self._check_generation_length(input_ids, max_new_tokens)
        if attention_mask is None and not self.is_encoder_decoder:
            attention_mask = _infer_attention_mask(input_ids, pad, eos)
        sequences, state = self._generation_setup(input_ids, attention_mask, max_new_tokens)

        # Left padding must not count as "already generated" for the repetition penalty.
        ignore_before = None
        if not self.is_encoder_decoder and not bool(attention_mask.all()):
            ignore_before = attention_mask.ne(0).int().argmax(dim=1)  # index of each row's first real token
        copies = max(num_beams, num_return_sequences)
        if copies > 1:  # each input becomes `copies` consecutive rows
            sequences = sequences.repeat_interleave(copies, dim=0)
            state = {k: v.repeat_interleave(copies, dim=0) if v is not None else None for k, v in state.items()}
            ignore_before = ignore_before.repeat_interleave(copies, dim=0) if ignore_before is not None else None

        max_length = sequences.size(1) + max_new_tokens
        # Beam sampling keeps enough tokens that a beam can continue after every eos is drawn.
        min_keep = (len(eos) + 1 if eos else 2) if num_beams > 1 else 1
        procs = build_processors(
            repetition=repetition_penalty, ignore_before=ignore_before, no_repeat_ngram_size=no_repeat_ngram_size,
            forced_bos=getattr(config, "forced_bos_token_id", None),
            forced_eos=_token_list(getattr(config, "forced_eos_token_id", None)) or None,
            max_length=max_length, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
            min_keep=min_keep,
        )
        if num_beams == 1:
            return self._greedy_or_sample(sequences, state, max_length, procs, do_sample, eos, pad, generator)
        return self._beam_search(sequences, state, max_length, procs, num_beams, do_sample, eos, pad,
                                 length_penalty, early_stopping, num_return_sequences, generator)

    @staticmethod
    def _check_generate_arguments(input_ids, attention_mask, max_new_tokens, do_sample, num_beams, temperature,
                                  top_k, top_p, repetition_penalty, no_repeat_ngram_size, num_return_sequences,
                                  early_stopping, length_penalty) -> None:
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has "
                             f"{tuple(input_ids.shape)}; pass the mask the tokenizer returned with these ids")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if num_beams < 1 or num_return_sequences < 1:
            raise ValueError(f"num_beams ({num_beams}) and num_return_sequences ({num_return_sequences}) must be >= 1")
        if num_beams > 1 and num_return_sequences > num_beams:
            raise ValueError(f"num_return_sequences ({num_return_sequences}) cannot exceed num_beams ({num_beams}): "
                             "beam search returns its best beams; raise num_beams or lower num_return_sequences")
        if num_beams == 1 and not do_sample and num_return_sequences > 1:
            raise ValueError(f"greedy decoding returns one sequence per input, not {num_return_sequences}; "
                             "use do_sample=True or num_beams >= num_return_sequences")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}; 1.0 turns nucleus filtering off")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 turns top-k filtering off), got {top_k}")
        if do_sample and not temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {temperature}; "
                             "for the most likely tokens use do_sample=False")
        if not repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 = off), got {repetition_penalty}")
        if no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be >= 0 (0 = off), got {no_repeat_ngram_size}")
        if not math.isfinite(length_penalty):
            raise ValueError(f"length_penalty must be a finite number (1.0 = scores per token, 0 = summed "
                             f"log-probabilities), got {length_penalty}")
        if early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")

    # -- one row per input (or per sample) ------------------------------------------------------
    def _greedy_or_sample(self, sequences, state, max_length, procs, do_sample, eos, pad, generator):
        N, start = sequences.shape
        out = sequences.new_full((N, max_length), pad if pad is not None else 0)  # written in place, never grown
        out[:, :start] = sequences
        eos_ids = torch.tensor(eos, device=sequences.device) if eos else None
        running = torch.ones(N, dtype=torch.bool, device=sequences.device)
        past, tokens, length = None, sequences, start
        while length < max_length:
            logits, past = self._generation_forward(tokens, state, past)  # the cache now holds `length` positions
            scores = _apply(procs, out[:, :length], logits.float())  # (N, V)
            if do_sample:
                next_tokens = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
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
            tokens = next_tokens[:, None]
        return out[:, :length]

    # -- beam search ----------------------------------------------------------------------------
    def _beam_search(self, sequences, state, max_length, procs, K, do_sample, eos, pad, length_penalty,
                     early_stopping, num_return_sequences, generator):
        """Vectorised beam search with the semantics of Hugging Face's (transformers v5).

        Per input it keeps K running beams and K finished hypotheses. Each step scores every beam x
        token, keeps the best 2K candidates (more with several eos ids, so K survive even if the best
        ones all end), continues the best K that did not end, and offers the ended ones among the top
        K to the finished set with their length-normalised score.
        """
        N, start = sequences.shape
        B = N // K
        device = sequences.device
        eos_ids = torch.tensor(eos, device=device) if eos else None
        n_candidates = max(2, 1 + len(eos)) * K
        among_top_k = torch.arange(n_candidates, device=device) < K  # only the top K may finish this step
        batch_offset = torch.arange(B, device=device)[:, None] * K  # (B, 1): beam k of input b is row b * K + k

        running = sequences.new_full((B, K, max_length), pad if pad is not None else -1)  # (B, K, L)
        running[:, :, :start] = sequences.view(B, K, start)
        running_scores = torch.zeros(B, K, device=device)
        running_scores[:, 1:] = NEG  # all beams start identical: let only the first one expand at step one
        finished = running.clone()  # (B, K, L): the best K ended hypotheses of each input
        finished_scores = torch.full((B, K), NEG, device=device)  # NEG: an empty slot
        finished_ok = torch.zeros(B, K, dtype=torch.bool, device=device)
        finished_len = torch.zeros(B, K, dtype=torch.long, device=device)
        improvable = torch.ones(B, 1, dtype=torch.bool, device=device)

        past, tokens, length = None, sequences, start
        while True:
            # 1. Score every beam x token: the beam's sum of log-probabilities plus the token's.
            logits, past = self._generation_forward(tokens, state, past)  # (N, V); the cache holds `length` positions
            log_probs = F.log_softmax(logits.float(), dim=-1)
            log_probs = _apply(procs, running[:, :, :length].reshape(N, length), log_probs)  # (N, V)
            V = log_probs.size(-1)
            totals = (log_probs.view(B, K, V) + running_scores[..., None]).view(B, K * V)  # (B, K*V)
            if do_sample:
                picks = torch.multinomial(totals.softmax(dim=-1), n_candidates, generator=generator)
                cand_scores = totals.gather(1, picks)
            else:
                cand_scores, picks = totals.topk(n_candidates, dim=-1)  # (B, 2K)
            cand_beam, cand_token = picks // V, picks % V  # (B, 2K): which beam, which token
            cand_seqs = running.gather(1, cand_beam[..., None].expand(-1, -1, max_length)).clone()  # (B, 2K, L)
            cand_seqs[:, :, length] = cand_token
            ends = torch.full_like(cand_token, length + 1 >= max_length, dtype=torch.bool)  # (B, 2K)
            if eos_ids is not None:
                ends |= torch.isin(cand_token, eos_ids)

            # 2. The best K candidates that go on become the running beams (ended ones cannot).
            alive_scores = cand_scores.masked_fill(ends, float("-inf"))
            best = alive_scores.topk(K, dim=-1).indices  # (B, K)
            running = cand_seqs.gather(1, best[..., None].expand(-1, -1, max_length))  # (B, K, L)
            running_scores = alive_scores.gather(1, best)
            origin = cand_beam.gather(1, best) + batch_offset  # (B, K): rows they continue

            # 3. Ended candidates among the top K compete for the finished set on sum(log p) / length**penalty;
            # a candidate that may not enter scores -inf, below every slot (empty slots hold NEG).
            new_ok = ends & among_top_k  # (B, 2K)
            normed = cand_scores / ((length + 1 - start) ** length_penalty)
            closed = (finished_ok.all(dim=-1, keepdim=True) & (early_stopping is True)) | ~improvable  # (B, 1)
            normed = normed.masked_fill(closed | ~new_ok, float("-inf"))
            all_scores = torch.cat([finished_scores, normed], dim=1)  # (B, K + 2K)
            keep = all_scores.topk(K, dim=-1).indices  # (B, K)
            finished = torch.cat([finished, cand_seqs], dim=1).gather(1, keep[..., None].expand(-1, -1, max_length))
            finished_scores = all_scores.gather(1, keep)
            finished_ok = torch.cat([finished_ok, new_ok], dim=1).gather(1, keep)
            new_len = torch.full_like(new_ok, length + 1, dtype=torch.long)
            finished_len = torch.cat([finished_len, new_len], dim=1).gather(1, keep)

            past = self._reorder_cache(past, origin.view(-1))  # row i now continues row origin[i]
            length += 1  # the next forward adds one position to the cache
            improvable = improvable & _can_still_improve(running_scores, finished_scores, finished_ok, length, start,
                                                         max_length, length_penalty, early_stopping)
            all_done = bool(ends.all()) or not bool(improvable.any())
            if all_done or (early_stopping is True and bool(finished_ok.all())):
                break
            tokens = running[:, :, length - 1].reshape(N, 1)

        R = num_return_sequences
        out_len = int(finished_len[:, :R].max())  # the longest returned hypothesis sets the width
        return finished[:, :R, :out_len].reshape(B * R, out_len)


def _can_still_improve(running_scores, finished_scores, finished_ok, length, start, max_length, length_penalty,
                       early_stopping):
    """(B, 1): could the best running beam still beat the worst finished hypothesis? Its sum of log
    probabilities only falls, so with early_stopping=False it is judged at its current length; with
    "never" and a positive length penalty, at the longest length it could reach."""
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

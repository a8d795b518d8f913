"""Scaled dot-product attention: its masks, one eager reference, one fast path, one module around them.

Shapes: B batch, H heads, T_q / T_k query / key length, D head dim, E = H * D model width, N real tokens (packed).

    scores = q @ k^T * scale            (B, H, T_q, T_k)
    probs  = softmax(scores + mask)     masked keys get finfo.min, see the masks below
    out    = dropout(probs) @ v         (B, H, T_q, D)

`eager_attention` is the reference a reader can follow line by line. `sdpa_attention` hands the
same computation to `torch.nn.functional.scaled_dot_product_attention` (PyTorch's fused kernels);
tests/test_attention.py proves the two equal. Asking for the attention probabilities always takes
the eager path, because the fused kernels never materialise them. A mask, when there is one, is
always passed as an explicit `attn_mask`, never as `is_causal=True`: GPT-2 and BART's decoder pass
their causal mask even on full blocks without padding, and a padded BERT batch (unpad included) its
padding mask. PyTorch's FlashAttention backend takes no `attn_mask`, so on a GPU those calls run on
the memory-efficient or math kernels; only mask-free calls (BERT without padding, one query over
all keys) can reach flash. Read from the code; not measured on a GPU.
"""

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from minibert.nn.packing import Packing

ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
KVCache = tuple[torch.Tensor, torch.Tensor]  # (key, value), each (B, H, T_k, D)


# -- masks, built in one place with one convention --------------------------------------------------
# Convention: masks travel as boolean *keep* tensors (True = this query may look at this key),
# shaped to broadcast against attention scores (B, H, T_q, T_k). Right before the softmax they
# become one additive float mask (0 where kept, the dtype's most negative number elsewhere) so
# the eager path and the SDPA fast path see exactly the same numbers.
#
#     padding (B, T_k)  ->  (B, 1, 1, T_k)      every query may see every real key
#     causal  (T_q, T_k) -> (1, 1, T_q, T_k)    query i sees keys 0 .. i + past  (past = T_k - T_q)
#     filled  (T_q,), L  -> (1, 1, T_q, L)      a preallocated cache of L slots: the query at position p
#                                               sees slots 0 .. p (the later ones are empty)
#
# A row with no visible key at all (a left-pad query in a causal model) gets a uniform
# distribution over the masked keys instead of NaN, on both paths, which matches Hugging Face's additive
# masks (its eager path) in fp32 and bf16; Hugging Face's sdpa path gives such a row zeros instead
# (transformers 5.24, an all-padding BERT row). In fp16 such a row is finite, not always uniform (its
# scores + finfo.min round apart, and SDPA's kernel adds the mask in fp32), where Hugging Face's eager
# path can give NaN.


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T_k) of 1 = real token, 0 = padding  ->  boolean keep mask (B, 1, 1, T_k).
    None when nothing is padded: a mask of all ones changes nothing, and without one SDPA can use
    its unmasked kernels."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T_k)


def causal_mask(q_len: int, k_len: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean keep mask (1, 1, T_q, T_k): the queries are the last q_len positions of k_len."""
    past = k_len - q_len
    q_pos = torch.arange(past, k_len, device=device)[:, None]  # (T_q, 1)
    k_pos = torch.arange(k_len, device=device)[None, :]  # (1, T_k)
    return (k_pos <= q_pos)[None, None]  # (1, 1, T_q, T_k)


def filled_slots_mask(cache_position: torch.Tensor, length: int) -> torch.Tensor:
    """Boolean keep mask (1, 1, T_q, L) over a static cache of L slots, for queries at positions
    `cache_position` (T_q,): slots up to the query's own position hold its past and itself; the rest
    are not written yet. Built from a tensor, not an int, so its shape is the same at every step."""
    slots = torch.arange(length, device=cache_position.device)
    return (slots[None, :] <= cache_position[:, None])[None, None]  # (1, 1, T_q, L)


def combine(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Logical AND of keep masks that broadcast together; None means 'keep everything'."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m
    return out


def to_additive(keep: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Boolean keep mask -> additive float mask (0 kept, finfo(dtype).min masked). Both attention paths
    convert their mask here, so this is where a mask of another form is refused: a (B, T) attention_mask
    passed as it is broadcasts as (1, 1, B, T), which with B = T_q ran and gave each query the padding of
    another row; a 0/1 integer mask failed in torch.where with no word of the fix."""
    if keep is None:
        return None
    if keep.dtype != torch.bool or keep.dim() != 4:
        if keep.dim() == 4:  # the right shape, another dtype
            fix = "convert it with keep.bool() (a Hugging Face additive float mask: keep = mask == 0)"
        elif keep.dim() == 2 and keep.dtype == torch.bool:
            fix = "a (B, T) attention_mask: padding_mask(attention_mask); a (T_q, T_k) mask: keep[None, None]"
        else:
            fix = ("turn a (B, T) attention_mask of 1s and 0s into one with padding_mask(attention_mask) "
                   "(combine() it with causal_mask for a decoder)")
        raise ValueError(f"attention takes a boolean keep mask of 4 dimensions that broadcasts to (B, H, T_q, T_k), "
                         f"got a {keep.dtype} tensor of shape {tuple(keep.shape)}; {fix}")
    zero = torch.zeros((), dtype=dtype, device=keep.device)
    return torch.where(keep, zero, torch.finfo(dtype).min)


# -- attention -------------------------------------------------------------------------------------
class StaticCache:
    """Keys and values preallocated for a whole generation (Hugging Face's StaticCache, in brief).

    One tuple of tensors per layer, each (B, H, L, D) with L the longest output (GPT-2: key, value;
    BART: self-attention key, value, then cross-attention key, value, (B, H, S, D) over the S source
    tokens, computed once). A step writes its new keys/values in place at `cache_position` (write_static)
    and attends over all L slots, the ones not written yet masked (filled_slots_mask, above, which the
    model combines with the padding mask). No tensor changes shape from one decoding step to the next,
    so torch.compile captures one graph for them all (and CUDA graphs can replay it).

        dynamic:  (B, H, P, D) ─► cat ─► (B, H, P + 1, D)       a new, longer tensor every step
        static:   (B, H, L, D)  ─► index_copy_ at P ─► same tensor, slot P filled
    """

    def __init__(self, layers: list[tuple[torch.Tensor, ...]]):
        self.layers = layers

    def __getitem__(self, layer: int) -> tuple[torch.Tensor, ...]:
        return self.layers[layer]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def max_length(self) -> int:
        return self.layers[0][0].size(2)

    def reorder_(self, beam_idx: torch.Tensor, tensors_per_layer: int) -> "StaticCache":
        """Beam search: row i takes row beam_idx[i]'s keys/values, in place (the tensors stay the ones a
        compiled step was captured with); only each layer's first `tensors_per_layer` tensors move."""
        for layer in self.layers:
            for tensor in layer[:tensors_per_layer]:
                tensor.copy_(tensor.index_select(0, beam_idx))
        return self


def write_static(cache: KVCache, k: torch.Tensor, v: torch.Tensor, cache_position: torch.Tensor) -> KVCache:
    """Write new keys/values (B, H, T, D) into a static cache's slots `cache_position` (T,); returns the
    whole cache (B, H, L, D), to be attended with filled_slots_mask."""
    key_cache, value_cache = cache
    key_cache.index_copy_(2, cache_position, k.to(key_cache.dtype))
    value_cache.index_copy_(2, cache_position, v.to(value_cache.dtype))
    return key_cache, value_cache


def cache_length(past_key_values: tuple | None) -> int:
    """Positions already cached: a decoder's cache holds one tuple per layer whose first tensor is
    the self-attention key (B, H, P, D) (GPT-2: (key, value); BART: (key, value, cross key, cross value)).
    A StaticCache gives its L slots, written or not: its positions are cache_position's, not this."""
    if past_key_values is not None and not isinstance(past_key_values, tuple | list | StaticCache):
        raise TypeError(f"past_key_values is a {type(past_key_values).__name__}; minibert's decoders take their own "
                        "cache: the tuple (one (key, value, ...) per layer) a forward returns with use_cache=True, "
                        "or a StaticCache")
    return past_key_values[0][0].size(2) if past_key_values else 0


def eager_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    upcast: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention. q (B, H, T_q, D), k/v (B, H, T_k, D), keep a 4-dimensional boolean mask that
    broadcasts to (B, H, T_q, T_k). Returns the output (B, H, T_q, D) and the probabilities, before dropout
    (Hugging Face's eager paths return them after it: in training its attention maps are the dropped ones).
    upcast (GPT-2's reorder_and_upcast_attn, as Hugging Face's _upcast_and_reordered_attn): the scores and
    their softmax in fp32 with autocast off, in a half-precision model or under autocast (whose matmul would
    run in half precision again); the probabilities go back to v's dtype to weigh v. A no-op in fp32."""
    scale = q.size(-1) ** -0.5 if scale is None else scale
    with torch.autocast(q.device.type, enabled=False) if upcast else contextlib.nullcontext():
        q_, k_ = (q.float(), k.float()) if upcast else (q, k)
        scores = torch.matmul(q_, k_.transpose(-1, -2)) * scale  # (B, H, T_q, T_k)
        if keep is not None:
            scores = scores + to_additive(keep, scores.dtype)
            if scores.dtype == torch.float16:
                # clamped: in fp16 (finfo.min = -65504) a masked score below about -16 overflowed to -inf, a row
                # with no visible key whose every score did became NaN, and a left pad's NaN then reached every
                # real token through v. In fp32 and bf16 the sum never passes finfo.min, and the clamp would
                # only keep one more (B, H, T_q, T_k) tensor for backward.
                scores = scores.clamp_min(torch.finfo(scores.dtype).min)
        probs = scores.softmax(dim=-1)
    probs = probs.to(v.dtype) if upcast else probs
    out = torch.matmul(F.dropout(probs, p=dropout_p) if dropout_p > 0 else probs, v)  # (B, H, T_q, D)
    return out, probs


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """The same computation through PyTorch's fused kernel. The mask is passed additively (not as
    a boolean) so a query with no visible key behaves as in the eager path instead of giving NaN (in
    fp32 and bf16; in fp16 the CPU kernel adds the mask in fp32, where finfo(fp16).min lowers every
    score alike, so such a row gets the unmasked softmax instead, finite).
    Its gradient does not: the CPU kernel's backward for such a query (a left-padded GPT-2 row's first
    pads, an all-padding row) is T_k times the eager one, because the log-sum-exp absorbs log T_k into
    the mask's finfo.min. With a gradient to take and such a row in the mask, the CPU runs the eager
    path. (On a GPU the kernels differ and the check would cost a device sync per layer: not measured
    there, no GPU having been lent to this project. Under torch.compile the data-dependent check would
    split the graph at every attention call, so compiled training keeps SDPA's gradient for such rows.)"""
    if (keep is not None and q.device.type == "cpu" and torch.is_grad_enabled() and not torch.compiler.is_compiling()
            and (q.requires_grad or k.requires_grad or v.requires_grad) and not bool(keep.any(-1).all())):
        return eager_attention(q, k, v, keep, dropout_p, scale)[0]
    mask = to_additive(keep, q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor | None,
    *,
    implementation: str,
    dropout_p: float = 0.0,
    scale: float | None = None,
    need_probs: bool = False,
    upcast: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dispatch to the eager or the SDPA path; returns (output, probabilities or None). upcast: see
    eager_attention (it takes the eager path)."""
    if implementation == "eager" or need_probs or upcast:
        return eager_attention(q, k, v, keep, dropout_p, scale, upcast)
    if implementation == "sdpa":
        return sdpa_attention(q, k, v, keep, dropout_p, scale), None
    raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {implementation!r}")


class AttentionOutput(NamedTuple):
    output: torch.Tensor  # (B, T_q, E), or (N, E) when packed
    probs: torch.Tensor | None  # (B, H, T_q, T_k) when asked for (the eager path returns them anyway)
    cache: KVCache | None  # keys and values to reuse at the next decoding step


class MultiHeadAttention(nn.Module):
    """Projections around `attend`, used by BERT/RoBERTa (self-attention) and BART (self- and
    cross-attention). Parameter names follow BART's checkpoints: q_proj, k_proj, v_proj, out_proj.

    Multi-head, scaled dot-product attention as in Vaswani et al. 2017 (https://arxiv.org/abs/1706.03762,
    section 3.2): H heads of width D = E / H attend to different subspaces at about the cost of one head
    of width E, and `attend` scales the scores by 1/sqrt(D), because dot products of D terms grow with D
    and would push the softmax into its flat, near one-hot region, where its gradients vanish.

    Self-attention with a cache appends the new keys/values to the cached ones; cross-attention
    computes the encoder's keys/values once and reuses the cache afterwards.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, implementation: str = "sdpa"):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embedding size {embed_dim} is not divisible by {num_heads} attention heads")
        if implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {implementation!r}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.implementation = implementation
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def _heads(self, x: torch.Tensor, packing: Packing | None = None) -> torch.Tensor:
        if packing is not None:
            x = packing.unpack(x)  # (N, E) -> (B, T, E)
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def forward(
        self,
        hidden_states: torch.Tensor,
        keep: torch.Tensor | None = None,
        key_value_states: torch.Tensor | None = None,
        past_key_value: KVCache | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        packing: Packing | None = None,
        cache_position: torch.Tensor | None = None,
    ) -> AttentionOutput:
        """hidden_states (B, T, E), or (N, E) real tokens only when `packing` is given (self-attention
        without a cache): the projections then skip padding and only the scores see (B, T).
        cache_position (T,): past_key_value is a static cache's (key, value); write into it there."""
        if packing is not None and (key_value_states is not None or past_key_value is not None):
            raise ValueError("packed (unpadded) inputs work for self-attention without a cache only")
        q = self._heads(self.q_proj(hidden_states), packing)  # (B, H, T_q, D)
        B, _, T, _ = q.shape
        if key_value_states is not None and past_key_value is not None:
            k, v = past_key_value  # cross-attention: encoder keys/values were projected once
        else:
            source = hidden_states if key_value_states is None else key_value_states
            k = self._heads(self.k_proj(source), packing)  # (B, H, T_k, D)
            v = self._heads(self.v_proj(source), packing)
            if cache_position is not None:  # self-attention while decoding, static cache: write in place
                k, v = write_static(past_key_value, k, v, cache_position)
            elif past_key_value is not None:  # self-attention while decoding: append to the cache
                k = torch.cat([past_key_value[0], k], dim=2)
                v = torch.cat([past_key_value[1], v], dim=2)
        out, probs = attend(
            q, k, v, keep,
            implementation=self.implementation,
            dropout_p=self.dropout if self.training else 0.0,
            need_probs=output_attentions,
        )
        out = out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)  # (B, T_q, E)
        if packing is not None:
            out = packing.pack(out)  # (N, E)
        return AttentionOutput(self.out_proj(out), probs, (k, v) if use_cache else None)

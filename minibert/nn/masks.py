"""Attention masks, built in one place with one convention.

Convention: masks travel as boolean *keep* tensors (True = this query may look at this key),
shaped to broadcast against attention scores (B, H, T_q, T_k). Right before the softmax they
become one additive float mask (0 where kept, the dtype's most negative number elsewhere) so
the eager path and the SDPA fast path see exactly the same numbers.

    padding (B, T_k)  ->  (B, 1, 1, T_k)      every query may see every real key
    causal  (T_q, T_k) -> (1, 1, T_q, T_k)    query i sees keys 0 .. i + past  (past = T_k - T_q)
    filled  (T_q,), L  -> (1, 1, T_q, L)      a preallocated cache of L slots: the query at position p
                                              sees slots 0 .. p (the later ones are empty)

A row with no visible key at all (a left-pad query in a causal model) gets a uniform
distribution over the masked keys instead of NaN, which matches Hugging Face's additive masks.
"""

import torch


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T_k) of 1 = real token, 0 = padding  ->  boolean keep mask (B, 1, 1, T_k).
    None when nothing is padded: a mask of all ones changes nothing, and without one SDPA can use
    its unmasked kernels."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


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
    """Boolean keep mask -> additive float mask (0 kept, finfo(dtype).min masked)."""
    if keep is None:
        return None
    zero = torch.zeros((), dtype=dtype, device=keep.device)
    return torch.where(keep, zero, torch.finfo(dtype).min)

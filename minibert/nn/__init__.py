"""Building blocks shared by every model family: attention (with its masks), feed-forward (with its
activations), packing, losses."""

from minibert.nn.attention import (
    ATTN_IMPLEMENTATIONS,
    AttentionOutput,
    KVCache,
    MultiHeadAttention,
    StaticCache,
    attend,
    cache_length,
    causal_mask,
    combine,
    eager_attention,
    filled_slots_mask,
    padding_mask,
    sdpa_attention,
    to_additive,
    write_static,
)
from minibert.nn.feed_forward import ACTIVATIONS, FeedForward, apply_chunked, get_activation
from minibert.nn.packing import Packing

__all__ = [
    "ACTIVATIONS",
    "ATTN_IMPLEMENTATIONS",
    "AttentionOutput",
    "FeedForward",
    "KVCache",
    "MultiHeadAttention",
    "Packing",
    "StaticCache",
    "apply_chunked",
    "attend",
    "cache_length",
    "causal_mask",
    "combine",
    "eager_attention",
    "filled_slots_mask",
    "get_activation",
    "padding_mask",
    "sdpa_attention",
    "to_additive",
    "write_static",
]

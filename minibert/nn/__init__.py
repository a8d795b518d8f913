"""Building blocks shared by every model family: activations, masks, attention, feed-forward."""

from minibert.nn.activations import ACTIVATIONS, get_activation
from minibert.nn.attention import (
    ATTN_IMPLEMENTATIONS,
    AttentionOutput,
    KVCache,
    MultiHeadAttention,
    StaticCache,
    attend,
    cache_length,
    eager_attention,
    sdpa_attention,
    write_static,
)
from minibert.nn.feed_forward import FeedForward, apply_chunked
from minibert.nn.masks import causal_mask, combine, filled_slots_mask, padding_mask, to_additive
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

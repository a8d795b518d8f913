"""Building blocks shared by every model family: activations, masks, attention, feed-forward."""

from minibert.nn.activations import ACTIVATIONS, get_activation
from minibert.nn.attention import (
    ATTN_IMPLEMENTATIONS,
    AttentionOutput,
    KVCache,
    MultiHeadAttention,
    attend,
    cache_length,
    eager_attention,
    sdpa_attention,
)
from minibert.nn.feed_forward import FeedForward, apply_chunked
from minibert.nn.masks import causal_mask, combine, padding_mask, to_additive
from minibert.nn.packing import Packing

__all__ = [
    "ACTIVATIONS",
    "ATTN_IMPLEMENTATIONS",
    "AttentionOutput",
    "FeedForward",
    "KVCache",
    "MultiHeadAttention",
    "Packing",
    "apply_chunked",
    "attend",
    "cache_length",
    "causal_mask",
    "combine",
    "eager_attention",
    "get_activation",
    "padding_mask",
    "sdpa_attention",
    "to_additive",
]

"""Position-wise feed-forward network and sequence chunking.

    x -> up (E -> F) -> activation -> [activation dropout] -> down (F -> E) -> dropout

Each position is transformed independently, so the sequence can be cut into chunks and run one
chunk at a time: the (B, T, F) intermediate, usually the largest activation in the block,
then only exists for one chunk (Reformer, https://arxiv.org/abs/2001.04451, section 3).
"""

from collections.abc import Callable

import torch
from torch import nn

from minibert.nn.activations import get_activation


def apply_chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk_size: int, dim: int = -2):
    """fn(x) computed over chunks of `chunk_size` along `dim` (default: the positions of (B, T, E) or of
    packed (N, E)); chunk_size 0 means no chunking."""
    if chunk_size <= 0 or x.size(dim) <= chunk_size:
        return fn(x)
    return torch.cat([fn(chunk) for chunk in x.split(chunk_size, dim=dim)], dim=dim)


class FeedForward(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        inner_dim: int,
        activation: str,
        dropout: float = 0.0,
        activation_dropout: float = 0.0,
        chunk_size: int = 0,
    ):
        super().__init__()
        self.up = nn.Linear(embed_dim, inner_dim)
        self.act = get_activation(activation)
        self.activation_dropout = nn.Dropout(activation_dropout)
        self.down = nn.Linear(inner_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.chunk_size = chunk_size

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.activation_dropout(self.act(self.up(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, E) or packed (N, E), same shape out
        return apply_chunked(self._forward, x, self.chunk_size)

"""Position-wise feed-forward network, its activation functions, and sequence chunking.

    x -> up (E -> F) -> activation -> [activation dropout] -> down (F -> E) -> dropout

Each position is transformed independently, so the sequence can be cut into chunks and run one
chunk at a time (Reformer, https://arxiv.org/abs/2001.04451, section 3). This lowers peak memory in
inference only (under no_grad): the (B, T, F) intermediate, usually the largest activation in the
block, then exists for one chunk at a time. In training, autograd keeps every chunk's intermediates
for the backward, so chunking saves no memory (a 2-layer BERT, 8 x 128, F = 1024: 22.90 MiB saved for
backward with and without chunk_size_feed_forward=16), as with Hugging Face's chunking; and with
dropout on, the chunks draw other masks than one unchunked call from the same seed (equal only in
distribution).
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# -- activations -----------------------------------------------------------------------------------
# Activation functions by the names Hugging Face configs use (`hidden_act`, `activation_function`).
#
# Each is a plain function so a reader sees the formula. `get_activation` is the one place that
# turns a config string into a callable, and the one place that rejects an unknown name.


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU, x * Phi(x), as in the original BERT (https://arxiv.org/abs/1606.08415)."""
    return F.gelu(x)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation used by OpenAI GPT-2 and Google's BERT code, written out as they wrote it."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    """gelu_new's tanh approximation, factored: 0.7978845608 = sqrt(2 / pi)."""
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def gelu_pytorch_tanh(x: torch.Tensor) -> torch.Tensor:
    """The same tanh approximation, in PyTorch's own kernel."""
    return F.gelu(x, approximate="tanh")


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """The GELU paper's other approximation (https://arxiv.org/abs/1606.08415, section 2): rougher than
    the tanh one (up to 2e-2 from exact GELU, against 5e-4); OpenAI's CLIP uses it."""
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": gelu,
    "gelu_new": gelu_new,
    "gelu_fast": gelu_fast,
    "gelu_pytorch_tanh": gelu_pytorch_tanh,
    "quick_gelu": quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation function {name!r}; use one of {sorted(ACTIVATIONS)} "
            "(set hidden_act / activation_function in the config)"
        )
    return ACTIVATIONS[name]


# -- the feed-forward network -----------------------------------------------------------------------
def apply_chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk_size: int, dim: int = -2):
    """fn(x) computed over chunks of `chunk_size` along `dim` (default: the positions of (B, T, E) or of
    packed (N, E)); chunk_size 0 means no chunking. Saves memory only without autograd (inference):
    in training every chunk's intermediates are kept for the backward, as if unchunked."""
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

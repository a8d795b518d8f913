"""Activation functions by the names Hugging Face configs use (`hidden_act`, `activation_function`).

Each is a plain function so a reader sees the formula. `get_activation` is the one place that
turns a config string into a callable, and the one place that rejects an unknown name.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU, x * Phi(x), as in the original BERT (https://arxiv.org/abs/1606.08415)."""
    return F.gelu(x)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation used by OpenAI GPT-2 and Google's BERT code, written out as they wrote it."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def gelu_pytorch_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
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

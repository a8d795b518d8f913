"""Mixout: dropout that falls back to the pretrained weights instead of to zero.

Lee, Cho & Kang 2020, https://arxiv.org/abs/1909.11299. In training, each input neuron's
column of a Linear weight is replaced, with probability p, by the same column of the pretrained
weight u; the result is rescaled so its expectation is the current weight w:

    mixout(w) = ((1 - M) * u + M * w - p * u) / (1 - p),   M ~ Bernoulli(1 - p) per column

Why: it acts as an adaptive L2 penalty pulling w toward u (not toward 0 as dropout's implicit
penalty does), which stabilises fine-tuning of large models on small data sets. As in the
paper, mixout replaces dropout, so the model's dropout is switched off when it is applied.

What `train.py --mixout p` mixes (`apply_mixout`, called once the model is built, after any
--reinit_layers / --reinit_pooler): every module whose type is exactly nn.Linear, the attention
projections, feed-forwards, pooler and task head alike. u is each layer's weight at that moment:
the pretrained weight for a pretrained layer, the fresh random one for the new head and for
re-initialised layers (the paper does the same for its new output layer). In evaluation the
layer uses w itself.
"""

import torch
import torch.nn.functional as F
from torch import nn


class MixoutFunction(torch.autograd.Function):
    """Forward as above; backward: d mixout / d w = M / (1 - p), nothing flows to u."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, target: torch.Tensor, p: float, mask: torch.Tensor) -> torch.Tensor:
        if p == 1.0:
            ctx.save_for_backward(torch.zeros_like(mask))
            return target.clone()
        ctx.save_for_backward(mask / (1.0 - p))
        return ((1.0 - mask) * target + mask * weight - p * target) / (1.0 - p)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (scale,) = ctx.saved_tensors
        return grad_output * scale, None, None, None


def mixout(weight: torch.Tensor, target: torch.Tensor, p: float, training: bool = True,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Mix `weight` (out, in) with `target` column-wise with probability p (identity in eval)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"the mixout probability p must be in [0, 1], got {p}")
    if target.shape != weight.shape:
        raise ValueError(f"mixout target has shape {tuple(target.shape)} but the weight has {tuple(weight.shape)}")
    if not training or p == 0.0:
        return weight
    columns = weight.shape[-1]
    keep = torch.rand(columns, device=weight.device, generator=generator) >= p  # (in,)
    mask = keep.to(weight.dtype).expand_as(weight)  # (out, in)
    return MixoutFunction.apply(weight, target.to(weight.dtype), p, mask)


class MixLinear(nn.Linear):
    """A Linear layer whose weight goes through mixout toward a frozen copy of its start value.
    Same parameters and state-dict keys as nn.Linear, so checkpoints save and load unchanged."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.1,
                 target: torch.Tensor | None = None):
        super().__init__(in_features, out_features, bias)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"the mixout probability p must be in [0, 1], got {p}")
        self.p = p
        start = self.weight.detach().clone() if target is None else target.detach().clone()
        self.register_buffer("target", start, persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, p: float) -> "MixLinear":
        """Wrap an existing layer: its own Parameter objects are kept (optimizers stay valid)."""
        mix = cls.__new__(cls)
        nn.Module.__init__(mix)
        mix.in_features, mix.out_features, mix.p = linear.in_features, linear.out_features, p
        mix.weight, mix.bias = linear.weight, linear.bias
        # the layer's mode too: a fresh Module trains, and inside a model in eval mode (from_pretrained returns
        # one) it mixed at random on every call until the next model.train() / model.eval()
        mix.train(linear.training)
        mix.register_buffer("target", linear.weight.detach().clone(), persistent=False)
        return mix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, mixout(self.weight, self.target, self.p, self.training), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mixout={self.p}"


def disable_dropout(model: nn.Module) -> int:
    """Set every dropout probability to 0: nn.Dropout modules and float `dropout` attributes
    (minibert's attention keeps its probability dropout as a float). Returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
            count += 1
        elif isinstance(getattr(module, "dropout", None), float):
            module.dropout = 0.0
            count += 1
    return count


def apply_mixout(model: nn.Module, p: float) -> int:
    """Swap every nn.Linear for a MixLinear mixing toward its current weights, and turn dropout off.
    Call it right after loading the pretrained weights. Returns the number of layers swapped."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"--mixout must be a probability in [0, 1], got {p}")
    swapped = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, child_name, MixLinear.from_linear(child, p))
                swapped += 1
    disable_dropout(model)
    return swapped

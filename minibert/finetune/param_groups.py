"""Optimizer parameter groups, built from one visible rule.

The rule (as in nanoGPT): a parameter is weight-decayed iff it is a matrix (p.dim() >= 2).
Biases and LayerNorm weights are vectors and are never decayed; decaying a LayerNorm gain
toward zero fights the normalisation itself (BERT, https://arxiv.org/abs/1810.04805, and
every Hugging Face example exclude them). Every other grouping (layer-wise learning-rate
decay, a separate head learning rate, prior weight decay) refines these groups, never
replaces the rule.
"""

from torch import nn


def decays(name: str, param: nn.Parameter) -> bool:
    """The one no-decay rule: matrices decay; biases and LayerNorm weights do not."""
    return param.dim() >= 2


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Two groups: decayed matrices and undecayed vectors (frozen parameters are left out)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": weight_decay, "lr": lr},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0, "lr": lr},
    ]
    return [g for g in groups if g["params"]]

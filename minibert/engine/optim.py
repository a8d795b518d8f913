"""AdamW (https://arxiv.org/abs/1711.05101) over the parameter groups of the one no-decay rule.

Decoupled weight decay: AdamW shrinks the weights directly (w -= lr * wd * w) instead of adding
wd * w to the gradient, where Adam's per-parameter scaling would weaken it unevenly. The groups
come from minibert.finetune.param_groups (matrices decay; biases and LayerNorm weights do not),
or from any refinement of them (layer-wise learning-rate decay) passed as `param_groups`.
"""

import torch
from torch import nn

from minibert.engine.arguments import TrainingArguments
from minibert.finetune.param_groups import param_groups as default_param_groups


def build_optimizer(
    model: nn.Module, args: TrainingArguments, param_groups: list[dict] | None = None
) -> torch.optim.AdamW:
    """AdamW with the args' betas, epsilon, learning rate and weight decay. `param_groups`, when
    given, replaces the two default groups (each group may carry its own lr and weight_decay)."""
    groups = (
        param_groups if param_groups is not None else default_param_groups(model, args.learning_rate, args.weight_decay)
    )
    if not groups:
        raise ValueError("the model has no trainable parameters; unfreeze some (requires_grad=True) before training")
    on_cuda = next(p for g in groups for p in g["params"]).is_cuda
    return torch.optim.AdamW(
        groups,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
        fused=on_cuda or None,  # one kernel for all parameters on GPU; PyTorch's default (foreach) elsewhere
    )

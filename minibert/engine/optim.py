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
    groups = None if isinstance(groups, dict) else list(groups)  # (a generator is read more than once below)
    if groups is None or any(not isinstance(g, dict) or "params" not in g for g in groups):
        # Parameters themselves, which torch.optim also takes, failed below with "'Parameter' object is not a
        # mapping"; one group not in a list, with "'str' object is not a mapping"
        raise ValueError("param_groups must be a list of groups, dicts with the group's tensors under \"params\" "
                         "([{\"params\": [...], \"lr\": ...}]), not the parameters themselves; leave it out for "
                         "the two groups of the no-decay rule (minibert.finetune.param_groups)")
    # Each group's parameters as a list: torch.optim takes any iterable (`model.encoder.parameters()`, as its docs
    # show), and a generator read once here to find the device reached AdamW without its first parameter, which
    # then never trained
    groups = [{**g, "params": [g["params"]] if torch.is_tensor(g["params"]) else list(g["params"])} for g in groups]
    if not any(g["params"] for g in groups):  # (groups given, all empty, stopped below with a bare StopIteration)
        if param_groups is not None:
            raise ValueError("param_groups hold no parameter; put the parameters to train in their \"params\"")
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

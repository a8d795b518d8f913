"""Prior weight decay: decay toward the pretrained weights, not toward zero.

Lee, Cho & Kang 2020 (the Mixout paper), https://arxiv.org/abs/1909.11299, section 3:
the decoupled decay step  w <- w - lr * lambda * w  becomes  w <- w - lr * lambda * (w - w0),
where w0 is the weight when fine-tuning starts.

Why: pulling pretrained weights toward zero erases what pretraining learned; pulling them toward
w0 keeps the fine-tuned model near the pretrained one, which the paper finds more stable than
ordinary weight decay on small data. Wraps any optimizer: the groups' own weight_decay is taken
over (set to 0 in the inner optimizer) so the decay is applied once.
"""

import torch
from torch.optim import Optimizer

from minibert.finetune.optimizers import OptimizerWrapper


class PriorWD(OptimizerWrapper):
    """`PriorWD(AdamW(groups))`: each group's weight_decay now pulls toward the start weights."""

    def __init__(self, optimizer: Optimizer):
        super().__init__(optimizer)
        # The pull toward w0 is the groups' weight_decay: with none, the wrapper held no prior and every step
        # was the inner optimizer's alone, with no word about it.
        if not any(group.get("weight_decay", 0.0) for group in self.param_groups):
            raise ValueError("--prior_wd with --weight_decay 0 pulls nothing toward the start weights (its strength "
                             "is each parameter group's weight_decay, and every group has 0); pass --weight_decay "
                             "> 0, or drop --prior_wd")
        for group in self.param_groups:
            group["prior_weight_decay"] = group.get("weight_decay", 0.0)
            group["weight_decay"] = 0.0
            if group["prior_weight_decay"]:
                for p in group["params"]:
                    self.wrapper_state[p]["prior"] = p.detach().clone()

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            decay = group["lr"] * group["prior_weight_decay"]
            if not decay:
                continue
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(p - self._tensor(p, "prior"), alpha=decay)
        return self.optimizer.step(closure)

    def distance_to_prior(self) -> float:
        """L2 distance of all decayed parameters from their start values (for a caller to log; the run does not)."""
        priors = [(p, self._tensor(p, "prior")) for p, s in self.wrapper_state.items() if "prior" in s]
        total = sum(float((p.detach() - prior).pow(2).sum()) for p, prior in priors)
        return total**0.5

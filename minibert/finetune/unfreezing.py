"""Gradual unfreezing: train the head first, then one more layer group from the top per stage.

Howard & Ruder 2018 (ULMFiT), https://arxiv.org/abs/1801.06146, section 3.3; T5 tried it too
(Raffel et al. 2020, section 3.5.1).

Why: at the start the new head is random and its gradients are noise; sent down into every
layer at once they overwrite pretrained features the task would have used (catastrophic
forgetting). Stage 0 trains the head alone (the pooler and classifier), stage s also the top s
blocks, and the embeddings come last, so each layer starts moving only once the layers above it
have settled. Stage = one epoch by default, as in the paper (under DDP, one epoch of this
process's share of the batches: Trainer.steps_per_epoch in engine/trainer.py).

It composes with LLRD and grouped rates: the optimizer is built over every parameter first,
with its depth's learning rate; a frozen parameter just has no gradient, which AdamW skips
(no update, no decay, no moment), until its stage comes. A parameter frozen before (for
example by --freeze_embeddings) stays frozen. A resumed run takes its stage back after its
first step.
"""

import logging

from torch import nn

logger = logging.getLogger(__name__)


class GradualUnfreezing:
    """A training callback; build it after the optimizer (whose groups need every parameter) and after
    the Trainer: DDP synchronises only the parameters that require a gradient when it wraps the model
    (and needs ddp_find_unused_parameters for the frozen ones)."""

    def __init__(self, model: nn.Module, steps_per_stage: int):
        if steps_per_stage < 1:
            raise ValueError(f"--unfreeze_stage_steps must be >= 1, got {steps_per_stage}")
        base = getattr(model, "base_model", model)
        if getattr(base, "embeddings", None) is None or getattr(base, "layers", None) is None:
            raise ValueError(f"--gradual_unfreezing: {type(model).__name__} has no base_model.embeddings / layers "
                             "to unfreeze group by group; drop the flag")
        self.groups = [*reversed(base.layers), base.embeddings]  # the order they thaw in: top block first
        self.trainable = {id(p): p.requires_grad for group in self.groups for p in group.parameters()}
        self.steps_per_stage = steps_per_stage
        self.stage = -1
        self.set_stage(0)

    def set_stage(self, stage: int) -> None:
        """Stage s: the head and the top s groups train."""
        for i, group in enumerate(self.groups):
            for p in group.parameters():
                p.requires_grad_(i < stage and self.trainable[id(p)])
        if self.stage >= 0:
            logger.info("gradual unfreezing: stage %d, the head and the top %d of %d layer groups train",
                        stage, stage, len(self.groups))
        self.stage = stage

    def on_step_end(self, trainer) -> None:
        stage = min(trainer.state.global_step // self.steps_per_stage, len(self.groups))
        if stage != self.stage:
            self.set_stage(stage)

    def on_train_begin(self, trainer) -> None:
        self.on_step_end(trainer)  # a resumed run starts at its checkpoint's stage, not at stage 0

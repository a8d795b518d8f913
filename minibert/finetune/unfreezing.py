"""Gradual unfreezing: train the head first, then one more layer group from the top per stage.

Howard & Ruder 2018 (ULMFiT), https://arxiv.org/abs/1801.06146, section 3.3; T5 tried it too
(Raffel et al. 2020, https://arxiv.org/abs/1910.10683, section 3.5.1).

Why: at the start the new head is random and its gradients are noise; sent down into every
layer at once they overwrite pretrained features the task would have used (catastrophic
forgetting). Stage 0 trains the head alone (the pooler and classifier), stage s also the top s
blocks, and the embeddings come last, so each layer starts moving only once the layers above it
have settled. Stage = one epoch by default, as in the paper (under DDP, one epoch of this
process's share of the batches: Trainer.steps_per_epoch in engine/trainer.py).

It composes with LLRD and grouped rates: the optimizer is built over every parameter first,
with its depth's learning rate; a frozen parameter just has no gradient, which AdamW skips
(no update, no decay, no moment), until its stage comes. A parameter frozen before (for
example by --freeze_embeddings) stays frozen. A resumed run takes its checkpoint's stage back
before its first step (`on_train_begin`).
"""

import logging

from torch import nn

from minibert.finetune.param_groups import embeddings_and_blocks

logger = logging.getLogger(__name__)


def check_optimizer_holds(optimizer, thawed_later: dict[str, nn.Parameter], callback: str) -> None:
    """Refuse an optimizer that lacks a parameter `callback` will thaw: built after the parameters were
    frozen, its groups left them out (param_groups skips frozen parameters), and once thawed they would get
    gradients that no step applies, training nothing with no word about it."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [name for name, p in thawed_later.items() if id(p) not in held]
    if missing:
        raise ValueError(f"{callback} thaws {len(missing)} parameter tensors that are in no group of the optimizer "
                         f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}), so they would never "
                         f"train; build the optimizer before the {callback} (its groups need every parameter it "
                         "thaws), as minibert.finetuning does")


class GradualUnfreezing:
    """A training callback; build it after the optimizer (whose groups need every parameter) and after
    the Trainer: DDP synchronises only the parameters that require a gradient when it wraps the model
    (and needs ddp_find_unused_parameters for the frozen ones)."""

    def __init__(self, model: nn.Module, steps_per_stage: int):
        if steps_per_stage < 1:
            raise ValueError(f"--unfreeze_stage_steps must be >= 1, got {steps_per_stage}")
        embeddings, layers = embeddings_and_blocks(model)  # (BERT's, GPT-2's, BART's: both stacks, decoder on top)
        self.groups = [*reversed(layers), embeddings]  # the order they thaw in: top block first
        self.trainable = {id(p): p.requires_grad for group in self.groups for p in group.parameters()}
        self.thawed_later = {n: p for n, p in model.named_parameters() if self.trainable.get(id(p))}
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
        if getattr(trainer, "optimizer", None) is not None:
            check_optimizer_holds(trainer.optimizer, self.thawed_later, "GradualUnfreezing")
        self.on_step_end(trainer)  # a resumed run starts at its checkpoint's stage, not at stage 0
        total = getattr(trainer, "total_steps", None)
        if total is not None and self.stage == 0 and total <= self.steps_per_stage:
            # The first group thaws after step steps_per_stage, so a run that ends by then trains the head
            # alone: a short trial run (--max_steps 10 under a 34-step epoch) did so without a word
            stage = max(1, total // (len(self.groups) + 1))  # every group thaws, the last stage trains them all
            logger.warning("--gradual_unfreezing: the run's %d steps end before the first layer group thaws (a "
                           "stage is %d steps: --unfreeze_stage_steps, one epoch by default), so only the head "
                           "trains; train for more steps, or pass --unfreeze_stage_steps %d to thaw all %d groups "
                           "in this run", total, self.steps_per_stage, stage, len(self.groups))

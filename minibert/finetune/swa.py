"""Stochastic weight averaging, with torch.optim.swa_utils.

Izmailov et al. 2018, https://arxiv.org/abs/1803.05407. After a fraction of training, the
learning rate is annealed to a constant `swa_lr` and the weights visited at every step are
averaged. `finetune` (minibert/finetuning.py) then evaluates the average beside the trainer's own
final model (the best checkpoint, under train.py) and keeps the average only if it scores better on
the validation set, the set every checkpoint is chosen on; a run with no validation set keeps the
average, SWA's own choice.

Why: with a constant, fairly high rate SGD circles a wide basin instead of settling at one edge
of it; the average lands nearer the basin's centre, which generalises better and is less
sensitive to the exact step at which training stops. (BERT has no BatchNorm, so the
`update_bn` pass that CNNs need is not required.)

Fits the engine's callbacks: `on_step_end(trainer)` averages (and, at the start step, hands the
learning rate over to `SWALR`, keeping each group's ratio, e.g. of layer-wise decay);
`on_train_end(trainer)` evaluates the averaged model with the trainer's eval_fn. A checkpoint saved
after the start holds the average (`swa_state.pt`: `on_save`) and the trainer saves SWALR's state as
its scheduler's, so `on_resume` puts both back before the engine loads that state: the run goes on
averaging exactly where it stopped.
"""

import logging
import math
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel

from minibert.checkpoint import load_torch_file
from minibert.finetune.optimizers import find_lookahead

logger = logging.getLogger(__name__)

STATE_FILE = "swa_state.pt"  # in a checkpoint directory: the averaged weights and how many were averaged


class SWA:
    def __init__(self, start: float = 0.75, swa_lr: float | None = None, anneal_steps: int = 10):
        """start: the fraction of the optimizer steps after which averaging begins (in [0, 1));
        swa_lr: the constant rate of the averaging phase for the groups that train at --learning_rate
        (default: --learning_rate / 2); every other group keeps its ratio to --learning_rate (a --head_lr
        twice --learning_rate gets 2 * swa_lr, a block that layer-wise decay slows by 0.5 gets swa_lr / 2);
        anneal_steps: steps of cosine annealing from the current rate to swa_lr."""
        if not 0.0 <= start < 1.0:
            raise ValueError(f"--swa_start is a fraction of training in [0, 1), got {start}")
        if swa_lr is not None and swa_lr <= 0:
            raise ValueError(f"--swa_lr must be positive, got {swa_lr}")
        self.start, self.swa_lr, self.anneal_steps = start, swa_lr, anneal_steps
        self.averaged: AveragedModel | None = None
        self.metrics: dict = {}

    def start_step(self, total_steps: int) -> int:
        return min(total_steps - 1, math.floor(self.start * total_steps))

    def on_step_end(self, trainer) -> None:
        if trainer.state.global_step < self.start_step(trainer.total_steps):
            return
        if self.averaged is None:
            self._take_over(trainer)
            logger.info("step %d: stochastic weight averaging starts", trainer.state.global_step)
        lookahead = find_lookahead(trainer.optimizer)
        if lookahead is None:
            self.averaged.update_parameters(trainer.model)
            return
        # Under Lookahead (--optim radam_lookahead) the model of a step is its slow weights, the ones the run's
        # evaluations read and its end returns (finetuning.LookaheadSlowWeights): averaging the fast weights, up
        # to k - 1 steps ahead of them, would compare an average of other points with the final model.
        with lookahead.slow_weights():
            self.averaged.update_parameters(trainer.model)

    def _take_over(self, trainer) -> None:
        """Start an average of the model, and from here on have the engine step SWALR instead of its
        own schedule."""
        self.averaged = AveragedModel(trainer.model)
        # Ratios to --learning_rate, the rate swa_lr stands for: not to the fastest group, which with a
        # --head_lr above --learning_rate is the head, and would slow every group by learning_rate / head_lr.
        base = trainer.args.learning_rate
        target = self.swa_lr if self.swa_lr is not None else base / 2
        ratios = [g.get("initial_lr", g["lr"]) / base for g in trainer.optimizer.param_groups]
        trainer.scheduler = SWALR(trainer.optimizer, swa_lr=[target * r for r in ratios],
                                  anneal_epochs=max(1, self.anneal_steps), anneal_strategy="cos")

    def on_save(self, trainer, directory: Path) -> None:
        if self.averaged is not None:
            torch.save(self.averaged.state_dict(), directory / STATE_FILE)  # tensors only: weights_only loads it

    def on_resume(self, trainer, directory: Path) -> None:
        """Before the engine restores the checkpoint: a checkpoint from the averaging phase gets the
        average back and SWALR in place of the schedule (whose state the checkpoint holds)."""
        if (directory / STATE_FILE).is_file():
            self._take_over(trainer)
            self.averaged.load_state_dict(load_torch_file(directory / STATE_FILE))

    def averaged_module(self) -> nn.Module:
        if self.averaged is None:
            raise ValueError("SWA never started: --swa_start is past the end of training")
        return self.averaged.module

    def on_train_end(self, trainer) -> None:
        if self.averaged is None or trainer.eval_fn is None:
            return
        module = self.averaged_module()
        module.eval()
        with torch.no_grad():
            self.metrics = trainer.eval_fn(module)
        logger.info("SWA model (%d steps averaged): %s", int(self.averaged.n_averaged), self.metrics)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into `model` (same architecture)."""
        model.load_state_dict(self.averaged_module().state_dict())

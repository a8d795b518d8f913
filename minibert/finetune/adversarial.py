"""Adversarial training on the word embeddings: FGM and PGD, as plug-ins around a training step.

FGM (Miyato et al. 2017, https://arxiv.org/abs/1605.07725): after the clean backward pass,
move the embedding matrix one step along its gradient, r = epsilon * g / ||g||, run the batch
again, add that adversarial gradient to the clean one, and put the embeddings back.
PGD (Madry et al. 2018, https://arxiv.org/abs/1706.06083): K smaller steps of size alpha, each
projected back into the ball ||r|| <= epsilon around the clean embeddings; only the last
step's gradient is added to the clean one.

Why: a text model cannot be attacked in token space (tokens are discrete), but its embeddings
can. Training on the worst nearby embedding smooths the loss surface around the training
points, which on small classification sets often buys a point or two of accuracy.

Both fit the engine's callback hook `on_backward_end(trainer, batch)` (after the clean backward,
before the optimizer step) through `trainer.compute_loss(batch) -> (loss, outputs)` and
`trainer.backward(loss)`; `step(loss_fn, backward)` takes the same two functions for any other loop.
Under gradient accumulation the embeddings' gradient after a micro-batch's backward also holds
the step's earlier micro-batches (and their attacks); the attack follows this micro-batch's own
gradient, so FGM keeps the gradient it left behind and subtracts it (`on_step_end` forgets it).
Under DDP that subtraction fails on a step's last micro-batch: its backward is the synchronised one,
after which the gradient is the average over the processes of all their micro-batches, so
accumulation on more than one process is refused (`on_train_begin`). Without accumulation every
process attacks along the same averaged gradient, that of the whole global batch.
"""

import logging
from collections.abc import Callable

import torch
from torch import nn

logger = logging.getLogger(__name__)


def find_embedding_parameters(model: nn.Module, name: str) -> dict[str, nn.Parameter]:
    """Trainable parameters whose name contains `name` (e.g. "word_embeddings")."""
    found = {n: p for n, p in model.named_parameters() if name in n and p.requires_grad}
    if not found:
        embedding_names = [
            f"{module_name}.{param_name}"
            for module_name, module in model.named_modules()
            if isinstance(module, nn.Embedding)
            for param_name, _ in module.named_parameters(recurse=False)
        ]
        frozen = [n for n, p in model.named_parameters() if name in n and not p.requires_grad]
        hint = (f"{frozen} match but are frozen (an attack needs embeddings that train: drop the option that "
                f"freezes them, --freeze_embeddings or --adapter_size)" if frozen
                else f"the embedding parameters are {embedding_names}")
        raise ValueError(f"no trainable parameter name contains {name!r}: {hint}")
    return found


class FGM:
    """Fast gradient method: one step of size epsilon along the normalised embedding gradient."""

    flag = "--fgm"  # the train.py flag that turns it on, for error messages

    def __init__(self, model: nn.Module, epsilon: float = 1.0, emb_name: str = "word_embeddings"):
        if epsilon <= 0:
            raise ValueError(f"FGM epsilon must be positive, got {epsilon}")
        self.model, self.epsilon = model, epsilon
        self.params = find_embedding_parameters(model, emb_name)
        self.backup: dict[str, torch.Tensor] = {}
        self.skipped = 0  # attacks skipped because the gradient norm was zero or not finite
        self.attempts = 0  # micro-batches that tried one (the run's end says how many were skipped)
        # the embeddings' gradient left by this optimizer step's earlier micro-batches (accumulation)
        self.earlier: dict[str, torch.Tensor] = {}

    @staticmethod
    def _direction(param: nn.Parameter, earlier: torch.Tensor | None = None) -> torch.Tensor | None:
        """g / ||g||, g the gradient less `earlier`; None when the norm is zero or not finite."""
        if param.grad is None:
            return None
        grad = param.grad if earlier is None else param.grad - earlier
        norm = torch.linalg.vector_norm(grad.float())
        if not torch.isfinite(norm) or norm == 0:
            return None
        return grad / norm

    def attack(self) -> bool:
        """Perturb the embeddings in place; False (and nothing changed) when no gradient is usable."""
        directions = {n: self._direction(p, self.earlier.get(n)) for n, p in self.params.items()}
        if any(d is None for d in directions.values()):
            self.skipped += 1
            return False
        for n, p in self.params.items():
            self.backup[n] = p.detach().clone()
            p.data.add_(directions[n], alpha=self.epsilon)
        return True

    def restore(self) -> None:
        """Put back the exact clean embeddings (a copy, not a subtraction: no rounding error)."""
        for n, p in self.params.items():
            if n in self.backup:
                p.data.copy_(self.backup.pop(n))

    def step(self, loss_fn: Callable[[], torch.Tensor], backward: Callable[[torch.Tensor], None]) -> bool:
        """Call after the clean backward: adds the adversarial gradient to the clean one."""
        if not self.attack():
            return False
        try:
            backward(loss_fn())
        finally:
            self.restore()
        return True

    def on_backward_end(self, trainer, batch) -> None:
        self.attempts += 1
        self.step(lambda: trainer.compute_loss(batch)[0], trainer.backward)
        if trainer.args.gradient_accumulation_steps > 1:  # the next micro-batch attacks with its own gradient
            self.earlier = {n: p.grad.detach().clone() for n, p in self.params.items() if p.grad is not None}

    def on_step_end(self, trainer) -> None:
        self.earlier = {}  # the optimizer step zeroed the gradients

    def on_train_end(self, trainer) -> None:
        if self.skipped:  # those micro-batches trained on the clean loss alone
            logger.warning("%s: %d of %d micro-batches had no usable embedding gradient (zero or not finite, as "
                           "after an fp16 overflow) and trained without the adversarial loss", self.flag,
                           self.skipped, self.attempts)

    def on_train_begin(self, trainer) -> None:
        world, accumulation = trainer.context.world_size, trainer.args.gradient_accumulation_steps
        if world > 1 and accumulation > 1:
            raise ValueError(
                f"{self.flag} with --gradient_accumulation_steps {accumulation} on {world} processes: on a step's "
                "last micro-batch DDP has already averaged the gradient over the processes, so the attack would "
                "not follow that micro-batch's own gradient; drop --gradient_accumulation_steps (a larger "
                "--per_device_train_batch_size, or more processes, gives the same batch) or train on one process"
            )


class PGD(FGM):
    """Projected gradient descent: K steps of size alpha, kept inside the epsilon ball."""

    flag = "--pgd_steps"

    def __init__(self, model: nn.Module, epsilon: float = 1.0, alpha: float = 0.3, steps: int = 3,
                 emb_name: str = "word_embeddings"):
        super().__init__(model, epsilon, emb_name)
        if alpha <= 0 or steps < 1:
            raise ValueError(f"PGD needs alpha > 0 and steps >= 1, got alpha={alpha}, steps={steps}")
        self.alpha, self.steps = alpha, steps
        self.grad_backup: dict[nn.Parameter, torch.Tensor | None] = {}

    def attack(self, first: bool = True) -> bool:
        """One ascent step of size alpha, then projection onto ||emb - clean|| <= epsilon."""
        # the first step follows this micro-batch's clean gradient; the later ones the adversarial
        # gradient alone (the intermediate backward passes start from zero)
        directions = {n: self._direction(p, self.earlier.get(n) if first else None) for n, p in self.params.items()}
        if any(d is None for d in directions.values()):
            if first:
                self.skipped += 1
            return False
        for n, p in self.params.items():
            if first:
                self.backup[n] = p.detach().clone()
            p.data.add_(directions[n], alpha=self.alpha)
            r = p.data - self.backup[n]
            norm = torch.linalg.vector_norm(r.float())
            if norm > self.epsilon:
                p.data.copy_(self.backup[n] + r * (self.epsilon / norm))
        return True

    def _save_grads(self) -> None:
        self.grad_backup = {p: None if p.grad is None else p.grad.clone() for p in self.model.parameters()
                            if p.requires_grad}

    def _restore_grads(self) -> None:
        for p, g in self.grad_backup.items():
            p.grad = g
        self.grad_backup = {}

    def step(self, loss_fn: Callable[[], torch.Tensor], backward: Callable[[torch.Tensor], None]) -> bool:
        if not self.attack(first=True):
            return False
        self._save_grads()
        try:
            for t in range(self.steps):
                last = t == self.steps - 1
                if last:
                    self._restore_grads()  # the final adversarial gradient lands on the clean one
                else:
                    self.model.zero_grad(set_to_none=True)  # intermediate gradients only steer the attack
                backward(loss_fn())
                if not last and not self.attack(first=False):
                    self._restore_grads()  # a dead gradient: add the current point's gradient instead
                    backward(loss_fn())
                    break
        finally:
            if self.grad_backup:
                self._restore_grads()
            self.restore()
        return True

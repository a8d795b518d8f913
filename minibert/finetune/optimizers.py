"""Optimizers people reach for when fine-tuning on small data, beside the engine's AdamW.

- BertAdam: Adam with decoupled weight decay and, as in the original BERT code, *without* the
  bias correction of the moment estimates (Mosbach et al. 2021, https://arxiv.org/abs/2006.04884;
  Zhang et al. 2020, https://arxiv.org/abs/2006.05987). Kept as an option to reproduce the
  instability it causes: step t moves by lr * (1 - beta1^t) / sqrt(1 - beta2^t) times Adam's
  normalised step, 3.2x at step 1 and 6.5x at step 10 with the usual betas, just when the task
  head is random. The fix is `correct_bias=True` (that is AdamW).
- RAdam + Lookahead (Liu et al. 2020, https://arxiv.org/abs/1908.03265; Zhang et al. 2019,
  https://arxiv.org/abs/1907.08610): RAdam rectifies the variance of the adaptive rate so no
  warm-up is needed (warm-up length is hard to set when an epoch is a few dozen steps); Lookahead
  keeps slow weights that move a fraction alpha toward the fast weights every k steps. The slow
  weights are the result (the paper's Algorithm 1 returns them) and the ones to evaluate:
  finetuning.py evaluates through `Lookahead.slow_weights` and ends the run with `close_cycle`.
- MADGRAD (Defazio & Jelassi 2021, https://arxiv.org/abs/2101.11075) from the `madgrad` package
  when it is installed (optional extra).
"""

import math
from collections import defaultdict
from contextlib import contextmanager

import torch
from torch.optim import Optimizer


class BertAdam(Optimizer):
    """Adam with decoupled weight decay; `correct_bias=False` is the original BERT update."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, correct_bias: bool = False):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid BertAdam settings lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      correct_bias=correct_bias))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                step_size = group["lr"]
                if group["correct_bias"]:
                    step_size *= math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
                    denom = v.sqrt().add_(group["eps"] * math.sqrt(1 - beta2 ** state["step"]))
                else:
                    denom = v.sqrt().add_(group["eps"])
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.addcdiv_(m, denom, value=-step_size)
        return loss


class OptimizerWrapper(Optimizer):
    """Base of optimizers that wrap another one (Lookahead, PriorWD): the inner optimizer's
    param_groups and state are shared, so schedulers, gradient scalers and checkpoints that
    look at `optimizer.param_groups` see the real ones."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"expected a torch.optim.Optimizer to wrap, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.defaults = optimizer.defaults
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state
        self._optimizer_step_pre_hooks = {}
        self._optimizer_step_post_hooks = {}
        self._optimizer_state_dict_pre_hooks = {}
        self._optimizer_state_dict_post_hooks = {}
        self._optimizer_load_state_dict_pre_hooks = {}
        self._optimizer_load_state_dict_post_hooks = {}
        self.wrapper_state: dict = defaultdict(dict)  # per parameter, the wrapper's own tensors

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.optimizer!r})"

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def _tensor(self, p: torch.Tensor, name: str) -> torch.Tensor:
        """The wrapper's tensor `name` for p, on p's device: the optimizer is built before the Trainer
        moves the model to its device, and the copies taken then stay on the CPU until first used."""
        tensor = self.wrapper_state[p][name]
        if tensor.device != p.device:
            tensor = self.wrapper_state[p][name] = tensor.to(p.device)
        return tensor

    def state_dict(self) -> dict:
        params = self._params()
        return {
            "optimizer": self.optimizer.state_dict(),
            "wrapper": {i: dict(self.wrapper_state[p]) for i, p in enumerate(params) if p in self.wrapper_state},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self.param_groups, self.state = self.optimizer.param_groups, self.optimizer.state
        params = self._params()
        for i, tensors in state_dict["wrapper"].items():
            p = params[int(i)]
            self.wrapper_state[p] = {k: v.to(p.device) if torch.is_tensor(v) else v for k, v in tensors.items()}


class Lookahead(OptimizerWrapper):
    """Every k inner steps: slow += alpha * (fast - slow); fast = slow.

    The slow weights are what a run returns (Zhang et al. 2019, Algorithm 1) and what its evaluations read (the
    authors' code, https://github.com/michaelrzhang/lookahead, swaps them in to evaluate: they "typically generalize
    better"; it swaps in the slow weights as they stand, where minibert evaluates them with the current cycle closed,
    as below, the model a run ending at that step returns).
    A run whose steps are not a multiple of k stops between two pulls, with fast weights up to k - 1 steps ahead:
    `close_cycle` ends that last cycle early, with the pull its k-th step would have made, so those steps count (the
    slow weights as they stood would drop them, and return a run shorter than k steps untrained). When the steps
    are a multiple of k, fast == slow already: nothing moves. `slow_weights()` lends the parameters those same
    weights for the time of an evaluation."""

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5):
        super().__init__(optimizer)
        if k < 1 or not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead needs k >= 1 and alpha in (0, 1], got k={k}, alpha={alpha}")
        self.k, self.alpha, self.inner_steps = k, alpha, 0
        for p in self._params():
            self.wrapper_state[p]["slow"] = p.detach().clone()

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.optimizer.step(closure)
        self.inner_steps += 1
        if self.inner_steps % self.k == 0:
            for p in self._params():
                slow = self._tensor(p, "slow")
                slow.add_(p - slow, alpha=self.alpha)
                p.copy_(slow)
        return loss

    def _closed(self, p: torch.Tensor) -> torch.Tensor:
        """p's slow weights after the pull that ends the current cycle (the arithmetic of step's pull)."""
        slow = self._tensor(p, "slow")
        return torch.add(slow, p - slow, alpha=self.alpha)

    @torch.no_grad()
    def close_cycle(self) -> None:
        """End the current cycle here, at the end of training: the slow weights take the pull that its k-th step would
        have made, and the parameters become them. Nothing moves right after a pull (fast == slow)."""
        if self.inner_steps % self.k == 0:
            return
        for p in self._params():
            closed = self._closed(p)
            self._tensor(p, "slow").copy_(closed)
            p.copy_(closed)

    @contextmanager
    def slow_weights(self):
        """Within the block, the parameters hold the slow weights that close_cycle would leave: the model a run
        ending at this step returns. The fast weights come back after it, bit for bit, so training goes on as if the
        block had not run (an evaluation: a resumed run still equals an uninterrupted one)."""
        if self.inner_steps % self.k == 0:  # just pulled: the parameters are the slow weights
            yield
            return
        params = self._params()
        with torch.no_grad():
            fast = [p.detach().clone() for p in params]
            for p in params:
                p.copy_(self._closed(p))
        try:
            yield
        finally:
            with torch.no_grad():
                for p, weights in zip(params, fast, strict=True):
                    p.copy_(weights)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "inner_steps": self.inner_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.inner_steps = state_dict["inner_steps"]


def find_lookahead(optimizer: Optimizer) -> Lookahead | None:
    """The Lookahead in a chain of wrappers (PriorWD(Lookahead(RAdam))), or None."""
    while optimizer is not None:
        if isinstance(optimizer, Lookahead):
            return optimizer
        optimizer = getattr(optimizer, "optimizer", None)
    return None


def radam_lookahead(params, lr: float = 1e-3, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                    eps: float = 1e-8, k: int = 5, alpha: float = 0.5) -> Lookahead:
    """RAdam with decoupled weight decay (as AdamW and BertAdam here) inside Lookahead. betas and eps are
    --adam_beta1/--adam_beta2/--adam_epsilon: without them a beta2 sweep under RAdam silently ran at 0.999."""
    return Lookahead(torch.optim.RAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                       decoupled_weight_decay=True), k=k, alpha=alpha)


def madgrad(params, lr: float = 1e-3, weight_decay: float = 0.0) -> Optimizer:
    try:
        from madgrad import MADGRAD
    except ImportError as err:
        raise ValueError("--optim madgrad needs the madgrad package: pip install madgrad "
                         "(or, in a clone of this repository, pip install -e '.[madgrad]')") from err
    return MADGRAD(params, lr=lr, weight_decay=weight_decay)


OPTIMIZERS = ("adamw", "bertadam", "radam_lookahead", "madgrad")


def build_finetune_optimizer(name: str, groups: list[dict], lr: float, weight_decay: float = 0.0,
                             betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> Optimizer:
    """One of OPTIMIZERS over prepared parameter groups (each group's lr / weight_decay win). betas and eps
    (--adam_beta1, --adam_beta2, --adam_epsilon) reach AdamW, BertAdam and RAdam; MADGRAD has no Adam moments."""
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if name == "bertadam":
        return BertAdam(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, correct_bias=False)
    if name == "radam_lookahead":
        return radam_lookahead(groups, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
    if name == "madgrad":
        return madgrad(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")

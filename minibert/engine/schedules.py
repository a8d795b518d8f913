"""Learning-rate schedules: each a multiplier of the peak learning rate as a function of the step.

    constant               1
    constant_with_warmup   ramp 0 -> 1 over warmup, then 1
    linear                 ramp up, then straight down to 0 after the last step (BERT's schedule)
    cosine                 ramp up, then half a cosine down to 0 (num_cycles=0.5)
    cosine_with_restarts   ramp up, then num_cycles cosines, each jumping back to 1 (SGDR,
                           https://arxiv.org/abs/1608.03983: restarts help escape a poor basin)
    polynomial             ramp up, then (1 - progress) ** power down to lr_end

Warmup exists because Adam's second-moment estimates are noisy in the first steps; a full
learning rate there can throw a transformer into a bad region it never leaves
(https://arxiv.org/abs/2002.04745). The multipliers match Hugging Face's get_scheduler
(tests/test_schedules.py checks every type against it).

Counting: the trainer steps the optimizer, then the scheduler, so update k (from 0) runs at the
multiplier of step k. The first update runs at 0 (with warmup), the peak is reached at update
`warmup_steps`, and the last update (N - 1 of N) runs at 1 / (N - warmup_steps) of the peak under
linear: the schedule's 0 is where it would go next.
"""

import math
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from minibert.engine.arguments import SCHEDULER_TYPES


def _warmup(step: int, warmup_steps: int) -> float:
    return step / max(1, warmup_steps)


def _constant(step: int, warmup_steps: int, total_steps: int) -> float:
    return 1.0


def _constant_with_warmup(step: int, warmup_steps: int, total_steps: int) -> float:
    return _warmup(step, warmup_steps) if step < warmup_steps else 1.0


def _progress(step: int, warmup_steps: int, total_steps: int) -> float:
    """Share of the post-warmup steps done: 0 at the end of warmup, 1 at the last step."""
    return (step - warmup_steps) / max(1, total_steps - warmup_steps)


def _linear(step: int, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    return max(0.0, 1.0 - _progress(step, warmup_steps, total_steps))


def _cosine(step: int, warmup_steps: int, total_steps: int, num_cycles: float = 0.5) -> float:
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    progress = _progress(step, warmup_steps, total_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(2.0 * math.pi * num_cycles * progress)))


def _cosine_with_restarts(step: int, warmup_steps: int, total_steps: int, num_cycles: int = 1) -> float:
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    progress = _progress(step, warmup_steps, total_steps)
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((num_cycles * progress) % 1.0))))


def _polynomial(
    step: int, warmup_steps: int, total_steps: int, peak_lr: float, lr_end: float = 1e-7, power: float = 1.0
) -> float:
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    if step > total_steps:
        return lr_end / peak_lr
    remaining = 1.0 - _progress(step, warmup_steps, total_steps)
    return ((peak_lr - lr_end) * remaining**power + lr_end) / peak_lr


_SCHEDULES = {
    "constant": _constant,
    "constant_with_warmup": _constant_with_warmup,
    "linear": _linear,
    "cosine": _cosine,
    "cosine_with_restarts": _cosine_with_restarts,
    "polynomial": _polynomial,
}
assert tuple(_SCHEDULES) == SCHEDULER_TYPES


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# Each schedule's lr_scheduler_kwargs: name -> (whether a value fits, what fits). Hugging Face's get_scheduler takes
# the same names; a value out of range trained silently (num_cycles -1 makes the restarts climb instead of
# decaying, power <= 0 never decays, lr_end < 0 ends on a negative learning rate) and a string failed mid-setup
SCHEDULER_KWARGS = {
    "cosine": {"num_cycles": (lambda v: _number(v) and v > 0,
                              "a number > 0 (the cosine waves over the run; default 0.5: half a wave, down to 0)")},
    "cosine_with_restarts": {
        "num_cycles": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                       "a whole number >= 1 (the cosines, each restarting at the peak; default 1)")},
    "polynomial": {"power": (lambda v: _number(v) and v > 0, "a number > 0 (default 1.0: a straight line down)"),
                   "lr_end": (lambda v: _number(v) and v >= 0,
                              "a number >= 0 (the learning rate at the last step; default 1e-7)")},
}


def check_scheduler_kwargs(name: str, kwargs) -> None:
    """lr_scheduler_kwargs that schedule `name` takes, each of a type and in a range it works with (called by
    TrainingArguments, before any model is loaded, and by get_scheduler)."""
    allowed = SCHEDULER_KWARGS.get(name, {})
    if not isinstance(kwargs, dict):
        raise ValueError(f"lr_scheduler_kwargs must be a JSON object such as {{\"num_cycles\": 2}}, got {kwargs!r}")
    unknown = set(kwargs) - set(allowed)
    if unknown:
        raise ValueError(f"lr_scheduler_kwargs {sorted(unknown)} do not apply to {name!r}; it takes {sorted(allowed)}")
    for key, value in kwargs.items():
        fits, want = allowed[key]
        if not fits(value):
            unquote = "; write the number unquoted" if isinstance(value, str) else ""
            raise ValueError(f"lr_scheduler_kwargs {key}={value!r} does not fit --lr_scheduler_type {name}: "
                             f"{key} must be {want}{unquote}")


def resolve_warmup_steps(total_steps: int, warmup_steps: int = 0, warmup_ratio: float = 0.0) -> int:
    """Warmup by steps, or by a share of all steps (steps win when both are given, as in Hugging Face)."""
    return warmup_steps if warmup_steps > 0 else math.ceil(warmup_ratio * total_steps)


def get_scheduler(
    name: str,
    optimizer: Optimizer,
    num_warmup_steps: int = 0,
    num_training_steps: int = 1,
    **kwargs,
) -> LambdaLR:
    """A LambdaLR applying schedule `name` to every parameter group (each keeps its own peak lr,
    so layer-wise learning rates decay together). kwargs: num_cycles (cosine, cosine_with_restarts),
    lr_end and power (polynomial)."""
    if name not in _SCHEDULES:
        raise ValueError(f"unknown lr_scheduler_type {name!r}; choose one of {SCHEDULER_TYPES}")
    check_scheduler_kwargs(name, kwargs)
    if name == "polynomial":
        peak_lr = optimizer.defaults["lr"]
        lr_end = kwargs.get("lr_end", 1e-7)
        if lr_end > peak_lr:
            raise ValueError(f"polynomial lr_end ({lr_end}) must not exceed the learning rate ({peak_lr})")
        kwargs["peak_lr"] = peak_lr
    multiplier = partial(_SCHEDULES[name], warmup_steps=num_warmup_steps, total_steps=num_training_steps, **kwargs)
    return LambdaLR(optimizer, multiplier)

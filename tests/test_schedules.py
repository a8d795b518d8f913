"""Every learning-rate schedule against Hugging Face's get_scheduler, step by step."""

import pytest
import torch

from minibert.engine import get_scheduler
from minibert.engine.arguments import SCHEDULER_TYPES
from minibert.engine.schedules import resolve_warmup_steps

transformers = pytest.importorskip("transformers")

TOTAL, WARMUP, PEAK = 40, 6, 1e-3


def lrs(factory, name, **kwargs) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    scheduler = factory(name, optimizer, num_warmup_steps=WARMUP, num_training_steps=TOTAL, **kwargs)
    out = []
    for _ in range(TOTAL + 3):  # a few steps past the end too
        out.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return out


CASES = [(name, {}) for name in SCHEDULER_TYPES] + [
    ("cosine", {"num_cycles": 1.5}),
    ("cosine_with_restarts", {"num_cycles": 3}),
    ("polynomial", {"power": 2.0, "lr_end": 1e-5}),
]


@pytest.mark.parametrize("name, kwargs", CASES)
def test_matches_hugging_face(name, kwargs):
    ours = lrs(get_scheduler, name, **kwargs)
    theirs = lrs(
        lambda n, o, **kw: transformers.get_scheduler(
            n, o, scheduler_specific_kwargs=kwargs, **{k: v for k, v in kw.items() if k not in kwargs}
        ),
        name,
        **kwargs,
    )
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(theirs), rtol=1e-9, atol=1e-12)


def test_shapes_of_the_main_schedules():
    linear = lrs(get_scheduler, "linear")
    assert linear[0] == 0 and linear[WARMUP] == pytest.approx(PEAK) and linear[TOTAL] == 0
    assert all(a <= b for a, b in zip(linear[:WARMUP], linear[1 : WARMUP + 1], strict=True))
    restarts = lrs(get_scheduler, "cosine_with_restarts", num_cycles=2)
    middle = WARMUP + (TOTAL - WARMUP) // 2
    assert restarts[middle] == pytest.approx(PEAK) and restarts[middle - 1] < 0.1 * PEAK  # the hard restart


def test_warmup_by_ratio_or_steps():
    assert resolve_warmup_steps(1000, warmup_ratio=0.06) == 60
    assert resolve_warmup_steps(1000, warmup_steps=10, warmup_ratio=0.06) == 10  # steps win, as in HF
    # a share rounds up, as HF's math.ceil(num_training_steps * warmup_ratio): a short run still warms up
    # (int() gives 0, 60 and 7; 1000 x 0.06 above is exact, so it cannot tell)
    assert [resolve_warmup_steps(n, warmup_ratio=r) for n, r in ((10, 0.06), (1001, 0.06), (50, 0.15))] == [1, 61, 8]


def test_bad_scheduler_input():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    with pytest.raises(ValueError, match="choose one of"):
        get_scheduler("cyclic", optimizer)
    with pytest.raises(ValueError, match=r"\['power'\] do not apply to 'linear'"):
        get_scheduler("linear", optimizer, power=2.0)
    with pytest.raises(ValueError, match="must not exceed"):
        get_scheduler("polynomial", optimizer, lr_end=1.0)
    tiny = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-8)  # under the default lr_end: a KeyError
    with pytest.raises(ValueError, match=r"polynomial lr_end \(1e-07\) must not exceed the learning rate \(1e-08\)"):
        get_scheduler("polynomial", tiny)

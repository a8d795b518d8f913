"""Checkpoints that survive a crash, and resuming exactly where a run stopped.

A checkpoint is a directory `output_dir/checkpoint-<step>/` holding

    model_state.pt                  the model's own state dict, every tensor (an ELECTRA generator
                                    too), so resuming never depends on a format conversion
    optimizer.pt                    AdamW's moments and step counts
    trainer_state.pt                scheduler, gradient scaler, step, data position, metric history
    rng_state_<rank>.pt             Python, NumPy, torch CPU and CUDA generators of each process
    trainer_state.json              the same step and history, readable
    (+ whatever `on_save` callbacks add: pretraining adds the model in Hugging Face format,
     config.json + model.safetensors, and the tokenizer files, so a checkpoint is also a model;
     SWA adds its average, swa_state.pt, which its `on_resume` reads back)

Atomicity: everything is written into `.tmp-checkpoint-<step>/` and the directory is renamed to
its final name only once complete (a rename is atomic on POSIX filesystems), and every file in
it, the directory itself and, after the rename, the run directory are fsynced, so a power cut
cannot leave a checkpoint whose name exists but whose files are still empty. Before the rename,
every .pt and .safetensors file is opened again (its zip directory, its header), so a short write
(a full disk) fails the save instead of leaving a checkpoint that cannot be resumed. A process killed
mid-save leaves a temporary directory that is ignored and later removed, never a half-written
checkpoint; older checkpoints are deleted only after the new one is in place (a checkpoint of the
same step too: it is set aside as .replaced-checkpoint-<step> first, and restored if the process dies
before its successor is in place). Resuming from a checkpoint older than the run's newest sets the newer
ones aside as abandoned-checkpoint-<step> (set_aside_newer), so that "last" and save_total_limit
follow the resumed run, not the future it abandoned.

Safety: every .pt file holds only tensors and plain Python values (NumPy's generator state is
stored as a list of ints), so all of them load with `torch.load(weights_only=True)`. Unpickling
anything else could run code hidden in the file, so such a file is refused, never loaded (the one
loader of .pt files, for checkpoints and Hugging Face's .bin weights alike, is `load_torch_file` in
minibert/checkpoint.py, the weight-name module: same stem, another layer).
"""

import json
import logging
import random
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from minibert.checkpoint import finite_or_null, fsync, load_torch_file
from minibert.engine.distributed import DistributedContext, barrier

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TEMP_PREFIX = ".tmp-checkpoint-"
REPLACED_PREFIX = ".replaced-checkpoint-"  # a checkpoint of the same step, until its successor is in place
ABANDONED_PREFIX = "abandoned-checkpoint-"  # newer than the one a run resumed from: kept, never resumed
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.pt"
STATE_JSON = "trainer_state.json"
MODEL_FILE = "model_state.pt"
_STEP = re.compile(rf"{CHECKPOINT_PREFIX}(\d+)")


def checkpoint_step(path: Path) -> int | None:
    m = _STEP.fullmatch(path.name)
    return int(m.group(1)) if m else None


def is_complete(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in (STATE_FILE, OPTIMIZER_FILE, MODEL_FILE))


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if checkpoint_step(p) is not None and is_complete(p)]
    return sorted(found, key=checkpoint_step)


def resolve_checkpoint(value: str, output_dir: str | Path) -> Path:
    """--resume_from_checkpoint: "last" -> the newest complete checkpoint of output_dir, or a path."""
    if value == "last":
        if Path(output_dir).is_dir():
            restore_replaced(Path(output_dir))
        found = list_checkpoints(output_dir)
        if not found:
            raise ValueError(
                f"--resume_from_checkpoint last: {output_dir} holds no complete checkpoint-<step> directory; "
                "drop the flag to start a new run (with --overwrite_output_dir if the directory holds a run "
                "stopped before its first checkpoint), or pass the path of a checkpoint"
            )
        return found[-1]
    path = Path(value)
    if not path.exists():  # a typo, or a checkpoint --save_total_limit rotated away: say so, and what there is
        places = list({d.resolve(): d for d in (Path(output_dir), path.parent) if d.is_dir()}.values())
        found = {d: list_checkpoints(d) for d in places}
        held = "; ".join(f"{d} holds {', '.join(c.name for c in found[d]) or 'no complete checkpoint'}" for d in places)
        last = ", or 'last' for the newest in --output_dir" if list_checkpoints(Path(output_dir)) else ""
        fix = (f"pass the path of one of those{last}" if any(found.values()) else
               f"pass the path of a {CHECKPOINT_PREFIX}<step> directory, or drop the flag to start a new run")
        raise ValueError(f"--resume_from_checkpoint {value} does not exist" + (f" ({held})" if held else "")
                         + f"; {fix}")
    if not is_complete(path):
        raise ValueError(
            f"--resume_from_checkpoint {value}: not a complete training checkpoint (it needs {MODEL_FILE}, "
            f"{OPTIMIZER_FILE} and {STATE_FILE}); pass a {CHECKPOINT_PREFIX}<step> directory written by the "
            "engine, or 'last'"
        )
    return path


# -- random number generators -----------------------------------------------------------------
def rng_state() -> dict:
    numpy_state = np.random.get_state(legacy=False)
    # The key as a list of ints rather than an ndarray: weights_only=True loads no NumPy objects.
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- save ---------------------------------------------------------------------------------------
def verify_readable(directory: Path) -> None:
    """Open every .pt and .safetensors file under `directory` the cheap way: a .pt file's zip
    directory sits at its end and a .safetensors header must cover the whole file, so a file cut
    short fails here without reading its tensors."""
    from safetensors import safe_open

    for file in sorted(directory.rglob("*")):
        try:
            if file.suffix == ".pt":
                zipfile.ZipFile(file).close()
            elif file.suffix == ".safetensors":
                with safe_open(str(file), framework="pt"):
                    pass
        except Exception as error:
            raise OSError(
                f"{file} was written but cannot be read back ({error}); is the disk full or failing? "
                "This checkpoint was not kept; the earlier ones are untouched"
            ) from error


def save_checkpoint(
    output_dir: Path,
    step: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler,
    trainer_state: dict,
    context: DistributedContext,
    on_save: Callable[[Path], None] | None = None,
) -> Path:
    """Write checkpoint-<step> atomically (every rank calls this: each writes its own RNG state, rank 0 the rest)."""
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    temp = output_dir / f"{TEMP_PREFIX}{step}"
    if context.is_main:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
    barrier(context)
    torch.save(rng_state(), temp / f"rng_state_{context.rank}.pt")
    barrier(context)
    if context.is_main:
        torch.save(model.state_dict(), temp / MODEL_FILE)
        torch.save(optimizer.state_dict(), temp / OPTIMIZER_FILE)
        torch.save(
            {"scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "trainer": trainer_state},
            temp / STATE_FILE,
        )
        (temp / STATE_JSON).write_text(json.dumps(finite_or_null(trainer_state), indent=2, default=str, allow_nan=False)
                                       + "\n")  # for reading (jq); the .pt copy keeps NaN for the resume
        if on_save is not None:
            on_save(temp)
        verify_readable(temp)
        for path in sorted(temp.rglob("*")):
            fsync(path)
        fsync(temp)
        replaced = output_dir / f"{REPLACED_PREFIX}{step}"
        if final.exists():  # the same step saved again: set the old copy aside until the new one is in place
            shutil.rmtree(replaced, ignore_errors=True)
            final.rename(replaced)
        temp.rename(final)
        fsync(output_dir)
        shutil.rmtree(replaced, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    barrier(context)
    return final


def set_aside_newer(checkpoint: Path, run_dir: Path | None = None) -> list[tuple[Path, Path]]:
    """Resuming from `checkpoint` redoes the steps after it: the run directory's newer checkpoints (the
    abandoned future) are renamed abandoned-checkpoint-<step>, kept but out of the way of "last" and of
    save_total_limit, which would otherwise take them for this run's newest. `run_dir`: where the resumed
    run writes (default: the checkpoint's own directory). A resume into another directory sets aside every
    checkpoint there, which another run wrote: its newer ones were kept as this run's newest (and rotation
    deleted the run's own), an older one was taken as this run's best by load_best_model_at_end.
    Returns (old, new) names."""
    checkpoint = Path(checkpoint).resolve()  # a link to a checkpoint is that checkpoint, in its own directory
    step = checkpoint_step(checkpoint)
    elsewhere = run_dir is not None and Path(run_dir).resolve() != checkpoint.parent.resolve()
    moved = []
    for newer in list_checkpoints(run_dir or checkpoint.parent):
        if elsewhere or (step is not None and checkpoint_step(newer) > step):
            target = newer.with_name(ABANDONED_PREFIX + newer.name[len(CHECKPOINT_PREFIX):])
            n = 1
            while target.exists():  # abandoned twice: keep both
                target, n = newer.with_name(f"{ABANDONED_PREFIX}{checkpoint_step(newer)}.{n}"), n + 1
            newer.rename(target)
            moved.append((newer, target))
    return moved


def rotate_checkpoints(output_dir: Path, keep: int | None, protect: Path | None = None) -> None:
    """Delete all but the newest `keep` checkpoints (never `protect`, the best one), and any
    temporary directory a killed save left behind."""
    for stale in output_dir.glob(f"{TEMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    restore_replaced(output_dir)
    if keep is None:
        return
    checkpoints = list_checkpoints(output_dir)
    for old in checkpoints[: max(0, len(checkpoints) - keep)]:
        if protect is None or old.resolve() != Path(protect).resolve():
            # renamed first, at once: a process killed while deleting leaves a temporary directory, which the
            # next rotation clears, not a half-deleted checkpoint-N that no listing would ever show again
            doomed = old.rename(output_dir / f"{TEMP_PREFIX}deleted-{old.name}")
            shutil.rmtree(doomed)
            logger.info("deleted old checkpoint %s (save_total_limit=%d)", old, keep)


def restore_replaced(output_dir: Path) -> None:
    """A process killed between setting a checkpoint aside and putting its successor in place leaves
    .replaced-checkpoint-<step> and no checkpoint-<step>: the old copy goes back; with both, it goes."""
    for old in output_dir.glob(f"{REPLACED_PREFIX}*"):
        final = output_dir / (CHECKPOINT_PREFIX + old.name[len(REPLACED_PREFIX):])
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(final)


# -- load ---------------------------------------------------------------------------------------
def _earlier_checkpoint_hint(directory: Path) -> str:
    """What to resume from when `directory` cannot be read: the newest complete checkpoint before it."""
    step = checkpoint_step(directory)
    earlier = [p for p in list_checkpoints(directory.parent) if step is not None and checkpoint_step(p) < step]
    if earlier:
        return f"resume from the previous checkpoint instead: --resume_from_checkpoint {earlier[-1]}"
    return "no earlier complete checkpoint exists; start a new run (--overwrite_output_dir)"


def check_same_model(model: nn.Module, state: dict, directory: Path) -> None:
    """One line saying how the checkpoint's model differs from this run's (missing or extra weights,
    other shapes), instead of load_state_dict's list of every mismatched tensor."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    extra = [k for k in state if k not in ours]
    reshaped = [f"{k} {tuple(state[k].shape)} in the checkpoint, {tuple(v.shape)} here" for k, v in ours.items()
                if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if not (missing or extra or reshaped):
        return
    parts = []
    if reshaped:
        parts.append(f"{len(reshaped)} weights have other shapes (first: {reshaped[0]})")
    if missing:
        parts.append(f"{len(missing)} weights of this model are not in it (first: {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} of its weights are not in this model (first: {extra[0]})")
    raise ValueError(
        f"{directory} was saved from a different model: {'; '.join(parts)}. Resume with the model size, type "
        "(pretrain.py's --model_type), config and objective of the run that wrote it, or start a new run in "
        "another --output_dir"
    )


def load_model_weights(model: nn.Module, directory: Path) -> None:
    state = load_torch_file(directory / MODEL_FILE)
    check_same_model(model, state, directory)
    model.load_state_dict(state)


def load_checkpoint(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler,
    context: DistributedContext,
    check_trainer_state: Callable[[dict], None] | None = None,
    total_steps: int | None = None,
) -> dict:
    """Restore every piece saved by save_checkpoint; returns the trainer state (step, data position...).
    `check_trainer_state` sees that state before the optimizer's is loaded (another optimizer's would
    fail there with a bare KeyError). `total_steps`: this run's length (follow_this_runs_schedule)."""
    instead = _earlier_checkpoint_hint(directory)
    state = load_torch_file(directory / MODEL_FILE, instead)
    check_same_model(model, state, directory)
    saved = _load_dict(directory / STATE_FILE, ("scheduler", "scaler", "trainer"), instead)
    if check_trainer_state is not None:
        check_trainer_state(saved["trainer"])
    model.load_state_dict(state)
    current = optimizer.state_dict()  # (a wrapper's, PriorWD's or Lookahead's, nests the inner one: not compared)
    saved_optimizer = _load_dict(directory / OPTIMIZER_FILE, tuple(current), instead)
    ours = [len(g["params"]) for g in current.get("param_groups", [])]
    theirs = [len(g["params"]) for g in saved_optimizer.get("param_groups", [])]
    if "param_groups" in current and ours != theirs:  # torch's own error names neither the checkpoint nor a way out
        raise ValueError(
            f"{directory}'s optimizer holds {theirs} parameters per group and this run trains {ours}: it was "
            "saved with other parameters trainable (other freezing flags, or a minibert before 2026-11-24, which "
            "froze block 0's whole query and key projections under the neighbour heads of a model with more "
            "than 2 heads). Resume with the settings and version that saved it, or start a new run (pretrain.py "
            f"--init_from {directory} continues its weights)")
    optimizer.load_state_dict(saved_optimizer)
    if set(saved["scheduler"]) != set(scheduler.state_dict()):  # another kind of scheduler: torch's bare KeyError
        raise ValueError(
            f"{directory} was saved under another learning-rate scheduler than this run's {type(scheduler).__name__} "
            "(a checkpoint saved while stochastic weight averaging ran holds SWALR's: its run had --swa_start). "
            "Resume with the flags of the run that saved it")
    scheduler.load_state_dict(saved["scheduler"])
    follow_this_runs_schedule(scheduler, directory, total_steps)
    scaler.load_state_dict(saved["scaler"])
    rng_file = directory / f"rng_state_{context.rank}.pt"
    if not rng_file.is_file():
        logger.warning("%s missing (different number of processes?); using rank 0's generators", rng_file.name)
        rng_file = directory / "rng_state_0.pt"
    set_rng_state(_load_dict(rng_file, ("python", "numpy", "torch"), instead))
    return saved["trainer"]


def follow_this_runs_schedule(scheduler, directory: Path, total_steps: int | None = None) -> None:
    """After a resume, the learning rate of the next step is this run's schedule's, not the checkpoint's.

    The optimizer's saved state holds the learning rate the checkpoint's schedule set for its next step, and the
    scheduler changes it only after that step: a run resumed with a longer --max_steps (a finished run extended)
    took its next step at the old schedule's last rate, 0 under linear decay, and only then jumped to the
    stretched schedule's. A schedule of the step number alone (LambdaLR: every --lr_scheduler_type) gives the
    rate here; an unchanged run gets exactly the saved rates back (the same product), so its resume stays exact.
    SWALR (stochastic weight averaging) anneals from the current rate, which the checkpoint's is: left as saved.
    A checkpoint at or past this run's `total_steps` has no step left to run: nothing to follow or to warn of (a
    cosine schedule read past its end gave a rate, and a warning about a step that never came)."""
    if not isinstance(scheduler, LambdaLR) or (total_steps is not None and scheduler.last_epoch >= total_steps):
        return
    saved = scheduler.get_last_lr()
    rates = [base * rule(scheduler.last_epoch) for base, rule in zip(scheduler.base_lrs, scheduler.lr_lambdas,
                                                                       strict=True)]
    if rates == saved:
        return
    for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = rates  # what get_last_lr() reports (and the trainer logs) for the next step
    logger.warning("resuming from %s with another length of the run (--max_steps or --num_train_epochs): the "
                   "learning rate follows the schedule of this length from here, as if the run had been started with "
                   "it; the next step runs at %.4g, where the checkpoint's schedule had %.4g", directory, max(rates),
                   max(saved))


def _load_dict(file: Path, keys: tuple[str, ...], instead: str) -> dict:
    """A training-state file that must hold a dict with `keys`: one replaced or damaged otherwise failed
    later with a bare KeyError ('trainer', 'python') naming neither the file nor a way out."""
    value = load_torch_file(file, instead)
    missing = [key for key in keys if not isinstance(value, dict) or key not in value]
    if missing:
        raise ValueError(f"{file} does not hold what the trainer writes there (a dict with {', '.join(keys)}; "
                         f"missing: {', '.join(missing)}): it was replaced or damaged; {instead}")
    return value

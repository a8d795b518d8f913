"""The training loop shared by pretraining and fine-tuning.

One optimizer step, as the engine runs it:

    batches = the next gradient_accumulation_steps batches of this process's shard   (timed: the data wait)
    weights = loss_weights(batches)                        1 / accumulation steps, or each one's share of
                                                           the step's labelled tokens (token-level losses)
    for each micro-batch and its weight:
        loss, outputs = compute_loss(batch)                under autocast (bf16 / fp16) if asked
        backward(loss)                                     loss x weight, scaled in fp16
        callbacks.on_backward_end(trainer, batch)          FGM / PGD add adversarial gradients here
    stop if the loss is not finite (fp16: the scaler skips the step instead)
    unscale (fp16), clip the gradient norm, optimizer step, scheduler step
    callbacks.on_step_end(trainer)                         SWA averages here
    every logging_steps: a JSON line; every eval_steps: eval_fn; every save_steps: a checkpoint
    on SIGTERM or Ctrl-C (received at any point of the step): a checkpoint, then TrainingInterrupted

Data: the engine owns the order. Each epoch's permutation comes from (seed, phase, epoch); every batch
gets its own torch.Generator seeded from (seed, phase, epoch, batch index, rank) for the collate
function (random masking), so the data position alone - phase, epoch, batches consumed - fixes
everything still to come, and a resumed run sees exactly the batches and masks it would have seen.
"""

import dataclasses
import inspect
import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from minibert.engine import checkpointing
from minibert.engine.arguments import TrainingArguments, phase2_flags_given
from minibert.engine.distributed import (
    DistributedContext,
    barrier,
    gather_objects,
    mean_across_ranks,
    mean_of_present_across_ranks,
    process_rank,
    setup,
    sum_across_ranks,
)
from minibert.engine.metrics import METRICS_FILE, PLOT_FILE, MetricsWriter, ProgressBar, json_line, plot_losses
from minibert.engine.optim import build_optimizer
from minibert.engine.schedules import get_scheduler, resolve_warmup_steps
from minibert.nn.losses import labelled_count

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT (Ctrl-C) stopped training after a step, once a checkpoint of it was saved.
    `exit_code` is the shell's convention for a process ended by that signal (130, 143)."""

    def __init__(self, signal_number: int, step: int, checkpoint: str):
        self.signal_number, self.step, self.checkpoint = signal_number, step, checkpoint
        self.exit_code = 128 + signal_number
        super().__init__(
            f"{signal.Signals(signal_number).name} received: training stopped after step {step}, saved in "
            f"{checkpoint}; to continue, run the same command with --resume_from_checkpoint last"
        )


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StoppedBySignal(KeyboardInterrupt):
    """SIGINT or SIGTERM where no step was running to finish (preparing the data, the first or the last
    evaluation, the final saves), or a second one during a step: the command stops at once. Every file
    written before is whole (checkpoints and model files are written aside, then renamed)."""

    def __init__(self, signal_number: int, twice: bool = False):
        self.exit_code = 128 + signal_number
        name = signal.Signals(signal_number).name
        where = "twice during a step" if twice else "outside the training steps"
        super().__init__(
            f"{name} received {where}: stopped at once, and the run is unfinished (its final model, summary or "
            "results may be missing). Nothing written before is damaged: run the same command again with "
            "--resume_from_checkpoint last if it saved a checkpoint, else with --overwrite_output_dir (to start it "
            "again) or another --output_dir"
        )


def model_loss(outputs, model_name: str) -> torch.Tensor:
    """The loss in a model's outputs, where Hugging Face's Trainer finds it: a field `loss` (minibert's outputs,
    transformers' ModelOutput), a dict's "loss", or a tuple's first item (a return_dict=False model given labels).
    A dict or tuple was refused as "returned no loss; the batch needs labels", with the loss right there."""
    if isinstance(outputs, Mapping):
        loss = outputs.get("loss")
    elif isinstance(outputs, tuple | list):
        loss = outputs[0] if outputs and torch.is_tensor(outputs[0]) and outputs[0].dim() == 0 else None
    else:
        loss = getattr(outputs, "loss", None)
    if loss is None:
        raise ValueError(
            f"{model_name} returned no loss (a {type(outputs).__name__}; the Trainer reads its `loss` field, a dict's "
            "\"loss\" or a tuple's first item, a 0-dimensional tensor): give the batch labels, or have the model "
            "return its loss there, or pass loss_fn(model, batch) -> (loss, outputs) to the Trainer")
    return loss


def stop_message(stop: TrainingInterrupted | StoppedBySignal) -> str | None:
    """What a command prints when a signal stopped it, or None where another process says it. Under torchrun every
    process raises the same TrainingInterrupted at the same step (they agree on the stop, Trainer._stop_requested):
    rank 0 says it for all. A StoppedBySignal is the signalled process's own (a scheduler may signal only some, and
    the others then wait): each says it, with its rank."""
    rank, world_size = process_rank(), int(os.environ.get("WORLD_SIZE", "1"))
    if isinstance(stop, TrainingInterrupted):
        return str(stop) if rank == 0 else None
    return f"rank {rank}: {stop}" if world_size > 1 else str(stop)


@contextmanager
def _handling_signals(handler):
    """SIGINT and SIGTERM go to `handler` inside the block; the previous handlers come back after it.
    Python lets only the main thread install handlers; elsewhere signals keep theirs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    for number in STOP_SIGNALS:
        signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():  # None: a handler not set from Python, i.e. the default
            signal.signal(number, signal.SIG_DFL if old is None else old)


@contextmanager
def stop_on_signals():
    """The command lines' handlers outside the training steps (the trainer installs its own during them,
    then puts these back): SIGTERM stops the command as Ctrl-C does, with StoppedBySignal, where by
    default it would end the process without a word."""
    def stop(signal_number, frame):
        raise StoppedBySignal(signal_number)

    with _handling_signals(stop):
        yield


@contextmanager
def _stop_after_the_step_on_signals(trainer: "Trainer"):
    """While training, SIGINT and SIGTERM only note the signal; the loop then saves and stops after
    the current step, so a preemption or a Ctrl-C loses nothing. A second signal stops at once."""
    def note(signal_number, frame):
        if trainer.stop_signal is not None:
            raise StoppedBySignal(signal_number, twice=True)
        trainer.stop_signal = signal_number
        logger.warning(
            "%s received: saving a checkpoint after the current step, then stopping (send it again to stop now)",
            signal.Signals(signal_number).name,
        )

    with _handling_signals(note):
        yield


def _ignore_ctrl_c(worker_id: int) -> None:
    """DataLoader workers share the terminal's process group, so Ctrl-C reaches them too; the
    training process handles it, and a worker that died of it would break the step being finished.
    (A DataLoader's worker_init_fn is called with the worker's id.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class TrainerState:
    """Everything about a run's progress that a checkpoint must carry besides tensors."""

    global_step: int = 0
    phase: int = 0  # 0, or 1 once two-phase training has switched to phase2_dataset
    epoch: int = 0  # epoch within the phase
    batches_done: int = 0  # this process's batches consumed in that epoch: the data position
    history: list[dict] = field(default_factory=list)  # every logged record (training and evaluation)
    best_metric: float | None = None
    # Checkpoint names ("checkpoint-40"), not paths: they stay right when the run directory is moved
    best_checkpoint: str | None = None
    last_checkpoint: str | None = None
    examples_seen: int = 0
    # measurements of the steps done since the last logged record (loss, grad_norm, ...): a run resumed
    # from a checkpoint taken between two records logs the same means as the run it repeats
    log_window: dict[str, list[float]] = field(default_factory=dict)
    # under DDP, every process's log_window, by rank: each process holds its own measurements (its share of the
    # loss, its tokens), and rank 0's window alone, written for all, made the first record after a resume average
    # rank 0's measurements twice (the other processes' were lost). Empty on one process.
    rank_log_windows: list[dict[str, list[float]]] = field(default_factory=list)
    # what the data position, the optimizer state and its schedule mean (Trainer.run_settings): a resume must match
    run_settings: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    global_step: int
    history: list[dict]  # every JSON line written, in order
    training_loss: float  # mean loss over the last logging window
    best_metric: float | None
    best_checkpoint: str | None  # path
    last_checkpoint: str | None  # path
    data_wait_share: float  # share of step time spent waiting for batches (goal < 0.05)
    tokens_per_second: float  # over the whole run, all processes together
    seconds: float


def _takes_generator(collate_fn: Callable) -> bool:
    """collate_fn(examples, generator) gets the engine's per-batch generator; collate_fn(examples) does not."""
    try:
        params = inspect.signature(collate_fn).parameters
    except (TypeError, ValueError):
        return False
    required = [p for p in params.values() if p.default is inspect.Parameter.empty and p.kind != p.VAR_KEYWORD]
    return "generator" in params or len(required) >= 2


class _CollatedBatches:
    """A map-style dataset whose items are whole collated batches, keyed by (seed, example indices):
    the DataLoader (and its workers) can then collate with a per-batch generator."""

    def __init__(self, dataset: Sequence, collate_fn: Callable):
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.with_generator = _takes_generator(collate_fn)

    def __getitem__(self, key: tuple[int, list[int]]) -> tuple[dict, int]:
        seed, indices = key
        examples = [self.dataset[i] for i in indices]
        if self.with_generator:
            batch = self.collate_fn(examples, torch.Generator().manual_seed(seed))
        elif torch.utils.data.get_worker_info() is not None:
            # In a loader worker, a collate that draws from the global RNG (Hugging Face's
            # DataCollatorForLanguageModeling takes no generator) draws from the batch's own seed: a resumed run's
            # fresh workers replayed the epoch's first draws instead. (In this process the global RNG is saved
            # with each checkpoint, so resume is exact there already.)
            python_state, numpy_state = random.getstate(), np.random.get_state()
            random.seed(seed)  # (Python's and numpy's generators too: a collate returning numpy arrays uses them)
            np.random.seed(seed % 2**32)
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    batch = self.collate_fn(examples)
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)
        else:
            batch = self.collate_fn(examples)
        mask = batch.get("attention_mask")
        tokens = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()) if "input_ids" in batch else 0
        return batch, tokens


def _unbatched(item):
    return item


def _plain_number(value):
    """A one-element tensor or a NumPy scalar as the Python number it holds, as Hugging Face's Trainer does with
    evaluation metrics (denumpify_detensorize): an eval_fn returning `loss_sum / count` as a tensor, or a NumPy
    float32, stopped the run at its first evaluation ("Object of type Tensor is not JSON serializable")."""
    if (torch.is_tensor(value) and value.numel() == 1) or isinstance(value, np.generic):
        return value.item()
    return value


def _repeat(items: list, count: int) -> list:
    """The first `count` of items, cycling when there are fewer."""
    return [items[i % len(items)] for i in range(count)]


def _batch_seed(*parts: int) -> int:
    return hash(parts) & 0x7FFF_FFFF_FFFF_FFFF  # hash of a tuple of ints is stable across runs


# What a resume must keep: what the data position and the saved optimizer state mean (Trainer.run_settings)
DATA_SETTINGS = {"per_device_train_batch_size": "--per_device_train_batch_size",
                 "phase2_batch_size": "--phase2_batch_size",
                 "gradient_accumulation_steps": "--gradient_accumulation_steps", "seed": "--seed",
                 "world_size": "the number of processes", "optimizer": "the optimizer (--optim, --prior_wd)",
                 "train_examples": "the training examples (the corpus or data file, --max_seq_length, ...)",
                 "recipe": "the recipe of the batches"}
# ... and the settings that a checkpoint's optimizer and scheduler state bring back with it (learning rates, decay,
# betas, epsilon), or that shape its schedule: a resume with other values trained on with the saved ones, unsaid
OPTIMIZER_SETTINGS = ("learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio",
                      "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon")


# A directory holding one of these holds a model (save_pretrained's output, a downloaded checkpoint)
SAVED_MODEL_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "config.json")


def check_output_dir(args: TrainingArguments, resuming: bool) -> bool:
    """Refuse an output_dir that cannot be written, or that holds another run unless resuming or
    overwriting; True if it holds one. Both command lines call it before any work."""
    output_dir = Path(args.output_dir)
    check_writable_dir(output_dir)
    previous = bool(checkpointing.list_checkpoints(output_dir)) or (output_dir / METRICS_FILE).exists()
    if previous and not resuming and not args.overwrite_output_dir:
        if not checkpointing.list_checkpoints(output_dir):  # stopped before its first checkpoint: nothing to resume
            raise ValueError(f"{output_dir} holds a run that stopped before its first checkpoint (its "
                             f"{METRICS_FILE} alone); pass --overwrite_output_dir to start it again, or another "
                             "--output_dir")
        if any((output_dir / name).is_file() for name in SAVED_MODEL_FILES):  # its final model: nothing to continue
            raise ValueError(f"{output_dir} already holds a finished training run (its final model is saved); pass "
                             "--overwrite_output_dir to replace it, or another --output_dir")
        raise ValueError(
            f"{output_dir} already holds a training run; pass --resume_from_checkpoint last to continue it, "
            "--overwrite_output_dir to replace it, or another --output_dir"
        )
    model = next((name for name in SAVED_MODEL_FILES if (output_dir / name).is_file()), None)
    if model is not None and not previous and not resuming and not args.overwrite_output_dir:
        raise ValueError(f"{output_dir} holds a saved model ({model}) that this run would overwrite; pass another "
                         "--output_dir, or --overwrite_output_dir to replace it")
    return previous


def check_writable_dir(output_dir: Path) -> None:
    """Refuse an output_dir that is a file, sits under a file, or cannot be created or written. Nothing
    is created here: the nearest existing directory is asked whether it may be written."""
    existing = output_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == output_dir else f"sits under {existing}, which is a file"
        raise ValueError(f"--output_dir {output_dir} {where}; pass a directory path for --output_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"--output_dir {output_dir}: {existing} is not writable by this user; pass an --output_dir "
            "you may write to, or change the permissions"
        )


def _cpu_jiffies() -> tuple[int, int, int]:
    """(all cores' busy time, all cores' time, this process's CPU time), in clock ticks, from /proc (Linux)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(values)  # user nice system idle iowait irq softirq steal
    own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()  # after the command's name
    return total - values[3] - values[4], total, int(own[11]) + int(own[12])  # utime + stime: fields 14, 15


def crowded_cpu_hint(device: torch.device, sample_seconds: float = 0.25) -> str | None:
    """A warning when torch runs several CPU threads while other processes keep cores busy, else None.

    torch's threads meet at a barrier after every operator, and spin while they wait; when another process
    holds a core, each operator waits for the slowest thread, and the run can take several times as long as
    with one thread (the README's measure: a 20-step pretraining beside another training took 29 s with the
    default threads, 14 s with one). Other processes' use is sampled for `sample_seconds` from /proc (Linux;
    elsewhere no advice), this process's own time taken out: the load average would count this process's
    earlier work (a previous run in the same process) as another's."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        return None
    cores = os.cpu_count() or 1
    try:
        busy, total, mine = _cpu_jiffies()
        time.sleep(sample_seconds)
        busy_after, total_after, mine_after = _cpu_jiffies()
    except (OSError, ValueError, IndexError):  # no /proc, or one of another format: advice must never stop a run
        return None
    if total_after <= total:
        return None
    others = cores * ((busy_after - busy) - (mine_after - mine)) / (total_after - total)  # cores kept busy
    if others < 0.5 or threads + others <= cores:
        return None
    return (f"other processes keep {others:.1f} of the {cores} cores busy as this run starts, and torch runs "
            f"{threads} threads, which then wait on each other: a run can take several times as long. Set "
            "OMP_NUM_THREADS=1 (or torch.set_num_threads(1)) while the machine is shared")


def metric_key(name: str | None, metrics: dict) -> str | None:
    """--metric_for_best_model as eval_fn names it: Hugging Face's spelling, eval_loss, is accepted for loss."""
    if name is not None and name not in metrics and name.removeprefix("eval_") in metrics:
        return name.removeprefix("eval_")
    return name


def check_output_not_input(output_dir: str | Path, inputs: dict[str, str | Path | None]) -> None:
    """Refuse an output_dir that is, contains or sits inside an input directory, or holds an input file
    (flag -> path; None is skipped): writing the run there would overwrite what it starts from."""
    output = Path(output_dir).resolve()
    for flag, path in inputs.items():
        if path is None:
            continue
        source = Path(path).resolve()
        if output == source:
            relation = "is"
        elif output in source.parents:
            relation = "contains"
        elif source in output.parents:
            relation = "sits inside"
        else:
            continue
        if source.is_file():  # only "contains" can hold
            raise ValueError(f"--output_dir {output_dir} contains the {flag} file {path}: the run would overwrite "
                             f"what it reads; pass an --output_dir that does not hold it (a new directory beside "
                             f"it is fine)")
        raise ValueError(
            f"--output_dir {output_dir} {relation} the {flag} directory {path}: the run would overwrite "
            f"what it reads; pass an --output_dir outside {path}"
        )


class Trainer:
    """Train `model` on `train_dataset` (a sequence of examples) with `collate_fn(examples[, generator])`.

    model: returns an output with `.loss` (or pass `loss_fn(model, batch) -> (loss, outputs)`).
    eval_fn(model) -> dict of metrics, called every eval_steps and at the end.
    callbacks: objects with any of on_backward_end(trainer, batch), on_step_end(trainer),
        on_evaluate(trainer, metrics), on_save(trainer, directory), on_train_end(trainer),
        on_resume(trainer, directory), before a checkpoint is restored (to put back what its on_save wrote),
        and on_train_begin(trainer), once the state is restored, before the first step.
    optimizer: a prebuilt optimizer (else AdamW over `param_groups`, or the default no-decay groups).
    sampler: a custom order: an iterable of example indices or of batches (lists of indices); it is
        re-iterated every epoch (set_epoch(epoch) is called when it has one) under a generator
        seeded from (seed, epoch), so its randomness is reproducible too.
    metrics_fn(batch, outputs) -> dict of floats (accuracies), averaged over each logging window.
    phase2_dataset / phase2_collate_fn: two-phase training; the last `phase2_ratio` of the steps
        train on these (e.g. 512-token examples after 128-token ones).
    recipe: what else makes the batches, as the caller names it (pretraining: the objective and its options),
        saved with each checkpoint; a resume with another recipe is refused, as one with another batch size is.
    """

    def __init__(
        self,
        model: nn.Module,
        args: TrainingArguments,
        train_dataset: Sequence,
        collate_fn: Callable,
        eval_fn: Callable[[nn.Module], dict] | None = None,
        callbacks: Sequence = (),
        optimizer: torch.optim.Optimizer | None = None,
        param_groups: list[dict] | None = None,
        *,
        sampler=None,
        metrics_fn: Callable[[dict, object], dict] | None = None,
        loss_fn: Callable[[nn.Module, dict], tuple[torch.Tensor, object]] | None = None,
        phase2_dataset: Sequence | None = None,
        phase2_collate_fn: Callable | None = None,
        recipe: dict | None = None,
    ):
        if len(train_dataset) == 0:
            raise ValueError("train_dataset is empty; check the corpus or data file (it gave no examples)")
        if optimizer is not None and param_groups is not None:
            raise ValueError("pass either a prebuilt optimizer or param_groups, not both")
        unused = phase2_flags_given(args) if phase2_dataset is None else []
        if unused:  # a second phase's settings with no second phase: ignored, unsaid
            raise ValueError(f"{' and '.join(unused)} set the second phase of two-phase training, and there is none "
                             "(no phase2_dataset: pretrain.py makes one with --max_seq_length_phase2, fine-tuning "
                             f"has none), so {'they' if len(unused) > 1 else 'it'} would be ignored; drop "
                             f"{' and '.join(unused)}")
        self._best_metric_by_default = args.load_best_model_at_end and args.metric_for_best_model is None
        if self._best_metric_by_default:
            # As Hugging Face: the best model is the one of the lowest evaluation loss (without a metric no
            # checkpoint was ever the best, and --load_best_model_at_end silently kept the last step's model).
            # Here, not in TrainingArguments: fine-tuning fills in its task's metric (accuracy, rmse) when unset.
            # A copy, so the caller's arguments stay as given.
            args = dataclasses.replace(args, metric_for_best_model="loss")
        self.args = args
        self.recipe = recipe
        self.context: DistributedContext = setup(args.device)
        self.device = self.context.device
        self.output_dir = Path(args.output_dir)
        self.resumed_from: Path | None = None  # the checkpoint train() resumed from
        self.model = model.to(self.device)
        if args.gradient_checkpointing:
            if not hasattr(model, "gradient_checkpointing_enable"):
                raise ValueError(
                    f"{type(model).__name__} has no gradient_checkpointing_enable(); drop --gradient_checkpointing"
                )
            model.gradient_checkpointing_enable()
        self.wrapped = model
        if self.context.enabled:
            self.wrapped = DistributedDataParallel(model, find_unused_parameters=args.ddp_find_unused_parameters)
        if args.torch_compile:
            # The model is compiled (DDP's wrapper included, as PyTorch recommends), not the loop: the loss
            # bookkeeping, clipping, logging and checkpoints stay plain Python, and self.model keeps its
            # own parameter names for saving and evaluation (which runs eagerly).
            self.wrapped = torch.compile(self.wrapped, backend=args.torch_compile_backend or "inductor",
                                         mode=args.torch_compile_mode)
        self.callbacks = list(callbacks)
        self.eval_fn, self.metrics_fn, self.loss_fn, self.sampler = eval_fn, metrics_fn, loss_fn, sampler
        self.datasets = [train_dataset] + ([phase2_dataset] if phase2_dataset is not None else [])
        self.collates = [collate_fn, phase2_collate_fn or collate_fn]
        self.batch_sizes = [
            args.per_device_train_batch_size,
            args.phase2_batch_size or args.per_device_train_batch_size,
        ]

        self.loss_weight = 1.0 / args.gradient_accumulation_steps  # the current micro-batch's (loss_weights)
        self.total_steps = self._count_steps()
        self.phase2_start = (
            math.floor(self.total_steps * (1 - args.phase2_ratio)) if phase2_dataset is not None else None
        )
        self.optimizer = optimizer or build_optimizer(model, args, param_groups)
        warmup = resolve_warmup_steps(self.total_steps, args.warmup_steps, args.warmup_ratio)
        self.scheduler = get_scheduler(
            args.lr_scheduler_type, self.optimizer, warmup, self.total_steps, **args.lr_scheduler_kwargs
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=args.fp16)
        self.state = TrainerState()
        self.window: dict[str, list] = defaultdict(list)  # the steps not yet logged (train() fills it)
        self.should_stop = False  # a callback may set this to end training after the current step
        self.stop_signal: int | None = None  # SIGINT / SIGTERM received during train()
        self._loader_iter = None
        self._epoch_length = 0  # batches in the epoch the open loader reads (the logged epoch's fraction)

    # -- the data stream -------------------------------------------------------------------------
    def _epoch_batches(self, phase: int, epoch: int) -> list[list[int]]:
        """This process's batches (lists of example indices) for one epoch of one phase."""
        size, world, rank = self.batch_sizes[phase], self.context.world_size, self.context.rank
        n = len(self.datasets[phase])
        seed = _batch_seed(self.args.seed, phase, epoch)
        if self.sampler is None or phase == 1:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
            # global batches of world * size examples; rank r takes the r-th slice of each
            step = size * world
            batches = [order[i : i + step] for i in range(0, n, step)]
            if batches and len(batches[-1]) < step:
                if self.args.dataloader_drop_last:
                    batches.pop()
                elif world > 1:  # every rank needs a full share: complete the last global batch with the
                    # epoch's first examples, as PyTorch's DistributedSampler does (dropping it lost them)
                    batches[-1] += _repeat(order, step - len(batches[-1]))
            return [b[rank * size : (rank + 1) * size] for b in batches]
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            items = list(self.sampler)
        if items and isinstance(items[0], int):
            items = [items[i : i + size] for i in range(0, len(items), size)]
            if self.args.dataloader_drop_last and len(items[-1]) < size:
                items.pop()
        if len(items) % world:  # every rank takes the same number of batches: complete the last round with
            if self.args.dataloader_drop_last:  # the epoch's first batches (dropping them lost their examples)
                items = items[: len(items) - len(items) % world]
            else:
                items = items + _repeat(items, world - len(items) % world)
        return [list(b) for b in items[rank::world]]

    def steps_per_epoch(self) -> int:
        """This process's optimizer steps in one epoch of the (first phase's) training data."""
        return max(1, len(self._epoch_batches(0, 0)) // self.args.gradient_accumulation_steps)

    def _count_steps(self) -> int:
        if self.args.max_steps > 0:
            return self.args.max_steps
        per_epoch = len(self._epoch_batches(0, 0))
        if per_epoch == 0:
            raise ValueError(
                f"no full batch: {len(self.datasets[0])} examples for a global batch of "
                f"{self.batch_sizes[0] * self.context.world_size}; lower per_device_train_batch_size"
            )
        return max(1, math.ceil(self.args.num_train_epochs * per_epoch / self.args.gradient_accumulation_steps))

    def _open_loader(self) -> None:
        s = self.state
        batches = self._epoch_batches(s.phase, s.epoch)
        if not batches:
            raise ValueError(
                f"phase {s.phase} has no full batch of {self.batch_sizes[s.phase]} examples per process; "
                "lower the batch size or provide more data"
            )
        keys = [
            (_batch_seed(self.args.seed, s.phase, s.epoch, i, self.context.rank), b) for i, b in enumerate(batches)
        ][s.batches_done :]
        loader = DataLoader(
            _CollatedBatches(self.datasets[s.phase], self.collates[s.phase]),
            sampler=keys,
            batch_size=None,
            collate_fn=_unbatched,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.device.type == "cuda",
            # Its own generator, so the global RNG (dropout) is untouched. Seeded from (seed, phase, epoch, rank): it
            # draws the workers' seeds, and an unseeded one gave the same every epoch, whatever --seed, so a
            # collate_fn drawing from the global RNG (one that takes no generator: Hugging Face's
            # DataCollatorForLanguageModeling) masked every epoch alike under dataloader_num_workers > 0.
            generator=torch.Generator().manual_seed(_batch_seed(self.args.seed, s.phase, s.epoch, self.context.rank)),
            worker_init_fn=_ignore_ctrl_c if self.args.dataloader_num_workers > 0 else None,
        )
        self._loader_iter = iter(loader)
        self._epoch_length = len(batches)

    def _next_batch(self) -> tuple[dict, int]:
        s = self.state
        if self.phase2_start is not None and s.phase == 0 and s.global_step >= self.phase2_start:
            s.phase, s.epoch, s.batches_done, self._loader_iter = 1, 0, 0, None
            logger.info("step %d: phase 2 of two-phase training starts", s.global_step)
        while True:
            if self._loader_iter is None:
                self._open_loader()
            try:
                batch, tokens = next(self._loader_iter)
                s.batches_done += 1
                return batch, tokens
            except StopIteration:
                s.epoch, s.batches_done, self._loader_iter = s.epoch + 1, 0, None

    def _to_device(self, batch: dict) -> dict:
        non_blocking = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}

    # -- one step --------------------------------------------------------------------------------
    def autocast(self):
        if self.args.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.args.bf16 else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, object]:
        """Forward under the configured autocast: (loss, outputs)."""
        with self.autocast():
            if self.loss_fn is not None:
                return self.loss_fn(self.wrapped, batch)
            outputs = self.wrapped(**batch)
        return model_loss(outputs, type(self.model).__name__), outputs

    def loss_weights(self, batches: list[dict]) -> list[float]:
        """What each micro-batch's mean loss is multiplied by before its backward.

        A model whose loss is one mean over labelled tokens says how many it averages (`loss_items`:
        masked LM, causal LM, seq2seq, token classification). Each micro-batch is then weighed by its share
        of the step's labelled tokens on every process, so that accumulated micro-batches (and DDP's
        average over processes) give exactly the gradient of one big batch, however the labelled tokens
        fall between them (Hugging Face's `num_items_in_batch`, https://huggingface.co/blog/gradient_accumulation).
        Any other loss (a sentence-level mean, MLM + SOP, ELECTRA's two parts, a custom loss_fn) takes
        1 / the accumulation steps.

            weight_i = n_i * world_size / total     n_i: micro-batch i's labelled tokens (labels != -100;
                                                    a causal LM's shifted labels[:, 1:]; nn/losses.py's
                                                    labelled_count, causal_lm_count)
                                                    total: every micro-batch of this step on every rank
                                                    (an all-reduce sum: distributed.sum_across_ranks)

        All micro-batches of the step are fetched before the first backward (training_step), so the
        total is known in time; world_size cancels DDP's average of the gradients over ranks."""
        count = getattr(self.model, "loss_items", None) if self.loss_fn is None else None
        if count is None or (len(batches) == 1 and not self.context.enabled):  # one batch: its own mean
            return [1.0 / len(batches)] * len(batches)
        items = [count(batch) for batch in batches]
        total = sum_across_ranks(float(sum(items)), self.context)
        if total == 0:  # nothing labelled anywhere: the losses are not finite, and training_step skips the step
            return [1.0 / len(batches)] * len(batches)
        return [n * self.context.world_size / total for n in items]

    def unlabelled_batches(self, batches: list[dict]) -> float:
        """How many of this step's micro-batches, on every process, hold no label that is not -100 (an
        all-reduce: every rank calls it together). A batch without `labels` counts as labelled."""
        local = sum(1 for batch in batches if "labels" in batch and labelled_count(batch["labels"]) == 0)
        return sum_across_ranks(float(local), self.context)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of the current micro-batch's loss times its weight (`loss_weights`), scaled in fp16."""
        self.scaler.scale(loss * self.loss_weight).backward()

    def _callbacks(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self, *args)

    def _parameters(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]

    def training_step(self, window: dict) -> None:
        """One optimizer step (gradient_accumulation_steps micro-batches); train() loops over it, and
        appends the step's measurements to `window` (benchmarks call it directly)."""
        accumulation = self.args.gradient_accumulation_steps
        self.wrapped.train()
        step_start = time.perf_counter()
        wait = 0.0
        batches = []
        for _ in range(accumulation):
            t = time.perf_counter()
            batch, tokens = self._next_batch()
            batches.append((self._to_device(batch), tokens))
            wait += time.perf_counter() - t
        weights = self.loss_weights([batch for batch, _ in batches])
        losses = []
        for micro, ((batch, tokens), weight) in enumerate(zip(batches, weights, strict=True)):
            self.loss_weight = weight
            last = micro == accumulation - 1
            with nullcontext() if last or not self.context.enabled else self.wrapped.no_sync():
                loss, outputs = self.compute_loss(batch)
                self.backward(loss)
                self._callbacks("on_backward_end", batch)
            if weight == 0:  # no labelled token: its mean is 0/0 (nan), its gradient 0; it adds nothing
                losses.append(torch.zeros((), device=loss.device))
            else:
                losses.append(loss.detach().float() * weight)
                # Only finite values join the window's means, as the loss does below: the loss parts and metrics of
                # a micro-batch with no labelled token are NaN (a mean over nothing), and one NaN made its whole
                # logging window's mlm_loss and mlm_accuracy NaN, however many good steps it held.
                parts = vars(outputs).items() if dataclasses.is_dataclass(outputs) else ()
                for name, value in parts:
                    if name.endswith("_loss") and torch.is_tensor(value) and math.isfinite(float(value.detach())):
                        window[name].append(float(value.detach()))
                if self.metrics_fn is not None:
                    for name, value in self.metrics_fn(batch, outputs).items():
                        if math.isfinite(float(value)):
                            window[name].append(float(value))
            window["tokens"].append(tokens)
            self.state.examples_seen += len(next(iter(batch.values())))
        # this process's share of the step's loss: the weights already divide by the step's total on every rank,
        # so the mean over ranks (_log) is the global batch's loss; a rank whose micro-batches hold no labelled
        # token adds 0 (dividing by its sum of weights, 0, made it nan)
        step_loss = float(torch.stack(losses).sum())
        step = self.state.global_step + 1
        finite = mean_across_ranks({"finite": float(math.isfinite(step_loss))}, self.context)["finite"] == 1.0
        # A micro-batch whose labels are all -100 (a short row can mask nothing: 0.85**6 = 0.38 for 6 tokens)
        # has a mean over no token, 0 / 0: the step's loss is undefined (a model weighing micro-batches by their
        # tokens, `loss_items`, gives it weight 0 and stays finite unless the whole step is unlabelled). The
        # update is skipped (with zero gradients, AdamW would still move the weights by momentum and decay);
        # every rank decides together.
        unlabelled = not finite and self.unlabelled_batches([batch for batch, _ in batches]) > 0
        if not finite and not unlabelled and not self.args.fp16:  # every rank stops together
            self.optimizer.zero_grad(set_to_none=True)
            last = self.checkpoint_path(self.state.last_checkpoint) or "none was saved yet"
            where = f"loss is {step_loss}" if not math.isfinite(step_loss) else "loss is not finite on another process"
            raise NonFiniteLossError(
                f"{where} at step {step}; training stopped before that step changed any weight. "
                f"Last good checkpoint: {last}. Lower --learning_rate, raise --warmup_ratio, keep "
                "--max_grad_norm on, or use --bf16 rather than --fp16"
            )
        if unlabelled:
            grad_norm, skipped = math.nan, True
            logger.warning("step %d: a batch of this step has no labelled token (every label is -100), so its loss "
                           "is undefined: the update is skipped. Longer rows or a larger batch make this rarer", step)
        else:
            if self.args.fp16:
                self.scaler.unscale_(self.optimizer)
            max_norm = self.args.max_grad_norm if self.args.max_grad_norm > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(self._parameters(), max_norm)
            if not self.args.fp16 and not math.isfinite(float(grad_norm)):
                # A finite loss can still give a NaN or infinite gradient (a backward through sqrt(0), an
                # adversarial loss at perturbed embeddings): outside fp16 no scaler skips it, and the update
                # turned every weight to NaN, found only at the next step's loss. DDP's gradients are the
                # all-reduced ones, so every rank stops together.
                self.optimizer.zero_grad(set_to_none=True)
                last = self.checkpoint_path(self.state.last_checkpoint) or "none was saved yet"
                raise NonFiniteLossError(
                    f"the gradient norm is {float(grad_norm)} at step {step} (the loss is {step_loss}); training "
                    f"stopped before that step changed any weight. Last good checkpoint: {last}. Lower "
                    "--learning_rate, raise --warmup_ratio, or look for an operation whose gradient is undefined "
                    "where it is evaluated (sqrt or log at 0)"
                )
            scale = self.scaler.get_scale() if self.args.fp16 else None
            self.scaler.step(self.optimizer)
            self.scaler.update()
            skipped = self.args.fp16 and self.scaler.get_scale() < scale
        if skipped:
            window["skipped_steps"].append(1.0)
        if skipped and not unlabelled:
            logger.info(
                "step %d: fp16 gradients overflowed; the scaler skipped the step (scale now %g)",
                step,
                self.scaler.get_scale(),
            )
        # the highest group's rate: with layer-wise rates (--llrd, --lr_groups) group 0 is the embeddings', far below
        window["learning_rate"].append(max(self.scheduler.get_last_lr()))
        if not skipped:  # a skipped update spends none of the schedule (as Hugging Face's Trainer)
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.global_step = step
        if math.isfinite(step_loss):
            window["loss"].append(step_loss)
        if math.isfinite(grad_norm):  # an fp16 step the scaler skipped: counted in skipped_steps, not averaged
            window["grad_norm"].append(float(grad_norm))
        window["wait"].append(wait)
        window["time"].append(time.perf_counter() - step_start)
        self._callbacks("on_step_end")

    # -- logging, evaluation, saving --------------------------------------------------------------
    def _log(self, window: dict) -> dict:
        means = {k: sum(v) / len(v) for k, v in window.items() if v and k not in ("tokens", "wait", "time")}
        seconds = sum(window["time"])
        means["tokens_per_second"] = sum(window["tokens"]) / max(seconds, 1e-9)
        means["data_wait_share"] = sum(window["wait"]) / max(seconds, 1e-9)
        means["skipped_steps"] = float(len(window.get("skipped_steps", [])))
        means = mean_of_present_across_ranks(means, self.context)  # one process's window may lack the loss
        means["tokens_per_second"] *= self.context.world_size
        # the epoch as Hugging Face logs it, with the share of its batches done (2.5: half-way through the third),
        # as metrics.py's example shows; the whole number alone read 0 for every line of a first epoch
        epoch = self.state.epoch + self.state.batches_done / max(1, self._epoch_length)
        record = {"step": self.state.global_step, "epoch": round(epoch, 4), "phase": self.state.phase, **means}
        if "skipped_steps" in record and not self.args.fp16 and not record["skipped_steps"]:
            del record["skipped_steps"]  # only fp16 overflows or unlabelled steps skip an update
        self.state.history.append(record)
        self.writer.write(record)
        if self.context.is_main:
            # four decimals, or four significant digits below 1: a learning rate of 2e-5 printed as 0.0
            logger.info("step %d: %s", record["step"],
                        {k: round(v, 4) if abs(v) >= 1 else float(f"{v:.4g}") for k, v in means.items()})
        window.clear()
        return record

    def evaluate(self) -> dict:
        if self.eval_fn is None:
            return {}
        self.model.eval()
        with torch.no_grad():
            metrics = {k: _plain_number(v) for k, v in self.eval_fn(self.model).items()}
        self.wrapped.train()
        record = {
            "step": self.state.global_step,
            **{k if k.startswith("eval_") else f"eval_{k}": v for k, v in metrics.items()},
        }
        self.state.history.append(record)
        self.writer.write(record)
        self._callbacks("on_evaluate", metrics)
        return metrics

    def _is_better(self, value: float) -> bool:
        """An undefined metric (NaN: a Pearson of constant predictions) is never better, and a NaN best
        (kept by a run saved before this rule) is beaten by any number."""
        best = self.state.best_metric
        if math.isnan(value):
            return False
        return best is None or math.isnan(best) or (value > best if self.args.greater_is_better else value < best)

    def checkpoint_path(self, name: str | None) -> str | None:
        """The path of a checkpoint named in the state. Runs saved before names were stored hold
        absolute paths: their last component is the name, and the run directory is where it is now. A run
        resumed from another directory's checkpoint finds the checkpoints saved before it there."""
        if name is None:
            return None
        path = self.output_dir / Path(name).name
        if not path.exists() and self.resumed_from is not None and (self.resumed_from.parent / path.name).exists():
            path = self.resumed_from.parent / path.name
        return str(path)

    def save_checkpoint(self, best: bool = False) -> Path:
        """Write checkpoint-<step>; `best`: it is also the new best checkpoint, recorded in the very
        state it saves, so a run resumed from it still knows which checkpoint is best."""
        name = f"{checkpointing.CHECKPOINT_PREFIX}{self.state.global_step}"
        self.state.last_checkpoint = name
        self.state.run_settings = self.run_settings()
        self.state.log_window = {k: list(v) for k, v in self.window.items() if v}
        if self.context.enabled:  # every rank calls save_checkpoint together: gather what rank 0 will write
            self.state.rank_log_windows = gather_objects(self.state.log_window, self.context)
        if best:
            self.state.best_checkpoint = name
        checkpointing.save_checkpoint(
            self.output_dir,
            self.state.global_step,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            trainer_state=dataclasses.asdict(self.state),
            context=self.context,
            on_save=lambda directory: self._callbacks("on_save", directory),
        )
        if self.context.is_main:
            best_path = self.checkpoint_path(self.state.best_checkpoint)
            checkpointing.rotate_checkpoints(self.output_dir, self.args.save_total_limit, best_path)
        return self.output_dir / name

    def _stop_requested(self) -> bool:
        """A stop signal arrived; under DDP on any process (a scheduler may signal only some), so that
        every process saves and stops at the same step."""
        received = {"stop": float(self.stop_signal is not None)}
        return mean_across_ranks(received, self.context)["stop"] > 0

    def run_settings(self) -> dict:
        """What the data position (batches done in the epoch) and the saved optimizer state mean. A resume
        with other values would see some examples twice and others never, or load another optimizer's
        state, so it is refused (check_resume_settings). The optimizer's and the schedule's settings too: the
        saved state brings the run's own (a resume with another --learning_rate trained at the old one, unsaid).
        Not the run's length: --max_steps may change (the schedule is stretched, checkpointing's
        follow_this_runs_schedule)."""
        chain, optimizer = [], self.optimizer
        while optimizer is not None:  # wrappers first: PriorWD(Lookahead(RAdam))
            chain.append(type(optimizer).__name__)
            optimizer = getattr(optimizer, "optimizer", None)
        args = self.args
        return {
            "per_device_train_batch_size": self.batch_sizes[0],
            # only with a second phase: without one, its batch was recorded as phase 1's, and a resume with another
            # --per_device_train_batch_size was said to change --phase2_batch_size too
            **({"phase2_batch_size": self.batch_sizes[1]} if len(self.datasets) > 1 else {}),
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "world_size": self.context.world_size, "seed": args.seed,
            "train_examples": [len(d) for d in self.datasets], "optimizer": "(".join(chain) + ")" * (len(chain) - 1),
            # as JSON gives it back from the checkpoint (tuples as lists), so that equal recipes compare equal
            "recipe": json.loads(json.dumps(self.recipe)) if self.recipe is not None else None,
            **{name: json.loads(json.dumps(getattr(args, name))) for name in OPTIMIZER_SETTINGS},
            # each parameter group's peak rate (layer-wise rates: --llrd, --lr_groups, --head_lr; param_groups' lr)
            "learning_rates": [g.get("initial_lr", g["lr"]) for g in self.optimizer.param_groups],
        }

    def check_resume_settings(self, saved: dict, checkpoint: Path) -> None:
        """Refuse a resume whose data order, optimizer or schedule would not be the checkpoint's (older
        checkpoints recorded nothing, or less: not checked)."""
        recorded = saved.get("run_settings") or {}
        now = self.run_settings()

        def differences(flags: dict[str, str]) -> list[str]:
            differ = []
            for k in flags:
                if k not in recorded or k not in now or recorded[k] == now[k]:
                    continue
                if k == "recipe" and recorded[k] is None:  # a checkpoint of a run that named no recipe: not checked
                    continue
                if k == "recipe" and isinstance(recorded[k], dict) and isinstance(now[k], dict):  # entries that differ
                    differ += [f"{name}: {recorded[k].get(name)} then, {now[k].get(name)} now"
                               for name in sorted(set(recorded[k]) | set(now[k]), key=str)
                               if recorded[k].get(name) != now[k].get(name)]
                elif k != "learning_rates" or recorded.get("learning_rate") == now.get("learning_rate"):
                    # (another --learning_rate changes every group's peak rate: said once, as the flag)
                    differ.append(f"{flags[k]}: {recorded[k]} then, {now[k]} now")
            return differ

        differ = differences(DATA_SETTINGS)
        if differ:
            raise ValueError(f"{checkpoint} was saved by a run with other settings ({'; '.join(differ)}); its data "
                             "position and optimizer state mean nothing under these. Resume with the settings of "
                             "that run, or start a new run in another --output_dir")
        differ = differences({**{name: f"--{name}" for name in OPTIMIZER_SETTINGS}, "learning_rates": (
            "the peak learning rates of the parameter groups (--llrd, --lr_groups, --head_lr; param_groups' lr)")})
        if differ:
            # a pretraining checkpoint is also a model (config.json); a fine-tuning one is not, but its run's end is
            is_model = (checkpoint / "config.json").is_file()
            weights = (f"from its weights: pretrain.py --init_from {checkpoint}" if is_model
                       else "from a saved model: train.py --model_name_or_path takes a finished run's --output_dir")
            raise ValueError(f"{checkpoint} was saved by a run with another optimizer or learning-rate schedule "
                             f"({'; '.join(differ)}); a resume continues that run, and its saved optimizer state "
                             "would override these silently. Resume with the values of that run (only --max_steps or "
                             "--num_train_epochs may change: the schedule is then stretched to the new length), or "
                             f"start a new run with these in another --output_dir ({weights})")

    def _prepare_output_dir(self, resuming: bool) -> None:
        previous = check_output_dir(self.args, resuming)
        if self.context.is_main and previous and not resuming:
            for old in checkpointing.list_checkpoints(self.output_dir):
                shutil.rmtree(old)
            (self.output_dir / METRICS_FILE).unlink(missing_ok=True)
        self.writer = MetricsWriter(self.output_dir / METRICS_FILE if self.context.is_main else None)

    # -- the loop --------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | None = None) -> TrainResult:
        resume = resume_from_checkpoint or self.args.resume_from_checkpoint
        checkpoint = checkpointing.resolve_checkpoint(resume, self.output_dir) if resume else None
        self.resumed_from = checkpoint
        self._prepare_output_dir(resuming=checkpoint is not None)
        if checkpoint is not None:
            self._callbacks("on_resume", checkpoint)
            saved = checkpointing.load_checkpoint(
                checkpoint,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                scaler=self.scaler,
                context=self.context,
                check_trainer_state=lambda saved: self.check_resume_settings(saved, checkpoint),
                total_steps=self.total_steps,
            )
            self.state = TrainerState(**saved)
            if self.context.is_main:
                for old, new in checkpointing.set_aside_newer(checkpoint, self.output_dir):
                    logger.warning("resuming from %s: %s set aside as %s (a checkpoint of steps to be redone, or "
                                   "of another run in this directory: kept, while 'last' and --save_total_limit "
                                   "follow this run)", checkpoint, old.name, new.name)
            barrier(self.context)
            if self.context.is_main:  # the JSON lines of steps after the checkpoint are redone
                self.writer.path.parent.mkdir(parents=True, exist_ok=True)  # a new --output_dir
                self.writer.path.write_text("".join(json_line(r) for r in self.state.history))
            logger.info("resumed from %s at step %d", checkpoint, self.state.global_step)
        hint = crowded_cpu_hint(self.device)
        if hint and self.context.is_main:
            logger.warning(hint)
        self._callbacks("on_train_begin")
        self._loader_iter = None
        bar = None
        if not self.args.disable_tqdm and self.context.is_main:
            bar = ProgressBar(self.total_steps, initial=self.state.global_step)
        own = self.state.log_window  # one process, or a checkpoint saved before rank_log_windows
        if self.context.enabled and len(self.state.rank_log_windows) == self.context.world_size:
            own = self.state.rank_log_windows[self.context.rank]
        window = self.window = defaultdict(list, {k: list(v) for k, v in own.items()})
        start, wait_total, time_total, tokens_total = time.perf_counter(), 0.0, 0.0, 0
        record = None
        self.stop_signal = None
        with _stop_after_the_step_on_signals(self):
            try:
                while self.state.global_step < self.total_steps and not self.should_stop:
                    counted = len(window["tokens"])
                    self.training_step(window)
                    wait_total += window["wait"][-1]
                    time_total += window["time"][-1]
                    # every micro-batch of the step: it appends one count each (the last alone understated the
                    # run's tokens/s by the accumulation steps)
                    tokens_total += sum(window["tokens"][counted:])
                    step = self.state.global_step
                    done = step == self.total_steps or self.should_stop
                    logged = None
                    first = step == 1 and self.args.logging_first_step
                    if step % self.args.logging_steps == 0 or done or first:
                        logged = record = self._log(window)
                    saved = False
                    eval_due = (self.args.eval_steps and step % self.args.eval_steps == 0) or done
                    if self.eval_fn is not None and eval_due:
                        metrics = self.evaluate()
                        key = metric_key(self.args.metric_for_best_model, metrics)
                        if key is not None:
                            if key not in metrics:
                                self.save_checkpoint()  # the steps trained so far are not lost to a typo
                                what = (f"--load_best_model_at_end with no --metric_for_best_model keeps the lowest "
                                        f"eval loss, which eval_fn does not return (its keys: {sorted(metrics)})"
                                        if self._best_metric_by_default else
                                        f"metric_for_best_model {key!r} is not among eval_fn's keys {sorted(metrics)}")
                                last = self.checkpoint_path(self.state.last_checkpoint)
                                # both spellings: the Trainer is called from Python as well as by the command lines
                                raise ValueError(f"{what}; resume from {last} with metric_for_best_model (the flag "
                                                 "--metric_for_best_model) set to one of them")
                            if math.isnan(metrics[key]):
                                logger.warning("%s is undefined (NaN) at step %d, so this evaluation cannot be the "
                                               "best one", key, step)
                            if self._is_better(metrics[key]):
                                self.state.best_metric = float(metrics[key])
                                self.save_checkpoint(best=True)
                                saved = True
                    if self.should_stop and not done:
                        # set during the evaluation (an on_evaluate callback: early stopping): this step is the last
                        # one, closed as any last step is, with its log line and a checkpoint (it ended the run
                        # with the window since the last line unlogged, and no checkpoint unless one was due)
                        done = True
                        if logged is None:
                            logged = record = self._log(window)
                    if bar is not None:
                        bar.update(logged)
                    if not saved and (step % self.args.save_steps == 0 or done):
                        self.save_checkpoint()
                        saved = True
                    if not done and self._stop_requested():
                        if not saved:
                            self.save_checkpoint()
                        raise TrainingInterrupted(
                            self.stop_signal or signal.SIGTERM,  # only another process got it: the scheduler's
                            step,
                            self.checkpoint_path(self.state.last_checkpoint),
                        )
            finally:
                if bar is not None:
                    bar.close()
        best_path = self.checkpoint_path(self.state.best_checkpoint)
        if self.args.load_best_model_at_end and best_path:
            checkpointing.load_model_weights(self.model, Path(best_path))
            logger.info(
                "loaded the best checkpoint %s (%s = %s)",
                best_path,
                self.args.metric_for_best_model,
                self.state.best_metric,
            )
        if self.context.is_main and self.args.plot_loss and self.writer.path.exists():
            plot_losses(self.writer.path, self.output_dir / PLOT_FILE)
        self._callbacks("on_train_end")
        seconds = time.perf_counter() - start
        return TrainResult(
            global_step=self.state.global_step,
            history=self.state.history,
            training_loss=record["loss"] if record and "loss" in record else float("nan"),
            best_metric=self.state.best_metric,
            best_checkpoint=best_path,
            last_checkpoint=self.checkpoint_path(self.state.last_checkpoint),
            data_wait_share=wait_total / max(time_total, 1e-9),
            tokens_per_second=tokens_total * self.context.world_size / max(time_total, 1e-9),
            seconds=seconds,
        )

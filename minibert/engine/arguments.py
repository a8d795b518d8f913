"""Training arguments: one dataclass, with Hugging Face's `TrainingArguments` names wherever
Hugging Face has one, so a flag a user knows from `transformers` means the same thing here.

Only what the engine uses is here (no `report_to`, no `push_to_hub`). The few fields Hugging Face
lacks are marked "minibert:" in their comment.
"""

import argparse
import dataclasses
import difflib
import inspect
import json
import numbers
import re
from dataclasses import dataclass, field

SCHEDULER_TYPES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainingArguments:
    output_dir: str = "runs/minibert"  # checkpoints, metrics.jsonl, the loss plot and the final model
    overwrite_output_dir: bool = False  # allow reusing an output_dir that holds another run (its checkpoints go)
    # -- optimisation ------------------------------------------------------------------------
    learning_rate: float = 5e-5  # peak learning rate, reached at the end of warmup
    weight_decay: float = 0.0  # AdamW decoupled decay, matrices only (see minibert.finetune.param_groups)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0  # clip the global gradient norm to this; 0 turns clipping off
    lr_scheduler_type: str = "linear"  # the learning rate's shape after warmup
    lr_scheduler_kwargs: dict = field(default_factory=dict)  # num_cycles (cosine), power and lr_end (polynomial)
    warmup_steps: int = 0  # linear warmup over this many steps; wins over warmup_ratio when > 0
    warmup_ratio: float = 0.0  # ... or over this share of all steps
    # -- batches and length ---------------------------------------------------------------------
    per_device_train_batch_size: int = 8  # examples per micro-batch on each process
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    max_steps: int = -1  # optimizer steps; when > 0 it wins over num_train_epochs
    num_train_epochs: float = 3.0
    dataloader_num_workers: int = 0  # processes that collate batches (0: in the training process)
    # drop the last incomplete batch of each epoch (under DDP: the last round); a sampler that yields batches
    # (train.py's smart batching, multi-task mixing) makes its own: smart batching takes the flag
    dataloader_drop_last: bool = False
    # minibert: two-phase training as in NVIDIA's BERT recipe (short sequences first, long ones last);
    # the engine switches to `phase2_dataset` for this final share of the steps.
    phase2_ratio: float = 0.1
    phase2_batch_size: int | None = None  # minibert: per-device batch size in phase 2 (default: unchanged)
    # -- precision and device ---------------------------------------------------------------------
    bf16: bool = False  # autocast to bfloat16 (CUDA or CPU); no loss scaling needed
    fp16: bool = False  # autocast to float16 with a gradient scaler (skips steps whose gradients overflow)
    ddp_find_unused_parameters: bool = False  # let DDP skip parameters a forward pass did not use (slower)
    device: str = "auto"  # minibert: "auto" takes CUDA when present; "cpu"; "cuda"
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more time
    torch_compile: bool = False  # compile the model's forward (and so its backward) with torch.compile
    torch_compile_backend: str | None = None  # torch.compile backend (inductor when unset); setting it compiles
    torch_compile_mode: str | None = None  # inductor mode (max-autotune, reduce-overhead ...); setting it compiles
    # -- logging, evaluation, checkpoints ---------------------------------------------------------
    logging_steps: int = 10  # one JSON line in metrics.jsonl every this many optimizer steps
    logging_first_step: bool = False  # also log step 1 alone: the loss of the untrained model
    eval_steps: int | None = None  # call eval_fn every this many steps (and at the end); None: only at the end
    # checkpoint every this many steps, at the end, and at each new best evaluation (when a best is tracked:
    # --metric_for_best_model or --load_best_model_at_end)
    save_steps: int = 500
    save_total_limit: int | None = 3  # keep the last K checkpoints, and the best on top if older; None: all
    metric_for_best_model: str | None = None  # key of eval_fn's dict; its best checkpoint is kept
    greater_is_better: bool | None = None  # default: False when the metric's name holds "loss" or "rmse", else True
    load_best_model_at_end: bool = False  # reload the best checkpoint's weights when training ends
    resume_from_checkpoint: str | None = None  # a checkpoint directory, or "last" for the newest in output_dir
    seed: int = 42
    disable_tqdm: bool = True  # the command lines turn the progress bar on; the library stays quiet
    plot_loss: bool = True  # minibert: write loss.png from metrics.jsonl at the end (needs matplotlib)

    def __post_init__(self):
        _check_types(self)
        checks = [
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
            # AdamW's own refusals ("Invalid beta parameter at index 0") named no flag, and came after the data
            # was prepared; a negative worker count failed only at the first step
            *[(0.0 <= beta < 1.0, f"--adam_beta{i} must be in [0, 1) (AdamW: 0.9 and 0.999), got {beta}")
              for i, beta in ((1, self.adam_beta1), (2, self.adam_beta2))],
            (self.adam_epsilon >= 0, f"--adam_epsilon must be >= 0 (e.g. 1e-8), got {self.adam_epsilon}"),
            (self.weight_decay >= 0, f"--weight_decay must be >= 0 (0 turns it off), got {self.weight_decay}"),
            (self.dataloader_num_workers >= 0,
             f"--dataloader_num_workers must be >= 0 (0: collate in the training process), got "
             f"{self.dataloader_num_workers}"),
            (self.per_device_train_batch_size >= 1,
             f"--per_device_train_batch_size must be >= 1, got {self.per_device_train_batch_size}"),
            (self.phase2_batch_size is None or self.phase2_batch_size >= 1,
             f"--phase2_batch_size must be >= 1 (or unset: phase 1's), got {self.phase2_batch_size}"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
            (self.max_steps > 0 or self.num_train_epochs > 0, "set max_steps > 0 or num_train_epochs > 0"),
            (0.0 <= self.warmup_ratio < 1.0, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (0.0 < self.phase2_ratio < 1.0, f"phase2_ratio must be in (0, 1), got {self.phase2_ratio}"),
            (self.max_grad_norm >= 0, "max_grad_norm must be >= 0 (0 turns clipping off)"),
            (self.logging_steps >= 1, "logging_steps must be >= 1"),
            (self.save_steps >= 1, "save_steps must be >= 1"),
            (self.eval_steps is None or self.eval_steps >= 1, "eval_steps must be >= 1 (or None)"),
            (self.save_total_limit is None or self.save_total_limit >= 1, "save_total_limit must be >= 1 (or None)"),
            (not (self.bf16 and self.fp16), "choose one of --bf16 and --fp16, not both"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.lr_scheduler_type not in SCHEDULER_TYPES:
            raise ValueError(f"lr_scheduler_type must be one of {SCHEDULER_TYPES}, got {self.lr_scheduler_type!r}")
        from minibert.engine.schedules import check_scheduler_kwargs  # (schedules imports this module)

        check_scheduler_kwargs(self.lr_scheduler_type, self.lr_scheduler_kwargs)  # before any model is loaded
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.torch_compile_backend is not None or self.torch_compile_mode is not None:
            self.torch_compile = True  # as in Hugging Face: naming a backend or a mode asks for compilation
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            # Hugging Face looks for "loss" only; an error such as a regression's rmse is also lower-is-better
            self.greater_is_better = not any(word in self.metric_for_best_model for word in LOWER_IS_BETTER)

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"


# Hugging Face TrainingArguments fields the engine has no use for, with what to do here instead (a Python caller got
# a bare "unexpected keyword argument"; the command lines say "did you mean")
HF_ONLY_ARGUMENTS = {
    **dict.fromkeys(("eval_strategy", "evaluation_strategy"),
                    "evaluation runs every eval_steps steps when eval_steps is set, and at the end: set eval_steps"),
    "save_strategy": "checkpoints are saved every save_steps steps, at the end and at each new best: set save_steps",
    "logging_strategy": "a line is logged every logging_steps steps: set logging_steps",
    **dict.fromkeys(("report_to", "logging_dir", "run_name"),
                    "every logged line goes to output_dir/metrics.jsonl (and the plot to loss.png); no tracker "
                    "is called: name the run by output_dir"),
    "per_device_eval_batch_size": "evaluation is the eval_fn you pass to the Trainer: batch there",
    "optim": "pass optimizer=... (or param_groups=...) to the Trainer; the default is AdamW",
    **dict.fromkeys(("do_train", "do_eval", "do_predict"),
                    "call trainer.train(); evaluation is the eval_fn you pass to the Trainer"),
    "label_names": "the model's loss reads the batch's labels itself (or pass loss_fn to the Trainer)",
    **dict.fromkeys(("use_cpu", "no_cuda"), "set device='cpu'"),
    "save_safetensors": "the checkpoints hold the training state; save the model with model.save_pretrained(dir), "
                        "which writes model.safetensors",
    "group_by_length": "pass a length-grouping sampler to the Trainer (sampler=...; train.py: --smart_batching)",
    "auto_find_batch_size": "set per_device_train_batch_size (and gradient_accumulation_steps)",
}


def _refuse_other_arguments(init):
    """TrainingArguments' __init__, with a Hugging Face name the engine lacks (or a misspelt one) explained."""
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}

    def checked(self, *args, **kwargs):
        for name in kwargs:
            if name in fields:
                continue
            if name in HF_ONLY_ARGUMENTS:
                raise TypeError(f"TrainingArguments has no {name}, a Hugging Face argument minibert's engine does "
                                f"not take: {HF_ONLY_ARGUMENTS[name]}")
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            raise TypeError(f"TrainingArguments has no {name}" + (f"; did you mean {close[0]}?" if close else "")
                            + " (its fields: minibert/engine/arguments.py)")
        init(self, *args, **kwargs)

    checked.__signature__ = inspect.signature(init)  # (help() and the command lines' flags read the fields)
    return checked


TrainingArguments.__init__ = _refuse_other_arguments(TrainingArguments.__init__)


def _check_types(args) -> None:
    """Numbers and switches of the type their field says: a number given as a string ("5e-5" from a config file)
    failed later as "'>' not supported between instances of 'str' and 'int'", and max_steps=2.5 was taken."""
    for f in dataclasses.fields(args):
        value, kinds = getattr(args, f.name), set(getattr(f.type, "__args__", (f.type,)))
        if value is None and type(None) in kinds or not kinds & {int, float, bool}:
            continue
        whole = kinds & {int, float} == {int}  # (NumPy's numbers pass: a sweep's np.arange gives them)
        fits = (isinstance(value, bool) if bool in kinds else not isinstance(value, bool) and isinstance(
            value, numbers.Integral if whole else numbers.Real))
        if not fits:
            want = "True or False" if bool in kinds else "a whole number" if whole else "a number"
            raise TypeError(f"TrainingArguments.{f.name} must be {want}, got {value!r} ({type(value).__name__})"
                            + ("; pass it unquoted" if isinstance(value, str) else ""))


def phase2_flags_given(args: TrainingArguments) -> list[str]:
    """The second phase's flags set away from their defaults (all that arguments can tell of a flag given): a run
    without a second phase refuses them, which it would ignore."""
    default_ratio = TrainingArguments.__dataclass_fields__["phase2_ratio"].default
    return [flag for flag, given in (("--phase2_ratio", args.phase2_ratio != default_ratio),
                                     ("--phase2_batch_size", args.phase2_batch_size is not None)) if given]


LOWER_IS_BETTER = ("loss", "rmse")  # a metric whose name holds one of these is better when smaller


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "y"):
        return True
    if lowered in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional(kind):
    """A parser for an `int | None` flag (float, str, bool too): "None" (what --help shows as its default) means
    None."""
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


# Names users bring from other tools, for the "did you mean" of an unknown flag
FLAG_ALIASES = {"--lr": "--learning_rate", "--epochs": "--num_train_epochs", "--batch_size":
                "--per_device_train_batch_size", "--steps": "--max_steps", "--output": "--output_dir",
                "--model": "--model_name_or_path", "--warmup": "--warmup_ratio"}


class CommandLineParser(argparse.ArgumentParser):
    """argparse for the command lines: flags by their whole name only (a prefix such as --max_step was taken
    for --max_steps, silently), and a short error: the message, the flag a misspelt one was probably meant
    to be, and where the full list is, instead of the usage line of every flag (50-70 lines here)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str):
        known = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        hints = []
        if message.startswith("unrecognized arguments"):
            for flag in re.findall(r"--\w[\w-]*", message):
                spelt = "--" + flag[2:].replace("-", "_")  # --learning-rate: --learning_rate
                close = difflib.get_close_matches(spelt, known, n=1)
                guess = FLAG_ALIASES[flag] if FLAG_ALIASES.get(flag) in known else next(iter(close), None)
                if guess:
                    hints.append(f"{flag}: did you mean {guess}?")
        self.exit(2, f"{self.prog}: error: {message}" + "".join(f"; {h}" for h in hints)
                  + f" (`{'python ' if self.prog.endswith('.py') else ''}{self.prog} --help` lists every flag)\n")


def add_arguments(parser: argparse.ArgumentParser, cls=TrainingArguments, defaults: dict | None = None) -> None:
    """One --flag per dataclass field, named as the field (Hugging Face's names), with the field's
    comment as help. Booleans: `--bf16` turns on, `--plot_loss false` turns off. `defaults`
    overrides the dataclass defaults (a command line's own defaults)."""
    defaults = defaults or {}
    comments = _field_comments(cls)
    group = parser.add_argument_group(f"{cls.__name__} (Hugging Face names)")
    for f in dataclasses.fields(cls):
        default = defaults.get(
            f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        )
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        help_text = f"{comments.get(f.name, '')} (default: {default})".replace("%", "%%")
        options = {"default": default, "help": help_text}
        # An optional flag (`X | None`) takes "None", the default --help shows, as None: only int ones did, so
        # `--torch_compile_backend None` compiled with a backend named "None", and `--llrd None` was refused
        optional = kind.endswith("| None")
        if kind.startswith("bool"):
            options.update(type=_optional(parse_bool) if optional else parse_bool, nargs="?", const=True,
                           metavar="true|false")
        elif kind == "dict":
            options.update(type=json.loads, metavar="JSON")
        elif kind.startswith("int"):
            options.update(type=_optional(int) if optional else int)
        elif kind.startswith("float"):
            options.update(type=_optional(float) if optional else float)
        elif kind == "str | None":
            options.update(type=_optional(str))
        elif kind.startswith("list"):
            # several values, and a flag given twice adds to them (a plain store kept the last silently:
            # `--multitask a=... --multitask b=...` trained b alone); added to the default, so it must be None
            if default is not None:
                raise TypeError(f"{cls.__name__}.{f.name}: a list flag's default must be None (extend would add to it)")
            options.update(nargs="+", action="extend")
        if f.name == "lr_scheduler_type":
            options["choices"] = SCHEDULER_TYPES
        if f.name == "device":
            options["choices"] = DEVICES
        group.add_argument(f"--{f.name}", **options)


def from_namespace(namespace: argparse.Namespace, cls=TrainingArguments):
    """The dataclass built from the parsed flags that belong to it (others are ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(namespace).items() if k in names})


def _field_comments(cls) -> dict[str, str]:
    """The `# comment` after each field in the class source, else the comment lines right above it (a field
    whose comment is too long for its line: --save_steps, --phase2_ratio, --dataloader_drop_last had no help):
    the help text of its flag. A section title (`# -- logging ---`) is no field's comment."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments, above = {}, []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above = [] if re.fullmatch(r"# -- .*-{3,}", stripped) else above + [stripped.lstrip("#").strip()]
            continue
        field_line = re.match(r"^\s+(\w+): [^=]+=(.*?)(?:#\s*(.+))?$", line)
        if field_line:
            name, _, after = field_line.groups()
            text = after.strip() if after else " ".join(above)
            if text:
                comments[name] = text
        above = []
    return comments

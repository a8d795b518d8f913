"""Fine-tune a pretrained encoder on a labelled task.

    python train.py                      # the default: the `pretrain.py --objective sop` checkpoint
                                         # on the shipped Shakespeare genre task, a few minutes on CPU
    python train.py --model_name_or_path random          # the same model from random weights
    python train.py --model_name_or_path path/to/bert --train_file train.csv --validation_file dev.csv \\
        --text_column sentence --label_column label --pooling mean_max --llrd 0.9 --fgm --swa_start 0.75

Every flag is a field of minibert.finetuning.FinetuneArguments or minibert.engine.TrainingArguments
(Hugging Face's names); `python train.py --help` lists them.
"""

import argparse
import dataclasses
import json
import logging
import sys
import types

from minibert.engine import TrainingArguments
from minibert.engine.arguments import DEVICES, SCHEDULER_TYPES
from minibert.finetune.losses import MULTI_LABEL_LOSSES
from minibert.finetune.optimizers import OPTIMIZERS
from minibert.finetune.pooling import POOLINGS
from minibert.finetuning import TASK_TYPES, FinetuneArguments, finetune

DEFAULT_OUTPUT_DIR = "runs/finetune-shakespeare-genre"
# Fine-tuning defaults that differ from the engine's (a small model on a small task, on CPU).
OVERRIDES = {"output_dir": DEFAULT_OUTPUT_DIR, "learning_rate": 1e-4, "num_train_epochs": 5.0,
             "per_device_train_batch_size": 32, "warmup_ratio": 0.1, "weight_decay": 0.01, "eval_steps": 50,
             "logging_steps": 10, "save_total_limit": 2, "load_best_model_at_end": True, "disable_tqdm": False}
CHOICES = {"pooling": ("default", *POOLINGS), "optim": OPTIMIZERS, "task_type": TASK_TYPES,
           "multi_label_loss": MULTI_LABEL_LOSSES, "padding": ("longest", "max_length"),
           "lr_scheduler_type": SCHEDULER_TYPES, "device": DEVICES}
SKIP = {"lr_scheduler_kwargs", "phase2_ratio", "phase2_batch_size", "plot_loss"}


def _scalar_type(annotation):
    if isinstance(annotation, types.UnionType):
        annotation = next(a for a in annotation.__args__ if a is not type(None))
    return annotation


def add_fields(parser: argparse.ArgumentParser, cls, defaults: dict) -> None:
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in SKIP or f.name in {a.dest for a in parser._actions}:
            continue
        default = defaults.get(f.name, f.default)
        kind = _scalar_type(f.type)
        if kind is bool:
            group.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=default)
        else:
            group.add_argument(f"--{f.name}", type=kind, default=default, choices=CHOICES.get(f.name),
                               metavar=None if f.name in CHOICES else kind.__name__.upper())


def parse(argv: list[str]) -> tuple[FinetuneArguments, TrainingArguments]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fields(parser, FinetuneArguments, {})
    add_fields(parser, TrainingArguments, OVERRIDES)
    ns = vars(parser.parse_args(argv))
    if ns["output_dir"] == DEFAULT_OUTPUT_DIR and "--output_dir" not in " ".join(argv):
        ns["overwrite_output_dir"] = True  # the demo run may be repeated
    pick = lambda cls: {f.name: ns[f.name] for f in dataclasses.fields(cls) if f.name in ns}
    try:
        return FinetuneArguments(**pick(FinetuneArguments)), TrainingArguments(**pick(TrainingArguments))
    except ValueError as err:
        parser.error(str(err))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args, training = parse(sys.argv[1:] if argv is None else argv)
    try:
        result = finetune(args, training)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\nevaluations (validation set):")
    for record in result.history:
        print("  " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))
    if result.swa_metrics:
        print(f"SWA average: {json.dumps({k: round(v, 4) for k, v in result.swa_metrics.items()})}")
    shown = {k: round(v, 4) for k, v in result.metrics.items()}
    print(f"final model ({result.task.problem_type}, best step {result.best_step}): {json.dumps(shown)}")
    print(f"saved to {result.output_dir} in {result.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

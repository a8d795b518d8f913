"""Fine-tune a pretrained model on a labelled task, or on a text-generation task (BART, GPT-2).

    python train.py                      # the default: the `pretrain.py --objective sop` checkpoint
                                         # on the shipped Shakespeare genre task (15-20 s on 2 CPU cores)
    python train.py --model_name_or_path random          # the same model from random weights
    python train.py --model_name_or_path random --neighbour_heads   # ... with pretrain.py's two written heads:
                                                         # the baseline that tells what its text taught
    python train.py --model_name_or_path path/to/bert --train_file train.csv --validation_file dev.csv \\
        --text_column sentence --label_column label --pooling mean_max --llrd 0.9 --fgm --swa_start 0.75
    python train.py --adapter_size 16 --learning_rate 1e-3   # or --ladder_side_tuning 4, --gradual_unfreezing
    python train.py --model_name_or_path runs/pretrain-clm --output_dir runs/finetune-clm  # a GPT-2 (or a BART)
                  # classifies with its own head: the last token's state (BART: the decoder's at the last </s>)
    python train.py --multitask genre=TRAIN,VAL play=TRAIN,VAL,play --mixing equal \\
        --task_type single_label_classification  # TRAIN, VAL: the shipped genre files; a play label such as
                                                 # "Henry VI, Part 3" holds a comma, which auto-detection refuses
    python train.py --task_type token_classification    # a tag per word: the shipped speech-turn task (README:
                                                         # "Token classification"), or --train_file of JSON lines
                                                         # ({"tokens": [...], "tags": [...]}) or CoNLL text
    python train.py --task_type question_answering      # extractive QA: the shipped who-says-it task, or SQuAD's
                                                         # JSON (--train_file train-v1.1.json)
    python train.py --task_type seq2seq --model_name_or_path runs/pretrain-bart-tang-1300 --num_beams 4 \\
        --train_file minibert/data/tasks/tang_t2s_train.jsonl --text_column source --target_column target \\
        --validation_file minibert/data/tasks/tang_t2s_validation.jsonl  # BART (README: "Generation tasks")
    python train.py --task_type causal_lm --model_name_or_path path/to/gpt2 --train_file data.jsonl \\
        --text_column prompt --target_column completion                    # GPT-2: the loss on the completion

Every flag is a field of minibert.finetuning.FinetuneArguments or minibert.engine.TrainingArguments
(Hugging Face's names); `python train.py --help` lists them. The default --output_dir,
runs/finetune-shakespeare-genre, is kept like any other: a second run there is refused unless it
passes --overwrite_output_dir (or --resume_from_checkpoint last, or another --output_dir).
"""

import json
import logging
import sys

from minibert.engine import (
    StoppedBySignal,
    TrainingArguments,
    TrainingInterrupted,
    stop_message,
    stop_on_signals,
)
from minibert.engine.arguments import CommandLineParser, add_arguments, from_namespace, phase2_flags_given
from minibert.engine.distributed import log_level, process_rank
from minibert.finetune.losses import MULTI_LABEL_LOSSES
from minibert.finetune.multitask import MIXING_STRATEGIES
from minibert.finetune.optimizers import OPTIMIZERS
from minibert.finetune.pooling import POOLINGS
from minibert.finetune.task_data import TASK_TYPES
from minibert.finetuning import (
    DEFAULT_QA_OUTPUT_DIR,
    DEFAULT_TAGGING_OUTPUT_DIR,
    DEFAULT_TRAINING,
    SMALL_MODEL_WIDTH,
    WIDE_MODEL_LEARNING_RATE,
    FinetuneArguments,
    default_learning_rate,
    finetune,
)

CHOICES = {"pooling": ("default", *POOLINGS), "optim": OPTIMIZERS, "task_type": TASK_TYPES,
           "multi_label_loss": MULTI_LABEL_LOSSES, "padding": ("longest", "max_length"), "mixing": MIXING_STRATEGIES}


def parse(argv: list[str]) -> tuple[FinetuneArguments, TrainingArguments]:
    parser = CommandLineParser(prog="train.py", description=__doc__)
    add_arguments(parser, FinetuneArguments)
    add_arguments(parser, TrainingArguments, DEFAULT_TRAINING)
    for action in parser._actions:
        if action.dest in CHOICES:
            action.choices = CHOICES[action.dest]
        if action.dest in ("output_dir", "train_file"):  # the shipped tagging and QA tasks have their own
            own = ("runs/finetune-shakespeare-turns, -speakers" if action.dest == "output_dir" else
                   "the shipped tasks' own")
            action.help = action.help.replace(" (default:", f"; --task_type token_classification, "
                                              f"question_answering: {own} (default:")
        if action.dest == "learning_rate":  # by the model's width when not given (finetuning.default_learning_rate)
            action.default = None
            action.help = (f"peak learning rate, reached at the end of warmup (default: {WIDE_MODEL_LEARNING_RATE:g} "
                           f"to fine-tune a pretrained model wider than {SMALL_MODEL_WIDTH}, else "
                           f"{DEFAULT_TRAINING['learning_rate']:g}; a resume: the checkpoint's)")
    ns = parser.parse_args(argv)
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    if "--output_dir" not in given:  # the shipped tagging and QA tasks' runs are not the genre task's
        ns.output_dir = {"token_classification": DEFAULT_TAGGING_OUTPUT_DIR,
                         "question_answering": DEFAULT_QA_OUTPUT_DIR}.get(ns.task_type, ns.output_dir)
    if ns.learning_rate is None:
        new_weights = bool(ns.adapter_size or ns.ladder_side_tuning or ns.new_encoder_vocab)  # trained from scratch
        ns.learning_rate, why = default_learning_rate(ns.model_name_or_path, ns.config_name, new_weights=new_weights,
                                                      resume_from_checkpoint=ns.resume_from_checkpoint,
                                                      output_dir=ns.output_dir)
        if why:
            logging.getLogger("train").info(why)
    if "--validation_file" in given and "--train_file" not in given and not ns.multitask:
        # the shipped genre file would be trained on, and the error would be about its columns
        parser.error("--validation_file without --train_file: the run would train on the shipped Shakespeare task's "
                     "file (the default --train_file) and evaluate on yours; pass your --train_file too")
    try:
        args, training = from_namespace(ns, FinetuneArguments), from_namespace(ns, TrainingArguments)
    except ValueError as err:
        parser.error(str(err))
    unused = phase2_flags_given(training)
    if unused:  # (the engine refuses them too, but only once the data is read and the model built)
        parser.error(f"{' and '.join(unused)} {'are' if len(unused) > 1 else 'is'} for pretrain.py's two-phase "
                     "training (--max_seq_length_phase2); fine-tuning has no second phase, so "
                     f"{'they' if len(unused) > 1 else 'it'} would be ignored; drop {' and '.join(unused)}")
    return args, training


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=log_level(logging.INFO), format="%(message)s")  # under torchrun: errors alone on rank > 0
    args, training = parse(sys.argv[1:] if argv is None else argv)
    try:
        with stop_on_signals():
            result = finetune(args, training)
    except (TrainingInterrupted, StoppedBySignal) as stop:
        message = stop_message(stop)  # (under torchrun: rank 0's, or the signalled process's own)
        if message is not None:
            print(f"train.py: {message}", file=sys.stderr)
        return stop.exit_code
    except ValueError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    if process_rank() != 0:  # under torchrun, one report
        return 0
    if not result.history and not result.metrics:  # no --validation_file: trained and saved, never measured
        how = ("give each task a validation file: --multitask NAME=TRAIN,VALIDATION" if args.multitask
               else "pass --validation_file to measure it")
        print(f"\nfinal model ({result.task.problem_type}"
              + (", the SWA average" if result.swa_is_final else ", the last step's")
              + f"): not evaluated (no validation file; {how})")
        print(f"saved to {result.output_dir} in {result.seconds:.0f} s")
        return 0
    print("\nevaluations (validation set):")
    for record in result.history:
        print("  " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))
    if result.swa_metrics:
        print(f"SWA average: {json.dumps({k: round(v, 4) for k, v in result.swa_metrics.items()})}")
    shown = {k: round(v, 4) for k, v in result.metrics.items()}
    which = ("the SWA average" if result.swa_is_final else
             f"best step {result.best_step}" if result.best_step is not None and training.load_best_model_at_end
             else "the last step's")
    print(f"final model ({result.task.problem_type}, {which}): {json.dumps(shown)}")
    print(f"saved to {result.output_dir} in {result.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

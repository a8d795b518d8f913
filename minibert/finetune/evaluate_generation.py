"""Evaluate a model that `train.py --task_type seq2seq / causal_lm` saved, with any decoding:

    python -m minibert.finetune.evaluate_generation runs/finetune-tang-t2s --num_beams 4
    python -m minibert.finetune.evaluate_generation runs/finetune-tang-t2s --validation_file other.jsonl
    python -m minibert.finetune.evaluate_generation runs/finetune-tang-t2s --num_beams 4 --predictions_file beams.jsonl
    python -m minibert.finetune.evaluate_generation runs/qa --validation_file qa.jsonl --text_column q --target_column a

The task type, --max_seq_length and --generation_max_length come from the run's eval_results.json; the
columns too, unless given (--text_column, --target_column: a file whose columns are named otherwise), the
decoding (--num_beams, unless given: with no flags the run's own numbers come back, up to the last digits where
the run decoded in batches of another --per_device_eval_batch_size than 64) and the validation file, unless
given (recorded as an absolute path, so the run's own file is read from any directory; a run saved before that
recorded it as typed, relative to where it was started); so greedy decoding (--num_beams 1) and beam search are
compared on the very same weights.
Prints the metrics as one JSON line (loss, exact_match, chrf, seconds); --predictions_file also writes
every output beside its source and target, one JSON line each, as train.py's generated_predictions.jsonl.
"""

import json
import logging
import sys
import time
from pathlib import Path

import torch

from minibert.engine.arguments import CommandLineParser
from minibert.finetune.generative import (
    GenerationEvaluator,
    causal_lm_examples,
    input_pad_token_id,
    seq2seq_examples,
    text_pairs,
    write_predictions,
)
from minibert.finetune.new_encoder import NEW_ENCODER_DIR, has_new_encoder
from minibert.finetune.task_data import read_rows
from minibert.finetuning import load_finetuned
from minibert.tokenizer import load_tokenizer


def evaluate_saved(path: str | Path, validation_file: str | None = None, num_beams: int | None = None,
                   batch_size: int = 64, max_new_tokens: int | None = None,
                   predictions_file: str | Path | None = None, text_column: str | None = None,
                   target_column: str | None = None) -> dict:
    """num_beams: 1 = greedy decoding, more = beam search (default: the run's own --num_beams, recorded in its
    eval_results.json). predictions_file: where to write
    {"source", "target", "prediction"} per example (a new file: never overwritten). text_column / target_column:
    the validation file's source (prompt) and target (completion) columns, when they are not named as the run's
    were (default: the run's)."""
    path = Path(path)
    # before the model loads and decodes; a 0 read as "not given" took the run's limit without a word
    for flag, value in (("--num_beams", num_beams), ("--per_device_eval_batch_size", batch_size),
                        ("--generation_max_length", max_new_tokens)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if predictions_file is not None and Path(predictions_file).exists():
        # checked before decoding, which can take minutes; the run's own generated_predictions.jsonl is
        # the final model's record and must survive a re-decoding with other settings
        raise ValueError(f"--predictions_file {predictions_file} already exists; name a new file (it is "
                         "never overwritten)")
    record_file = path / "eval_results.json"
    if not record_file.is_file():
        raise ValueError(f"{path} has no eval_results.json; pass the output_dir of a train.py --task_type seq2seq "
                         "or causal_lm run")
    record = json.loads(record_file.read_text(encoding="utf-8"))
    settings = record.get("generation")
    if settings is None:  # a classifier's record names its task; a multi-task run's has "tasks" instead
        task_type = record["task"]["problem_type"] if "task" in record else "multi-task"
        raise ValueError(f"{path} holds a {task_type} model, not a generation run; use train.py's own evaluation")
    task_type = record["task"]["problem_type"]
    if not validation_file:
        validation_file = settings.get("validation_file")
        if validation_file is None:
            raise ValueError("the run had no validation file; pass --validation_file")
        if not Path(validation_file).is_file():
            # train.py records it absolute; a run saved before that recorded it as typed, relative to the
            # directory the run was started in, which is not known here
            where = ("" if Path(validation_file).is_absolute() else
                     f" (relative to the directory the run was started in, not to {Path.cwd()})")
            raise ValueError(f"the run's validation file {validation_file}{where} does not exist; pass "
                             "--validation_file FILE")
    tokenizer = load_tokenizer(path)
    source_tokenizer = load_tokenizer(path / NEW_ENCODER_DIR) if has_new_encoder(path) else None
    max_length = settings["max_seq_length"]
    rows = read_rows(validation_file, "--validation_file FILE")  # (this command has no --train_file)
    sources, targets = text_pairs(rows, text_column or settings["text_column"],
                                  target_column or settings["target_column"], task_type, validation_file)
    if task_type == "seq2seq":
        examples = seq2seq_examples(sources, targets, tokenizer, max_length, source_tokenizer)
    else:
        examples = causal_lm_examples(sources, targets, tokenizer, max_length, validation_file)
    model = load_finetuned(path)
    # A run saved before generation_max_length was recorded decoded up to max_seq_length unless told otherwise.
    if max_new_tokens is None:
        max_new_tokens = settings.get("generation_max_length", max_length)
    if num_beams is None:  # a run trained with --num_beams 4 evaluated with beam 4, as its own numbers were
        num_beams = settings["num_beams"]
    evaluator = GenerationEvaluator(examples, task_type, tokenizer, batch_size, num_beams, max_new_tokens,
                                    input_pad_token_id(source_tokenizer or tokenizer))
    start = time.perf_counter()
    metrics = evaluator(model)
    if predictions_file is not None:
        Path(predictions_file).parent.mkdir(parents=True, exist_ok=True)
        write_predictions(predictions_file, examples, evaluator.predictions)
    return {**metrics, "num_beams": num_beams, "examples": len(examples), "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = CommandLineParser(prog="python -m minibert.finetune.evaluate_generation", description=__doc__)
    parser.add_argument("path", help="the output_dir of a train.py --task_type seq2seq / causal_lm run")
    parser.add_argument("--validation_file", help="default: the run's")
    parser.add_argument("--num_beams", type=int, help="1: greedy decoding, more: beam search (default: the run's)")
    parser.add_argument("--per_device_eval_batch_size", type=int, default=64)
    parser.add_argument("--generation_max_length", type=int, help="new tokens at most (default: the run's)")
    parser.add_argument("--predictions_file", help="write each output beside its target here, one JSON line each "
                        "(a new file)")
    parser.add_argument("--text_column", help="the validation file's source (prompt) column (default: the run's)")
    parser.add_argument("--target_column", help="the validation file's target (completion) column (default: the run's)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        metrics = evaluate_saved(args.path, args.validation_file, args.num_beams, args.per_device_eval_batch_size,
                                 args.generation_max_length, args.predictions_file, args.text_column,
                                 args.target_column)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

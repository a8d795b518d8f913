"""Pretrain a BERT, RoBERTa, BART or GPT model: `python pretrain.py --objective sop` (no other argument
needed: the shipped Shakespeare corpus, the `tiny` model (2 layers x 128), about 3 minutes on a 2-core CPU).

    python pretrain.py --objective mlm --corpus my_texts/ --model_size small --max_steps 20000 --bf16
    python pretrain.py --objective mlm --model_type roberta --corpus my_texts/   # RoBERTa: byte-level BPE, no NSP
    python pretrain.py --objective nsp --optim bertadam --warmup_ratio 0.01       # BERT's own update and warmup
    python pretrain.py --objective wwm --init_from path/to/bert-base-chinese --corpus zh.txt
    torchrun --nproc_per_node 8 pretrain.py --objective sop --model_size base --max_seq_length_phase2 512
    python pretrain.py --objective sop --resume_from_checkpoint last

Flags: the pretraining options below, then the engine's (Hugging Face's TrainingArguments names).
"""

import argparse
import logging
import sys

from minibert.data import OBJECTIVES
from minibert.data.corpus import corpus_file_list, has_columns
from minibert.data.prepared import NotEnoughDiskSpace
from minibert.engine import (
    NonFiniteLossError,
    StoppedBySignal,
    TrainingInterrupted,
    stop_message,
    stop_on_signals,
)
from minibert.engine.arguments import CommandLineParser, add_arguments, from_namespace, parse_bool
from minibert.engine.distributed import log_level, process_rank
from minibert.pretraining import (
    DEFAULT_RUN,
    DEFAULT_TRAINING,
    MASKED_LM_OBJECTIVES,
    MODEL_SIZES,
    PRETRAINING_OPTIMIZERS,
    PretrainingOptions,
    format_summary,
    run_pretraining,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandLineParser(prog="pretrain.py", description=__doc__)
    options = PretrainingOptions()
    group = parser.add_argument_group("pretraining")
    group.add_argument(
        "--objective",
        choices=list(OBJECTIVES),
        default=options.objective,
        help="what to learn; the model family follows (bart: BART, clm: GPT-2, others: BERT, or with --model_type "
        "roberta a RoBERTa)",
    )
    group.add_argument(
        "--corpus",
        nargs="+",
        action="extend",  # --corpus a --corpus b reads both (a plain store kept b alone); None: filled in below
        default=None,
        help="text, JSON-lines, CSV or TSV files (optionally .gz) or directories of them, or a shipped corpus "
        "(shakespeare, tang_poems); given twice, both are read (default: shakespeare)",
    )
    group.add_argument("--text_column", default=options.text_column,
                       help="the JSON-lines field or CSV/TSV column holding the text (default: text); e.g. further "
                       "pretraining on a fine-tuning file: --corpus train.csv --text_column sentence")
    group.add_argument("--tokenizer", help="a tokenizer directory (default: --init_from's, or train one on the corpus)")
    group.add_argument("--vocab_size", type=int, default=DEFAULT_RUN["vocab_size"],
                       help="the most tokens of a tokenizer trained here (default: %(default)s), save that every "
                            "distinct character of the corpus is kept (WordPiece: the Tang poems give 4,801 at 3000)")
    group.add_argument(
        "--model_size",
        choices=list(MODEL_SIZES),
        default=DEFAULT_RUN["model_size"],
        help="size preset of a model started from scratch (default: %(default)s)",
    )
    group.add_argument("--model_type", choices=["roberta"], default=None,
                       help="roberta: a new RoBERTa (byte-level BPE, one token type) for mlm, wwm or span; "
                            "default: the objective's family")
    group.add_argument("--config_file", help="a config.json of the family (instead of --model_size)")
    group.add_argument("--optim", choices=list(PRETRAINING_OPTIMIZERS), default="adamw",
                       help="adamw (default), or bertadam: BERT's pretraining update, Adam without bias correction "
                            "(its recipe also warmed up over 1%% of the steps: --warmup_ratio 0.01)")
    group.add_argument("--init_from", help="a Hugging Face checkpoint directory to continue pretraining")
    group.add_argument(
        "--max_seq_length",
        type=int,
        default=DEFAULT_RUN["max_seq_length"],
        help="tokens per example (default: %(default)s; BERT used 128, then 512)",
    )
    group.add_argument(
        "--max_seq_length_phase2",
        type=int,
        help="two-phase training (NVIDIA's BERT recipe): the last --phase2_ratio of the steps at this length, e.g. 512",
    )
    group.add_argument(
        "--dropout",
        type=float,
        default=None,
        help=f"dropout of the model (default: {DEFAULT_RUN['dropout']} from scratch, as a short run underfits; BERT "
             "used 0.1; --init_from and --config_file keep their config's)",
    )
    group.add_argument(
        "--neighbour_heads",
        type=parse_bool,
        metavar="true|false",
        help="write a previous- and a next-token head into block 0 and keep them fixed while pretraining "
        f"(default: on for {', '.join(MASKED_LM_OBJECTIVES)} from scratch; see minibert/neighbour_heads.py)",
    )
    group.add_argument(
        "--mlm_probability",
        type=float,
        help=f"share of tokens to mask in training (default: {DEFAULT_RUN['mlm_probability']} for "
        f"{', '.join(MASKED_LM_OBJECTIVES)} from scratch, Wettig et al. 2022, https://arxiv.org/abs/2202.08005; "
        "BERT used 0.15, as the held-out evaluation always does)",
    )
    group.add_argument(
        "--validation_share",
        type=float,
        default=options.validation_share,
        help=f"share of the works held out for the before/after evaluation (default: {options.validation_share})",
    )
    group.add_argument(
        "--corpus_fraction",
        type=float,
        default=options.corpus_fraction,
        help="train on this share of the training documents (a fixed subset; bench/bench_transfer.py uses it)",
    )
    group.add_argument(
        "--data_cache_dir",
        help="where the corpus is kept tokenised (prepared once per corpus file and tokenizer) and trained "
        "tokenizers are kept (default: $MINIBERT_CACHE, else ~/.cache/minibert)",
    )
    group.add_argument(
        "--preparation_workers",
        type=int,
        help="processes that tokenise a large corpus file (default: one per CPU core, at most 8)",
    )
    add_arguments(parser, defaults=DEFAULT_TRAINING)
    parser._option_string_actions["--output_dir"].help = (  # its default follows --objective (main)
        "checkpoints, metrics.jsonl, the loss plot and the final model (default: runs/pretrain-<objective>)")
    ns = parser.parse_args(argv)
    ns.corpus = ns.corpus or options.corpus
    return ns


def masking_options(objective: str, mlm_probability: float | None, init_from: str | None) -> dict:
    """--mlm_probability, else the default run's masking for a BERT started from scratch, else the objective's own."""
    if mlm_probability is None and objective in MASKED_LM_OBJECTIVES and not init_from:
        mlm_probability = DEFAULT_RUN["mlm_probability"]
    return {} if mlm_probability is None else {"mlm_probability": mlm_probability}


def check_flags_apply(given: set[str], ns: argparse.Namespace) -> None:
    """Refuse a flag the run would ignore: the model comes from --init_from (its own config.json, not
    --config_file's), its size from --init_from's or --config_file's config.json (not --model_size), the tokenizer
    from --tokenizer or --init_from (none is trained to --vocab_size). A resume keeps --vocab_size: its tokenizer
    comes from the checkpoint, but its command is the first run's with --resume_from_checkpoint added. A text
    column names a field of JSON lines or a column of a CSV / TSV file, not part of a .txt file."""
    if ns.init_from and ns.config_file:
        raise ValueError(f"--config_file {ns.config_file} with --init_from: the model continued is {ns.init_from}, "
                         "built from its own config.json, so --config_file would be ignored; drop --config_file "
                         "(or --init_from, to start from scratch with the file's config)")
    model_from = "--init_from" if ns.init_from else "--config_file" if ns.config_file else None
    if "--model_size" in given and model_from:
        raise ValueError(f"--model_size {ns.model_size} with {model_from}: the model's size is {model_from}'s "
                         f"config.json, so --model_size would be ignored; drop --model_size (or {model_from})")
    tokenizer_from = "--tokenizer" if ns.tokenizer else "--init_from" if ns.init_from else None
    if "--vocab_size" in given and tokenizer_from and not ns.resume_from_checkpoint:
        raise ValueError(f"--vocab_size {ns.vocab_size} with {tokenizer_from}: the tokenizer is {tokenizer_from}'s, "
                         "none is trained on the corpus, so --vocab_size would be ignored; drop --vocab_size")
    if "--text_column" in given and not any(has_columns(file) for file in corpus_file_list(ns.corpus)):
        raise ValueError(f"--text_column {ns.text_column} with a corpus of text files only: a .txt file has no "
                         "fields or columns (blank lines separate its documents), so --text_column would be "
                         "ignored; drop --text_column, or pass the JSON lines / CSV / TSV file that holds the column")


def main(argv=None) -> int:
    # under torchrun, errors alone on ranks other than 0 (every process printed the same warnings)
    logging.basicConfig(level=log_level(logging.WARNING), format="%(levelname)s %(name)s: %(message)s")
    ns = parse_args(argv)
    ns.output_dir = ns.output_dir or f"runs/pretrain-{ns.objective}"
    given = {a.split("=")[0] for a in (sys.argv[1:] if argv is None else argv) if a.startswith("--")}
    if "--num_train_epochs" in given and "--max_steps" not in given:
        ns.max_steps = -1  # epochs asked for: the default run's --max_steps would otherwise win (the engine's rule)
    try:
        check_flags_apply(given, ns)
        options = PretrainingOptions(
            objective=ns.objective,
            corpus=ns.corpus,
            text_column=ns.text_column,
            tokenizer=ns.tokenizer,
            vocab_size=ns.vocab_size,
            model_size=ns.model_size,
            model_type=ns.model_type,
            optim=ns.optim,
            config_file=ns.config_file,
            init_from=ns.init_from,
            max_seq_length=ns.max_seq_length,
            max_seq_length_phase2=ns.max_seq_length_phase2,
            # a checkpoint continued, or a config given, keeps its own dropout unless --dropout says otherwise
            dropout=ns.dropout if ns.dropout is not None or ns.init_from or ns.config_file else DEFAULT_RUN["dropout"],
            neighbour_heads=ns.neighbour_heads,
            validation_share=ns.validation_share,
            corpus_fraction=ns.corpus_fraction,
            data_cache_dir=ns.data_cache_dir,
            preparation_workers=ns.preparation_workers,
            objective_options=masking_options(ns.objective, ns.mlm_probability, ns.init_from),
        )
        with stop_on_signals():
            result = run_pretraining(options, from_namespace(ns))
    except (TrainingInterrupted, StoppedBySignal) as stop:
        message = stop_message(stop)  # (under torchrun: rank 0's, or the signalled process's own)
        if message is not None:
            print(f"pretrain.py: {message}", file=sys.stderr)
        return stop.exit_code
    except (ValueError, ImportError, NonFiniteLossError, NotEnoughDiskSpace) as error:  # ImportError: an extra
        print(f"pretrain.py: error: {error}", file=sys.stderr)
        return 1
    if process_rank() == 0:  # under torchrun, one summary
        print(format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

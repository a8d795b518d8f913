"""Pretraining, end to end: the library behind `pretrain.py`.

    corpus ─► documents ─► tokenizer (given, from --init_from, or trained on the corpus)
                        ─► objective (mlm, wwm, span, nsp, sop, bart, clm, electra) ─► examples
    objective.model_family ─► model (a size preset, a config file, or --init_from a checkpoint)
    engine (minibert.engine.Trainer) ─► checkpoints, metrics.jsonl, loss.png
    ─► output_dir: config.json + model.safetensors + tokenizer files (Hugging Face format)

A few documents (validation_share) are held out; the model is evaluated on them before and after
training with fixed masks, so "loss at start" and "loss at end" compare the same batches.
"""

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from minibert.checkpoint import read_config_dict, read_state_dict
from minibert.data import OBJECTIVES, build_objective, load_corpus
from minibert.engine import Trainer, TrainingArguments
from minibert.engine.checkpointing import resolve_checkpoint
from minibert.engine.distributed import setup
from minibert.engine.trainer import TrainResult, check_output_dir
from minibert.tokenizer import Tokenizer, load_tokenizer, train_tokenizer

logger = logging.getLogger(__name__)

# Model sizes (layers, hidden, heads, feed-forward), named as Turc et al. 2019 name the small BERTs
# (https://arxiv.org/abs/1908.08962); "micro" is smaller still, for a first run on a laptop CPU.
MODEL_SIZES = {
    "micro": (2, 96, 2, 384),
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
    "medium": (8, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}
# config.json model_type -> the family of objectives that can continue pretraining it
CHECKPOINT_FAMILIES = {"bert": "bert", "roberta": "bert", "bart": "bart", "gpt2": "gpt"}
TOKENIZER_KINDS = {"bert": "wordpiece", "bart": "bytelevel_bpe", "gpt": "bytelevel_bpe"}


@dataclass
class PretrainingOptions:
    """What pretraining needs beyond the engine's TrainingArguments."""

    objective: str = "sop"  # one of minibert.data.OBJECTIVES
    corpus: list[str] = field(default_factory=lambda: ["shakespeare"])  # files, directories or shipped names
    tokenizer: str | None = None  # a tokenizer directory; None: --init_from's, or one trained on the corpus
    vocab_size: int = 8000  # size of a tokenizer trained on the corpus
    model_size: str = "mini"  # one of MODEL_SIZES, for a model started from scratch
    config_file: str | None = None  # a config.json for the family (wins over model_size)
    init_from: str | None = None  # a Hugging Face checkpoint directory to continue pretraining
    max_seq_length: int = 128
    max_seq_length_phase2: int | None = None  # two-phase: the last phase2_ratio of the steps at this length
    validation_share: float = 0.05  # documents held out for the before / after evaluation
    max_eval_examples: int = 512
    dropout: float | None = None  # override the config's dropout (hidden and attention) when set
    objective_options: dict = field(default_factory=dict)  # e.g. {"mlm_probability": 0.15}

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.model_size not in MODEL_SIZES:
            raise ValueError(f"unknown model_size {self.model_size!r}; choose one of {', '.join(MODEL_SIZES)}")
        if not 0.0 <= self.validation_share < 0.5:
            raise ValueError(f"validation_share must be in [0, 0.5), got {self.validation_share}")

    @property
    def family(self) -> str:
        return OBJECTIVES[self.objective].model_family


@dataclass
class PretrainingResult:
    output_dir: Path
    objective: str
    train: TrainResult
    eval_start: dict  # held-out metrics before training (empty when resuming)
    eval_end: dict  # held-out metrics after training
    num_parameters: int
    num_examples: int


# -- pieces ---------------------------------------------------------------------------------------
def size_config(family: str, size: str) -> dict:
    """A size preset under each family's own config names."""
    layers, hidden, heads, ffn = MODEL_SIZES[size]
    if family == "gpt":
        return {"n_layer": layers, "n_embd": hidden, "n_head": heads, "n_inner": ffn}
    if family == "bart":
        half = max(1, layers // 2)  # encoder + decoder together have the preset's depth
        return {
            "d_model": hidden,
            "encoder_layers": half,
            "decoder_layers": half,
            "encoder_attention_heads": heads,
            "decoder_attention_heads": heads,
            "encoder_ffn_dim": ffn,
            "decoder_ffn_dim": ffn,
        }
    return {"num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": heads, "intermediate_size": ffn}


def dropout_config(family: str, p: float) -> dict:
    if family == "gpt":
        return {"resid_pdrop": p, "embd_pdrop": p, "attn_pdrop": p}
    if family == "bart":
        return {"dropout": p, "attention_dropout": p}
    return {"hidden_dropout_prob": p, "attention_probs_dropout_prob": p}


def check_init_from(path: str, objective: str) -> dict:
    """The checkpoint's config, after checking that `objective` can continue pretraining it."""
    config = read_config_dict(path)  # raises: not a directory / no config.json
    model_type = config.get("model_type")
    family = CHECKPOINT_FAMILIES.get(model_type)
    if family is None:
        raise ValueError(
            f"--init_from {path}: model_type {model_type!r} is not one minibert pretrains; "
            f"supported: {sorted(CHECKPOINT_FAMILIES)}"
        )
    wanted = OBJECTIVES[objective].model_family
    if family != wanted:
        fitting = [name for name, cls in OBJECTIVES.items() if cls.model_family == family]
        raise ValueError(
            f"--objective {objective} trains a {wanted} model but {path} is a {model_type} checkpoint; "
            f"objectives that fit it: {', '.join(fitting)}"
        )
    return config


def get_tokenizer(
    options: PretrainingOptions, documents: list[list[str]], output_dir: Path, resuming: bool
) -> tuple[Tokenizer, bool]:
    """(tokenizer, trained_here). Order: --tokenizer, the resumed run's, --init_from's, else train one."""
    if options.tokenizer:
        return load_tokenizer(options.tokenizer), False
    if resuming and (output_dir / "tokenizer.json").is_file():
        return load_tokenizer(output_dir), False
    if options.init_from:
        if not any((Path(options.init_from) / f).is_file() for f in ("tokenizer.json", "vocab.txt", "vocab.json")):
            raise ValueError(
                f"--init_from {options.init_from} holds no tokenizer files; pass --tokenizer with the "
                "tokenizer the checkpoint was trained with"
            )
        return load_tokenizer(options.init_from), False
    kind = TOKENIZER_KINDS[options.family]
    texts = (" ".join(doc) for doc in documents)
    tokenizer = train_tokenizer(texts, kind=kind, vocab_size=options.vocab_size, model_max_length=512)
    logger.info("trained a %s tokenizer of %d tokens on the corpus", kind, tokenizer.vocab_size)
    return tokenizer, True


def build_model(options: PretrainingOptions, objective):
    family = options.family
    overrides = dropout_config(family, options.dropout) if options.dropout is not None else {}
    if family == "bert" and options.objective != "electra":
        # The MLM decoder runs only at the masked positions (same loss, see bert.masked_lm): for a
        # small model with an 8,000-word vocabulary that is most of the step's work saved.
        overrides = {**overrides, "sparse_mlm": True}
    if options.init_from:
        config_dict = check_init_from(options.init_from, options.objective)
        config = objective.config_class().from_dict(config_dict)
        kwargs = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra"}
        model = objective.build_model({**kwargs, **overrides})
        target = model if hasattr(model, "load_hf_state_dict") else model.discriminator  # ELECTRA: the encoder
        target.load_hf_state_dict(read_state_dict(options.init_from))
        logger.info("continuing pretraining from %s", options.init_from)
        return model
    if options.config_file:
        path = Path(options.config_file)
        if not path.is_file():
            raise ValueError(f"--config_file {path} does not exist; pass a config.json, or use --model_size")
        known = {f.name for f in dataclasses.fields(objective.config_class())}
        loaded = json.loads(path.read_text())
        config = {k: v for k, v in loaded.items() if k in known}
    else:
        config = size_config(family, options.model_size)
    return objective.build_model({**config, **overrides})


def split_documents(documents: list[list[str]], share: float, seed: int) -> tuple[list, list]:
    """(train, held out): a seeded random share of the documents, at least one when share > 0."""
    if share == 0 or len(documents) < 4:
        return documents, []
    order = np.random.default_rng(seed).permutation(len(documents))
    held = set(order[: max(1, round(share * len(documents)))].tolist())
    return [d for i, d in enumerate(documents) if i not in held], [d for i, d in enumerate(documents) if i in held]


def make_eval_fn(objective, examples: list[dict], batch_size: int, device_of, autocast):
    """Loss (and each loss component) and the objective's metrics on held-out examples, with the
    same masks at every call (each batch's generator is seeded by its index)."""

    def evaluate(model) -> dict:
        device = device_of()
        totals: dict[str, float] = {}
        for start in range(0, len(examples), batch_size):
            batch = objective.collate(examples[start : start + batch_size], torch.Generator().manual_seed(start))
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast():
                outputs = model(**batch)
            values = {"loss": float(outputs.loss)}
            values.update({k: float(v) for k, v in vars(outputs).items() if k.endswith("_loss") and v is not None})
            values.update(objective.metrics(batch, outputs))
            weight = len(next(iter(batch.values())))
            for k, v in values.items():
                if not math.isnan(v):
                    totals[k] = totals.get(k, 0.0) + v * weight
        return {k: v / len(examples) for k, v in totals.items()}

    return evaluate


class SaveModelAndTokenizer:
    """A callback: each checkpoint also holds the model in Hugging Face format and the tokenizer,
    so `--init_from output_dir/checkpoint-N` and transformers can use it directly."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    def on_save(self, trainer, directory: Path) -> None:
        trainer.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)


# -- the whole run ------------------------------------------------------------------------------
def run_pretraining(options: PretrainingOptions, args: TrainingArguments, callbacks=()) -> PretrainingResult:
    output_dir = Path(args.output_dir)
    resuming = args.resume_from_checkpoint is not None
    if resuming:
        resolve_checkpoint(args.resume_from_checkpoint, output_dir)  # fail now, before any work
    check_output_dir(args, resuming)  # refuse another run's directory before writing anything
    if options.init_from:
        check_init_from(options.init_from, options.objective)
    context = setup(args.device)
    torch.manual_seed(args.seed)

    documents = load_corpus(options.corpus)
    tokenizer, trained_here = get_tokenizer(options, documents, output_dir, resuming)
    objective_options = {"seed": args.seed, **options.objective_options}
    objective = build_objective(options.objective, tokenizer, options.max_seq_length, **objective_options)
    train_docs, held_docs = split_documents(documents, options.validation_share, args.seed)
    examples = objective.examples(train_docs)
    eval_examples = objective.examples(held_docs)[: options.max_eval_examples] if held_docs else []
    model = build_model(options, objective)

    phase2 = {}
    if options.max_seq_length_phase2:
        long_objective = build_objective(
            options.objective, tokenizer, options.max_seq_length_phase2, **objective_options
        )
        long_objective.check_model(model)
        phase2 = {"phase2_dataset": long_objective.examples(train_docs), "phase2_collate_fn": long_objective.collate}

    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        if trained_here or not (output_dir / "tokenizer.json").is_file():
            tokenizer.save_pretrained(output_dir)
        logger.info(
            "%s: %d training examples, %d held out, %s parameters",
            options.objective,
            len(examples),
            len(eval_examples),
            f"{sum(p.numel() for p in model.parameters()):,}",
        )

    trainer_box = {}
    eval_fn = None
    if eval_examples:
        eval_fn = make_eval_fn(
            objective,
            eval_examples,
            args.per_device_train_batch_size,
            lambda: trainer_box["trainer"].device,
            lambda: trainer_box["trainer"].autocast(),
        )
    trainer = Trainer(
        model,
        args,
        examples,
        objective.collate,
        eval_fn=eval_fn,
        callbacks=[SaveModelAndTokenizer(tokenizer), *callbacks],
        metrics_fn=objective.metrics,
        **phase2,
    )
    trainer_box["trainer"] = trainer
    eval_start = {}
    if eval_fn is not None and not resuming:
        model.eval()
        with torch.no_grad():
            eval_start = eval_fn(model)
    result = trainer.train()
    eval_end = next((r for r in reversed(result.history) if "eval_loss" in r), {})
    eval_end = {k.removeprefix("eval_"): v for k, v in eval_end.items() if k != "step"}
    if context.is_main:
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        summary = {
            "objective": options.objective,
            "eval_start": eval_start,
            "eval_end": eval_end,
            "global_step": result.global_step,
            "data_wait_share": result.data_wait_share,
            "tokens_per_second": result.tokens_per_second,
            "seconds": result.seconds,
        }
        (output_dir / "pretraining_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return PretrainingResult(
        output_dir=output_dir,
        objective=options.objective,
        train=result,
        eval_start=eval_start,
        eval_end=eval_end,
        num_parameters=sum(p.numel() for p in model.parameters()),
        num_examples=len(examples),
    )


def format_summary(result: PretrainingResult) -> str:
    """The few lines a person wants after a run: losses and accuracies at the start and the end (on
    the training batches: step 1, before any update, against the last logging window; and on the
    held-out documents), speed, and where the model is."""
    train = [r for r in result.train.history if "loss" in r]
    lines = [
        f"pretrained {result.objective} for {result.train.global_step} steps in {result.train.seconds:.0f} s "
        f"({result.num_parameters:,} parameters, {result.num_examples} training examples)"
    ]
    skip = {"step", "epoch", "phase", "learning_rate", "grad_norm", "tokens_per_second", "data_wait_share"}
    rows = [("training", train[0], train[-1])] if train else []
    if result.eval_end:
        rows.append(("held-out", result.eval_start, result.eval_end))
    for label, start, end in rows:
        lines.append(f"  {label} (start -> end):")
        keys = [k for k in end if k not in skip]
        for key in sorted(keys, key=lambda k: (not k.endswith("loss"), k)):
            before = f"{start[key]:.4f}" if key in start else "   -  "
            change = f"  ({end[key] / start[key]:.0%} of start)" if key.endswith("loss") and start.get(key) else ""
            lines.append(f"    {key:<24} {before} -> {end[key]:.4f}{change}")
    lines.append(
        f"  {result.train.tokens_per_second:,.0f} tokens/s; waiting for data: "
        f"{result.train.data_wait_share:.1%} of step time"
    )
    plot = ("loss.png" if (Path(result.output_dir) / "loss.png").exists()
            else "no loss.png: pip install minibert[plot] for the plot")
    lines.append(
        f"saved to {result.output_dir} (config.json, model.safetensors, tokenizer files; metrics.jsonl, "
        f"{plot}, checkpoints)"
    )
    return "\n".join(lines)

"""Pretraining, end to end: the library behind `pretrain.py`.

    corpus ─► documents ─► tokenizer (given, the resumed checkpoint's, --init_from's, or trained on the corpus)
                        ─► objective (mlm, wwm, span, nsp, sop, bart, clm, electra) ─► examples
    objective.model_family ─► model (a size preset, a config file, or --init_from a checkpoint)
    engine (minibert.engine.Trainer) ─► checkpoints, metrics.jsonl, loss.png
    ─► output_dir: config.json + model.safetensors + tokenizer files (Hugging Face format)

A share of the corpus's *works* (plays, books: `validation_share`) is held out whole, so the
held-out text is truly unseen, not other scenes of the plays the model trained on. The model is
evaluated on it before, during (every eval_steps) and after training with fixed masks, so "loss at
start" and "loss at end" compare the same batches.

Where each stage is, here and beside this file:

    tokenizer          get_tokenizer, trained_tokenizer -> tokenizer.py (train_tokenizer)
    corpus             prepare -> data/prepared.py (tokenised once, memory-mapped; wwm's word starts);
                       split_corpus (whole works held out)
    objective          data/objectives/<name>.py (masking rules in masking.py, pairs in nsp.py)
    model              build_model: a size preset (MODEL_SIZES), the speed paths (models/bert.py:
                       masked_lm, and unpad with nn/packing.py), the fixed heads (neighbour_heads.py)
    training, summary  run_pretraining -> engine/trainer.py; make_eval_fn; write_summary
"""

import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minibert.checkpoint import (
    GENERATION_CONFIG_NAME,
    read_config_dict,
    read_json_object,
    read_state_dict,
    write_json,
)
from minibert.data import OBJECTIVES, build_objective
from minibert.data.corpus import SHIPPED, corpus_file_list, iter_records, split_sentences, split_works, work_name
from minibert.data.objectives.nsp import SentencePairObjective
from minibert.data.prepared import (
    NOT_WRITABLE,
    CacheNotWritable,
    TokenizedCorpus,
    default_cache_dir,
    file_fingerprint,
    prepare_corpus,
    remove_abandoned_temporaries,
)
from minibert.engine import Trainer, TrainingArguments
from minibert.engine.arguments import phase2_flags_given
from minibert.engine.checkpointing import STATE_JSON, checkpoint_step, resolve_checkpoint
from minibert.engine.distributed import barrier, setup
from minibert.engine.trainer import TrainResult, check_output_dir, check_output_not_input, metric_key
from minibert.finetune.optimizers import build_finetune_optimizer
from minibert.finetune.param_groups import param_groups
from minibert.models.bart import BartConfig
from minibert.models.bert import BertConfig, RobertaConfig, RobertaEmbeddings, RobertaForMaskedLM
from minibert.models.gpt import GPT2Config
from minibert.neighbour_heads import keep_fixed, why_no_room, write_neighbour_heads
from minibert.tokenizer import (
    TOKENIZER_FILES,
    Tokenizer,
    check_tokenizer_fits,
    check_unknown_tokens,
    load_tokenizer,
    train_tokenizer,
)

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
# The default run (`python pretrain.py --objective sop` and nothing else), measured on a 2-core CPU
# (README, "The default run, measured"): about 3 minutes in all (issue 9's budget: 4), each training
# example seen about twice. A 2,000-token vocabulary makes each step 1.5x cheaper than 8,000 (the tied decoder and its
# gradient) and learned as well per second; batch 16 learned faster per second than 32; a larger
# learning rate (4e-3) stalled. Masking 40% of the tokens (Wettig et al. 2022, https://arxiv.org/abs/2202.08005)
# and the neighbour heads below take held-out MLM accuracy from 0.142 to 0.256 in the same time.
# Real runs pass their own sizes, lengths, steps, dropout and masking.
DEFAULT_RUN = {"model_size": "tiny", "max_seq_length": 64, "dropout": 0.0, "vocab_size": 2000, "mlm_probability": 0.4}
# Objectives that mask tokens for a BERT on its own: these get DEFAULT_RUN's masking and the neighbour heads.
MASKED_LM_OBJECTIVES = ("mlm", "wwm", "span", "nsp", "sop")
# RoBERTa pretrains (--model_type roberta) and continues pretraining (--init_from) under the single-segment masked-LM
# objectives, as RoBERTa was pretrained and as "Don't Stop Pretraining" continued it (Gururangan et al. 2020,
# https://arxiv.org/abs/2004.10964); it has no sentence-pair head for nsp/sop
ROBERTA_OBJECTIVES = ("mlm", "wwm", "span")
PRETRAINING_OPTIMIZERS = ("adamw", "bertadam")
DEFAULT_TRAINING = {
    "output_dir": None,  # runs/pretrain-<objective>
    "learning_rate": 2e-3,
    "warmup_ratio": 0.06,
    "weight_decay": 0.01,
    "per_device_train_batch_size": 16,
    "max_steps": 1600,
    "logging_steps": 25,
    "logging_first_step": True,
    "eval_steps": 400,
    "save_steps": 400,
    "save_total_limit": 2,
    "disable_tqdm": False,
}
# config.json model_type -> the family of objectives that can continue pretraining it. Not RoBERTa: the objectives
# build BERT's classes, and RoBERTa's are built apart (build_model: --init_from's, or new_roberta).
CHECKPOINT_FAMILIES = {"bert": "bert", "bart": "bart", "gpt2": "gpt"}
CONFIG_CLASSES = {"bert": BertConfig, "bart": BartConfig, "gpt": GPT2Config}
TOKENIZER_KINDS = {"bert": "wordpiece", "bart": "bytelevel_bpe", "gpt": "bytelevel_bpe"}
# BERT's and BART's tokenizers frame each text ([CLS] ... [SEP], <s> ... </s>); GPT-2's adds nothing: its
# training documents are only separated by </s>, and a prompt must not end with one.
FRAMES_TEXT = {"bert": True, "bart": True, "gpt": False}
SUMMARY_FILE = "pretraining_summary.json"
# The seed that draws the held-out examples (SOP's runs and splits, NSP's random segments), whatever --seed
# is: every seed is measured on the same pairs. 42, the engine's default --seed: the default run's own.
HELD_OUT_SEED = 42


@dataclass
class PretrainingOptions:
    """What pretraining needs beyond the engine's TrainingArguments."""

    objective: str = "sop"  # one of minibert.data.OBJECTIVES
    corpus: list[str] = field(default_factory=lambda: ["shakespeare"])  # files, directories or shipped names
    text_column: str = "text"  # the field (JSON lines) or column (CSV/TSV) holding each document's text
    tokenizer: str | None = None  # a tokenizer directory; None: --init_from's, or one trained on the corpus
    vocab_size: int = 8000  # size of a tokenizer trained on the corpus
    model_size: str = "mini"  # one of MODEL_SIZES, for a model started from scratch
    # "roberta": a new RoBERTa (byte-level BPE, <s> ... </s>, one token type, positions past the padding id) for
    # mlm, wwm or span, as Liu et al. 2019 pretrained it with masked LM alone (https://arxiv.org/abs/1907.11692);
    # None: the objective's own family (BERT for mlm ... sop and electra, BART for bart, GPT-2 for clm)
    model_type: str | None = None
    # adamw: decoupled weight decay with bias correction (https://arxiv.org/abs/1711.05101); bertadam: BERT's own
    # pretraining optimizer, the same update without bias correction (finetune/optimizers.py's BertAdam; BERT's
    # optimization.py, https://github.com/google-research/bert)
    optim: str = "adamw"
    config_file: str | None = None  # a config.json for the family (wins over model_size; init_from wins over it)
    init_from: str | None = None  # a Hugging Face checkpoint directory to continue pretraining
    max_seq_length: int = 128
    # two-phase: the last phase2_ratio of the steps at this length (BERT's recipe, https://arxiv.org/abs/1810.04805,
    # appendix A.2: 90% of the steps at 128 tokens, the rest at 512 to learn the long positions; why: attention
    # costs the square of the length)
    max_seq_length_phase2: int | None = None
    validation_share: float = 0.2  # share of the works (plays, books) held out for evaluation
    corpus_fraction: float = 1.0  # train on this share of the training documents (the data-scale experiment)
    # held-out examples evaluated (past this many, this many evenly spaced over them all, in corpus order: a small
    # work between two large ones can get none): above MIN_EVAL_PAIRS and MIN_EVAL_MASKED at 64
    # tokens, all of the shipped corpus's held-out pairs, and a fixed evaluation time however large the corpus
    max_eval_examples: int = 4000
    dropout: float | None = None  # override the config's dropout (hidden and attention) when set
    # a previous- and a next-token head written into block 0 and kept fixed (minibert/neighbour_heads.py); None:
    # on for a BERT started from scratch by mlm, wwm, span, nsp or sop, off otherwise
    neighbour_heads: bool | None = None
    objective_options: dict = field(default_factory=dict)  # e.g. {"mlm_probability": 0.15}
    data_cache_dir: str | None = None  # prepared corpora, trained tokenizers (None: $MINIBERT_CACHE, ~/.cache/minibert)
    # processes that tokenise a large corpus file (None: one per core, at most 8)
    preparation_workers: int | None = None

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        shortest = OBJECTIVES[self.objective].min_seq_length
        for flag, length in (("--max_seq_length", self.max_seq_length),
                             ("--max_seq_length_phase2", self.max_seq_length_phase2)):
            if length is not None and length < shortest:
                raise ValueError(f"{flag} {length} is too short: a {self.objective} example needs at least "
                                 f"{shortest} tokens (special tokens and text); pass {flag} {shortest} or more")
        if self.model_size not in MODEL_SIZES:
            raise ValueError(f"unknown model_size {self.model_size!r}; choose one of {', '.join(MODEL_SIZES)}")
        if self.optim not in PRETRAINING_OPTIMIZERS:
            raise ValueError(f"unknown --optim {self.optim!r}; pretrain.py takes {' or '.join(PRETRAINING_OPTIMIZERS)}")
        if self.model_type not in (None, "roberta"):
            raise ValueError(f"unknown --model_type {self.model_type!r}: roberta builds a new RoBERTa; leave it out "
                             "for the objective's own family")
        if self.model_type == "roberta" and self.objective not in ROBERTA_OBJECTIVES:
            raise ValueError(f"--model_type roberta pretrains with --objective {' / '.join(ROBERTA_OBJECTIVES)} "
                             f"(masked LM on single segments, as RoBERTa was pretrained); --objective {self.objective} "
                             + (f"trains a {OBJECTIVES[self.objective].model_family.upper().replace('GPT', 'GPT-2')}"
                                if self.objective in ("clm", "bart") else "needs a head RoBERTa does not have"))
        if self.model_type and self.init_from:
            raise ValueError("--model_type builds a new model, and --init_from continues one whose config.json says "
                             "what it is; leave --model_type out")
        if not 0.0 <= self.validation_share < 0.5:
            raise ValueError(f"validation_share must be in [0, 0.5), got {self.validation_share}")
        if not 0.0 < self.corpus_fraction <= 1.0:
            raise ValueError(f"corpus_fraction must be in (0, 1], got {self.corpus_fraction}")
        if self.preparation_workers is not None and self.preparation_workers < 1:  # (0 prepared in-process, unsaid)
            raise ValueError(f"--preparation_workers must be at least 1, got {self.preparation_workers}; 1 "
                             "tokenises in this process, leave it out for one process per CPU core, at most 8")
        # --dropout's and --mlm_probability's ranges are checked here, not only where the model and the objective
        # are built: that comes after the tokenizer is trained and the corpus tokenised, and named a config field
        # (resid_pdrop, hidden_dropout_prob), not the flag
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}; BERT used 0.1")
        if "mlm_probability" in self.objective_options and self.objective in ("bart", "clm"):
            raise ValueError(f"--mlm_probability applies to the masked-LM objectives (mlm, wwm, span, nsp, sop, "
                             f"electra); {self.objective} "
                             + ("masks nothing: it predicts each next token" if self.objective == "clm" else
                                "masks its own way (30% of the tokens in Poisson spans, BART's text infilling)")
                             + "; leave --mlm_probability out")
        masking = self.objective_options.get("mlm_probability")
        if masking is not None and not 0.0 < masking < 1.0:
            raise ValueError(f"--mlm_probability must be in (0, 1), got {masking}; BERT used 0.15")
        if self.neighbour_heads and (self.init_from or self.objective not in MASKED_LM_OBJECTIVES):
            why = ("--init_from's attention is already trained" if self.init_from
                   else f"--objective {self.objective} does not train a BERT encoder alone")
            raise ValueError(f"--neighbour_heads true needs a BERT started from scratch, and {why}; "
                             "leave --neighbour_heads out")

    @property
    def uses_neighbour_heads(self) -> bool:
        if self.neighbour_heads is not None:
            return self.neighbour_heads
        return not self.init_from and self.objective in MASKED_LM_OBJECTIVES

    @property
    def family(self) -> str:
        return OBJECTIVES[self.objective].model_family

    @property
    def tokenizer_family(self) -> str:
        """Whose tokenizer a run trains: RoBERTa's is BART's (byte-level BPE, <s> <pad> </s> <unk> <mask>)."""
        return "bart" if self.model_type == "roberta" else self.family


@dataclass
class PretrainingResult:
    output_dir: Path
    objective: str
    train: TrainResult
    eval_start: dict  # held-out metrics before training (resuming: those the run recorded, if any)
    eval_end: dict  # held-out metrics after training
    num_parameters: int
    num_examples: int
    passes: float = 0.0  # how many times training went over its examples (epochs)
    held_out_works: list[str] = field(default_factory=list)
    eval_warning: str | None = None  # why the held-out numbers are too noisy to read, if they are
    resumed_from: str | None = None  # the checkpoint the run went on from, if it was resumed


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


def check_model_type(model_type: str | None, objective: str, source: str) -> None:
    """`source` (an --init_from checkpoint, a --config_file) must describe a model `objective` trains."""
    family = CHECKPOINT_FAMILIES.get(model_type)
    if family is None:
        roberta = (f" without --model_type roberta (a new RoBERTa: pass --model_type roberta, under --objective "
                   f"{' / '.join(ROBERTA_OBJECTIVES)}; a RoBERTa checkpoint continues pretraining with --init_from)"
                   ) if model_type == "roberta" else ""
        raise ValueError(f"{source}: model_type {model_type!r} is not one minibert pretrains{roberta}; "
                         f"supported: {sorted(CHECKPOINT_FAMILIES)}")
    wanted = OBJECTIVES[objective].model_family
    if family != wanted:
        fitting = [name for name, cls in OBJECTIVES.items() if cls.model_family == family]
        raise ValueError(f"--objective {objective} trains a {wanted} model but {source} describes a {model_type!r} "
                         f"model; objectives that fit it: {', '.join(fitting)}")


def check_init_from(path: str, objective: str) -> dict:
    """The checkpoint's config, after checking that `objective` can continue pretraining it."""
    config = read_config_dict(path)  # raises: not a directory / no config.json
    if config.get("model_type") == "roberta":
        if objective not in ROBERTA_OBJECTIVES:
            why = (f"trains a {OBJECTIVES[objective].model_family.upper().replace('GPT', 'GPT-2')}, not a RoBERTa"
                   if objective in ("clm", "bart") else "needs a head RoBERTa does not have")
            raise ValueError(f"--init_from {path} is a RoBERTa, which continues pretraining under --objective "
                             f"{' / '.join(ROBERTA_OBJECTIVES)} (masked LM on single segments, as RoBERTa was "
                             f"pretrained); --objective {objective} {why}")
        return config
    check_model_type(config.get("model_type"), objective, f"--init_from {path}")
    return config


def _read_record(path: str | os.PathLike, name: str) -> dict:
    """A JSON object a run wrote into `path` (its summary, a checkpoint's trainer_state.json); {} if unreadable."""
    try:
        record = json.loads((Path(path) / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def recorded_recipe(checkpoint: str | os.PathLike) -> dict:
    """The recipe (--objective, masking, --model_type ...) a checkpoint-N's trainer_state.json records; {} if none."""
    settings = _read_record(checkpoint, STATE_JSON).get("run_settings")
    recipe = settings.get("recipe") if isinstance(settings, dict) else None
    return recipe if isinstance(recipe, dict) else {}


def recorded_objective(path: str | os.PathLike) -> str | None:
    """The objective a minibert pretraining run trained the checkpoint `path` with, as the run recorded it: in
    pretraining_summary.json (the run's output directory) or in trainer_state.json's recipe (its checkpoint-N).
    None for a checkpoint without such a record (Hugging Face's, one saved otherwise) or with an unreadable one."""
    for objective in (_read_record(path, SUMMARY_FILE).get("objective"), recorded_recipe(path).get("--objective")):
        if isinstance(objective, str) and objective in OBJECTIVES:
            return objective
    return None


def check_resume_model(options: PretrainingOptions, checkpoint: Path) -> None:
    """A resume rebuilds the checkpoint's model only under the --objective and --model_type that made it (the
    objective's heads, RoBERTa's or BERT's classes): refused here, before any data work, where the engine's own
    checks of the model and the recipe come only once the corpus is prepared. A checkpoint without the record: left
    to those."""
    recipe = recorded_recipe(checkpoint)
    if "--objective" not in recipe:
        return
    now = {"--objective": options.objective, "--model_type": options.model_type}
    differ = [f"{flag}: {recipe.get(flag)} then, {value} now" for flag, value in now.items()
              if recipe.get(flag) != value]
    if differ:
        raise ValueError(f"{checkpoint} was saved by a run with other settings ({'; '.join(differ)}); resume with the "
                         "settings of that run, or start a new run in another --output_dir")


def check_init_objective(options: PretrainingOptions) -> None:
    """--init_from a checkpoint pretrained under another objective than this run's: pretrain.py's --objective
    defaults to sop, so a masked-LM checkpoint continued without --objective trained a sentence-order task with a
    new, random head, where one expects the checkpoint's own objective to go on; said before any data work."""
    recorded = recorded_objective(options.init_from)
    if recorded is None or recorded == options.objective:
        return
    pairs = ("nsp", "sop")  # the objectives with a sentence-pair head (nsp_head)
    head = ("; the checkpoint has no sentence-pair head, so a new one starts at random"
            if options.objective in pairs and recorded not in pairs else
            "; the checkpoint's trained sentence-pair head is dropped"
            if recorded in pairs and options.objective not in pairs else "")
    default = " (pretrain.py's default, when --objective is left out)" if options.objective == "sop" else ""
    logger.warning("--init_from %s was pretrained with --objective %s, and this run trains --objective %s%s%s; pass "
                   "--objective %s to continue its pretraining as it was", options.init_from, recorded,
                   options.objective, default, head, recorded)


def check_init_positions(options: PretrainingOptions, config_dict: dict, config_file: str | None = None) -> None:
    """--init_from's (or `config_file`'s) BERT or RoBERTa takes the run's lengths (RoBERTa's positions start after
    the padding id): checked before the corpus is tokenised, which on a large corpus takes long (the objective
    checks every model again once it is built)."""
    source = f"--config_file {config_file}" if config_file else f"--init_from {options.init_from}"
    larger = ", or a config with a larger max_position_embeddings" if config_file else ""
    model_type = config_dict.get("model_type")
    if model_type not in ("bert", "roberta"):
        return
    config = (RobertaConfig if model_type == "roberta" else BertConfig).from_dict(config_dict)
    limit = RobertaEmbeddings.max_tokens(config) if model_type == "roberta" else config.max_position_embeddings
    for flag, length in (("--max_seq_length", options.max_seq_length),
                         ("--max_seq_length_phase2", options.max_seq_length_phase2)):
        if length is not None and length > limit:
            raise ValueError(f"{flag} {length} is longer than {source} can take ({limit} positions); pass {flag} "
                             f"{limit} or less{larger}")


def read_config_file(path: str, objective: str, model_type: str | None = None) -> dict:
    """--config_file: a config.json that describes the model `objective` trains (when it names its
    model_type; with --model_type roberta, a RoBERTa's). Only the config class's fields are kept: a key a letter or
    two off a field is a typo and refused; the rest (Hugging Face's bookkeeping, fields minibert does not have) are
    named in a warning and left out."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--config_file {path} is a directory; pass the config.json inside it")
    if not path.is_file():
        raise ValueError(f"--config_file {path} does not exist; pass a config.json, or use --model_size")
    loaded = read_json_object(path)
    if model_type == "roberta":
        if loaded.get("model_type", "roberta") != "roberta":
            raise ValueError(f"--config_file {path} describes a {loaded['model_type']!r} model, and --model_type "
                             "roberta builds a RoBERTa; pass a RoBERTa's config.json, or leave --model_type out")
    elif "model_type" in loaded:
        check_model_type(loaded["model_type"], objective, f"--config_file {path}")
    wanted = OBJECTIVES[objective].model_family
    config_class = RobertaConfig if model_type == "roberta" else CONFIG_CLASSES[wanted]
    known = {f.name for f in dataclasses.fields(config_class) if f.name != "extra"}
    unknown = sorted(set(loaded) - known - {"model_type"})  # (model_type: checked above; the family is the class)
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.85)
        if close:
            raise ValueError(f"--config_file {path}: {key!r} is no config field; did you mean {close[0]!r}?")
    if unknown:
        logger.warning("--config_file %s: left out %s (no field of the %s config)", path, ", ".join(unknown),
                       model_type or wanted)
    return {key: value for key, value in loaded.items() if key in known}


def holds_tokenizer(directory: str | Path) -> bool:
    return any((Path(directory) / f).is_file() for f in TOKENIZER_FILES)


def get_tokenizer(options: PretrainingOptions, output_dir: Path, checkpoint: Path | None) -> Tokenizer:
    """Order: --tokenizer; when resuming, the checkpoint's (its weights were trained with those ids, so
    a resume into a new output_dir must not train other ones), else the run's own when the checkpoint
    is this run's; --init_from's; else one trained on the training documents (kept in the data cache,
    so the same corpus and settings train it once)."""
    if options.tokenizer:
        tokenizer = load_tokenizer(options.tokenizer)
        if options.model_type == "roberta" and (tokenizer.kind, tokenizer.cls_token, tokenizer.sep_token) != (
                "bytelevel_bpe", "<s>", "</s>"):
            raise ValueError(f"--tokenizer {options.tokenizer} is a {tokenizer.kind} tokenizer framing texts in "
                             f"{tokenizer.cls_token} ... {tokenizer.sep_token}, and --model_type roberta reads "
                             "byte-level BPE framed <s> ... </s> (its one token type cannot take [CLS] a [SEP] b "
                             "[SEP] pairs); pass a RoBERTa's tokenizer, or leave --tokenizer out to train one")
        if options.init_from:
            check_tokenizer_fits(tokenizer, read_config_dict(options.init_from), f"--tokenizer {options.tokenizer}",
                                 f"--init_from {options.init_from}", options.init_from)
        return tokenizer
    if checkpoint is not None:
        own_run = checkpoint.resolve().parent == output_dir.resolve()  # (a link to a checkpoint: where it is)
        for directory in (checkpoint, output_dir) if own_run else (checkpoint,):
            if holds_tokenizer(directory):
                return load_tokenizer(directory)
        raise ValueError(
            f"resuming from {checkpoint}, which holds no tokenizer files; pass --tokenizer with the tokenizer "
            "the checkpoint was trained with"
        )
    if options.init_from:
        if not holds_tokenizer(options.init_from):
            raise ValueError(
                f"--init_from {options.init_from} holds no tokenizer files; pass --tokenizer with the "
                "tokenizer the checkpoint was trained with"
            )
        return load_tokenizer(options.init_from)
    return trained_tokenizer(options)


# Bumped when train_tokenizer learns a different vocabulary from the same text, or from other text, so that a
# tokenizer cached by an older version is not reused (2: no "##c" for the CJK characters the normaliser
# isolates; 3: a JSON title 0 or false names a work, so the held-out works, left out of its text, changed).
TOKENIZER_TRAINING = 3


def trained_tokenizer(options: PretrainingOptions) -> Tokenizer:
    """A tokenizer trained on the training documents' text (held-out works and, with corpus_fraction,
    the documents left out are not read), from the cache when the same files and settings made one."""
    files = corpus_file_list(options.corpus)
    kind = TOKENIZER_KINDS[options.tokenizer_family]
    frame = FRAMES_TEXT[options.tokenizer_family]
    fingerprints = [file_fingerprint(f, options.text_column) for f in files]
    settings = [kind, frame, options.vocab_size, options.validation_share, options.corpus_fraction, TOKENIZER_TRAINING]
    key = json.dumps([fingerprints, *settings])
    root = Path(options.data_cache_dir or default_cache_dir()) / "tokenizers"
    cached = root / hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
    if holds_tokenizer(cached):
        logger.info("using the tokenizer trained earlier on this corpus: %s", cached)
        return load_tokenizer(cached)
    # What it is trained on, kept beside it: a later run on the same --corpus whose files changed can say so
    record = {"corpus": [str(SHIPPED.get(str(c), Path(c)).resolve()) for c in options.corpus],
              "text_column": options.text_column, "settings": settings,
              "files": {str(f.resolve()): fingerprint for f, fingerprint in zip(files, fingerprints, strict=True)}}
    say_the_corpus_changed(root, record)
    names = scan_work_names(files, options.text_column)
    train, _, _ = select_documents(names, options.validation_share, options.corpus_fraction)
    chosen = set(train.tolist())
    texts = (" ".join(split_sentences(row["text"]))
             for n, row in enumerate(_records_with_text(files, options.text_column)) if n in chosen)
    tokenizer = train_tokenizer(texts, kind=kind, vocab_size=options.vocab_size, model_max_length=512, frame=frame)
    logger.info("trained a %s tokenizer of %d tokens on the corpus%s", kind, tokenizer.vocab_size,
                f" (--vocab_size {options.vocab_size} is fewer than its distinct characters, which it keeps)"
                if tokenizer.vocab_size > options.vocab_size else "")
    tmp = cached.with_name(f"{cached.name}.tmp-{os.getpid()}")
    try:
        remove_abandoned_temporaries(cached)
        tokenizer.save_pretrained(tmp)
        (tmp / CORPUS_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    except OSError as e:  # a read-only cache stopped the run here with a traceback
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in NOT_WRITABLE:
            raise CacheNotWritable(f"cannot write the trained tokenizer into the data cache {root} ({e.strerror}); "
                                   "pass --data_cache_dir with a directory you can write (or set "
                                   "$MINIBERT_CACHE)") from None
        raise
    try:
        os.replace(tmp, cached)  # complete or absent, never half-written
    except OSError:  # another process (a DDP rank, a second run) cached the same tokenizer first
        shutil.rmtree(tmp, ignore_errors=True)
    return tokenizer


CORPUS_RECORD = "minibert_corpus.json"  # in a cached tokenizer's directory: the corpus and settings it was trained on


def say_the_corpus_changed(root: Path, record: dict) -> None:
    """A tokenizer is cached under a hash of every corpus file's fingerprint (path, size, modification time): once
    a file is edited, touched or added, another tokenizer is trained, and every file is prepared again for it, which
    on a large corpus takes long and came unsaid. Said here when a tokenizer cached earlier was trained on the same
    --corpus with the same settings (its CORPUS_RECORD; tokenizers cached before it was written are not found)."""
    earlier = []
    for directory in root.glob(f"*/{CORPUS_RECORD}"):
        try:
            old = json.loads(directory.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(old, dict) and all(old.get(k) == record[k] for k in ("corpus", "text_column", "settings")):
            earlier.append((directory.stat().st_mtime, directory.parent, old.get("files") or {}))
    if not earlier:
        return
    _, directory, files = max(earlier, key=lambda found: found[0])  # the newest: the last run's
    now = record["files"]
    changes = [(what, [Path(f).name for f in names]) for what, names in (
        ("changed", [f for f in now if f in files and files[f] != now[f]]),
        ("added", [f for f in now if f not in files]), ("removed", [f for f in files if f not in now])) if names]
    said = "; ".join(f"{what}: {', '.join(names[:5])}" + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                     for what, names in changes)
    logger.warning("the corpus changed since the tokenizer cached in %s was trained on it (%s): a new tokenizer is "
                   "trained, and every file is prepared again for it. To prepare only the changed files, keep the "
                   "earlier tokenizer: pass --tokenizer %s",
                   directory, said or "files modified", directory)


def _records_with_text(files: list[Path], text_column: str):
    """The records that hold text (those that become documents), streamed, in corpus order."""
    for file in files:
        for row, _ in iter_records(file, text_column):
            if row["text"].strip():
                yield row


def scan_work_names(files: list[Path], text_column: str = "text") -> list[str]:
    """Each document's work, read from the files without tokenising (the tokenizer is not trained yet)."""
    documents, first_record = [], 0  # (title, file, record number) of each record with text
    for file in files:
        n = -1
        for n, (row, _) in enumerate(iter_records(file, text_column)):
            if row["text"].strip():
                documents.append((row.get("title"), str(file), first_record + n))
        first_record += n + 1
    if not documents:
        raise ValueError(f"the corpus {[str(f) for f in files]} is empty: it holds no text; check the files")
    several_files = len({file for _, file, _ in documents}) > 1  # an empty file does not count (as load_works)
    return [work_name(title, file, several_files, record) for title, file, record in documents]


def tokenizer_token_ids(config: dict, objective, source: str) -> dict:
    """A --config_file's special-token ids (pad, bos, eos, decoder start, forced eos) give way to those of
    the run's tokenizer, with a warning naming each: the batches are made with the tokenizer's. A config.json
    taken from another model (Hugging Face's gpt2: eos 50256) kept its own, so the saved model's generate
    never stopped at the </s> it was trained to write, and a pad_token_id on a real token froze that token's
    input embedding at zero (nn.Embedding's padding_idx gets no gradient)."""
    ids = {k: v for k, v in objective.default_config().items() if k.endswith("_token_id")}
    differing = [f"{k} {config[k]} -> {v}" for k, v in ids.items() if k in config and config[k] != v]
    if differing:
        logger.warning("--config_file %s: the tokenizer's special tokens are used instead of the file's (%s)",
                       source, ", ".join(differing))
    return {**config, **ids}


def build_model(options: PretrainingOptions, objective,
                file_config: dict | None = None) -> tuple[torch.nn.Module, list]:
    """The model `objective` trains (--init_from's, a size preset, or --config_file's fields: `file_config`,
    read once by run_pretraining's early check; read here when not given), and the trainer callbacks it
    needs (the neighbour heads' KeepRows, when block 0 has more heads than the two written)."""
    family = options.family
    overrides = dropout_config(family, options.dropout) if options.dropout is not None else {}
    if family == "bert" and options.objective != "electra":
        # The exact speed paths, proven equal in tests/test_bert.py, switched on here and written in
        # models/bert.py: the MLM head runs only at the masked positions (`masked_lm`; the default
        # run's step takes 0.78 of the time with it, bench/bench_default_step.py), and the position-wise
        # layers only on real tokens (unpad: `BertModel.forward` with nn/packing.py).
        overrides = {**overrides, "sparse_mlm": True, "unpad": True}
    if options.init_from:
        config_dict = check_init_from(options.init_from, options.objective)
        if config_dict.get("model_type") == "roberta":  # the objective builds BERT's classes: RoBERTa's here
            config = RobertaConfig.from_dict(config_dict, **overrides)
            model = RobertaForMaskedLM(config)
            check_init_positions(options, config_dict)  # (run_pretraining has, before the data work)
            objective.check_model(model)
        else:
            config = objective.config_class().from_dict(config_dict)
            kwargs = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra"}
            model = objective.build_model({**kwargs, **overrides})
        target = model if hasattr(model, "load_hf_state_dict") else model.discriminator  # ELECTRA: the encoder
        loaded = target.load_hf_state_dict(read_state_dict(options.init_from))
        if (any(key.startswith("nsp_head.") for key in loaded["newly_initialized"])
                and recorded_objective(options.init_from) is None):  # (else check_init_objective has said it)
            logger.warning("--init_from %s has no sentence-pair head (a masked-LM checkpoint?): --objective %s trains "
                           "a new one from random weights beside masked LM; --objective mlm (or wwm, span) continues "
                           "masked LM alone", options.init_from, options.objective)
        # what minibert has no field for, kept as from_pretrained keeps it: decoding defaults (num_beams,
        # min_length ... in config.json, or generation_config.json), task_specific_params
        target.config.extra = {**config.extra, **target.config.extra}
        generation_file = Path(options.init_from) / GENERATION_CONFIG_NAME
        if generation_file.is_file():
            target.generation_config = read_json_object(generation_file)
        if target is not model:
            logger.warning("--init_from %s gives ELECTRA its discriminator's encoder; the generator and both heads "
                           "start at random (a saved model holds only the discriminator; a checkpoint-N directory's "
                           "model_state.pt holds them all: --resume_from_checkpoint continues them)", options.init_from)
        logger.info("continuing pretraining from %s", options.init_from)
        return model, []
    if options.config_file:
        config = (file_config if file_config is not None
                  else read_config_file(options.config_file, options.objective, options.model_type))
        config = tokenizer_token_ids(config, objective, options.config_file)
    else:
        config = size_config(family, options.model_size)
    if options.model_type == "roberta":
        model = new_roberta(objective, {**config, **overrides},
                            max(options.max_seq_length, options.max_seq_length_phase2 or 0))
    else:
        model = objective.build_model({**config, **overrides})
    if options.uses_neighbour_heads:
        no_room = why_no_room(model.config)
        if no_room and options.neighbour_heads is None:  # on by default: left out where they do not fit
            logger.warning("%s; pretraining without them", no_room)
            return model, []
        # Fixed previous- and next-token heads: past the masked-LM plateau within the default budget.
        keeper = keep_fixed(write_neighbour_heads(model.base_model))  # (model.bert, or RoBERTa's model.roberta)
        return model, [keeper] if keeper is not None else []  # KeepRows: block 0's other heads train
    return model, []


def new_roberta(objective, config: dict, longest: int) -> RobertaForMaskedLM:
    """A RoBERTa started from scratch for a masked-LM objective: BERT's size fields (`config`), the tokenizer's ids
    (<s> ... </s>, <pad>), one token type, and positions counted from the padding id: a row's position p reads
    embedding row pad_token_id + 1 + p, so max_position_embeddings is the longest row (`longest`: both phases'; at
    least 512) + pad_token_id + 1 (RoBERTa's 514 for 512 tokens)."""
    tok = objective.tokenizer
    defaults = {"vocab_size": tok.vocab_size, "pad_token_id": tok.pad_token_id, "bos_token_id": tok.cls_token_id,
                "eos_token_id": tok.sep_token_id,
                "max_position_embeddings": max(longest, 512) + tok.pad_token_id + 1}
    model = RobertaForMaskedLM(RobertaConfig(**{**defaults, **config, "pad_token_id": tok.pad_token_id}))
    objective.check_model(model)  # (a --config_file's max_position_embeddings: checked before the data work too)
    return model


def select_documents(work_names: list[str], share: float, fraction: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(training document positions, held-out positions, held-out work names). Whole works are held out
    (`split_works`), never single documents of a work the model trains on; then a fixed `fraction` of
    the training documents (at least one) is kept, the same for every seed and each smaller fraction
    inside the larger ones, so a data-scale experiment varies only the size."""
    held = split_works(work_names, share)
    is_held = np.array([w in held for w in work_names], dtype=bool)
    train, held_out = np.flatnonzero(~is_held), np.flatnonzero(is_held)
    if not len(train):
        raise ValueError(f"holding out {share:.0%} of the works leaves nothing to train on; lower --validation_share")
    if fraction < 1.0:
        order = np.random.default_rng(0).permutation(len(train))
        train = train[np.sort(order[: max(1, round(fraction * len(train)))])]
    return train, held_out, sorted(held)


def split_corpus(corpus: TokenizedCorpus, share: float, fraction: float) -> tuple[TokenizedCorpus, TokenizedCorpus,
                                                                                     list[str]]:
    """(training documents, held-out documents, held-out work names) of a prepared corpus."""
    train, held, names = select_documents(corpus.work_names(), share, fraction)
    return corpus.subset(train), corpus.subset(held), names


# What makes held-out numbers worth reading (below this they are printed with a warning).
MIN_EVAL_WORKS, MIN_EVAL_PAIRS, MIN_EVAL_MASKED = 2, 500, 20_000
MAX_PASSES = 3.0  # more passes over the corpus than this and a small model starts to memorise it


TOKEN_KEYS = ("input_ids", "a", "b", "sentences")  # where the objectives keep an example's token ids


def token_arrays(example: dict) -> list[np.ndarray]:
    """The token-id arrays an objective's example holds, whatever its keys (TOKEN_KEYS)."""
    return [np.asarray(seq).ravel() for key in TOKEN_KEYS if key in example
            for seq in (example[key] if key == "sentences" else [example[key]])]


def example_token_ids(example: dict) -> np.ndarray:
    """All the token ids of an objective's example, in one array (what check_unknown_tokens reads)."""
    arrays = token_arrays(example)
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)


def eval_warning(objective, eval_examples: list[dict], held_out_works: list[str], cap: int | None = None
                 ) -> str | None:
    """Why the held-out set is too small for its numbers to mean much, or None. `cap`: the most examples
    evaluated (max_eval_examples); where it binds, more works or a larger share add none."""
    problems = []
    if len(held_out_works) < MIN_EVAL_WORKS:
        problems.append(f"{len(held_out_works)} held-out work(s) (want >= {MIN_EVAL_WORKS})")
    if isinstance(objective, SentencePairObjective) and len(eval_examples) < MIN_EVAL_PAIRS:  # nsp, sop
        problems.append(f"{len(eval_examples)} sentence pairs (want >= {MIN_EVAL_PAIRS})")
    tokens = sum(len(seq) for e in eval_examples for seq in token_arrays(e))
    if hasattr(objective, "mlm_probability"):  # the masked-LM family (mlm, wwm, span, nsp, sop, electra)
        masked = int(tokens * objective.mlm_probability)
        if masked < MIN_EVAL_MASKED:
            problems.append(f"about {masked:,} masked tokens (want >= {MIN_EVAL_MASKED:,})")
    elif tokens < MIN_EVAL_MASKED:  # clm and bart predict every token (the next one; the text under the noise):
        # held to as many predictions as the masked objectives (a few hundred held-out tokens went unflagged)
        problems.append(f"about {tokens:,} predicted tokens (want >= {MIN_EVAL_MASKED:,})")
    if not problems:
        return None
    if cap is not None and len(eval_examples) >= cap and len(held_out_works) >= MIN_EVAL_WORKS:
        # (the Tang poems: 1,380 held-out works, yet 4,000 short examples hold fewer masked tokens than wanted)
        advice = (f"the evaluation already takes its most examples ({cap:,}, max_eval_examples in "
                  "PretrainingOptions, from Python); longer examples (--max_seq_length) hold more tokens")
    else:
        advice = "use a corpus with more works (plays, books) or a larger --validation_share"
    return "held-out set too small for its numbers to mean much: " + ", ".join(problems) + "; " + advice


def held_out_examples(evaluation, held_docs, held_out_works: list[str], options: PretrainingOptions):
    """The held-out works' examples (up to options.max_eval_examples, 4,000, evenly spaced; not a flag); a held-out set
    the objective cannot make examples of (sop/nsp: too few sentences or documents) is named as such,
    not as the corpus."""
    if not len(held_docs):
        return []
    try:
        examples = evaluation.examples(held_docs)
        if len(examples) <= options.max_eval_examples:
            return examples
        # evenly spaced over the held-out works (the first 4,000 in corpus order measured only the first works,
        # or the first file of several)
        picks = np.linspace(0, len(examples) - 1, options.max_eval_examples).round().astype(np.int64)
        return examples[picks]  # a lazy view (Examples takes an array of positions)
    except ValueError as e:
        shown = ", ".join(held_out_works[:5]) + (", ..." if len(held_out_works) > 5 else "")
        raise ValueError(f"the held-out works ({shown}) cannot make {options.objective} examples ({e}); the training "
                         "works can. Hold out more works (a larger --validation_share), give the records titles, "
                         "or pass --validation_share 0 to train without a held-out evaluation") from None


def training_passes(args: TrainingArguments, num_examples: int, world_size: int,
                    phase2_examples: int | None = None) -> float:
    """Passes over the training examples that max_steps (or num_train_epochs) makes. With a second phase
    (`phase2_examples`: the longer examples of the same training documents, each set a whole pass over them),
    its steps go over those: counting every step against the first phase's examples understated the passes
    (--max_seq_length 16 --max_seq_length_phase2 64 --phase2_ratio 0.5: 0.2 printed, 0.45 made) and could
    keep the memorisation warning silent. With --num_train_epochs the steps are the engine's count of that many
    epochs of the first phase's batches, of which the second phase takes its share: 2 epochs with a second
    phase of half the steps over a quarter as many examples make 1 + 4 passes, not 2."""
    per_step = args.gradient_accumulation_steps * world_size
    if args.max_steps and args.max_steps > 0:
        steps = args.max_steps
    elif phase2_examples is None:
        return float(args.num_train_epochs)
    else:  # Trainer._count_steps: epochs of the first phase's global batches (the last one short, or dropped)
        global_batch = args.per_device_train_batch_size * world_size
        batches = num_examples // global_batch if args.dataloader_drop_last else math.ceil(num_examples / global_batch)
        steps = max(1, math.ceil(args.num_train_epochs * batches / args.gradient_accumulation_steps))
    if phase2_examples is None:
        return steps * args.per_device_train_batch_size * per_step / max(num_examples, 1)
    first = math.floor(steps * (1 - args.phase2_ratio))  # the engine's split (Trainer.phase2_start)
    second_batch = args.phase2_batch_size or args.per_device_train_batch_size
    return (first * args.per_device_train_batch_size * per_step / max(num_examples, 1)
            + (steps - first) * second_batch * per_step / max(phase2_examples, 1))


def make_eval_fn(objective, examples, batch_size: int, trainer: Trainer):
    """Loss (and each loss component) and the objective's metrics on held-out examples, with the
    same masks at every call (each batch's generator is seeded by the position of its first example, so the
    masks follow the batch size: the training batch size, here) and the same random draws
    inside the model (ELECTRA's samples), on the trainer's device and under its autocast."""

    def evaluate(model) -> dict:
        device = trainer.device
        # ELECTRA's generator samples from the global generator: seeded here, the same weights score the same,
        # and the training that follows draws the same dropout however often it is evaluated
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            return measure(model, device)

    def measure(model, device) -> dict:
        # Each measure is averaged over the examples of the batches where it is defined: a batch with no masked
        # token (short examples, a small batch) has no MLM loss or accuracy (NaN), and counting its examples
        # in the denominator all the same pulled the held-out loss and accuracy towards 0. (So where such a batch
        # exists, the loss and the MLM measures cover fewer examples than the sentence-pair ones, and the loss is
        # not exactly mlm_loss + nsp_loss.)
        totals: dict[str, float] = {}
        weights: dict[str, int] = {}
        for start in range(0, len(examples), batch_size):
            batch = objective.collate(examples[start : start + batch_size], torch.Generator().manual_seed(start))
            batch = {k: v.to(device) for k, v in batch.items()}
            with trainer.autocast():
                outputs = model(**batch)
            values = {"loss": float(outputs.loss)}
            values.update({k: float(v) for k, v in vars(outputs).items() if k.endswith("_loss") and v is not None})
            values.update(objective.metrics(batch, outputs))
            weight = len(next(iter(batch.values())))
            for k, v in values.items():
                if not math.isnan(v):
                    totals[k] = totals.get(k, 0.0) + v * weight
                    weights[k] = weights.get(k, 0) + weight
        return {k: v / weights[k] for k, v in totals.items()}

    return evaluate


def recorded_eval_start(run_dirs: list[Path]) -> dict:
    """The held-out metrics before training that a resumed run recorded in its summary (the first of
    `run_dirs` holding one), so a resume keeps them: the resumed model can no longer measure them."""
    for run_dir in run_dirs:
        path = run_dir / SUMMARY_FILE
        if not path.is_file():
            continue
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            summary = None
        if not isinstance(summary, dict):
            raise ValueError(f"{path} is not a JSON object; restore it, or delete it to resume without the "
                             "start metrics it held")
        # a start measure that was not finite is saved as null (strict JSON): back to NaN, a number the summary prints
        return {k: math.nan if v is None else v for k, v in summary.get("eval_start", {}).items()}
    return {}


def write_summary(output_dir: Path, summary: dict) -> None:
    """Written aside, then renamed: the summary is the only copy of the held-out metrics before training, which
    a resume reads back (a kill while writing it in place left an empty file, and those numbers lost)."""
    write_json(output_dir / SUMMARY_FILE, summary, sort_keys=False)


class SaveModelAndTokenizer:
    """A callback: each checkpoint also holds the model in Hugging Face format and the tokenizer,
    so `--init_from output_dir/checkpoint-N` and transformers can use it directly."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    def on_save(self, trainer, directory: Path) -> None:
        trainer.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)


def prepare(options: PretrainingOptions, tokenizer: Tokenizer, words: str, context,
            progress: bool = True) -> TokenizedCorpus:
    """The corpus tokenised once into the data cache (minibert.data.prepared) and memory-mapped: rank 0
    prepares what is missing while the other ranks wait, then every rank maps the same files. progress: rank 0
    shows a bar while it prepares (off with --disable_tqdm, as the training's)."""
    kwargs = {"cache_dir": options.data_cache_dir, "words": words, "workers": options.preparation_workers,
              "text_column": options.text_column}
    if context.is_main:
        corpus = prepare_corpus(options.corpus, tokenizer, progress=progress, **kwargs)
    barrier(context)
    return corpus if context.is_main else prepare_corpus(options.corpus, tokenizer, **kwargs)


# -- the whole run ------------------------------------------------------------------------------
@dataclass
class PretrainingData:
    """What a run trains on and is measured on, ready before the model is built."""

    tokenizer: Tokenizer
    objective: Any  # builds the training examples and batches (training's masking: --mlm_probability)
    objective_options: dict  # what built it (seed, masking), for the second phase's longer objective
    corpus: TokenizedCorpus  # the prepared, memory-mapped corpus
    train_docs: TokenizedCorpus  # its training works (a --corpus_fraction share of them)
    examples: Any  # the training examples, built lazily from offsets
    evaluation: Any  # the objective as measured: its own masking (BERT's 15%) and HELD_OUT_SEED
    eval_examples: Any  # the held-out works' examples (up to options.max_eval_examples)
    held_out_works: list[str]
    eval_warning: str | None  # why the held-out numbers are too noisy to read, if they are
    passes: float  # how many times training will go over its examples
    long_objective: Any = None  # the second phase's objective (--max_seq_length_phase2), else None
    phase2_examples: Any = None  # its examples, of the same training documents


def pretraining_data(options: PretrainingOptions, args: TrainingArguments, output_dir: Path,
                     checkpoint: Path | None, context) -> PretrainingData:
    """Tokenizer, objective, prepared corpus, the training and held-out works' examples; refuses a
    corpus the tokenizer cannot read (and warns of one it reads in part: check_unknown_tokens) and warns when
    training would go over its examples too often."""
    # Like the prepared corpus: rank 0 trains the tokenizer (or finds it cached) while the other ranks wait,
    # then they read it from the cache instead of each training it on the whole text again.
    if context.is_main:
        tokenizer = get_tokenizer(options, output_dir, checkpoint)
    barrier(context)
    if not context.is_main:
        tokenizer = get_tokenizer(options, output_dir, checkpoint)
    objective_options = {"seed": args.seed, **options.objective_options}
    objective = build_objective(options.objective, tokenizer, options.max_seq_length, **objective_options)
    corpus = prepare(options, tokenizer, objective.word_rule, context, progress=not args.disable_tqdm)
    train_docs, held_docs, held_out_works = split_corpus(corpus, options.validation_share, options.corpus_fraction)
    examples = objective.examples(train_docs)
    # More than half unknown is refused (a corpus mostly outside the vocabulary teaches nothing but [UNK]), more than
    # 5% warned of (a Simplified Chinese model's tokenizer on Traditional text: 22% [UNK], accepted without a word)
    check_unknown_tokens(tokenizer, examples, "the training tokens", "train one on this corpus (leave out --tokenizer "
                         "and --init_from) or pass a --tokenizer that covers its language", example_token_ids)
    # Held out, the masking is always the objective's own (BERT's 15%), whatever training masks, and the
    # examples are drawn with HELD_OUT_SEED, whatever --seed is: numbers compare across runs and seeds.
    standard = {k: v for k, v in objective_options.items() if k != "mlm_probability"}
    evaluation = build_objective(options.objective, tokenizer, options.max_seq_length,
                                 **{**standard, "seed": HELD_OUT_SEED})
    eval_examples = held_out_examples(evaluation, held_docs, held_out_works, options)
    warning = (eval_warning(evaluation, eval_examples, held_out_works, options.max_eval_examples)
               if len(eval_examples) else None)
    if options.validation_share > 0 and held_out_works:
        held_share = held_docs.num_tokens() / max(corpus.num_tokens(), 1)
        if held_share > max(2 * options.validation_share, options.validation_share + 0.1):
            # Works are held out whole: a corpus of a few files, one of them most of the text, can lose most of it
            # to the held-out part (and the tokenizer, trained on the training works, never sees it)
            logger.warning(
                "the held-out works (%s) hold %.0f%% of the corpus's tokens, where --validation_share asks %.0f%%: "
                "works are held out whole, and this corpus has %d. Split a large file into several works (files, "
                "or JSON lines with a title per work), or pass --validation_share 0 to train on all of it",
                ", ".join(held_out_works[:5]) + (", ..." if len(held_out_works) > 5 else ""), 100 * held_share,
                100 * options.validation_share, len(set(corpus.work_names())))
    if options.validation_share > 0 and not held_out_works:
        warning = ("nothing is held out: the corpus is one work (all its records share one title, or it holds one "
                   "document), and a work is held out whole; no held-out numbers are measured. Give the records "
                   "their own titles, or split the text into several files")
        logger.warning(warning)
    long_objective = phase2_examples = None
    if options.max_seq_length_phase2:
        long_objective = build_objective(options.objective, tokenizer, options.max_seq_length_phase2,
                                         **objective_options)
        phase2_examples = long_objective.examples(train_docs)
    passes = training_passes(args, len(examples), context.world_size,
                             None if phase2_examples is None else len(phase2_examples))
    if passes > MAX_PASSES:
        logger.warning(
            "training makes %.1f passes over the %d training examples: a model this size will memorise the "
            "corpus instead of learning from it; use more text (--corpus more files or directories), fewer "
            "--max_steps or --num_train_epochs, or a smaller batch", passes, len(examples))
    return PretrainingData(tokenizer, objective, objective_options, corpus, train_docs, examples, evaluation,
                           eval_examples, held_out_works, warning, passes, long_objective, phase2_examples)


def check_best_model_flags(args: TrainingArguments, why: str) -> None:
    """--load_best_model_at_end and --metric_for_best_model pick a checkpoint by its held-out evaluation; a run
    that holds nothing out (`why`) has none, and took them silently: the last step's model was saved, and any
    metric name passed."""
    given = [flag for flag, value in (("--load_best_model_at_end", args.load_best_model_at_end),
                                      ("--metric_for_best_model", args.metric_for_best_model)) if value]
    if given:
        flags = " and ".join(given)
        raise ValueError(f"{flags} {'pick' if len(given) > 1 else 'picks'} the best checkpoint by its held-out "
                         f"evaluation, and {why}: there is none; drop {flags}, or hold out works (a "
                         "--validation_share above 0, a corpus of several works: titled records or several files)")


def check_inputs_kept(options: PretrainingOptions, output_dir: Path) -> None:
    """Refuse an output_dir that would write over or into what the run reads, even with
    --overwrite_output_dir: the checkpoint, tokenizer and config.json it starts from, and the corpus (a run
    written into a corpus directory becomes corpus: the next run reads its metrics.jsonl as text). A file
    is checked as itself, not as its directory: `--corpus corpus.txt --output_dir runs/x` is fine."""
    check_output_not_input(output_dir, {"--init_from": options.init_from, "--tokenizer": options.tokenizer,
                                        "--config_file": options.config_file})
    for path in options.corpus:
        # a shipped corpus's name stands for its file, as corpus_files reads it
        check_output_not_input(output_dir, {"--corpus": SHIPPED.get(str(path), path)})


def run_pretraining(options: PretrainingOptions, args: TrainingArguments, callbacks=()) -> PretrainingResult:
    output_dir = Path(args.output_dir)
    resuming = args.resume_from_checkpoint is not None
    checkpoint, eval_start = None, {}
    if resuming:
        checkpoint = resolve_checkpoint(args.resume_from_checkpoint, output_dir)  # fail now, before any work
        check_resume_model(options, checkpoint)
        eval_start = recorded_eval_start([output_dir, checkpoint.parent])
    if options.init_from:
        check_init_positions(options, check_init_from(options.init_from, options.objective))
        check_init_objective(options)
    # its family and keys, before any data work
    file_config = (read_config_file(options.config_file, options.objective, options.model_type)
                   if options.config_file else None)
    if file_config and "max_position_embeddings" in file_config and options.family == "bert":
        # the model's lengths too (a new RoBERTa takes its pad_token_id from the byte-level BPE tokenizer: 1)
        roberta = {"pad_token_id": 1} if options.model_type == "roberta" else {}
        check_init_positions(options, {**file_config, **roberta, "model_type": options.model_type or "bert"},
                             options.config_file)
    # Before check_output_dir, whose advice for a directory in use (--overwrite_output_dir) would harm an input.
    check_inputs_kept(options, output_dir)
    check_output_dir(args, resuming)  # refuse another run's directory before writing anything
    if options.validation_share == 0:
        check_best_model_flags(args, "--validation_share 0 holds nothing out")
    unused = phase2_flags_given(args) if options.max_seq_length_phase2 is None else []
    if unused:  # (--phase2_ratio alone was taken, and ignored; the engine would refuse it after the data work)
        what = {"--phase2_ratio": "the share of the steps in the second phase",
                "--phase2_batch_size": "the batch of the second phase"}
        raise ValueError(" and ".join(f"{flag} is {what[flag]}" for flag in unused) + ", which "
                         f"--max_seq_length_phase2 turns on; pass that too, or drop {' and '.join(unused)}")
    context = setup(args.device)
    started = time.perf_counter()
    torch.manual_seed(args.seed)

    data = pretraining_data(options, args, output_dir, checkpoint, context)
    if not len(data.eval_examples):  # (the corpus is one work: found once it is read)
        check_best_model_flags(args, "the held-out works make no examples" if data.held_out_works
                               else "nothing is held out (the corpus is one work)")
    data_seconds = time.perf_counter() - started  # tokenizer, prepared corpus, example indexes: the data side
    model, model_callbacks = build_model(options, data.objective, file_config)

    phase2 = {}
    if data.long_objective is not None:
        data.long_objective.check_model(model, "--max_seq_length_phase2")
        phase2 = {"phase2_dataset": data.phase2_examples, "phase2_collate_fn": data.long_objective.collate}

    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        data.tokenizer.save_pretrained(output_dir)  # the run's tokenizer, wherever it came from
        logger.info(
            "%s: %d training examples, %d held out (%d works), %s parameters",
            options.objective,
            len(data.examples),
            len(data.eval_examples),
            len(data.held_out_works),
            f"{sum(p.numel() for p in model.parameters()):,}",
        )

    optimizer = None  # the engine's AdamW
    if options.optim == "bertadam":  # over the engine's groups: matrices decay, biases and LayerNorm weights do not
        optimizer = build_finetune_optimizer("bertadam", param_groups(model, args.learning_rate, args.weight_decay),
                                             args.learning_rate, args.weight_decay, (args.adam_beta1, args.adam_beta2),
                                             args.adam_epsilon)
    trainer = Trainer(
        model,
        args,
        data.examples,
        data.objective.collate,
        optimizer=optimizer,
        callbacks=[SaveModelAndTokenizer(data.tokenizer), *callbacks, *model_callbacks],
        metrics_fn=data.objective.metrics,
        **phase2,
        # a resume with another objective or masking rate trained the rest of the run on another recipe, unseen:
        # mlm, wwm and span make as many examples, so the engine's own check passed it
        recipe={"--objective": options.objective,
                **{f"--{name}": value for name, value in sorted(options.objective_options.items())},
                "--neighbour_heads": options.uses_neighbour_heads, "--dropout": options.dropout,
                **({"--model_type": options.model_type} if options.model_type else {})},
    )
    # The held-out evaluation runs on the trainer's device, under its autocast: built once the trainer is.
    if len(data.eval_examples):
        trainer.eval_fn = make_eval_fn(data.evaluation, data.eval_examples, args.per_device_train_batch_size, trainer)
    eval_fn = trainer.eval_fn
    if eval_fn is not None and not resuming:
        model.eval()
        with torch.no_grad():
            eval_start = eval_fn(model)
        if context.is_main:  # recorded now, so that a run stopped early and resumed still has it
            write_summary(output_dir, {"objective": options.objective, "eval_start": eval_start})
        key = metric_key(args.metric_for_best_model, eval_start)
        if key is not None and key not in eval_start:  # before any step, not at the first evaluation
            raise ValueError(f"--metric_for_best_model {args.metric_for_best_model} is not a held-out measure of this "
                             f"run; choose one of {', '.join(sorted(eval_start))}")
    result = trainer.train()
    evaluations = [r for r in result.history if "eval_loss" in r]
    eval_end = evaluations[-1] if evaluations else {}
    if result.best_checkpoint and args.load_best_model_at_end:  # the saved model is the best checkpoint's:
        # report its evaluation, not the last one
        step = checkpoint_step(Path(result.best_checkpoint))
        eval_end = next((r for r in evaluations if r["step"] == step), eval_end)
    eval_end = {k.removeprefix("eval_"): v for k, v in eval_end.items() if k != "step"}
    if context.is_main:
        model.save_pretrained(output_dir)
        data.tokenizer.save_pretrained(output_dir)
        summary = {
            "objective": options.objective,
            "eval_start": eval_start,
            "eval_end": eval_end,  # of the saved model: the best checkpoint's with --load_best_model_at_end
            "global_step": result.global_step,
            "saved_model": Path(result.best_checkpoint).name if result.best_checkpoint and args.load_best_model_at_end
            else f"step {result.global_step}",
            "passes_over_corpus": data.passes,
            "neighbour_heads": options.uses_neighbour_heads and not why_no_room(model.config),  # written?
            "training_examples": len(data.examples),
            "held_out_works": data.held_out_works,
            "held_out_examples": len(data.eval_examples),
            "eval_warning": data.eval_warning,
            "data_wait_share": result.data_wait_share,
            "prepared_mb": data.corpus.prepared_bytes / 1e6,  # text tokenised into the data cache by this run
            "preparation_seconds": data.corpus.prepared_seconds,
            "tokens_per_second": result.tokens_per_second,
            "seconds": result.seconds,
            "data_seconds": data_seconds,  # start of the run to examples ready (reading, tokenising, indexing)
            "arguments": {"pretraining": asdict(options), "training": asdict(args),  # as given, defaults too
                          "working_directory": str(Path.cwd())},  # (what relative paths are relative to)
        }
        write_summary(output_dir, summary)
    return PretrainingResult(
        output_dir=output_dir,
        objective=options.objective,
        train=result,
        eval_start=eval_start,
        eval_end=eval_end,
        num_parameters=sum(p.numel() for p in model.parameters()),
        num_examples=len(data.examples),
        passes=data.passes,
        held_out_works=data.held_out_works,
        eval_warning=data.eval_warning,
        resumed_from=str(trainer.resumed_from) if trainer.resumed_from is not None else None,
    )


def format_summary(result: PretrainingResult) -> str:
    """The few lines a person wants after a run: losses and accuracies at the start and the end (on
    the training batches: step 1, before any update, against the last logging window; and on the
    held-out documents), speed, and where the model is."""
    train = [r for r in result.train.history if "loss" in r]
    lines = [
        f"pretrained {result.objective} for {result.train.global_step} steps in {result.train.seconds:.0f} s "
        f"({result.num_parameters:,} parameters, {result.num_examples} training examples, "
        f"{result.passes:.1f} passes over them)"
        + (f", resumed from {result.resumed_from}" if result.resumed_from else "")  # (its seconds: this part's)
    ]
    skip = {"step", "epoch", "phase", "learning_rate", "grad_norm", "tokens_per_second", "data_wait_share"}
    rows = [("training", train[0], train[-1])] if train else []
    if result.eval_end:
        count = len(result.held_out_works)
        works = ", ".join(result.held_out_works[:10]) + (  # all of them are in pretraining_summary.json
            f", ... ({count - 10} more: pretraining_summary.json lists them)" if count > 10 else "")
        rows.append((f"held-out ({count} work{'s' if count != 1 else ''} never trained on: {works})",
                     result.eval_start, result.eval_end))
    for label, start, end in rows:
        lines.append(f"  {label} (start -> end):")
        keys = [k for k in end if k not in skip]
        for key in sorted(keys, key=lambda k: (not k.endswith("loss"), k)):
            before = f"{start[key]:.4f}" if key in start else "   -  "
            change = f"  ({end[key] / start[key]:.0%} of start)" if key.endswith("loss") and start.get(key) else ""
            lines.append(f"    {key:<24} {before} -> {end[key]:.4f}{change}")
    if result.eval_warning:
        lines.append(f"  WARNING: {result.eval_warning}")
    if result.train.tokens_per_second > 0:
        lines.append(f"  {result.train.tokens_per_second:,.0f} tokens/s; waiting for data: "
                     f"{result.train.data_wait_share:.1%} of step time")
    else:  # a resume of a run that had already reached its last step
        lines.append("  no step left to run: the checkpoint had already reached --max_steps")
    plot = ("loss.png" if (Path(result.output_dir) / "loss.png").exists()
            else "no loss.png (--plot_loss false, or no matplotlib: pip install -e '.[plot]' in the checkout)")
    lines.append(
        f"saved to {result.output_dir} (config.json, model.safetensors, tokenizer files; metrics.jsonl, "
        f"{plot}, checkpoints)"
    )
    return "\n".join(lines)

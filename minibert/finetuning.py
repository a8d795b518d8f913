"""Fine-tuning a pretrained encoder on a labelled task: the library behind `train.py`.

    data (CSV / JSON lines) -> labels -> tokens -> model (family head or any pooling head)
    -> tricks (re-init, freeze, Mixout, LLRD, optimizer, PriorWD, FGM/PGD, SWA)
    -> beyond full updates (adapters, gradual unfreezing, ladder side-tuning, multi-task mixing)
    -> the training engine (smart batching, evaluation every eval_steps, best checkpoint)
    -> the final model, its tokenizer and eval_results.json in output_dir

Tasks: single-label classification (one text or a pair), regression (a number per example),
multi-label classification (a list of label names, or a list of num_labels 0/1 or soft scores),
with BCE or the ZLPR loss; token classification (finetune/tagging.py: a tag per word, scored by entity F1);
extractive question answering (finetune/extractive_qa.py: a span of the context, SQuAD's exact match and F1);
and text generation (finetune/generative.py): seq2seq (BART: a source
column and a --target_column) and causal_lm (GPT-2: a prompt column and a completion column),
evaluated by generating (exact match, chrF) with the same engine and flags.

Where each stage is, here and beside this file:

    rows, labels       finetune/task_data.py: read_rows; infer_task / _detect_task (--task_type auto);
                       encode_label; load_split
    model              build_model (family heads: models/, BERT's and RoBERTa's, GPT-2's and BART's; GPT-2 and
                       BART take only their own: check_classification_family; --pooling: finetune/classifier.py with the
                       poolings of finetune/pooling.py; --adapter_size: finetune/adapters.py;
                       --ladder_side_tuning: finetune/ladder.py); from a fine-tuned checkpoint, what
                       of its own head is kept: finetune/saved_heads.py
    refusals           check_methods, check_generation_flags, check_multi_label_loss: flags that cannot work
                       together, or with the task the labels show; check_known_tokens: training text the
                       tokenizer cannot read (mostly [UNK])
    tricks             apply_tricks -> finetune/reinit.py, freeze.py, mixout.py
    optimizer          finetuning_optimizer -> finetune/param_groups.py (--llrd, --lr_groups),
                       finetune/optimizers.py (--optim), finetune/prior_wd.py (--prior_wd)
    loss, metrics      finetune/losses.py (task_loss, --multi_label_loss zlpr); compute_metrics, make_eval_fn
    training           finetune (callbacks: finetune/adversarial.py for --fgm / --pgd_steps, finetune/swa.py,
                       finetune/unfreezing.py; batches: finetune/smart_batching.py) -> engine/trainer.py
    token tagging      finetune/tagging.py: words and tags -> first-piece labels, entity F1 (tagged_splits here)
    question answering finetune/extractive_qa.py: SQuAD -> windows of the context, spans, EM / F1 (answered_splits)
    other runs         finetune_generative (finetune/generative.py, new_encoder.py),
                       finetune_multitask (finetune/multitask.py); saving: save_model, finetune/beside_base.py
"""

import copy
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from minibert.auto import load_pretrained, model_class_for
from minibert.checkpoint import beside_base_message, finite_or_null, load_torch_file, read_config_dict
from minibert.engine import Trainer, TrainingArguments
from minibert.engine.checkpointing import OPTIMIZER_FILE, STATE_JSON, list_checkpoints, resolve_checkpoint
from minibert.engine.distributed import resolve_device
from minibert.engine.trainer import check_output_dir, check_output_not_input, metric_key
from minibert.finetune.adapters import add_adapters, check_adapter_size
from minibert.finetune.adversarial import FGM, PGD
from minibert.finetune.beside_base import is_beside_base, load_beside_base, save_beside_base
from minibert.finetune.classifier import HEAD_FILE, HEAD_KEY, PooledClassifier
from minibert.finetune.extractive_qa import (
    QA_METRICS,
    QACollator,
    QAEvaluator,
    no_answer_at_end,
    qa_features,
    read_questions,
    real_span_loss,
    write_answers,
)
from minibert.finetune.freeze import freeze_embeddings
from minibert.finetune.generative import (
    GENERATION_METRICS,
    GenerationEvaluator,
    GenerativeCollator,
    build_generative_model,
    causal_lm_examples,
    check_generative_checkpoint,
    input_pad_token_id,
    seq2seq_examples,
    text_pairs,
    write_predictions,
)
from minibert.finetune.ladder import LadderSideClassifier, side_width
from minibert.finetune.losses import MULTI_LABEL_LOSSES, task_loss
from minibert.finetune.mixout import apply_mixout
from minibert.finetune.multitask import (
    HEADS_FILE,
    TASKS_KEY,
    MixtureSampler,
    MultiTaskClassifier,
    check_mixing,
    mixing_rates,
    parse_tasks,
)
from minibert.finetune.new_encoder import BartWithNewEncoder, TwoStageTraining, has_new_encoder
from minibert.finetune.optimizers import OPTIMIZERS, Lookahead, build_finetune_optimizer, find_lookahead
from minibert.finetune.param_groups import grouped_lr_groups, layer_wise_lr_decay_groups, param_groups
from minibert.finetune.pooling import POOLINGS, check_pooling
from minibert.finetune.prior_wd import PriorWD
from minibert.finetune.reinit import reinit_pooler, reinit_top_layers
from minibert.finetune.saved_heads import (
    forget_saved_heads,
    keep_checkpoint_label_rows,
    reload_pooling_head,
    reload_task_heads,
    warn_dropped_task_heads,
)
from minibert.finetune.smart_batching import PaddingCollator, UniformLengthSampler
from minibert.finetune.swa import SWA
from minibert.finetune.tagging import (
    TagEvaluator,
    is_entity_scheme,
    metric_names,
    read_tagged,
    tag_task,
    tagged_examples,
    write_tag_predictions,
)
from minibert.finetune.task_data import (
    GENERATIVE_TASK_TYPES,
    QUESTION_ANSWERING,
    TOKEN_CLASSIFICATION,
    Task,
    load_split,
    read_rows,
)
from minibert.finetune.unfreezing import GradualUnfreezing
from minibert.modeling import new_weights_unreported, store_linear_weights_input_major
from minibert.models import bart, bert, gpt
from minibert.neighbour_heads import why_no_room, write_neighbour_heads
from minibert.tokenizer import Tokenizer, check_tokenizer_fits, check_unknown_tokens, load_tokenizer

logger = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).parent / "data" / "tasks"
DEFAULT_TRAIN_FILE = TASKS_DIR / "shakespeare_genre_train.jsonl"
DEFAULT_VALIDATION_FILE = TASKS_DIR / "shakespeare_genre_validation.jsonl"
# --task_type token_classification's shipped task: where each speech of a stretch of dialogue begins
DEFAULT_TAGGING_TRAIN_FILE = TASKS_DIR / "shakespeare_turns_train.jsonl"
DEFAULT_TAGGING_VALIDATION_FILE = TASKS_DIR / "shakespeare_turns_validation.jsonl"
# --task_type question_answering's: who says a quoted line, answered by the speaker's name in the context
DEFAULT_QA_TRAIN_FILE = TASKS_DIR / "shakespeare_speakers_train.json"
DEFAULT_QA_VALIDATION_FILE = TASKS_DIR / "shakespeare_speakers_validation.json"


def is_default_train_file(path: str | os.PathLike) -> bool:
    """The shipped genre task's training file (what --train_file is when not given), under any spelling of its path."""
    return Path(path).resolve() == DEFAULT_TRAIN_FILE.resolve()


# What `python pretrain.py --objective sop` writes with no other argument.
DEFAULT_PRETRAINED = "runs/pretrain-sop"
DEFAULT_PRETRAIN_COMMAND = "python pretrain.py --objective sop"
RANDOM_INIT = "random"
DEFAULT_OUTPUT_DIR = "runs/finetune-shakespeare-genre"
DEFAULT_TAGGING_OUTPUT_DIR = "runs/finetune-shakespeare-turns"  # train.py's, under --task_type token_classification
DEFAULT_QA_OUTPUT_DIR = "runs/finetune-shakespeare-speakers"  # ... and under --task_type question_answering
# The engine settings of `python train.py` that differ from TrainingArguments' defaults (a small
# model on a small task, on a CPU).
DEFAULT_TRAINING = {"output_dir": DEFAULT_OUTPUT_DIR, "learning_rate": 5e-4, "num_train_epochs": 5.0,
                    "per_device_train_batch_size": 32, "warmup_ratio": 0.1, "weight_decay": 0.01, "eval_steps": 50,
                    "logging_steps": 10, "save_total_limit": 2, "load_best_model_at_end": True, "disable_tqdm": False}
# train.py's learning rate when --learning_rate is not given, by the model's width: 5e-4 suits the small models
# pretrain.py makes (up to 256 wide: its micro, tiny and mini sizes; tuned on the default run's 128), and is 10 to 25
# times the fine-tuning range of a pretrained BERT-base: 2e-5 to 5e-5 (Devlin et al. 2018, appendix A.3,
# https://arxiv.org/abs/1810.04805; RoBERTa's 1e-5 to 3e-5, https://arxiv.org/abs/1907.11692, appendix C). Runs that
# train new weights from scratch keep 5e-4 at any width: random weights, adapters and ladder side-tuning (whose papers
# sweep 1e-4 to 3e-3: https://arxiv.org/abs/1902.00751, https://arxiv.org/abs/2206.06522), BART's new encoder front.
SMALL_MODEL_WIDTH = 256
WIDE_MODEL_LEARNING_RATE = 2e-5


def default_learning_rate(model_name_or_path: str, config_name: str | None = None, *, new_weights: bool = False,
                          resume_from_checkpoint: str | None = None,
                          output_dir: str | None = None) -> tuple[float, str | None]:
    """(learning rate, why) for a train.py run that names no --learning_rate: WIDE_MODEL_LEARNING_RATE to fine-tune
    a pretrained model wider than SMALL_MODEL_WIDTH (a Hugging Face BERT-base, say), `why` then saying so, else
    DEFAULT_TRAINING's 5e-4 (also for "random" and for `new_weights`: adapters, a ladder, a new encoder front). The
    width is config.json's hidden_size (BERT, RoBERTa), d_model (BART) or n_embd (GPT-2). A resumed run takes the
    rate its checkpoint recorded (one saved before this rule may have trained at 5e-4). A checkpoint that cannot be
    read keeps 5e-4 here: loading it names the problem."""
    small = DEFAULT_TRAINING["learning_rate"]
    if resume_from_checkpoint is not None:
        recorded = recorded_learning_rate(resume_from_checkpoint, output_dir or DEFAULT_OUTPUT_DIR)
        if recorded is not None:
            return recorded, None
    if model_name_or_path == RANDOM_INIT or new_weights:
        return small, None
    try:
        config = read_config_dict(model_name_or_path)
    except (ValueError, OSError, TypeError):
        return small, None
    width = model_width(config)
    if not isinstance(width, int) or width <= SMALL_MODEL_WIDTH:
        return small, None
    return WIDE_MODEL_LEARNING_RATE, (
        f"learning rate {WIDE_MODEL_LEARNING_RATE:g}: no --learning_rate was given and the pretrained model is "
        f"{width} wide (BERT-base's and RoBERTa's fine-tuning rates are 1e-5 to 5e-5; train.py's {small:g} is for "
        f"models up to {SMALL_MODEL_WIDTH} wide, such as pretrain.py's); pass --learning_rate to choose")


def model_width(config: dict):
    """config.json's width: hidden_size (BERT, RoBERTa), d_model (BART) or n_embd (GPT-2); None without one."""
    return next((config[key] for key in ("hidden_size", "d_model", "n_embd") if key in config), None)


def recorded_learning_rate(resume_from_checkpoint: str, output_dir: str) -> float | None:
    """The --learning_rate of the run that saved the checkpoint a resume names ("last": output_dir's newest), as its
    trainer_state.json records it; None where it cannot be read (the resume itself then names the problem)."""
    try:
        found = (list_checkpoints(output_dir) if resume_from_checkpoint == "last"
                 else [Path(resume_from_checkpoint)])
        rate = json.loads((found[-1] / STATE_JSON).read_text(encoding="utf-8"))["run_settings"]["learning_rate"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return float(rate) if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0 else None


# A pair's special tokens alone take 3 ([CLS] a [SEP] b [SEP]) or 4 (RoBERTa's <s> a </s></s> b </s>);
# 8 leaves room for some text of each.
MIN_SEQ_LENGTH = 8
BASES = {"bert": bert.BertModel, "roberta": bert.RobertaModel}
# (GPT-2 and BART: their own sequence heads, with the flags check_classification_family lets through)
FAMILY_NAMES = {"bert": "BERT", "roberta": "RoBERTa", "gpt2": "GPT-2", "bart": "BART"}  # (in messages)


def family_names(families) -> str:
    """["bert", "roberta"] -> "BERT or RoBERTa", as a message names them."""
    names = [FAMILY_NAMES.get(f, f) for f in families]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


HEADS = {"bert": bert.BertForSequenceClassification, "roberta": bert.RobertaForSequenceClassification,
         "gpt2": gpt.GPT2ForSequenceClassification, "bart": bart.BartForSequenceClassification}
# The families whose models take no token_type_ids (GPT-2 would look zeros up as token 0 and add them)
NO_SEGMENTS = ("gpt2", "bart")
TOKEN_HEADS = {"bert": bert.BertForTokenClassification, "roberta": bert.RobertaForTokenClassification,
               "gpt2": gpt.GPT2ForTokenClassification}
QA_HEADS = {"bert": bert.BertForQuestionAnswering, "roberta": bert.RobertaForQuestionAnswering,
            "gpt2": gpt.GPT2ForQuestionAnswering, "bart": bart.BartForQuestionAnswering}


@dataclass
class FinetuneArguments:
    """Data, model and tricks. Flag names follow Hugging Face's run_glue.py where it has one."""

    model_name_or_path: str = DEFAULT_PRETRAINED  # a minibert / Hugging Face checkpoint dir, or "random"
    config_name: str | None = None  # with "random": the checkpoint dir whose config (shape) and tokenizer to use
    neighbour_heads: bool = False  # with random: add pretrain.py's 2 next-door heads (BERT/RoBERTa), the fair baseline
    tokenizer_name: str | None = None  # default: model_name_or_path (or config_name with "random")
    train_file: str = str(DEFAULT_TRAIN_FILE)  # .csv / .tsv / .json / .jsonl (tagging: or CoNLL; QA: or SQuAD JSON)
    validation_file: str | None = None  # default: the shipped validation file with the shipped --train_file, else none
    text_column: str | None = None  # the text's column; None: by --task_type (text, tokens, question for QA)
    text_pair_column: str | None = None  # a second text: pairs (QA: the context, "context"; GPT-2 runs them together)
    label_column: str | None = None  # labels (a class, a number, a list); None: by --task_type (label, tags, answers)
    task_type: str = "auto"  # auto: names, whole numbers: classes; floats, fractions: regression; lists: multi-label
    # -- generation (--task_type seq2seq / causal_lm; --text_column is the source or the prompt) ----
    target_column: str | None = None  # the text to generate: seq2seq's target, causal_lm's completion
    num_beams: int = 1  # evaluation: 1 = greedy decoding, more = beam search with this many beams
    generation_max_length: int | None = None  # evaluation: new tokens at most per example (default: max_seq_length)
    new_encoder_vocab: str | None = None  # BART's translation recipe: a tokenizer dir of the source language
    new_encoder_layers: int = 1  # encoder layers of the new, randomly initialised encoder front
    new_encoder_stage_two_steps: int | None = None  # the last steps, which train everything (default: last 20%)
    # -- question answering (--task_type question_answering) ---------------------------------------
    # (token_classification and question_answering without --train_file read their shipped tasks, and train.py
    # writes them to runs/finetune-shakespeare-turns and runs/finetune-shakespeare-speakers)
    doc_stride: int = 32  # context pieces each window shares with the one before, when a context needs several
    max_answer_length: int = 30  # pieces of an answer at most
    num_labels: int | None = None  # default: the number of distinct labels in the training file
    max_seq_length: int = 128  # longer texts are truncated (a pair: the longer text first)
    # -- head ------------------------------------------------------------------------------------
    pooling: str = "default"  # "default" = the family's own head; else a pooling head (the README's table)
    pooling_layer: int = -2  # hidden-state index for --pooling cls_layer (-2: second to last)
    multi_label_loss: str = "bce"  # bce | zlpr
    classifier_dropout: float | None = None  # dropout before the classifier (default: the model's; GPT-2's score: none)
    # -- tricks ----------------------------------------------------------------------------------
    optim: str = "adamw"  # adamw | bertadam (no bias correction) | radam_lookahead | madgrad (pip install madgrad)
    llrd: float | None = None  # layer-wise learning-rate decay factor in (0, 1]
    lr_groups: int | None = None  # grouped learning rates: this many groups of blocks ...
    lr_group_factor: float = 2.6  # ... each lower group this many times slower
    head_lr: float | None = None  # rate of all but embeddings and blocks (head, pooler, GPT-2's ln_f); None: lr
    reinit_layers: int = 0  # re-initialise the top N blocks
    reinit_pooler: bool = False  # re-initialise the pooler (Zhang et al. 2020; BERT's: RoBERTa, GPT-2, BART have none)
    freeze_embeddings: bool = False  # no gradient for the embedding layer
    mixout: float = 0.0  # Mixout probability (0 = off); turns dropout off
    prior_wd: bool = False  # weight decay toward the weights fine-tuning starts from (uses --weight_decay)
    fgm: bool = False  # FGM adversarial training on the word embeddings
    pgd_steps: int = 0  # > 0: PGD with this many steps (instead of FGM)
    adv_epsilon: float = 1.0  # FGM step / PGD ball radius (L2 norm over the embedding matrix)
    adv_alpha: float = 0.3  # PGD step size
    adv_emb_name: str = "word_embeddings"  # attack parameters named so (default: the token table; GPT-2's wte too)
    swa_start: float | None = None  # fraction of training after which SWA averages
    swa_lr: float | None = None  # SWA's rate in learning_rate's place, others in ratio (default: learning_rate / 2)
    group_by_length: bool = True  # uniform-length batching (smart batching)
    padding: str = "longest"  # longest (dynamic) | max_length (fixed, the slow baseline)
    per_device_eval_batch_size: int = 64  # examples per evaluation batch
    # -- beyond full updates (README: "Fine-tuning beyond full updates") ------------------------
    adapter_size: int | None = None  # adapters of this bottleneck after every feed-forward; the rest frozen
    gradual_unfreezing: bool = False  # train the head, then one more layer group from the top per stage
    unfreeze_stage_steps: int | None = None  # steps per gradual-unfreezing stage (default: one epoch)
    ladder_side_tuning: int | None = None  # a side network this many times narrower; the encoder frozen
    multitask: list[str] | None = None  # NAME=TRAIN[,VALIDATION[,LABEL_COLUMN]] per task (replaces --train_file)
    mixing: str = "proportional"  # multi-task sampling: proportional | temperature | equal
    mixing_cap: int | None = None  # K: a task counts as at most K examples in the mixing rates
    mixing_temperature: float = 2.0  # T for --mixing temperature

    def __post_init__(self):
        if self.max_seq_length < MIN_SEQ_LENGTH:
            raise ValueError(f"--max_seq_length {self.max_seq_length} is too short: it must hold the special "
                             f"tokens and some text; pass --max_seq_length {MIN_SEQ_LENGTH} or more")
        if self.per_device_eval_batch_size < 1:
            raise ValueError(f"--per_device_eval_batch_size must be >= 1, got {self.per_device_eval_batch_size}")
        if self.num_beams < 1:
            raise ValueError(f"--num_beams must be >= 1 (1 = greedy decoding), got {self.num_beams}")
        if self.generation_max_length is not None and self.generation_max_length < 1:
            raise ValueError(f"--generation_max_length must be >= 1, got {self.generation_max_length}")
        if self.head_lr is not None and self.head_lr <= 0:
            raise ValueError(f"--head_lr must be > 0, got {self.head_lr}; drop it to train the head at --learning_rate")
        # the columns not named: SQuAD's for question answering, a list of words and a list of tags for tagging
        text, label = {TOKEN_CLASSIFICATION: ("tokens", "tags"), QUESTION_ANSWERING: ("question", "answers")}.get(
            self.task_type, ("text", "label"))
        self.text_column = self.text_column or text
        if self.label_column is None and self.task_type not in GENERATIVE_TASK_TYPES:  # (generation reads none)
            self.label_column = label
        if self.task_type == TOKEN_CLASSIFICATION:  # (no --train_file) the shipped tagging task
            if is_default_train_file(self.train_file):
                self.train_file = str(DEFAULT_TAGGING_TRAIN_FILE)
                if self.validation_file is None:
                    self.validation_file = str(DEFAULT_TAGGING_VALIDATION_FILE)
        if self.task_type == QUESTION_ANSWERING:  # the context is the pair; (no --train_file) the shipped QA task
            self.text_pair_column = self.text_pair_column or "context"
            if is_default_train_file(self.train_file):
                self.train_file = str(DEFAULT_QA_TRAIN_FILE)
                if self.validation_file is None:
                    self.validation_file = str(DEFAULT_QA_VALIDATION_FILE)
        if self.doc_stride < 0 or self.max_answer_length < 1:
            raise ValueError(f"--doc_stride must be >= 0 and --max_answer_length >= 1, got {self.doc_stride} and "
                             f"{self.max_answer_length}")
        if self.validation_file is None and not self.multitask:  # (--multitask: each task names its own)
            if is_default_train_file(self.train_file):
                self.validation_file = str(DEFAULT_VALIDATION_FILE)  # the shipped task's own held-out speeches
            else:
                # Never the shipped task's file for someone else's data: it would pick the "best" checkpoint,
                # and report accuracy, on examples of another task.
                final = "the SWA average" if self.swa_start is not None else "the last step's"
                logger.warning("no --validation_file: the run is not evaluated, and the final model is %s; pass "
                               "--validation_file FILE to evaluate and keep the best checkpoint", final)


# -- model ----------------------------------------------------------------------------------------
def _missing_checkpoint_message(path: str, random_init: bool = False) -> str:
    """random_init: the path came from --config_name (or its default), which --model_name_or_path random reads its
    shape and tokenizer from; the fix is that flag, not --model_name_or_path."""
    flag = "--config_name" if random_init else "--model_name_or_path"
    if path == DEFAULT_PRETRAINED:
        why = f" (--model_name_or_path {RANDOM_INIT} reads its config and tokenizer from it)" if random_init else ""
        return (f"the default pretrained checkpoint {path} does not exist{why}; run `{DEFAULT_PRETRAIN_COMMAND}` "
                f"first (about 1.5-3.5 minutes), or pass {flag} <checkpoint dir>")
    beside_base = beside_base_message(path)  # an adapter or ladder run's output: what it is, and what to do
    return f"{flag} {beside_base or f'{path} is not a checkpoint directory (no config.json)'}"


def finetuning_tokenizer(args: FinetuneArguments, source: str, pads: bool = False) -> Tokenizer:
    """The checkpoint's tokenizer, or --tokenizer_name's once it is shown to be the checkpoint's. pads: the
    batches are padded with it (classification), so it must have a pad token."""
    if args.tokenizer_name is None:
        tokenizer = load_tokenizer(source)
        vocab = None if args.model_name_or_path == RANDOM_INIT else read_config_dict(source).get("vocab_size")
        if vocab is not None and len(tokenizer) > vocab:
            # ids past the embedding table: tokens added and the model saved without resizing (the first batch
            # stopped on one), or a special token the checkpoint never embedded, which no text is read into
            # (facebook/bart-large-cnn, -xsum, distilbart: <mask> at 50264, vocab_size 50264): only the first fails
            beyond = sorted((i, t) for t, i in tokenizer.get_vocab().items() if i >= vocab)
            # unread: the mask token (fine-tuning text never holds it), and a byte-level vocabulary's unknown token
            # (never emitted); [CLS], [SEP], <s>, </s> and the pad go into every batch
            unread = {tokenizer.mask_token} | ({tokenizer.unk_token} if tokenizer.kind != "wordpiece" else set())
            read = [f"{t!r} (id {i})" for i, t in beyond if t not in unread]
            if read:
                raise ValueError(f"the tokenizer saved with {source} has {len(tokenizer)} tokens, but the model embeds "
                                 f"{vocab}: {', '.join(read[:5])} lie past its embeddings; resize them (transformers: "
                                 "model.resize_token_embeddings(len(tokenizer)), then save the model), or remove those "
                                 "tokens from the tokenizer's files (a pad token past the table: name one of the "
                                 "vocabulary as pad_token in tokenizer_config.json)")
            logger.warning("the tokenizer saved with %s has %d tokens, the model embeds %d: %s past its embeddings "
                           "(the checkpoint was saved without them); a text holding one would fail", source,
                           len(tokenizer), vocab, ", ".join(f"{t!r} (id {i})" for i, t in beyond))
    else:
        tokenizer = load_tokenizer(args.tokenizer_name)
        weights = None if args.model_name_or_path == RANDOM_INIT else source  # random weights read any ids alike
        check_tokenizer_fits(tokenizer, read_config_dict(source), f"--tokenizer_name {args.tokenizer_name}", source,
                             weights)
    if pads and tokenizer.pad_token_id is None and read_config_dict(source).get("model_type") == "gpt2" and \
            tokenizer.eos_token is not None:
        # GPT-2's vocabulary has no pad token: its end-of-text token pads, as Hugging Face's recipe for
        # GPT2ForSequenceClassification does; the head reads each row's last token that is not a pad, and the
        # attention mask hides the padding. Saved with the run's tokenizer (and as the config's pad_token_id).
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("the tokenizer has no pad token: %r (its eos token) pads the batches, as for Hugging Face's GPT-2",
                    tokenizer.eos_token)
    if pads and tokenizer.pad_token_id is None:
        # (the first batch said "set one (tok.pad_token = tok.eos_token)", which no flag does)
        fix = ("pass the model's own tokenizer" if args.tokenizer_name else
               'name one in its tokenizer_config.json ("pad_token": a token of its vocabulary, as "[PAD]" or "<pad>")')
        where = f"--tokenizer_name {args.tokenizer_name}" if args.tokenizer_name else f"the tokenizer of {source}"
        raise ValueError(f"{where} has no pad token, and a classifier's batches are padded: BERT's and RoBERTa's "
                         f"tokenizers have one (GPT-2's has none); {fix}")
    return tokenizer


def check_classification_family(config: dict, source, args: FinetuneArguments | None = None) -> None:
    """Classification trains BERT and RoBERTa with every head and method here. GPT-2 and BART classify with their
    own head only (GPT-2: the last token's state; BART: the decoder's state at the last </s>), so the flags that
    build another head, or reach for a part they lack, are refused with why. Both answer questions
    (GPT2ForQuestionAnswering, BartForQuestionAnswering) and GPT-2 also tags words (GPT2ForTokenClassification),
    as Hugging Face's heads do; --multitask is BERT's and RoBERTa's (GPT-2 and BART fine-tune on text generation too:
    finetune/generative.py)."""
    family = config.get("model_type")
    if family in BASES:
        return
    generation = {"gpt2": "--task_type causal_lm --target_column COLUMN",
                  "bart": "--task_type seq2seq --target_column COLUMN"}
    if family not in HEADS:
        raise ValueError(f"{source}: model_type {family!r} cannot be fine-tuned here for classification; use a "
                         f"{family_names(HEADS)} checkpoint")
    if args is None:
        return
    task = args.task_type if args.task_type in (TOKEN_CLASSIFICATION, QUESTION_ANSWERING) else None
    own_head = "its own head (" + ("the last token's state" if family == "gpt2" else
                                   "the decoder's state at the last </s>") + ")"
    heads = {TOKEN_CLASSIFICATION: TOKEN_HEADS, QUESTION_ANSWERING: QA_HEADS}
    refused = {
        f"--task_type {task}": (task is not None and family not in heads[task],
                                f"this repository has no {FAMILY_NAMES[family]} head for it, as Hugging Face has "
                                f"none; use a {family_names(heads.get(task, BASES))} checkpoint, or "
                                f"fine-tune {FAMILY_NAMES[family]} on text generation: {generation[family]}"),
        "--multitask": (bool(args.multitask), f"its shared encoder and heads are BERT's and RoBERTa's; use a "
                        f"{family_names(BASES)} checkpoint, or train one task at a time"),
        "--pooling": (args.pooling != "default", f"{family} classifies with {own_head}; the pooling heads read an "
                      "encoder's states (BERT, RoBERTa); drop --pooling"),
        "--reinit_pooler": (args.reinit_pooler, f"{family} has no pooler; drop --reinit_pooler (--reinit_layers N "
                            "starts its top blocks afresh)"),
        "--ladder_side_tuning": (args.ladder_side_tuning is not None, "its side network reads a BERT or RoBERTa "
                                 f"encoder; use --adapter_size N, which trains adapters in {family}'s blocks, or a "
                                 "BERT or RoBERTa checkpoint for the ladder"),
        "--classifier_dropout": (family == "gpt2" and task is None and args.classifier_dropout is not None,
                                 "GPT-2's score layer reads the last state without a dropout of its own, as Hugging "
                                 "Face's; drop --classifier_dropout (the config's resid_pdrop, embd_pdrop and "
                                 "attn_pdrop still apply)"),
    }
    for flag, (on, why) in refused.items():
        if on:
            raise ValueError(f"{source} is a {family} checkpoint, and {flag} is not for it: {why}")


def max_positions(config: dict) -> int:
    """The longest input a checkpoint's learned positions take (RoBERTa's start after the padding id)."""
    family = config.get("model_type")
    if family == "gpt2":
        return gpt.GPT2Config.from_dict(config).n_positions
    if family == "bart":
        return bart.BartConfig.from_dict(config).max_position_embeddings
    base = BASES[family]
    return base.embeddings_class.max_tokens(base.config_class.from_dict(config))


def check_length_fits(max_seq_length: int, config: dict, source) -> None:
    """--max_seq_length must fit the model's learned positions."""
    if config.get("model_type") not in HEADS:
        return  # build_model names the family problem
    limit = max_positions(config)
    if max_seq_length > limit:
        raise ValueError(f"--max_seq_length {max_seq_length} is longer than {source} can take ({limit} positions); "
                         f"pass --max_seq_length {limit} or less")


def encoder_without_unread_pooler_report(base_class, source: str, overrides: dict) -> nn.Module:
    """base_class.from_pretrained(source), for a head that reads the hidden states, not the pooler (a --pooling
    other than pooler, the ladder's side network): a checkpoint without a pooler (an MLM one) is not reported as
    leaving the pooler "newly initialised ... train before use", since nothing reads it; any other weight it
    initialised still is."""
    with new_weights_unreported(("pooler.",)):
        return base_class.from_pretrained(source, **overrides)


def write_random_neighbour_heads(encoder: nn.Module) -> None:
    """--neighbour_heads: the two heads pretrain.py writes into a new BERT, here into random weights, and trained."""
    write_neighbour_heads(encoder)
    logger.info("--neighbour_heads: pretrain.py's previous- and next-token heads (and the sinusoidal positions they "
                "read) written into the random weights' block 0")


def build_model(args: FinetuneArguments, task: Task) -> tuple[nn.Module, str]:
    """The model and the directory its tokenizer comes from."""
    random_init = args.model_name_or_path == RANDOM_INIT
    source = (args.config_name or DEFAULT_PRETRAINED) if random_init else args.model_name_or_path
    if not (Path(source) / "config.json").is_file():
        raise ValueError(_missing_checkpoint_message(source, random_init))
    config = read_config_dict(source)
    family = config.get("model_type")
    if family not in HEADS:
        raise ValueError(f"{source}: model_type {family!r} cannot be fine-tuned here; use a "
                         f"{family_names(HEADS)} checkpoint")
    check_classification_family(config, source, args)  # (GPT-2 and BART: their own sequence head only)
    tagging, answering = task.problem_type == TOKEN_CLASSIFICATION, task.problem_type == QUESTION_ANSWERING
    # (neither is a config problem_type, which Hugging Face refuses; a QA head has its two outputs, no labels)
    labels = {"num_labels": task.num_labels, "problem_type": None if tagging else task.problem_type,
              "id2label": {i: n for i, n in enumerate(task.label_names)} if task.label_names else None}
    overrides = {} if answering else {k: v for k, v in labels.items() if v is not None}
    if args.classifier_dropout is not None:
        overrides["classifier_dropout"] = args.classifier_dropout
    config_class = HEADS[family].config_class
    if args.ladder_side_tuning is not None:
        encoder = encoder_without_unread_pooler_report(BASES[family], source, overrides)
        forget_saved_heads(encoder.config)
        return LadderSideClassifier(encoder, args.ladder_side_tuning, task.num_labels, task.problem_type,
                                    args.multi_label_loss, args.classifier_dropout).train(), source
    if args.pooling == "default":
        head = (TOKEN_HEADS if tagging else QA_HEADS if answering else HEADS)[family]
        # a classifier checkpoint of another number of labels: its head starts afresh (with a warning)
        model = head(config_class.from_dict(config, **overrides)) if random_init else head.from_pretrained(
            source, ignore_mismatched_sizes=True, **overrides)
        if args.neighbour_heads and random_init:  # (check_neighbour_heads; fine-tuning trains them)
            write_random_neighbour_heads(model.base_model)
        # BERT's sentence and token heads are one Linear named `classifier`, of one shape for as many labels: the
        # rows of the other kind's head score whole texts (or words) and would be loaded as this head's
        other = "ForSequenceClassification" if tagging else "ForTokenClassification"
        saved_as = [str(a) for a in config.get("architectures") or [] if str(a).endswith(other)]
        loaded = not random_init and "classifier.weight" not in model.loading_info["newly_initialized"] and not \
            model.loading_info.get("mismatched")  # (a head of another size already started afresh)
        if loaded and not answering and saved_as and isinstance(getattr(model, "classifier", None), nn.Linear):
            model._init_weights(model.classifier)
            logger.warning("%s was saved as %s: its classifier scores %s, so this run's head starts afresh", source,
                           saved_as[0], "whole texts" if tagging else "single words")
        elif not random_init and not answering:
            keep_checkpoint_label_rows(model, config, task)
    else:
        if args.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {args.pooling!r}; choose default or one of {', '.join(POOLINGS)}")
        base_class = BASES[family]
        encoder = base_class(config_class.from_dict(config, **overrides)) if random_init else \
            base_class.from_pretrained(source, **overrides) if args.pooling == "pooler" else \
            encoder_without_unread_pooler_report(base_class, source, overrides)
        if args.neighbour_heads and random_init:
            write_random_neighbour_heads(encoder)
        model = PooledClassifier(encoder, args.pooling, task.num_labels, task.problem_type, args.multi_label_loss,
                                 args.classifier_dropout, args.pooling_layer)
    forget_saved_heads(model.config)
    if tagging or answering:
        model.config.problem_type = None  # a sentence classifier's, from the checkpoint: not this head's
    if answering:  # a start and an end: the default names of a two-output head, not a classifier checkpoint's labels
        model.config.num_labels = 2
        model.config.id2label, model.config.label2id = {0: "LABEL_0", 1: "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}
    if args.adapter_size is not None:
        # the pooler trains only under a head that reads it: the family head (BERT's) or --pooling pooler
        trainable = add_adapters(model, args.adapter_size, train_pooler=args.pooling in ("default", "pooler"))
        logger.info("adapters of %d units: %d of %d parameters train", args.adapter_size, trainable,
                    sum(p.numel() for p in model.parameters()))
    tokenizer_dir = args.tokenizer_name or source
    return model.train(), tokenizer_dir


def check_neighbour_heads(args: FinetuneArguments, config: dict | None) -> None:
    """--neighbour_heads starts random weights as pretrain.py starts a BERT (its two heads written into block 0, and
    the sinusoidal positions they read): the baseline that tells what pretraining's text taught from what the written
    heads give (README: "Pretrain then fine-tune"). Fine-tuning trains them, as every weight."""
    if config is not None and config.get("model_type") not in BASES:
        family = config.get("model_type")
        where = (args.config_name or DEFAULT_PRETRAINED) if args.model_name_or_path == RANDOM_INIT else \
            args.model_name_or_path
        raise ValueError(f"--neighbour_heads: they are written into a BERT or RoBERTa encoder's first block, and "
                         f"{where} is a {FAMILY_NAMES.get(family, family)} checkpoint; drop --neighbour_heads")
    if args.model_name_or_path != RANDOM_INIT:
        raise ValueError("--neighbour_heads writes pretrain.py's previous- and next-token heads into random weights, "
                         "the baseline beside a checkpoint pretrained with them (pretrain.py's default run wrote them "
                         "and kept them fixed); pass --model_name_or_path random --config_name DIR, or drop "
                         "--neighbour_heads")
    if args.multitask:
        raise ValueError("--neighbour_heads with --multitask is not supported; train one task at a time")
    if args.reinit_layers:
        raise ValueError(f"--reinit_layers {args.reinit_layers} with --neighbour_heads: the weights are random "
                         "already, and re-drawing block 0 would erase the written heads; drop --reinit_layers")
    if config is None:
        return
    no_room = why_no_room(HEADS[config["model_type"]].config_class.from_dict(config))
    if no_room:
        raise ValueError(f"--neighbour_heads: {no_room} ({args.config_name or DEFAULT_PRETRAINED}); drop "
                         "--neighbour_heads")


def check_methods(args: FinetuneArguments, config: dict | None = None) -> None:
    """Refuse what the methods beyond full updates cannot do together, before any work (with the
    checkpoint's `config`: sizes that do not fit its hidden size too)."""
    frozen_base = {"--adapter_size": args.adapter_size is not None,
                   "--ladder_side_tuning": args.ladder_side_tuning is not None}
    chosen = [flag for flag, on in frozen_base.items() if on]
    if len(chosen) == 2:
        raise ValueError("choose one of --adapter_size and --ladder_side_tuning, not both")
    check_one_rate_scheme(args)
    if args.adapter_size is not None and args.adapter_size < 1:
        raise ValueError(f"--adapter_size {args.adapter_size}: an adapter needs at least 1 unit; pass e.g. "
                         "--adapter_size 16, or drop the flag to fine-tune every weight")
    if args.ladder_side_tuning is not None and args.ladder_side_tuning < 1:
        raise ValueError(f"--ladder_side_tuning {args.ladder_side_tuning}: the reduction factor r must be >= 1 "
                         "(the side network is hidden_size / r wide); pass e.g. --ladder_side_tuning 8")
    if args.neighbour_heads:
        check_neighbour_heads(args, config)
    if chosen and args.model_name_or_path == RANDOM_INIT:
        raise ValueError(f"{chosen[0]} trains a few parameters beside frozen pretrained weights, and random weights "
                         "frozen learn nothing; pass a pretrained --model_name_or_path")
    if args.multitask and (args.validation_file is not None or _given(args, "train_file")):
        flag = "--validation_file" if args.validation_file is not None else "--train_file"
        raise ValueError(f"{flag} with --multitask would be ignored: each task's files come from its spec; give "
                         f"them as --multitask NAME=TRAIN,VALIDATION[,LABEL_COLUMN] and drop {flag}")
    if args.multitask:
        # finetune_multitask builds none of these (the single-task run's model surgery and training callbacks).
        single_task_only = {**frozen_base, "--gradual_unfreezing": args.gradual_unfreezing,
                            "--swa_start": args.swa_start is not None, "--fgm": args.fgm,
                            "--pgd_steps": args.pgd_steps != 0}
        given = [flag for flag, on in single_task_only.items() if on]
        if given:
            raise ValueError(f"{given[0]} with --multitask is not supported (the multi-task run would silently "
                             "train without it); drop one of them")
    if chosen and args.gradual_unfreezing:
        raise ValueError(f"--gradual_unfreezing thaws the encoder that {chosen[0]} keeps frozen; drop one of them")
    if args.gradual_unfreezing and (args.fgm or args.pgd_steps):
        attack = "--fgm" if args.fgm else "--pgd_steps"
        raise ValueError(f"{attack} attacks the word embeddings along their gradient, and --gradual_unfreezing "
                         "keeps the embeddings frozen (no gradient) until its last stage, so every step before it "
                         "would go unattacked; drop one of them")
    attack = "--fgm" if args.fgm else "--pgd_steps" if args.pgd_steps else None
    freezer = "--adapter_size" if args.adapter_size is not None else \
        "--freeze_embeddings" if args.freeze_embeddings else None
    if attack and freezer and args.adv_emb_name == "word_embeddings":
        # (refused by FGM itself too, but only once the data is read and the model built)
        raise ValueError(f"{attack} attacks the word embeddings along their gradient, and {freezer} freezes them "
                         "(no gradient, so no attack); drop one of them")
    if args.adapter_size is not None and args.reinit_layers:
        raise ValueError(f"--reinit_layers {args.reinit_layers} with --adapter_size: the adapters keep the blocks "
                         "frozen, so re-initialised blocks would stay random (and their adapters' zero start would "
                         "be drawn again); drop --reinit_layers, or drop --adapter_size to fine-tune every weight")
    if args.ladder_side_tuning is not None and args.pooling != "default":
        raise ValueError("--ladder_side_tuning reads its side network by a masked mean; drop --pooling")
    if args.reinit_pooler and (args.ladder_side_tuning is not None or args.pooling not in ("default", "pooler")):
        reader = "--ladder_side_tuning" if args.ladder_side_tuning is not None else f"--pooling {args.pooling}"
        raise ValueError(f"--reinit_pooler with {reader}: that head never reads the pooler, so re-initialising it "
                         "would change nothing but the random draws; drop --reinit_pooler (or use --pooling pooler)")
    if args.ladder_side_tuning is not None and (args.fgm or args.pgd_steps or args.mixout or args.reinit_layers):
        raise ValueError("--ladder_side_tuning keeps the encoder frozen and out of backward; drop --fgm / "
                         "--pgd_steps / --mixout / --reinit_layers, which change the encoder")
    if args.ladder_side_tuning is not None:
        rates = {"--llrd": args.llrd is not None, "--lr_groups": args.lr_groups is not None,
                 "--head_lr": args.head_lr is not None}
        by_depth = [flag for flag, on in rates.items() if on]
        if by_depth:
            # param_groups.py sets rates by the encoder's blocks; every parameter the ladder trains (side
            # network and classifier) sits outside them, so all of it would be "head" at one rate.
            raise ValueError(f"{by_depth[0]} with --ladder_side_tuning: the learning-rate groups follow the "
                             "encoder's blocks (all else is the head), which the ladder keeps frozen, so its side "
                             "network and classifier would all train at one rate; drop "
                             f"{by_depth[0]} and set that rate with --learning_rate")
    num_layers = (config or {}).get("num_hidden_layers")
    if num_layers is not None and args.pooling in POOLINGS:
        check_pooling(args.pooling, num_layers, args.pooling_layer)
    hidden_size = (config or {}).get("hidden_size")
    width = model_width(config or {})
    if width is not None and args.adapter_size is not None:
        check_adapter_size(args.adapter_size, width)
    if hidden_size is not None and args.ladder_side_tuning is not None:
        side_width(hidden_size, args.ladder_side_tuning)
    if args.unfreeze_stage_steps is not None and not args.gradual_unfreezing:
        raise ValueError("--unfreeze_stage_steps sets the stage length of --gradual_unfreezing; pass that flag too")
    if args.unfreeze_stage_steps is not None and args.unfreeze_stage_steps < 1:
        raise ValueError(f"--unfreeze_stage_steps must be >= 1 (optimizer steps per stage), got "
                         f"{args.unfreeze_stage_steps}; drop it for one epoch per stage")
    check_sub_flags(args)
    if args.multitask:
        check_mixing(args.mixing, args.mixing_cap, args.mixing_temperature)
    check_generation_flags(args)


def _given(args: FinetuneArguments, name: str) -> bool:
    """The flag was set to something other than its default (all a parsed command line can tell)."""
    return getattr(args, name) != FinetuneArguments.__dataclass_fields__[name].default


def check_multi_label_loss(args: FinetuneArguments, tasks: list[Task]) -> None:
    """--multi_label_loss once the data has shown the task type: on a task of one label or a number, task_loss
    takes cross-entropy or MSE and the flag would do nothing, without a word."""
    if args.multi_label_loss != "bce" and all(t.problem_type != "multi_label_classification" for t in tasks):
        kinds = ", ".join(sorted({t.problem_type for t in tasks}))
        raise ValueError(f"--multi_label_loss {args.multi_label_loss} is a loss of multi-label classification, and "
                         f"the task is {kinds}, whose loss it would not change; drop --multi_label_loss (a multi-label "
                         'task writes each label as a list of classes, ["a", "b"])')


def check_one_rate_scheme(args: FinetuneArguments) -> None:
    if args.llrd is not None and args.lr_groups is not None:
        raise ValueError("choose one of --llrd (per-layer decay) and --lr_groups (grouped rates), not both")


def check_sub_flags(args: FinetuneArguments) -> None:
    """A flag that tunes a method which is not on would be accepted and do nothing: a mistyped --fgm or
    --swa_start would give a run without the method and no word about it."""
    attack = args.fgm or args.pgd_steps != 0
    sub_flags = [
        ("--pooling_layer", args.pooling == "cls_layer",
         f"picks the hidden state that --pooling cls_layer reads, and this run pools with --pooling {args.pooling}; "
         "pass --pooling cls_layer"),
        ("--adv_epsilon", attack, "sets the attack size of --fgm / --pgd_steps; pass one of them"),
        ("--adv_emb_name", attack, "names the parameters that --fgm / --pgd_steps attack; pass one of them"),
        ("--adv_alpha", args.pgd_steps != 0,
         "is the step size of --pgd_steps (FGM takes a single step of --adv_epsilon, so it has none); pass "
         "--pgd_steps N"),
        ("--lr_group_factor", args.lr_groups is not None,
         "sets how much slower each lower group of --lr_groups trains; pass --lr_groups N"),
        ("--swa_lr", args.swa_start is not None,
         "is the learning rate of stochastic weight averaging, which --swa_start turns on; pass --swa_start"),
        ("--mixing", bool(args.multitask), "chooses how --multitask samples its tasks; pass --multitask"),
        ("--mixing_cap", bool(args.multitask) and args.mixing in ("proportional", "temperature"),
         "caps a task's size in the proportional and temperature rates (T5's equal mixing has no cap); pass "
         "--multitask with --mixing proportional or temperature"),
        ("--mixing_temperature", bool(args.multitask) and args.mixing == "temperature",
         "is T of --mixing temperature; pass --multitask with --mixing temperature"),
    ]
    for flag, method_on, what in sub_flags:
        if _given(args, flag[2:]) and not method_on:
            raise ValueError(f"{flag} {what}, or drop {flag}")


def check_generation_flags(args: FinetuneArguments) -> None:
    """Classification flags with a generative task type, and generation flags without one."""
    if args.new_encoder_vocab is None:
        # the new encoder's settings, with no new encoder to apply them to: a run without them, and no word
        tuning = [flag for flag, on in (("--new_encoder_layers", _given(args, "new_encoder_layers")),
                                        ("--new_encoder_stage_two_steps", args.new_encoder_stage_two_steps is not None))
                  if on]
        if tuning:
            raise ValueError(f"{tuning[0]} sets up the new encoder of --new_encoder_vocab (BART's translation "
                             "recipe), which this run does not build; pass --new_encoder_vocab DIR with --task_type "
                             f"seq2seq, or drop {tuning[0]}")
    if args.task_type not in GENERATIVE_TASK_TYPES:
        given = [flag for flag, on in (("--target_column", args.target_column is not None),
                                       ("--num_beams", args.num_beams != 1),
                                       ("--generation_max_length", args.generation_max_length is not None),
                                       ("--new_encoder_vocab", args.new_encoder_vocab is not None)) if on]
        if given:
            raise ValueError(f"{given[0]} is for text generation; pass --task_type seq2seq (BART) or causal_lm "
                             "(GPT-2), or drop it")
        return
    classification_only = {
        "--text_pair_column": args.text_pair_column is not None, "--num_labels": args.num_labels is not None,
        "--pooling": args.pooling != "default", "--multi_label_loss": args.multi_label_loss != "bce",
        "--classifier_dropout": args.classifier_dropout is not None, "--llrd": args.llrd is not None,
        "--lr_groups": args.lr_groups is not None, "--head_lr": args.head_lr is not None,
        "--reinit_layers": args.reinit_layers != 0, "--reinit_pooler": args.reinit_pooler,
        "--freeze_embeddings": args.freeze_embeddings, "--mixout": args.mixout != 0, "--fgm": args.fgm,
        "--pgd_steps": args.pgd_steps != 0, "--swa_start": args.swa_start is not None,
        "--adapter_size": args.adapter_size is not None, "--gradual_unfreezing": args.gradual_unfreezing,
        "--ladder_side_tuning": args.ladder_side_tuning is not None, "--multitask": bool(args.multitask),
        "--padding": args.padding != "longest"}  # (GenerativeCollator pads each batch to its longest)
    given = [flag for flag, on in classification_only.items() if on]
    if given:
        raise ValueError(f"{given[0]} is a classification method that --task_type {args.task_type} does not "
                         "support; drop it")
    if _given(args, "label_column"):  # the target is --target_column's: a label column would be read by nothing
        raise ValueError(f"--label_column names a classification label, and --task_type {args.task_type} reads no "
                         "label: its text to generate is --target_column's; drop --label_column")
    if args.new_encoder_vocab is not None:
        if args.task_type != "seq2seq":
            raise ValueError("--new_encoder_vocab puts a new encoder in front of BART; pass --task_type seq2seq")
        if not Path(args.new_encoder_vocab).is_dir():
            raise ValueError(f"--new_encoder_vocab {args.new_encoder_vocab} is not a directory; pass a tokenizer "
                             "directory (tokenizer.json, or vocab.json + merges.txt) of the source language")
        if args.new_encoder_layers < 0:
            raise ValueError(f"--new_encoder_layers must be >= 0, got {args.new_encoder_layers}")
        if args.new_encoder_stage_two_steps is not None and args.new_encoder_stage_two_steps < 0:
            # stage two would start past the last step: the pretrained BART would never train
            raise ValueError(f"--new_encoder_stage_two_steps must be >= 0 (the last steps, which train every "
                             f"parameter), got {args.new_encoder_stage_two_steps}")
    if is_default_train_file(args.train_file):
        # the default --train_file is the shipped genre classification task, whose columns are text and label
        raise ValueError(f"--task_type {args.task_type} needs --train_file: the default one is the shipped Shakespeare "
                         "genre classification task, with no text to generate; pass your own pairs (the shipped "
                         "generation task: --train_file minibert/data/tasks/tang_t2s_train.jsonl)")
    if args.target_column is None:
        what = "target" if args.task_type == "seq2seq" else "completion"
        raise ValueError(f"--task_type {args.task_type} needs --target_column: the column holding the {what}, the "
                         "text to generate")


def check_qa_flags(args: FinetuneArguments) -> None:
    """Question answering's own flags mean nothing to the other task types (generation's included)."""
    if args.task_type != QUESTION_ANSWERING:
        for flag in ("doc_stride", "max_answer_length"):
            if _given(args, flag):
                raise ValueError(f"--{flag} is for --task_type question_answering; pass it, or drop --{flag}")


def check_token_task_flags(args: FinetuneArguments) -> None:
    """--task_type token_classification and question_answering read every token's hidden state with the family's
    token or span head: the flags of a sequence-level head, or of the methods that rebuild one, would be ignored
    or fail later."""
    if args.task_type not in (TOKEN_CLASSIFICATION, QUESTION_ANSWERING):
        return
    tagging = args.task_type == TOKEN_CLASSIFICATION
    sequence_only = {
        "--text_pair_column": (tagging and args.text_pair_column is not None, "a tagged row is one list of words"),
        "--pooling": (args.pooling != "default", "it reads every token's hidden state, not a pooled one"),
        "--multi_label_loss": (args.multi_label_loss != "bce", "it has no multi-label classes"),
        "--num_labels": (args.num_labels is not None, "the tags are the training file's" if tagging else
                         "an answer is a start and an end, two outputs"),
        "--reinit_pooler": (args.reinit_pooler, "its head has no pooler"),
        "--multitask": (bool(args.multitask), "its tasks are sequence classification"),
        "--ladder_side_tuning": (args.ladder_side_tuning is not None, "the side network ends in a sequence head"),
        "--classifier_dropout": (not tagging and args.classifier_dropout is not None,
                                 "the span head has no dropout of its own, as Hugging Face's has none")}
    for flag, (on, why) in sequence_only.items():
        if on:
            raise ValueError(f"{flag} is not for --task_type {args.task_type} ({why}); drop {flag}")


# What a model saved beside its base needs to be rebuilt (with the task) before its parameters load.
BESIDE_BASE_FIELDS = ("pooling", "pooling_layer", "multi_label_loss", "classifier_dropout", "adapter_size",
                      "ladder_side_tuning")


def load_finetuned(path: str | os.PathLike) -> nn.Module:
    """Load what `finetune` saved: a family head model, a PooledClassifier, a MultiTaskClassifier,
    (adapters, ladder side-tuning) the trained parameters beside their base checkpoint, a fine-tuned
    BART or GPT-2 (load_pretrained), or a BART with a new encoder front (--new_encoder_vocab)."""
    if has_new_encoder(path):
        return BartWithNewEncoder.load(path)
    if is_beside_base(path):
        def rebuild(base: str, settings: dict) -> nn.Module:
            kind = settings["task"]["problem_type"]  # (a tagger's or reader's flags are checked as theirs)
            task_type = kind if kind in (TOKEN_CLASSIFICATION, QUESTION_ANSWERING) else "auto"
            args = FinetuneArguments(model_name_or_path=base, task_type=task_type, **settings["args"])
            model = build_model(args, Task(**settings["task"]))[0]
            if "pad_token_id" in settings:  # GPT-2's: the run's tokenizer's, which its base's config may not name
                model.config.pad_token_id = settings["pad_token_id"]
            return model

        return load_beside_base(path, rebuild).eval()
    config = read_config_dict(path)
    stale = False
    for key, file, load in ((HEAD_KEY, HEAD_FILE, PooledClassifier.load), (TASKS_KEY, HEADS_FILE,
                                                                           MultiTaskClassifier.load)):
        if key not in config:
            continue
        if (Path(path) / file).is_file():
            return load(path, BASES[config["model_type"]])
        # a family head trained on from such a run, saved by an older minibert with the marker and without the file
        logger.warning("%s: config.json names a minibert head saved in %s, which the directory lacks (a run saved on "
                       "top of a --pooling or --multitask run's checkpoint by an older minibert); loaded as the "
                       "model its weights are", path, file)
        stale = True
    if stale:  # (load_pretrained refuses a directory with the marker)
        model = model_class_for(config).from_pretrained(path)
        forget_saved_heads(model.config)
        return model
    return load_pretrained(path)


def apply_tricks(model: nn.Module, args: FinetuneArguments) -> None:
    """Model surgery, before the optimizer is built: re-init, freeze, Mixout."""
    if args.reinit_pooler and not reinit_pooler(model):
        logger.warning("--reinit_pooler: this model has no pooler")
    if args.reinit_layers:
        reinit_top_layers(model, args.reinit_layers)
    if args.freeze_embeddings:
        freeze_embeddings(model)
    if args.mixout:
        apply_mixout(model, args.mixout)


def attacked_embeddings(model: nn.Module, name: str) -> str:
    """What --fgm / --pgd_steps attack: parameters whose name holds --adv_emb_name. Its default, "word_embeddings",
    is BERT's and RoBERTa's token table; on GPT-2 and BART it means theirs (transformer.wte, model.shared)."""
    if name != FinetuneArguments.adv_emb_name or getattr(model.config, "model_type", None) in BASES:
        return name
    table = model.get_input_embeddings().weight
    return next(n for n, p in model.named_parameters() if p is table)


def finetuning_optimizer(model: nn.Module, args: FinetuneArguments, training: TrainingArguments):
    """The optimizer `train.py` trains with: the parameter groups its flags ask for (layer-wise decay,
    grouped rates, a head rate, else the engine's two groups), under `--optim`'s optimizer
    (finetune/optimizers.py), wrapped in PriorWD with `--prior_wd`. The engine's own
    `build_optimizer` (engine/optim.py) is the plain AdamW that `pretrain.py` uses."""
    lr, wd = training.learning_rate, training.weight_decay
    check_one_rate_scheme(args)  # (train.py has checked it before any work; a caller from Python may not have)
    if args.llrd is not None:
        groups = layer_wise_lr_decay_groups(model, lr, wd, args.llrd, args.head_lr)
    elif args.lr_groups is not None:
        groups = grouped_lr_groups(model, lr, wd, args.lr_groups, args.lr_group_factor, args.head_lr)
    elif args.head_lr is not None:
        groups = layer_wise_lr_decay_groups(model, lr, wd, 1.0, args.head_lr)
    else:
        groups = param_groups(model, lr, wd)
    if args.optim not in OPTIMIZERS:
        raise ValueError(f"unknown --optim {args.optim!r}; choose one of {OPTIMIZERS}")
    optimizer = build_finetune_optimizer(args.optim, groups, lr, wd, (training.adam_beta1, training.adam_beta2),
                                         training.adam_epsilon)
    return PriorWD(optimizer) if args.prior_wd else optimizer


class LookaheadSlowWeights:
    """An engine callback for a run under Lookahead (--optim radam_lookahead): its evaluations read the slow
    weights, and it ends with them in the model, which is then evaluated and saved (Zhang et al. 2019,
    https://arxiv.org/abs/1907.08610, Algorithm 1 returns them; the run ended on the fast weights, up to k - 1 steps
    ahead). Lookahead.close_cycle says what they are between two pulls. The checkpoints keep the fast weights (and
    the slow ones in the optimizer's state), so a resumed run still equals an uninterrupted one."""

    def __init__(self, lookahead: Lookahead):
        self.lookahead = lookahead

    def evaluating(self, eval_fn):
        """eval_fn, run on the slow weights (the fast ones come back after it, bit for bit)."""
        def on_slow_weights(model: nn.Module) -> dict:
            with self.lookahead.slow_weights():
                return eval_fn(model)
        return on_slow_weights

    def on_train_end(self, trainer) -> None:
        best = trainer.checkpoint_path(trainer.state.best_checkpoint)
        if trainer.args.load_best_model_at_end and best:
            # The engine has loaded the best checkpoint's model, the fast weights of its step: the slow weights that
            # step was evaluated on are in its optimizer state (training is over: the optimizer steps no more)
            trainer.optimizer.load_state_dict(load_torch_file(Path(best) / OPTIMIZER_FILE))
        self.lookahead.close_cycle()


def on_slow_weights(optimizer, eval_fn, callbacks: list):
    """Under Lookahead: eval_fn evaluating the slow weights, with LookaheadSlowWeights appended to `callbacks` (it
    ends the run on them); otherwise eval_fn as it is."""
    lookahead = find_lookahead(optimizer)
    if lookahead is None:
        return eval_fn
    slow = LookaheadSlowWeights(lookahead)
    callbacks.append(slow)
    return slow.evaluating(eval_fn) if eval_fn is not None else None


# -- evaluation -----------------------------------------------------------------------------------
def run_arguments(args: FinetuneArguments, training: TrainingArguments) -> dict:
    """Every setting the run used, defaults included (the fine-tuning's and the engine's), for eval_results.json:
    what the command line was need not be remembered (--model_name_or_path random, --neighbour_heads, the seed)."""
    return {"finetune": asdict(args), "training": asdict(training),
            "working_directory": str(Path.cwd())}  # (what relative paths among them are relative to)


def _run_relative(checkpoint: str | None, run_dir: Path) -> str | None:
    """A checkpoint as eval_results.json names it: by its name when it lies in the run's directory, beside the
    record, else (a run resumed into another --output_dir) by its absolute path; the path as given was
    relative to wherever the shell stood when the run was started."""
    if not checkpoint:
        return None
    path = Path(checkpoint)
    return path.name if path.parent.resolve() == Path(run_dir).resolve() else str(path.resolve())


# What compute_metrics returns for each problem type, beside the loss: what --metric_for_best_model may name
METRICS = {"regression": ("rmse", "pearson"), "multi_label_classification": ("f1_micro", "f1_macro", "exact_match"),
           "single_label_classification": ("accuracy", "f1_macro")}


def compute_metrics(logits: torch.Tensor, labels: torch.Tensor, task: Task) -> dict:
    if task.problem_type == "regression":
        # (N, 1) logits of N examples and (N,) labels -> (N,) each
        pred, gold = logits.view(-1).double(), labels.view(-1).double()
        rmse = float((pred - gold).pow(2).mean().sqrt())
        pearson = float(torch.corrcoef(torch.stack([pred, gold]))[0, 1]) if len(gold) > 1 else float("nan")
        return {"rmse": rmse, "pearson": pearson}
    if task.problem_type == "multi_label_classification":
        pred, gold = logits > 0, labels > 0.5
        tp, fp, fn = (pred & gold).sum(0).double(), (pred & ~gold).sum(0).double(), (~pred & gold).sum(0).double()
        micro = float(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()).clamp(min=1))
        macro = float((2 * tp / (2 * tp + fp + fn).clamp(min=1)).mean())
        return {"f1_micro": micro, "f1_macro": macro, "exact_match": float((pred == gold).all(1).double().mean())}
    pred = logits.argmax(-1)
    f1s = []  # macro-F1 over the classes in the gold labels or the predictions, as scikit-learn's default
    for c in sorted(set(labels.tolist()) | set(pred.tolist())):
        tp = int(((pred == c) & (labels == c)).sum())
        fp, fn = int(((pred == c) & (labels != c)).sum()), int(((pred != c) & (labels == c)).sum())
        f1s.append(2 * tp / max(2 * tp + fp + fn, 1))
    return {"accuracy": float((pred == labels).double().mean()), "f1_macro": sum(f1s) / len(f1s)}


def make_eval_fn(examples: list[dict], task: Task, collate, batch_size: int, multi_label_loss: str):
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))  # little padding

    def evaluate(model: nn.Module) -> dict:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        logits, labels = [], []
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                batch = collate([examples[i] for i in order[start : start + batch_size]])
                gold = batch.pop("labels")
                out = model(**{k: v.to(device) for k, v in batch.items()})
                logits.append(out.logits.float().cpu())
                labels.append(gold)
        model.train(was_training)
        logits, labels = torch.cat(logits), torch.cat(labels)
        loss = float(task_loss(logits, labels, task.problem_type, multi_label_loss))
        return {"loss": loss, **compute_metrics(logits, labels, task)}

    return evaluate


def check_metric_name(name: str, names, what: str) -> None:
    """--metric_for_best_model among the names the evaluation returns, before training: the engine finds a
    name that no evaluation returns only at the first evaluation (it saves the steps trained, then stops)."""
    if metric_key(name, dict.fromkeys(names)) not in names:
        raise ValueError(f"--metric_for_best_model {name}: {what} is evaluated by {', '.join(names)}; pass one of "
                         "them (eval_ in front is accepted)")


def best_metric_name(task: Task) -> str:
    if task.problem_type == TOKEN_CLASSIFICATION:
        return "f1" if is_entity_scheme(task) else "accuracy"
    if task.problem_type == QUESTION_ANSWERING:
        return "f1"
    return {"regression": "rmse", "multi_label_classification": "f1_micro"}.get(task.problem_type, "accuracy")


def sequence_splits(args: FinetuneArguments, tokenizer: Tokenizer, source: str):
    """A sentence (or pair) task's data: training examples, the Task its labels show, and the validation examples
    (None without a validation file; no items beside them)."""
    columns = {"text_column": args.text_column, "label_column": args.label_column,
               "text_pair_column": args.text_pair_column}
    train_examples, task = load_split(args.train_file, tokenizer, args.max_seq_length, **columns,
                                      task_type=args.task_type, num_labels=args.num_labels, flag="--train_file FILE")
    check_known_tokens(tokenizer, train_examples, args.train_file, f"the tokenizer of {args.tokenizer_name or source}",
                       row_texts(args.train_file, "--train_file FILE",
                                 [c for c in (args.text_column, args.text_pair_column) if c]))
    check_multi_label_loss(args, [task])
    eval_examples = (load_split(args.validation_file, tokenizer, args.max_seq_length, **columns, task=task,
                                flag="--validation_file FILE")[0] if args.validation_file else None)
    if args.text_pair_column and tokenizer(["a"], ["b"])["input_ids"][0].tolist() == tokenizer.encode("a") + \
            tokenizer.encode("b"):
        # GPT-2's tokenizer frames nothing: "The king is dead." + "Long live" is read as "The king is dead.Long live"
        logger.warning("--text_pair_column %s: this tokenizer puts nothing between a pair's two texts (GPT-2's adds no "
                       "special tokens), so the model reads them run together; to mark where the second begins, join "
                       "them into one column with a separator of your own (a newline, or \" | \")",
                       args.text_pair_column)
    if read_config_dict(source).get("model_type") == "bart":
        check_bart_framing(tokenizer, args, [(args.train_file, train_examples),
                                             (args.validation_file, eval_examples or [])])
    return train_examples, task, eval_examples, None


def check_bart_framing(tokenizer: Tokenizer, args: FinetuneArguments, splits: list[tuple[str, list[dict]]]) -> None:
    """BART's head reads the decoder's state at the last </s>, and needs every row to hold as many as the tokenizer's
    framing puts there (1; a pair 3). A text holding "</s>" itself (HTML's strike-through, "<s>old</s>") is read as
    one more: it stopped the run at the first batch holding it, with advice that did not apply."""
    eos = tokenizer.eos_token_id
    framed = tokenizer(["a"], ["b"] if args.text_pair_column else None)["input_ids"][0].eq(eos).sum().item()
    for path, examples in splits:
        for n, example in enumerate(examples, 1):
            if example["input_ids"].count(eos) != framed:
                raise ValueError(f"{path}: row {n} holds {tokenizer.eos_token!r} in its text, which BART's tokenizer "
                                 f"reads as its end-of-sequence token, and BART's head reads the state at the last "
                                 f"one of the {framed} each row must hold; remove or change it in the text (e.g. "
                                 f"\"< /s>\")")


def task_evaluation(args: FinetuneArguments, task: Task, pad_token_id: int, examples: list[dict], items,
                    real_only: bool = False):
    """The evaluation of a task's validation examples (and, for tagging and QA, the sentences or questions they
    come from), and the names of the metrics it returns beside the loss (real_only: a GPT-2 reader's span softmax
    leaves padding out, as it trains)."""
    if task.problem_type == TOKEN_CLASSIFICATION:
        collate = PaddingCollator(pad_token_id, args.max_seq_length, token_labels=True)
        return TagEvaluator(examples, task, collate, args.per_device_eval_batch_size), metric_names(task)
    if task.problem_type == QUESTION_ANSWERING:
        # padded as training is: the span softmax reads padding (as Hugging Face's; GPT-2's does not: real_only)
        collate = QACollator(pad_token_id, args.max_seq_length, args.padding)
        return QAEvaluator(items, examples, collate, args.per_device_eval_batch_size, args.max_answer_length,
                           allow_no_answer=bool(task.label_names), real_only=real_only), QA_METRICS
    evaluate = make_eval_fn(examples, task, PaddingCollator(pad_token_id, args.max_seq_length),
                            args.per_device_eval_batch_size, args.multi_label_loss)
    return evaluate, METRICS[task.problem_type]


def answered_splits(args: FinetuneArguments, tokenizer: Tokenizer, source: str):
    """--task_type question_answering's data: the training windows, the Task, and the validation windows and
    questions (None, None without a validation file). A training file with a question of no answer (SQuAD 2.0) lets
    the evaluation answer "" (task.label_names: ["no_answer"])."""
    columns = (args.text_column, args.text_pair_column, args.label_column)
    questions = read_questions(args.train_file, *columns, flag="--train_file FILE")
    unanswered = sum(not q.answers for q in questions)
    task = Task(QUESTION_ANSWERING, ["no_answer"] if unanswered else [])
    if unanswered:
        logger.info("%d of %d training questions have no answer (SQuAD 2.0): the evaluation may answer \"\" "
                    "(predict_answers: with allow_no_answer=True)", unanswered, len(questions))
    at_end = no_answer_at_end(read_config_dict(source).get("model_type"))  # (GPT-2: each window's last token)
    train_features = qa_features(questions, tokenizer, args.max_seq_length, args.doc_stride, args.train_file, at_end)
    check_known_tokens(tokenizer, train_features, args.train_file, f"the tokenizer of {args.tokenizer_name or source}",
                       lambda i: f"{questions[train_features[i]['question']].question} / "
                                 f"{questions[train_features[i]['question']].context}")
    if not args.validation_file:
        return train_features, task, None, None
    eval_questions = read_questions(args.validation_file, *columns, flag="--validation_file FILE")
    return (train_features, task, qa_features(eval_questions, tokenizer, args.max_seq_length, args.doc_stride,
                                              args.validation_file, at_end), eval_questions)


def task_splits(args: FinetuneArguments, tokenizer: Tokenizer, source: str):
    """The run's data, by its task type: sequence_splits, tagged_splits or answered_splits. GPT-2's and BART's
    examples lose their segment ids: GPT-2 would look zeros up as token 0 and add it everywhere; BART takes none."""
    read = {TOKEN_CLASSIFICATION: tagged_splits, QUESTION_ANSWERING: answered_splits}.get(args.task_type,
                                                                                         sequence_splits)
    train_examples, task, eval_examples, eval_items = read(args, tokenizer, source)
    if read_config_dict(source).get("model_type") in NO_SEGMENTS:
        for example in [*train_examples, *(eval_examples or [])]:
            del example["token_type_ids"]
    return train_examples, task, eval_examples, eval_items


def tagged_splits(args: FinetuneArguments, tokenizer: Tokenizer, source: str):
    """--task_type token_classification's data: training examples, the Task (the training file's tags), and the
    validation examples and (words, tags) pairs (None, None without a validation file)."""
    pairs = read_tagged(args.train_file, args.text_column, args.label_column, "--train_file FILE")
    task = tag_task(pairs, args.train_file)
    train_examples, cut = tagged_examples(pairs, tokenizer, args.max_seq_length, task, args.train_file)
    if cut:
        logger.warning("%d training words do not fit --max_seq_length %d and are not trained on; pass a larger "
                       "--max_seq_length to train on them", cut, args.max_seq_length)
    check_known_tokens(tokenizer, train_examples, args.train_file, f"the tokenizer of {args.tokenizer_name or source}",
                       lambda i: " ".join(pairs[i][0]))
    if not args.validation_file:
        return train_examples, task, None, None
    eval_pairs = read_tagged(args.validation_file, args.text_column, args.label_column, "--validation_file FILE")
    eval_examples, cut = tagged_examples(eval_pairs, tokenizer, args.max_seq_length, task, args.validation_file)
    if cut:
        logger.warning("%d validation words do not fit --max_seq_length %d and are scored as %s; pass a larger "
                       "--max_seq_length to tag them", cut, args.max_seq_length,
                       "untagged (O)" if is_entity_scheme(task) else "wrong")
    return train_examples, task, eval_examples, eval_pairs


# -- the whole run --------------------------------------------------------------------------------
@dataclass
class FinetuneResult:
    metrics: dict  # of the final model on the validation set
    history: list[dict]  # every evaluation, in order
    output_dir: str
    task: Task
    seconds: float
    swa_metrics: dict | None = None
    best_step: int | None = None
    swa_is_final: bool = False  # the SWA average won over the trained model and is what was saved


def _inputs(args: FinetuneArguments, source: str, random_init: bool) -> list[tuple[str, str]]:
    """(flag, path) of everything the run reads: the checkpoint, its tokenizer, BART's source-language
    tokenizer (the saved run's tokenizer files would replace it) and the data files. A file is checked as
    itself, not as its directory: `--train_file train.csv --output_dir runs/x` is fine."""
    inputs = [("--config_name" if random_init else "--model_name_or_path", source),
              ("--config_name", args.config_name), ("--tokenizer_name", args.tokenizer_name),
              ("--new_encoder_vocab", args.new_encoder_vocab)]
    if args.multitask:  # its tasks' files replace --train_file and --validation_file
        for task in parse_tasks(args.multitask):
            inputs += [("--multitask", task["train_file"]), ("--multitask", task["validation_file"])]
    else:
        inputs += [("--train_file", args.train_file), ("--validation_file", args.validation_file)]
    return [(flag, path) for flag, path in inputs if path is not None]


def _check_run(args: FinetuneArguments, training: TrainingArguments) -> str:
    """Every check that needs no data, before any work; returns the checkpoint to start from."""
    if args.multi_label_loss not in MULTI_LABEL_LOSSES:
        raise ValueError(f"--multi_label_loss must be one of {MULTI_LABEL_LOSSES}, got {args.multi_label_loss!r}")
    if args.padding not in ("longest", "max_length"):
        raise ValueError(f"--padding must be longest or max_length, got {args.padding!r}")
    if args.fgm and args.pgd_steps:
        raise ValueError("choose one of --fgm and --pgd_steps, not both")
    if not 0.0 <= args.mixout <= 1.0:
        raise ValueError(f"--mixout must be a probability in [0, 1], got {args.mixout}")
    if args.prior_wd and training.weight_decay == 0:  # PriorWD refuses it too, but only once the model is built
        raise ValueError("--prior_wd with --weight_decay 0 pulls nothing toward the start weights; pass "
                         "--weight_decay > 0 (e.g. 0.01), or drop --prior_wd")
    if args.pooling != "default" and args.pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {args.pooling!r}; choose default or one of {', '.join(POOLINGS)}")
    check_qa_flags(args)
    random_init = args.model_name_or_path == RANDOM_INIT
    source = (args.config_name or DEFAULT_PRETRAINED) if random_init else args.model_name_or_path
    # Even with --overwrite_output_dir: replacing a run is asked for, replacing what it reads never is.
    for flag, path in _inputs(args, source, random_init):
        check_output_not_input(training.output_dir, {flag: path})
    check_output_dir(training, resuming=training.resume_from_checkpoint is not None)
    if training.resume_from_checkpoint is not None:
        resolve_checkpoint(training.resume_from_checkpoint, training.output_dir)  # fail now, before any work
    if not (Path(source) / "config.json").is_file():
        raise ValueError(_missing_checkpoint_message(source, random_init))
    config = read_config_dict(source)
    if args.task_type not in GENERATIVE_TASK_TYPES:
        check_generation_flags(args)  # --target_column on a classification run says which task type it wants
        check_token_task_flags(args)
        check_classification_family(config, source, args)  # before the data is read and tokenised
        check_length_fits(args.max_seq_length, config, source)  # (generation's: check_generative_checkpoint)
    if args.text_pair_column is not None and config.get("model_type") == "bert" and config.get("type_vocab_size",
                                                                                              2) < 2:
        # a BERT of one segment embedding: a pair's second segment (token type 1, which BERT's WordPiece
        # tokenizer gives it) has no row; it failed at the first batch. (RoBERTa's pairs are all type 0.)
        if args.task_type == QUESTION_ANSWERING:
            raise ValueError(f"{source} has a single segment (type_vocab_size 1), so it cannot read the context as "
                             "the second text of a (question, context) pair; answer with a BERT of two segments, or "
                             "a RoBERTa")
        raise ValueError(f"--text_pair_column {args.text_pair_column}: {source} has a single segment "
                         "(type_vocab_size 1), so the pair's second text has no segment embedding; join the two "
                         "texts into one column, or drop --text_pair_column")
    check_methods(args, config)
    return source


def check_known_tokens(tokenizer: Tokenizer, examples: list[dict], path, reader: str, text_of, key: str = "input_ids",
                       fix: str | None = None) -> None:
    """The training examples must be text the tokenizer reads: a Chinese CSV through an English BERT's WordPiece
    gave all [UNK], and the run an accuracy of chance and exit 0 without a word. Refused above half unknown tokens,
    warned of above 5%, as pretrain.py's corpus is (tokenizer.check_unknown_tokens). `reader` names the tokenizer;
    `text_of(i)`: example i's text, shown in what is said; `key`: where its ids are."""
    fix = fix or ("fine-tune a checkpoint whose tokenizer covers this language and these characters "
                  "(--model_name_or_path; `pretrain.py --corpus YOUR_TEXTS` pretrains one with a tokenizer trained on "
                  "them)")
    check_unknown_tokens(tokenizer, examples, f"the tokens of {path}", fix, lambda e: e[key], text_of, reader)


def row_texts(path, flag: str, columns: list[str]):
    """`text_of(i)` for check_known_tokens: row i's text (its columns joined by " / "), the file read again only
    when a text is shown (load_split keeps the ids alone)."""
    rows = []

    def text_of(i: int) -> str:
        if not rows:
            rows.extend(read_rows(path, flag))
        return " / ".join(str(rows[i][c]) for c in columns)

    return text_of


# Gradual unfreezing and BART's two stages freeze parameters for part of the run. Their callbacks are built
# after the Trainer, for two reasons that matter under DDP (torchrun):
# - DDP synchronises only the parameters that require a gradient when it wraps the model: frozen before,
#   a group thawed later would train on each process's own gradient, and the copies would drift apart.
# - Each of the world_size processes takes 1/world_size of every epoch's batches, so a stage measured in
#   optimizer steps follows the trainer's own count of this process's batches (Trainer.steps_per_epoch), not
#   the dataset's.
def finetune(args: FinetuneArguments, training: TrainingArguments, callbacks: Sequence = ()) -> FinetuneResult:
    """Fine-tune and save the final model (the best evaluation's under --load_best_model_at_end, train.py's
    default, else the last step's; SWA's average instead if it validates better; with no validation set,
    the last step's, or SWA's average; under --optim radam_lookahead, evaluations and the model saved are
    Lookahead's slow weights: LookaheadSlowWeights).
    `callbacks` are added to the engine's (see minibert.engine.Trainer for the hooks)."""
    training = copy.copy(training)  # the run fills in its best-model metric; the caller's arguments stay as given
    if args.multitask:
        return finetune_multitask(args, training, callbacks)
    if args.task_type in GENERATIVE_TASK_TYPES:
        return finetune_generative(args, training, callbacks)
    source = _check_run(args, training)
    torch.manual_seed(training.seed)
    tokenizer = finetuning_tokenizer(args, source, pads=True)
    tagging, answering = args.task_type == TOKEN_CLASSIFICATION, args.task_type == QUESTION_ANSWERING
    train_examples, task, eval_examples, eval_items = task_splits(args, tokenizer, source)
    model, _ = build_model(args, task)
    # a GPT-2 reader's pads (often its end-of-text token, the no-answer slot itself) take no span probability
    real_only = answering and no_answer_at_end(model.config.model_type)
    if model.config.model_type == "gpt2" and model.config.pad_token_id != tokenizer.pad_token_id:
        # GPT-2's head finds each row's last token by the pad id (its checkpoints name none): the tokenizer's
        logger.info("config.pad_token_id: %s -> %d, the tokenizer's", model.config.pad_token_id, tokenizer.pad_token_id)
        model.config.pad_token_id = tokenizer.pad_token_id
    if args.model_name_or_path != RANDOM_INIT:  # (random weights read no head)
        reload_pooling_head(model, source, read_config_dict(source), args, task)
        warn_dropped_task_heads(model, source, read_config_dict(source), args)
    apply_tricks(model, args)

    collate = (QACollator(tokenizer.pad_token_id, args.max_seq_length, args.padding) if answering else
               PaddingCollator(tokenizer.pad_token_id, args.max_seq_length, args.padding, token_labels=tagging))
    sampler = None
    if args.group_by_length:
        sampler = UniformLengthSampler([len(e["input_ids"]) for e in train_examples],
                                       training.per_device_train_batch_size, drop_last=training.dataloader_drop_last)
    eval_fn = None
    if eval_examples:
        eval_fn, names = task_evaluation(args, task, tokenizer.pad_token_id, eval_examples, eval_items, real_only)
        if training.metric_for_best_model is None:
            training.metric_for_best_model = best_metric_name(task)
            training.greater_is_better = training.metric_for_best_model != "rmse"
        check_metric_name(training.metric_for_best_model, ("loss", *names), f"a {task.problem_type} task")
    callbacks = list(callbacks)
    if args.fgm:
        callbacks.append(FGM(model, args.adv_epsilon, attacked_embeddings(model, args.adv_emb_name)))
    if args.pgd_steps:
        callbacks.append(PGD(model, args.adv_epsilon, args.adv_alpha, args.pgd_steps,
                             attacked_embeddings(model, args.adv_emb_name)))
    swa = SWA(args.swa_start, args.swa_lr) if args.swa_start is not None else None
    if swa is not None:
        callbacks.append(swa)

    def loss_fn(wrapped: nn.Module, batch: dict):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        outputs = wrapped(**inputs)
        return task_loss(outputs.logits, batch["labels"], task.problem_type, args.multi_label_loss), outputs

    optimizer = finetuning_optimizer(model, args, training)  # before unfreezing freezes: its groups hold every layer
    if args.gradual_unfreezing:
        training.ddp_find_unused_parameters = True  # DDP must let the frozen groups go without a gradient
    if args.pooling not in ("default", "pooler"):
        # the encoder's pooler (and, under cls_layer, the blocks above the layer it reads) gets no gradient
        training.ddp_find_unused_parameters = True
    trainer_eval_fn = on_slow_weights(optimizer, eval_fn, callbacks)  # (--optim radam_lookahead: on its slow weights)
    # Token and span heads compute their own loss: the engine then weighs accumulated micro-batches by their labelled
    # pieces (the token head's loss_items), as one big batch would; a span loss is one mean over windows, each
    # micro-batch 1 / the accumulation steps. The task is the recipe: a resume with other labels is refused.
    trainer = Trainer(model, training, train_examples, collate, eval_fn=trainer_eval_fn, callbacks=callbacks,
                      optimizer=optimizer, sampler=sampler,
                      loss_fn=real_span_loss if real_only else None if tagging or answering else loss_fn,
                      recipe={"task": task.problem_type, "labels": task.label_names})
    if args.gradual_unfreezing:
        stage_steps = args.unfreeze_stage_steps if args.unfreeze_stage_steps is not None else trainer.steps_per_epoch()
        trainer.callbacks.append(GradualUnfreezing(model, stage_steps))
    result = trainer.train()
    evaluations = [r for r in result.history if any(k.startswith("eval_") for k in r)]
    metrics = eval_fn(model) if eval_fn else {}
    swa_metrics, swa_is_final = None, False
    if swa is not None and swa.averaged is not None:
        if eval_fn is None:
            # No validation set to choose by: the average is the final model, as in SWA itself.
            swa.copy_to(model)
            swa_is_final = True
            logger.info("no validation set to compare by: the SWA average (%d steps averaged) is the final model",
                        int(swa.averaged.n_averaged))
        else:
            swa_metrics = swa.metrics or eval_fn(swa.averaged_module())
            key = metric_key(training.metric_for_best_model, metrics)  # Hugging Face's eval_accuracy is accuracy here
            if _better(swa_metrics[key], metrics[key], training.greater_is_better):
                swa.copy_to(model)
                metrics, swa_is_final = swa_metrics, True
                logger.info("the SWA average is the final model (%s %.4f)", key, metrics[key])
    out = Path(training.output_dir)
    if trainer.context.is_main:
        if args.adapter_size is not None or args.ladder_side_tuning is not None:
            settings = {"args": {k: getattr(args, k) for k in BESIDE_BASE_FIELDS}, "task": asdict(task)}
            if model.config.model_type == "gpt2":  # (the id its head finds each row's last token by)
                settings["pad_token_id"] = model.config.pad_token_id
            size = save_beside_base(model, out, source, settings)
            logger.info("saved the %d trained parameters (%.1f MB) beside %s", sum(
                p.numel() for p in model.parameters() if p.requires_grad), size / 1e6, source)
        else:
            save_model(model, out)
        tokenizer.save_pretrained(out)
        record = {"metrics": metrics, "swa_metrics": swa_metrics, "task": asdict(task),
                  "best_checkpoint": _run_relative(result.best_checkpoint, out), "evaluations": evaluations,
                  "arguments": run_arguments(args, training)}
        (out / "eval_results.json").write_text(json.dumps(finite_or_null(record), indent=2, allow_nan=False) + "\n")
        if (tagging or answering) and eval_fn is not None:
            if swa_metrics is not None:  # the last evaluation was of the trained model or the average, whichever
                eval_fn(model)  # was not kept: the average, once copied in, was evaluated before the copy
            if tagging:
                write_tag_predictions(out / "tag_predictions.jsonl", eval_items, eval_fn.predictions)
            else:
                write_answers(out / "qa_predictions.jsonl", eval_items, eval_fn.predictions)
    best_step = None
    if result.best_checkpoint:
        best_step = int(Path(result.best_checkpoint).name.rsplit("-", 1)[-1])
    return FinetuneResult(metrics, evaluations, str(out), task, result.seconds, swa_metrics, best_step, swa_is_final)


def finetune_generative(args: FinetuneArguments, training: TrainingArguments,
                        callbacks: Sequence = ()) -> FinetuneResult:
    """--task_type seq2seq (BART) or causal_lm (GPT-2): the engine trains on the teacher-forced loss;
    each evaluation generates from every validation source (or prompt) and keeps the best chrF.
    Saves the model, its tokenizer, eval_results.json and generated_predictions.jsonl."""
    training = copy.copy(training)
    source = _check_run(args, training)
    check_generative_checkpoint(args.task_type, read_config_dict(source), args.max_seq_length, source,
                                args.generation_max_length)
    torch.manual_seed(training.seed)
    tokenizer = finetuning_tokenizer(args, source)
    source_tokenizer = load_tokenizer(args.new_encoder_vocab) if args.new_encoder_vocab else None

    def read_examples(path, flag: str) -> list[dict]:
        sources, targets = text_pairs(read_rows(path, flag), args.text_column, args.target_column, args.task_type,
                                      path)
        if args.task_type == "seq2seq":
            return seq2seq_examples(sources, targets, tokenizer, args.max_seq_length, source_tokenizer)
        return causal_lm_examples(sources, targets, tokenizer, args.max_seq_length, path)

    train_examples = read_examples(args.train_file, "--train_file FILE")
    reader = f"the tokenizer of {args.tokenizer_name or source}"
    if args.task_type == "causal_lm":  # a prompt and its completion, one sequence
        check_known_tokens(tokenizer, train_examples, args.train_file, reader,
                           lambda i: train_examples[i]["source"] + train_examples[i]["target"])
    else:  # the sources (read by the new encoder's tokenizer, with --new_encoder_vocab), then the targets
        source_side = f"{args.train_file} (--text_column {args.text_column}, the sources)"
        if source_tokenizer is None:
            check_known_tokens(tokenizer, train_examples, source_side, reader, lambda i: train_examples[i]["source"])
        else:
            check_known_tokens(source_tokenizer, train_examples, source_side,
                               f"--new_encoder_vocab {args.new_encoder_vocab}", lambda i: train_examples[i]["source"],
                               fix="pass a --new_encoder_vocab of the sources' language")
        check_known_tokens(tokenizer, train_examples, f"{args.train_file} (--target_column {args.target_column}, the "
                           "targets)", reader, lambda i: train_examples[i]["target"], key="labels")
    eval_examples = read_examples(args.validation_file, "--validation_file FILE") if args.validation_file else None
    model = build_generative_model(args.task_type, source, args.model_name_or_path == RANDOM_INIT)
    if source_tokenizer is not None:
        model = BartWithNewEncoder(model, source_tokenizer.vocab_size, input_pad_token_id(source_tokenizer),
                                   args.new_encoder_layers).train()
    pad_id = input_pad_token_id(source_tokenizer or tokenizer)
    sampler = None
    if args.group_by_length:
        sampler = UniformLengthSampler([len(e["input_ids"]) for e in train_examples],
                                       training.per_device_train_batch_size, drop_last=training.dataloader_drop_last)
    evaluator = None
    if eval_examples:
        evaluator = GenerationEvaluator(eval_examples, args.task_type, tokenizer, args.per_device_eval_batch_size,
                                        args.num_beams, args.generation_max_length or args.max_seq_length, pad_id)
        if training.metric_for_best_model is None:
            training.metric_for_best_model, training.greater_is_better = "chrf", True
        check_metric_name(training.metric_for_best_model, GENERATION_METRICS, f"a {args.task_type} task")
    optimizer = finetuning_optimizer(model, args, training)  # before stage one freezes: its groups hold every parameter
    if source_tokenizer is not None:
        training.ddp_find_unused_parameters = True  # DDP must let stage one's frozen parameters go without a gradient
    if evaluator is not None and resolve_device(training.device).type == "cpu":
        # The evaluations' generate stores the Linear weights input-major on the CPU. Taken before the first
        # step, every step multiplies in that one memory order, and a run resumed from a checkpoint repeats
        # the run it resumes bit for bit. And before the Trainer wraps the model in DDP, which lays out its
        # gradient buckets by the parameters' strides: a later re-layout scrambled the first step's gradients.
        store_linear_weights_input_major(model)
    callbacks = list(callbacks)
    trainer_eval_fn = on_slow_weights(optimizer, evaluator, callbacks)  # (--optim radam_lookahead: on its slow weights)
    trainer = Trainer(model, training, train_examples, GenerativeCollator(pad_id), eval_fn=trainer_eval_fn,
                      callbacks=callbacks, optimizer=optimizer, sampler=sampler)
    if source_tokenizer is not None:
        total, stage_two = trainer.total_steps, args.new_encoder_stage_two_steps  # this process's optimizer steps
        trainer.callbacks.append(TwoStageTraining(model, total - (stage_two if stage_two is not None else total // 5)))
    result = trainer.train()
    evaluations = [r for r in result.history if any(k.startswith("eval_") for k in r)]
    metrics = evaluator(model) if evaluator else {}
    out = Path(training.output_dir)
    task = Task(args.task_type)
    if trainer.context.is_main:
        if isinstance(model, BartWithNewEncoder):
            model.save(out, source_tokenizer)
        else:
            model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        settings = {k: getattr(args, k) for k in ("text_column", "target_column", "num_beams", "max_seq_length",
                                                  "validation_file")}
        if args.validation_file:  # absolute: evaluate_generation may run from another directory than this run
            settings["validation_file"] = str(Path(args.validation_file).resolve())
        # the limit the evaluations decoded with, so a re-evaluation (evaluate_generation) decodes the same
        settings["generation_max_length"] = args.generation_max_length or args.max_seq_length
        record = {"metrics": metrics, "task": asdict(task), "generation": settings,
                  "best_checkpoint": _run_relative(result.best_checkpoint, out), "evaluations": evaluations,
                  "arguments": run_arguments(args, training)}
        (out / "eval_results.json").write_text(json.dumps(finite_or_null(record), indent=2, ensure_ascii=False,
                                                          allow_nan=False) + "\n",
                                               encoding="utf-8")  # whatever the locale: file names may be Chinese
        if evaluator:
            write_predictions(out / "generated_predictions.jsonl", eval_examples, evaluator.predictions)
    best_step = int(Path(result.best_checkpoint).name.rsplit("-", 1)[-1]) if result.best_checkpoint else None
    return FinetuneResult(metrics, evaluations, str(out), task, result.seconds, None, best_step)


def finetune_multitask(args: FinetuneArguments, training: TrainingArguments,
                       callbacks: Sequence = ()) -> FinetuneResult:
    """Several tasks in one run (--multitask): a shared encoder, a head per task, batches drawn by
    the --mixing rates. Each evaluation gives every task's metrics ("genre_accuracy") and their
    mean "score" (accuracy, multi-label f1_micro or regression pearson), by which the best is kept."""
    training = copy.copy(training)
    source = _check_run(args, training)
    specs = parse_tasks(args.multitask)
    torch.manual_seed(training.seed)
    tokenizer = finetuning_tokenizer(args, source, pads=True)
    train_examples, sizes, tasks, eval_sets = [], [], {}, {}
    reader = f"the tokenizer of {args.tokenizer_name or source}"
    for m, spec in enumerate(specs):
        columns = {"text_column": args.text_column, "label_column": spec["label_column"] or args.label_column,
                   "text_pair_column": args.text_pair_column,
                   # (--train_file and --validation_file are refused with --multitask)
                   "flag": f"files that exist in --multitask {spec['name']}=TRAIN[,VALIDATION[,LABEL_COLUMN]]",
                   # a task's label column is the third field of its spec (--label_column: when a spec has none)
                   "label_flag": f"the third field of --multitask {spec['name']}=TRAIN,VALIDATION,LABEL_COLUMN" + (
                       "" if spec["label_column"] else " (or --label_column, for every task without one)")}
        try:
            examples, task = load_split(spec["train_file"], tokenizer, args.max_seq_length, **columns,
                                        task_type=args.task_type, num_labels=args.num_labels)
            check_known_tokens(tokenizer, examples, spec["train_file"], reader,
                               row_texts(spec["train_file"], columns["flag"],
                                         [c for c in (args.text_column, args.text_pair_column) if c]))
            held_out = (load_split(spec["validation_file"], tokenizer, args.max_seq_length, **columns, task=task)[0]
                        if spec["validation_file"] else None)
        except ValueError as err:  # its files and label column come from the spec, not --train_file & co.
            raise ValueError(f"--multitask {spec['name']}=...: {err}") from None
        train_examples += [{**e, "task": m} for e in examples]
        sizes.append(len(examples))
        tasks[spec["name"]] = task
        if held_out is not None:
            eval_sets[spec["name"]] = [{**e, "task": m} for e in held_out]
    check_multi_label_loss(args, list(tasks.values()))
    if not eval_sets:
        logger.warning("no task has a validation file: the run is not evaluated, and the final model is the last "
                       "step's; give one as --multitask NAME=TRAIN,VALIDATION to evaluate and keep the best checkpoint")
    rates = mixing_rates(sizes, args.mixing, args.mixing_cap, args.mixing_temperature)
    logger.info("multi-task mixing (%s): %s", args.mixing,
                ", ".join(f"{n} {e} examples -> {r:.3f}" for n, e, r in zip(tasks, sizes, rates, strict=True)))
    model = build_multitask_model(args, source, tasks)
    apply_tricks(model, args)
    names = list(tasks)

    def with_task(collate):
        def collate_with_task(examples: list[dict]) -> dict:
            return {**collate(examples), "task": torch.tensor([e["task"] for e in examples])}
        return collate_with_task

    collate = with_task(PaddingCollator(tokenizer.pad_token_id, args.max_seq_length, args.padding))
    sampler = MixtureSampler(sizes, rates, training.per_device_train_batch_size)
    eval_fns = {n: make_eval_fn(eval_sets[n], tasks[n], with_task(PaddingCollator(tokenizer.pad_token_id,
                                args.max_seq_length)), args.per_device_eval_batch_size, args.multi_label_loss)
                for n in names if n in eval_sets}

    def evaluate(model: nn.Module) -> dict:
        metrics, scores = {}, []
        for name, fn in eval_fns.items():
            task_metrics = fn(model)
            metrics.update({f"{name}_{k}": v for k, v in task_metrics.items()})
            key = "pearson" if best_metric_name(tasks[name]) == "rmse" else best_metric_name(tasks[name])
            if math.isnan(task_metrics[key]):
                logger.warning("task %s: %s is undefined (constant predictions or gold values, or fewer than 2 "
                               "validation examples), so the combined score is too", name, key)
            scores.append(task_metrics[key])
        return {"score": sum(scores) / len(scores), **metrics}

    if eval_fns and training.metric_for_best_model is None:
        training.metric_for_best_model, training.greater_is_better = "score", True
    if eval_fns:
        check_metric_name(training.metric_for_best_model,
                          ["score", *(f"{n}_{k}" for n in eval_fns for k in ("loss", *METRICS[tasks[n].problem_type]))],
                          "a multi-task run")

    def loss_fn(wrapped: nn.Module, batch: dict):
        outputs = wrapped(**{k: v for k, v in batch.items() if k != "labels"})
        task = tasks[names[int(batch["task"][0])]]
        return task_loss(outputs.logits, batch["labels"], task.problem_type, args.multi_label_loss), outputs

    training.ddp_find_unused_parameters = True  # each batch trains one task's head: DDP must let the others go
    optimizer, callbacks = finetuning_optimizer(model, args, training), list(callbacks)
    trainer_eval_fn = on_slow_weights(optimizer, evaluate if eval_fns else None, callbacks)  # (as in finetune)
    trainer = Trainer(model, training, train_examples, collate, eval_fn=trainer_eval_fn, callbacks=callbacks,
                      optimizer=optimizer, sampler=sampler, loss_fn=loss_fn)
    result = trainer.train()
    evaluations = [r for r in result.history if any(k.startswith("eval_") for k in r)]
    metrics = evaluate(model) if eval_fns else {}
    out = Path(training.output_dir)
    if trainer.context.is_main:
        model.save(out)
        tokenizer.save_pretrained(out)
        record = {"metrics": metrics, "tasks": {n: asdict(t) for n, t in tasks.items()},
                  "mixing": {"strategy": args.mixing, "rates": dict(zip(names, rates, strict=True))},
                  "best_checkpoint": _run_relative(result.best_checkpoint, out), "evaluations": evaluations,
                  "arguments": run_arguments(args, training)}
        (out / "eval_results.json").write_text(json.dumps(finite_or_null(record), indent=2, allow_nan=False) + "\n")
    best_step = int(Path(result.best_checkpoint).name.rsplit("-", 1)[-1]) if result.best_checkpoint else None
    mixed = Task(" + ".join(f"{n}: {t.problem_type}" for n, t in tasks.items()))  # what train.py reports
    return FinetuneResult(metrics, evaluations, str(out), mixed, result.seconds, None, best_step)


def build_multitask_model(args: FinetuneArguments, source: str, tasks: dict[str, Task]) -> MultiTaskClassifier:
    config = read_config_dict(source)
    family = config.get("model_type")
    if family not in BASES:
        raise ValueError(f"{source}: model_type {family!r} cannot be fine-tuned here; use a "
                         f"{family_names(BASES)} checkpoint")
    base_class = BASES[family]
    if args.model_name_or_path == RANDOM_INIT:
        encoder = base_class(base_class.config_class.from_dict(config))
    else:
        encoder = base_class.from_pretrained(source) if args.pooling in ("default", "pooler") else \
            encoder_without_unread_pooler_report(base_class, source, {})
        if HEAD_KEY in config:
            logger.warning("%s was saved by a --pooling %s run: its trained pooling head (head.safetensors) is "
                           "dropped, and each task's head starts afresh", source, config[HEAD_KEY]["pooling"])
    forget_saved_heads(encoder.config)
    pooling = args.pooling if args.pooling != "default" else ("pooler" if encoder.pooler is not None else "cls")
    heads = {n: {"num_labels": t.num_labels, "problem_type": t.problem_type, "label_names": t.label_names}
             for n, t in tasks.items()}  # saved in config.json: what each head's outputs mean
    model = MultiTaskClassifier(encoder, heads, pooling, args.classifier_dropout, args.pooling_layer)
    if args.model_name_or_path != RANDOM_INIT and TASKS_KEY in config:  # a --multitask run's checkpoint
        reload_task_heads(model, source, config[TASKS_KEY], tasks)
    return model.train()


def _better(a: float, b: float, greater: bool | None) -> bool:
    if math.isnan(a):
        return False
    return a > b if greater is not False else a < b


def save_model(model: nn.Module, path: Path) -> None:
    if isinstance(model, PooledClassifier):
        model.save(path)
    else:
        model.save_pretrained(path)

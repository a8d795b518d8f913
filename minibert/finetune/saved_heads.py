"""What a run started from a fine-tuned checkpoint keeps of that checkpoint's own head.

A family head's checkpoint (BertForSequenceClassification) reloads its classifier by from_pretrained; a
minibert --pooling run keeps its head in head.safetensors and a --multitask run its task heads in
task_heads.safetensors, beside an encoder's config.json, which from_pretrained does not read. Here:

    forget_saved_heads         the config.json keys naming that head are dropped from a model built on it
    reload_pooling_head        the same --pooling trains on from the saved pooling and classifier
    reload_task_heads          a --multitask run: each task of a saved task's name, from that task's head
    warn_dropped_task_heads    a single task on a --multitask checkpoint: what is dropped, said
    checkpoint_label_rows,     the same labels in another order: each label keeps the row trained for it
    keep_checkpoint_label_rows (an MNLI head's contradiction / neutral / entailment)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file
from torch import nn

from minibert.finetune.classifier import HEAD_FILE, HEAD_KEY, PooledClassifier
from minibert.finetune.ladder import LadderSideClassifier
from minibert.finetune.multitask import HEADS_FILE, TASK_ORDER_KEY, TASKS_KEY, MultiTaskClassifier
from minibert.finetune.task_data import QUESTION_ANSWERING, TOKEN_CLASSIFICATION, Task

if TYPE_CHECKING:  # (the arguments' class lives in the layer above: read, never imported at run time)
    from minibert.finetuning import FinetuneArguments

logger = logging.getLogger(__name__)


def forget_saved_heads(config) -> None:
    """Drop the config.json keys that mark the checkpoint's own minibert head (--pooling, --multitask) from the
    config of a model built on it: they describe that head, not the one built now. Kept, a family head trained
    on from a --pooling run's checkpoint saved a config.json that still named the pooling head, and
    load_finetuned rebuilt the run as that head and failed on its missing head.safetensors. (A --pooling or
    --multitask model writes its own key again when it saves.)"""
    for key in (HEAD_KEY, TASKS_KEY, TASK_ORDER_KEY):
        config.extra.pop(key, None)


def _label_names(config: dict) -> list:
    saved = config.get("id2label") or {}
    return [saved.get(str(i), saved.get(i)) for i in range(len(saved))]


def reload_pooling_head(model: nn.Module, source, config: dict, args: FinetuneArguments, task: Task) -> None:
    """A checkpoint that a --pooling run saved (its `config` marked with HEAD_KEY) holds the trained pooling and
    classifier beside its encoder, in head.safetensors, which build_model does not read. Trained on with the same
    --pooling, the run starts from them, the classifier too when the task's labels are the checkpoint's (as a
    family head's checkpoint reloads its classifier); any other head starts afresh, and the warning names what
    is dropped and how to keep it. Before apply_tricks: Mixout pulls toward the weights it finds."""
    saved = config.get(HEAD_KEY)
    if saved is None:
        return
    if not (Path(source) / HEAD_FILE).is_file():
        # a family head trained on from a --pooling run, saved before forget_saved_heads: the marker, no head
        logger.warning("%s: config.json names a --pooling %s head but the directory holds no %s (a run saved on top "
                       "of a --pooling run's checkpoint by an older minibert); this run's head starts afresh",
                       source, saved["pooling"], HEAD_FILE)
        return
    pooling = saved["pooling"]
    same = f"--pooling {pooling}" + (f" --pooling_layer {saved['layer']}" if pooling == "cls_layer" else "")
    if not isinstance(model, PooledClassifier) or args.pooling != pooling or (
            pooling == "cls_layer" and args.pooling_layer != saved["layer"]):
        this = _this_head(model, args)
        if isinstance(model, LadderSideClassifier):
            same = f"{same} without --ladder_side_tuning"
        logger.warning("%s was saved by a --pooling %s run: its trained pooling head (head.safetensors) is dropped, "
                       "and this run's head (%s) starts afresh%s", source, pooling, this, _keep_advice(
                           args, f"; pass {same} to fine-tune on from it"))
        return
    head = load_file(str(Path(source) / HEAD_FILE))
    model.pooling.load_state_dict({k[len("pooling."):]: v for k, v in head.items() if k.startswith("pooling.")})
    names = _label_names(config)
    classifier = {k[len("classifier."):]: v for k, v in head.items() if k.startswith("classifier.")}
    rows = checkpoint_label_rows(names, saved["problem_type"], saved["num_labels"], task)
    if rows is not None:
        # the checkpoint's labels, in its order or another: each keeps the row trained for it (as a family head's
        # checkpoint does, keep_checkpoint_label_rows)
        model.classifier.load_state_dict({k: v[rows] for k, v in classifier.items()})  # weight (C, P), bias (C,)
        logger.info("fine-tuning on from the trained %s head of %s (head.safetensors)%s", same, source,
                    "" if rows == list(range(len(rows))) else
                    f", its classifier rows put in the task's label order {task.label_names} (they were {names})")
        return
    logger.warning("%s: its %s classifier was trained for the %s labels %s and this task's are %s: that classifier "
                   "starts afresh (the trained pooling is kept)", source, same, saved["problem_type"], names,
                   task.label_names)


def _keep_advice(args: FinetuneArguments, advice: str) -> str:
    """How to keep a saved sentence head; a token or span task has no way to (its head reads every token)."""
    task_type = getattr(args, "task_type", None)  # (a caller's own arguments may hold the head flags alone)
    if task_type in (TOKEN_CLASSIFICATION, QUESTION_ANSWERING):
        return f" (a --task_type {task_type} run reads every token, not a sentence head's pooled vector)"
    return advice


def _this_head(model: nn.Module, args: FinetuneArguments) -> str:
    """The head a single-task run trains, as a warning about the checkpoint's own head names it."""
    if isinstance(model, PooledClassifier):
        return f"--pooling {args.pooling}" + (
            f" --pooling_layer {args.pooling_layer}" if args.pooling == "cls_layer" else "")
    if isinstance(model, LadderSideClassifier):
        return "the ladder's side network and classifier"
    return f"{type(model).__name__}'s own classifier"


def warn_dropped_task_heads(model: nn.Module, source, config: dict, args: FinetuneArguments) -> None:
    """A single-task run on a --multitask run's checkpoint reads its encoder only: the trained task heads
    (task_heads.safetensors) are dropped, which the run said nothing of under a --pooling head."""
    saved = config.get(TASKS_KEY)
    if saved is None or not _stale_marker_checked(source, saved):
        return
    names = list(saved["tasks"])
    same = f"--pooling {saved['pooling']}" + (
        f" --pooling_layer {saved.get('layer')}" if saved["pooling"] == "cls_layer" else "")
    logger.warning("%s was saved by a --multitask run: its trained task heads (%s, in %s) are dropped, and this "
                   "run's head (%s) starts afresh%s", source, ", ".join(names), HEADS_FILE, _this_head(model, args),
                   _keep_advice(args, "; to fine-tune on from one, run --multitask with a task of its name "
                                f"(NAME=TRAIN[,VALIDATION]), which may be the only one, and {same}"))


def _stale_marker_checked(source, saved: dict) -> bool:
    """Whether the --multitask heads that config.json names are there. A single-task run on a --multitask run's
    checkpoint, saved by a minibert before forget_saved_heads, kept the marker and no heads file: said, and False."""
    if (Path(source) / HEADS_FILE).is_file():
        return True
    logger.warning("%s: config.json names --multitask heads (%s) but the directory holds no %s (a run saved on top of "
                   "a --multitask run's checkpoint by an older minibert); the heads start afresh", source,
                   ", ".join(saved["tasks"]), HEADS_FILE)
    return False


def reload_task_heads(model: MultiTaskClassifier, source, saved: dict, tasks: dict[str, Task]) -> None:
    """A checkpoint that a --multitask run saved (`saved`: the settings its config.json keeps under TASKS_KEY)
    holds each task's trained pooling and classifier in task_heads.safetensors, which the encoder's
    from_pretrained does not read. Trained on with the same pooling, a task of a saved task's name starts from
    its pooling, and from its classifier too when its labels are the saved task's (in another order, each
    label keeps its row), as a --pooling run's head is reloaded (reload_pooling_head); a warning names every
    head that starts afresh and every saved head that is dropped. Before apply_tricks: Mixout pulls toward the
    weights it finds."""
    if not _stale_marker_checked(source, saved):
        return
    pooling, layer = saved["pooling"], saved.get("layer")
    same = f"--pooling {pooling}" + (f" --pooling_layer {layer}" if pooling == "cls_layer" else "")
    if model.settings["pooling"] != pooling or (pooling == "cls_layer" and model.settings["layer"] != layer):
        this = f"--pooling {model.settings['pooling']}" + (
            f" --pooling_layer {model.settings['layer']}" if model.settings["pooling"] == "cls_layer" else "")
        logger.warning("%s was saved by a --multitask run pooling with %s: its trained task heads (%s, in %s) are "
                       "dropped, and each task's head (%s) starts afresh; pass %s to fine-tune on from them", source,
                       same, ", ".join(saved["tasks"]), HEADS_FILE, this, same)
        return
    heads = load_file(str(Path(source) / HEADS_FILE))
    kept, afresh = [], []
    for name, task in tasks.items():
        if name not in saved["tasks"]:
            afresh.append(f"{name} (no trained head of that name)")
            continue
        prefix = f"poolings.{name}."
        model.poolings[name].load_state_dict({k[len(prefix):]: v for k, v in heads.items() if k.startswith(prefix)})
        old = saved["tasks"][name]
        rows = checkpoint_label_rows(old.get("label_names") or [], old["problem_type"], old["num_labels"], task)
        if rows is None:
            afresh.append(f"{name}'s classifier (trained for the {old['problem_type']} labels "
                          f"{old.get('label_names')}, and this task's are the {task.problem_type} labels "
                          f"{task.label_names}; its trained pooling is kept)")
            continue
        prefix = f"classifiers.{name}."
        model.classifiers[name].load_state_dict(
            {k[len(prefix):]: v[rows] for k, v in heads.items() if k.startswith(prefix)})  # rows in the task's order
        kept.append(name if rows == list(range(len(rows))) else
                    f"{name} (its classifier rows put in the task's label order {task.label_names})")
    if kept:
        logger.info("fine-tuning on from the trained %s heads of %s (%s): %s", same, source, HEADS_FILE,
                    ", ".join(kept))
    if afresh:
        logger.warning("%s: these heads start afresh: %s", source, "; ".join(afresh))
    dropped = [name for name in saved["tasks"] if name not in tasks]
    if dropped:
        logger.warning("%s: the trained heads of its tasks %s are dropped, as this run has no task of that name; "
                       "name a task after one (--multitask NAME=TRAIN[,VALIDATION]) to fine-tune on from its head",
                       source, ", ".join(dropped))


def checkpoint_label_rows(names: list, problem_type: str, num_labels: int, task: Task) -> list[int] | None:
    """The row of a saved classifier for each of the task's labels, in the task's order, when it was trained for
    the task's labels (`names`, in its own order): the same problem type and number of outputs, and the same
    label names in any order (a regression has none); None when it was trained for other labels."""
    if problem_type != task.problem_type or num_labels != task.num_labels:
        return None
    if not task.label_names:
        return list(range(num_labels))
    names = [str(name) for name in names]
    if sorted(names) != sorted(task.label_names):
        return None
    return [names.index(label) for label in task.label_names]


# The family heads' modules, whose last Linear has a row per class: BERT's and RoBERTa's, GPT-2's, BART's
SEQUENCE_HEADS = ("classifier", "score", "classification_head")


def keep_checkpoint_label_rows(model: nn.Module, config: dict, task: Task) -> None:
    """A classifier checkpoint whose labels are the task's, in another order (an MNLI model's
    contradiction / neutral / entailment): its output rows are put in the task's order, so each class
    keeps the row trained for it (loaded as they were, the rows meant other classes)."""
    names = _label_names(config)
    if model.loading_info.get("mismatched") or any(k.startswith(SEQUENCE_HEADS)
                                                   for k in model.loading_info["newly_initialized"]):
        return  # the head was not loaded: nothing to reorder
    if sorted(map(str, names)) != sorted(task.label_names):
        if names and names != [f"LABEL_{i}" for i in range(len(names))]:  # named classes, not the defaults
            # as Hugging Face's run_glue example warns: the head of another task, kept row for row
            logger.warning("the checkpoint's classifier was trained for the labels %s and this task's are %s: its "
                           "rows are kept in order (%r's row now starts %r's). If they are the same classes under "
                           "other names, rename them in the data to the checkpoint's so that each keeps its row",
                           names, task.label_names, names[0], task.label_names[0])
        return
    if names == task.label_names:
        return
    output = [m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name.startswith(SEQUENCE_HEADS)
              and m.out_features == task.num_labels][-1]
    order = [names.index(label) for label in task.label_names]  # row of the checkpoint for each task class
    with torch.no_grad():
        output.weight.copy_(output.weight[order])
        if output.bias is not None:  # (GPT-2's score has none)
            output.bias.copy_(output.bias[order])
    logger.info("the checkpoint's classifier rows put in the task's label order %s (they were %s)",
                task.label_names, names)

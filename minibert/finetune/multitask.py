"""Multi-task fine-tuning: several labelled datasets in one run, a shared encoder, a head per task.

Mixing rates as T5 gives them (Raffel et al. 2020, https://arxiv.org/abs/1910.10683,
section 3.5.2), for tasks m with e_m training examples:

    proportional (cap K):  r_m = min(e_m, K) / sum_n min(e_n, K)
    temperature T:         r_m = p_m^(1/T) / sum_n p_n^(1/T),  p = the proportional rates (T = 1: them;
                           larger T: closer to equal)
    equal:                 r_m = 1 / M

Why: one encoder learns from every task's labels, and a small task borrows what a large one
teaches. The mixing decides who dominates: pure proportional lets the largest task drown the
others (the cap K limits that), equal over-trains a tiny task until it is memorised; the
temperature moves between the two.

Every batch holds one task's examples (each head sees a full batch); the task of each batch is
drawn with the rates above, so over a run the share of batches of task m tends to r_m.
"""

import json
import logging
import math
import numbers
import os
import re
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn

from minibert.checkpoint import MULTITASK_KEY
from minibert.finetune.classifier import head_dropout
from minibert.finetune.pooling import build_pooling
from minibert.outputs import SequenceClassifierOutput

logger = logging.getLogger(__name__)

MIXING_STRATEGIES = ("proportional", "temperature", "equal")
TASKS_KEY = MULTITASK_KEY  # the config.json key that marks a multi-task model (checkpoint.py)
HEADS_FILE = "task_heads.safetensors"
# config.json's key for the task names in the order the `task` index of forward() counts them (a list: the
# file's keys are sorted). Beside TASKS_KEY, not in it: a minibert that predates it still loads the model.
TASK_ORDER_KEY = "minibert_multitask_order"


def parse_task_spec(spec: str) -> dict:
    """NAME=TRAIN[,VALIDATION[,LABEL_COLUMN]] -> {"name", "train_file", "validation_file", "label_column"}."""
    name, sep, files = spec.partition("=")
    parts = files.split(",") if sep else []
    if not sep or not name or not re.fullmatch(r"\w+", name) or not 1 <= len(parts) <= 3 or not parts[0]:
        raise ValueError(f"--multitask {spec!r}: write each task as NAME=TRAIN[,VALIDATION[,LABEL_COLUMN]], "
                         "NAME in letters, digits and _ (genre=train.jsonl,dev.jsonl,label)")
    parts += [None] * (3 - len(parts))
    return {"name": name, "train_file": parts[0], "validation_file": parts[1] or None, "label_column": parts[2] or None}


def parse_tasks(specs: list[str]) -> list[dict]:
    tasks = [parse_task_spec(s) for s in specs]
    names = [t["name"] for t in tasks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"--multitask names the task(s) {repeated} more than once; each task needs its own "
                         "name (it names its head and its metrics): rename one, e.g. genre_2=...")
    return tasks


def check_mixing(strategy: str, cap: int | None, temperature: float) -> None:
    if strategy not in MIXING_STRATEGIES:
        raise ValueError(f"--mixing {strategy!r}: choose one of {MIXING_STRATEGIES}")
    if cap is not None and cap < 1:
        raise ValueError(f"--mixing_cap {cap}: the cap K counts examples and must be >= 1; pass a K such as "
                         "the size of the smallest task you do not want to drown, or leave it unset (no cap)")
    if not temperature > 0:
        raise ValueError(f"--mixing_temperature {temperature}: T must be > 0 (1 = proportional, larger = "
                         "closer to equal); pass e.g. --mixing_temperature 2")


def mixing_rates(sizes: list[int], strategy: str = "proportional", cap: int | None = None,
                 temperature: float = 1.0) -> list[float]:
    """The sampling rate of each task, from its number of training examples."""
    check_mixing(strategy, cap, temperature)
    if strategy == "equal":
        return [1.0 / len(sizes)] * len(sizes)
    capped = [min(e, cap) if cap is not None else e for e in sizes]
    rates = [c / sum(capped) for c in capped]
    if strategy == "temperature":
        scaled = [r ** (1.0 / temperature) for r in rates]
        rates = [s / sum(scaled) for s in scaled]
    return rates


class MixtureSampler:
    """Batches (lists of indices into the concatenated examples) of one task each, the task drawn
    with `rates`. An epoch is as many batches as all tasks' examples fill; each task's examples are
    reshuffled whenever its turn has used them all (so a batch during which that happens can hold an
    example twice: one taken from the end of the old shuffle, again from the new one). Randomness: `generator`,
    else torch's global generator (which the engine seeds per epoch).

    Under DDP (world_size processes; default: the process group's size when iterated, 1 without one) a task is
    drawn per global batch and gives world_size batches in a row, which the engine deals out one per process
    (rank r reads batches r, r + world_size, ...): every process trains the same task at a step, and the step
    equals one process's batch of world_size * batch_size examples of that task when the task has that many (a
    smaller task's batches each take min(batch_size, its size) examples, so its step reads some twice). (Each
    process drawing its own task gave each head's gradient DDP's average with the zeros of the processes that did
    not use it.)"""

    def __init__(self, task_sizes: list[int], rates: list[float], batch_size: int,
                 generator: torch.Generator | None = None, world_size: int | None = None):
        self.offsets = [sum(task_sizes[:m]) for m in range(len(task_sizes))]
        self.task_sizes, self.rates, self.batch_size, self.generator = task_sizes, rates, batch_size, generator
        self.world_size = world_size

    def _world_size(self) -> int:
        if self.world_size is not None:
            return self.world_size
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    def __len__(self) -> int:
        world = self._world_size()
        return math.ceil(sum(self.task_sizes) / (self.batch_size * world)) * world

    def __iter__(self):
        world = self._world_size()
        rates = torch.tensor(self.rates, dtype=torch.double)
        tasks = torch.multinomial(rates, len(self) // world, replacement=True, generator=self.generator).tolist()
        queues: list[list[int]] = [[] for _ in self.task_sizes]
        for m in (m for m in tasks for _ in range(world)):  # one task per global batch: world_size batches of it
            batch = []
            while len(batch) < min(self.batch_size, self.task_sizes[m]):
                if not queues[m]:
                    queues[m] = (torch.randperm(self.task_sizes[m], generator=self.generator)
                                 + self.offsets[m]).tolist()
                batch.append(queues[m].pop())
            yield batch


class MultiTaskClassifier(nn.Module):
    """encoder -> (per task) pooling -> dropout -> linear. `task` (B,), or one int, picks the head (its index
    in the tasks' order); one task per batch."""

    def __init__(self, encoder: nn.Module, tasks: dict[str, dict], pooling: str, dropout: float | None = None,
                 layer: int = -2):
        super().__init__()
        config = encoder.config
        self.encoder, self.config = encoder, config
        self.settings = {"tasks": tasks, "pooling": pooling, "dropout": dropout, "layer": layer}
        self.names = list(tasks)
        self.poolings = nn.ModuleDict(
            {n: build_pooling(pooling, config.hidden_size, config.num_hidden_layers, layer=layer) for n in tasks})
        self.dropout = nn.Dropout(head_dropout(config, dropout))
        self.classifiers = nn.ModuleDict(
            {n: nn.Linear(self.poolings[n].out_dim, tasks[n]["num_labels"]) for n in tasks})
        for classifier in self.classifiers.values():
            nn.init.normal_(classifier.weight, std=getattr(config, "initializer_range", 0.02))
            nn.init.zeros_(classifier.bias)

    @property
    def base_model(self) -> nn.Module:
        return self.encoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embeddings.word_embeddings

    def gradient_checkpointing_enable(self) -> None:
        self.encoder.gradient_checkpointing_enable()

    def task_name(self, task) -> str:
        """The task that `task` picks: its index in the tasks' order, one int or a (B,) tensor of it."""
        if torch.is_tensor(task):
            if task.numel() == 0:
                raise ValueError("task is an empty tensor; pass the task's index, one per row or one int")
            if bool((task != task.flatten()[0]).any()):
                raise ValueError("a multi-task batch mixes tasks; MixtureSampler gives batches of one task each")
            task = task.flatten()[0].item()
        # A negative index would pick a task from the end (-1: the last) without a word, as a list does
        if isinstance(task, bool) or not isinstance(task, numbers.Integral) or not 0 <= task < len(self.names):
            tasks = ", ".join(f"{i} {name}" for i, name in enumerate(self.names))
            raise ValueError(f"task {task!r} is not a task index of this model; its tasks are {tasks}")
        return self.names[int(task)]

    def forward(self, input_ids, task, attention_mask=None, token_type_ids=None) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        name = self.task_name(task)
        out = self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           output_hidden_states=True)
        pooled = self.poolings[name](out.hidden_states, attention_mask, out.pooler_output)  # (B, P)
        return SequenceClassifierOutput(logits=self.classifiers[name](self.dropout(pooled)))  # (B, C_task)

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        # config.json is written with sorted keys, which would put the tasks in alphabetical order: their
        # order, which the `task` index of forward() counts in, is kept as a list (a list keeps its order)
        self.encoder.config.extra[TASKS_KEY] = self.settings
        self.encoder.config.extra[TASK_ORDER_KEY] = self.names
        self.encoder.save_pretrained(path)
        heads = {f"poolings.{k}": v for k, v in self.poolings.state_dict().items()}
        heads.update({f"classifiers.{k}": v for k, v in self.classifiers.state_dict().items()})
        save_file({k: v.detach().contiguous().cpu() for k, v in heads.items()}, str(path / HEADS_FILE))

    @classmethod
    def load(cls, path: str | os.PathLike, encoder_class) -> "MultiTaskClassifier":
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        settings = config[TASKS_KEY]
        # (minibert wrote the order inside the settings for a few commits on 2026-11-24, as "task_order")
        order = config.get(TASK_ORDER_KEY) or settings.pop("task_order", None)
        if order is None and len(settings["tasks"]) > 1:  # saved before the order was kept (2026-11-24)
            order = _recorded_task_order(path, settings["tasks"])
        if order is not None:
            settings["tasks"] = {name: settings["tasks"][name] for name in order}
        model = cls(encoder_class.from_pretrained(path), **settings)
        heads = load_file(str(path / HEADS_FILE))
        for prefix, modules in (("poolings.", model.poolings), ("classifiers.", model.classifiers)):
            modules.load_state_dict({k[len(prefix):]: v for k, v in heads.items() if k.startswith(prefix)})
        return model.eval()


def _recorded_task_order(path: Path, tasks: dict) -> list[str] | None:
    """The task order of a model saved before config.json kept it: its run's eval_results.json lists the
    tasks in --multitask's order. Without it, the alphabetical order of config.json stands, with a warning."""
    record = path / "eval_results.json"
    recorded = list(json.loads(record.read_text()).get("tasks", {})) if record.is_file() else []
    if sorted(recorded) == sorted(tasks):
        return recorded
    logger.warning("%s was saved without its task order and has no eval_results.json listing it: its tasks are "
                   "numbered alphabetically (%s), which may not be the --multitask order it was trained in",
                   path, ", ".join(sorted(tasks)))
    return None

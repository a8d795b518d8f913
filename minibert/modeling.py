"""What every minibert model shares: a JSON-backed config dataclass, and a base class that loads
and saves Hugging Face checkpoints through the family's `WeightMap` (see checkpoint.py).

Loading a checkpoint, step by step (`PreTrainedModel.load_hf_state_dict`):
0. the family's aliases are resolved (`WeightMap.aliases`: BERT's MLM decoder bias, written under
   two names);
1. legacy names are modernised (LayerNorm.gamma -> LayerNorm.weight);
2. the family prefix (`bert.`, `roberta.`, `transformer.`, `model.`) is stripped, so a base
   model and a head model read the same files;
3. each key is renamed by the table (transposed where the table says, after a shape check);
4. keys are sorted into: loaded, dropped on purpose (buffers, tied copies: skipped unchecked, never
   written back by `save_pretrained`; `WeightMap.dropped`), belonging to a head
   this class does not have (ignored: a warning), freshly initialised (a task head or pooler the
   checkpoint does not have: a warning), and errors (any other key the model needs, or a base-model
   key it does not know). A misspelt *head* key is therefore a warning (an ignored key and a fresh
   head), not an error, as in Hugging Face.
"""

import contextvars
import dataclasses
import difflib
import json
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from minibert.checkpoint import (
    BESIDE_BASE_FILE,
    CONFIG_NAME,
    GENERATION_CONFIG_NAME,
    NEW_ENCODER_DIR,
    NEW_ENCODER_SETTINGS,
    SAFE_WEIGHTS_NAME,
    WeightMap,
    atomic_write_files,
    json_writer,
    normalize_legacy_key,
    read_config_dict,
    read_json_object,
    read_state_dict,
    state_dict_writer,
    write_json,
)
from minibert.nn import losses
from minibert.nn.attention import ATTN_IMPLEMENTATIONS

logger = logging.getLogger(__name__)

# The weights loading a checkpoint does not warn of when it initialises them (new_weights_unreported): the names
# starting with one of these prefixes, or every name (None). Empty: all are reported.
_UNREPORTED_NEW_WEIGHTS: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "unreported_new_weights", default=())


@contextmanager
def new_weights_unreported(prefixes: tuple[str, ...] | None = None):
    """Within the block, loading a checkpoint does not warn of the weights it initialised ("newly initialised ...
    train before use") whose names start with one of `prefixes` (all of them when None); they are still listed in
    each model's `loading_info`. For a caller that restores some of them at once and reports the rest itself:
    load_beside_base (finetune/beside_base.py), whose saved parameters hold the task head that the base checkpoint
    lacks; and for one whose model never reads some of them: a head that pools the hidden states leaves the
    pooler unread (finetuning.py). (It was a logging filter matching the warning's text, which also held back the
    warnings of any other thread loading a model meanwhile.)"""
    token = _UNREPORTED_NEW_WEIGHTS.set(prefixes)
    try:
        yield
    finally:
        _UNREPORTED_NEW_WEIGHTS.reset(token)


# Fields that choose how this run computes (attention kernel, unpadding, sparse MLM head), not what the model is:
# read from config.json when it has them, never written to it.
_RUNTIME_ONLY = ("attn_implementation", "unpad", "sparse_mlm")
PROBLEM_TYPES = (None, *losses.PROBLEM_TYPES)  # None: inferred from the labels at each call


@dataclass
class ModelConfig:
    """Base of every family config. Subclasses are dataclasses whose field names are those of
    Hugging Face's config.json, so reading a config is a copy of the keys we know."""

    model_type: ClassVar[str] = ""
    architectures: list[str] | None = None  # class names, as written by Hugging Face
    attn_implementation: str = "sdpa"  # "eager" (reference) or "sdpa" (fused); not saved
    # Task heads. num_labels follows id2label when a config.json has one, as in Hugging Face; passed both to
    # the constructor, named labels must be num_labels of them.
    num_labels: int = 2
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None  # regression | single_label_classification | multi_label_classification
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # keys we do not use, kept for saving

    def __post_init__(self):
        self.check_numbers()
        self.check_at_least_one("num_labels")
        if self.id2label is not None and (
                not isinstance(self.id2label, dict) or not all(str(k).isdigit() for k in self.id2label)):
            raise ValueError(f"id2label must map class ids to label names ({{\"0\": \"negative\", ...}}), got "
                             f"{self.id2label!r}; correct it in config.json")
        if self.id2label is not None and len(self.id2label) != self.num_labels:
            # from_dict makes the two agree (num_labels follows id2label, as Hugging Face's config does); here both
            # came from the caller. Named labels were otherwise replaced by LABEL_i and the head built for num_labels
            # (BertConfig(id2label=<3 labels>) gave a 2-class classifier). The default names follow num_labels.
            names = {int(k): v for k, v in self.id2label.items()}
            if names != {i: f"LABEL_{i}" for i in range(len(names))}:
                raise ValueError(f"id2label names {len(names)} labels {list(names.values())} but num_labels is "
                                 f"{self.num_labels}; pass num_labels={len(names)} with them (or id2label=None)")
        if self.id2label is None or len(self.id2label) != self.num_labels:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        self.id2label = {int(k): v for k, v in self.id2label.items()}
        self.label2id = {v: k for k, v in self.id2label.items()}
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {self.attn_implementation!r}"
            )
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}")

    def check_numbers(self) -> None:
        """Fields typed float (epsilons, dropouts, std) must hold numbers: a JSON "1e-12" or null would
        otherwise load and fail at the first forward (layer_norm(): argument 'eps' must be float, not str)."""
        for f in dataclasses.fields(self):
            if f.type not in (float, float | None):
                continue
            value = getattr(self, f.name)
            if value is None and f.type is not float:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{f.name} must be a number, got {value!r} ({type(value).__name__}); "
                                 "correct it in config.json")

    def check_at_least_one(self, *names: str) -> None:
        """Sizes and counts: whole numbers >= 1 (a JSON "96" or 0 heads would fail far from here)."""
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be a whole number, got {value!r} ({type(value).__name__})")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")

    def check_probabilities(self, *names: str) -> None:
        for name in names:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: dict, **overrides) -> "ModelConfig":
        if "num_labels" in overrides and "id2label" not in overrides:
            data = {k: v for k, v in data.items() if k not in ("id2label", "label2id")}
        data = {**data, **overrides}
        if "id2label" in data and data["id2label"] is not None:
            data["num_labels"] = len(data["id2label"])
        found = data.get("model_type", cls.model_type)
        if found != cls.model_type:
            raise ValueError(
                f"config.json says model_type {found!r} but {cls.__name__} is for {cls.model_type!r}; "
                "use minibert.load_pretrained(path), which picks the class from config.json"
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "model_type"}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("extra", *_RUNTIME_ONLY)}
        return {**self.extra, **out, "model_type": self.model_type}

    @classmethod
    def from_json(cls, path: str | os.PathLike, **overrides) -> "ModelConfig":
        path = Path(path)
        data = read_config_dict(path) if path.is_dir() else read_json_object(path)
        return cls.from_dict(data, **overrides)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        if path is not None:
            path = Path(path)
            write_json(path / CONFIG_NAME if path.is_dir() else path, self.to_dict())
        return text


def normal_init(module: nn.Module, std: float) -> None:
    """The initialisation BERT, GPT-2 and BART share: Linear and Embedding weights ~ N(0, std),
    biases 0, the padding embedding row 0, LayerNorm weight 1 and bias 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
        if getattr(module, "padding_idx", None) is not None:
            nn.init.zeros_(module.weight[module.padding_idx])
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def wants_cache(stack: nn.Module, use_cache: bool | None) -> bool:
    """Whether a decoder stack (GPT-2's, BART's) returns its key/value cache: as asked, else as Hugging Face's
    forward does, the config's use_cache (True by default), except while training with gradient checkpointing,
    whose recomputed blocks would make it twice. A cache given back by default keeps a decoding loop written for
    Hugging Face right: with none, its next call (`model(next_token, past_key_values=out.past_key_values)`) read the
    new token as position 0 of a new text, without a word."""
    if use_cache is not None:
        return use_cache
    return bool(getattr(stack.config, "use_cache", True)) and not (stack.gradient_checkpointing and stack.training)


TOKENIZER_MISMATCH = "the tokenizer does not match the model (load the checkpoint's tokenizer)"


def check_ids(ids, table_size: int, name: str = "input_ids", table: str = "vocab_size",
              fix: str = TOKENIZER_MISMATCH) -> None:
    """`ids` must be a (B, T) integer tensor of rows of an embedding table with `table_size` rows
    (tokens, segments, positions); otherwise an error that quotes the bad id and says `fix`."""
    if not torch.is_tensor(ids):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (batch, sequence), got a {type(ids).__name__}; "
            f"wrap it: torch.tensor([ids]) for one sequence, or use the tokenizer's return_tensors"
        )
    if ids.dim() != 2:
        raise ValueError(f"{name} must be (batch, sequence), got shape {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer ids, got dtype {ids.dtype}; convert with .long()")
    if ids.numel() == 0:
        raise ValueError(f"{name} has shape {tuple(ids.shape)}: no tokens; pass at least one token per sequence")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= table_size:
        raise ValueError(
            f"{name} holds id {low if low < 0 else high}, outside 0..{table_size - 1} ({table} is {table_size}); {fix}"
        )


def check_config_keywords(config_class: type, keywords: dict, caller: str) -> None:
    """Keyword arguments that set config fields must name one: a typo would otherwise be kept
    silently among the unknown keys of config.json and change nothing."""
    accepted = sorted(f.name for f in dataclasses.fields(config_class) if f.name != "extra")
    for name in keywords:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TypeError(
                f"{caller} got an unknown keyword {name!r}; {hint}{config_class.__name__} accepts {accepted}"
            )


def store_linear_weights_input_major(model: nn.Module) -> None:
    """Keep every nn.Linear weight shaped (out, in) but stored (in, out) in memory, GPT-2's original
    Conv1D order: F.linear then multiplies by a matrix that is not transposed, which MKL's GEMM reads
    1.5-2x faster at 4-8 rows (batched and beam decoding; bench/bench_generate.py) and no slower at
    1 row or at training sizes. An explicit step, taken by `generate` on the CPU: only the memory order
    changes (`.data`), so values, shapes and the Parameter objects an optimizer holds stay the same;
    loading copies into these tensors and keeps the order. Not its state: a fused AdamW
    (`fused=True`) that already holds moments for these weights steps wrongly after the re-layout
    (3.2e-2 off after 3 steps; `fused=False` is exact), so re-lay before an optimizer's first step."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and not module.weight.t().is_contiguous():
            module.weight.data = module.weight.data.t().contiguous().t()  # shape (out, in), memory (in, out)


def _first(keys: list[str], shown: int = 10) -> str:
    """A list of key names as Python writes it, cut after `shown` names: a checkpoint that fits nothing (a whole
    model under another prefix) otherwise gave a message of every key, 19,000 characters for a 12-layer BERT."""
    return str(keys) if len(keys) <= shown else f"{str(keys[:shown])[:-1]}, ... {len(keys) - shown} more]"


class PreTrainedModel(nn.Module):
    """Hugging Face checkpoints in and out, weight initialisation, gradient checkpointing.

    A family sets: `config_class`, `base_model_prefix` (the attribute under which head models
    keep their base model, as in Hugging Face), `weight_map`, `optional_base_keys` (regexes of
    base-model keys that a checkpoint may lack, such as the pooler), and implements
    `_init_weights(module)`.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    base_model_prefix: ClassVar[str] = ""
    weight_map: ClassVar[WeightMap]
    optional_base_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.loading_info: dict[str, list[str]] = {}
        # generation_config.json as read from a checkpoint (None: it had none); generation.py applies it
        self.generation_config: dict | None = None

    # -- structure ------------------------------------------------------------------------
    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix, self)

    @property
    def is_head_model(self) -> bool:
        return self.base_model is not self

    def get_input_embeddings(self) -> nn.Embedding:
        raise NotImplementedError

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _init_weights(self, module: nn.Module) -> None:
        raise NotImplementedError

    def post_init(self) -> None:
        """Initialise every submodule once the whole model is built."""
        self.apply(self._init_weights)

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each layer's activations in the backward pass instead of storing them
        (Chen et al. 2016, https://arxiv.org/abs/1604.06174): memory O(layers) -> O(1) per layer."""
        self.base_model.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.base_model.gradient_checkpointing = False

    def set_attn_implementation(self, implementation: str) -> None:
        if implementation not in ATTN_IMPLEMENTATIONS:  # refused here, not at the next forward with the config changed
            raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {implementation!r}")
        self.config.attn_implementation = implementation
        for module in self.modules():
            if hasattr(module, "implementation"):
                module.implementation = implementation

    # -- Hugging Face checkpoints ------------------------------------------------------------
    def _split_prefix(self, key: str) -> tuple[str, bool]:
        prefix = self.base_model_prefix + "."
        return (key[len(prefix) :], True) if key.startswith(prefix) else (key, False)

    def _is_optional(self, our_key: str) -> bool:
        body, prefixed = self._split_prefix(our_key) if self.is_head_model else (our_key, True)
        if self.is_head_model and not prefixed:
            return True  # a task head: a base checkpoint does not have it
        return any(re.fullmatch(p, body) for p in self.optional_base_keys)

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """Our state dict under Hugging Face's names (the inverse of load_hf_state_dict)."""
        out = {}
        for key, tensor in self.state_dict().items():
            body, prefixed = self._split_prefix(key) if self.is_head_model else (key, True)
            hit = self.weight_map.to_theirs(body)
            if hit is None:
                raise KeyError(f"{type(self).__name__}.weight_map has no Hugging Face name for {key!r}")
            theirs, part = hit
            if part == "base" and self.is_head_model:
                theirs = f"{self.base_model_prefix}.{theirs}"
            out[theirs] = tensor.t() if self.weight_map.is_transposed(body) else tensor
        return out

    def load_hf_state_dict(self, hf_state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
        expected = self.state_dict()
        ours: dict[str, torch.Tensor] = {}
        unexpected, other_heads, extra_layers, mismatched = [], [], [], []
        resized: set[str] = set()  # our keys of the mismatched head weights
        # A head model's checkpoint writes its base under the prefix (roberta.embeddings...): a key outside
        # it that no table names is the head of a class minibert lacks (token classification ...).
        head_checkpoint = any(k.startswith(self.base_model_prefix + ".") for k in hf_state)
        for hf_key, tensor in self.weight_map.resolve_aliases(hf_state).items():
            body, prefixed = self._split_prefix(normalize_legacy_key(hf_key))
            if self.weight_map.is_dropped(body):
                continue
            hit = self.weight_map.to_ours(body)
            if hit is None:
                (other_heads if head_checkpoint and not prefixed else unexpected).append(hf_key)
                continue
            key, part = hit
            if part == "base" and self.is_head_model:
                key = f"{self.base_model_prefix}.{key}"
            if key not in expected:
                # a block the config does not have (layer 0 has this weight): dropping it would change the outputs
                (extra_layers if re.sub(r"\.\d+\.", ".0.", key, count=1) in expected else other_heads).append(hf_key)
                continue
            if self.weight_map.is_transposed(hit[0]):
                # The shape check catches a table that names the wrong tensors, except a square one (GPT-2's
                # attn.c_proj, E x E): there only the parity tests' outputs tell a missing transpose.
                want = tuple(reversed(expected[key].shape))
                if tuple(tensor.shape) != want:
                    raise ValueError(
                        f"{hf_key}: stored transposed with shape {tuple(tensor.shape)}, expected {want}"
                    )
                tensor = tensor.t()
            if tensor.shape != expected[key].shape and part == "head" and self.ignore_mismatched_heads:
                mismatched.append(f"{hf_key} {tuple(tensor.shape)} -> {tuple(expected[key].shape)}")
                resized.add(key)
                continue  # left as initialised: a task head of another size (another number of labels)
            if tensor.shape != expected[key].shape:
                fix = ("a task head of another size (another num_labels?): from_pretrained(..., "
                       "ignore_mismatched_sizes=True) starts it afresh" if part == "head" else
                       "check config.json against the weights")
                raise ValueError(
                    f"{hf_key}: checkpoint has shape {tuple(tensor.shape)} but the config gives "
                    f"{tuple(expected[key].shape)} for {key}; {fix}"
                )
            ours[key] = tensor
        if extra_layers:
            raise ValueError(f"checkpoint has {len(extra_layers)} weights of layers the config does not have "
                             f"(e.g. {extra_layers[0]}): check the layer count in config.json against the weights")
        missing = [k for k in expected if k not in ours]
        # a head of another size is in the checkpoint: reported once, as mismatched, not as missing (as Hugging Face)
        fresh = [k for k in missing if self._is_optional(k) and k not in resized]
        required = [k for k in missing if not self._is_optional(k)]
        if unexpected or required:
            wrapper = self._wrapper_prefix(unexpected)
            fix = (f"Every unexpected key starts with {wrapper!r}, the name of a wrapper (DistributedDataParallel's "
                   "module., torch.compile's _orig_mod.): save the wrapped model's own state_dict(), or strip "
                   "the prefix" if wrapper else
                   "Check that the checkpoint's model_type matches this class (or use minibert.load_pretrained)")
            raise ValueError(
                f"checkpoint does not fit {type(self).__name__}: "
                f"missing keys {_first(required)}; unexpected keys {_first(unexpected)}. {fix}"
            )
        self.load_state_dict(ours, strict=False)
        # Warnings, as Hugging Face's: a head left random (a misspelt key included) must be trained, and
        # weights left unread are worth a look.
        unreported = _UNREPORTED_NEW_WEIGHTS.get()
        reported = [] if unreported is None else [k for k in fresh if not k.startswith(unreported)]
        if reported:
            logger.warning("%s: newly initialised (not in the checkpoint; train before use): %s",
                           type(self).__name__, reported)
        if other_heads:
            logger.warning("%s: ignored checkpoint weights of other heads: %s", type(self).__name__, other_heads)
        if mismatched:
            logger.warning("%s: task head of another size in the checkpoint, initialised afresh: %s",
                           type(self).__name__, mismatched)
        self.loading_info = {"newly_initialized": fresh, "ignored": other_heads, "mismatched": mismatched}
        return self.loading_info

    def _wrapper_prefix(self, unexpected: list[str]) -> str | None:
        """The one first name ('module.') of every unexpected key, when the keys without it are weights this
        model knows: a state dict saved through a wrapper, whose every key was otherwise listed as unknown."""
        firsts = {key.split(".", 1)[0] for key in unexpected}
        if len(firsts) != 1 or not all("." in key for key in unexpected):
            return None
        prefix = f"{firsts.pop()}."
        bodies = [self._split_prefix(normalize_legacy_key(key[len(prefix):]))[0] for key in unexpected]
        known = any(self.weight_map.to_ours(body) is not None for body in bodies)
        return prefix if known else None

    ignore_mismatched_heads = False  # set by from_pretrained(ignore_mismatched_sizes=True)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, ignore_mismatched_sizes: bool = False, **config_overrides):
        """Build the model from a local Hugging Face directory and load its weights (eval mode).
        ignore_mismatched_sizes (Hugging Face's name): a *task head* whose shape differs from the config's
        (a classifier of 3 labels for a task of 2) starts afresh, with a warning; the base model's
        weights must still fit. The parameters are float32 whatever the checkpoint's dtype: a float16 or
        bfloat16 checkpoint gives the outputs of Hugging Face's model loaded with dtype=torch.float32
        (`.to(torch.bfloat16)` afterwards runs in that dtype)."""
        check_config_keywords(cls.config_class, config_overrides, f"{cls.__name__}.from_pretrained")
        config = cls.config_class.from_dict(read_config_dict(path), **config_overrides)
        model = cls(config)
        model.ignore_mismatched_heads = ignore_mismatched_sizes
        model.load_hf_state_dict(read_state_dict(path))
        generation_file = Path(path) / GENERATION_CONFIG_NAME
        if generation_file.is_file():
            model.generation_config = read_json_object(generation_file)
        return model.eval()

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write config.json + model.safetensors under Hugging Face's names (and generation_config.json
        when the model was loaded with one). Saved over an earlier model, the files are replaced together
        (atomic_write_files): an error while writing them leaves the earlier model whole, never its
        config.json with these weights. What the loaders would read instead of, or on top of, this model is
        removed: an earlier generation_config.json that this model lacks (from_pretrained would take it for
        this model's generation defaults), and the marker of an earlier train.py output of another kind,
        beside_base.json or new_encoder/front.json (load_finetuned would rebuild that output, and
        load_pretrained refuse this model; train.py --overwrite_output_dir saves over such a directory)."""
        path = Path(path)
        file = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if file is not None:  # mkdir said only "File exists" / "Not a directory"
            where = "is a file" if file == path else f"sits under {file}, which is a file"
            raise ValueError(f"save_pretrained: {path} {where}; a model is saved as a directory (config.json + "
                             "model.safetensors): pass a directory path")
        path.mkdir(parents=True, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        state = self.hf_state_dict()
        # config.json's dtype (torch_dtype before transformers 5) names the weights' dtype, and transformers 5
        # loads in it by default: kept as read from a bfloat16 checkpoint, it made Hugging Face load these
        # float32 weights (from_pretrained loads into float32) in bfloat16. Written only where the config has it.
        saved = next((tensor.dtype for tensor in state.values() if tensor.is_floating_point()), None)
        for key in ("dtype", "torch_dtype"):
            if key in self.config.extra and saved is not None:
                self.config.extra[key] = str(saved).removeprefix("torch.")
        writes = [(path / SAFE_WEIGHTS_NAME, state_dict_writer(state)),
                  (path / CONFIG_NAME, json_writer(self.config.to_dict()))]
        if self.generation_config is not None:
            writes.append((path / GENERATION_CONFIG_NAME, json_writer(self.generation_config)))
        atomic_write_files(writes)
        if self.generation_config is None:
            (path / GENERATION_CONFIG_NAME).unlink(missing_ok=True)
        for marker in (path / BESIDE_BASE_FILE, path / NEW_ENCODER_DIR / NEW_ENCODER_SETTINGS):
            if marker.is_file():  # (BartWithNewEncoder.save writes its front.json again after this)
                marker.unlink()
                logger.warning("%s: removed %s, left by an earlier model saved there, which would be loaded "
                               "instead of this one", path, marker.relative_to(path))

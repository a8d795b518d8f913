"""Watch a forward pass: every module call in order, with its shapes, dtypes and the code that ran.

`trace(model, **inputs)` runs `model(**inputs)` with a forward hook on every submodule and
returns one `ModuleCall` per call, in execution order, nested as the calls were. Two functions get
lines of their own too: attention's `attend` (the heads' q, k, v and the mask) and each
feed-forward's activation. The model files hold no tracing code: hooks and wrappers are attached
for the one call and removed afterwards.

    trace = minibert.trace(model, **tokenizer("The cat sat on the mat."))
    print(trace)                          # one line per module call, indented by nesting
    trace.calls[3].outputs[0].shape       # the records, for a notebook

Shapes are written with the letters the model files use (B batch, T tokens, S source tokens,
E hidden size, H heads, D head dim, F feed-forward width, V vocabulary, C labels), read off the
config and the inputs; a multiple of E where a width belongs is written as one (GPT-2's fused
query/key/value projection: 3E), and a size that matches no letter as a number (a growing cache).
Where two letters have the same size, the tensor's role decides, not the size: F between a
feed-forward's two layers, V or C for logits, S for the keys of BART's cross-attention.

`trace_generation` watches `generate`: one step per decoder call, with the decoder's embedding
calls, the key/value cache of one layer and the logits (`lm_logits`, a method, wrapped like `attend`).
`plot_attention` and `plot_hidden_states` draw the attention probabilities (layers x heads) and the
hidden states (norms, change per layer) with matplotlib.
"""

import dataclasses
import inspect
import logging
import math
import re
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minibert.nn import attention
from minibert.nn.attention import to_additive
from minibert.nn.feed_forward import ACTIVATIONS, FeedForward

logger = logging.getLogger(__name__)

# The plain function, taken once at import: a recording always puts this back, so two recordings that
# overlap (two threads) cannot leave one's wrapper behind as "the original".
_PLAIN_ATTEND = attention.attend

LETTER_MEANINGS = {"B": "batch", "T": "tokens", "S": "source tokens", "E": "hidden size", "H": "heads",
                   "D": "head dim", "F": "feed-forward width", "V": "vocabulary", "C": "labels"}
# Config fields that give each letter, across the families (BERT, GPT-2, BART).
_CONFIG_FIELDS = {"E": ("hidden_size", "n_embd", "d_model"), "H": ("num_attention_heads", "n_head",
                                                                   "encoder_attention_heads"),
                  "F": ("intermediate_size", "inner_dim", "encoder_ffn_dim"), "V": ("vocab_size",),
                  "C": ("num_labels",)}
_MASK_NAMES = ("keep", "memory_keep", "attention_mask", "decoder_attention_mask")  # shown even when None
_SHORT_DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.float64: "f64",
                 torch.int64: "i64", torch.int32: "i32", torch.bool: "bool"}
_REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TensorInfo:
    """One tensor that went into or came out of a module call."""

    name: str  # argument or output field, "past_key_value[0]" inside a tuple, "" for a bare output
    shape: tuple[int, ...]
    dtype: torch.dtype
    letters: str  # the shape in letters, "(B, T, E)"
    note: str = ""  # what a mask hides, which module a tied weight belongs to
    value: torch.Tensor | None = field(default=None, repr=False)  # kept only with trace(keep_tensors=True)

    def text(self) -> str:
        name = f"{self.name} " if self.name else ""
        note = f" [{self.note}]" if self.note else ""
        return f"{name}{self.letters} {_SHORT_DTYPES.get(self.dtype, str(self.dtype))}{note}"


@dataclass
class ModuleCall:
    """One call of one module: where it sits, what it read and wrote, and where its code is."""

    index: int  # position in execution order (calls start in this order)
    depth: int  # nesting: 0 for the model itself
    name: str  # qualified name in the model, as model.get_submodule takes it ("" for the model)
    kind: str  # class name
    source: str  # file:line of the module's forward
    inputs: list[TensorInfo | str] = field(default_factory=list)  # str: a non-tensor argument ("past=3")
    outputs: list[TensorInfo] = field(default_factory=list)
    context: tuple[str, str] = ("T", "T")  # letters of the query and key sequences (BART: S for the source)
    setting: str = ""  # what the class name does not say: a Dropout's p ("p=0.0": this one never drops)

    def input(self, name: str) -> TensorInfo:
        return _find(self.inputs, name, self)

    def output(self, name: str) -> TensorInfo:
        return _find(self.outputs, name, self)

    def line(self) -> str:
        ins = ", ".join(_group(self.inputs))
        outs = ", ".join(_group(self.outputs)) or "None"
        kind = f"{self.kind} {self.setting}" if self.setting else self.kind
        label = f"{self.name} ({kind})" if self.name else kind
        return f"{'  ' * self.depth}{label}: {ins} -> {outs}  @ {self.source}"


@dataclass
class Trace:
    calls: list[ModuleCall]
    legend: dict[str, int]  # letter -> size
    output: Any = None  # what the model returned
    notes: list[str] = field(default_factory=list)

    def format(self, max_depth: int | None = None) -> str:
        lines = ["shapes: " + legend_text(self.legend)]
        lines += [c.line() for c in self.calls if max_depth is None or c.depth <= max_depth]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def find(self, pattern: str) -> list[ModuleCall]:
        """Calls whose qualified name matches the regular expression `pattern` (whole name)."""
        return [c for c in self.calls if re.fullmatch(pattern, c.name)]


def legend_text(legend: dict[str, int]) -> str:
    return ", ".join(f"{k}={v} {LETTER_MEANINGS[k]}" for k, v in legend.items())


def _find(infos, name, call) -> TensorInfo:
    for info in infos:
        if isinstance(info, TensorInfo) and info.name == name:
            return info
    raise KeyError(f"{call.name or call.kind} has no tensor named {name!r}; it has "
                   f"{[i.name for i in infos if isinstance(i, TensorInfo)]}")


def _group(infos: list) -> list[str]:
    """Text of each input/output. The tensors of one tuple are written together and equal
    neighbours once: a GPT-2 cache of 2 layers reads "past_key_values 2 x 2 x (B, H, 9, D) f32", a BART
    cache of one layer "past_key_values 1 x [2 x (B, H, 3, D) f32, 2 x (B, H, 14, D) f32]" (self, cross)."""
    parts: list[str] = []
    i = 0
    while i < len(infos):
        info = infos[i]
        if isinstance(info, str) or "[" not in info.name:
            parts.append(info if isinstance(info, str) else info.text())
            i += 1
            continue
        base = info.name.split("[")[0]
        j = i
        while j < len(infos) and isinstance(infos[j], TensorInfo) and infos[j].name.split("[")[0] == base \
                and "[" in infos[j].name:
            j += 1
        tree = _tree([(_index_path(x.name), x) for x in infos[i:j]])
        parts.append(f"{base} {tree}" if base else tree)
        i = j
    return parts


def _index_path(name: str) -> tuple[int, ...]:
    return tuple(int(k) for k in re.findall(r"\[(\d+)\]", name))


def _tree(items: list[tuple[tuple[int, ...], TensorInfo]]) -> str:
    """Render tensors addressed by index paths ((0, 1) = item 1 of item 0) as nested lists."""
    if len(items) == 1 and not items[0][0]:
        return dataclasses.replace(items[0][1], name="").text()
    children: dict[int, list] = {}
    for path, info in items:
        children.setdefault(path[0], []).append((path[1:], info))
    texts = [_tree(group) for group in children.values()]
    runs: list[list] = []  # [text, count]: equal neighbours are written once
    for text in texts:
        if runs and runs[-1][0] == text:
            runs[-1][1] += 1
        else:
            runs.append([text, 1])
    if len(runs) == 1:  # one kind of item: "2 x (..)", and "1 x [..]" keeps a one-layer cache's level in view
        nested = any(path for group in children.values() for path, _ in group)  # its items are tuples themselves
        text, count = runs[0]
        return f"{count} x {text}" if count > 1 or nested else text  # a block's (h, None, ..) stays "(B, T, E)"
    return "[" + ", ".join(f"{count} x {text}" if count > 1 else text for text, count in runs) + "]"


# --------------------------------------------------------------------------------------------
# Shape letters
# --------------------------------------------------------------------------------------------
def shape_legend(model: nn.Module, batch: int | None = None, tokens: int | None = None,
                 source: int | None = None) -> dict[str, int]:
    """Letter -> size for this model and these inputs (B, T, S from the inputs; the rest from the config)."""
    config = model.config
    legend: dict[str, int] = {}
    for letter, value in (("B", batch), ("T", tokens), ("S", source)):
        if value is not None:
            legend[letter] = value
    # train.py's own heads (PooledClassifier, LadderSideClassifier) keep their num_labels in their settings, not in
    # the encoder's config; a multi-task model has one per task, so no single C
    settings = getattr(model, "settings", None)
    own_labels = settings.get("num_labels") if isinstance(settings, dict) else None
    for letter, names in _CONFIG_FIELDS.items():
        if letter == "C" and "Classification" not in type(model).__name__ and own_labels is None:
            continue  # C only where a classifier has num_labels outputs
        value = next((getattr(config, n) for n in names if getattr(config, n, None) is not None), None)
        if letter == "C" and own_labels is not None:
            value = own_labels
        if value is not None:
            legend[letter] = value
        if letter == "H" and value is not None:
            legend["D"] = legend["E"] // value
    return legend


def shape_letters(shape: tuple[int, ...], dtype: torch.dtype, legend: dict[str, int],
                  seq: str = "T", key_seq: str = "T", head_dim_last: bool | None = None,
                  width: str | None = None) -> str:
    """(2, 9, 128) -> "(B, T, E)". Each position has its own candidate letters, so sizes that
    happen to be equal (T = D, H = C) are still told apart; anything else is written as a number.
    head_dim_last: whether a 4-D tensor is queries/keys/values (B, H, T, D) rather than scores or a
    mask (B, H, T_q, T_k), when its role says so (the size alone cannot when T = D).
    width: the letter the last dimension has by the tensor's role, tried first: F inside a feed-forward,
    V or C for logits, which the size alone cannot tell from E when F = E, V = E or C = E. F is given
    only so: a width of 4E (concat_last4's pooled vector) is not the feed-forward's when F = 4E."""
    integer = not (dtype.is_floating_point or dtype == torch.bool)
    if len(shape) == 4:  # attention: scores, probabilities and masks (B, H, T_q, T_k); keys/values (B, H, T_k, D)
        key_or_value = head_dim_last if head_dim_last is not None else (
            dtype.is_floating_point and shape[-1] == legend.get("D") and shape[-1] != legend.get(key_seq))
        options = [("B",), ("H",), (key_seq,) if key_or_value else (seq,), ("D",) if key_or_value else (key_seq,)]
    elif len(shape) == 3:  # hidden states (B, T, E), logits (B, T, V | C); the feed-forward inside (B, T, F): width
        options = [("B",), (seq,), ("E", "V", "C")]
    elif len(shape) == 2:  # ids and masks (B, T: the first dimension of integers is the batch's, or 1, broadcast);
        # sentence vectors and logits (B, E | C); packed tokens (N, E); a position table's rows (T, E); V: a tied
        # (V, E) weight
        options = [("B",) if integer else ("B", "V", seq), (seq,) if integer else ("E", "C", "V", seq)]
    elif len(shape) == 1:  # position ids (T), a bias (E | F | V)
        options = [(seq, "B") if integer else ("E", "F", "V", "C")]
    else:
        options = [()] * len(shape)
    if width is not None and options:
        options[-1] = (width, *options[-1])
    parts = []
    for size, letters in zip(shape, options, strict=True):
        letter = next((letter for letter in letters if legend.get(letter) == size), None)
        if letter is None and "E" in letters and legend.get("E") and size % legend["E"] == 0 and size > legend["E"]:
            letter = f"{size // legend['E']}E"  # fused projections: GPT-2's c_attn gives (B, T, 3E)
        parts.append(letter or str(size))
    return "(" + ", ".join(parts) + ")"


_HEAD_DIM_NAMES = ("q", "k", "v", "output", "cache", "past_key_value", "past_key_values")  # (B, H, T, D)
_KEY_LENGTH_NAMES = ("probs", "attentions", "keep", "memory_keep")  # (B, H, T_q, T_k)


def _head_dim_last(name: str, value: torch.Tensor) -> bool | None:
    """Whether a 4-D tensor ends in the head dim, by its role: its name, or, unnamed (a block's tuple),
    whether it is attention probabilities (non-negative rows summing to 1). None: not 4-D floats."""
    if value.dim() != 4 or not value.dtype.is_floating_point:
        return None
    base = name.split("[")[0]
    if base in _HEAD_DIM_NAMES:
        return True
    if base in _KEY_LENGTH_NAMES:
        return False
    rows = value.detach().float()
    return not (bool((rows >= 0).all()) and bool(torch.allclose(rows.sum(-1), torch.ones(()), atol=1e-3)))


def _sequence_context(name: str, parent: tuple[str, str], encoder_decoder: bool) -> tuple[str, str]:
    """Letters of a module's query and key sequences. BART: the encoder reads the source (S),
    the decoder the target (T), and cross-attention (encoder_attn) has target queries over
    source keys. Modules below those inherit their parent's letters."""
    if not encoder_decoder:
        return "T", "T"
    last = name.rsplit(".", 1)[-1]
    named = {"encoder": ("S", "S"), "decoder": ("T", "T"), "encoder_attn": ("T", "S")}
    if last in named:
        return named[last]
    if parent == ("T", "S"):  # inside cross-attention: the keys and values project the source, the rest the target
        return ("S", "S") if last in ("k_proj", "v_proj") else ("T", "T")
    return parent


def _argument_context(arg: str, context: tuple[str, str], top: bool) -> tuple[str, str]:
    """The encoder's output as a decoder argument (memory), or BART's own source inputs, are S; the
    cross-attention probabilities a decoder returns have target queries over source keys."""
    if arg.startswith(("memory", "key_value_states", "encoder")) or top and arg in ("input_ids", "attention_mask"):
        return "S", "S"
    if arg.startswith("cross_attentions"):
        return context[0], "S"
    return context


def _feed_forward_widths(parent: nn.Module | None, module: nn.Module) -> tuple[str | None, str | None]:
    """The width letter of a module's (input, output) by its place in a FeedForward: F between up and down,
    what the size alone cannot say when F = E."""
    if not isinstance(parent, FeedForward):
        return None, None
    return {parent.up: (None, "F"), parent.activation_dropout: ("F", "F"), parent.down: ("F", None)}.get(
        module, (None, None))


_LOGITS_NAMES = ("logits", "prediction_logits")  # (.., V) from an LM head, (.., C) from a classifier
_SPAN_NAMES = ("start_logits", "end_logits")  # question answering: one score per token, (B, T)


def _output_width(name: str, legend: dict[str, int], context: tuple[str, str]) -> str | None:
    """The letter a model output's last dimension has by its name (None: the size decides)."""
    base = name.split("[")[0]
    if base in _LOGITS_NAMES:
        return "C" if "C" in legend else "V"
    return context[0] if base in _SPAN_NAMES else None


# --------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------
@cache
def _source_of(cls: type) -> str:
    """file:line of a module class's forward, relative to the repository or to site-packages."""
    return _source_of_function(cls.forward)


def _source_of_function(function) -> str:
    try:
        path = Path(inspect.getsourcefile(function)).resolve()
        line = inspect.getsourcelines(function)[1]
    except (OSError, TypeError):  # a function written in C++ (torch.tanh): no Python source to point at
        return f"torch.{function.__name__} (built in, no Python source)"
    parts = path.parts
    installed = next((p for p in ("site-packages", "dist-packages") if p in parts), None)  # dist-: Debian, Colab
    if installed:  # torch's own modules: torch/nn/modules/linear.py
        return f"{'/'.join(parts[parts.index(installed) + 1:])}:{line}"
    return f"{path.relative_to(_REPO_ROOT) if path.is_relative_to(_REPO_ROOT) else path}:{line}"


class _Recorder:
    """Pre-hook: a new call, nested under the calls still running. Post-hook: its outputs."""

    def __init__(self, model: nn.Module, legend: dict[str, int], keep_tensors: bool):
        # every name of each module: one held in two places (ELECTRA's embeddings, shared by the generator and the
        # discriminator) is named by the place it ran from (name_of)
        self.names: dict[nn.Module, list[str]] = {}
        for name, module in model.named_modules(remove_duplicate=False):
            self.names.setdefault(module, []).append(name)
        self.legend = legend
        self.keep_tensors = keep_tensors
        self.encoder_decoder = _is_encoder_decoder(model)
        parameter = next(model.parameters())
        self.parameter_dtype, self.device_type = parameter.dtype, parameter.device.type
        self.calls: list[ModuleCall] = []
        self.running: list[ModuleCall] = []
        self.modules: list[nn.Module] = []  # the modules of `running`, innermost last
        # each output tensor's records so far (the module that made it, those that passed it on), by id,
        # with a weak reference that tells a live tensor from a freed one whose id was reused
        self.made: dict[int, tuple[weakref.ref, list[TensorInfo]]] = {}
        # row 0's attention_mask (True: a real token), from the innermost call given one: the notes of row 0's
        # segment and position ids count its padding positions apart (BERT pads token_type_ids with segment 0)
        self.row0_real: list[bool] | None = None

    def name_of(self, module: nn.Module) -> str:
        """The module's qualified name: of its names, the one under the call running it (the discriminator's
        embeddings, not the generator's name for the same module), else its first."""
        names = self.names.get(module, ["?"])
        below = f"{self.running[-1].name}." if self.running and self.running[-1].name else ""
        return next((n for n in names if n.startswith(below)), names[0])

    @property
    def dtype(self) -> torch.dtype:
        """The attention scores' dtype, which decides the masked value: autocast's while it is on."""
        if torch.is_autocast_enabled(self.device_type):
            return torch.get_autocast_dtype(self.device_type)
        return self.parameter_dtype

    def before(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        name = self.name_of(module)
        parent = self.running[-1].context if self.running else ("T", "T")
        call = ModuleCall(index=len(self.calls), depth=len(self.running), name=name, kind=type(module).__name__,
                          source=_source_of(type(module)),
                          context=_sequence_context(name, parent, self.encoder_decoder),
                          setting=f"p={module.p}" if isinstance(module, nn.Dropout) else "")
        top = self.encoder_decoder and all(c.name.rsplit(".", 1)[-1] not in ("encoder", "decoder")
                                           for c in [*self.running, call])
        width, _ = _feed_forward_widths(self.modules[-1] if self.modules else None, module)
        for arg, value in _bind(module, args, kwargs):
            if arg == "attention_mask":
                self.row0_real = _row0_real(value)
            context = _argument_context(arg, call.context, top)
            call.inputs += self.describe(arg, value, context, is_input=True, width=width)
        self.calls.append(call)
        self.running.append(call)
        self.modules.append(module)

    def after(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        call = self.running.pop()
        self.modules.pop()
        _, width = _feed_forward_widths(self.modules[-1] if self.modules else None, module)
        for name, value in _fields(output):
            context = _argument_context(name, call.context, False)
            named = _output_width(name, self.legend, context)
            call.outputs += self.describe(name, value, context, is_input=False, width=named or width,
                                          by_name=named is not None or name.startswith("cross_attentions"))
        ids = call.inputs[0] if call.inputs else None
        if isinstance(module, nn.Embedding) and isinstance(ids, TensorInfo) and len(call.outputs) == 1 \
                and len(call.outputs[0].shape) == len(ids.shape) + 1:
            positions = args[0] if args else kwargs.get("input")
            if call.name.rsplit(".", 1)[-1] in _POSITION_TABLES and torch.is_tensor(positions) and positions.numel():
                ids.note = self.position_note(positions, self.modules[-1] if self.modules else None)
                if len(ids.shape) == 1:  # BART's positions (T), one per token: never B, even where T is a number
                    size = ids.shape[0]  # (a decoding step's 1, with no T in the legend)
                    ids.letters = f"({call.context[0] if self.legend.get(call.context[0]) == size else size})"
            # a lookup adds the vector to its ids' shape: a position table's rows read (T, E) even when T = B
            out = call.outputs[0]
            out.letters = f"{ids.letters[:-1]}, {out.letters[1:].split(', ')[-1]}"

    def position_note(self, ids: torch.Tensor, owner: nn.Module | None) -> str:
        """The rows a position table reads: row 0's (B, T) ids, or the ids every row shares ((T) or (1, T)).
        BART's table starts at row 2 (bart.py's POSITION_OFFSET, read from the file of the module that
        looks it up): the note gives the positions too, so that a cached step's 5 reads as position 3."""
        rows = self.legend.get("B") or 1
        shared = ids.dim() == 1 or ids.size(0) == 1 < rows  # (T), or (1, T) broadcast over B > 1 rows
        values = ids.flatten().tolist() if shared else ids[0].tolist()
        text = _runs(values) if shared else "row 0: " + _row0_runs(values, self.row0_real)
        offset = getattr(sys.modules.get(type(owner).__module__), "POSITION_OFFSET", 0)
        if offset:
            positions = [v - offset for v in values]
            text += f": position{'s' if len(values) > 1 else ''} {_runs(positions)} + the table's offset {offset}"
        if shared and rows > 1:
            text += ", for every row"
        return text

    def describe(self, name: str, value: Any, context: tuple[str, str], is_input: bool, width: str | None = None,
                 by_name: bool = False) -> list:
        """The records of an argument or output (a tuple's items one by one). width: the last dimension's
        letter by its role (shape_letters). by_name: an output whose name gave its letters (logits,
        cross_attentions): the earlier records of the same tensor, from the modules that made it and passed
        it on, get them too (the size alone gave them E, or T, where V or C, or S, has the same size)."""
        if torch.is_tensor(value):
            letters = shape_letters(tuple(value.shape), value.dtype, self.legend, *context,
                                    head_dim_last=_head_dim_last(name, value), width=width)
            if name in ("keep", "memory_keep") and value.dtype == torch.bool and value.dim() == 4:
                parts = letters[1:-1].split(", ")
                if value.size(1) == 1:  # one mask for every head, even when H is 1
                    parts[1] = "1"
                if _built_once(name, value):  # a causal mask has batch dimension 1 even when B is 1 too
                    parts[0] = "1"
                letters = f"({', '.join(parts)})"
            info = TensorInfo(name, tuple(value.shape), value.dtype, letters,
                              _mask_note(name, value, self.dtype, self.legend.get("B"), self.row0_real),
                              value.detach() if self.keep_tensors else None)
            if not is_input:
                entry = self.made.get(id(value))
                if entry is None or entry[0]() is not value:
                    entry = self.made[id(value)] = (weakref.ref(value), [])
                for earlier in entry[1] if by_name else ():
                    earlier.letters = letters
                entry[1].append(info)
            return [info]
        if isinstance(value, nn.Module):  # a module handed to another: BERT's tied MLM decoder
            weight = getattr(value, "weight", None)
            if weight is None:
                return []
            owner = self.names.get(value, ["?"])[0]
            letters = shape_letters(tuple(weight.shape), weight.dtype, self.legend, *context)
            return [TensorInfo(f"{name}.weight", tuple(weight.shape), weight.dtype, letters,
                               f"tied: the very tensor of {owner}", weight.detach() if self.keep_tensors else None)]
        if isinstance(value, (tuple, list)):
            out = []
            for i, item in enumerate(value):
                out += self.describe(f"{name}[{i}]" if name else f"[{i}]", item, context, is_input, width, by_name)
            return out
        if value is None and is_input and name in _MASK_NAMES:
            return [f"{name} None (nothing masked)"]
        if isinstance(value, int) and not isinstance(value, bool) and is_input:
            return [f"{name}={value}"]
        if type(value).__name__ == "Packing":  # unpadded BERT: the real tokens' positions
            return [f"{name}: {value.indices.numel()} real tokens of {value.batch_size} x {value.seq_len}"]
        return []


def _bind(module: nn.Module, args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
    """(argument name, value) for each argument, in the order of the forward's signature."""
    try:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return [(f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
    return list(bound.arguments.items())


def _fields(output: Any) -> list[tuple[str, Any]]:
    """(name, value) of a module's output: dataclass and NamedTuple fields by name, a bare tensor
    or a plain tuple without names."""
    if dataclasses.is_dataclass(output):
        return [(f.name, getattr(output, f.name)) for f in dataclasses.fields(output)]
    if isinstance(output, tuple) and hasattr(output, "_fields"):
        return list(zip(output._fields, output, strict=True))
    if isinstance(output, tuple):
        return [(f"[{i}]" if len(output) > 1 else "", item) for i, item in enumerate(output)]
    return [("", output)]


def _is_causal(value: torch.Tensor) -> bool:
    """A keep mask in which no query sees a later key."""
    rows, keys = value.shape[-2:]
    return rows == keys > 1 and torch.equal(value, value.tril())


def _built_once(name: str, value: torch.Tensor) -> bool:
    """A causal keep mask of batch dimension 1: built once and broadcast over the batch, whatever B is."""
    return (name in ("keep", "memory_keep") and value.dtype == torch.bool and value.dim() == 4
            and value.size(0) == 1 and _is_causal(value))


def _mask_note(name: str, value: torch.Tensor, dtype: torch.dtype, batch: int | None = None,
               row0_real: list[bool] | None = None) -> str:
    """A keep mask (True = may attend) is added to the scores as 0 / the dtype's most negative number.
    An attention mask's padding is counted over the whole batch (Trace.notes says so, with each row's
    count); segment and position ids show row 0 alone, its padding positions (row0_real) apart."""
    if value.dtype == torch.bool and name in ("keep", "memory_keep"):
        masked = int((~value).sum())
        if masked == 0:
            return "keeps every key"
        added = to_additive(value, dtype).min().item()  # what eager attention adds where keep is False
        causal = _is_causal(value)
        # batch dimension 1 with B > 1, or a causal mask (built once): one mask serves every row
        broadcast = value.dim() == 4 and value.size(0) == 1 and (causal or (batch or 1) > 1)
        shared = ", the same for every row of the batch" if broadcast else ""
        return (f"{'causal: ' if causal else ''}{masked} of {value.numel()} masked{shared}: "
                f"{added:.4g} added to their scores")
    if name in ("attention_mask", "decoder_attention_mask", "memory_attention_mask") \
            and not value.dtype.is_floating_point:
        padding = int((value == 0).sum())
        return f"{padding} padding" if padding else "no padding"
    if name in ("token_type_ids", "position_ids") and value.dim() == 2 and value.numel():
        return "row 0: " + _row0_runs(value[0].tolist(), row0_real)
    return ""


_POSITION_TABLES = ("wpe", "position_embeddings", "embed_positions")  # GPT-2's, BERT's and RoBERTa's, BART's


def _row0_real(mask: Any) -> list[bool] | None:
    """Row 0 of a (B, T) attention mask: True at its real tokens (None: no mask, nothing padded)."""
    if not torch.is_tensor(mask) or mask.dim() != 2 or mask.dtype.is_floating_point or not mask.numel():
        return None
    return mask[0].ne(0).tolist()


def _row0_runs(ids: list[int], real: list[bool] | None) -> str:
    """Row 0's ids in short, its padding positions counted apart: "5 x 0, 4 x 1, then 11 padding positions
    holding 0" (a padded BERT pair: the tokenizer gives padding segment 0, which alone would read as more of
    segment A). A mask longer than the ids (a cached step's covers the cache too) ends at the ids' positions."""
    real = real[-len(ids):] if real is not None and len(real) >= len(ids) else None
    if real is None or all(real):
        return _runs(ids)
    kept = [i for i, keep in zip(ids, real, strict=True) if keep]
    pads = [i for i, keep in zip(ids, real, strict=True) if not keep]
    padding = f"{len(pads)} padding position{'s' if len(pads) > 1 else ''} holding " + (
        str(pads[0]) if len(set(pads)) == 1 else _runs(pads))
    if not kept:
        return padding
    first = real.index(True)
    if all(real[first:]):  # left padding (GPT-2's prompts for generate)
        return f"{padding}, then {_runs(kept)}"
    if all(real[:len(kept)]):  # right padding (BERT's)
        return f"{_runs(kept)}, then {padding}"
    return f"{_runs(kept)} at its real tokens; {padding}"


def _runs(ids: list[int]) -> str:
    """Row 0 of segment or position ids, short: "7 x 0, 4 x 1" (segments), "0..14" (positions), "10"."""
    if len(ids) > 1 and ids == list(range(ids[0], ids[0] + len(ids))):
        return f"{ids[0]}..{ids[-1]}"
    runs: list[list[int]] = []
    for i in ids:
        if runs and runs[-1][0] == i:
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
    return ", ".join(f"{count} x {value}" if count > 1 else str(value) for value, count in runs)


def _function_call(recorder: _Recorder, suffix: str, kind: str, source: str) -> ModuleCall:
    """The record of a function called inside the running module (named after it, one level deeper)."""
    parent = recorder.running[-1] if recorder.running else None
    return ModuleCall(index=len(recorder.calls), depth=len(recorder.running),
                      name=f"{parent.name}.{suffix}" if parent is not None else suffix, kind=kind, source=source,
                      context=parent.context if parent is not None else ("T", "T"))


def _watch_attend(recorder: _Recorder, attend_fn):
    """`attend` (nn/attention.py) is a function, not a module, so no hook sees it; this wrapper records
    its call under the attention module that made it: the queries, keys and values split into heads
    (B, H, T, D), the mask, and what comes back, which the module's own line cannot show."""
    source = _source_of_function(attend_fn)

    def attend(q, k, v, keep, **options):
        call = _function_call(recorder, "attend", "function", source)
        seq, key_seq = call.context
        call.inputs += recorder.describe("q", q, (seq, seq), is_input=True)
        for name, value in (("k", k), ("v", v)):
            call.inputs += recorder.describe(name, value, (key_seq, key_seq), is_input=True)
        call.inputs += recorder.describe("keep", keep, (seq, key_seq), is_input=True)
        call.inputs.append(f"implementation={options.get('implementation')}")
        # the dropout on the probabilities happens inside attend, so no Dropout line shows it: its p is
        # the calling module's, and it drops only in training (this call passes dropout_p)
        owner = recorder.modules[-1] if recorder.modules else None
        configured = getattr(owner, "dropout", None)
        if isinstance(configured, float):
            active = options.get("dropout_p", 0.0)
            off = " (off: eval mode)" if configured and not active else ""
            call.inputs.append(f"probs dropout p={configured}{off}")
        recorder.calls.append(call)
        out, probs = attend_fn(q, k, v, keep, **options)
        call.outputs += recorder.describe("output", out, (seq, seq), is_input=False)
        call.outputs += recorder.describe("probs", probs, (seq, key_seq), is_input=False)
        return out, probs

    return attend


def _watch_logits(recorder: _Recorder, method, owner: str):
    """GPT-2's and BART's logits come from a method, `lm_logits` (h @ the token table^T, + BART's
    final_logits_bias), not from a module, so no hook sees them either: this wrapper gives each call a line."""
    source = _source_of_function(method)

    def lm_logits(h):
        call = _function_call(recorder, "lm_logits", f"method of {owner}", source)
        call.inputs += recorder.describe("h", h, call.context, is_input=True)
        recorder.calls.append(call)
        out = method(h)
        call.outputs += recorder.describe("logits", out, call.context, is_input=False, width="V")
        return out

    return lm_logits


def _watch_activation(recorder: _Recorder, activation):
    """A feed-forward's (or head's) activation is a plain function (nn/feed_forward.py), so no hook sees
    it either; this wrapper gives it a line of its own between the two linear layers around it."""
    source = _source_of_function(activation)

    def act(x):
        call = _function_call(recorder, "act", f"function {activation.__name__}", source)
        owner = recorder.modules[-1] if recorder.modules else None
        width = "F" if isinstance(owner, FeedForward) else None  # (B, T, F) inside a feed-forward, even when F = E
        call.inputs += recorder.describe("x", x, call.context, is_input=True, width=width)
        recorder.calls.append(call)
        out = activation(x)
        call.outputs += recorder.describe("", out, call.context, is_input=False, width=width)
        return out

    return act


@contextmanager
def recording(model: nn.Module, legend: dict[str, int], keep_tensors: bool = False,
              logits: bool = False) -> Iterator[list[ModuleCall]]:
    """Hooks on every module of `model` while the block runs, `attend` wrapped in every minibert
    module that calls it, and every module's activation function wrapped (all restored afterwards);
    yields the list the calls go into. logits=True wraps the model's `lm_logits` method too (GPT-2, BART):
    `generate` calls it on the decoder's output outside any module, so nothing else would show the logits."""
    recorder = _Recorder(model, legend, keep_tensors)
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(recorder.before, with_kwargs=True))
        handles.append(module.register_forward_hook(recorder.after, with_kwargs=True))
    callers = [m for name, m in list(sys.modules.items())  # nn/attention.py is one of them
               if name.startswith("minibert.") and getattr(m, "attend", None) is _PLAIN_ATTEND]
    watched = _watch_attend(recorder, _PLAIN_ATTEND)
    for caller in callers:
        caller.attend = watched
    activations = {m: m.act for m in model.modules() if getattr(m, "act", None) in ACTIVATIONS.values()}
    for module, activation in activations.items():
        module.act = _watch_activation(recorder, activation)
    head = model.lm_logits if logits and hasattr(model, "lm_logits") else None
    earlier = vars(model).get("lm_logits")  # an instance attribute already there (a recording around this one)
    if head is not None:
        model.lm_logits = _watch_logits(recorder, head, type(model).__name__)  # over the class's method
    try:
        yield recorder.calls
    finally:
        if head is not None:
            del model.lm_logits
            if earlier is not None:
                model.lm_logits = earlier
        for handle in handles:
            handle.remove()
        for caller in callers:
            caller.attend = _PLAIN_ATTEND
        for module, activation in activations.items():
            module.act = activation


# --------------------------------------------------------------------------------------------
# One forward pass
# --------------------------------------------------------------------------------------------
def _is_encoder_decoder(model: nn.Module) -> bool:
    return hasattr(getattr(model, "base_model", model), "decoder")


def _legend_for_inputs(model: nn.Module, inputs: dict) -> dict[str, int]:
    def batch(key: str) -> torch.Tensor | None:  # (B, T) ids; anything else is left to the model's own check
        value = inputs.get(key)
        return value if torch.is_tensor(value) and value.dim() == 2 else None

    ids = batch("input_ids")
    # BART reads labels shifted right when no decoder_input_ids are given (then input_ids, shifted)
    target = next((batch(k) for k in ("decoder_input_ids", "labels") if batch(k) is not None), None)
    if _is_encoder_decoder(model):
        tokens = target.size(1) if target is not None else (ids.size(1) if ids is not None else None)
        return shape_legend(model, ids.size(0) if ids is not None else None, tokens,
                            ids.size(1) if ids is not None else None)
    return shape_legend(model, ids.size(0), ids.size(1)) if ids is not None else shape_legend(model)


def _tied_notes(model: nn.Module, legend: dict[str, int]) -> list[str]:
    """An LM head with no weight of its own multiplies by the input embedding: say so once."""
    if not hasattr(model, "get_input_embeddings") or "V" not in legend:
        return []
    own = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == legend["V"]]
    heads = [n for n, m in model.named_modules() if n and not isinstance(m, nn.Embedding) and n.endswith("head")]
    lm = hasattr(model, "lm_logits") or any("mlm" in n or "lm_head" in n for n in heads)
    if own or not lm:
        return []
    embedding = model.get_input_embeddings()
    name = next(n for n, m in model.named_modules() if m is embedding)
    # BERT's LM head has a bias of its own, BART a final_logits_bias; GPT-2 none. Not a layer's bias
    # that happens to have V entries: the owner must be no Linear or LayerNorm.
    modules = dict(model.named_modules())
    tensors = [*model.named_parameters(), *model.named_buffers()]  # final_logits_bias is a buffer
    bias = next(((n, t) for n, t in tensors if n.endswith("bias") and t.numel() == legend["V"]
                 and not isinstance(modules[n.rpartition(".")[0]], nn.Linear | nn.LayerNorm)), None)
    if bias is None:
        added = " (no bias)"
    else:  # BART's is a (1, V) buffer of zeros, not a parameter: say which
        bias_name, tensor = bias
        shape = ", ".join("V" if size == legend["V"] else str(size) for size in tensor.shape)
        kind = " buffer" if any(n == bias_name for n, _ in model.named_buffers()) else ""
        added = f" + {bias_name} ({shape}) {_SHORT_DTYPES.get(tensor.dtype, str(tensor.dtype))}{kind}"
    return [f"the output layer is tied: logits (.., V) = h (.., E) @ {name}.weight^T (V, E){added}, so the V x E "
            "matrix is stored once"]


@torch.no_grad()
def trace(model: nn.Module, keep_tensors: bool = False, **inputs) -> Trace:
    """Run `model(**inputs)` and record every module call (see the module docstring); a decoder's cache is not
    asked for unless `use_cache` is given. keep_tensors=True keeps each input and output tensor in its record
    (memory: a whole forward)."""
    legend = _legend_for_inputs(model, inputs)
    if "use_cache" not in inputs and "use_cache" in inspect.signature(model.forward).parameters:
        # GPT-2 and BART return their key/value cache by default, as Hugging Face's do: in a trace of one forward
        # pass it would be every layer's keys and values again; trace_generation shows the cache, step by step
        inputs = {**inputs, "use_cache": False}
    with recording(model, legend, keep_tensors) as calls:
        output = model(**inputs)
    return Trace(calls, legend, output, _tied_notes(model, legend) + _padding_notes(inputs.get("attention_mask")))


def _padding_notes(mask: Any) -> list[str]:
    """Several rows: a mask's "[N padding]" counts them all, while the ids' "[row 0: ...]" is row 0's (BERT's
    pair: 11 padding of row 0 read as 11 more tokens of segment 0). Say which is which, with each row's count."""
    if not torch.is_tensor(mask) or mask.dim() != 2 or mask.size(0) < 2 or mask.dtype.is_floating_point:
        return []
    per_row = mask.eq(0).sum(1).tolist()
    if not any(per_row):
        return []
    return [f"a mask's [N padding] counts the whole batch (per row: {', '.join(map(str, per_row))}); "
            "[row 0: ...] shows row 0 alone, its padding positions apart"]


# --------------------------------------------------------------------------------------------
# Generation: one layer's cache, step by step
# --------------------------------------------------------------------------------------------
@dataclass
class GenerationStep:
    step: int
    decoder: ModuleCall  # the decoder stack's call (GPT2Model, BartDecoder)
    attention: list[ModuleCall]  # the watched layer's attention calls (self, and cross for BART), each
    #                              followed by its `attend` call: after step 0, q (B, H, 1, D) against the cached k, v
    token: int | None = None  # the token this step chose (row 0)
    # the decoder's calls before its first layer, dropout left out: GPT-2's wte and wpe; BART's embeddings,
    # the shared token table (model.shared, looked up through embed_tokens), embed_positions, layernorm_embedding
    embeddings: list[ModuleCall] = field(default_factory=list)
    logits: ModuleCall | None = None  # lm_logits, a method (no hook sees it): h (B, E) of the last position -> (B, V)


@dataclass
class GenerationTrace:
    steps: list[GenerationStep]
    legend: dict[str, int]
    sequences: torch.Tensor  # what generate returned
    encoder: ModuleCall | None = None  # BART: the source is encoded once, before the first step
    notes: list[str] = field(default_factory=list)

    def format(self, token_text=None) -> str:
        """The steps, one block each. token_text: a token id -> its text (tokenizer.token_texts([i])[0], as the
        tracer passes), shown beside each chosen id; without one, the ids alone."""
        lines = ["shapes: " + legend_text(self.legend) + " (cache lengths are numbers: they change per step)"]
        if self.encoder is not None:
            lines.append("encode the source once: " + self.encoder.line().strip())
        whose = "row 0's " if self.sequences.size(0) > 1 else ""  # several prompts: the token of the first
        lengths = self.cache_lengths("self")
        static = len(lengths) > 1 and len(set(lengths)) == 1
        cross = self.cache_lengths("cross") if self.encoder is not None else None
        for step in self.steps:
            text = f" {token_text(step.token)!r}" if token_text is not None else ""
            chose = f" -> {whose}token {step.token}{text}" if step.token is not None else ""
            first = "the decoder's start token" if self.encoder is not None else "the prompt"  # BART: source encoded
            what = f"{first}, which fills the cache" if step.step == 0 else "one new token, on the cache"
            cache = f"{lengths[step.step]}{' slots (static)' if static else ''}"
            cache = f"self {cache}, cross {cross[step.step]}" if cross is not None else cache
            lines.append(f"step {step.step} ({what}){chose}; cache length after it: {cache}")
            lines.append("  " + step.decoder.line().strip())
            depth = step.decoder.depth  # the embeddings' calls nested under it as they ran
            lines += ["  " * (call.depth - depth + 1) + call.line().strip() for call in step.embeddings]
            lines += [("      " if call.kind == "function" else "    ") + call.line().strip()  # attend: one deeper
                      for call in step.attention]
            if step.logits is not None:  # called by generate on the decoder's output, beside the decoder
                lines.append("  " + step.logits.line().strip())
        lines.append("self-attention cache length after each step: " + ", ".join(str(n) for n in lengths)
                     + (" (a static cache: every slot allocated before step 0, the ones not yet written masked)"
                        if static else ""))
        if self.encoder is not None:
            lines.append("cross-attention cache length after each step: "
                         + ", ".join(str(n) for n in self.cache_lengths("cross"))
                         + " (the source's keys/values, projected once and reused)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def cache_lengths(self, which: str = "self") -> list[int]:
        """Length of the watched layer's key cache after each step ("self" or BART's "cross")."""
        lengths = []
        for step in self.steps:
            call = next(c for c in step.attention
                        if c.kind != "function" and c.name.endswith("encoder_attn") == (which == "cross"))
            # by role, not by size: the 4-D outputs that are not attention probabilities (a BART decoder may
            # have another head count, so another head dim, than the legend's, which is the encoder's)
            cache = [o for o in call.outputs if o.dtype.is_floating_point and len(o.shape) == 4
                     and o.name.split("[")[0] not in _KEY_LENGTH_NAMES]
            lengths.append(cache[0].shape[2])
        return lengths


def _decoder_stack(model: nn.Module) -> tuple[str, nn.Module]:
    base = model.base_model
    stack = getattr(base, "decoder", base)  # BART's decoder, or GPT-2's whole model
    name = next(n for n, m in model.named_modules() if m is stack)
    return name, stack


def check_layer(layer: int, count: int) -> None:
    """The decoder layer trace_generation watches, counted from 0 (inspect checks it against config.json
    before the weights load)."""
    if not 0 <= layer < count:
        raise ValueError(f"layer {layer} does not exist: the decoder has layers 0 to {count - 1}")


@torch.no_grad()
def trace_generation(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     max_new_tokens: int = 3, layer: int = 0, **generate_kwargs) -> GenerationTrace:
    """Greedy `generate` under hooks (one beam, one sequence, no sampling, no forced bos/eos, no repetition
    penalty or banned n-grams: each step's token is the model's own first choice, whatever decoding the
    checkpoint's generation config asks for). For each step: the decoder's call, its embedding calls
    (GPT-2's wte and wpe, BART's embeddings), the attention calls of decoder layer `layer` (counted from 0,
    with their `attend` calls), and the logits generate computes from the last position's state
    (lm_logits, (B, V)). The layer's key/value cache grows by one position per step (with
    cache_implementation="static": keeps its preallocated length, the unwritten slots masked; BART's
    cross-attention cache keeps the source length). Step 0 is the prompt's pass, which fills the cache;
    each later step runs one new token on it, so max_new_tokens tokens take max_new_tokens - 1 cached
    steps. An eos token does not stop it (all steps are shown) unless eos_token_id is passed."""
    if not hasattr(model, "generate"):
        raise ValueError(f"{type(model).__name__} does not generate; use GPT2LMHeadModel or "
                         "BartForConditionalGeneration (a checkpoint saved from one of them)")
    stack_name, stack = _decoder_stack(model)
    check_layer(layer, len(getattr(stack, "h", None) or stack.layers))
    encoder_decoder = getattr(model, "is_encoder_decoder", False)
    ids = input_ids if torch.is_tensor(input_ids) and input_ids.dim() == 2 else None  # else generate says what is wrong
    legend = shape_legend(model, ids.size(0) if ids is not None else None, None,
                          ids.size(1) if ids is not None and encoder_decoder else None)
    with recording(model, legend, logits=True) as calls:
        sequences = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                                   **{"eos_token_id": [], "num_beams": 1, "do_sample": False,
                                      "forced_bos_token_id": None, "forced_eos_token_id": None,
                                      "num_return_sequences": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                                      **generate_kwargs})
    layers_prefix = f"{stack_name}.{'h' if hasattr(stack, 'h') else 'layers'}."
    prefix = f"{layers_prefix}{layer}."
    steps: list[GenerationStep] = []
    embedding = False  # between the decoder's start and its first layer
    for call in calls:
        if call.name == stack_name:
            steps.append(GenerationStep(len(steps), call, []))
            embedding = True
        elif call.name.startswith(layers_prefix) or call.depth <= (steps[-1].decoder.depth if steps else 0):
            embedding = False
        if embedding and call is not steps[-1].decoder and call.kind != "Dropout":
            steps[-1].embeddings.append(call)
        elif steps and call.name == "lm_logits" and call.kind.startswith("method"):
            steps[-1].logits = call
        elif steps and call.name.startswith(prefix) and (
                call.kind.endswith("Attention") and call.name[len(prefix):].count(".") == 0
                or call.name.endswith(".attend") and call.name[len(prefix):].count(".") == 1):  # its `attend`
            steps[-1].attention.append(call)
    for step in steps:  # generate reads the last position only: say so where the decoder returned more
        hidden = next((o for o in step.decoder.outputs if o.name == "last_hidden_state"), None)
        if step.logits is not None and hidden is not None and len(hidden.shape) == 3 and hidden.shape[1] > 1 \
                and len(step.logits.inputs[0].shape) == 2:
            step.logits.outputs[0].note = f"the last of the {hidden.shape[1]} positions only"
    start = sequences.size(1) - len(steps)  # position of the first generated token
    for step in steps:
        step.token = int(sequences[0, start + step.step]) if start + step.step < sequences.size(1) else None
    encoder = next((c for c in calls if c.name.endswith("encoder") and c.kind.endswith("Encoder")), None)
    return GenerationTrace(steps, legend, sequences, encoder, _padding_notes(attention_mask))


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------
def _figure(width: float, height: float):
    """A matplotlib Figure without pyplot: no global state, no display backend needed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("the pictures need matplotlib: pip install -e '.[plot]'") from None
    return Figure(figsize=(width, height), layout="constrained")


# Fonts tried first for characters the default font lacks (CJK above all); any other installed font that has them
# comes next. Not matplotlib's "Last Resort", whose glyphs are placeholder boxes for every character.
_PREFERRED_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC",
                    "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback", "SimHei", "Microsoft YaHei",
                    "PingFang SC", "Hiragino Sans GB", "AR PL UMing CN")


@cache
def _font_characters(path: str) -> frozenset[int]:
    """The code points a font file has glyphs for (none, for a file FreeType cannot read)."""
    from matplotlib import ft2font

    try:
        return frozenset(ft2font.FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):  # a damaged or unsupported file in the font list
        return frozenset()


def _tick_labels(tokens: list[str]) -> tuple[list[str], dict]:
    """(labels, the Text keywords that draw them: a font family list, or none) for the pictures' token labels.
    matplotlib's default font (DejaVu Sans) has no Chinese: each such label was an empty box, with a warning per
    character. So the first installed font that has every missing character is put behind the default one
    (matplotlib falls back along the list); where none has them, each missing character is written as its code
    point (U+5E8A), said once."""
    from matplotlib import font_manager

    default = font_manager.findfont(font_manager.FontProperties())
    missing = {c for t in tokens for c in t if not c.isspace() and ord(c) not in _font_characters(default)}
    if not missing:
        return tokens, {}
    rank = {name: n for n, name in enumerate(_PREFERRED_FONTS)}  # the preferred in their order, then the others
    fonts = sorted((f for f in font_manager.fontManager.ttflist if not f.name.startswith("Last Resort")),
                   key=lambda f: (rank.get(f.name, len(rank)), f.name))
    for font in fonts:
        if all(ord(c) in _font_characters(font.fname) for c in missing):
            return tokens, {"fontfamily": [font_manager.FontProperties(fname=default).get_name(), font.name]}
    _say_no_font(frozenset(missing))
    return ["".join(f"U+{ord(c):04X}" if c in missing else c for c in t) for t in tokens], {}


@cache
def _say_no_font(missing: frozenset[str]) -> None:
    """The warning, once per set of characters (the two pictures of one command share their labels)."""
    from matplotlib import get_cachedir

    shown = "".join(sorted(missing)[:8]) + ("..." if len(missing) > 8 else "")
    logger.warning("no installed font has %s, so the picture labels them by code point (U+XXXX); install one that "
                   "does (Chinese: Noto Sans CJK, e.g. apt install fonts-noto-cjk), then delete matplotlib's font "
                   "list, %s/fontlist-*.json, which it reads instead of looking again", shown, get_cachedir())


def _stack_outputs(model: nn.Module, inputs: dict):
    """(attentions, hidden states) of the stack that reads the text: BART's encoder, else the model.
    A left-padded GPT-2 batch (inspect --generate's) gets positions counted over real tokens, as
    generate gives them, so each row is drawn as it was generated from."""
    mask = inputs.get("attention_mask")
    if hasattr(model.base_model, "wpe") and mask is not None and "position_ids" not in inputs \
            and not bool(mask[:, 0].all()):
        inputs = {**inputs, "position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0)}  # (B, T)
    if "output_attentions" not in inspect.signature(model.forward).parameters:
        # a classifier around an encoder (train.py's --pooling heads, ladder, multi-task): the encoder's maps
        model, inputs = model.base_model, {k: v for k, v in inputs.items() if k != "task"}
    with torch.no_grad():
        out = model(**inputs, output_attentions=True, output_hidden_states=True)
    if hasattr(out, "encoder_attentions"):
        return out.encoder_attentions, out.encoder_hidden_states
    return out.attentions, out.hidden_states


def attention_maps(model: nn.Module, **inputs) -> torch.Tensor:
    """Attention probabilities of every layer, (L, B, H, T, T): rows are queries, columns keys."""
    attentions, _ = _stack_outputs(model, inputs)
    return torch.stack(attentions)


def _real_tokens(inputs: dict, row: int) -> torch.Tensor:
    mask = inputs.get("attention_mask")
    T = inputs["input_ids"].size(1)
    return mask[row].bool() if mask is not None else torch.ones(T, dtype=torch.bool)


# The attention picture's longer side at most, in inches (8,000 pixels at dpi 100): at 0.22 inch a token, bert-base's
# 12 x 12 heads over 128 tokens asked for 33,892 x 33,892 pixels, 4.6 GB to draw
_MOST_GRID_INCHES = 80.0


def plot_attention(model: nn.Module, inputs: dict, tokens: list[str], path, row: int = 0, generated: int = 0) -> None:
    """A grid of layers x heads; each cell is one head's (T, T) attention over the real tokens of
    batch row `row`, queries down, keys across. BART: the encoder's self-attention. generated: how many
    tokens a generate of the same inputs made (inspect --generate): the title says they are not drawn."""
    attentions, _ = _stack_outputs(model, inputs)
    real = _real_tokens(inputs, row)
    tokens = [t for t, keep in zip(tokens, real.tolist(), strict=True) if keep]
    L, H = len(attentions), attentions[0].size(1)
    # each head's square: 0.22 inch a token (its label readable), but the whole grid at most _MOST_GRID_INCHES a side;
    # in a smaller square every k-th token is labelled (a label at fontsize 7 needs about 0.11 inch)
    cell = min(max(1.6, 0.22 * len(tokens)), _MOST_GRID_INCHES / max(L, H))
    every = max(1, math.ceil(0.11 * len(tokens) / cell))
    tokens, font = _tick_labels(tokens)
    ticks, labels = range(0, len(tokens), every), tokens[::every]
    fig = _figure(cell * H + 1, cell * L + 1)
    axes = fig.subplots(L, H, squeeze=False)
    for layer, probs in enumerate(attentions):
        grid = probs[row][:, real][:, :, real]  # (H, T_real, T_real)
        for head in range(H):
            ax = axes[layer][head]
            image = ax.imshow(grid[head].float().numpy(), vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_xticks(ticks, labels if layer == L - 1 else [], rotation=90, fontsize=7, **font)
            ax.set_yticks(ticks, labels if head == 0 else [], fontsize=7, **font)
            ax.set_title(f"layer {layer} head {head}", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="probability")  # one scale, 0 to 1, for every cell
    fig.suptitle(f"{_which_attention(model)} probabilities, batch row {row}: query (row) -> key (column)"
                 f"{_not_generated(model, generated)}", fontsize=9, wrap=True)
    fig.savefig(path, dpi=100, format="png")  # without format, a path with no extension gets ".png" added


def _which_attention(model: nn.Module) -> str:
    """Which attention the picture shows: BART's encoder reads the text (its decoder's and the cross-
    attention are not drawn), GPT-2's heads see only earlier tokens."""
    if _is_encoder_decoder(model):
        return "the encoder's self-attention"
    return "causal self-attention" if hasattr(model.base_model, "wpe") else "self-attention"


def _not_generated(model: nn.Module, generated: int) -> str:
    """What a picture of one forward pass over the inputs leaves out after inspect --generate."""
    if not generated:
        return ""
    tokens = f"the {generated} generated token{'s' if generated > 1 else ''}"
    if _is_encoder_decoder(model):  # the title says already that the picture is the encoder's
        return f"; {tokens} are not in it"
    return f"; one forward pass over the prompt: {tokens} are not in it"


def _which_hidden_states(model: nn.Module) -> str:
    """Whose hidden states the picture shows: BART's encoder's (over the source), not the decoder's."""
    if _is_encoder_decoder(model):
        return "the encoder's hidden states (over the source text; the decoder's are not drawn)"
    return "hidden states"


def plot_hidden_states(model: nn.Module, inputs: dict, tokens: list[str], path, row: int = 0,
                       generated: int = 0) -> None:
    """Each token's vector through the layers: its norm (left), and its cosine similarity to the
    same token's vector one layer below (right: 1 = the layer changed little). BART: the encoder's.
    generated: as plot_attention's."""
    _, hidden_states = _stack_outputs(model, inputs)
    real = _real_tokens(inputs, row)
    tokens = [t for t, keep in zip(tokens, real.tolist(), strict=True) if keep]
    tokens, font = _tick_labels(tokens)
    h = torch.stack([x[row][real] for x in hidden_states]).float()  # (L + 1, T_real, E)
    norms = h.norm(dim=-1)  # (L + 1, T_real)
    cosine = torch.nn.functional.cosine_similarity(h[1:], h[:-1], dim=-1)  # (L, T_real)
    fig = _figure(max(6.0, 0.7 * len(tokens) + 2), 0.5 * len(h) + 2.5)
    left, right = fig.subplots(1, 2)
    layer_names = ["embeddings"] + [f"layer {i}" for i in range(len(h) - 1)]
    if hasattr(model.base_model, "ln_f"):  # GPT-2 (pre-LN): the last state is after the final LayerNorm, as in
        layer_names[-1] += " + ln_f"  # Hugging Face, so that row shows what ln_f does too
    panels = ((left, norms, "norm of h", layer_names),
              (right, cosine, "cosine(h, h one layer below)", layer_names[1:]))  # row i: what layer i changed
    for ax, values, title, rows in panels:
        image = ax.imshow(values.numpy(), aspect="auto", cmap="magma")
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7, **font)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"{_which_hidden_states(model)}, batch row {row}{_not_generated(model, generated)}", fontsize=9,
                 wrap=True)
    fig.savefig(path, dpi=100, format="png")  # without format, a path with no extension gets ".png" added


__all__ = ["GenerationTrace", "ModuleCall", "TensorInfo", "Trace", "attention_maps", "plot_attention",
           "plot_hidden_states", "recording", "shape_legend", "shape_letters", "trace", "trace_generation"]

"""Reading and writing Hugging Face checkpoints, and renaming their weights by explicit tables.

A Hugging Face model directory holds `config.json` and the weights in one of three forms:
`model.safetensors`, `pytorch_model.bin` (a pickled state dict, loaded with weights_only=True),
or several shards listed by `model.safetensors.index.json` / `pytorch_model.bin.index.json`.

Every model family describes its weight names with a `WeightMap`: pairs of templates
(minibert name, Hugging Face name) where `{}` stands for the layer index, e.g.

    ("layers.{}.attention.q_proj.weight", "encoder.layer.{}.attention.self.query.weight")

The same table is read left-to-right to save and right-to-left to load, so the two directions
cannot drift apart. Keys of the base model are written without the family prefix (`bert.`,
`transformer.`, `model.`); `PreTrainedModel` adds or strips the prefix as the class needs.
"""

import glob
import json
import math
import os
import pickle
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"  # generate's defaults, when a checkpoint stores them
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_INDEX_NAME = "model.safetensors.index.json"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"
TORCH_INDEX_NAME = "pytorch_model.bin.index.json"
# What train.py saves that config.json alone does not describe, and only minibert.finetuning.load_finetuned
# rebuilds. The names live here, below both, so that load_pretrained can recognise (and refuse) such a directory.
POOLED_CLASSIFIER_KEY = "minibert_pooled_classifier"  # a config.json key: --pooling (head.safetensors beside)
MULTITASK_KEY = "minibert_multitask"  # a config.json key: --multitask (task_heads.safetensors beside)
BESIDE_BASE_FILE = "beside_base.json"  # --adapter_size / --ladder_side_tuning: trained parts, no config.json
NEW_ENCODER_DIR, NEW_ENCODER_SETTINGS = "new_encoder", "front.json"  # --new_encoder_vocab: BART's new front

_LAYER_INDEX = re.compile(r"\.(\d+)\.")
# TF-era checkpoints call LayerNorm parameters gamma/beta; Hugging Face renames them on load too.
_LEGACY_SUFFIXES = {"LayerNorm.gamma": "LayerNorm.weight", "LayerNorm.beta": "LayerNorm.bias"}


def _template(key: str) -> tuple[str, str | None]:
    """'h.3.attn.c_attn.weight' -> ('h.{}.attn.c_attn.weight', '3')."""
    m = _LAYER_INDEX.search(key)
    if m is None:
        return key, None
    return key[: m.start()] + ".{}." + key[m.end() :], m.group(1)


@dataclass(frozen=True)
class WeightMap:
    """minibert <-> Hugging Face weight names for one model family.

    base:       (ours, theirs) templates of the base model, written without the family prefix.
    heads:      (ours, theirs) templates of task heads, relative to the head model's root.
    transposed: our templates whose Hugging Face tensor is stored transposed (GPT-2's Conv1D);
                each is shape-checked before it is transposed.
    dropped:    regexes of Hugging Face keys that carry no weights we need (buffers such as
                `embeddings.position_ids`, or tied copies that the model recreates: BART's
                `encoder.embed_tokens` / `decoder.embed_tokens` and `lm_head` are `shared`). Loading
                skips them without comparing them to what they copy (Hugging Face re-ties them on
                load the same way); saving never writes them (our state dict holds one copy), and
                Hugging Face recreates them when it loads the file.
    aliases:    (another name, the name read) of Hugging Face keys: a checkpoint written by another tool
                may hold a tied tensor only under its copy's name (BERT's MLM bias as
                `cls.predictions.decoder.bias`); it is read under the name the table knows when that
                one is absent.
    """

    base: tuple[tuple[str, str], ...]
    heads: tuple[tuple[str, str], ...] = ()
    transposed: frozenset[str] = frozenset()
    dropped: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()
    _to_ours: dict = field(init=False, repr=False, compare=False)
    _to_theirs: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        to_ours, to_theirs = {}, {}
        for part, pairs in (("base", self.base), ("head", self.heads)):
            for ours, theirs in pairs:
                to_ours[theirs] = (ours, part)
                to_theirs[ours] = (theirs, part)
        object.__setattr__(self, "_to_ours", to_ours)
        object.__setattr__(self, "_to_theirs", to_theirs)

    def resolve_aliases(self, hf_state: dict) -> dict:
        """`hf_state` with each alias renamed to the name the table reads, where that name is absent. Two aliases
        of one name (BART's encoder and decoder copies, without `shared`) must hold the same tensor: read as
        one, a checkpoint that trained them apart would lose one side's silently."""
        state, filled_from = dict(hf_state), {}
        for alias, name in self.aliases:
            if alias in state and name not in state:
                state[name] = state.pop(alias)
                filled_from[name] = alias
            elif alias in state and name in filled_from and not torch.equal(state[alias], state[name]):
                raise ValueError(f"{filled_from[name]} and {alias} differ, and this model holds both as {name} (one "
                                 "tensor): the checkpoint was trained with them untied, which minibert cannot hold")
        return state

    def is_dropped(self, hf_key: str) -> bool:
        return any(re.fullmatch(p, hf_key) for p in self.dropped)

    def to_ours(self, hf_key: str) -> tuple[str, str] | None:
        """Hugging Face key (prefix already stripped) -> (our key, 'base' | 'head'), or None."""
        tmpl, idx = _template(hf_key)
        hit = self._to_ours.get(tmpl)
        if hit is None:
            return None
        ours, part = hit
        return (ours.replace("{}", idx, 1) if idx is not None else ours), part

    def to_theirs(self, our_key: str) -> tuple[str, str] | None:
        """Our key (prefix already stripped) -> (Hugging Face key, 'base' | 'head'), or None."""
        tmpl, idx = _template(our_key)
        hit = self._to_theirs.get(tmpl)
        if hit is None:
            return None
        theirs, part = hit
        return (theirs.replace("{}", idx, 1) if idx is not None else theirs), part

    def is_transposed(self, our_key: str) -> bool:
        return _template(our_key)[0] in self.transposed


def weight_and_bias(ours: str, theirs: str) -> tuple[tuple[str, str], ...]:
    """The two rows of a layer with a weight and a bias (Linear, LayerNorm) in a rename table."""
    return ((f"{ours}.weight", f"{theirs}.weight"), (f"{ours}.bias", f"{theirs}.bias"))


def normalize_legacy_key(key: str) -> str:
    for old, new in _LEGACY_SUFFIXES.items():
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def load_torch_file(file: Path, instead: str = "restore the file, or write it again") -> Any:
    """torch.load with weights_only=True: a file holding anything but tensors and plain Python
    values (a pickled callable, an object whose reduce runs a command) is refused unopened, and a
    truncated or corrupt one gets one error naming it; `instead` says what to do then."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message goes on to suggest weights_only=False; keep only the line naming the culprit
        culprit = next((line.strip() for line in str(error).splitlines() if "unsupported global" in line.lower()),
                       None)  # "Unsupported global: ..." or "... unsupported GLOBAL posix.system whose module ..."
        if culprit is None:
            raise ValueError(f"{file} is corrupt, or was not written by torch.save ({_unpickler_reason(error)}); "
                             f"{instead}") from None
        raise ValueError(
            f"{file} holds objects other than tensors and plain Python values ({culprit}); refusing to "
            f"load it, since unpickling them could run arbitrary code; {instead}"
        ) from None
    except Exception as error:  # torch raises RuntimeError, EOFError, OSError or KeyError for a cut file
        reason = str(error).split(". ")[0] or type(error).__name__
        raise ValueError(f"{file} is truncated or corrupt ({reason}); {instead}") from error


def _unpickler_reason(error: Exception) -> str:
    """The line of torch's weights-only error that names the fault ("Unsupported operand 149": a plain pickle,
    not torch.save's format), not its closing line, which only points at torch.load's documentation."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    after = next((i + 1 for i, line in enumerate(lines) if "WeightsUnpickler error" in line), None)
    if after is not None and after < len(lines) and not lines[after].startswith("Check the documentation"):
        return lines[after]
    return lines[-1] if lines else type(error).__name__


def read_json_object(file: Path) -> dict:
    """A JSON file that must hold one object ({...}), or a ValueError naming the file and the fault."""
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{file} is not valid JSON ({error}); it is damaged or not what its name says: restore it "
            "from where the model came from, or write it again (save_pretrained)"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{file} holds a JSON {type(data).__name__}, not an object {{...}}; restore it from where the "
            "model came from, or write it again (save_pretrained)"
        )
    return data


def beside_base_message(path: str | os.PathLike) -> str | None:
    """What a directory that train.py saved beside its base (--adapter_size, --ladder_side_tuning: no config.json,
    only the parameters it trained) is, and what to do with it; None for any other directory. train.py
    --model_name_or_path and pretrain.py --init_from said only "no config.json" of it."""
    record_file = Path(path) / BESIDE_BASE_FILE
    if (Path(path) / CONFIG_NAME).is_file() or not record_file.is_file():
        return None
    try:
        base = read_json_object(record_file).get("base_model")
    except ValueError:
        base = None
    base = f"{base}, which {BESIDE_BASE_FILE} names" if isinstance(base, str) else f"named in {BESIDE_BASE_FILE}"
    return (f"{path} holds only the parameters an --adapter_size / --ladder_side_tuning run trained (no config.json "
            f"of its own), saved beside their base checkpoint {base}; to train further, start from that base "
            f"(train.py --model_name_or_path, pretrain.py --init_from: the trained parameters are not carried over), "
            f"and to predict with it, load it with minibert.finetuning.load_finetuned({str(path)!r})")


def read_config_dict(path: str | os.PathLike) -> dict:
    path = Path(path)
    config_file = path / CONFIG_NAME
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory; pass the folder that holds config.json and the weights")
    if not config_file.is_file():
        beside_base = beside_base_message(path)
        if beside_base is not None:
            raise ValueError(beside_base)
        training_state = (path / "model_state.pt").is_file()  # engine/checkpointing.py's MODEL_FILE
        raise ValueError(
            f"{path} has no config.json, so it is not a Hugging Face checkpoint directory; "
            + (f"it is a training checkpoint, train.py's checkpoint-N (for --resume_from_checkpoint): pass the run's "
               f"output directory, {path.parent}, once the run has finished" if training_state else
               "pass the folder written by save_pretrained (config.json + model.safetensors)")
        )
    return read_json_object(config_file)


def _load_file(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix != ".safetensors":
        return _check_state_dict(file, load_torch_file(file, instead="restore it from where the model came from"))
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except SafetensorError as error:
        raise ValueError(
            f"{file} is truncated or corrupt ({error}); restore it from where the model came from, "
            "or write it again (save_pretrained)"
        ) from None


def _check_state_dict(file: Path, state: Any) -> dict[str, torch.Tensor]:
    """A .bin file unpickles to any plain value: it must be a state dict (names -> tensors), or the loader
    would fail far from here (a list: "'Tensor' object has no attribute 'startswith'")."""
    if not isinstance(state, dict):
        raise ValueError(f"{file} holds a value of type {type(state).__name__}, not a state dict (tensor names -> "
                         "tensors); a weights file is written by torch.save(model.state_dict()) or save_pretrained")
    for key, value in state.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise ValueError(
                f"{file} holds {key!r} ({type(value).__name__}), not a tensor; a weights file holds a state dict "
                "only (a training checkpoint of another tool? save its model's state_dict(), or use save_pretrained)"
            )
    return state


def shard_files(path: Path, index: str) -> list[Path]:
    """The shard files the index `path / index` lists, each checked to be a file inside `path`."""
    weight_map = read_json_object(path / index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(name, str) for name in weight_map.values()):
        raise ValueError(f"{path / index} has no \"weight_map\" object (tensor name -> shard file name); restore "
                         "it from where the model came from, or write the model again (save_pretrained)")
    shards = []
    for name in sorted(set(weight_map.values())):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            # a checkpoint's own files only: an index must not send the loader to read files elsewhere
            raise ValueError(f"{path / index} names shard {name!r}, outside {path}; a shard is a file of the "
                             "checkpoint directory: restore the index from where the model came from")
        if not (path / name).is_file():
            raise ValueError(f"{path / index} names shard {name}, which is missing from {path}; copy every shard "
                             "the index lists (an interrupted download?), or restore the checkpoint")
        shards.append(path / name)
    return shards


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory: single file or shards, safetensors preferred, in transformers'
    order (model.safetensors, its shards, pytorch_model.bin, its shards). A directory can hold two saves:
    transformers never removes an earlier save's pytorch_model.bin when it writes safetensors shards, and
    reading that .bin first loaded the old weights where Hugging Face loads the new ones."""
    path = Path(path)
    for single, index in ((SAFE_WEIGHTS_NAME, SAFE_INDEX_NAME), (TORCH_WEIGHTS_NAME, TORCH_INDEX_NAME)):
        if (path / single).is_file():
            return _load_file(path / single)
        if (path / index).is_file():
            state: dict[str, torch.Tensor] = {}
            for shard in shard_files(path, index):
                state.update(_load_file(shard))
            return state
    raise ValueError(
        f"{path} has config.json but no weights: expected one of {SAFE_WEIGHTS_NAME}, "
        f"{TORCH_WEIGHTS_NAME}, {SAFE_INDEX_NAME} or {TORCH_INDEX_NAME}"
    )


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's data, or a directory's entries, to disk. A rename is atomic, but only after
    fsyncs of the file and of its directory do the new name and its content survive a power cut."""
    if os.name != "posix" and Path(path).is_dir():
        return  # only POSIX lets a directory be opened to fsync it
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_files(writes: list[tuple[Path, Callable[[Path], None]]]) -> None:
    """Write each (target, write) through `write(tmp_path)` into a temporary file beside its target, and
    only once every one is written rename them over their targets, back to back: a crash or an error
    mid-write leaves the old files intact, never half a file, and files that belong together (a model's
    weights and its config.json) are never left half old, half new by an error in the second one."""
    staged: list[tuple[Path, Path]] = []
    try:
        for target, write in writes:
            target.parent.mkdir(parents=True, exist_ok=True)
            for stale in target.parent.glob(f".{glob.escape(target.name)}.{'[0-9a-f]' * 8}.tmp"):
                stale.unlink(missing_ok=True)  # a copy a process killed while writing this file left behind
            tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
            # Created with mode 0o666 less the umask, as open() would give; safetensors writes 0o600 files,
            # so that mode is put back after `write`.
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            staged.append((tmp, target))
            mode = os.stat(tmp).st_mode
            write(tmp)
            os.chmod(tmp, mode)
            fsync(tmp)
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    for parent in dict.fromkeys(target.parent for _, target in staged):
        fsync(parent)


def atomic_write_bytes(target: Path, write: Callable[[Path], None]) -> None:
    """One file replaced whole or not at all (atomic_write_files)."""
    atomic_write_files([(target, write)])


def state_dict_writer(state: dict[str, torch.Tensor]) -> Callable[[Path], None]:
    """`write(file)` saving `state` as safetensors, for atomic_write_files."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    return lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"})


def finite_or_null(obj):
    """`obj` with every NaN or infinite float (nested in dicts, lists and tuples) replaced by None: Python's
    json writes them as bare NaN / Infinity, which is not JSON (jq, JavaScript and strict parsers refuse it)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_null(v) for v in obj]
    return obj


def json_writer(obj: dict, sort_keys: bool = True) -> Callable[[Path], None]:
    """`write(file)` saving `obj` as indented UTF-8 JSON (non-finite floats as null), for atomic_write_files."""
    text = json.dumps(finite_or_null(obj), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"
    return lambda tmp: Path(tmp).write_text(text, encoding="utf-8")


def write_json(file: str | os.PathLike, obj: dict, sort_keys: bool = True) -> None:
    atomic_write_bytes(Path(file), json_writer(obj, sort_keys))

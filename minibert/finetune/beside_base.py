"""Save a fine-tuned model as only the parameters it trained, beside a base checkpoint that is not copied.

Adapters and ladder side-tuning leave the pretrained weights as they were; copying them into
every task's directory would undo the point of training a few per cent of them. So a run
writes `trained.safetensors` (the trainable parameters, named as in the model) and
`beside_base.json`: the base checkpoint's path, a SHA-256 of its weights and a copy of its
config.json (a base whose weights or config changed since is refused, not silently mixed in:
the same weights under another activation or LayerNorm epsilon are another model), plus
whatever the caller needs to rebuild the model before loading (`settings`).
"""

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from minibert.checkpoint import (
    BESIDE_BASE_FILE,
    SAFE_INDEX_NAME,
    TORCH_INDEX_NAME,
    read_config_dict,
    shard_files,
)
from minibert.modeling import new_weights_unreported

logger = logging.getLogger(__name__)

TRAINED_FILE = "trained.safetensors"
CONFIG_FILE = BESIDE_BASE_FILE  # (checkpoint.py: load_pretrained refuses a directory holding it)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _weights_files(base: Path) -> list[Path]:
    """The files holding the base's weights: one file, or an index and its shards (sorted); in the order the
    loader reads them (checkpoint.read_state_dict: safetensors, then .bin), so that the files checked are the
    ones the model is read from when a directory holds an older save's pytorch_model.bin beside shards."""
    for name, index in zip(WEIGHT_FILES, (SAFE_INDEX_NAME, TORCH_INDEX_NAME), strict=True):
        if (base / name).is_file():
            return [base / name]
        if (base / index).is_file():
            return [base / index, *shard_files(base, index)]  # each checked to be a file of `base`
    raise ValueError(f"base checkpoint {base} has no {' or '.join(WEIGHT_FILES)} (nor shards with an index); it "
                     "moved or was deleted: put it back, or edit base_model in beside_base.json to its new place")


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def is_beside_base(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def save_beside_base(model: nn.Module, path: str | os.PathLike, base: str | os.PathLike, settings: dict) -> int:
    """Write the trainable parameters and the base's address; returns the bytes written."""
    path, base = Path(path), Path(base).resolve()
    path.mkdir(parents=True, exist_ok=True)
    trained = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
    save_file(trained, str(path / TRAINED_FILE))
    record = {"base_model": str(base), "base_sha256": _sha256(_weights_files(base)),
              "base_config": read_config_dict(base), "settings": settings}
    (path / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return (path / TRAINED_FILE).stat().st_size


def read_beside_base(path: str | os.PathLike) -> tuple[str, dict]:
    """The base checkpoint (its weights and config checked unchanged) and the settings saved with the
    parameters."""
    record = json.loads((Path(path) / CONFIG_FILE).read_text())
    base = Path(record["base_model"])
    if _sha256(_weights_files(base)) != record["base_sha256"]:
        raise ValueError(f"{path} was trained beside {base}, whose weights have changed since; the trained "
                         "parameters only fit the weights they were trained with: restore that checkpoint, "
                         "or fine-tune again")
    saved = record.get("base_config")  # None in a run saved before it was recorded: the weights alone are checked
    if saved is not None:
        now = read_config_dict(base)
        changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
        if changed:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
            raise ValueError(f"{path} was trained beside {base}, whose config.json has changed since ({shown}); the "
                             "trained parameters only fit the model they were trained with: restore that "
                             "config.json, or fine-tune again")
    return str(base), record["settings"]


def load_beside_base(path: str | os.PathLike, build: Callable[[str, dict], nn.Module]) -> nn.Module:
    """The model saved at `path`: `build(base, settings)` rebuilds it on its base checkpoint, then the saved
    parameters are copied in. The base has no task head, so building it reported the head (classifier.weight ...)
    as "newly initialised (not in the checkpoint; train before use)" although trained.safetensors then restores
    it: that report is held back while building (new_weights_unreported), and said again for the weights that the
    saved file lacks too and that the model reads: not those named in its `unread_weights` (set by add_adapters
    and LadderSideClassifier: a pooler under a head that reads the hidden states, which a base without one
    leaves random, changes no output)."""
    base, settings = read_beside_base(path)
    with new_weights_unreported():
        model = build(base, settings)
    restored = load_trained(model, path)
    unread = set(getattr(model, "unread_weights", ()))
    for prefix, module in model.named_modules():  # each part from_pretrained loaded records what it initialised
        fresh = (getattr(module, "loading_info", None) or {}).get("newly_initialized", [])
        lacking = [key for key in fresh if (f"{prefix}.{key}" if prefix else key) not in restored | unread]
        if lacking:
            logger.warning("%s: newly initialised (neither in the base checkpoint %s nor in %s; train before use): "
                           "%s", type(module).__name__, base, TRAINED_FILE, lacking)
    return model


def load_trained(model: nn.Module, path: str | os.PathLike) -> set[str]:
    """Copy the saved parameters into `model` (built from the base, with the same extra modules); returns their
    names."""
    saved = load_file(str(Path(path) / TRAINED_FILE))
    ours = dict(model.named_parameters())
    unknown = sorted(set(saved) - set(ours))
    if unknown:
        raise ValueError(f"{path}: saved parameters {unknown[:5]} are not in the rebuilt model; it was saved by "
                         "another method or version")
    with torch.no_grad():
        for name, tensor in saved.items():
            if ours[name].shape != tensor.shape:
                raise ValueError(f"{path}: {name} has shape {tuple(tensor.shape)} but the rebuilt model's is "
                                 f"{tuple(ours[name].shape)}")
            ours[name].copy_(tensor)
    return set(saved)

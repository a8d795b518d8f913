"""Checkpoint files that are not what their names say, and saves over an earlier model: each gets one
clear error naming the file and the fix, and a save that fails or replaces leaves a directory that
loads as one whole model (an audit of checkpoint.py, auto.py and modeling.py's loading and saving)."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import minibert


def tiny_bert(hidden_act: str = "gelu", seed: int = 0) -> minibert.BertForMaskedLM:
    torch.manual_seed(seed)
    config = minibert.BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, hidden_act=hidden_act)
    return minibert.BertForMaskedLM(config).eval()


def edit_config(directory: Path, **fields) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(fields)
    (directory / "config.json").write_text(json.dumps(config))


IDS = torch.tensor([[1, 2, 3, 4]])


# -- saving over an earlier model -------------------------------------------------------------------
def test_an_error_writing_config_json_leaves_the_earlier_model_whole(tmp_path, monkeypatch):
    """The weights were renamed into place before config.json was written: a full disk there left the new
    weights under the old config.json, which loaded without an error as neither model (gelu on relu weights)."""
    earlier, later = tiny_bert("gelu", seed=0), tiny_bert("relu", seed=1)
    earlier.save_pretrained(tmp_path)

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        later.save_pretrained(tmp_path)
    monkeypatch.undo()
    loaded = minibert.load_pretrained(tmp_path)
    assert loaded.config.hidden_act == "gelu"
    with torch.no_grad():
        torch.testing.assert_close(loaded(IDS).logits, earlier(IDS).logits)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]  # no temporary left


def test_a_model_saved_without_generation_settings_drops_the_earlier_ones(tmp_path):
    """generation_config.json of the model saved there before stayed, and from_pretrained applied it (num_beams,
    max_length, eos...) to the model saved after, over its own config.json."""
    config = minibert.GPT2Config(vocab_size=16, n_embd=8, n_layer=1, n_head=2, n_positions=16)
    earlier = minibert.GPT2LMHeadModel(config)
    earlier.generation_config = {"num_beams": 4, "max_length": 7}
    earlier.save_pretrained(tmp_path)
    assert minibert.load_pretrained(tmp_path).generation_config == {"num_beams": 4, "max_length": 7}
    minibert.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    assert minibert.load_pretrained(tmp_path).generation_config is None
    assert not (tmp_path / "generation_config.json").exists()


# -- weights files that are not state dicts -----------------------------------------------------------
def bin_checkpoint(tmp_path: Path) -> tuple[Path, dict]:
    tiny_bert().save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    return tmp_path, state


@pytest.mark.parametrize("content, message", [
    (lambda state: list(state.values()), r"holds a value of type list, not a state dict"),
    (lambda state: {"state_dict": state, "epoch": 3}, r"holds 'state_dict' \(dict\), not a tensor"),
    (lambda state: {**state, "bert.embeddings.LayerNorm.weight": [1.0] * 8},
     r"holds 'bert.embeddings.LayerNorm.weight' \(list\), not a tensor"),
])
def test_a_weights_file_that_is_not_a_state_dict_is_named(tmp_path, content, message):
    """A list failed with "'Tensor' object has no attribute 'startswith'", a list for a tensor with "'list'
    object has no attribute 'shape'", both from the middle of the loader."""
    directory, state = bin_checkpoint(tmp_path)
    torch.save(content(state), directory / "pytorch_model.bin")
    with pytest.raises(ValueError, match=rf"pytorch_model.bin {message}"):
        minibert.load_pretrained(directory)


def test_a_plain_pickle_is_named_with_its_fault_and_never_run(tmp_path):
    """pickle.dump's format (protocol 4), not torch.save's: the reason quoted was torch's closing line
    ("Check the documentation of torch.load ..."), which names nothing."""

    class CreatesFile:
        def __reduce__(self):
            return Path.touch, (tmp_path / "ran",)

    directory, state = bin_checkpoint(tmp_path)
    (directory / "pytorch_model.bin").write_bytes(pickle.dumps({**state, "x": CreatesFile()}, protocol=4))
    with pytest.raises(ValueError, match=r"pytorch_model.bin is corrupt, or was not written by torch.save "
                                         r"\(Unsupported operand \d+\)"):
        minibert.load_pretrained(directory)
    assert not (tmp_path / "ran").exists()


# -- sharded checkpoints ------------------------------------------------------------------------------
def sharded(tmp_path: Path, weight_map) -> Path:
    directory = tmp_path / "model"
    tiny_bert().save_pretrained(directory)
    (directory / "model.safetensors").rename(directory / "model-00001-of-00002.safetensors")
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


@pytest.mark.parametrize("weight_map, message", [
    ({"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
     r"names shard model-00002-of-00002.safetensors, which is missing from .*copy every shard"),
    (None, r"has no \"weight_map\" object"),
    (["model-00001-of-00002.safetensors"], r"has no \"weight_map\" object"),
    ({"a": "../outside.safetensors"}, r"names shard '../outside.safetensors', outside"),
    ({"a": "/etc/outside.bin"}, r"names shard '/etc/outside.bin', outside"),
])
def test_a_broken_shard_index_is_named(tmp_path, weight_map, message):
    """A missing shard gave a bare FileNotFoundError (safetensors) or "is truncated or corrupt" (.bin), no
    weight_map a KeyError; a shard name leading out of the directory was read from there."""
    directory = sharded(tmp_path, weight_map)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "outside.safetensors"))
    with pytest.raises(ValueError, match=rf"model.safetensors.index.json {message}"):
        minibert.load_pretrained(directory)


def test_a_complete_sharded_checkpoint_still_loads(tmp_path):
    model = tiny_bert()
    directory = sharded(tmp_path, {"a": "model-00001-of-00002.safetensors"})
    state = load_file(str(directory / "model-00001-of-00002.safetensors"))
    names = sorted(state)
    save_file({k: state[k] for k in names[:5]}, str(directory / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in names[5:]}, str(directory / "model-00002-of-00002.safetensors"))
    weight_map = {k: f"model-0000{1 if i < 5 else 2}-of-00002.safetensors" for i, k in enumerate(names)}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with torch.no_grad():
        torch.testing.assert_close(minibert.load_pretrained(directory)(IDS).logits, model(IDS).logits)


# -- config.json fields of the wrong type ------------------------------------------------------------
@pytest.mark.parametrize("fields, message", [
    ({"layer_norm_eps": "1e-12"}, r"layer_norm_eps must be a number, got '1e-12' \(str\)"),
    ({"hidden_dropout_prob": None}, r"hidden_dropout_prob must be a number, got None"),
    ({"num_labels": None, "id2label": None}, r"num_labels must be a whole number, got None"),
    ({"id2label": ["negative", "positive"]}, r"id2label must map class ids to label names"),
    ({"id2label": {"neg": "negative"}}, r"id2label must map class ids to label names"),
    ({"architectures": "BertForMaskedLM"}, r"architectures must be a list of class names.*got 'BertForMaskedLM'"),
    ({"architectures": [None]}, r"architectures must be a list of class names"),
    ({"model_type": ["bert"]}, r"unsupported model_type \['bert'\] in config.json"),
])
def test_config_fields_of_the_wrong_type_are_named(tmp_path, fields, message):
    """A string epsilon loaded and failed at the first forward (layer_norm(): argument 'eps' must be float),
    a string architectures was read letter by letter ("names architecture B, e, r, t, ..."), the others
    failed with a bare TypeError, AttributeError or int() error naming no field."""
    tiny_bert().save_pretrained(tmp_path)
    edit_config(tmp_path, **fields)
    with pytest.raises(ValueError, match=message):
        minibert.load_pretrained(tmp_path)


def test_the_config_field_checks_accept_what_hugging_face_writes(tmp_path):
    """Integers for float fields, a null classifier_dropout, id2label keys as strings: all still load."""
    tiny_bert().save_pretrained(tmp_path)
    edit_config(tmp_path, layer_norm_eps=1, classifier_dropout=None, id2label={"0": "no", "1": "yes"})
    model = minibert.load_pretrained(tmp_path)
    assert model.config.id2label == {0: "no", 1: "yes"} and model.config.layer_norm_eps == 1


@pytest.mark.parametrize("marker", ["beside_base.json", "new_encoder/front.json"])
def test_a_model_saved_over_another_train_py_output_loads_as_itself(tmp_path, marker):
    """train.py --overwrite_output_dir saved a plain model where an --adapter_size (or --new_encoder_vocab) run
    had saved: its beside_base.json (new_encoder/front.json) stayed, so load_finetuned rebuilt the earlier run's
    model, without an error, and load_pretrained refused the new one."""
    (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / marker).write_text("{}")
    model = tiny_bert()
    model.save_pretrained(tmp_path)
    assert not (tmp_path / marker).exists()
    with torch.no_grad():
        torch.testing.assert_close(minibert.load_pretrained(tmp_path)(IDS).logits, model(IDS).logits)


def test_other_files_in_the_directory_are_kept(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("kept")
    tiny_bert().save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "notes.txt",
                                                          "tokenizer.json"]

"""Hugging Face interop where a checkpoint directory is not one fresh save: the weights' dtype named in
config.json, and a directory holding two saves (a second audit of checkpoint.py and modeling.py)."""

import json
import os

import pytest
import torch

import minibert

transformers = pytest.importorskip("transformers")

IDS = torch.tensor([[5, 7, 3, 9, 11, 4]])


def hf_bert(seed: int):
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=24, max_position_embeddings=16)
    return transformers.BertForMaskedLM(config).eval()


@pytest.mark.parametrize("key", ["dtype", "torch_dtype"])  # transformers 5's name, and 4's (every older hub config)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_checkpoint_saved_again_loads_in_hugging_face_in_float32(tmp_path, key, dtype):
    """from_pretrained loads a bfloat16 checkpoint into float32 parameters, but save_pretrained wrote config.json's
    dtype back as read ("bfloat16" over float32 weights): transformers 5 loads in that dtype by default, so the
    saved float32 weights came back as bfloat16 and gave other outputs (2.4e-3 off here)."""
    hf_bert(0).to(dtype).save_pretrained(tmp_path / "half")
    config = json.loads((tmp_path / "half" / "config.json").read_text())
    config[key] = config.pop("dtype", None) or config.pop("torch_dtype")
    (tmp_path / "half" / "config.json").write_text(json.dumps(config))

    ours = minibert.load_pretrained(tmp_path / "half")
    assert next(ours.parameters()).dtype == torch.float32  # as from_pretrained's docstring says
    reference = transformers.BertForMaskedLM.from_pretrained(tmp_path / "half", dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS).logits, reference(IDS).logits, atol=1e-5, rtol=1e-5)

    ours.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())[key] == "float32"
    again = transformers.BertForMaskedLM.from_pretrained(tmp_path / "again").eval()  # the default: config's dtype
    assert next(again.parameters()).dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(again(IDS).logits, ours(IDS).logits, atol=1e-5, rtol=1e-5)


def test_a_fresh_model_writes_no_dtype(tmp_path):
    """The dtype is corrected where config.json has one, never added: default runs write the same config.json."""
    minibert.BertForMaskedLM(minibert.BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=24)).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "dtype" not in config and "torch_dtype" not in config


def test_safetensors_shards_are_read_before_an_earlier_saves_pytorch_model_bin(tmp_path):
    """transformers reads model.safetensors, then its shards, then pytorch_model.bin, and leaves an earlier save's
    pytorch_model.bin in place when it writes shards: minibert read that .bin first, the old weights, without a
    word, where Hugging Face reads the new model."""
    old, new = hf_bert(0), hf_bert(1)
    torch.save(old.state_dict(), tmp_path / "pytorch_model.bin")  # a save of transformers 4 (.bin)
    new.save_pretrained(tmp_path, max_shard_size="8KB")
    assert (tmp_path / "pytorch_model.bin").is_file() and (tmp_path / "model.safetensors.index.json").is_file()
    assert "model.safetensors" not in os.listdir(tmp_path)
    hf = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()
    ours = minibert.load_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(hf(IDS).logits, new(IDS).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(IDS).logits, new(IDS).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("target, message", [
    ("model.bin", r"model.bin is a file; a model is saved as a directory .* pass a directory path"),
    ("model.bin/out", r"model.bin/out sits under .*model.bin, which is a file; a model is saved as a directory"),
])
def test_save_pretrained_to_a_file_path_is_named(tmp_path, target, message):
    """A file path gave mkdir's bare FileExistsError ("File exists") or NotADirectoryError; the file is kept."""
    (tmp_path / "model.bin").write_bytes(b"weights")
    model = minibert.BertModel(minibert.BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=24))
    with pytest.raises(ValueError, match=message):
        model.save_pretrained(tmp_path / target)
    assert (tmp_path / "model.bin").read_bytes() == b"weights"


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod."])
def test_a_state_dict_saved_through_a_wrapper_is_named_in_a_short_message(tmp_path, prefix):
    """Every key under DistributedDataParallel's module. (or torch.compile's _orig_mod.) was listed twice, as missing
    and as unexpected (19,000 characters for a 12-layer BERT), then the advice to check model_type, which matched."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=12, num_attention_heads=2,
                                     intermediate_size=24, max_position_embeddings=16,
                                     architectures=["BertForMaskedLM"])
    config.save_pretrained(tmp_path)
    state = transformers.BertForMaskedLM(config).state_dict()
    torch.save({prefix + k: v for k, v in state.items()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=rf"missing keys \['bert.embeddings.word_embeddings.weight', .*, \.\.\. \d+ "
                                         rf"more\]; unexpected keys \['{prefix}bert.embeddings.word_embeddings.weight'"
                                         rf".*Every unexpected key starts with '{prefix}'") as error:
        minibert.load_pretrained(tmp_path)
    assert len(str(error.value)) < 2000 and "model_type" not in str(error.value)


def test_a_few_unknown_keys_are_still_listed_whole_with_the_model_type_advice(tmp_path):
    hf_bert(0).save_pretrained(tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "model.safetensors"))
    state["bert.encoder.layer.0.adapter.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys \[\]; unexpected keys \['bert.encoder.layer.0.adapter.weight'\]"
                                         r"\. Check that the checkpoint's model_type matches"):
        minibert.load_pretrained(tmp_path)

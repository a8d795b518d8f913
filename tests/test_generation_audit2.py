"""generate() on bad settings, a second audit (each test failing without its fix): a setting that scales the
scores given as a string (or from a hand-edited generation_config.json) is named instead of a TypeError from a
comparison; early_stopping=1 or numpy's True, which passed the check and then decoded as False; an attention
mask that is not a tensor."""

import json
import re

import numpy as np
import pytest
import torch

import minibert
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

transformers = pytest.importorskip("transformers")

VOCAB, GPT_PAD = 99, 1


def gpt_pair():
    """A tiny GPT-2 in both libraries, the same weights (std 0.3: outputs that differ show)."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     initializer_range=0.3, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
    hf = transformers.GPT2LMHeadModel(config).eval()
    ours = GPT2LMHeadModel(GPT2Config.from_dict(config.to_dict()))
    ours.load_hf_state_dict(hf.state_dict())
    return hf, ours.eval()


PROMPTS = torch.tensor([[46, 17, 55], [2, 69, 29]])


@pytest.mark.parametrize("setting", [
    dict(do_sample=True, temperature="0.7"), dict(do_sample=True, top_p="0.9"), dict(repetition_penalty="1.2"),
    dict(num_beams=2, length_penalty="2"), dict(repetition_penalty=[1.2]),
])
def test_a_scaling_setting_that_is_not_a_number_is_named(setting):
    """temperature="0.7" raised "TypeError: '>' not supported between instances of 'str' and 'int'" from the
    range check (the whole-number settings were already named)."""
    _, ours = gpt_pair()
    name = next(k for k in setting if k not in ("do_sample", "num_beams"))
    with pytest.raises(ValueError, match=f"^{name} must be a number, got {re.escape(repr(setting[name]))}"):
        ours.generate(PROMPTS, max_new_tokens=3, pad_token_id=GPT_PAD, **setting)


def test_a_stored_temperature_that_is_not_a_number_names_the_file(tmp_path):
    hf, _ = gpt_pair()
    hf.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps(dict(do_sample=True, temperature="0.7",
                                                                     pad_token_id=GPT_PAD)))
    ours = minibert.load_pretrained(tmp_path).eval()
    with pytest.raises(ValueError, match=r"temperature must be a number, got '0.7' \(set by the checkpoint's "
                                         r"generation_config.json\): pass temperature=\.\.\."):
        ours.generate(PROMPTS, max_new_tokens=3)
    assert ours.generate(PROMPTS, max_new_tokens=3, temperature=np.float32(0.7)).shape == (2, 6)  # numpy's floats


def test_early_stopping_other_than_true_false_or_never_is_refused():
    """early_stopping=1 (or np.True_) passed the check (1 == True) but beam search asks `is True`, as Hugging
    Face does, so it decoded as False: here input 1 ran to 11 tokens where True stops it at 6."""
    hf, ours = gpt_pair()
    kwargs = dict(max_new_tokens=8, num_beams=3, length_penalty=2.0, eos_token_id=[36, 44], pad_token_id=GPT_PAD)
    for value in (True, False, "never"):  # the three values still decode as Hugging Face does
        with torch.no_grad():
            theirs = hf.generate(PROMPTS, early_stopping=value, **kwargs)
        assert torch.equal(ours.generate(PROMPTS, early_stopping=value, **kwargs), theirs), value
    lengths = [ours.generate(PROMPTS, early_stopping=v, **kwargs).size(1) for v in (True, False)]
    assert lengths == [6, 11]  # the case tells True from False
    for value in (1, 0, np.True_, "True"):
        message = f"^early_stopping must be True, False or 'never', got {re.escape(repr(value))}$"
        with pytest.raises(ValueError, match=message):
            ours.generate(PROMPTS, early_stopping=value, **kwargs)


def test_an_attention_mask_that_is_not_a_tensor_is_named():
    """A list mask was "AttributeError: 'list' object has no attribute 'shape'"."""
    _, ours = gpt_pair()
    with pytest.raises(TypeError, match=r"attention_mask must be a torch.Tensor like input_ids, got a list"):
        ours.generate(PROMPTS, attention_mask=[[1, 1, 1], [1, 1, 1]], max_new_tokens=3, pad_token_id=GPT_PAD)

"""What a second newcomer walking the README met (the lead's share; tests/test_journey2.py holds the resume and
run-setting part): Hugging Face generate() options minibert lacks met a bare "unexpected keyword argument", and a
training run on a checkpoint without a pooler called the pooler "newly initialised ... train before use" where
nothing reads it (tests/test_left_alone3.py)."""

import pytest
import torch

from minibert.models.gpt import GPT2Config, GPT2LMHeadModel


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2)).eval()


def test_a_hugging_face_option_minibert_lacks_is_named_as_one(gpt2):
    with pytest.raises(TypeError, match=r"bad_words_ids: Hugging Face generate\(\) options that minibert does not "
                                        r"implement .*generate with transformers"):
        gpt2.generate(torch.tensor([[1, 2, 3]]), bad_words_ids=[[4]])


def test_a_misspelt_argument_is_refused_with_the_close_name(gpt2):
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) max_new_token \(max_new_token: did you "
                                        r"mean max_new_tokens\?\); generate\(\) takes input_ids, attention_mask"):
        gpt2.generate(torch.tensor([[1, 2, 3]]), max_new_token=3)


def test_generate_still_takes_its_own_arguments(gpt2):
    assert gpt2.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False).shape == (1, 6)

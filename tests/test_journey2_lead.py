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


def test_an_option_at_its_off_value_is_let_through_and_call_arguments_are_named(gpt2):
    """As a stored setting at its "off" value counts as not set, so does a passed one (bad_words_ids=None,
    output_scores=False); Hugging Face's call arguments (output_scores=True, generation_config=...) are named as
    options minibert lacks, and its inputs= as input_ids=."""
    x = torch.tensor([[1, 2, 3]])
    assert gpt2.generate(x, max_new_tokens=2, bad_words_ids=None, output_scores=False, use_cache=True).shape == (1, 5)
    with pytest.raises(TypeError, match=r"output_scores: Hugging Face generate\(\) options that minibert does not"):
        gpt2.generate(x, output_scores=True)
    with pytest.raises(TypeError, match=r"Hugging Face's inputs= is input_ids= here"):
        gpt2.generate(inputs=x)


def test_an_unknown_argument_gets_no_far_fetched_suggestion(gpt2):
    """token_type_ids was "did you mean pad_token_id?" at difflib's default cutoff."""
    with pytest.raises(TypeError) as refused:
        gpt2.generate(torch.tensor([[1, 2, 3]]), token_type_ids=torch.zeros(1, 3, dtype=torch.long))
    assert "unexpected keyword argument(s) token_type_ids;" in str(refused.value)
    assert "did you mean" not in str(refused.value)

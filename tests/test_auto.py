"""`minibert.load_pretrained` picks the class from config.json for every family."""

import json

import pytest
import torch

import minibert

transformers = pytest.importorskip("transformers")

TINY = {
    "bert": dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
    "roberta": dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
    "gpt2": dict(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0),
    "bart": dict(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32),
}
CASES = [
    ("bert", "BertConfig", "BertForTokenClassification"),
    ("roberta", "RobertaConfig", "RobertaForMaskedLM"),
    ("gpt2", "GPT2Config", "GPT2LMHeadModel"),
    ("gpt2", "GPT2Config", "GPT2ForSequenceClassification"),
    ("gpt2", "GPT2Config", "GPT2ForTokenClassification"),
    ("gpt2", "GPT2Config", "GPT2ForQuestionAnswering"),
    ("bart", "BartConfig", "BartForConditionalGeneration"),
    ("bart", "BartConfig", "BartModel"),
    ("bart", "BartConfig", "BartForQuestionAnswering"),
]


@pytest.mark.parametrize("family,config_name,class_name", CASES)
def test_class_from_architectures(tmp_path, family, config_name, class_name):
    torch.manual_seed(0)
    hf = getattr(transformers, class_name)(getattr(transformers, config_name)(**TINY[family]))
    hf.save_pretrained(tmp_path)
    ours = minibert.load_pretrained(tmp_path)
    assert type(ours).__name__ == class_name
    assert not ours.training  # loaded for inference, as Hugging Face does


def test_base_class_when_no_architecture_is_named(tmp_path):
    minibert.GPT2Model(minibert.GPT2Config(**TINY["gpt2"])).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["architectures"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert type(minibert.load_pretrained(tmp_path)) is minibert.GPT2Model
    # one minibert does not have is refused (its head would be dropped): tests/test_cli_errors.py


@pytest.mark.parametrize("family,config_name,class_name,layers_key", [
    ("bert", "BertConfig", "BertForMaskedLM", "num_hidden_layers"),
    ("gpt2", "GPT2Config", "GPT2LMHeadModel", "n_layer"),
    ("bart", "BartConfig", "BartForConditionalGeneration", "decoder_layers"),
])
def test_a_checkpoint_with_more_layers_than_its_config_is_refused(tmp_path, family, config_name, class_name,
                                                                   layers_key):
    """The extra blocks were dropped silently (logged at INFO as "other heads"), changing every output."""
    torch.manual_seed(0)
    hf = getattr(transformers, class_name)(getattr(transformers, config_name)(**{**TINY[family], layers_key: 2}))
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config[layers_key] = 1
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="weights of layers the config does not have .*layer count in config.json"):
        minibert.load_pretrained(tmp_path)


def test_another_heads_weights_are_still_ignored(tmp_path):
    """BertForPreTraining's pooler and NSP head, loaded into a class without them: ignored, as before."""
    torch.manual_seed(0)
    transformers.BertForPreTraining(transformers.BertConfig(**TINY["bert"])).save_pretrained(tmp_path)
    model = minibert.BertForQuestionAnswering.from_pretrained(tmp_path)
    assert any("pooler" in k for k in model.loading_info["ignored"])


@pytest.mark.parametrize("family,config_name,class_name", [("bert", "BertConfig", "BertLMHeadModel"),
                                                           ("roberta", "RobertaConfig", "RobertaForCausalLM")])
def test_a_causal_bert_is_refused_not_run_bidirectionally(tmp_path, family, config_name, class_name):
    """is_decoder: true was dropped into config.extra and the encoder ran without its causal mask
    (outputs off by ~0.02), also when load_pretrained's advice (the base class) was followed."""
    hf = getattr(transformers, class_name)(getattr(transformers, config_name)(**TINY[family], is_decoder=True))
    hf.save_pretrained(tmp_path)
    base = minibert.BertModel if family == "bert" else minibert.RobertaModel
    with pytest.raises(ValueError, match="sets is_decoder: true, a causal decoder"):
        base.from_pretrained(tmp_path)


@pytest.mark.parametrize("family,class_name,name,alias", [
    ("bert", "BertForMaskedLM", "cls.predictions.bias", "cls.predictions.decoder.bias"),
    ("roberta", "RobertaForMaskedLM", "lm_head.bias", "lm_head.decoder.bias"),
])
def test_an_mlm_bias_stored_only_under_its_decoder_alias_is_read(tmp_path, family, class_name, name, alias):
    """Other tools may write the tied MLM bias only as the decoder's; it was loaded as zeros."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = getattr(transformers, "BertConfig" if family == "bert" else "RobertaConfig")(**TINY[family])
    hf = getattr(transformers, class_name)(config).eval()
    with torch.no_grad():
        dict(hf.named_parameters())[name].normal_()
    hf.save_pretrained(tmp_path)
    state = {k: v.clone().contiguous() for k, v in hf.state_dict().items() if "decoder.weight" not in k}
    state[alias] = state.pop(name)
    save_file(state, str(tmp_path / "model.safetensors"))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(minibert.load_pretrained(tmp_path)(ids).logits, hf(ids).logits,
                                   atol=1e-5, rtol=1e-5)

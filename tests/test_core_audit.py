"""An audit of the model base class (modeling.py): the label names a config is built with, the attention
kernel a model is switched to, and what loading reports about a task head of another size."""

import dataclasses
import logging

import pytest
import torch

import minibert

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def test_named_labels_of_another_count_than_num_labels_are_refused_not_renamed():
    """BertConfig(id2label=<3 names>) kept num_labels at its default 2 and replaced the names by LABEL_0, LABEL_1:
    a 2-class classifier for a 3-class task, without a word (Hugging Face's config counts the labels of id2label)."""
    with pytest.raises(ValueError, match=r"id2label names 3 labels \['negative', 'neutral', 'positive'\] but "
                                         r"num_labels is 2; pass num_labels=3"):
        minibert.BertConfig(**TINY, id2label=LABELS)
    with pytest.raises(ValueError, match="id2label names 3 labels"):
        minibert.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, num_labels=4, id2label=LABELS)

    config = minibert.BertConfig(**TINY, num_labels=3, id2label=LABELS)
    assert config.id2label == transformers.BertConfig(id2label=LABELS).id2label == LABELS
    assert config.label2id == {"negative": 0, "neutral": 1, "positive": 2}
    assert minibert.BertForSequenceClassification(config).classifier.out_features == 3
    # the default names follow num_labels, as before: a copy with another count gets its own
    assert dataclasses.replace(config, num_labels=2, id2label=None).id2label == {0: "LABEL_0", 1: "LABEL_1"}
    assert dataclasses.replace(minibert.BertConfig(**TINY), num_labels=4).id2label[3] == "LABEL_3"


def test_named_labels_still_set_the_count_when_read_from_config_json(tmp_path):
    """config.json (and from_pretrained's id2label=) keep Hugging Face's rule: num_labels follows id2label."""
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(transformers.BertConfig(**TINY, id2label=LABELS)).save_pretrained(
        tmp_path / "three")
    model = minibert.load_pretrained(tmp_path / "three")
    assert model.config.num_labels == 3 and model.config.id2label == LABELS
    two = {0: "no", 1: "yes"}
    model = minibert.BertForSequenceClassification.from_pretrained(tmp_path / "three", id2label=two,
                                                                   ignore_mismatched_sizes=True)
    assert model.classifier.out_features == 2 and model.config.id2label == two


def test_an_unknown_attention_kernel_is_refused_when_set_and_the_model_is_left_as_it_was():
    """set_attn_implementation("flash_attention_2") was accepted into the config and every attention module,
    and the error came only at the next forward (a model left unrunnable until set again)."""
    model = minibert.BertModel(minibert.BertConfig(**TINY))
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"attn_implementation must be one of \('eager', 'sdpa'\), "
                                         r"got 'flash_attention_2'"):
        model.set_attn_implementation("flash_attention_2")
    assert model.config.attn_implementation == "sdpa"
    assert {m.implementation for m in model.modules() if hasattr(m, "implementation")} == {"sdpa"}
    model(ids)  # still runs
    model.set_attn_implementation("eager")
    assert model.config.attn_implementation == "eager" and model(ids, output_attentions=True).attentions is not None


def test_a_task_head_of_another_size_is_reported_as_mismatched_not_as_missing(tmp_path, caplog):
    """With ignore_mismatched_sizes, the checkpoint's 3-label classifier was also listed as "newly initialised (not
    in the checkpoint)", which it is: Hugging Face lists it once, under the mismatched sizes."""
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(transformers.BertConfig(**TINY, num_labels=3)).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="minibert.modeling"):
        model = minibert.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2,
                                                                       ignore_mismatched_sizes=True)
    assert model.loading_info["newly_initialized"] == []
    assert sorted(model.loading_info["mismatched"]) == ["classifier.bias (3,) -> (2,)",
                                                        "classifier.weight (3, 16) -> (2, 16)"]
    assert "not in the checkpoint" not in caplog.text and "task head of another size" in caplog.text
    # a head the checkpoint lacks is still newly initialised
    transformers.BertModel(transformers.BertConfig(**TINY)).save_pretrained(tmp_path / "base")
    model = minibert.BertForSequenceClassification.from_pretrained(tmp_path / "base", ignore_mismatched_sizes=True)
    assert sorted(model.loading_info["newly_initialized"]) == ["classifier.bias", "classifier.weight"]
    assert model.loading_info["mismatched"] == []


@pytest.mark.parametrize("keep", ["model.decoder.embed_tokens.weight", "model.encoder.embed_tokens.weight",
                                  "lm_head.weight"])
def test_a_bart_checkpoint_holding_the_shared_embedding_under_a_copys_name_loads(tmp_path, keep):
    """facebook/bart-large-cnn's safetensors holds the shared embedding only as model.decoder.embed_tokens.weight
    (one copy of tied tensors is saved): minibert refused it as missing model.shared.weight, Hugging Face loads it."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    cfg = transformers.BartConfig(vocab_size=60, d_model=16, encoder_layers=1, decoder_layers=1,
                                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                  decoder_ffn_dim=32, max_position_embeddings=32)
    hf = transformers.BartForConditionalGeneration(cfg).eval()
    hf.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    shared = hf.model.shared.weight.detach().clone()
    for name in ("model.shared.weight", "model.decoder.embed_tokens.weight", "model.encoder.embed_tokens.weight",
                 "lm_head.weight"):
        state.pop(name, None)
    state[keep] = shared
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ours = minibert.load_pretrained(tmp_path).eval()
    torch.testing.assert_close(ours.model.shared.weight, shared, rtol=0, atol=0)
    ids = torch.tensor([[0, 5, 9, 23, 2]])
    torch.testing.assert_close(ours(ids).logits, hf(ids).logits, rtol=1e-5, atol=1e-5)


def test_an_untied_bart_says_its_head_cannot_be_held_not_to_set_the_flag():
    """The advice was "set tie_word_embeddings to true", which drops the trained head silently."""
    with pytest.raises(ValueError, match="A new model .*: set tie_word_embeddings to true. A checkpoint trained "
                                         "untied, whose LM head is a matrix of its own.*would drop the trained head"):
        minibert.models.bart.BartConfig(tie_word_embeddings=False)


def test_a_bart_checkpoint_whose_two_embedding_copies_differ_is_refused(tmp_path):
    """Without model.shared.weight, the decoder's copy was read as shared and the encoder's (another tensor,
    trained untied) dropped silently; Hugging Face keeps each copy on its side."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    cfg = transformers.BartConfig(vocab_size=60, d_model=16, encoder_layers=1, decoder_layers=1,
                                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                  decoder_ffn_dim=32, max_position_embeddings=32)
    transformers.BartModel(cfg).save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    shared = state.pop("shared.weight", None)
    if shared is None:
        shared = state["decoder.embed_tokens.weight"]
    state["decoder.embed_tokens.weight"], state["encoder.embed_tokens.weight"] = shared.clone(), shared + 1
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="decoder.embed_tokens.weight and encoder.embed_tokens.weight differ"):
        minibert.load_pretrained(tmp_path)

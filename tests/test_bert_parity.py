"""BERT and RoBERTa against Hugging Face, offline: tiny random HF models are saved, loaded with
minibert's own loader, and compared in fp32 on padded batches, field by field."""

import pytest
import torch

import minibert
from minibert.models import bert as mb

transformers = pytest.importorskip("transformers")

ATOL, RTOL = 1e-5, 1e-5
VOCAB = 99

CONFIGS = {
    "gelu-4heads": dict(hidden_act="gelu", layer_norm_eps=1e-12, num_attention_heads=4, type_vocab_size=2),
    "gelu_new-2heads-eps1e-5": dict(hidden_act="gelu_new", layer_norm_eps=1e-5, num_attention_heads=2),
    "relu-8heads": dict(hidden_act="relu", num_attention_heads=8, type_vocab_size=3),
    "silu-1type": dict(hidden_act="silu", num_attention_heads=4, type_vocab_size=1),
}

# (minibert class, Hugging Face class name, family)
CLASSES = [
    (mb.BertModel, "BertModel", "bert"),
    (mb.BertForPreTraining, "BertForPreTraining", "bert"),
    (mb.BertForMaskedLM, "BertForMaskedLM", "bert"),
    (mb.BertForSequenceClassification, "BertForSequenceClassification", "bert"),
    (mb.BertForTokenClassification, "BertForTokenClassification", "bert"),
    (mb.BertForQuestionAnswering, "BertForQuestionAnswering", "bert"),
    (mb.RobertaModel, "RobertaModel", "roberta"),
    (mb.RobertaForMaskedLM, "RobertaForMaskedLM", "roberta"),
    (mb.RobertaForSequenceClassification, "RobertaForSequenceClassification", "roberta"),
    (mb.RobertaForTokenClassification, "RobertaForTokenClassification", "roberta"),
    (mb.RobertaForQuestionAnswering, "RobertaForQuestionAnswering", "roberta"),
]


def hf_config(family: str, **overrides):
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.1,
                  attention_probs_dropout_prob=0.1, num_labels=3)
    kwargs.update(overrides)
    if family == "roberta":
        kwargs.setdefault("type_vocab_size", 1)
        return transformers.RobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, **kwargs)
    return transformers.BertConfig(**kwargs)


def make_pair(tmp_path, hf_name, family, our_cls, attn="sdpa", **overrides):
    torch.manual_seed(0)
    if hf_name.endswith("ForQuestionAnswering"):
        overrides.setdefault("num_labels", 2)  # start and end
    config = hf_config(family, **overrides)
    config._attn_implementation = "eager"  # Hugging Face's sdpa path returns no attention maps
    hf = getattr(transformers, hf_name)(config).eval()
    hf.save_pretrained(tmp_path)
    ours = our_cls.from_pretrained(tmp_path, attn_implementation=attn)
    return hf, ours


def batch(family: str, type_vocab_size: int = 2, B=3, T=11):
    g = torch.Generator().manual_seed(1)
    pad = 1 if family == "roberta" else 0
    ids = torch.randint(3, VOCAB, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 7:] = 0  # realistic right padding
    mask[2, 4:] = 0
    ids = ids.masked_fill(mask == 0, pad)
    out = {"input_ids": ids, "attention_mask": mask}
    if type_vocab_size > 1:
        out["token_type_ids"] = (torch.arange(T) >= T // 2).long().expand(B, T) * mask
    return out


def labels_for(hf_name: str, inputs, problem_type=None):
    B, T = inputs["input_ids"].shape
    g = torch.Generator().manual_seed(2)
    if hf_name.endswith("ForPreTraining"):
        labels = torch.randint(0, VOCAB, (B, T), generator=g).masked_fill(torch.rand(B, T, generator=g) < 0.6, -100)
        return {"labels": labels, "next_sentence_label": torch.tensor([0, 1, 1])}
    if hf_name.endswith("ForMaskedLM"):
        return {"labels": torch.randint(0, VOCAB, (B, T), generator=g).masked_fill(inputs["attention_mask"] == 0, -100)}
    if hf_name.endswith("ForTokenClassification"):
        return {"labels": torch.randint(0, 3, (B, T), generator=g).masked_fill(inputs["attention_mask"] == 0, -100)}
    if hf_name.endswith("ForQuestionAnswering"):
        return {"start_positions": torch.tensor([1, 3, 20]), "end_positions": torch.tensor([2, 5, 0])}
    if hf_name.endswith("ForSequenceClassification"):
        if problem_type == "multi_label_classification":
            return {"labels": torch.randint(0, 2, (B, 3), generator=g).float()}
        return {"labels": torch.tensor([0, 2, 1])}
    return {}


def our_to_hf_name(model, our_name: str) -> str:
    body, prefixed = model._split_prefix(our_name) if model.is_head_model else (our_name, True)
    theirs, part = model.weight_map.to_theirs(body)
    return f"{model.base_model_prefix}.{theirs}" if part == "base" and model.is_head_model else theirs


def main_tensor(out):
    for name in ("last_hidden_state", "logits", "prediction_logits", "start_logits"):
        if getattr(out, name, None) is not None:
            return getattr(out, name)
    raise AssertionError(f"no output tensor in {type(out).__name__}")


def compare_outputs(a, b):
    """Every tensor field Hugging Face returns must match ours."""
    for name in ("last_hidden_state", "pooler_output", "logits", "prediction_logits", "seq_relationship_logits",
                 "start_logits", "end_logits", "loss"):
        theirs = getattr(a, name, None)
        if theirs is not None:
            torch.testing.assert_close(getattr(b, name), theirs, atol=ATOL, rtol=RTOL, msg=name)
    assert len(a.hidden_states) == len(b.hidden_states)
    for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states, strict=True)):
        torch.testing.assert_close(y, x, atol=ATOL, rtol=RTOL, msg=f"hidden_states[{i}]")
    for i, (x, y) in enumerate(zip(a.attentions, b.attentions, strict=True)):
        torch.testing.assert_close(y, x, atol=ATOL, rtol=RTOL, msg=f"attentions[{i}]")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("our_cls,hf_name,family", CLASSES, ids=[c[1] for c in CLASSES])
def test_outputs_losses_and_gradients_match(tmp_path, our_cls, hf_name, family, attn):
    hf, ours = make_pair(tmp_path, hf_name, family, our_cls, attn)
    inputs = batch(family, hf.config.type_vocab_size)
    labels = labels_for(hf_name, inputs)
    a = hf(**inputs, **labels, output_hidden_states=True, output_attentions=True)
    b = ours(**inputs, **labels, output_hidden_states=True, output_attentions=True)
    compare_outputs(a, b)
    assert len(b.attentions) == hf.config.num_hidden_layers and b.attentions[0].shape[1] == 4

    # The fast path (no attention maps asked for) must give the same numbers too.
    torch.testing.assert_close(main_tensor(ours(**inputs, **labels)), main_tensor(a), atol=ATOL, rtol=RTOL)

    # Gradients of every parameter after one backward pass.
    loss_a = a.loss if getattr(a, "loss", None) is not None else a.last_hidden_state.pow(2).mean()
    loss_b = b.loss if getattr(b, "loss", None) is not None else b.last_hidden_state.pow(2).mean()
    loss_a.backward()
    loss_b.backward()
    hf_params = dict(hf.named_parameters())
    checked = 0
    for name, p in ours.named_parameters():
        ref = hf_params[our_to_hf_name(ours, name)].grad
        if ref is None:
            assert p.grad is None or p.grad.abs().max() == 0, name
            continue
        torch.testing.assert_close(p.grad, ref, atol=ATOL, rtol=1e-4, msg=name)
        checked += 1
    assert checked >= len(list(ours.parameters())) - 2  # only an unused pooler may have no gradient


@pytest.mark.parametrize("name", list(CONFIGS))
def test_several_configs(tmp_path, name):
    overrides = CONFIGS[name]
    hf, ours = make_pair(tmp_path, "BertForPreTraining", "bert", mb.BertForPreTraining, **overrides)
    inputs = batch("bert", overrides.get("type_vocab_size", 2))
    labels = labels_for("BertForPreTraining", inputs)
    compare_outputs(hf(**inputs, **labels, output_hidden_states=True, output_attentions=True),
                    ours(**inputs, **labels, output_hidden_states=True, output_attentions=True))


@pytest.mark.parametrize("problem_type", ["regression", "single_label_classification", "multi_label_classification"])
def test_sequence_classification_problem_types(tmp_path, problem_type):
    num_labels = 1 if problem_type == "regression" else 3
    hf, ours = make_pair(tmp_path, "BertForSequenceClassification", "bert", mb.BertForSequenceClassification,
                         num_labels=num_labels)
    inputs = batch("bert")
    labels = (torch.tensor([0.5, -1.0, 2.0]) if problem_type == "regression"
              else labels_for("BertForSequenceClassification", inputs, problem_type)["labels"])
    a, b = hf(**inputs, labels=labels), ours(**inputs, labels=labels)
    torch.testing.assert_close(b.logits, a.logits, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(b.loss, a.loss, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("our_cls,hf_name,family", CLASSES, ids=[c[1] for c in CLASSES])
def test_save_then_hugging_face_loads(tmp_path, our_cls, hf_name, family):
    """Round trip: a minibert model saved with save_pretrained loads in transformers with no
    missing or unexpected keys and gives the same outputs."""
    cfg = hf_config(family, num_labels=2 if hf_name.endswith("ForQuestionAnswering") else 3).to_dict()
    torch.manual_seed(3)
    ours = our_cls(our_cls.config_class.from_dict(cfg)).eval()
    ours.save_pretrained(tmp_path)
    hf, info = getattr(transformers, hf_name).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    inputs = batch(family, ours.config.type_vocab_size)
    a, b = hf.eval()(**inputs, output_hidden_states=True), ours(**inputs, output_hidden_states=True)
    for x, y in zip(a.hidden_states, b.hidden_states, strict=True):
        torch.testing.assert_close(y, x, atol=ATOL, rtol=RTOL)
    again = minibert.load_pretrained(tmp_path)
    assert type(again) is our_cls
    for (k, v), (k2, v2) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


def test_config_json_round_trip(tmp_path):
    config = mb.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=20, hidden_act="gelu_new", num_labels=4)
    config.to_json(tmp_path / "config.json")
    again = mb.BertConfig.from_json(tmp_path / "config.json")
    assert again.to_dict() == config.to_dict() and again.num_labels == 4
    hf = transformers.BertConfig.from_pretrained(tmp_path)
    assert (hf.hidden_size, hf.hidden_act, hf.num_labels) == (16, "gelu_new", 4)
    assert mb.BertConfig.from_json(tmp_path, num_labels=7).num_labels == 7

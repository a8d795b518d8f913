"""BERT behaviour that does not need Hugging Face, and what real checkpoints throw at the loader."""

import json

import pytest
import torch

import minibert
from minibert.models import bert as mb

transformers = pytest.importorskip("transformers")


def tiny(**overrides) -> mb.BertConfig:
    kwargs = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                  max_position_embeddings=40, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    kwargs.update(overrides)
    return mb.BertConfig(**kwargs)


def ids(B=2, T=9, vocab=60):
    return torch.randint(1, vocab, (B, T), generator=torch.Generator().manual_seed(0))


def test_chunked_feed_forward_gives_the_same_model_output():
    model = mb.BertModel(tiny()).eval()
    x = ids()
    ref = model(x).last_hidden_state
    chunked = mb.BertModel(tiny(chunk_size_feed_forward=4)).eval()
    chunked.load_state_dict(model.state_dict())
    pieces = []  # positions per call of each block's up-projection: the chunks really are run one by one
    for layer in chunked.layers:
        layer.ffn.up.register_forward_hook(lambda module, args, out: pieces.append(args[0].shape[-2]))
    torch.testing.assert_close(chunked(x).last_hidden_state, ref)
    assert pieces == [4, 4, 1] * len(chunked.layers)


def spy_on_checkpoint(monkeypatch, module) -> list:
    """The blocks `module` (a model file) hands to torch.utils.checkpoint, one entry per call."""
    calls, real = [], module.checkpoint

    def counting(fn, *args, **kwargs):
        calls.append(fn)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(module, "checkpoint", counting)
    return calls


@pytest.mark.parametrize("unpad", [False, True], ids=["padded", "unpad"])
def test_gradient_checkpointing_gives_the_same_gradients(unpad, monkeypatch):
    """With dropout on, so the recomputed forward must draw the masks the first one drew (the RNG state
    restored), and each block checkpointed once per forward: the path is taken, not only allowed."""
    cfg = tiny(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3, unpad=unpad, sparse_mlm=unpad)
    a = mb.BertForMaskedLM(cfg).train()
    b = mb.BertForMaskedLM(cfg).train()
    b.load_state_dict(a.state_dict())
    b.gradient_checkpointing_enable()
    calls = spy_on_checkpoint(monkeypatch, mb)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    x = ids(B=3).masked_fill(mask == 0, 0)
    labels = x.masked_fill(mask == 0, -100)
    torch.manual_seed(1)
    a(x, attention_mask=mask, labels=labels).loss.backward()
    assert calls == []
    torch.manual_seed(1)
    b(x, attention_mask=mask, labels=labels).loss.backward()
    assert calls == list(b.bert.layers)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_initialisation_is_berts():
    torch.manual_seed(0)
    model = mb.BertForPreTraining(tiny(hidden_size=64, intermediate_size=256, initializer_range=0.05))
    w = model.bert.layers[0].ffn.up.weight
    assert abs(w.std().item() - 0.05) < 0.005 and abs(w.mean().item()) < 0.005
    assert torch.all(model.bert.layers[0].ffn.up.bias == 0)
    norm = model.bert.embeddings.layer_norm
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    assert torch.all(model.bert.embeddings.word_embeddings.weight[0] == 0)  # padding row
    assert torch.all(model.mlm_head.bias == 0)


def test_dropout_is_off_in_eval_and_on_in_train():
    model = mb.BertModel(tiny())
    x = ids()
    model.train()
    assert not torch.equal(model(x).last_hidden_state, model(x).last_hidden_state)
    model.eval()
    assert torch.equal(model(x).last_hidden_state, model(x).last_hidden_state)


def test_mlm_decoder_is_tied_to_word_embeddings():
    model = mb.BertForMaskedLM(tiny())
    x = ids()
    out = model(x, labels=x)
    out.loss.backward()
    assert model.bert.embeddings.word_embeddings.weight.grad is not None
    assert "mlm_head.decoder.weight" not in model.state_dict()  # stored once, as the embedding


# --- loading what real checkpoints contain ----------------------------------------------------
def _hf_pretraining(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=40)
    hf = transformers.BertForPreTraining(cfg).eval()
    hf.save_pretrained(tmp_path)
    return hf


def test_base_model_from_head_checkpoint_and_back(tmp_path):
    hf = _hf_pretraining(tmp_path)
    base = mb.BertModel.from_pretrained(tmp_path)  # strips `bert.`, ignores the heads
    assert any(k.startswith("cls.") for k in base.loading_info["ignored"])
    torch.testing.assert_close(base(ids()).last_hidden_state, hf.bert(ids()).last_hidden_state)
    base.save_pretrained(tmp_path / "base")
    clf = mb.BertForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=5)
    assert sorted(clf.loading_info["newly_initialized"]) == ["classifier.bias", "classifier.weight"]
    assert clf.classifier.out_features == 5
    mlm = mb.BertForMaskedLM.from_pretrained(tmp_path)  # its checkpoint pooler is not used
    assert "bert.pooler.dense.weight" in mlm.loading_info["ignored"]


def test_a_head_left_random_or_weights_left_unread_are_warnings(tmp_path, caplog):
    """A misspelt head key loaded with nothing above INFO: a random head, and no word a user would see."""
    hf = _hf_pretraining(tmp_path)
    state = hf.state_dict()
    state["cls.seq_relationshp.weight"] = state.pop("cls.seq_relationship.weight")  # misspelt
    with caplog.at_level("WARNING", logger="minibert.modeling"):
        model = mb.BertForPreTraining(mb.BertConfig.from_json(tmp_path / "config.json"))
        model.load_hf_state_dict(state)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("newly initialised" in m and "nsp_head.weight" in m for m in warned), warned
    assert any("ignored" in m and "cls.seq_relationshp.weight" in m for m in warned), warned


def test_legacy_names_buffers_and_torch_bin(tmp_path):
    hf = _hf_pretraining(tmp_path)
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in hf.state_dict().items()}
    state["bert.embeddings.position_ids"] = torch.arange(40)[None]
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    ours = mb.BertForPreTraining.from_pretrained(tmp_path)
    torch.testing.assert_close(ours(ids()).prediction_logits, hf(ids()).prediction_logits, atol=1e-5, rtol=1e-5)


def test_sharded_checkpoint(tmp_path):
    hf = _hf_pretraining(tmp_path)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="50KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    ours = minibert.load_pretrained(tmp_path / "sharded")
    assert isinstance(ours, mb.BertForPreTraining)
    torch.testing.assert_close(ours(ids()).prediction_logits, hf(ids()).prediction_logits, atol=1e-5, rtol=1e-5)


# --- bad input: clear errors that name the problem and the fix -----------------------------
def test_sequence_longer_than_positions():
    model = mb.BertModel(tiny())
    with pytest.raises(ValueError, match="41 tokens but this model takes at most 40.*truncate"):
        model(torch.ones(1, 41, dtype=torch.long))
    roberta = mb.RobertaModel(mb.RobertaConfig(vocab_size=60, hidden_size=32, num_attention_heads=4,
                                               max_position_embeddings=40, pad_token_id=1))
    with pytest.raises(ValueError, match="at most 38"):
        roberta(torch.full((1, 39), 5))


def test_token_id_out_of_vocabulary():
    with pytest.raises(ValueError, match="input_ids holds id 60, outside 0..59.*vocab_size is 60.*tokenizer"):
        mb.BertModel(tiny())(torch.tensor([[1, 2, 60]]))


def test_attention_mask_shape_mismatch():
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 8\) but input_ids has \(2, 9\)"):
        mb.BertModel(tiny())(ids(), attention_mask=torch.ones(2, 8))


def test_config_validation():
    with pytest.raises(ValueError, match="not divisible by num_attention_heads"):
        tiny(num_attention_heads=5)
    with pytest.raises(ValueError, match="unknown activation function 'swishy'"):
        tiny(hidden_act="swishy")
    # zero or negative heads (96 % -2 == 0 passed the divisibility test), a size written as a string
    for bad, message in (({"num_attention_heads": 0}, "num_attention_heads must be at least 1, got 0"),
                         ({"num_attention_heads": -2}, "num_attention_heads must be at least 1, got -2"),
                         ({"hidden_size": "32"}, "hidden_size must be a whole number, got '32'")):
        with pytest.raises(ValueError, match=message):
            tiny(**bad)
    for config, field in ((minibert.GPT2Config, "n_head"), (minibert.BartConfig, "decoder_attention_heads")):
        with pytest.raises(ValueError, match=f"{field} must be at least 1, got 0"):
            config(**{field: 0})


def test_directory_without_config(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        minibert.load_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        minibert.load_pretrained(tmp_path / "nope")


def test_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ValueError, match="unsupported model_type 't5'.*supports.*bert"):
        minibert.load_pretrained(tmp_path)


def test_wrong_family_for_class(tmp_path):
    _hf_pretraining(tmp_path)
    with pytest.raises(ValueError, match="model_type 'bert' but RobertaConfig is for 'roberta'"):
        mb.RobertaModel.from_pretrained(tmp_path)


def test_checkpoint_shapes_do_not_fit_config(tmp_path):
    _hf_pretraining(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    fits = r"intermediate.dense.(weight|bias): checkpoint has shape \(48.*but the config gives \(64"
    with pytest.raises(ValueError, match=fits):
        mb.BertForPreTraining.from_pretrained(tmp_path)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    hf = _hf_pretraining(tmp_path)
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in hf.state_dict().items() if "layer.1.output.dense" not in k}
    state["bert.encoder.layer.0.adapter.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys \['bert.layers.1.ffn.down.weight', "
                                         r"'bert.layers.1.ffn.down.bias'\]; unexpected keys "
                                         r"\['bert.encoder.layer.0.adapter.weight'\]"):
        mb.BertForPreTraining.from_pretrained(tmp_path)


def test_no_weights_in_directory(tmp_path):
    mb.BertConfig(vocab_size=10, hidden_size=8, num_attention_heads=2).to_json(tmp_path / "config.json")
    with pytest.raises(ValueError, match="no weights"):
        mb.BertModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("cls", [mb.BertForPreTraining, mb.RobertaForSequenceClassification])
def test_unpadded_layers_match_the_padded_computation(cls):
    """config.unpad runs the position-wise layers on real tokens only: same outputs at real
    positions, same loss, same gradient for every parameter."""
    config_cls = cls.config_class
    cfg = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
               max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
               chunk_size_feed_forward=3)
    torch.manual_seed(0)
    padded = cls(config_cls(**cfg)).train()
    packed = cls(config_cls(**cfg, unpad=True)).train()
    packed.load_state_dict(padded.state_dict())
    x = ids(B=3, T=9)
    mask = torch.ones_like(x)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    x = x.masked_fill(mask == 0, padded.config.pad_token_id)
    labels = {"labels": x.masked_fill(mask == 0, -100), "next_sentence_label": torch.tensor([0, 1, 0])} \
        if cls is mb.BertForPreTraining else {"labels": torch.tensor([1, 0, 1])}
    a = padded(x, attention_mask=mask, output_hidden_states=True, **labels)
    b = packed(x, attention_mask=mask, output_hidden_states=True, **labels)
    real = mask.bool()
    for h_a, h_b in zip(a.hidden_states, b.hidden_states, strict=True):
        torch.testing.assert_close(h_b[real], h_a[real], atol=1e-5, rtol=1e-5)
        assert torch.all(h_b[~real] == 0)
    torch.testing.assert_close(b.loss, a.loss, atol=1e-5, rtol=1e-5)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(padded.named_parameters(), packed.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert "unpad" not in packed.config.to_dict()


@pytest.mark.parametrize("cls", [mb.BertForSequenceClassification, mb.RobertaForSequenceClassification,
                                 mb.BertModel])
def test_a_left_padded_batch_is_not_unpadded(cls):
    """The pooler and the classification heads read position 0, a pad in a left-padded row: unpacking
    left it at zeros (logits 0 for those rows); the batch runs padded instead, exactly."""
    cfg = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
               max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    padded = cls(cls.config_class(**cfg))
    packed = cls(cls.config_class(**cfg, unpad=True))
    packed.load_state_dict(padded.state_dict())
    x = ids(B=3, T=9)
    mask = torch.ones_like(x)
    mask[1, :4] = 0
    mask[2, :7] = 0
    x = x.masked_fill(mask == 0, padded.config.pad_token_id)
    a, b = padded(x, attention_mask=mask), packed(x, attention_mask=mask)
    name = "logits" if hasattr(a, "logits") else "pooler_output"
    torch.testing.assert_close(getattr(b, name), getattr(a, name), atol=0, rtol=0)


def test_extractive_qa_refuses_unpad():
    """Its span softmax covers every position, padding included (as Hugging Face's)."""
    with pytest.raises(ValueError, match="unpad=True cannot run extractive QA exactly"):
        mb.BertForQuestionAnswering(mb.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1,
                                                  num_attention_heads=4, intermediate_size=48, unpad=True))


@pytest.mark.parametrize("cls", [mb.BertForPreTraining, mb.BertForMaskedLM])
def test_sparse_mlm_gives_the_same_loss_gradients_and_labelled_logits(cls):
    cfg = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    dense = cls(mb.BertConfig(**cfg))
    sparse = cls(mb.BertConfig(**cfg, sparse_mlm=True))
    sparse.load_state_dict(dense.state_dict())
    x = ids(B=3, T=9)
    labels = x.masked_fill(torch.rand(3, 9, generator=torch.Generator().manual_seed(1)) > 0.3, -100)
    extra = {"next_sentence_label": torch.tensor([0, 1, 0])} if cls is mb.BertForPreTraining else {}
    a, b = dense(x, labels=labels, **extra), sparse(x, labels=labels, **extra)
    la = a.prediction_logits if cls is mb.BertForPreTraining else a.logits
    lb = b.prediction_logits if cls is mb.BertForPreTraining else b.logits
    assert lb.shape == la.shape
    torch.testing.assert_close(lb[labels != -100], la[labels != -100])
    assert torch.all(lb[labels == -100] == 0)
    torch.testing.assert_close(b.loss, a.loss)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(dense.named_parameters(), sparse.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=name)
    torch.testing.assert_close(sparse(x).prediction_logits if cls is mb.BertForPreTraining else sparse(x).logits,
                               la.detach(), atol=1e-6, rtol=1e-5)  # without labels: every position


def test_untied_embeddings_are_refused_only_where_there_is_a_decoder(tmp_path):
    """tie_word_embeddings false refused every BERT class, a classifier (which has no decoder to tie) too;
    transformers loads that one, with the outputs minibert gives."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=48, tie_word_embeddings=False, num_labels=3)
    hf = transformers.BertForSequenceClassification(cfg).eval()
    hf.save_pretrained(tmp_path / "cls")
    ours = mb.BertForSequenceClassification.from_pretrained(tmp_path / "cls")
    torch.testing.assert_close(ours(ids()).logits, hf(ids()).logits)
    transformers.BertForMaskedLM(cfg).save_pretrained(tmp_path / "mlm")
    with pytest.raises(ValueError, match="A new model .*: set tie_word_embeddings to true. A checkpoint trained "
                                         "untied, whose MLM decoder is a matrix of its own.*minibert.BertModel"
                                         r".from_pretrained\(path\) or a classification head.*would drop the "
                                         "trained decoder"):
        mb.BertForMaskedLM.from_pretrained(tmp_path / "mlm")
    # RoBERTa's names RobertaModel: BertModel.from_pretrained refuses a roberta config
    roberta = transformers.RobertaConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=48, tie_word_embeddings=False)
    transformers.RobertaForMaskedLM(roberta).save_pretrained(tmp_path / "roberta")
    with pytest.raises(ValueError, match=r"minibert's RoBERTa ties .*minibert.RobertaModel.from_pretrained\(path\)"):
        mb.RobertaForMaskedLM.from_pretrained(tmp_path / "roberta")
    assert mb.RobertaModel.from_pretrained(tmp_path / "roberta").config.tie_word_embeddings is False

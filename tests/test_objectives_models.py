"""One forward and backward pass per objective through the model it trains, on a tiny config;
ELECTRA's labels, loss and saved discriminator."""

import pytest
import torch

from minibert.data import build_objective, load_corpus
from minibert.models.bert import BertForSequenceClassification, BertModel
from minibert.tokenizer import train_tokenizer

TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TINY_GPT = {"n_embd": 32, "n_layer": 2, "n_head": 2}
TINY_BART = {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
             "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64}
MSL = 64


@pytest.fixture(scope="module")
def docs():
    return load_corpus()[:6]


@pytest.fixture(scope="module")
def tokenizers(docs):
    texts = [" ".join(d) for d in docs]
    return {"wordpiece": train_tokenizer(texts, vocab_size=400),
            "bytelevel_bpe": train_tokenizer(texts, kind="bytelevel_bpe", vocab_size=400)}


@pytest.mark.parametrize("name,kind,config", [
    ("mlm", "wordpiece", TINY_BERT), ("wwm", "wordpiece", TINY_BERT), ("span", "bytelevel_bpe", TINY_BERT),
    ("nsp", "wordpiece", TINY_BERT), ("sop", "wordpiece", TINY_BERT), ("electra", "wordpiece", TINY_BERT),
    ("clm", "bytelevel_bpe", TINY_GPT), ("bart", "bytelevel_bpe", TINY_BART)])
def test_forward_backward(name, kind, config, tokenizers, docs):
    objective = build_objective(name, tokenizers[kind], MSL)
    model = objective.build_model(config)
    batch = objective.collate(objective.examples(docs)[:4], torch.Generator().manual_seed(0))
    out = model(**batch)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) >= 0.9 * len(grads)
    metrics = objective.metrics(batch, out)
    assert metrics and all(0.0 <= v <= 1.0 for v in metrics.values())
    assert objective.model_family == {"clm": "gpt", "bart": "bart"}.get(name, "bert")


def test_electra_labels_loss_and_shared_embeddings(tokenizers, docs):
    objective = build_objective("electra", tokenizers["wordpiece"], MSL)
    model = objective.build_model(TINY_BERT)
    assert model.generator.config.hidden_size == 8
    assert model.generator.embeddings.shared is model.discriminator.embeddings
    batch = objective.collate(objective.examples(docs)[:8], torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    out = model(**batch)
    masked = batch["labels"] != -100
    original = torch.where(masked, batch["labels"], batch["input_ids"])
    labels, corrupted = out.discriminator_labels, out.corrupted_input_ids
    assert torch.equal(corrupted[~masked], batch["input_ids"][~masked])  # only masked positions are filled
    assert torch.equal(labels.bool(), corrupted != original)  # a right guess counts as original
    assert not labels[~masked].any() and labels[masked].any()
    assert (corrupted[masked] != objective.tokenizer.mask_token_id).float().mean() > 0.9  # samples, not [MASK]
    torch.testing.assert_close(out.loss, out.generator_loss + 50.0 * out.discriminator_loss)
    model.discriminator_weight = 0.0  # the generator's MLM loss alone ...
    model(**batch).loss.backward()
    head_grad = model.discriminator_head.out.weight.grad
    assert head_grad is None or not head_grad.abs().sum()  # ... never reaches the discriminator head
    model.zero_grad()
    model.discriminator_weight = 50.0
    model.generator_head.dense.weight.requires_grad_(False)
    out = model(**batch)
    out.discriminator_loss.backward()  # no gradient flows back through the sampling into the generator
    assert all(p.grad is None or not p.grad.abs().sum() for n, p in model.generator.named_parameters()
               if "embeddings.shared" not in n)


def test_electra_discriminator_saves_as_bert(tokenizers, docs, tmp_path):
    objective = build_objective("electra", tokenizers["wordpiece"], MSL)
    model = objective.build_model(TINY_BERT).eval()
    model.save_pretrained(tmp_path)
    batch = objective.collate(objective.examples(docs)[:2], torch.Generator().manual_seed(0))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    expected = model.discriminator(**inputs).last_hidden_state
    torch.testing.assert_close(BertModel.from_pretrained(tmp_path)(**inputs).last_hidden_state, expected)
    assert BertForSequenceClassification.from_pretrained(tmp_path, num_labels=3).classifier.out_features == 3
    transformers = pytest.importorskip("transformers")
    theirs = transformers.BertModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(theirs(**inputs).last_hidden_state, expected, atol=1e-5, rtol=1e-5)


def test_model_too_short_for_max_seq_length(tokenizers):
    objective = build_objective("clm", tokenizers["bytelevel_bpe"], 256)
    with pytest.raises(ValueError, match="max_seq_length 256 is larger than the model allows"):
        objective.build_model({**TINY_GPT, "n_positions": 128})
    small = build_objective("mlm", tokenizers["wordpiece"], 32).build_model(TINY_BERT)
    with pytest.raises(ValueError, match="larger than the model allows"):
        build_objective("mlm", tokenizers["wordpiece"], 1024).check_model(small)

"""Audit of the pooling heads, PooledClassifier and embed: each code fix with a test that fails without it
(the pooler error's claim, embed's layer= with a pooling that never reads it, max_length=0, a pooling module
left on the model's device), and what the audit checked against references: SBERT-WK against the authors'
code, PooledClassifier's pooler head against transformers' BertForSequenceClassification (logits and the loss
of each problem type), padding and gradients of every head."""

import numpy as np
import pytest
import torch

import minibert.finetune.pooling as pooling_module
from minibert.finetune.classifier import PooledClassifier
from minibert.finetune.pooling import POOLINGS, build_pooling, sbert_wk
from minibert.models.bert import BertConfig, BertForMaskedLM, BertModel, RobertaConfig, RobertaModel
from minibert.sentence_embeddings import embed
from minibert.tokenizer import WORDPIECE_SPECIALS, Tokenizer, wordpiece_backend

WORDS = "the king is dead long live a horse my kingdom for to be or not that question".split()
SENTENCES = ["The king is dead.", "Long live the king!", "A horse, a horse, my kingdom for a horse!", "king"]


def tiny_tokenizer() -> Tokenizer:
    tokens = list(WORDPIECE_SPECIALS.values()) + WORDS + list(",.!:")
    return Tokenizer(wordpiece_backend({t: i for i, t in enumerate(tokens)}), WORDPIECE_SPECIALS, "wordpiece")


def tiny_config(layers: int = 4) -> BertConfig:
    return BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=32)


def tiny_bert(layers: int = 4) -> BertModel:
    torch.manual_seed(0)
    return BertModel(tiny_config(layers)).eval()


# ---------------------------------------------------------------------------------------------
# The fixes
# ---------------------------------------------------------------------------------------------
def test_the_pooler_error_says_what_lacks_a_pooler_and_names_embeds_argument():
    # It said "(RoBERTa has none)", but minibert's RobertaModel builds a pooler as BertModel does (so
    # `--pooling pooler` on RoBERTa trains it); what has none is the encoder inside a head that never reads
    # it, a BERT masked-LM's too. And embed's caller passes pooling='cls', not a flag.
    config = RobertaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=40, pad_token_id=0)
    assert RobertaModel(config).pooler is not None
    torch.manual_seed(0)
    head = BertForMaskedLM(tiny_config()).eval()
    with pytest.raises(ValueError, match=r"this encoder was built without one \(add_pooling_layer=False: the encoder "
                                         r"inside a masked-LM.*use --pooling cls \(embed: pooling='cls'\)") as error:
        embed(head, SENTENCES, pooling="pooler", tokenizer=tiny_tokenizer())
    assert "RoBERTa has none" not in str(error.value)


def test_embed_refuses_layer_with_a_pooling_that_never_reads_it():
    # layer= was read by "cls_layer" only and silently dropped otherwise: layer=-2 with "mean" (bert-as-service's
    # mean of the second-to-last layer) gave the last layer's mean. train.py refuses --pooling_layer likewise.
    model, tok = tiny_bert(), tiny_tokenizer()
    last = embed(model, SENTENCES, tokenizer=tok)
    with pytest.raises(ValueError, match=r"layer=-2 picks the hidden state that pooling='cls_layer' reads, and this "
                                         r"call pools with 'mean'.*pass pooling='cls_layer', or leave layer out"):
        embed(model, SENTENCES, tokenizer=tok, pooling="mean", layer=-2)
    with pytest.raises(ValueError, match=r"layer=1 .* pools with 'MeanPooling'"):
        embed(model, SENTENCES, tokenizer=tok, pooling=build_pooling("mean", 16, 4), layer=1)
    np.testing.assert_array_equal(embed(model, SENTENCES, tokenizer=tok, pooling="mean"), last)
    # cls_layer reads the layer given, and -2 (second to last) when none is
    batch = tok(SENTENCES)
    with torch.no_grad():
        states = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                       output_hidden_states=True).hidden_states
    for layer, expected in ((1, states[1][:, 0]), (None, states[-2][:, 0])):
        got = embed(model, SENTENCES, tokenizer=tok, pooling="cls_layer", layer=layer)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_embed_refuses_max_length_0():
    # 0 was read as "not given" (max_length or the tokenizer's limit): the full length without a word, where the
    # tokenizer itself refuses max_length=0
    model, tok = tiny_bert(), tiny_tokenizer()
    with pytest.raises(ValueError, match=r"max_length must be >= 1, got 0; pass None for the model's own limit"):
        embed(model, SENTENCES, tokenizer=tok, max_length=0)


def test_embed_leaves_the_callers_pooling_module_on_its_own_device():
    # embed called .to(device) on the pooling module it was given and left it there: on a GPU, a CPU model's
    # trained head (PooledClassifier.load(...).pooling) passed with a model on cuda stayed on cuda, apart from
    # the rest of its classifier. The meta device stands in for the GPU here (the encoder cannot run on it, so
    # the call fails, after the pooling has been set up for the model's device).
    tok = tiny_tokenizer()
    model = tiny_bert().to("meta")
    torch.manual_seed(0)
    head = build_pooling("attention", 16, 4)
    q = head.q.detach().clone()
    with pytest.raises(RuntimeError, match="meta"):
        embed(model, SENTENCES, pooling=head, tokenizer=tok)
    assert head.q.device.type == "cpu" and head.w.device.type == "cpu"
    torch.testing.assert_close(head.q.detach(), q, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Checked and found right: pinned
# ---------------------------------------------------------------------------------------------
PARAMETER_FREE = ("pooler", "cls", "mean", "max", "mean_max", "mean_max_cls", "cls_layer", "concat_last4", "sbert_wk")


@pytest.mark.parametrize("name", POOLINGS)
def test_every_pooling_padding_alone_in_a_batch_and_gradients(name):
    # a row alone, padded to 3x its length with large noise, and in a batch of others: the same vector (fp32,
    # 1e-6); no gradient reaches a padded position; parameter-free heads hold no parameter
    torch.manual_seed(0)
    E, L, n = 8, 4, 5
    alone = tuple(torch.randn(1, n, E) for _ in range(L + 1))
    pooler_output = torch.randn(1, E, requires_grad=True)
    pooling = build_pooling(name, E, L).eval()
    assert (sum(p.numel() for p in pooling.parameters()) == 0) == (name in PARAMETER_FREE)
    padded = tuple(torch.cat([h, 100 * torch.randn(1, 2 * n, E)], 1).requires_grad_() for h in alone)
    mask = torch.tensor([[1] * n + [0] * 2 * n])
    others = tuple(torch.randn(2, 3 * n, E) for _ in range(L + 1))
    batch = tuple(torch.cat([a.detach(), b]) for a, b in zip(padded, others, strict=True))
    batch_mask = torch.cat([mask, torch.ones(2, 3 * n, dtype=torch.long)])
    expected = pooling(alone, torch.ones(1, n, dtype=torch.long), pooler_output)
    out = pooling(padded, mask, pooler_output)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(pooling(batch, batch_mask, torch.cat([pooler_output, torch.randn(2, E)]))[:1],
                               expected, rtol=0, atol=1e-6)
    out.square().sum().backward()
    for h in padded:
        assert h.grad is None or not h.grad[0, n:].any()


def authors_sbert_wk(states: tuple[torch.Tensor, ...], mask: torch.Tensor, layer_start: int, window: int):
    """A numpy port of the authors' utils.py (BinWang28/SBERT-WK-Sentence-Embedding, dissecting / unify_token /
    unify_sentence), loops and slices as written there, population variance (np.var) included."""
    layers = torch.stack(states, 1).numpy()[:, layer_start:]  # (B, L', T, E)
    out = []
    for b, n in enumerate(mask.sum(1).numpy() - 1):  # "Not considering the last item"
        sentence = layers[b, :, :n]  # (L', n, E)
        tokens, importance = [], []
        for t in range(n):
            f = sentence[:, t]  # (L', E)
            align, novel = np.zeros(len(f)), np.zeros(len(f))
            for k in range(len(f)):
                w = np.vstack([f[k - window:k], f[k + 1:k + window + 1], f[k][None]])
                _, R = np.linalg.qr(w.T)
                r = R[:, -1]
                unit = R[:-1, :-1] / np.linalg.norm(R[:-1, :-1], axis=0)  # sklearn's normalize(axis=0)
                align[k] = 1 / (unit.mean(axis=1).dot(R[:-1, -1]) / np.linalg.norm(r[:-1]) * w.shape[0] * 2)
                novel[k] = abs(r[-1]) / np.linalg.norm(r)
            alpha = novel / novel.sum() + align / align.sum()
            tokens.append(f.T.dot(alpha / alpha.sum()))
            unit = f / np.linalg.norm(f, axis=1, keepdims=True)
            importance.append(np.var((unit @ unit.T).diagonal(-1)))
        importance = np.array(importance)
        out.append(np.array(tokens).T.dot(importance / importance.sum()))
    return np.array(out)


def test_sbert_wk_equals_the_authors_code_up_to_the_documented_window():
    # correlated layers, as a model's are; 13 hidden states and layer_start 4, as BERT-base and the authors' default
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 7, 16, generator=g, dtype=torch.float64)
    states = tuple(base + 0.5 * torch.randn(3, 7, 16, generator=g, dtype=torch.float64) for _ in range(13))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    # window 1: the authors' left slice is right for every layer, so the two agree exactly
    np.testing.assert_allclose(sbert_wk(states, mask, 4, 1).numpy(), authors_sbert_wk(states, mask, 4, 1),
                               rtol=1e-10, atol=1e-12)
    # window 2: they differ only by the window of used layer 1 (the module comment's deliberate difference) ...
    ours = sbert_wk(states, mask, 4, 2).numpy()
    theirs = authors_sbert_wk(states, mask, 4, 2)
    assert not np.allclose(ours, theirs, atol=1e-6)

    def authors_window(layer: int, num_layers: int, window: int) -> list[int]:  # token_feature[k-window:k] etc.
        used = list(range(num_layers))
        return used[layer - window:layer] + used[layer + 1:layer + window + 1] + [layer]

    original = pooling_module._window
    pooling_module._window = authors_window
    try:  # ... so with the authors' window the formulas agree
        np.testing.assert_allclose(sbert_wk(states, mask, 4, 2).numpy(), theirs, rtol=1e-10, atol=1e-12)
    finally:
        pooling_module._window = original


@pytest.mark.parametrize("problem_type,num_labels,labels", [
    ("regression", 1, torch.tensor([0.5, -1.0, 2.0])),
    ("single_label_classification", 3, torch.tensor([0, 2, 1])),
    ("multi_label_classification", 3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])),
])
def test_pooled_classifier_on_the_pooler_is_hugging_faces_sequence_classifier(tmp_path, problem_type, num_labels,
                                                                              labels):
    # pooler -> dropout -> linear and the loss of each problem type, as BertForSequenceClassification
    from transformers import BertConfig as HFBertConfig
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    theirs = BertForSequenceClassification(HFBertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=num_labels, problem_type=problem_type)).eval()
    theirs.bert.save_pretrained(tmp_path)
    ours = PooledClassifier(BertModel.from_pretrained(tmp_path), "pooler", num_labels, problem_type).eval()
    ours.classifier.load_state_dict(theirs.classifier.state_dict())
    assert ours.dropout.p == theirs.dropout.p
    ids = torch.randint(5, 40, (3, 6))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, labels=labels)
        got = ours(ids, mask, labels=labels)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-5, atol=1e-6)

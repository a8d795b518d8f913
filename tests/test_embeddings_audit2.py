"""Audit of sentence embeddings, neighbour heads and pooling heads: embed against Hugging Face on a
sentence-transformers style directory, a device named without its index, the neighbour heads' frequency
count, and what the pooling heads do with other mask dtypes and left padding (as their docstring says)."""

import json

import numpy as np
import pytest
import torch

from minibert.finetune.pooling import POOLINGS, build_pooling, sbert_wk
from minibert.models.bert import BertConfig, BertModel
from minibert.neighbour_heads import write_neighbour_heads
from minibert.sentence_embeddings import embed
from minibert.tokenizer import WORDPIECE_SPECIALS, Tokenizer, wordpiece_backend

WORDS = "the king is dead long live a horse my kingdom for to be or not that question".split()
SENTENCES = ["The king is dead.", "Long live the king!", "A horse, a horse, my kingdom for a horse!", "king", "",
             " ".join(["horse"] * 60)]  # an empty text, and one longer than the tokenizer's 24 tokens


def tiny_tokenizer() -> Tokenizer:
    tokens = list(WORDPIECE_SPECIALS.values()) + WORDS + list(",.!:")
    return Tokenizer(wordpiece_backend({t: i for i, t in enumerate(tokens)}), WORDPIECE_SPECIALS, "wordpiece")


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    return BertModel(config).eval()


@pytest.fixture(scope="module")
def st_directory(tmp_path_factory):
    """What sentence-transformers saves for a BERT: the transformer's config, weights and tokenizer at the
    root, 1_Pooling/config.json and modules.json beside them; built with transformers alone. Returns the
    directory and sentence-transformers' mean / CLS / max vectors of SENTENCES, computed on Hugging Face."""
    from transformers import BertConfig as HFBertConfig
    from transformers import BertModel as HFBertModel
    from transformers import BertTokenizerFast

    path = tmp_path_factory.mktemp("st")
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *",.!:"]) + "\n")
    tokenizer = BertTokenizerFast(str(path / "vocab.txt"), model_max_length=24)
    torch.manual_seed(0)
    model = HFBertModel(HFBertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 16,
                                                                "pooling_mode_mean_tokens": True}))
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    with torch.no_grad():
        batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=24, return_tensors="pt")
        h = model(**batch).last_hidden_state  # (N, T, E)
        keep = batch["attention_mask"].unsqueeze(-1).float()
        # sentence-transformers' Pooling module, mode by mode
        mean = (h * keep).sum(1) / keep.sum(1).clamp(min=1e-9)
        cls = h[:, 0]
        biggest = h.masked_fill(keep == 0, -1e9).max(1).values
    return path, {"mean": mean.numpy(), "cls": cls.numpy(), "max": biggest.numpy()}


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
@pytest.mark.parametrize("batch_size", [1, 2, 100])
def test_embed_equals_sentence_transformers_pooling_on_hugging_face(st_directory, pooling, batch_size):
    # sorted by length, batched (one sentence a batch, two, or a batch larger than the input), an empty
    # text and one cut to the tokenizer's model_max_length: the vectors come back in the input order
    path, expected = st_directory
    got = embed(path, SENTENCES, pooling=pooling, batch_size=batch_size, device="cpu")
    assert got.shape == (len(SENTENCES), 16) and got.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected[pooling]), rtol=1e-5, atol=1e-6)


def test_embed_normalize_one_text_and_none_on_a_hugging_face_directory(st_directory):
    path, expected = st_directory
    unit = expected["mean"] / np.linalg.norm(expected["mean"], axis=1, keepdims=True)  # F.normalize, as ST's Normalize
    torch.testing.assert_close(torch.from_numpy(embed(path, SENTENCES, normalize=True, device="cpu")),
                               torch.from_numpy(unit), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(embed(path, SENTENCES[2:3], device="cpu")),
                               torch.from_numpy(expected["mean"][2:3]), rtol=1e-5, atol=1e-6)
    assert embed(path, [], device="cpu").shape == (0, 16)


def test_embed_takes_a_device_named_without_its_index_for_the_models_own(monkeypatch):
    # torch.device("cuda") != torch.device("cuda:0"), where a model moved with .to("cuda") sits: embed(model,
    # device="cuda") was refused with "move the model first (model.to('cuda'))", the move already made.
    # The CPU shows the same with "cpu:0".
    model, tok = tiny_bert(), tiny_tokenizer()
    expected = embed(model, SENTENCES[:4], tokenizer=tok)
    np.testing.assert_array_equal(embed(model, SENTENCES[:4], tokenizer=tok, device="cpu:0"), expected)
    with pytest.raises(ValueError, match=r"given a model on cpu and device='meta'; move the model first"):
        embed(model, SENTENCES[:4], tokenizer=tok, device="meta")
    # "cuda" is the current GPU: cuda:0 here, so a model on cuda:0 runs there and one on cuda:1 is refused
    from minibert.sentence_embeddings import _same_device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert _same_device(torch.device("cuda"), torch.device("cuda:0"))
    assert _same_device(torch.device("cuda:0"), torch.device("cuda", 0))
    assert not _same_device(torch.device("cuda"), torch.device("cuda:1"))
    assert not _same_device(torch.device("cuda:0"), torch.device("cpu"))


@pytest.mark.parametrize("frequencies", [1, 0, -3, 2.5])
def test_write_neighbour_heads_refuses_fewer_than_two_frequencies(frequencies):
    # angular_frequencies(1) is 0 / 0: frequencies=1 wrote NaN position embeddings (and a NaN model) without a
    # word; 0 was a ZeroDivisionError, -3 a torch.arange error naming neither
    model = tiny_bert()
    before = model.embeddings.position_embeddings.weight.clone()
    with pytest.raises(ValueError, match=r"frequencies must be an int >= 2 .* pass e.g. frequencies=16"):
        write_neighbour_heads(model, frequencies=frequencies)
    torch.testing.assert_close(model.embeddings.position_embeddings.weight, before, rtol=0, atol=0)  # untouched
    write_neighbour_heads(model, frequencies=2)
    assert torch.isfinite(model(torch.randint(5, 40, (2, 7))).last_hidden_state).all()


@pytest.mark.parametrize("name", POOLINGS)
def test_every_pooling_takes_a_bool_int_or_float_mask_alike(name):
    torch.manual_seed(0)
    states = tuple(torch.randn(3, 6, 8) for _ in range(5))
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    pooling = build_pooling(name, 8, 4).eval()
    pooler_output = torch.randn(3, 8)
    out = pooling(states, mask, pooler_output)
    for other in (mask.bool(), mask.float(), mask.int()):
        torch.testing.assert_close(pooling(states, other, pooler_output), out, rtol=0, atol=0)


def test_sbert_wk_under_left_padding_keeps_what_the_module_docstring_says():
    # n = 4 real tokens, p pads on the left: the first n - 1 - p real tokens, none (NaN) when p >= n - 1
    torch.manual_seed(0)
    real = [torch.randn(1, 4, 8, dtype=torch.float64) for _ in range(5)]
    for pads, kept in ((1, 2), (2, 1), (3, 0)):
        left = tuple(torch.cat([torch.randn(1, pads, 8, dtype=torch.float64), h], 1) for h in real)
        out = sbert_wk(left, torch.tensor([[0] * pads + [1] * 4]), 1)
        if kept == 0:
            assert torch.isnan(out).all()
            continue
        # the first `kept` real tokens, then one more that SBERT-WK leaves out as the [SEP]
        alone = sbert_wk(tuple(h[:, : kept + 1] for h in real), torch.ones(1, kept + 1, dtype=torch.long), 1)
        torch.testing.assert_close(out, alone, rtol=1e-10, atol=1e-12)

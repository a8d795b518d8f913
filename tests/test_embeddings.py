"""Sentence vectors (embed) and BERT-whitening: against a manual forward and a direct numpy
computation of the formula, the two limits, saving beside a model, and bad input."""

import math

import numpy as np
import pytest
import torch

from minibert.finetune.pooling import POOLINGS, build_pooling
from minibert.models.bert import BertConfig, BertForMaskedLM, BertModel, RobertaConfig, RobertaModel
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel
from minibert.sentence_embeddings import (
    Whitening,
    chance_scores,
    directions_with_variance,
    embed,
    retrieval_scores,
)
from minibert.tokenizer import WORDPIECE_SPECIALS, Tokenizer, wordpiece_backend

WORDS = "the king is dead long live a horse my kingdom for to be or not that question".split()
SENTENCES = ["The king is dead.", "Long live the king!", "A horse, a horse, my kingdom for a horse!",
             "To be, or not to be: that is the question.", "the horse", "king"]


def tiny_tokenizer() -> Tokenizer:
    tokens = list(WORDPIECE_SPECIALS.values()) + WORDS + list(",.!:")
    return Tokenizer(wordpiece_backend({t: i for i, t in enumerate(tokens)}), WORDPIECE_SPECIALS, "wordpiece")


def tiny_bert(layers: int = 4, initializer_range: float = 0.02) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, initializer_range=initializer_range)
    return BertModel(config).eval()


def manual(model: BertModel, tokenizer: Tokenizer, pooling: torch.nn.Module, sentences: list[str]) -> np.ndarray:
    batch = tokenizer(sentences)  # one padded batch, in the given order
    with torch.no_grad():
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], output_hidden_states=True)
        return pooling(out.hidden_states, batch["attention_mask"], out.pooler_output).numpy()


@pytest.mark.parametrize("name", ["mean", "cls", "pooler", "max", "mean_max_cls", "cls_layer", "sbert_wk"])
def test_embed_equals_a_manual_forward_and_pooling(name):
    model, tok = tiny_bert(), tiny_tokenizer()
    pooling = build_pooling(name, 16, 4).eval()
    expected = manual(model, tok, pooling, SENTENCES)
    # batches of 4 after sorting by length: other batches, other padding, same vectors, input order
    got = embed(model, SENTENCES, pooling=pooling, tokenizer=tok, batch_size=4)
    assert got.shape == (len(SENTENCES), pooling.out_dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_sbert_wk_gives_a_sentence_the_same_vector_alone_and_in_a_batch():
    # This tiny BERT's adjacent layers are nearly parallel (cosine > 0.9999): in float32, SBERT-WK's QR
    # turned the encoder's rounding differences between a padded batch and a sentence alone into a 3e-3
    # gap. Computed in float64 it is ~3e-6.
    model, tok = tiny_bert(), tiny_tokenizer()
    batched = embed(model, SENTENCES, pooling="sbert_wk", tokenizer=tok)
    alone = np.concatenate([embed(model, [s], pooling="sbert_wk", tokenizer=tok) for s in SENTENCES])
    np.testing.assert_allclose(alone, batched, rtol=0, atol=3e-5 * np.abs(batched).max())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sbert_wk_on_a_half_precision_model(dtype):
    # torch has no float16 / bfloat16 QR: SBERT-WK computes in float64 and hands back the model's dtype.
    # Initialised wider than BERT's 0.02, so adjacent layers differ (cosine <= 0.74) by more than half
    # precision's rounding: then the vectors are as close to float32's as mean pooling's are (~3 eps).
    tok = tiny_tokenizer()
    full = embed(tiny_bert(initializer_range=0.3), SENTENCES, pooling="sbert_wk", tokenizer=tok)
    half = embed(tiny_bert(initializer_range=0.3).to(dtype), SENTENCES, pooling="sbert_wk", tokenizer=tok)
    assert half.dtype == np.float32 and np.isfinite(half).all()
    np.testing.assert_allclose(half, full, rtol=0, atol=3 * torch.finfo(dtype).eps * np.abs(full).max())


@pytest.mark.parametrize("pooling", ["conv1d", "weighted_layer", "attention", "lstm"])
def test_a_pooling_head_with_weights_runs_on_a_half_precision_model(pooling):
    # The head is built in float32 and read bfloat16 states: a dtype mismatch in its first Linear.
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    full = embed(tiny_bert(), SENTENCES, pooling=pooling, tokenizer=tok)
    torch.manual_seed(0)
    half = embed(tiny_bert().to(torch.bfloat16), SENTENCES, pooling=pooling, tokenizer=tok)
    assert np.isfinite(half).all()
    np.testing.assert_allclose(half, full, rtol=0, atol=0.05 * np.abs(full).max())


def test_embed_runs_a_pooling_module_in_eval_mode_and_gives_its_mode_back():
    class Probe(torch.nn.Module):
        out_dim = 16

        def forward(self, hidden_states, mask, pooler_output=None):
            self.modes.append(self.training)
            return hidden_states[-1][:, 0]

    probe = Probe().train()
    probe.modes = []
    embed(tiny_bert(), SENTENCES, pooling=probe, tokenizer=tiny_tokenizer(), batch_size=4)
    assert probe.modes == [False, False] and probe.training


def test_every_pooling_name_gives_n_by_out_dim():
    model, tok = tiny_bert(), tiny_tokenizer()
    for name in POOLINGS:
        out = embed(model, SENTENCES[:3], pooling=name, tokenizer=tok)
        assert out.shape == (3, build_pooling(name, 16, 4).out_dim) and np.isfinite(out).all(), name


def test_normalize_batches_and_training_mode_kept():
    model, tok = tiny_bert(), tiny_tokenizer()
    model.train()
    unit = embed(model, SENTENCES, tokenizer=tok, normalize=True, batch_size=1)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    raw = embed(model, SENTENCES, tokenizer=tok, batch_size=32)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert model.training  # embed ran in eval mode (no dropout) and gave the mode back
    assert embed(model, [], tokenizer=tok).shape == (0, 16)


def test_embed_from_a_checkpoint_directory_and_a_head_model(tmp_path):
    model, tok = tiny_bert(), tiny_tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    expected = embed(model, SENTENCES, tokenizer=tok)
    np.testing.assert_allclose(embed(tmp_path, SENTENCES, device="cpu"), expected, rtol=1e-5, atol=1e-6)
    head = BertForMaskedLM(model.config).eval()
    head.bert.load_state_dict(model.state_dict(), strict=False)  # its encoder has no pooler
    np.testing.assert_allclose(embed(head, SENTENCES, tokenizer=tok), expected, rtol=1e-5, atol=1e-6)


def test_roberta_works_and_pooler_is_refused_there():
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=40, pad_token_id=0)
    model = RobertaModel(config, add_pooling_layer=False).eval()
    tok = tiny_tokenizer()
    assert embed(model, SENTENCES, tokenizer=tok).shape == (len(SENTENCES), 16)
    with pytest.raises(ValueError, match="use --pooling cls"):
        embed(model, SENTENCES, pooling="pooler", tokenizer=tok)


def test_embed_bad_input_names_the_fix():
    model, tok = tiny_bert(), tiny_tokenizer()
    with pytest.raises(TypeError, match=r"pass \[sentence\]"):
        embed(model, "one sentence", tokenizer=tok)
    with pytest.raises(TypeError, match="sentence 1 is a int"):
        embed(model, ["a", 3], tokenizer=tok)
    with pytest.raises(ValueError, match="tokenizer=load_tokenizer"):
        embed(model, SENTENCES)
    with pytest.raises(ValueError, match="max_length<=32"):
        embed(model, SENTENCES, tokenizer=tok, max_length=100)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=16))
    with pytest.raises(ValueError, match="BERT or RoBERTa encoder, got GPT2LMHeadModel"):
        embed(gpt, SENTENCES, tokenizer=tok)
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1, got 2.5; pass e.g. batch_size=32"):
        embed(model, SENTENCES, tokenizer=tok, batch_size=2.5)

    class NoOutDim(torch.nn.Module):
        def forward(self, hidden_states, mask, pooler_output=None):
            return hidden_states[-1][:, 0]

    with pytest.raises(ValueError, match=r"int out_dim .* got NoOutDim; set self.out_dim in the module's __init__"):
        embed(model, SENTENCES, pooling=NoOutDim(), tokenizer=tok)
    with pytest.raises(ValueError, match=r"a pooling module with an int out_dim .* got NoneType"):
        embed(model, SENTENCES, pooling=None, tokenizer=tok)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_embed_on_cuda_without_a_gpu_names_the_fix():
    with pytest.raises(ValueError, match=r"device='cuda' but torch sees no GPU here; pass device='cpu'"):
        embed("/nonexistent-model-dir", SENTENCES, device="cuda")  # refused before the model loads


def test_long_sentences_are_truncated_to_the_model():
    model, tok = tiny_bert(), tiny_tokenizer()
    long = " ".join(["king"] * 100)
    np.testing.assert_allclose(embed(model, [long], tokenizer=tok), embed(model, [" ".join(["king"] * 30)],
                                                                         tokenizer=tok), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_embed_on_gpu_equals_cpu():
    model, tok = tiny_bert(), tiny_tokenizer()
    cpu = embed(model, SENTENCES, tokenizer=tok, device="cpu")
    np.testing.assert_allclose(embed(model.to("cuda"), SENTENCES, tokenizer=tok), cpu, rtol=1e-4, atol=1e-4)


def test_embed_never_moves_the_callers_model():
    model, tok = tiny_bert(), tiny_tokenizer()
    with pytest.raises(ValueError, match=r"given a model on cpu and device='meta'; move the model first"):
        embed(model, SENTENCES, tokenizer=tok, device="meta")
    assert all(p.device.type == "cpu" for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Whitening
# ---------------------------------------------------------------------------------------------
def vectors(N=200, E=12, seed=0) -> np.ndarray:
    """Anisotropic, off-centre vectors, as BERT's are: a random linear map of Gaussians plus a shift."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, E)) @ rng.normal(size=(E, E)) * np.linspace(3, 0.1, E) + rng.normal(size=E) * 5


def direct(x: np.ndarray, beta: float, gamma: float, k: int) -> np.ndarray:
    """The formula, computed directly with numpy (Sigma about beta mu, as the post defines it)."""
    mu = x.mean(axis=0)
    sigma = np.cov(x, rowvar=False, bias=True) + np.outer((1 - beta) * mu, (1 - beta) * mu)  # 1/N, as in the paper
    U, s, _ = np.linalg.svd(sigma)
    return (x - beta * mu) @ U[:, :k] @ np.diag(s[:k] ** (-gamma / 2))


@pytest.mark.parametrize("beta,gamma,k", [(1, 1, None), (0.5, 0.5, 6), (1, 0, 3), (0, 1, 12), (0.3, 0.7, 1)])
def test_whitening_equals_the_direct_numpy_formula(beta, gamma, k):
    x = vectors()
    ours = Whitening(beta, gamma, k).fit_transform(x)
    theirs = direct(x, beta, gamma, k or 12)
    assert ours.shape == theirs.shape == (200, k or 12)
    signs = np.sign((ours * theirs).sum(axis=0))  # an SVD fixes each column only up to its sign
    np.testing.assert_allclose(ours, theirs * signs, rtol=1e-7, atol=1e-9)


def test_beta_gamma_one_full_k_gives_zero_mean_identity_covariance():
    x = vectors()
    white = Whitening(1.0, 1.0).fit_transform(x)
    np.testing.assert_allclose(white.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(12), atol=1e-9)
    # and on vectors it was not fitted on (more draws of the same distribution), the same map:
    # (x - mu) W with the fitted mu and W, so their mean is near 0 and their covariance near, not at, I
    fitted, unseen = np.split(vectors(N=400), 2)
    w = Whitening(1.0, 1.0).fit(fitted)
    out = w.transform(unseen)
    np.testing.assert_allclose(out, (unseen - fitted.mean(axis=0)) @ w.kernel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=0.4)
    np.testing.assert_allclose(np.cov(out, rowvar=False, bias=True), np.eye(12), atol=0.5)
    assert not np.allclose(np.cov(out, rowvar=False, bias=True), np.eye(12), atol=1e-3)


def test_whitening_fixes_the_sign_of_each_direction():
    # An SVD gives each column of U up to its sign; the largest entry of each is made positive, so
    # the same vectors give the same transform on any machine and LAPACK (and after save / load).
    x = vectors()
    U = Whitening(1.0, 1.0).fit(x).U
    assert (U[np.abs(U).argmax(axis=0), np.arange(12)] > 0).all()
    np.testing.assert_allclose(Whitening(1.0, 1.0).fit(x[::-1]).U, U, rtol=0, atol=1e-10)  # same vectors, reordered


def test_beta_gamma_zero_full_k_is_the_identity_up_to_a_rotation():
    x = vectors()
    w = Whitening(0.0, 0.0).fit(x)
    np.testing.assert_allclose(w.kernel() @ w.kernel().T, np.eye(12), atol=1e-12)  # W orthogonal
    out = w.transform(x)
    np.testing.assert_allclose(out @ out.T, x @ x.T, rtol=1e-9)  # every dot product, norm, cosine kept
    np.testing.assert_allclose(out, x @ w.U, rtol=1e-12)


def test_float32_in_float32_out_computed_in_float64():
    x = vectors()
    w32 = Whitening(1.0, 1.0, 4).fit(x.astype(np.float32))
    out = w32.transform(x.astype(np.float32))
    assert out.dtype == np.float32 and w32.dim == 4
    np.testing.assert_allclose(out, Whitening(1.0, 1.0, 4).fit_transform(x), rtol=1e-3, atol=1e-4)


def test_save_and_load_beside_a_model(tmp_path):
    x = vectors()
    w = Whitening(0.5, 1.0, 5).fit(x)
    assert w.save(tmp_path) == tmp_path / "whitening.safetensors"
    back = Whitening.load(tmp_path)
    assert (back.beta, back.gamma, back.k, back.num_sentences) == (0.5, 1.0, 5, 200)
    np.testing.assert_array_equal(back.transform(x), w.transform(x))
    full = Whitening(1.0, 0.0).fit(x)
    full.save(tmp_path / "whitening-pca.safetensors")  # a second one beside the same model
    assert Whitening.load(tmp_path / "whitening-pca.safetensors").k is None
    full.save(tmp_path / "whitening-pca.safetensors")  # an earlier whitening may be replaced
    from safetensors.numpy import save_file

    save_file({"embeddings.weight": x}, str(tmp_path / "model.safetensors"))
    before = (tmp_path / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="holds no whitening"):  # the model's weights are never replaced
        full.save(tmp_path / "model.safetensors")
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_whitening_bad_input_names_the_fix():
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\].*beta=0.5"):
        Whitening(beta=1.5)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\].*got '0.5'; pass a number"):
        Whitening(beta="0.5")
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
        Whitening(gamma=-0.1)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
        Whitening(gamma=math.nan)
    with pytest.raises(ValueError, match="k must be a positive int"):
        Whitening(k=0)
    with pytest.raises(ValueError, match=r"k=20 but the vectors have 12 dimensions; pass k<=12"):
        Whitening(k=20).fit(vectors())
    # fewer sentences than dimensions: say so, suggest k
    with pytest.raises(ValueError, match=r"fitted on 8 sentences but k=12 .* pass k<=7 \(e.g. k=3\)"):
        Whitening().fit(vectors(N=8))
    assert Whitening(k=7).fit(vectors(N=8)).transform(vectors(N=8)).shape == (8, 7)
    assert Whitening(gamma=0.0).fit(vectors(N=8)).dim == 12  # no division by variances at gamma 0
    assert Whitening(beta=0.5, k=8).fit(vectors(N=8)).dim == 8  # uncentred, 8 vectors span 8 directions
    with pytest.raises(ValueError, match=r"fitted on 8 sentences but k=9 .* spread along at most 8 .* pass k<=8"):
        Whitening(beta=0.5, k=9).fit(vectors(N=8))
    repeated = np.repeat(vectors(N=4), 10, axis=0)  # 40 vectors, but only 4 distinct
    with pytest.raises(ValueError, match=r"vary in only 3 of their 12 directions.*pass k<=3"):
        Whitening().fit(repeated)
    assert directions_with_variance(repeated) == 3
    with pytest.raises(ValueError, match="not fitted"):
        Whitening().transform(vectors())
    with pytest.raises(ValueError, match="fitted on vectors of size 12, got 5"):
        Whitening().fit(vectors()).transform(np.ones((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        Whitening().fit(np.full((30, 3), np.nan))
    with pytest.raises(ValueError, match=r"takes float sentence vectors, got dtype int64 \(token ids\?\); pass embed"):
        Whitening(k=3).fit(np.arange(80).reshape(10, 8))
    # vectors that do not vary at all: "pass k<=0" would be no fix; and where their mean rounds (0.1),
    # Sigma is ~1e-33 instead of 0, and was whitened without a word
    for same in (np.ones((10, 8)), np.full((10, 8), 0.1)):
        with pytest.raises(ValueError, match=r"the 10 fitted vectors are all the same .* fit on the vectors of diff"):
            Whitening(k=1).fit(same)
    with pytest.raises(ValueError, match="no whitening at"):
        Whitening.load("/nonexistent-model-dir")


def test_loading_a_file_that_holds_no_whitening_names_the_fix(tmp_path):
    from safetensors.numpy import save_file

    save_file({"embeddings.weight": vectors()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors holds no whitening \(a model's weights\?\); pass the "
                                         r"model's directory \(it reads whitening.safetensors\)"):
        Whitening.load(tmp_path / "model.safetensors")


def test_mean_vectors_of_a_post_ln_bert_lose_one_direction():
    """The final LayerNorm puts every token (so every mean of tokens) on a hyperplane: full-k
    whitening would divide by a zero variance, and is refused with the k that works."""
    rng = np.random.default_rng(0)
    sentences = [" ".join(rng.choice(WORDS, size=rng.integers(2, 12))) for _ in range(60)]
    x = embed(tiny_bert(), sentences, tokenizer=tiny_tokenizer())  # (60, 16)
    assert directions_with_variance(x) == 15
    # an untrained LayerNorm has bias 0: its hyperplane holds the origin, so uncentred vectors lose it too
    assert directions_with_variance(x, beta=0.0) == 15
    with pytest.raises(ValueError, match=r"vary in only 15 of their 16 directions.*pass k<=15.*LayerNorm"):
        Whitening().fit(x)
    white = Whitening(k=15).fit_transform(x.astype(np.float64))
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(15), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Retrieval scores
# ---------------------------------------------------------------------------------------------
def test_retrieval_scores_by_hand():
    candidates = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    queries = np.array([[1.0, 0.1], [0.1, 1.0]])
    # query 0 ranks 0, 2, 1: its relevant "b" (candidate 1) at rank 3; query 1 ranks 1, 2, 0: "b" at rank 1
    scores = retrieval_scores(queries, candidates, ["b", "b"], ["a", "b", "a"], ks=(1, 2))
    assert scores == pytest.approx({"recall@1": 0.5, "recall@2": 0.5, "mrr": (1 / 3 + 1) / 2,
                                    "mrr_se": np.std([1 / 3, 1], ddof=1) / np.sqrt(2)})


def test_retrieval_scores_take_any_one_value_labels_and_refuse_labels_that_do_not_fit_the_vectors():
    """One query with two labels was broadcast into two "queries"; tuple labels became rows of a 2-D array and were
    compared element by element (wrong scores, no error); too many candidate labels said "no relevant candidate"."""
    rng = np.random.default_rng(0)
    queries, candidates = rng.normal(size=(5, 4)), rng.normal(size=(7, 4))
    as_tuples = ([("a", 1), ("b", 1), ("a", 1), ("b", 2), ("a", 2)],
                 [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 1), ("b", 2), ("a", 2)])
    assert retrieval_scores(queries, candidates, *as_tuples) == retrieval_scores(
        queries, candidates, *([str(label) for label in labels] for labels in as_tuples))
    with pytest.raises(ValueError, match=r"queries \(1, 4\) and their 2 labels: pass one label per row"):
        retrieval_scores(queries[:1], candidates, ["a", "b"], list("abababa"))
    with pytest.raises(ValueError, match=r"candidates \(7, 4\) and their 8 labels"):
        retrieval_scores(queries, candidates, list("ababa"), list("abababab"))
    with pytest.raises(ValueError, match=r"query_labels: each label must be one hashable value"):
        retrieval_scores(queries, candidates, [["a"]] * 5, list("abababa"))
    for relevant in (0, 41):
        with pytest.raises(ValueError, match=r"num_relevant .* must lie in 1..num_candidates \(40\)"):
            chance_scores(40, relevant)


def test_a_file_with_the_arrays_but_not_the_settings_is_no_whitening_and_k_sentences_fit_k_without_centring(
        tmp_path):
    from safetensors.numpy import save_file

    save_file({"mu": np.zeros(3), "U": np.eye(3), "eigenvalues": np.ones(3)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match=r"holds no whitening"):  # (was a TypeError on the missing settings)
        Whitening.load(tmp_path / "w.safetensors")
    vectors = np.random.default_rng(0).normal(size=(5, 8))
    with pytest.raises(ValueError, match=r"fit on more sentences \(at least 5,"):  # beta < 1: no direction lost
        Whitening(beta=0.5, k=5).fit(vectors[:4])
    assert Whitening(beta=0.5, k=5).fit(vectors).dim == 5
    with pytest.raises(ValueError, match=r"fit on more sentences \(at least 6,"):  # centred: one direction lost
        Whitening(k=5).fit(vectors)


def test_chance_scores_match_a_simulation():
    exact = chance_scores(40, 4, ks=(1, 5))
    assert exact["recall@1"] == pytest.approx(4 / 40)
    rng = np.random.default_rng(0)
    positions = rng.random((20000, 40)).argsort(axis=1).argsort(axis=1)  # where each candidate lands
    firsts = positions[:, :4].min(axis=1)  # candidates 0-3 are the relevant ones
    assert exact["recall@5"] == pytest.approx((firsts < 5).mean(), abs=0.01)
    assert exact["mrr"] == pytest.approx((1 / (firsts + 1)).mean(), abs=0.01)

"""Sentence vectors from an encoder, and BERT-whitening to make them better for cosine search.

    sentences -> tokens -> BERT / RoBERTa encoder (all hidden states) -> a pooling head -> (N, E)
    -> optionally Whitening: x~ = (x - beta mu) U Lambda^(-gamma/2), first k columns -> (N, k)

`embed(model_or_path, sentences)` gives the (N, E) float32 array sentence-transformers users
expect, with any of the pooling heads of `minibert.finetune.pooling` (default: the mean of the
last layer over real tokens). Sentences are sorted by their length in characters (as sentence-
transformers does: a cheap stand-in for their length in tokens, which it usually follows) and
batched, so a batch holds little padding; the result comes back in the input order.

BERT-whitening (Su et al. 2021, https://arxiv.org/abs/2103.15316). Why: raw BERT sentence
vectors are anisotropic (a few directions dominate, every pair looks similar under cosine);
whitening them (zero mean, identity covariance) makes cosine mean more, and keeping only the k
largest-variance directions shrinks the vectors (less memory, faster search) often at no loss.
With N fitted vectors x_i (rows):

    mu    = 1/N sum_i x_i
    Sigma = 1/N sum_i (x_i - beta mu)^T (x_i - beta mu) = U Lambda U^T     (SVD; Lambda descending)
    x~    = (x - beta mu) U[:, :k] Lambda[:k]^(-gamma/2)

beta and gamma (both in [0, 1]) are the hyper-parameters of Su's follow-up post (2022,
https://kexue.fm/archives/9079). Why: whitening hurts a model that already fits the task (a
supervised sentence encoder), and these two let it fall back: beta = gamma = 1 is standard
whitening; beta = gamma = 0 gives x U, the vectors as they are up to a rotation (U is orthogonal,
so every norm, dot product and cosine is unchanged), and with k < E a cut to the k directions of
largest second moment, which the post finds nearly free; values between tune the two parts.

Shapes: N sentences, B batch, T tokens, E vector size (the pooling's out_dim), k kept columns.
"""

import copy
import itertools
import logging
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import save_file
from torch import nn

from minibert.auto import load_pretrained
from minibert.finetune.pooling import POOLINGS, build_pooling
from minibert.models.bert import BertModel
from minibert.tokenizer import Tokenizer, load_tokenizer

logger = logging.getLogger(__name__)

WHITENING_FILE = "whitening.safetensors"
# A direction whose variance is below this share of the largest has none: float32 vectors that lie
# on a hyperplane show ~1e-15 across it; the smallest real directions seen here are above 1e-9.
NO_VARIANCE = 1e-10


def _encoder_of(model: nn.Module) -> BertModel:
    """The BERT / RoBERTa encoder inside a model (a head model's base_model, or the model itself)."""
    encoder = getattr(model, "base_model", model)
    if not isinstance(encoder, BertModel):
        raise ValueError(
            f"embed needs a BERT or RoBERTa encoder, got {type(model).__name__}; GPT-2 and BART have no "
            "pooling heads here: pass a BERT / RoBERTa checkpoint (e.g. runs/pretrain-sop)"
        )
    return encoder


def _same_device(requested: torch.device, home: torch.device) -> bool:
    """Whether `requested` names the device `home` is. torch.device("cuda") != torch.device("cuda:0"),
    yet "cuda" is where a model moved with .to("cuda") sits (the current GPU); "cpu" and "cpu:0" are one CPU."""

    def index(device: torch.device) -> int:  # an index left out: the current GPU, or the one CPU
        if device.index is not None:
            return device.index
        return torch.cuda.current_device() if device.type == "cuda" else 0

    return requested.type == home.type and index(requested) == index(home)


def _check_sentences(sentences) -> list[str]:
    if isinstance(sentences, str):
        raise TypeError("embed takes a list of sentences, got one string; pass [sentence] (the result is then (1, E))")
    sentences = list(sentences)
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(f"sentence {i} is a {type(s).__name__}, not a str; pass the texts themselves")
    return sentences


@torch.inference_mode()
def embed(model_or_path: nn.Module | str | os.PathLike, sentences: Sequence[str], pooling: str | nn.Module = "mean",
          batch_size: int = 32, normalize: bool = False, device: str | torch.device | None = None,
          tokenizer: Tokenizer | None = None, max_length: int | None = None, layer: int | None = None) -> np.ndarray:
    """Sentence vectors (N, E), float32, in the order of `sentences`.

    model_or_path: a checkpoint directory (its tokenizer is read from it too) or a loaded BERT /
      RoBERTa model (any head model: its encoder is used), then with `tokenizer=`.
    pooling: a name from minibert.finetune.pooling.POOLINGS ("mean", "cls", "pooler", "sbert_wk",
      ...) or a pooling module, e.g. the trained head of a train.py run:
      `PooledClassifier.load(dir, BertModel).pooling` (run on a copy when it sits on another device
      than the model: the caller's module stays where it is).
    layer: the hidden state pooling="cls_layer" reads (default -2, second to last); refused with any
      other pooling, which reads the layers it was built to read.
    normalize: L2-normalise each vector (then a dot product is the cosine).
    device: where to run; default the given model's own device (another one is refused: the model is
      the caller's, embed does not move it), or "cuda" when a path is given and a GPU is there.
    Sentences longer than the model takes (or than max_length) are truncated. Each batch is padded on
    the right and every row holds [CLS] and [SEP], as the pooling heads assume (see
    minibert.finetune.pooling); a pooling module called on other batches must not rely on this.
    """
    sentences = _check_sentences(sentences)
    if layer is not None and (pooling in POOLINGS and pooling != "cls_layer" or isinstance(pooling, nn.Module)):
        # train.py refuses --pooling_layer without --pooling cls_layer likewise: "mean" with layer=-2 (bert-as-
        # service's choice) would give the last layer's mean without a word
        raise ValueError(f"layer={layer} picks the hidden state that pooling='cls_layer' reads, and this call pools "
                         f"with {pooling if isinstance(pooling, str) else type(pooling).__name__!r}, which reads the "
                         "layers it was built to read; pass pooling='cls_layer', or leave layer out")
    if max_length is not None and max_length < 1:  # 0 was taken as "not given": the full length, without a word
        raise ValueError(f"max_length must be >= 1, got {max_length}; pass None for the model's own limit")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}; pass e.g. batch_size=32")
    if not isinstance(pooling, str) and not (isinstance(pooling, nn.Module)
                                             and isinstance(getattr(pooling, "out_dim", None), numbers.Integral)):
        raise ValueError(
            f"pooling must be a name (one of minibert.finetune.pooling.POOLINGS) or a pooling module with an int "
            f"out_dim (the size of the vectors it returns, for embed's (N, out_dim) array), got "
            f"{type(pooling).__name__}; set self.out_dim in the module's __init__, as the heads there do"
        )
    if isinstance(model_or_path, nn.Module):
        model = model_or_path
        if tokenizer is None:
            raise ValueError("embed was given a model but no tokenizer; pass tokenizer=load_tokenizer(checkpoint_dir)")
        home = next(model.parameters()).device
        if device is not None and not _same_device(torch.device(device), home):
            # Moving the caller's model (and leaving it there) would be a side effect nobody asked for.
            raise ValueError(f"embed was given a model on {home} and device={str(device)!r}; move the model first "
                             f"(model.to({str(device)!r})), or leave device out to run where it is")
        device = home
    else:
        if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} but torch sees no GPU here; pass device='cpu', or leave "
                             "device out (a GPU when there is one, else the CPU)")
        model = load_pretrained(model_or_path)
        tokenizer = tokenizer or load_tokenizer(model_or_path)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = _encoder_of(model)
    config = encoder.config
    fresh = [k for k in getattr(model, "loading_info", {}).get("newly_initialized", []) if "pooler" in k]
    if pooling == "pooler" and fresh:
        raise ValueError(f"pooling='pooler' reads the pooler, and this checkpoint has none ({fresh[0]} was "
                         "initialised at random when it loaded: an ELECTRA discriminator, a model saved without "
                         "it); use pooling='cls' or 'mean'")
    if isinstance(pooling, str):
        pooling = build_pooling(pooling, config.hidden_size, config.num_hidden_layers,
                                layer=-2 if layer is None else layer)
        if any(True for _ in pooling.parameters()):
            logger.warning("pooling %s has weights no training has set (a random projection; for weighted_layer "
                           "an equal average of layers); pass the trained head of a train.py run instead (see "
                           "embed's docstring)", type(pooling).__name__)
    limit = encoder.embeddings.max_tokens(config)
    if max_length is not None and max_length > limit:
        raise ValueError(f"max_length {max_length} but this model takes at most {limit} tokens; "
                         f"pass max_length<={limit}")
    max_length = min(max_length or tokenizer.model_max_length or limit, limit)

    device = torch.device(device)
    encoder.to(device)
    held = next(itertools.chain(pooling.parameters(), pooling.buffers()), None)
    if held is not None and not _same_device(device, held.device):
        # A copy, as the caller's model is never moved either: .to() would leave the caller's head (a
        # PooledClassifier's, say) on this device, apart from the rest of its classifier.
        pooling = copy.deepcopy(pooling).to(device)
    was_training = encoder.training, pooling.training
    encoder.eval()
    pooling.eval()
    weights = next((p for p in pooling.parameters() if p.is_floating_point()), None)
    out = np.zeros((len(sentences), pooling.out_dim), dtype=np.float32)  # (N, E)
    # Longest first (in characters), as sentence-transformers does: similar lengths share a batch (little padding),
    # and a too-large batch fails on the first one, not after minutes.
    order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer([sentences[i] for i in rows], max_length=max_length)
            batch = {k: v.to(device) for k, v in batch.items()}
            hidden = encoder(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"),
                             output_hidden_states=True)
            states, pooled = hidden.hidden_states, hidden.pooler_output
            if weights is not None and weights.dtype != states[0].dtype:  # a half model, a float32 head
                states = tuple(h.to(weights.dtype) for h in states)
                pooled = pooled.to(weights.dtype) if pooled is not None else None
            vectors = pooling(states, batch["attention_mask"], pooled).float()  # (B, E)
            if normalize:
                vectors = F.normalize(vectors, dim=-1)
            out[rows] = vectors.cpu().numpy()
    finally:
        encoder.train(was_training[0])
        pooling.train(was_training[1])
    return out


def _whitening_file(path: str | os.PathLike) -> Path:
    """A directory (a model's) holds whitening.safetensors; a path ending in .safetensors is the file."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path / WHITENING_FILE


def _holds_whitening(file: Path) -> bool:
    """A .safetensors file written by Whitening.save (its three arrays), not some other one."""
    try:
        with safe_open(str(file), framework="numpy") as f:
            return set(f.keys()) == {"mu", "U", "eigenvalues"} and {"beta", "gamma", "k", "num_sentences"} <= set(
                f.metadata() or {})  # (and the settings save writes beside them)
    except Exception:  # not safetensors at all
        return False


def _moments(x: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """mu (E,) and Sigma = (x - beta mu)^T (x - beta mu) / N (E, E) of float64 vectors x (N, E)."""
    mu = x.mean(axis=0)
    shifted = x - beta * mu  # (N, E)
    return mu, shifted.T @ shifted / len(x)


def directions_with_variance(vectors, beta: float = 1.0) -> int:
    """How many directions (N, E) vectors, shifted by beta mu, spread along: the largest k that
    whitening with this beta and gamma > 0 can keep. At most N - 1 at beta 1 (centred), N below;
    E - 1 at beta 1 for the mean or [CLS] vectors of a post-LN BERT (see NO_VARIANCE)."""
    x = Whitening._as_matrix(vectors, "directions_with_variance").astype(np.float64)
    eigenvalues = np.linalg.svd(_moments(x, beta)[1], compute_uv=False)  # (E,) descending
    return int((eigenvalues > eigenvalues[0] * NO_VARIANCE).sum())


class Whitening:
    """BERT-whitening with beta, gamma and k (formulas at the top of this file).

        w = Whitening(beta=1.0, gamma=1.0, k=64).fit(embed(model_dir, corpus))
        w.save(model_dir)                       # model_dir/whitening.safetensors
        vectors = Whitening.load(model_dir).transform(embed(model_dir, queries))   # (N, 64)

    Fitted in float64; `transform` returns the input's float dtype (float32 stays float32).
    The mean or [CLS] vectors of a post-LN BERT need k <= E - 1 at gamma > 0 (see NO_VARIANCE):
    `directions_with_variance(vectors, beta)` gives the largest k.
    """

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, k: int | None = None):
        for name, value in (("beta", beta), ("gamma", gamma)):
            if not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:  # also refuses NaN and "0.5"
                raise ValueError(f"{name} must be in [0, 1] (0: leave the vectors as they are, 1: standard "
                                 f"whitening), got {value!r}; pass a number between, e.g. {name}=0.5")
        if k is not None and (isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1):
            raise ValueError(f"k must be a positive int (the number of dimensions kept) or None for all, got {k!r}")
        self.beta, self.gamma, self.k = float(beta), float(gamma), None if k is None else int(k)
        self.mu: np.ndarray | None = None  # (E,)
        self.U: np.ndarray | None = None  # (E, E), columns by descending variance
        self.eigenvalues: np.ndarray | None = None  # (E,) = diag(Lambda), descending
        self.num_sentences = 0

    @staticmethod
    def _as_matrix(vectors, what: str) -> np.ndarray:
        x = np.asarray(vectors)
        if x.ndim != 2:
            raise ValueError(f"{what} takes an (N, E) array of sentence vectors, got shape {x.shape}; "
                             "for one vector pass it as [vector]")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{what} takes float sentence vectors, got dtype {x.dtype} (token ids?); pass embed's "
                             "output, or vectors.astype(np.float32) if these are vectors")
        if not np.isfinite(x).all():
            raise ValueError(f"{what} needs finite float vectors; check the embeddings for NaN or inf")
        return x

    def fit(self, vectors) -> "Whitening":
        """Estimate mu, U and Lambda from (N, E) vectors (N sentences of the kind you will search)."""
        x = self._as_matrix(vectors, "fit").astype(np.float64)
        N, E = x.shape
        k = self.k or E
        if k > E:
            raise ValueError(f"k={k} but the vectors have {E} dimensions; pass k<={E} (or k=None to keep all)")
        if N < 2:
            raise ValueError(f"fit needs at least 2 sentences to estimate a covariance, got {N}")
        mu, sigma = _moments(x, self.beta)  # (E,), (E, E)
        U, eigenvalues, _ = np.linalg.svd(sigma)  # Sigma is symmetric PSD: its SVD is its eigendecomposition
        # A column's sign is arbitrary in an SVD; make each column's largest entry positive, so the
        # same vectors always give the same transform (on any machine, and after save / load).
        signs = np.sign(U[np.abs(U).argmax(axis=0), np.arange(E)])
        U = U * signs  # (E, E)
        if self.gamma > 0:
            # Lambda^(-gamma/2) divides by the spread along each kept direction: every one must have some.
            most = N - 1 if self.beta == 1 else N  # centring takes one direction away
            rank = int((eigenvalues > eigenvalues[0] * NO_VARIANCE).sum())
            # Identical vectors: "pass k<=0" below would be no fix (k >= 1). Their centred Sigma is 0, or
            # ~1e-33 where the mean rounds, which the relative rank test cannot tell from a direction.
            if rank == 0 or (self.beta == 1 and (x == x[0]).all()):
                raise ValueError(
                    f"the {N} fitted vectors are all the same (no direction has any variance), so there is "
                    "nothing to whiten; fit on the vectors of different sentences (are they all empty, or one "
                    "sentence repeated?)"
                )
            if k > most:
                # the bound named is the one the vectors really have (repeated sentences lose directions too):
                # "pass k<=N-1" was refused next by the rank check below
                fits = min(most, rank)
                raise ValueError(
                    f"fitted on {N} sentences but k={k} dimensions are kept (vectors of {E}): {N} vectors "
                    f"{'centred ' if self.beta == 1 else ''}spread along at most {most} directions"
                    f"{f' (these along {rank}: some repeat)' if rank < most else ''}, and whitening divides by the "
                    f"spread along each kept one; pass k<={fits} (e.g. k={min(fits, max(1, E // 4))}) or fit on "
                    f"more sentences (at least {k + 1 if self.beta == 1 else k}, better several times {E})"
                )
            if rank < k:
                raise ValueError(
                    f"the {N} fitted vectors vary in only {rank} of their {E} directions, and whitening divides by "
                    f"the variance of each of the k={k} kept ones (it would blow rounding noise up to the size of "
                    f"the real directions); pass k<={rank}, or gamma=0 to skip the scaling. (The mean or [CLS] "
                    "vectors of a post-LN BERT lose one direction: its final LayerNorm puts every token on a "
                    "hyperplane. Repeated sentences lose more.)"
                )
        self.mu, self.U, self.eigenvalues, self.num_sentences = mu, U, eigenvalues, N
        return self

    @property
    def dim(self) -> int:
        """The size of the output vectors, k."""
        self._check_fitted()
        return self.k or self.U.shape[0]

    def _check_fitted(self) -> None:
        if self.U is None:
            raise ValueError("this Whitening is not fitted; call .fit(vectors) or Whitening.load(path) first")

    def kernel(self) -> np.ndarray:
        """W = U[:, :k] Lambda[:k]^(-gamma/2): (E, k). (A zero variance counts 1 at gamma = 0.)"""
        self._check_fitted()
        k = self.dim
        scale = self.eigenvalues[:k] ** (-self.gamma / 2) if self.gamma > 0 else np.ones(k)
        return self.U[:, :k] * scale  # (E, k): column j scaled by lambda_j^(-gamma/2)

    def transform(self, vectors) -> np.ndarray:
        """(N, E) -> (N, k): x~ = (x - beta mu) W."""
        self._check_fitted()
        x = self._as_matrix(vectors, "transform")
        E = self.U.shape[0]
        if x.shape[1] != E:
            raise ValueError(f"this whitening was fitted on vectors of size {E}, got {x.shape[1]}; use the same "
                             "model and pooling as for fit")
        out = (x.astype(np.float64) - self.beta * self.mu) @ self.kernel()  # (N, k)
        return out.astype(x.dtype)

    def fit_transform(self, vectors) -> np.ndarray:
        return self.fit(vectors).transform(vectors)

    def save(self, path: str | os.PathLike) -> Path:
        """Write mu, U, Lambda and the settings to path (a model directory: path/whitening.safetensors;
        or a .safetensors file name, to keep several beside one model). Returns the file."""
        self._check_fitted()
        file = _whitening_file(path)
        if file.is_file() and not _holds_whitening(file):  # model.safetensors named by mistake: not replaced
            raise ValueError(f"{file} exists and holds no whitening (a model's weights?); save the whitening "
                             "to the model's directory (whitening.safetensors) or another file name")
        file.parent.mkdir(parents=True, exist_ok=True)
        settings = {"beta": repr(self.beta), "gamma": repr(self.gamma), "k": str(self.k or ""),
                    "num_sentences": str(self.num_sentences)}
        save_file({"mu": self.mu, "U": self.U, "eigenvalues": self.eigenvalues}, str(file), metadata=settings)
        return file

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Whitening":
        file = _whitening_file(path)
        if not file.is_file():
            raise ValueError(f"no whitening at {file}; fit one with Whitening(...).fit(embed(model, sentences)) "
                             "and .save(model_dir)")
        if not _holds_whitening(file):  # e.g. model.safetensors, the model's weights, named by mistake
            raise ValueError(f"{file} holds no whitening (a model's weights?); pass the model's directory "
                             f"(it reads {WHITENING_FILE}) or the file Whitening.save wrote")
        with safe_open(str(file), framework="numpy") as f:
            settings = f.metadata()
            tensors = {name: f.get_tensor(name) for name in ("mu", "U", "eigenvalues")}
        k = int(settings["k"]) if settings["k"] else None
        whitening = cls(float(settings["beta"]), float(settings["gamma"]), k)
        whitening.mu, whitening.U, whitening.eigenvalues = tensors["mu"], tensors["U"], tensors["eigenvalues"]
        whitening.num_sentences = int(settings["num_sentences"])
        return whitening

    def __repr__(self) -> str:
        fitted = f", fitted on {self.num_sentences}" if self.U is not None else ""
        return f"Whitening(beta={self.beta}, gamma={self.gamma}, k={self.k}{fitted})"


def retrieval_scores(queries: np.ndarray, candidates: np.ndarray, query_labels: Sequence, candidate_labels: Sequence,
                     ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Rank candidates by cosine to each query; relevant = same label. Returns recall@k (the share of
    queries with a relevant candidate in the top k) for each k, and MRR (mean of 1 / rank of the
    first relevant candidate) with its standard error over queries. queries (Q, E), candidates (M, E).
    Ties keep the candidates' order."""
    query_labels = _labels(query_labels, "query_labels")  # (Q,)
    candidate_labels = _labels(candidate_labels, "candidate_labels")  # (M,)
    for vectors, labels, name in ((queries, query_labels, "queries"), (candidates, candidate_labels, "candidates")):
        if np.ndim(vectors) != 2 or len(vectors) != len(labels):
            raise ValueError(f"{name} {np.shape(vectors)} and their {len(labels)} labels: pass one label per row of a "
                             f"({len(labels)}, E) matrix")
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(min=1e-12)
    c = candidates / np.linalg.norm(candidates, axis=1, keepdims=True).clip(min=1e-12)
    similarity = q @ c.T  # (Q, M)
    ranking = np.argsort(-similarity, axis=1, kind="stable")  # (Q, M), best first
    relevant = candidate_labels[ranking] == query_labels[:, None]  # (Q, M)
    if not relevant.any(axis=1).all():
        raise ValueError("some queries have no relevant candidate (no candidate shares their label)")
    first = relevant.argmax(axis=1)  # (Q,) 0-based rank of the first relevant candidate
    reciprocal = 1.0 / (first + 1)  # (Q,)
    scores = {f"recall@{k}": float((first < k).mean()) for k in ks}
    scores["mrr"] = float(reciprocal.mean())
    scores["mrr_se"] = float(reciprocal.std(ddof=1) / math.sqrt(len(reciprocal))) if len(reciprocal) > 1 else 0.0
    return scores


def _labels(labels: Sequence, name: str) -> np.ndarray:
    """(N,) labels, each one value: a tuple label such as ("a", 1) would become a row of a 2-D array and be
    compared element by element, so tuples are kept as objects (strings and numbers compare faster as they are)."""
    values = list(labels)
    wrong = next((v for v in values if isinstance(v, list | np.ndarray | dict | set)), None)
    if wrong is not None:
        raise ValueError(f"{name}: each label must be one hashable value (a string, a number, a tuple), got "
                         f"{type(wrong).__name__}")
    if not any(isinstance(v, tuple) for v in values):
        return np.asarray(values)
    array = np.empty(len(values), dtype=object)
    array[:] = values  # (one object each)
    return array


def chance_scores(num_candidates: int, num_relevant: int, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """What a random ranking scores, exactly: the first relevant of R among M candidates sits at
    rank r with probability C(M - r, R - 1) / C(M, R)."""
    M, R = num_candidates, num_relevant
    if not 1 <= R <= M:
        raise ValueError(f"num_relevant {R} must lie in 1..num_candidates ({M}): a query needs a relevant candidate")
    p_first = [math.comb(M - r, R - 1) / math.comb(M, R) for r in range(1, M - R + 2)]
    scores = {f"recall@{k}": float(sum(p_first[:k])) for k in ks}
    scores["mrr"] = float(sum(p / r for r, p in enumerate(p_first, start=1)))
    return scores

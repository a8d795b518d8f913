"""Pooling heads: from the hidden states of every layer to one vector per sequence.

Every pooling takes `hidden_states`, the tuple (embeddings, layer 1, ..., layer L) of (B, T, E)
tensors a model returns with output_hidden_states=True, the attention mask (B, T) (1 = token,
0 = padding) and, for "pooler", the model's pooler_output; it returns (B, out_dim).
Why so many: different layers hold different information (lower: words, middle: syntax,
upper: semantics and the pretraining objective), so the best sentence vector depends on the
task (Jawahar et al. 2019, https://aclanthology.org/P19-1356/).

Every head assumes what minibert's tokenizer and collators give: right padding (position 0 holds
[CLS], or <s>) and at least one real token per row. Nothing checks it on this hot path. A
left-padded row makes the heads that read position 0 (pooler, whose dense layer reads it, cls,
cls_layer, concat_last4, weighted_layer, lstm, gru, attention, mean_max_cls) read a pad; sbert_wk
keeps positions 0 .. n - 2 of a row of n real tokens (all but [SEP] when padded on the right), so
under p pads on the left it keeps only the first n - 1 - p real tokens, and none (NaN) when
p >= n - 1. A row with no real token gives the dtype's lowest value from the max heads (max,
mean_max, mean_max_cls, conv1d), NaN from sbert_wk and 0 from mean. A caller with left-padded
batches should re-tokenise with padding_side="right".

Shapes: B batch, T tokens, E hidden size, L layers (+1 with the embeddings), C channels, R the RNN's size
(RNNPooling; in SBERT-WK, R is the QR decomposition's R, computed as a Cholesky factor).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

Hidden = tuple[torch.Tensor, ...]


def _keep(mask: torch.Tensor) -> torch.Tensor:
    return mask.to(torch.bool).unsqueeze(-1)  # (B, T, 1)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens only: (B, T, E) -> (B, E)."""
    keep = _keep(mask).to(h.dtype)
    return (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over real tokens, (B, T, E) -> (B, E): padding is set to the dtype's lowest value, so it can never win."""
    return h.masked_fill(~_keep(mask), torch.finfo(h.dtype).min).max(1).values


class PoolerOutput(nn.Module):
    """BERT's own pooler: tanh(dense(h_L[:, 0])), trained by next-sentence prediction."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.out_dim = hidden_size

    def forward(self, hidden_states: Hidden, mask: torch.Tensor, pooler_output=None) -> torch.Tensor:
        if pooler_output is None:
            raise ValueError("pooling 'pooler' reads the encoder's pooler, and this encoder was built without one "
                             "(add_pooling_layer=False: the encoder inside a masked-LM, token-classification, QA or "
                             "RoBERTa head); use --pooling cls (embed: pooling='cls')")
        return pooler_output


class CLSPooling(nn.Module):
    """The first token's state at one layer (default the last); layer=-2 is bert-as-service's choice:
    the second-to-last layer is less tied to the pretraining objective than the last."""

    def __init__(self, hidden_size: int, layer: int = -1):
        super().__init__()
        self.out_dim, self.layer = hidden_size, layer

    def forward(self, hidden_states: Hidden, mask: torch.Tensor, pooler_output=None) -> torch.Tensor:
        return hidden_states[self.layer][:, 0]


class MeanPooling(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.out_dim = hidden_size

    def forward(self, hidden_states: Hidden, mask: torch.Tensor, pooler_output=None) -> torch.Tensor:
        return masked_mean(hidden_states[-1], mask)


class MaxPooling(MeanPooling):
    def forward(self, hidden_states: Hidden, mask: torch.Tensor, pooler_output=None) -> torch.Tensor:
        return masked_max(hidden_states[-1], mask)


class MeanMaxPooling(nn.Module):
    """[mean; max] (and [CLS] with with_cls): (B, 2E) or (B, 3E)."""

    def __init__(self, hidden_size: int, with_cls: bool = False):
        super().__init__()
        self.with_cls = with_cls
        self.out_dim = hidden_size * (3 if with_cls else 2)

    def forward(self, hidden_states: Hidden, mask: torch.Tensor, pooler_output=None) -> torch.Tensor:
        h = hidden_states[-1]
        parts = [masked_mean(h, mask), masked_max(h, mask)] + ([h[:, 0]] if self.with_cls else [])
        return torch.cat(parts, dim=-1)


class Conv1DPooling(nn.Module):
    """Two 1-D convolutions over time (kernel 3, same length), then a mask-aware max over time."""

    def __init__(self, hidden_size: int, channels: int = 256):
        super().__init__()
        self.conv1 = nn.Conv1d(hidden_size, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.out_dim = channels

    def forward(self, hidden_states: Hidden, mask: torch.Tensor, pooler_output=None) -> torch.Tensor:
        keep = _keep(mask)
        x = hidden_states[-1].masked_fill(~keep, 0.0).transpose(1, 2)  # (B, E, T)
        # Zero conv1's output at padded positions too: there it holds relu(bias + the last real tokens),
        # which conv2's window would carry into the last real tokens, so a sequence's vector would depend
        # on how much padding its batch needs. Zeroed, conv2 sees what it sees past an unpadded end.
        h = F.relu(self.conv1(x)).masked_fill(~keep.transpose(1, 2), 0.0)  # (B, C, T)
        x = self.conv2(h).transpose(1, 2)  # (B, T, C)
        return masked_max(x, mask)


class ConcatLastLayersPooling(nn.Module):
    """[CLS] of the last `num` layers, concatenated: (B, num * E)."""

    def __init__(self, hidden_size: int, num: int = 4):
        super().__init__()
        self.num, self.out_dim = num, hidden_size * num

    def forward(self, hidden_states: Hidden, mask: torch.Tensor, pooler_output=None) -> torch.Tensor:
        if len(hidden_states) < self.num:
            raise ValueError(f"concat pooling needs {self.num} hidden states, the model gives {len(hidden_states)}")
        return torch.cat([h[:, 0] for h in hidden_states[-self.num :]], dim=-1)


class WeightedLayerPooling(nn.Module):
    """A learned weighted average of the layers from `layer_start` up, then the [CLS] token.
    Why: the most transferable features may sit in middle layers; let the task choose."""

    def __init__(self, hidden_size: int, num_layers: int, layer_start: int | None = None):
        super().__init__()
        self.layer_start = layer_start if layer_start is not None else max(1, num_layers // 3)
        if not 0 <= self.layer_start <= num_layers:
            raise ValueError(f"layer_start must be in [0, {num_layers}], got {self.layer_start}")
        self.layer_weights = nn.Parameter(torch.ones(num_layers + 1 - self.layer_start))
        self.out_dim = hidden_size

    def forward(self, hidden_states: Hidden, mask: torch.Tensor, pooler_output=None) -> torch.Tensor:
        cls = torch.stack([h[:, 0] for h in hidden_states[self.layer_start :]], dim=1)  # (B, L', E)
        w = self.layer_weights / self.layer_weights.sum()
        return torch.einsum("l,ble->be", w, cls)  # (B, E)


class RNNPooling(nn.Module):
    """An LSTM or GRU reads the [CLS] states of layers 1..L bottom to top; its last output pools them."""

    def __init__(self, hidden_size: int, rnn_size: int = 256, cell: str = "lstm"):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(hidden_size, rnn_size, batch_first=True)
        self.out_dim = rnn_size

    def forward(self, hidden_states: Hidden, mask: torch.Tensor, pooler_output=None) -> torch.Tensor:
        cls = torch.stack([h[:, 0] for h in hidden_states[1:]], dim=1)  # (B, L, E)
        # Outside autocast, in the RNN's own dtype (float32 unless the caller converted the head): oneDNN
        # has no bfloat16 / float16 LSTM on CPUs without AVX-512, so `train.py --pooling lstm --bf16`
        # crashed at its first step. L steps over B vectors: float32 costs nothing next to the encoder.
        with torch.autocast(cls.device.type, enabled=False):
            out, _ = self.rnn(cls.to(self.rnn.weight_ih_l0.dtype))  # (B, L, R)
        return out[:, -1].to(cls.dtype)  # (B, R): the output after reading layer L


class AttentionPooling(nn.Module):
    """Dot-product attention over the layers' [CLS] states: o = W^T softmax(q h^T) h, q and W learned."""

    def __init__(self, hidden_size: int, out_size: int = 128):
        super().__init__()
        self.q = nn.Parameter(torch.randn(hidden_size) * 0.1)
        self.w = nn.Parameter(torch.randn(hidden_size, out_size) * 0.1)
        self.out_dim = out_size

    def forward(self, hidden_states: Hidden, mask: torch.Tensor, pooler_output=None) -> torch.Tensor:
        cls = torch.stack([h[:, 0] for h in hidden_states[1:]], dim=1)  # (B, L, E)
        weights = torch.softmax(cls @ self.q, dim=-1)  # (B, L)
        return torch.einsum("bl,ble->be", weights, cls) @ self.w  # (B, out)


# ----------------------------------------------------------------------------------------------
# SBERT-WK (Wang & Kuo 2020, https://arxiv.org/abs/2002.06652)
# ----------------------------------------------------------------------------------------------
# For each token, its states across layers l = layer_start..L are combined with weights that
# favour layers bringing *new* information. For layer l, take the states of its neighbour
# layers within `window` (clipped at the ends) and the state itself as the last column of a
# matrix W (E, w); its QR decomposition W = QR splits h_l into the part spanned by the
# neighbours (R[:-1, -1]) and the novel part (R[-1, -1]):
#   novelty    n_l = |R[-1, -1]| / ||R[:, -1]||
#   alignment  a_l = 1 / (2 w * mean_col(normalised R[:-1, :-1]) . R[:-1, -1] / ||R[:-1, -1]||)
# both normalised to sum 1 over layers; alpha = (n + a) normalised; token = sum_l alpha_l h_l.
# Token importance: the variance over l of cos(h_l, h_{l+1}) (tokens whose meaning changes across
# layers carry more), normalised over the sentence's tokens (the last real token, [SEP], left
# out, as in the reference code); sentence = sum_t importance_t token_t.
# The authors' code loops over sentences, tokens and layers with one QR per (token, layer); here
# there is one loop over the L' layers, each a batched Cholesky of the window's Gram matrix over all
# B * T tokens at once (the same R; see sbert_wk).
# The one deliberate difference from the authors' code (BinWang28/SBERT-WK-Sentence-Embedding,
# utils.py): its left window `token_feature[k-window_size:k]` is empty for k < window (a negative
# start wraps past k), so layers 1..window-1 of the used ones (with window 2: layer_start + 1) get
# no left neighbours there. Here the window is clipped at the lowest used layer instead: layer 1
# keeps layer 0 as its neighbour. The vectors differ slightly (cosine 0.9995 on runs/pretrain-sop).
# Computed in float64: adjacent layers of a token are often nearly parallel (cosine > 0.999 in a
# shallow or untrained model), so the novel part R[-1, -1] is small and float32's rounding in the QR
# moves the vectors by ~1e-3 (a sentence alone and in a padded batch disagreed); and torch has no
# float16 / bfloat16 QR at all. The cost is small next to the encoder.
def _window(layer: int, num_layers: int, window: int) -> list[int]:
    """Neighbour layers within the window, clipped to [0, num_layers), then the layer itself.
    E.g. _window(1, 9, 2) == [0, 2, 3, 1] (the authors' code: [2, 3, 1])."""
    lo, hi = max(0, layer - window), min(num_layers, layer + window + 1)
    return [i for i in range(lo, hi) if i != layer] + [layer]


def _layer_weights(R: torch.Tensor, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """R (..., w, w) -> (alignment, novelty), each (...). The ratios do not depend on QR's signs."""
    r = R[..., :, -1]  # (..., w)
    novelty = r[..., -1].abs() / torch.linalg.vector_norm(r, dim=-1)
    block = R[..., :-1, :-1]  # (..., w - 1, w - 1): the neighbours' own triangle
    unit = block / torch.linalg.vector_norm(block, dim=-2, keepdim=True)  # each column normalised
    along = (unit.mean(dim=-1) * r[..., :-1]).sum(-1) / torch.linalg.vector_norm(r[..., :-1], dim=-1)
    return 1.0 / (along * w * 2), novelty


def _used_tokens(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask -> (B, T) bool: the real tokens except the last ([SEP]), which SBERT-WK weighs."""
    lengths = mask.long().sum(1, keepdim=True)  # (B, 1)
    positions = torch.arange(mask.size(1), device=mask.device).unsqueeze(0)  # (1, T)
    return mask.bool() & (positions < lengths - 1)


def sbert_wk(hidden_states: Hidden, mask: torch.Tensor, layer_start: int = 4, window: int = 2) -> torch.Tensor:
    """Vectorised SBERT-WK: (B, E), in the hidden states' dtype (computed in float64, see above).
    Assumes right padding and at least one real token besides the last in each row (see the module
    docstring): an all-pad row gives NaN.

    Everything the formulas read of a token's layers is in their dot products, so each token's Gram matrix
    G = H H^T (L', L') is computed once, with one batched product over all tokens: the cosines of adjacent
    layers are G[l, l+1] / sqrt(G[l, l] G[l+1, l+1]), and QR's R for a window is the Cholesky factor of the
    window's G (W = QR gives W^T W = R^T R; both have a positive diagonal up to QR's signs, which the ratios
    ignore). Cholesky of (w, w) matrices costs next to nothing, where a QR of each (E, w) matrix walked all
    E rows of it: 4x faster than the per-token loops that way, 18-23x this way (bench/bench_sbert_wk.py,
    one thread's CPU time). Forming G squares the window's condition number: on random states the vectors
    agree with the loops' to 1e-11 (relative); as a token's layers turn parallel every path loses digits,
    the loops' and a batched QR's too, since the variance of cosines near 1 is itself rounding (a 1e-4
    perturbation of one vector: 6e-8 here, 2e-8 for a batched QR). A token whose states are nearly dependent
    (under 1e-8 of a squared norm outside the others' span) takes the QR, as does an exactly dependent one."""
    rows = torch.stack(hidden_states[layer_start:], dim=2).double()  # (B, T, L', E): each token's layers as rows
    B, T, L, E = rows.shape
    if L < 3:  # the token importance is a variance over adjacent-layer similarities: >= 2 of them
        raise ValueError(f"SBERT-WK needs at least 3 hidden states from layer_start {layer_start}, got {L}")
    used = _used_tokens(mask)  # (B, T)
    # Unused positions (padding, [SEP]) borrow [CLS]'s products: weighted 0, but no 0/0 on the way (whose
    # NaN would reach the gradient through torch.where).
    gram = torch.where(used[:, :, None, None], rows @ rows.mT, rows[:, :1] @ rows[:, :1].mT)  # (B, T, L', L')
    # Token importance: the variance over l of cos(h_l, h_{l+1}), normalised over the sentence's used tokens.
    norms = gram.diagonal(dim1=-2, dim2=-1).sqrt()  # (B, T, L')
    adjacent = gram.diagonal(offset=1, dim1=-2, dim2=-1) / (norms[..., 1:] * norms[..., :-1])  # (B, T, L'-1)
    var = adjacent.var(dim=-1) * used  # (B, T)
    importance = var / var.sum(1, keepdim=True)
    mode = "reduced" if rows.requires_grad else "r"  # the fallback's QR: "r" skips Q but has no backward
    per_layer = []
    for layer in range(L):
        cols = torch.tensor(_window(layer, L, window), device=rows.device)
        window_gram = gram[:, :, cols][:, :, :, cols]  # (B, T, w, w)
        low, info = torch.linalg.cholesky_ex(window_gram)  # (B, T, w, w), lower
        R = low.mT  # upper: R^T R = the window's G
        # The share of each state's squared norm outside the span of the window's states before it; below
        # 1e-8 (an angle under 1e-4 rad) G's rounding would show in R, so such tokens take the QR of their
        # states, as does a G that is not positive definite (info > 0: states exactly dependent).
        fresh = low.diagonal(dim1=-2, dim2=-1) ** 2 / window_gram.diagonal(dim1=-2, dim2=-1)  # (B, T, w)
        shaky = (info > 0) | (fresh < 1e-8).any(-1)  # (B, T)
        if bool(shaky.any()):
            R = R.masked_scatter(shaky[..., None, None], torch.linalg.qr(rows[shaky][:, cols].mT, mode=mode)[1])
        per_layer.append(_layer_weights(R, len(cols)))
    alignment = torch.stack([a for a, _ in per_layer], dim=-1)  # (B, T, L')
    novelty = torch.stack([n for _, n in per_layer], dim=-1)  # (B, T, L')
    alpha = alignment / alignment.sum(-1, keepdim=True) + novelty / novelty.sum(-1, keepdim=True)
    alpha = alpha / alpha.sum(-1, keepdim=True)  # (B, T, L')
    token_vectors = (alpha.unsqueeze(-2) @ rows).squeeze(-2)  # (B, T, 1, L') @ (B, T, L', E) -> (B, T, E)
    return torch.einsum("bt,bte->be", importance, token_vectors).to(hidden_states[0].dtype)  # (B, E)


def sbert_wk_loops(hidden_states: Hidden, mask: torch.Tensor, layer_start: int = 4, window: int = 2) -> torch.Tensor:
    """The same formulas, written the slow direct way (one QR per token and layer, as the
    authors' code does; float64 and the clipped window, as sbert_wk): the reference that tests and
    bench/bench_sbert_wk.py compare with."""
    layers = torch.stack(hidden_states[layer_start:], dim=1).double()  # (B, L', T, E)
    out = []
    for b in range(layers.size(0)):
        n = int(mask[b].sum()) - 1  # leave out the last real token
        sentence = layers[b, :, :n]  # (L', n, E)
        num_layers = sentence.size(0)
        token_vectors, importance = [], []
        for t in range(n):
            feature = sentence[:, t]  # (L', E)
            align, novel = layers.new_zeros(num_layers), layers.new_zeros(num_layers)
            for layer in range(num_layers):
                cols = _window(layer, num_layers, window)
                matrix = feature[cols]  # (w, E)
                _, R = torch.linalg.qr(matrix.T)  # matrix.T (E, w): R (w, w)
                r = R[:, -1]
                unit = R[:-1, :-1] / R[:-1, :-1].norm(dim=0)
                a = unit.mean(dim=1) @ R[:-1, -1] / r[:-1].norm()
                align[layer] = 1 / (a * len(cols) * 2)
                novel[layer] = r[-1].abs() / r.norm()
            alpha = align / align.sum() + novel / novel.sum()
            alpha = alpha / alpha.sum()
            token_vectors.append(feature.T @ alpha)  # (E, L') @ (L',) -> (E,)
            sims = [F.cosine_similarity(feature[i], feature[i + 1], dim=0) for i in range(num_layers - 1)]
            importance.append(torch.stack(sims).var())
        importance = torch.stack(importance)
        out.append(torch.stack(token_vectors).T @ (importance / importance.sum()))  # (E, n) @ (n,) -> (E,)
    return torch.stack(out).to(hidden_states[0].dtype)


class SBERTWKPooling(nn.Module):
    """SBERT-WK as a pooling head (no parameters)."""

    def __init__(self, hidden_size: int, num_layers: int, layer_start: int | None = None, window: int = 2):
        super().__init__()
        check_pooling("sbert_wk", num_layers)  # the model's depth; the default layer_start then always fits
        default = max(0, min(math.ceil(num_layers / 3), num_layers + 1 - 3))  # 4 of BERT-base's 13
        self.layer_start = layer_start if layer_start is not None else default
        if not 0 <= self.layer_start <= num_layers - 2:
            raise ValueError(f"SBERT-WK layer_start {self.layer_start} leaves {num_layers + 1 - self.layer_start} of "
                             f"the {num_layers + 1} hidden states, and it needs at least 3; pass layer_start in "
                             f"[0, {num_layers - 2}] (or None: {default} for this model)")
        self.window, self.out_dim = window, hidden_size

    def forward(self, hidden_states: Hidden, mask: torch.Tensor, pooler_output=None) -> torch.Tensor:
        return sbert_wk(hidden_states, mask, self.layer_start, self.window)


POOLINGS = ("pooler", "cls", "mean", "max", "mean_max", "mean_max_cls", "conv1d", "cls_layer", "concat_last4",
            "weighted_layer", "lstm", "gru", "attention", "sbert_wk")


def check_pooling(name: str, num_layers: int, layer: int = -2) -> None:
    """Refuse a pooling the model's depth cannot feed. hidden_states holds the embeddings and then one
    entry per layer: num_layers + 1 of them. Checked here, before the model and the data load, since
    the pooling itself would fail only at the first forward."""
    if name == "cls_layer" and not -(num_layers + 1) <= layer <= num_layers:
        raise ValueError(
            f"--pooling_layer (embed's layer=) {layer} is out of range for --pooling cls_layer: the model has "
            f"{num_layers} layers, so the hidden states are indexed {-(num_layers + 1)}..{num_layers} "
            f"(0 the embeddings, {num_layers} or -1 the last layer, -2 the default)"
        )
    if name == "concat_last4" and num_layers + 1 < 4:
        raise ValueError(
            f"--pooling concat_last4 concatenates the [CLS] states of the last 4 hidden states, and a model with "
            f"{num_layers} layers has {num_layers + 1} (the embeddings and one per layer); use a model with at "
            "least 3 layers, or --pooling cls_layer, weighted_layer or mean"
        )
    if name == "sbert_wk" and num_layers + 1 < 3:
        raise ValueError(
            f"--pooling sbert_wk weighs each token by the variance of its similarity between adjacent layers, "
            f"which needs at least 3 hidden states, and a model with {num_layers} layer(s) has {num_layers + 1} "
            "(the embeddings and one per layer); use a model with at least 2 layers, or --pooling mean or cls"
        )


def build_pooling(name: str, hidden_size: int, num_layers: int, layer: int = -2) -> nn.Module:
    """One of POOLINGS. `layer` is the hidden-state index for "cls_layer" (default -2, second to last)."""
    builders = {
        "pooler": lambda: PoolerOutput(hidden_size),
        "cls": lambda: CLSPooling(hidden_size),
        "mean": lambda: MeanPooling(hidden_size),
        "max": lambda: MaxPooling(hidden_size),
        "mean_max": lambda: MeanMaxPooling(hidden_size),
        "mean_max_cls": lambda: MeanMaxPooling(hidden_size, with_cls=True),
        "conv1d": lambda: Conv1DPooling(hidden_size),
        "cls_layer": lambda: CLSPooling(hidden_size, layer=layer),
        "concat_last4": lambda: ConcatLastLayersPooling(hidden_size, 4),
        "weighted_layer": lambda: WeightedLayerPooling(hidden_size, num_layers),
        "lstm": lambda: RNNPooling(hidden_size, cell="lstm"),
        "gru": lambda: RNNPooling(hidden_size, cell="gru"),
        "attention": lambda: AttentionPooling(hidden_size),
        "sbert_wk": lambda: SBERTWKPooling(hidden_size, num_layers),
    }
    if name not in builders:
        raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}")
    check_pooling(name, num_layers, layer)
    return builders[name]()

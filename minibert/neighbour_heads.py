"""Neighbour heads: a previous-token and a next-token head written into a BERT before pretraining.

Why. A BERT trained from scratch first predicts every masked token from token frequencies alone:
its attention is uniform, so no position knows which tokens are next to it, and the masked-LM loss
sits on a plateau until attention learns to look at neighbours (Chen et al. 2023, "Sudden drops in
the loss", https://arxiv.org/abs/2309.07311). On this project's default budget (4 minutes of a
2-core CPU) the plateau outlasts the run: held-out accuracy at [MASK] 0.070, the unigram count's
0.064 (docs/pretraining-notes.md, "Why the old default stopped at 0.14"). Heads that attend to the previous or the
next token are among the first that trained BERTs grow (Clark et al. 2019,
https://arxiv.org/abs/1906.04341), and attention fixed by hand to neighbouring positions loses little
against learned attention (You et al. 2020, https://arxiv.org/abs/2005.00742). So we write those two
heads into block 0 at initialisation and keep them fixed while pretraining; the rest of the model
learns to use them from the first steps.

How (E hidden size, D head size, F frequencies, P positions; the default tiny model: E = 128,
two heads of D = 64, F = 16):

    position embeddings (P, E):  p_i = a * [cos(w_1 i), sin(w_1 i), ..., cos(w_F i), sin(w_F i), 0, ..., 0]
                                 w_f from pi down to pi / 8            (the first 2F dimensions)
    head h's query rows (2F):    copy those dimensions                 q_i = s * p_i[:2F]
    head h's key rows (2F):      rotate each (cos, sin) pair by +-w_f  k_j = s * R(+-w) p_j[:2F]
    so                           q_i . k_j = s^2 a^2 sum_f cos(w_f (i - j -+ 1)),  largest at j = i -+ 1

Head 0 looks at the previous token, head 1 at the next one (65% of their attention at step 0 in the
tiny model; the rest goes by content, through the head's other D - 2F dimensions). The amplitude a gives the
sinusoids as much variance as the word embeddings have (initializer_range^2 * E); a relative shift
of positions does not change a dot product of rotations, so RoBERTa's offset positions work the same.

Only weights change: the checkpoint is a plain Hugging Face BERT, and fine-tuning trains every weight.
`write_neighbour_heads` returns what to keep fixed while pretraining: the position embeddings, and the
rows of block 0's query and key projections (weights and biases) that belong to heads 0 and 1, their
content dimensions included. `keep_fixed` freezes them: a tensor all of whose rows are fixed gets
`requires_grad=False`; where more heads share the projection (the `mini` size and up, or a config of more
than 2 heads), only the two heads' rows are held and the other heads train (`--neighbour_heads false`
leaves them all out).
Trained instead of fixed, such heads are lost within 300 steps and the run stays on the plateau
(docs/pretraining-notes.md, "Why the old default stopped at 0.14"; measured with an earlier, evenly
spaced version of these heads).
"""

import math
import numbers

import torch
from torch import nn

FREQUENCIES = 16  # sine-cosine pairs: 2F dimensions of each of the two heads' queries and keys (fewer if D < 2F)
# scale of the written queries and keys: how sharply the heads look next door (65% of their attention at
# step 0; 1.4 gives 97%, the same held-out MLM accuracy, and fine-tunes 3.5 points worse on the genre task)
STRENGTH = 1.0


def angular_frequencies(frequencies: int) -> torch.Tensor:
    """w_f = pi * 8^(-f / (F - 1)), f = 0 .. F - 1 (F,): from pi (a sign flip per position) down to pi / 8.

    Evenly spaced frequencies (pi f / F) would share a period of 2F positions, so each head would look as
    hard at the token 2F + 1 positions away as at its neighbour (measured: 42% of the attention on the
    neighbour, the rest mostly on that echo, and a slower run: held-out [MASK] accuracy 0.130 against 0.154).
    Geometric spacing has no such echo: away from the neighbour the sum of cosines stays under 0.42 of its
    peak within 64 positions, under 0.59 within 512."""
    return math.pi * 8.0 ** (-torch.arange(frequencies, dtype=torch.float64) / (frequencies - 1))


def why_no_room(config) -> str | None:
    """Why a model of this config cannot hold the two heads, or None when it can."""
    H, D = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    if H < 2 or D < 4:
        return f"neighbour heads need 2 heads of at least 4 dimensions; this model has {H} of {D}"
    return None


def write_neighbour_heads(encoder: nn.Module, frequencies: int = FREQUENCIES, strength: float = STRENGTH,
                          spacing=angular_frequencies) -> list[tuple[nn.Parameter, slice]]:
    """Write the two heads into `encoder` (a minibert BertModel or RobertaModel: `.embeddings`,
    `.layers`, `.config`) in place; return what to keep fixed, as (parameter, rows) pairs for `keep_fixed`.
    `spacing(F)` gives the F angular frequencies (bench/plateau.py passes the evenly spaced ones of the
    first version)."""
    if isinstance(frequencies, bool) or not isinstance(frequencies, numbers.Integral) or frequencies < 2:
        # one frequency is pi alone (angular_frequencies(1) divides 0 by 0: NaN positions, a NaN model without a
        # word), and cos(pi (i - j - 1)) peaks at every other position, not at the neighbour
        raise ValueError(f"frequencies must be an int >= 2 (sinusoid pairs per head), got {frequencies!r}; "
                         f"pass e.g. frequencies={FREQUENCIES}")
    frequencies = int(frequencies)
    config = encoder.config
    reason = why_no_room(config)
    if reason:
        raise ValueError(f"{reason}: use a larger model (--model_size micro or up) or --neighbour_heads false")
    E, H = config.hidden_size, config.num_attention_heads
    D = E // H
    frequencies = min(frequencies, D // 2)  # a smaller head gets fewer sinusoids
    positions = encoder.embeddings.position_embeddings.weight  # (P, E)
    omega = spacing(frequencies)  # (F,)
    angle = torch.arange(positions.shape[0], dtype=torch.float64)[:, None] * omega  # (P, F)
    amplitude = config.initializer_range * math.sqrt(E / frequencies)  # sum of squares a^2 F = std^2 E
    attention = encoder.layers[0].attention
    q, k = attention.q_proj.weight, attention.k_proj.weight  # (E_out, E_in): row h*D + r is head h's r-th dim
    with torch.no_grad():
        sinusoids = torch.zeros(positions.shape, dtype=torch.float64)  # (P, E)
        sinusoids[:, 0:2 * frequencies:2], sinusoids[:, 1:2 * frequencies:2] = torch.cos(angle), torch.sin(angle)
        positions.copy_(amplitude * sinusoids)
        for head, shift in ((0, 1.0), (1, -1.0)):  # previous token: j = i - 1; next token: j = i + 1
            rows = slice(head * D, head * D + 2 * frequencies)
            # the head's first 2F dims read the input's first 2F dims, where the sinusoids are written (the word
            # and segment embeddings add there too, and the embedding LayerNorm rescales the sum); its other
            # D - 2F dims read content
            q[rows], k[rows] = 0.0, 0.0
            for f in range(frequencies):
                row, cos, sin = head * D + 2 * f, math.cos(shift * omega[f]), math.sin(shift * omega[f])
                q[row, 2 * f] = q[row + 1, 2 * f + 1] = strength
                # key: (cos x, sin x) -> (cos(x + shift w), sin(x + shift w)): position j dressed as j + shift,
                # so q_i . k_j = s^2 a^2 sum_f cos(w_f (i - j - shift)) peaks where j = i - shift
                k[row, 2 * f], k[row, 2 * f + 1] = strength * cos, -strength * sin
                k[row + 1, 2 * f], k[row + 1, 2 * f + 1] = strength * sin, strength * cos
    two_heads = slice(0, 2 * D)  # heads 0 and 1: rows 0 .. 2D of the query and key projections
    return [(positions, slice(None)), *((p, two_heads) for p in attention.q_proj.parameters()),
            *((p, two_heads) for p in attention.k_proj.parameters())]


class KeepRows:
    """Trainer callback holding some rows of trainable weights at their values: their gradient is zeroed
    as it is made (before clipping, the optimizer's moments and DDP's all-reduce see it), and the rows are
    copied back after each optimizer step (AdamW's decoupled weight decay shrinks a weight whose gradient
    is 0)."""

    def __init__(self, parts: list[tuple[nn.Parameter, slice]]):
        self.parts = [(p, rows, p.detach()[rows].clone()) for p, rows in parts]
        for p, rows, _ in self.parts:
            p.register_hook(lambda grad, rows=rows: _zero_rows(grad, rows))

    def on_step_end(self, trainer) -> None:
        with torch.no_grad():
            for p, rows, value in self.parts:
                p[rows] = value


def _zero_rows(grad: torch.Tensor, rows: slice) -> torch.Tensor:
    grad = grad.clone()  # a hook must not change the gradient autograd handed it in place
    grad[rows] = 0.0
    return grad


def keep_fixed(parts: list[tuple[nn.Parameter, slice]]) -> KeepRows | None:
    """Freeze what `write_neighbour_heads` returns: a parameter whose rows are all fixed gets
    requires_grad=False (no gradient, no optimizer state: the default 2-head model's case for everything);
    the others are held row by row by the returned callback (None when there are none), which the
    Trainer must be given."""
    partial = []
    for p, rows in parts:
        if len(range(p.shape[0])[rows]) == p.shape[0]:
            p.requires_grad_(False)
        else:
            partial.append((p, rows))
    return KeepRows(partial) if partial else None

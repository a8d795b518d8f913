"""ZLPR, a multi-label loss that works like softmax cross-entropy, with soft labels.

Su et al. 2022, https://arxiv.org/abs/2208.02955. With scores s_i
(logits, threshold 0) and targets t_i in [0, 1]:

    loss = log(1 + sum_i (1 - t_i) e^{s_i}) + log(1 + sum_i t_i e^{-s_i})

With hard labels this is the original log(1 + sum_neg e^{s}) + log(1 + sum_pos e^{-s}): every
positive score is pushed above 0 and every negative one below, ranked jointly as in softmax
cross-entropy. Why: independent sigmoids + BCE drown in the many negatives when each example
has a few of many labels; ZLPR weighs the two sides as one softmax each. The soft version
lets label smoothing or mixup be used; its minimum is at sigmoid(2 s_i) = t_i for every class at once
(both sums then equal sum_i sqrt(t_i (1 - t_i))), so probabilities read as sigmoid(2 s) and the decision
threshold stays 0.
"""

import torch

from minibert.nn.losses import PROBLEM_TYPES, sequence_classification_loss


def zlpr_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """logits (B, C), targets (B, C) in [0, 1]; computed with logsumexp (no overflow), in float32 at least."""
    if logits.shape != targets.shape:
        raise ValueError(f"ZLPR needs targets shaped like the logits {tuple(logits.shape)}, got {tuple(targets.shape)}")
    # float32 under bf16/fp16 autocast, as BCE and cross-entropy are (autocast upcasts those, not this sum of
    # logs): in bf16 the loss was off by ~0.15% and a soft target 0.1 was read as 0.10009765625
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logits, t = logits.to(dtype), targets.to(dtype)
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError("ZLPR targets must lie in [0, 1] (multi-hot or soft labels)")
    zero = torch.zeros_like(logits[..., :1])  # the "1 +" inside each log is e^0
    # log(t e^{-s}) = log t - s; log(0) = -inf drops the term, as the sum says.
    pos = torch.logsumexp(torch.cat([zero, torch.log(t) - logits], dim=-1), dim=-1)
    neg = torch.logsumexp(torch.cat([zero, torch.log1p(-t) + logits], dim=-1), dim=-1)
    loss = pos + neg  # (B,)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


MULTI_LABEL_LOSSES = ("bce", "zlpr")


def task_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str, multi_label_loss: str = "bce"):
    """The loss of a sequence-level task: cross-entropy, MSE, or multi-label BCE / ZLPR."""
    if problem_type not in PROBLEM_TYPES:  # anything else fell through to BCE, even on regression targets
        raise ValueError(f"unknown problem_type {problem_type!r}; choose one of {PROBLEM_TYPES}")
    if problem_type == "multi_label_classification" and multi_label_loss == "zlpr":
        return zlpr_loss(logits, labels)
    if multi_label_loss not in MULTI_LABEL_LOSSES:
        raise ValueError(f"unknown multi-label loss {multi_label_loss!r}; choose one of {MULTI_LABEL_LOSSES}")
    return sequence_classification_loss(logits, labels, logits.size(-1), problem_type)

"""The losses of the task heads, written once and shared by every model family.

Labels follow Hugging Face's conventions: -100 marks a position that carries no loss.
"""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
PROBLEM_TYPES = ("single_label_classification", "regression", "multi_label_classification")  # as Hugging Face's


def infer_problem_type(num_labels: int, labels: torch.Tensor) -> str:
    """Hugging Face's rule: one output is regression; int64 or int32 labels are single-label
    classification; other labels (float, bool) with several outputs are multi-label."""
    if num_labels == 1:
        return "regression"
    if labels.dtype in (torch.long, torch.int):
        return "single_label_classification"
    return "multi_label_classification"


def _float_targets(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Regression and multi-label targets in float32 at least, not in the logits' dtype: under bf16 autocast
    the logits are bf16, and a target 3.8 cast to them was 3.796875 (an STS-B MSE 0.35% off Hugging Face's,
    which passes the labels as they are; autocast computes MSE and BCE in float32 anyway)."""
    return labels.to(torch.promote_types(logits.dtype, torch.float32))


def _class_ids(labels: torch.Tensor) -> torch.Tensor:
    """Integer class ids as int64, which is all cross_entropy takes (int32 ids, from numpy say, were refused:
    "expected target dtype to be Long or Byte, but got Int"); float labels pass unchanged."""
    return labels if labels.is_floating_point() else labels.long()


def sequence_classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_labels: int, problem_type: str | None = None
) -> torch.Tensor:
    """logits (B, C). Regression: MSE; single-label: cross-entropy; multi-label: BCE with logits."""
    if problem_type is not None and problem_type not in PROBLEM_TYPES:  # ("regresion" fell through to BCE)
        raise ValueError(f"unknown problem_type {problem_type!r}; choose one of {PROBLEM_TYPES}, or None to infer it")
    inferred = problem_type is None
    problem_type = problem_type or infer_problem_type(num_labels, labels)
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), _float_targets(labels.squeeze(), logits))
        return F.mse_loss(logits, _float_targets(labels, logits))
    if problem_type == "single_label_classification":
        if num_labels == 1:  # log_softmax over one class is 0: the loss would be 0 and nothing would learn
            raise ValueError("single-label classification needs two or more labels (num_labels is 1, whose "
                             "softmax loss is always 0); for one score per example use problem_type='regression'")
        if inferred and labels.dim() == 2 and labels.shape == logits.shape:
            raise ValueError(f"integer labels shaped like the logits {tuple(logits.shape)} read as class ids, "
                             "one per example; for multi-hot labels pass them as float (or bool), or set "
                             "problem_type='multi_label_classification'")
        return F.cross_entropy(logits.view(-1, num_labels), _class_ids(labels.view(-1)))  # (B, C), (B,)
    return F.binary_cross_entropy_with_logits(logits, _float_targets(labels, logits))


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (B, T, C) or (N, C), labels (B, T) or (N,), -100 ignored. Also the MLM loss."""
    labels = _class_ids(labels.reshape(-1))  # (B * T,) or (N,), against logits (B * T, C) or (N, C)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels, ignore_index=IGNORE_INDEX)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token prediction: the logits at position t predict labels[t + 1]."""
    return token_classification_loss(logits[:, :-1].float(), labels[:, 1:])


# How many terms each token-level loss averages: the engine weighs the micro-batches of an accumulated
# step by these counts, so that their mean losses add up to the mean of one big batch.
def labelled_count(labels: torch.Tensor) -> int:
    """The terms of token_classification_loss: labels that are not -100."""
    return int((labels != IGNORE_INDEX).sum())


def causal_lm_count(labels: torch.Tensor) -> int:
    """The terms of causal_lm_loss: labels[:, 1:] that are not -100 (the first token is never predicted)."""
    return labelled_count(labels[:, 1:])


def span_extraction_loss(
    start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor, end_positions: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Question answering: mean of the start and end cross-entropies (logits (B, T)). As in Hugging Face's
    heads, positions past the sequence (T or more) are clamped to T and ignored (left out of the mean;
    the original BERT SQuAD code, whose one-hot of such a position is all zeros, counted them as 0 in the
    mean), and negative ones are clamped to 0: a -100 here is not ignored, it trains position 0, the
    [CLS] token that SQuAD 2.0 marks "no answer" with. Hugging Face's softmax reads padded positions too;
    given an attention_mask (B, T), the padded ones take no probability (finetune/extractive_qa.py: GPT-2)."""
    if attention_mask is not None:
        padded = attention_mask == 0
        start_logits = start_logits.masked_fill(padded, torch.finfo(start_logits.dtype).min)
        end_logits = end_logits.masked_fill(padded, torch.finfo(end_logits.dtype).min)
    ignored = start_logits.size(1)
    start = _class_ids(start_positions.view(-1)).clamp(0, ignored)  # (B,), also from (B, 1)
    end = _class_ids(end_positions.view(-1)).clamp(0, ignored)
    start_loss = F.cross_entropy(start_logits, start, ignore_index=ignored)
    end_loss = F.cross_entropy(end_logits, end, ignore_index=ignored)
    return (start_loss + end_loss) / 2

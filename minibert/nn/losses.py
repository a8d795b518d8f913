"""The losses of the task heads, written once and shared by every model family.

Labels follow Hugging Face's conventions: -100 marks a position that carries no loss.
"""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def infer_problem_type(num_labels: int, labels: torch.Tensor) -> str:
    """Hugging Face's rule: one output is regression; integer labels are single-label
    classification; float labels with several outputs are multi-label."""
    if num_labels == 1:
        return "regression"
    if labels.dtype in (torch.long, torch.int):
        return "single_label_classification"
    return "multi_label_classification"


def sequence_classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_labels: int, problem_type: str | None = None
) -> torch.Tensor:
    """logits (B, C). Regression: MSE; single-label: cross-entropy; multi-label: BCE with logits."""
    problem_type = problem_type or infer_problem_type(num_labels, labels)
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (B, T, C) or (N, C), labels (B, T) or (N,), -100 ignored. Also the MLM loss."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX)


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
    start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor, end_positions: torch.Tensor
) -> torch.Tensor:
    """Question answering: mean of the start and end cross-entropies (logits (B, T)). Positions
    outside the sequence are clamped to T and ignored, as in the original BERT SQuAD code."""
    ignored = start_logits.size(1)
    start = start_positions.view(-1).clamp(0, ignored)
    end = end_positions.view(-1).clamp(0, ignored)
    start_loss = F.cross_entropy(start_logits, start, ignore_index=ignored)
    end_loss = F.cross_entropy(end_logits, end, ignore_index=ignored)
    return (start_loss + end_loss) / 2

"""Freeze the embeddings during fine-tuning.

Why: the word-embedding matrix is often the largest block of parameters, and a small task only
updates the rows of the words it contains, pulling them away from their unseen neighbours.
Freezing it saves optimizer memory and time (no Adam moments for V x E) and often costs nothing
(Lee et al. 2019, https://arxiv.org/abs/1911.03090, freeze lower layers with little loss).
"""

from torch import nn


def freeze_embeddings(model: nn.Module) -> int:
    """requires_grad = False for base_model.embeddings; returns how many parameters froze."""
    embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
    if embeddings is None:
        raise ValueError(f"{type(model).__name__} has no base_model.embeddings to freeze")
    frozen = sum(p.numel() for p in embeddings.parameters())
    embeddings.requires_grad_(False)
    return frozen

"""Freeze the embeddings during fine-tuning.

Why: the word-embedding matrix is often the largest block of parameters, and a small task only
updates the rows of the words it contains, pulling them away from their unseen neighbours.
Freezing it saves optimizer memory and time (no Adam moments for V x E) and often costs nothing
(Lee et al. 2019, https://arxiv.org/abs/1911.03090, freeze lower layers with little loss).
"""

from torch import nn

from minibert.finetune.param_groups import embeddings_and_blocks


def freeze_embeddings(model: nn.Module) -> int:
    """requires_grad = False for the embedding layer (param_groups.embeddings_and_blocks: BERT's and RoBERTa's
    base_model.embeddings, GPT-2's wte and wpe, BART's shared table and both stacks' positions); returns how many
    parameters froze."""
    embeddings, _ = embeddings_and_blocks(model)
    frozen = sum(p.numel() for p in embeddings.parameters())
    embeddings.requires_grad_(False)
    return frozen

"""Re-initialise the pooler and the top N encoder blocks before fine-tuning.

Zhang et al. 2020, "Revisiting Few-sample BERT Fine-tuning", https://arxiv.org/abs/2006.05987.
Why: the top blocks (and the pooler, trained only for NSP) are specialised to the pretraining
objective; on small tasks starting them afresh transfers better and makes results less
dependent on the random seed. Lower blocks carry the general features and are kept.

Drawn again as at construction, by the family's own `_init_weights`: for BERT, Linear and Embedding
weights from normal(0, initializer_range) (0.02; an embedding's padding row 0), biases 0, LayerNorm weight 1
and bias 0.
"""

from functools import partial

from torch import nn

from minibert.finetune.param_groups import embeddings_and_blocks
from minibert.modeling import normal_init


def _init_fn(model: nn.Module):
    """The model family's own initialiser (`_init_weights`), else the rule BERT, GPT-2 and BART share
    (`modeling.normal_init`) with the config's initializer_range (0.02 without one)."""
    init = getattr(model, "_init_weights", None)
    if init is not None:
        return init
    std = getattr(getattr(model, "config", None), "initializer_range", 0.02)
    return partial(normal_init, std=std)


def reinit_pooler(model: nn.Module) -> bool:
    """Re-initialise base_model.pooler; False when the model has none (RoBERTa's family head reads [CLS]
    through a dense layer of its own, not a pooler: train.py then warns and changes nothing)."""
    pooler = getattr(getattr(model, "base_model", model), "pooler", None)
    if pooler is None:
        return False
    pooler.apply(_init_fn(model))
    return True


def reinit_top_layers(model: nn.Module, num_layers: int) -> list[int]:
    """Re-initialise the top `num_layers` blocks (param_groups.embeddings_and_blocks: BERT's base_model.layers,
    GPT-2's h, BART's encoder layers then decoder layers, so the top ones are the decoder's); returns their
    indices, counted from the bottom."""
    _, layers = embeddings_and_blocks(model)
    if not 0 <= num_layers <= len(layers):
        raise ValueError(f"--reinit_layers {num_layers} but the model has {len(layers)} blocks (BART: its encoder's "
                         f"and its decoder's, counted from the decoder's top); choose 0..{len(layers)} (the paper "
                         "re-initialises up to 6 of BERT-base's 12)")
    init = _init_fn(model)
    chosen = list(range(len(layers) - num_layers, len(layers)))
    for i in chosen:
        layers[i].apply(init)
    return chosen

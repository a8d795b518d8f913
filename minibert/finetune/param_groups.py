"""Optimizer parameter groups, built from one visible rule.

The rule (as in nanoGPT): a parameter is weight-decayed iff it is a matrix (p.dim() >= 2).
Biases and LayerNorm weights are vectors and are never decayed; decaying a LayerNorm gain
toward zero fights the normalisation itself (BERT, https://arxiv.org/abs/1810.04805, and
every Hugging Face example exclude them). Every other grouping (layer-wise learning-rate
decay, a separate head learning rate, prior weight decay) refines these groups, never
replaces the rule.
"""

import logging

from torch import nn

from minibert.models.bart import BartModel
from minibert.models.gpt import GPT2Model

logger = logging.getLogger(__name__)


def decays(name: str, param: nn.Parameter) -> bool:
    """The one no-decay rule: matrices decay; biases and LayerNorm weights do not."""
    return param.dim() >= 2


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Two groups: decayed matrices and undecayed vectors (frozen parameters are left out)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": weight_decay, "lr": lr},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0, "lr": lr},
    ]
    return [g for g in groups if g["params"]]


# ---------------------------------------------------------------------------------------------
# Learning rates by depth: everything below refines the two groups above, never the rule.
# ---------------------------------------------------------------------------------------------
def embeddings_and_blocks(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """The embeddings and the blocks, bottom to top, of `model.base_model`: what layer-wise rates, gradual
    unfreezing, re-initialising the top blocks and freezing the embeddings act on, in each family.

        BERT, RoBERTa  embeddings (words, positions, segments, LayerNorm)   layers[0] .. layers[N-1]
        GPT-2          wte and wpe                                          h[0] .. h[N-1]
        BART           both stacks' embeddings (the shared table,           encoder.layers, then decoder.layers:
                       their positions and LayerNorms)                      the decoder reads the encoder's top

    The parts outside them (a pooler, GPT-2's final LayerNorm ln_f, the task head) count as the head."""
    base = getattr(model, "base_model", model)
    if isinstance(base, GPT2Model):
        return nn.ModuleList([base.wte, base.wpe]), list(base.h)
    if isinstance(base, BartModel):
        return (nn.ModuleList([base.shared, base.encoder.embeddings, base.decoder.embeddings]),
                [*base.encoder.layers, *base.decoder.layers])
    embeddings, layers = getattr(base, "embeddings", None), getattr(base, "layers", None)
    if embeddings is None or layers is None:
        raise ValueError(
            f"{type(model).__name__} has no base_model.embeddings / base_model.layers; layer-wise learning "
            "rates need a BERT, RoBERTa, GPT-2 or BART model (or pass plain param_groups)"
        )
    return embeddings, list(layers)


def depth_param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    depth_lr: list[float],
    head_lr: float | None = None,
) -> list[dict]:
    """Groups from a learning rate per depth: depth_lr[0] for the embeddings, depth_lr[i] for
    block i-1 (bottom to top); every other parameter (pooler, task head) gets `head_lr` (default
    `lr`). Each depth is split by the no-decay rule; groups carry a "name" for logging."""
    embeddings, layers = embeddings_and_blocks(model)
    if len(depth_lr) != len(layers) + 1:
        raise ValueError(
            f"depth_lr needs {len(layers) + 1} rates (embeddings + {len(layers)} blocks), got {len(depth_lr)}"
        )
    depth_of = {id(p): 0 for p in embeddings.parameters()}
    for i, layer in enumerate(layers):
        depth_of.update({id(p): i + 1 for p in layer.parameters()})
    buckets: dict[tuple[str, float, bool], list[nn.Parameter]] = {}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        depth = depth_of.get(id(p))
        name = "head" if depth is None else ("embeddings" if depth == 0 else f"layer_{depth - 1}")
        rate = (head_lr if head_lr is not None else lr) if depth is None else depth_lr[depth]
        buckets.setdefault((name, rate, decays(n, p)), []).append(p)
    return [
        {"params": params, "lr": rate, "weight_decay": weight_decay if decay else 0.0, "name": name}
        for (name, rate, decay), params in buckets.items()
    ]


def layer_wise_lr_decay_groups(
    model: nn.Module, lr: float, weight_decay: float, decay: float, head_lr: float | None = None
) -> list[dict]:
    """Layer-wise learning-rate decay (LLRD; Howard & Ruder 2018, https://arxiv.org/abs/1801.06146;
    Zhang et al. 2020, https://arxiv.org/abs/2006.05987): the top block trains at `lr`, each block
    below at `decay` times the one above, the embeddings lowest (lr * decay^num_layers).

    Why: lower layers hold general features (sub-words, syntax) that a small task should barely
    move; upper layers are the most task-specific and the most pretraining-objective-specific."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"the LLRD factor must be in (0, 1] (1 = no decay), got {decay}; try 0.9 or 0.95")
    _, layers = embeddings_and_blocks(model)
    n = len(layers)
    return depth_param_groups(model, lr, weight_decay, [lr * decay ** (n - d) for d in range(n + 1)], head_lr)


def grouped_lr_groups(
    model: nn.Module, lr: float, weight_decay: float, num_groups: int = 3, factor: float = 2.6,
    head_lr: float | None = None,
) -> list[dict]:
    """Grouped (discriminative) learning rates: the blocks cut into `num_groups` contiguous groups,
    the top group at `lr`, each lower group `factor` times smaller (ULMFiT's 2.6), the
    embeddings with the lowest block's group. A coarser LLRD that needs one number less tuning.
    With fewer blocks than groups each block is a group of its own, counted from the top: the top
    block still trains at `lr` (ULMFiT's discriminative fine-tuning, https://arxiv.org/abs/1801.06146,
    gives the last layer the base rate), and the lowest groups are left empty."""
    if num_groups < 1:
        raise ValueError(f"num_groups must be at least 1, got {num_groups}")
    if factor < 1.0:
        raise ValueError(f"the group factor divides the rate of each lower group and must be >= 1, got {factor}")
    _, layers = embeddings_and_blocks(model)
    n = len(layers)
    if n >= num_groups:
        group_of_block = [i * num_groups // n for i in range(n)]  # 0 = bottom group
    else:
        logger.warning("--lr_groups %d on a model with %d blocks: each block is its own group, the top one at the "
                       "learning rate and each lower one %g times smaller", num_groups, n, factor)
        group_of_block = [num_groups - n + i for i in range(n)]
    rates = [lr / factor ** (num_groups - 1 - g) for g in group_of_block]
    return depth_param_groups(model, lr, weight_decay, [rates[0] if rates else lr, *rates], head_lr)

"""Adapters: a small bottleneck after each block's feed-forward; the rest of the encoder frozen.

Houlsby et al. 2019, https://arxiv.org/abs/1902.00751, in T5's variant (Raffel et al. 2020,
https://arxiv.org/abs/1910.10683, section 3.5.1): one dense-ReLU-dense block after the
feed-forward of every layer; only the adapters, the LayerNorms and the task head train.

Why: a task then costs 2 x E x N parameters per layer (N = --adapter_size) instead of a copy of
the whole model, so one frozen base serves many tasks, each a small file beside it. The up
projection starts at zero, so the adapted model starts as exactly the pretrained one and
training moves away from it only as far as the task asks. It saves parameters, not time: the
backward pass still runs through every frozen block to reach the adapters (see ladder.py).

    h ──► feed-forward ──► y ──► y + up(relu(down(y))) ──► (+h) ──► LayerNorm
                                 └──── adapter (E→N→E) ───┘

(GPT-2's blocks normalise first, `h + adapter(mlp(ln_2(h)))`: the adapter still sits between the feed-forward and
the residual sum.) The adapter is a submodule of its block (`layers.{i}.adapter`; GPT-2's `h.{i}.adapter`, BART's
in every encoder and decoder layer), called by a forward hook on the block's feed-forward (`ffn`, GPT-2's `mlp`),
so the family file is untouched and every pretrained weight keeps its name.
"""

import torch
from torch import nn

from minibert.finetune.param_groups import embeddings_and_blocks

# In each block (param_groups.embeddings_and_blocks), the feed-forward an adapter follows, and the config's width
FEED_FORWARD = {"bert": "ffn", "roberta": "ffn", "gpt2": "mlp", "bart": "ffn"}  # (BART: both stacks' layers)
WIDTH = {"bert": "hidden_size", "roberta": "hidden_size", "gpt2": "n_embd", "bart": "d_model"}
ADAPTER_FAMILIES = tuple(FEED_FORWARD)


class Adapter(nn.Module):
    """y -> y + up(relu(down(y))): (..., E) -> (..., E), the identity at initialisation."""

    def __init__(self, hidden_size: int, size: int):
        super().__init__()
        self.down = nn.Linear(hidden_size, size)
        self.up = nn.Linear(size, hidden_size)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # zero output at the start: the pretrained model, unchanged
        nn.init.zeros_(self.up.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.up(torch.relu(self.down(y)))

    def after_feed_forward(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        """The forward hook on the feed-forward: its output, adapted. A bound method, so a deepcopy
        of the model (SWA's average) calls the copied adapter, not this one."""
        return self(output)


def check_adapter_size(size: int, hidden_size: int) -> None:
    if not 1 <= size <= hidden_size:
        raise ValueError(f"--adapter_size {size}: an adapter is a bottleneck of 1 to hidden_size ({hidden_size}) "
                         f"units; pass --adapter_size {max(1, hidden_size // 8)} (hidden_size / 8) or so")


def add_adapters(model: nn.Module, size: int, train_pooler: bool = True) -> int:
    """Put an adapter after every block's feed-forward and freeze everything but the adapters, the
    LayerNorms and the head: the classifier, and the pooler when the head reads it (`train_pooler`;
    a pooling of the hidden states, such as --pooling mean, does not: its weights are then named in
    `model.unread_weights`). Returns the number of trainable parameters."""
    config = getattr(model, "config", None)
    family = getattr(config, "model_type", None)
    if family not in ADAPTER_FAMILIES:
        raise ValueError(f"--adapter_size: {type(model).__name__} (model_type {family!r}) has no adapter support; "
                         f"adapters fit {', '.join(ADAPTER_FAMILIES)} checkpoints; drop --adapter_size to "
                         "fine-tune every weight")
    width = getattr(config, WIDTH[family])
    check_adapter_size(size, width)
    base = model.base_model
    embeddings, blocks = embeddings_and_blocks(model)
    if any(isinstance(getattr(block, "adapter", None), Adapter) for block in blocks):
        # A second set would replace the first as the blocks' `adapter` while the first's hooks kept running:
        # adapters outside the model, in every forward but in no parameters() (never saved, never trained).
        raise ValueError(f"{type(model).__name__} has adapters already (add_adapters was called on it, or it was "
                         "loaded with them); train those, or call add_adapters on a model without adapters")
    for block in blocks:
        block.adapter = Adapter(width, size)
        getattr(block, FEED_FORWARD[family]).register_forward_hook(block.adapter.after_feed_forward)
    parts = [embeddings, *blocks]
    pooler = getattr(base, "pooler", None)
    if pooler is not None and not train_pooler:
        parts.append(pooler)  # unread, it would get no gradient, yet be counted and saved as trained
        # and never saved: load_beside_base does not call it "newly initialised ... train before use" when the base
        # had none (random at every load, it changes no output)
        unread = {id(p) for p in pooler.parameters()}
        model.unread_weights = {n for n, p in model.named_parameters() if id(p) in unread}
    frozen = {id(p) for part in parts for p in part.parameters()}
    trained = {id(p) for m in model.modules() if isinstance(m, (Adapter, nn.LayerNorm)) for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trained or id(p) not in frozen)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

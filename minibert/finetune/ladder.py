"""Ladder side-tuning: a narrow side network beside a frozen encoder, so backward never enters it.

Sung, Cho & Bansal 2022, "LST: Ladder Side-Tuning for Parameter and Memory Efficient Transfer
Learning", https://arxiv.org/abs/2206.06522.

Why: adapters (adapters.py) train few parameters, but their gradients still flow back through
every frozen block, so training memory (the activations kept for backward) and time hardly
shrink. Here the encoder runs once under no_grad, as a feature extractor; a side network, the
same kind of blocks at 1/r of the width, climbs beside it, taking in at every rung a learned
gate's mix of its own state and a down-projection of that rung's frozen hidden state. Only the
side network keeps activations for backward: training memory and time fall with r.

Shapes: B batch, T time, E encoder width, S = E / r side width, C labels, L blocks.

    frozen encoder (no_grad):  emb ──► block 1 ──► block 2 ──► ... ──► block L
                                │         │           │                  │
                              down_0    down_1      down_2             down_L        (E -> S)
                                │         ▼           ▼                  ▼
    side network:               └──► mix_1 ─► side 1 ─► mix_2 ─► side 2 ... side L ─► mean ─► classifier
                                     mix_i = mu_i * side + (1 - mu_i) * down_i,  mu_i = sigmoid(alpha_i / T)

Differences from the paper, at this scale: the side blocks start from random weights (the paper
prunes the encoder's weights into them), and the side network is read by a masked mean, not
fed to a decoder.
"""

import dataclasses

import torch
from torch import nn

from minibert.finetune.classifier import head_dropout
from minibert.finetune.losses import task_loss
from minibert.models.bert import BertLayer
from minibert.nn import padding_mask
from minibert.outputs import SequenceClassifierOutput

LADDER_FAMILIES = ("bert", "roberta")
GATE_TEMPERATURE = 0.1  # the paper's T: a sharp gate that can still close or open fully


def side_width(hidden_size: int, reduction: int) -> int:
    if reduction < 1 or hidden_size % reduction:
        divisors = [r for r in range(2, hidden_size + 1) if hidden_size % r == 0][:6]
        raise ValueError(f"--ladder_side_tuning {reduction}: the side network is hidden_size / r wide and "
                         f"hidden_size {hidden_size} is not divisible by it; pass one of {divisors} (the paper uses 8)")
    return hidden_size // reduction


class LadderSideClassifier(nn.Module):
    """A frozen encoder (BertModel / RobertaModel) and a trained side network reading all its layers."""

    def __init__(self, encoder: nn.Module, reduction: int, num_labels: int,
                 problem_type: str = "single_label_classification", multi_label_loss: str = "bce",
                 dropout: float | None = None):
        super().__init__()
        config = encoder.config
        if getattr(config, "model_type", None) not in LADDER_FAMILIES:
            raise ValueError(f"--ladder_side_tuning: model_type {getattr(config, 'model_type', None)!r} has no "
                             f"side network here; it fits {', '.join(LADDER_FAMILIES)} checkpoints; drop the flag")
        width = side_width(config.hidden_size, reduction)
        heads = max(h for h in range(1, config.num_attention_heads + 1) if width % h == 0)
        side_config = dataclasses.replace(config, hidden_size=width, num_attention_heads=heads,
                                          intermediate_size=max(1, config.intermediate_size // reduction))
        self.encoder = encoder.requires_grad_(False)
        num_layers = config.num_hidden_layers
        self.down = nn.ModuleList(nn.Linear(config.hidden_size, width) for _ in range(num_layers + 1))
        self.gate_logits = nn.Parameter(torch.zeros(num_layers))  # mu = 0.5 at the start
        self.side_layers = nn.ModuleList(BertLayer(side_config) for _ in range(num_layers))
        self.dropout = nn.Dropout(head_dropout(config, dropout))
        self.classifier = nn.Linear(width, num_labels)
        self.settings = {"reduction": reduction, "num_labels": num_labels, "problem_type": problem_type,
                         "multi_label_loss": multi_label_loss}
        std = config.initializer_range
        for module in (*self.down, *self.side_layers.modules(), self.classifier):
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
        self.config = config

    @property
    def base_model(self) -> nn.Module:
        return self.encoder

    @property
    def unread_weights(self) -> set[str]:
        """The encoder's pooler, which the side network never reads (it reads the hidden states): load_beside_base
        does not call it "newly initialised ... train before use" when the base had none."""
        return {f"encoder.{name}" for name, _ in self.encoder.named_parameters() if name.startswith("pooler.")}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embeddings.word_embeddings

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        with torch.no_grad():  # the backward pass ends at the down-projections
            frozen = self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                  output_hidden_states=True).hidden_states  # L + 1 of (B, T, E)
        keep = padding_mask(attention_mask)
        side = self.down[0](frozen[0])  # (B, T, S)
        for i, layer in enumerate(self.side_layers):
            mu = torch.sigmoid(self.gate_logits[i] / GATE_TEMPERATURE)
            side, _ = layer(mu * side + (1 - mu) * self.down[i + 1](frozen[i + 1]), keep)  # (B, T, S)
        real = attention_mask.unsqueeze(-1).to(side.dtype)  # (B, T, 1)
        pooled = (side * real).sum(1) / real.sum(1).clamp(min=1)  # (B, S)
        logits = self.classifier(self.dropout(pooled))  # (B, C)
        loss = None
        if labels is not None:
            loss = task_loss(logits, labels, self.settings["problem_type"], self.settings["multi_label_loss"])
        return SequenceClassifierOutput(loss=loss, logits=logits)

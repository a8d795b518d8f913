"""ELECTRA's replaced-token detection, built from the BERT classes (Clark et al. 2020,
https://arxiv.org/abs/2003.10555).

Two BERT encoders. A small generator (default 1/4 of the discriminator's hidden size, heads and
feed-forward width) is trained as a masked LM; its samples fill the masked positions. The
discriminator sees the result and predicts, for every token, whether it was replaced. A sample
equal to the original counts as original. Why: the discriminator learns from every token, not
just the 15% that were masked, so it learns more per step than BERT.

    input (15% [MASK]) ─► generator (small BERT) ─► MLM logits ─► sample (temperature 1, no gradient)
                                                                        │
    corrupted input = input with samples at the masked positions ◄─────┘
    corrupted input ─► discriminator (BERT) ─► one logit per token: replaced?

    loss = generator MLM loss + discriminator_weight (50) x binary cross-entropy over real tokens

The generator and discriminator share the embeddings module (word, position and token-type tables and
their LayerNorm); the generator projects them down to its smaller width, and its LM head projects
back up to score against the shared word embeddings, as ELECTRA does. After pretraining, the discriminator is the
model to keep: `save_pretrained` writes it as a plain BERT encoder that `BertModel.from_pretrained`
and `BertForSequenceClassification.from_pretrained` (or Hugging Face's) read.

Shapes: B batch, T sequence, E discriminator hidden size, G generator hidden size, V vocabulary,
M masked positions.
"""

import dataclasses
import os

import torch
import torch.nn.functional as F
from torch import nn

from minibert.models.bert import BertConfig, BertEmbeddings, BertModel
from minibert.nn import get_activation
from minibert.nn.losses import IGNORE_INDEX
from minibert.outputs import ElectraPreTrainingOutput


def generator_config(config: BertConfig, size: float) -> BertConfig:
    """The generator: `size` times the discriminator's width, heads and feed-forward (at least 1)."""
    hidden = max(1, round(config.hidden_size * size))
    heads = max(1, round(config.num_attention_heads * size))
    while hidden % heads:
        heads -= 1
    return dataclasses.replace(config, hidden_size=hidden, num_attention_heads=heads,
                               intermediate_size=max(1, round(config.intermediate_size * size)))


class ProjectedEmbeddings(nn.Module):
    """The discriminator's embeddings (shared, width E) followed by a projection to width G."""

    def __init__(self, shared: BertEmbeddings, width: int):
        super().__init__()
        self.shared = shared
        self.project = nn.Linear(shared.word_embeddings.embedding_dim, width)
        self.max_tokens = shared.max_tokens
        self.word_embeddings = shared.word_embeddings

    def forward(self, input_ids, token_type_ids=None, position_ids=None) -> torch.Tensor:
        return self.project(self.shared(input_ids, token_type_ids, position_ids))  # (B, T, G)


class GeneratorHead(nn.Module):
    """dense G -> E, activation, LayerNorm, then scores against the shared word embeddings (E x V)."""

    def __init__(self, config: BertConfig, generator_hidden: int):
        super().__init__()
        self.dense = nn.Linear(generator_hidden, config.hidden_size)
        self.act = get_activation(config.hidden_act)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, h: torch.Tensor, word_embeddings: nn.Embedding) -> torch.Tensor:
        return F.linear(self.layer_norm(self.act(self.dense(h))), word_embeddings.weight, self.bias)  # (B, T, V)


class DiscriminatorHead(nn.Module):
    """dense, activation, then one logit per token (ELECTRA's discriminator_predictions)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(config.hidden_act)
        self.out = nn.Linear(config.hidden_size, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.dense(h))).squeeze(-1)  # (B, T)


class ElectraForPreTraining(nn.Module):
    """Generator + discriminator. forward takes a masked-LM batch (input_ids with [MASK]s, labels)."""

    def __init__(self, config: BertConfig, generator_size: float = 0.25, discriminator_weight: float = 50.0,
                 temperature: float = 1.0):
        super().__init__()
        if not 0.0 < generator_size <= 1.0:
            raise ValueError(f"generator_size must be in (0, 1], got {generator_size}; ELECTRA uses 1/4")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}; ELECTRA samples at 1.0")
        self.config = config
        self.discriminator_weight = discriminator_weight
        self.temperature = temperature
        self.discriminator = BertModel(config, add_pooling_layer=False)
        self.discriminator_head = DiscriminatorHead(config)
        gen_config = generator_config(config, generator_size)
        self.generator = BertModel(gen_config, add_pooling_layer=False)
        self.generator.embeddings = ProjectedEmbeddings(self.discriminator.embeddings, gen_config.hidden_size)
        self.generator_head = GeneratorHead(config, gen_config.hidden_size)
        self.discriminator._init_weights(self.discriminator_head.dense)
        self.discriminator._init_weights(self.discriminator_head.out)
        for module in (self.generator.embeddings.project, self.generator_head.dense):
            self.discriminator._init_weights(module)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.discriminator.embeddings.word_embeddings

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def gradient_checkpointing_enable(self) -> None:
        self.generator.gradient_checkpointing = self.discriminator.gradient_checkpointing = True

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None) -> ElectraPreTrainingOutput:
        word_embeddings = self.get_input_embeddings()
        gen_h = self.generator(input_ids, attention_mask, token_type_ids).last_hidden_state  # (B, T, G)
        generator_logits = self.generator_head(gen_h, word_embeddings)  # (B, T, V)
        if labels is None:
            return ElectraPreTrainingOutput(generator_logits=generator_logits)
        masked = labels != IGNORE_INDEX
        generator_loss = F.cross_entropy(generator_logits[masked], labels[masked]) if masked.any() else \
            generator_logits.sum() * 0.0
        original = torch.where(masked, labels, input_ids)
        with torch.no_grad():  # the discriminator's loss does not flow back through the sampling
            probs = F.softmax(generator_logits[masked].float() / self.temperature, dim=-1)  # (M, V)
            sampled = torch.multinomial(probs, 1).squeeze(-1) if masked.any() else labels[masked]  # (M,)
            corrupted = input_ids.clone()
            corrupted[masked] = sampled
            replaced = (corrupted != original).float()  # a right guess counts as original
        discriminator_logits = self.discriminator_head(
            self.discriminator(corrupted, attention_mask, token_type_ids).last_hidden_state)
        real = torch.ones_like(replaced) if attention_mask is None else attention_mask.float()
        per_token = F.binary_cross_entropy_with_logits(discriminator_logits, replaced, reduction="none")
        discriminator_loss = (per_token * real).sum() / real.sum().clamp(min=1.0)
        return ElectraPreTrainingOutput(
            loss=generator_loss + self.discriminator_weight * discriminator_loss,
            generator_loss=generator_loss,
            discriminator_loss=discriminator_loss,
            generator_logits=generator_logits,
            discriminator_logits=discriminator_logits,
            discriminator_labels=replaced,
            corrupted_input_ids=corrupted,
        )

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the discriminator as a BERT encoder (config.json + model.safetensors, Hugging Face names)."""
        self.discriminator.save_pretrained(path)

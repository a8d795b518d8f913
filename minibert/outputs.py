"""Typed model outputs, with Hugging Face's field names so parity is a field-by-field comparison. One
exception: the key/value cache is `past_key_values`, the name transformers long used; the 5.24 that the tests
pin calls it `cache` (and still answers to `past_key_values`, with a deprecation warning).
Plain dataclasses: read a field by name (`out.logits`); Hugging Face's ModelOutput also takes `out[0]` and
`out.to_tuple()`, which these do not.

Every forward returns one of these, whatever flags are set: fields that were not asked for
(hidden states, attentions, a loss without labels) are None. The key/value cache of GPT-2 and BART comes back
unless use_cache=False, as from Hugging Face's (their configs' use_cache; not from BART given labels).
Shapes: B batch, T sequence (a decoder's new tokens), P cached positions, S source (BART's encoder input),
E hidden size, H heads, D = E / H, V vocabulary, C classes.
"""

from dataclasses import dataclass

import torch

Tensors = tuple[torch.Tensor, ...]


@dataclass
class BaseModelOutput:
    last_hidden_state: torch.Tensor  # (B, T, E)
    pooler_output: torch.Tensor | None = None  # (B, E), BERT's tanh(dense(h[:, 0]))
    hidden_states: Tensors | None = None  # embeddings + each layer: num_layers + 1 of (B, T, E); GPT-2: last after ln_f
    # each layer: (B, H, T, P + T), P 0 without a cache; (B, H, T, L) over a StaticCache's L slots
    attentions: Tensors | None = None
    # decoders: per layer GPT-2's (key, value), each (B, H, P + T, D), BART's decoder's (self k, self v, cross k,
    # cross v), the cross ones (B, H, S, D); the StaticCache itself when one was passed
    past_key_values: tuple | None = None
    cross_attentions: Tensors | None = None  # BART's decoder: each layer (B, H, T, S) over the source


@dataclass
class MaskedLMOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, V)
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class PreTrainingOutput:
    loss: torch.Tensor | None = None  # mlm_loss + nsp_loss
    prediction_logits: torch.Tensor | None = None  # (B, T, V)
    seq_relationship_logits: torch.Tensor | None = None  # (B, 2)
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    mlm_loss: torch.Tensor | None = None
    nsp_loss: torch.Tensor | None = None


@dataclass
class SequenceClassifierOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, C)
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    past_key_values: tuple | None = None


@dataclass
class TokenClassifierOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, C)
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class QuestionAnsweringOutput:
    loss: torch.Tensor | None = None  # (start loss + end loss) / 2
    start_logits: torch.Tensor | None = None  # (B, T)
    end_logits: torch.Tensor | None = None  # (B, T)
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class CausalLMOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, V)
    past_key_values: tuple | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class Seq2SeqModelOutput:
    last_hidden_state: torch.Tensor  # decoder output (B, T, E)
    past_key_values: tuple | None = None  # per decoder layer: (self k, self v, cross k, cross v)
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None  # (B, S, E)
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass
class Seq2SeqLMOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, V), or (B, C) for sequence classification
    past_key_values: tuple | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass
class ElectraPreTrainingOutput:
    """ELECTRA's pretraining (models/electra.py): generator MLM + replaced-token detection."""

    loss: torch.Tensor | None = None  # generator_loss + discriminator_weight * discriminator_loss
    generator_loss: torch.Tensor | None = None
    discriminator_loss: torch.Tensor | None = None
    generator_logits: torch.Tensor | None = None  # (B, T, V)
    discriminator_logits: torch.Tensor | None = None  # (B, T): > 0 means "replaced"
    discriminator_labels: torch.Tensor | None = None  # (B, T) 1.0 where the token was replaced
    corrupted_input_ids: torch.Tensor | None = None  # (B, T) what the discriminator saw

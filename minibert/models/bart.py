"""BART, top to bottom: config, embeddings, encoder, decoder, heads, weight names.

BART: Lewis et al. 2019, https://arxiv.org/abs/1910.13461 (a denoising autoencoder: a
bidirectional encoder reads the corrupted text, an autoregressive decoder rewrites the original).

Shapes: B batch, S source (encoder) length, T target (decoder) length, P cached decoder positions,
E = d_model, H heads, D = E / H, F feed-forward width, V vocabulary, C labels.

Both stacks are post-LN, like BERT: each sub-layer's output is added to its input and the sum
is normalised. The decoder has a third sub-layer that attends over the encoder's output.

    encoder:  x ─► self-attention ─► (+x) ─► LN ─► feed-forward ─► (+) ─► LN ─► ... ─► memory (B, S, E)
    decoder:  y ─► causal self-attention ─► (+y) ─► LN
                ─► cross-attention (queries from y, keys/values from memory) ─► (+) ─► LN
                ─► feed-forward ─► (+) ─► LN ─► ... ─► logits = h @ shared^T + final_logits_bias

    embeddings (both stacks): shared token embedding (* sqrt(E) if scale_embedding)
                              + learned positions, looked up at position + 2, then LayerNorm

The offset of 2 is fairseq's: its position table reserved rows for the padding index, and the
converted checkpoints kept that layout. While decoding, self-attention keys/values grow by one
position per step; cross-attention keys/values are projected from the encoder output once.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from minibert.checkpoint import WeightMap, weight_and_bias
from minibert.generation import GenerationMixin
from minibert.modeling import (
    ModelConfig,
    PreTrainedModel,
    check_ids,
    normal_init,
    wants_cache,
)
from minibert.nn import (
    FeedForward,
    MultiHeadAttention,
    StaticCache,
    cache_length,
    causal_mask,
    combine,
    filled_slots_mask,
    get_activation,
    padding_mask,
)
from minibert.nn.losses import (
    labelled_count,
    sequence_classification_loss,
    span_extraction_loss,
    token_classification_loss,
)
from minibert.outputs import BaseModelOutput, QuestionAnsweringOutput, Seq2SeqLMOutput, Seq2SeqModelOutput

POSITION_OFFSET = 2


@dataclass
class BartConfig(ModelConfig):
    """Field names are those of Hugging Face's config.json, so loading a config is a copy."""

    model_type = "bart"
    vocab_size: int = 50265  # V: rows of the shared embedding, which is also the LM head
    max_position_embeddings: int = 1024  # longest source, and longest target, the positions cover
    d_model: int = 1024  # E: width of every hidden state
    encoder_layers: int = 12  # post-LN blocks of the encoder (self-attention, feed-forward)
    decoder_layers: int = 12  # post-LN blocks of the decoder (causal self-attention, cross-attention, feed-forward)
    encoder_attention_heads: int = 16  # H of the encoder: d_model must divide evenly into heads
    decoder_attention_heads: int = 16  # H of the decoder's self- and cross-attention
    encoder_ffn_dim: int = 4096  # F of the encoder's feed-forward networks
    decoder_ffn_dim: int = 4096  # F of the decoder's feed-forward networks
    activation_function: str = "gelu"  # feed-forward activation: gelu, relu, silu, ...
    dropout: float = 0.1  # on embeddings and on every sub-layer's output
    attention_dropout: float = 0.0  # on attention probabilities
    activation_dropout: float = 0.0  # inside the feed-forward network, after the activation
    classifier_dropout: float = 0.0  # inside the sequence-classification head
    encoder_layerdrop: float = 0.0  # LayerDrop (Fan et al. 2019, https://arxiv.org/abs/1909.11556): skip
    decoder_layerdrop: float = 0.0  # a whole layer with this probability while training
    init_std: float = 0.02  # std of the normal initialisation of weights
    scale_embedding: bool = False  # multiply token embeddings by sqrt(d_model)
    tie_word_embeddings: bool = True  # the LM head reuses the shared embedding (always, here)
    use_cache: bool = True  # Hugging Face's default for returning the key/value cache; generate always uses it
    num_labels: int = 3  # Hugging Face's BART default (MNLI's three classes)
    pad_token_id: int = 1  # <pad>; its embedding row starts at zero
    bos_token_id: int = 0  # <s>, the first token of every source
    eos_token_id: int | list[int] = 2  # </s>: ends a generation, and marks the sentence vector for classification
    decoder_start_token_id: int = 2  # BART's decoder starts from </s>
    forced_bos_token_id: int | None = None  # generate: force this as the first generated token
    forced_eos_token_id: int | list[int] | None = 2  # generate: force eos as the last token max_new_tokens allows

    def __post_init__(self):
        super().__post_init__()
        self.check_at_least_one("vocab_size", "max_position_embeddings", "d_model", "encoder_layers",
                                "decoder_layers", "encoder_ffn_dim", "decoder_ffn_dim", "encoder_attention_heads",
                                "decoder_attention_heads")
        for prefix in ("encoder", "decoder"):
            heads = getattr(self, f"{prefix}_attention_heads")
            if self.d_model % heads != 0:
                raise ValueError(f"d_model {self.d_model} is not divisible by {prefix}_attention_heads {heads}; "
                                 "choose a head count that divides it")
        self.check_probabilities("dropout", "attention_dropout", "activation_dropout", "classifier_dropout",
                                 "encoder_layerdrop", "decoder_layerdrop")
        if not self.tie_word_embeddings:
            raise ValueError("tie_word_embeddings is false: minibert's BART ties its LM head to the shared embedding. "
                             "A new model (a config of your own): set tie_word_embeddings to true. A checkpoint "
                             "trained untied, whose LM head is a matrix of its own, cannot be held: use Hugging Face's "
                             "BART for it (setting tie_word_embeddings true would drop the trained head)")
        get_activation(self.activation_function)  # fails early, naming the activations there are


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher forcing: the decoder reads [start, y_0, ..., y_{T-2}] and predicts [y_0, ..., y_{T-1}].
    Label positions marked -100 become padding in the decoder input."""
    shifted = input_ids.new_full(input_ids.shape, decoder_start_token_id)
    shifted[:, 1:] = input_ids[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------
class BartEmbeddings(nn.Module):
    """shared token embedding (* embed_scale) + learned position (+2 offset) -> LayerNorm -> dropout."""

    def __init__(self, config: BartConfig, shared: nn.Embedding):
        super().__init__()
        self.embed_tokens = [shared]  # a list hides it from the module tree: `shared` is stored once, in BartModel
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.embed_positions = nn.Embedding(config.max_position_embeddings + POSITION_OFFSET, config.d_model)
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, past: int = 0, positions: torch.Tensor | None = None) -> torch.Tensor:
        """positions (T,): given by a static cache's decoding step; else past, past + 1, ..."""
        if positions is None:
            positions = torch.arange(past, past + input_ids.size(1), device=input_ids.device)
        positions = positions + POSITION_OFFSET
        x = self.embed_tokens[0](input_ids) * self.embed_scale + self.embed_positions(positions)  # (B, T, E)
        return self.dropout(self.layernorm_embedding(x))


class BartEncoderLayer(nn.Module):
    def __init__(self, config: BartConfig):
        super().__init__()
        E = config.d_model
        self.self_attn = MultiHeadAttention(E, config.encoder_attention_heads, dropout=config.attention_dropout,
                                            implementation=config.attn_implementation)
        self.self_attn_layer_norm = nn.LayerNorm(E)
        self.ffn = FeedForward(E, config.encoder_ffn_dim, config.activation_function, dropout=config.dropout,
                               activation_dropout=config.activation_dropout)
        self.final_layer_norm = nn.LayerNorm(E)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, keep=None, output_attentions=False):
        attn = self.self_attn(x, keep=keep, output_attentions=output_attentions)
        h = self.self_attn_layer_norm(x + self.dropout(attn.output))
        return self.final_layer_norm(h + self.ffn(h)), attn.probs


class BartDecoderLayer(nn.Module):
    def __init__(self, config: BartConfig):
        super().__init__()
        E = config.d_model
        heads = config.decoder_attention_heads
        self.self_attn = MultiHeadAttention(E, heads, dropout=config.attention_dropout,
                                            implementation=config.attn_implementation)
        self.self_attn_layer_norm = nn.LayerNorm(E)
        self.encoder_attn = MultiHeadAttention(E, heads, dropout=config.attention_dropout,
                                               implementation=config.attn_implementation)
        self.encoder_attn_layer_norm = nn.LayerNorm(E)
        self.ffn = FeedForward(E, config.decoder_ffn_dim, config.activation_function, dropout=config.dropout,
                               activation_dropout=config.activation_dropout)
        self.final_layer_norm = nn.LayerNorm(E)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, y, memory, keep=None, memory_keep=None, past_key_value=None, use_cache=False,
                output_attentions=False, cache_position=None):
        """past_key_value: (self k, self v, cross k, cross v) from the previous step, or None;
        cache_position (T,): it is a static cache's, written in place there."""
        self_past = past_key_value[:2] if past_key_value is not None else None
        cross_past = past_key_value[2:] if past_key_value is not None else None
        attn = self.self_attn(y, keep=keep, past_key_value=self_past, use_cache=use_cache,
                              output_attentions=output_attentions, cache_position=cache_position)
        h = self.self_attn_layer_norm(y + self.dropout(attn.output))
        cross = self.encoder_attn(h, keep=memory_keep, key_value_states=memory, past_key_value=cross_past,
                                  use_cache=use_cache, output_attentions=output_attentions)
        h = self.encoder_attn_layer_norm(h + self.dropout(cross.output))
        out = self.final_layer_norm(h + self.ffn(h))
        cache = (*attn.cache, *cross.cache) if use_cache else None
        return out, attn.probs, cross.probs, cache


class BartPreTrainedModel(PreTrainedModel):
    config_class = BartConfig
    base_model_prefix = "model"

    def _init_weights(self, module: nn.Module) -> None:
        """Weights ~ N(0, init_std), biases 0, LayerNorm 1 / 0, the padding embedding row 0."""
        normal_init(module, self.config.init_std)
        if isinstance(module, BartForConditionalGeneration):
            nn.init.zeros_(module.final_logits_bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.shared


def _layer_drop(module: nn.Module, p: float) -> bool:
    return module.training and p > 0 and bool(torch.rand(()) < p)


class BartEncoder(nn.Module):
    def __init__(self, config: BartConfig, shared: nn.Embedding):
        super().__init__()
        self.config = config
        self.embeddings = BartEmbeddings(config, shared)
        self.layers = nn.ModuleList(BartEncoderLayer(config) for _ in range(config.encoder_layers))
        self.gradient_checkpointing = False

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False,
                output_attentions=False) -> BaseModelOutput:
        h = self.embeddings(input_ids)  # (B, S, E)
        keep = padding_mask(attention_mask)
        hidden_states, attentions = [h], []
        for layer in self.layers:
            if _layer_drop(self, self.config.encoder_layerdrop):
                probs = None
            elif self.gradient_checkpointing and self.training:
                h, probs = checkpoint(layer, h, keep, output_attentions, use_reentrant=False)
            else:
                h, probs = layer(h, keep, output_attentions)
            hidden_states.append(h)
            attentions.append(probs)
        return BaseModelOutput(last_hidden_state=h,
                               hidden_states=tuple(hidden_states) if output_hidden_states else None,
                               attentions=tuple(attentions) if output_attentions else None)


class BartDecoder(nn.Module):
    def __init__(self, config: BartConfig, shared: nn.Embedding):
        super().__init__()
        self.config = config
        self.embeddings = BartEmbeddings(config, shared)
        self.layers = nn.ModuleList(BartDecoderLayer(config) for _ in range(config.decoder_layers))
        self.gradient_checkpointing = False

    def forward(self, input_ids, memory, attention_mask=None, memory_attention_mask=None, past_key_values=None,
                use_cache=None, output_hidden_states=False, output_attentions=False,
                cache_position=None) -> BaseModelOutput:
        """input_ids (B, T) new target tokens; memory (B, S, E) the encoder output; attention_mask
        (B, P + T) over the target, memory_attention_mask (B, S) over the source. With a StaticCache,
        cache_position (T,) gives the new tokens' slots (and positions), and attention_mask (B, L) covers all its
        L slots (as GPT-2's; generate passes none). use_cache=None: the config's (modeling.wants_cache)."""
        use_cache = wants_cache(self, use_cache)
        static = isinstance(past_key_values, StaticCache)
        if static != (cache_position is not None):
            raise ValueError("a StaticCache and cache_position go together: pass both (static decoding) or neither")
        if static and attention_mask is not None:
            # BartModel.check_inputs never sees this path (it takes no cache_position): a (B, 1) mask over the
            # new token only was broadcast over every slot (a 0 hid the whole row), a (1, L) one over every row
            want = (input_ids.size(0), past_key_values.max_length)
            if tuple(attention_mask.shape) != want:
                raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but should be {want}: with "
                                 "a StaticCache it covers every slot of the cache (batch, slots), written or not")
        past = 0 if static else cache_length(past_key_values)
        T = input_ids.size(1)
        h = self.embeddings(input_ids, past, cache_position)  # (B, T, E)
        keep = padding_mask(attention_mask)
        if static:  # a static cache's unwritten slots are masked at every step
            keep = combine(filled_slots_mask(cache_position, past_key_values.max_length), keep)
        elif T > 1:
            keep = combine(causal_mask(T, past + T, device=input_ids.device), keep)
        memory_keep = padding_mask(memory_attention_mask)
        hidden_states, attentions, cross_attentions, caches = [h], [], [], []
        for i, layer in enumerate(self.layers):
            layer_past = past_key_values[i] if past_key_values else None
            if _layer_drop(self, self.config.decoder_layerdrop):
                probs = cross_probs = cache = None
            elif self.gradient_checkpointing and self.training:
                h, probs, cross_probs, cache = checkpoint(layer, h, memory, keep, memory_keep, layer_past, use_cache,
                                                          output_attentions, cache_position, use_reentrant=False)
            else:
                h, probs, cross_probs, cache = layer(h, memory, keep, memory_keep, layer_past, use_cache,
                                                     output_attentions, cache_position)
            hidden_states.append(h)
            attentions.append(probs)
            cross_attentions.append(cross_probs)
            caches.append(cache)
        return BaseModelOutput(
            last_hidden_state=h,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if output_attentions else None,
            # per layer: (self k, self v, cross k, cross v)
            past_key_values=(past_key_values if static else tuple(caches)) if use_cache else None,
        )


class BartModel(BartPreTrainedModel):
    """Encoder and decoder around one shared token embedding."""

    def __init__(self, config: BartConfig):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.encoder = BartEncoder(config, self.shared)
        self.decoder = BartDecoder(config, self.shared)
        self.post_init()

    @property
    def gradient_checkpointing(self) -> bool:
        return self.encoder.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, value: bool) -> None:  # PreTrainedModel's switch reaches both stacks
        self.encoder.gradient_checkpointing = self.decoder.gradient_checkpointing = value

    def check_inputs(self, input_ids, attention_mask, decoder_input_ids, past: int, decoder_attention_mask=None,
                     source_shape: tuple[int, int] | None = None) -> None:
        """Bad input fails here with the fix. source_shape: (B, S) of the encoder output that attention_mask
        covers, when encoder_outputs replace input_ids; decoder_attention_mask covers the P cached target positions
        and the T new ones (the decoder reads input_ids shifted right when decoder_input_ids is None)."""
        config = self.config
        for name, ids, offset in (("input_ids", input_ids, 0), ("decoder_input_ids", decoder_input_ids, past)):
            if ids is None:
                continue
            check_ids(ids, config.vocab_size, name)
            if offset + ids.size(1) > config.max_position_embeddings:
                raise ValueError(f"{name} reach position {offset + ids.size(1)} but max_position_embeddings is "
                                 f"{config.max_position_embeddings}; truncate to at most "
                                 f"{config.max_position_embeddings} tokens")
        # A mask of another shape was broadcast: one row's mask (1, S) applied to every row (Hugging Face fails), and a
        # cached step's mask over its new token only (B, 1) hid every cached position where it held a 0.
        source = source_shape or (tuple(input_ids.shape) if input_ids is not None else None)
        if attention_mask is not None and source is not None and tuple(attention_mask.shape) != source:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but the source has {source} "
                             "(batch, source length); pass the mask the tokenizer returned with these ids")
        target = decoder_input_ids if decoder_input_ids is not None else input_ids
        if decoder_attention_mask is not None and target is not None:
            want = (target.size(0), past + target.size(1))
            if tuple(decoder_attention_mask.shape) != want:
                raise ValueError(f"decoder_attention_mask has shape {tuple(decoder_attention_mask.shape)} but should "
                                 f"be {want}: it covers the {past} cached target positions and the {target.size(1)} "
                                 "new ones")

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | None = None,
        past_key_values: tuple | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> Seq2SeqModelOutput:
        """Without decoder_input_ids the decoder reads input_ids shifted right (BART's denoising
        objective, as in Hugging Face). encoder_outputs skips the encoder (generation, or reuse)."""
        if decoder_input_ids is None and input_ids is None:
            raise ValueError("BART's decoder needs input: pass decoder_input_ids (or labels to a head model), "
                             "or input_ids, which are shifted right to make them")
        if input_ids is None and encoder_outputs is None:
            raise ValueError("BART's encoder needs input: pass input_ids, or encoder_outputs from a previous call")
        if isinstance(encoder_outputs, tuple | list):  # Hugging Face's return_dict=False form: (h, states, maps)
            h, states, maps = (*encoder_outputs, None, None)[:3]
            encoder_outputs = BaseModelOutput(last_hidden_state=h, hidden_states=states, attentions=maps)
        past = cache_length(past_key_values)
        read = encoder_outputs is None or decoder_input_ids is None  # input_ids feed the encoder or the shift
        source = tuple(encoder_outputs.last_hidden_state.shape[:2]) if encoder_outputs is not None else None
        self.check_inputs(input_ids if read else None, attention_mask, decoder_input_ids, past, decoder_attention_mask,
                          source)
        if decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(input_ids, self.config.pad_token_id,
                                                   self.config.decoder_start_token_id)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask, output_hidden_states, output_attentions)
        decoded = self.decoder(decoder_input_ids, encoder_outputs.last_hidden_state, decoder_attention_mask,
                               attention_mask, past_key_values, use_cache, output_hidden_states, output_attentions)
        return Seq2SeqModelOutput(
            last_hidden_state=decoded.last_hidden_state,
            past_key_values=decoded.past_key_values,
            decoder_hidden_states=decoded.hidden_states,
            decoder_attentions=decoded.attentions,
            cross_attentions=decoded.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


def _seq2seq_output(out: Seq2SeqModelOutput, logits: torch.Tensor, loss: torch.Tensor | None) -> Seq2SeqLMOutput:
    return Seq2SeqLMOutput(
        loss=loss, logits=logits, past_key_values=out.past_key_values,
        decoder_hidden_states=out.decoder_hidden_states, decoder_attentions=out.decoder_attentions,
        cross_attentions=out.cross_attentions, encoder_last_hidden_state=out.encoder_last_hidden_state,
        encoder_hidden_states=out.encoder_hidden_states, encoder_attentions=out.encoder_attentions,
    )


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------
class BartForConditionalGeneration(BartPreTrainedModel, GenerationMixin):
    """Sequence-to-sequence LM: logits = h @ shared^T + final_logits_bias, the output matrix tied to the
    input embedding (Press & Wolf 2016, https://arxiv.org/abs/1608.05859). The bias is a buffer
    (zeros in the released checkpoints, kept for fine-tuned ones that changed it) saved with them."""

    is_encoder_decoder = True

    def __init__(self, config: BartConfig):
        super().__init__(config)
        self.model = BartModel(config)
        self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        self.post_init()

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.model.shared.weight) + self.final_logits_bias  # (B, T, V)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                labels=None, encoder_outputs=None, past_key_values=None, use_cache=None,
                output_hidden_states=False, output_attentions=False) -> Seq2SeqLMOutput:
        """labels (B, T) are the target itself (-100 to ignore); the decoder reads them shifted right. With labels
        no cache comes back unless asked (as in Hugging Face's): a training step has no next step to feed it."""
        if labels is not None and use_cache is None:
            use_cache = False
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id,
                                                   self.config.decoder_start_token_id)
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                         past_key_values, use_cache, output_hidden_states, output_attentions)
        logits = self.lm_logits(out.last_hidden_state)
        loss = token_classification_loss(logits, labels) if labels is not None else None
        return _seq2seq_output(out, logits, loss)

    def loss_items(self, batch: dict) -> int:
        """How many terms the loss averages: the engine weighs accumulated micro-batches by it."""
        return labelled_count(batch["labels"])

    # -- the generation protocol (minibert/generation.py) --------------------------------------
    def _position_limit(self) -> int:
        return self.config.max_position_embeddings

    def _check_generation_length(self, input_ids, attention_mask, max_new_tokens: int) -> None:
        limit = self.config.max_position_embeddings
        if input_ids.size(1) > limit:
            raise ValueError(f"the source has {input_ids.size(1)} tokens but max_position_embeddings is {limit}; "
                             f"truncate it to {limit} tokens")
        if max_new_tokens > limit:  # the decoder reads the start token and all new tokens but the last
            raise ValueError(f"max_new_tokens={max_new_tokens} needs {max_new_tokens} decoder positions (the start "
                             f"token and every new token but the last), past max_position_embeddings ({limit}); "
                             f"use max_new_tokens <= {limit}")

    def _generation_setup(self, input_ids, attention_mask, max_new_tokens, decoder_start):
        """Encode the source once; the output starts with decoder_start (decoder_start_token_id)."""
        self.model.check_inputs(input_ids, attention_mask, None, 0)
        memory = self.model.encoder(input_ids, attention_mask).last_hidden_state  # (B, S, E)
        start = input_ids.new_full((input_ids.size(0), 1), decoder_start)
        # None when nothing is padded: the steps then never ask the mask whether it is (a sync, and a
        # break in a compiled step's graph)
        padded = attention_mask is not None and not bool(attention_mask.all())
        return start, {"memory": memory, "memory_attention_mask": attention_mask if padded else None}

    def _static_cache(self, rows: int, max_length: int, state) -> StaticCache:
        """Per decoder layer: zeros (rows, H, max_length, D) for the self-attention keys and values, and
        the cross-attention keys and values (rows, H, S, D), projected from the encoder output now."""
        memory, layers = state["memory"], []
        for layer in self.model.decoder.layers:
            self_attn, cross = layer.self_attn, layer.encoder_attn
            shape = (rows, self_attn.num_heads, max_length, self_attn.head_dim)
            layers.append((memory.new_zeros(shape), memory.new_zeros(shape),
                           cross._heads(cross.k_proj(memory)), cross._heads(cross.v_proj(memory))))
        return StaticCache(layers)

    def _generation_forward(self, tokens, state, past_key_values, cached: int):
        static = isinstance(past_key_values, StaticCache)
        cache_position = torch.arange(cached, cached + tokens.size(1), device=tokens.device) if static else None
        out = self.model.decoder(tokens, state["memory"], None, state["memory_attention_mask"], past_key_values,
                                 use_cache=True, cache_position=cache_position)
        return self.lm_logits(out.last_hidden_state[:, -1]), out.past_key_values  # (B, V); the cache holds tokens too

    @staticmethod
    def _reorder_cache(past_key_values, beam_idx: torch.Tensor):
        """Only self-attention keys/values move. Beams of one input share the source, so their cross-
        attention keys/values are identical rows and a reorder (always within an input) leaves them as
        they are: skipping it saves copying (N, H, S, D) twice per layer per step."""
        if isinstance(past_key_values, StaticCache):
            return past_key_values.reorder_(beam_idx, tensors_per_layer=2)
        return tuple((sk.index_select(0, beam_idx), sv.index_select(0, beam_idx), ck, cv)
                     for sk, sv, ck, cv in past_key_values)


class BartClassificationHead(nn.Module):
    """dropout, dense, tanh, dropout, out_proj on one sentence vector."""

    def __init__(self, config: BartConfig):
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.out_proj = nn.Linear(config.d_model, config.num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(x)))))


class BartForSequenceClassification(BartPreTrainedModel):
    """The decoder reads the source shifted right, so its state at the last </s> has seen every token:
    that state is the sentence vector (as in fairseq's BART classification)."""

    def __init__(self, config: BartConfig):
        super().__init__(config)
        self.model = BartModel(config)
        self.classification_head = BartClassificationHead(config)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                labels=None, output_hidden_states=False, output_attentions=False) -> Seq2SeqLMOutput:
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                         use_cache=False if labels is not None else None,  # (as BartForConditionalGeneration's)
                         output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        eos = input_ids.eq(self.config.eos_token_id)  # (B, S)
        counts = eos.sum(dim=1)
        if int(counts.min()) == 0 or bool((counts != counts[0]).any()):
            raise ValueError(f"every row must hold the same number (>= 1) of eos tokens "
                             f"(id {self.config.eos_token_id}), got {counts.tolist()}; "
                             "end each sequence with </s> as BART's tokenizer does")
        h = out.last_hidden_state
        sentence = h[eos].view(h.size(0), -1, h.size(-1))[:, -1]  # (B * n_eos, E) -> (B, n_eos, E) -> last: (B, E)
        logits = self.classification_head(sentence)  # (B, C)
        loss = (sequence_classification_loss(logits, labels, self.config.num_labels, self.config.problem_type)
                if labels is not None else None)
        return _seq2seq_output(out, logits, loss)


class BartForQuestionAnswering(BartPreTrainedModel):
    """Extractive QA, as BERT's: a linear layer gives every token a start and an end logit, read from the decoder's
    states (the text goes to the encoder and, shifted right, to the decoder, as for classification)."""

    def __init__(self, config: BartConfig):
        super().__init__(config)
        self.model = BartModel(config)
        self.qa_outputs = nn.Linear(config.d_model, 2)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                start_positions=None, end_positions=None, output_hidden_states=False,
                output_attentions=False) -> QuestionAnsweringOutput:
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, use_cache=False,
                         output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(dim=-1)  # 2 x (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_extraction_loss(start_logits, end_logits, start_positions, end_positions)
        # (the decoder's states and self-attention: what the span head reads)
        return QuestionAnsweringOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                       hidden_states=out.decoder_hidden_states, attentions=out.decoder_attentions)


# --------------------------------------------------------------------------------------------
# Hugging Face weight names: (minibert, Hugging Face); `{}` is the layer index.
# --------------------------------------------------------------------------------------------
def _stack(name: str, cross: bool) -> tuple[tuple[str, str], ...]:
    layer = f"{name}.layers.{{}}"
    pairs = [
        (f"{name}.embeddings.embed_positions.weight", f"{name}.embed_positions.weight"),
        *weight_and_bias(f"{name}.embeddings.layernorm_embedding", f"{name}.layernorm_embedding"),
    ]
    for attn in ("self_attn", "encoder_attn") if cross else ("self_attn",):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            pairs += weight_and_bias(f"{layer}.{attn}.{proj}", f"{layer}.{attn}.{proj}")
        pairs += weight_and_bias(f"{layer}.{attn}_layer_norm", f"{layer}.{attn}_layer_norm")
    pairs += weight_and_bias(f"{layer}.ffn.up", f"{layer}.fc1")
    pairs += weight_and_bias(f"{layer}.ffn.down", f"{layer}.fc2")
    pairs += weight_and_bias(f"{layer}.final_layer_norm", f"{layer}.final_layer_norm")
    return tuple(pairs)


BartPreTrainedModel.weight_map = WeightMap(
    base=(("shared.weight", "shared.weight"), *_stack("encoder", cross=False), *_stack("decoder", cross=True)),
    heads=(
        ("final_logits_bias", "final_logits_bias"),
        *weight_and_bias("classification_head.dense", "classification_head.dense"),
        *weight_and_bias("classification_head.out_proj", "classification_head.out_proj"),
        *weight_and_bias("qa_outputs", "qa_outputs"),
    ),
    # embed_tokens are copies of shared, lm_head is the tied copy; version is a fairseq leftover.
    dropped=(r"(encoder|decoder)\.embed_tokens\.weight", r"lm_head\.weight", r"(encoder|decoder)\.version"),
    # A checkpoint saved with only one copy of the tied tensor holds it under a copy's name (facebook/bart-large-cnn's
    # safetensors has model.decoder.embed_tokens.weight and no model.shared.weight): read it as shared.
    aliases=tuple((f"{prefix}{copy}.embed_tokens.weight", f"{prefix}shared.weight")
                  for prefix in ("model.", "") for copy in ("decoder", "encoder"))
    + (("lm_head.weight", "model.shared.weight"),),
)

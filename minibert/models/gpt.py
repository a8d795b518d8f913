"""GPT-2, top to bottom: config, attention, block, decoder, heads, weight names.

GPT-2: Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"
https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf

Shapes: B batch, T new tokens, P cached (past) tokens, E = n_embd, H = n_head, D = E / H,
F = n_inner, V vocabulary, C labels, L the slots of a StaticCache (the whole output).

GPT-2 is a stack of pre-LN blocks: each sub-layer reads a *normalised* copy of the residual
stream and adds its output back, so the stream itself is never normalised until the very end.

    x ──► LayerNorm ──► causal self-attention ──► (+x) ──► h
    h ──► LayerNorm ──► feed-forward (E→F→E) ──► (+h) ──► next block

    input_ids ─► token (wte) + position (wpe) embeddings ─► dropout ─► N blocks ─► LayerNorm (ln_f)
              ─► logits = h @ wte^T  (the LM head *is* the token embedding: V x E stored once)

A key/value cache makes decoding O(T) per token instead of O(T^2): each layer returns the keys
and values it computed, and the next call appends one new position to them (or, with a static cache
preallocated for the whole output, writes it in place: see nn/attention.py StaticCache).
"""

import logging
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
    StaticCache,
    attend,
    cache_length,
    causal_mask,
    combine,
    filled_slots_mask,
    get_activation,
    padding_mask,
    write_static,
)
from minibert.nn.losses import (
    causal_lm_count,
    causal_lm_loss,
    labelled_count,
    sequence_classification_loss,
    span_extraction_loss,
    token_classification_loss,
)
from minibert.outputs import (
    BaseModelOutput,
    CausalLMOutput,
    QuestionAnsweringOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

logger = logging.getLogger(__name__)


@dataclass
class GPT2Config(ModelConfig):
    """Field names are those of Hugging Face's config.json, so loading a config is a copy."""

    model_type = "gpt2"
    vocab_size: int = 50257  # V: rows of the token embedding, which is also the LM head
    n_positions: int = 1024  # longest sequence (prompt + generated tokens) the learned positions cover
    n_embd: int = 768  # E: width of the residual stream
    n_layer: int = 12  # number of pre-LN blocks
    n_head: int = 12  # H: E must divide evenly into H heads of D = E / H
    n_inner: int | None = None  # F: feed-forward width; None means 4 * E
    activation_function: str = "gelu_new"  # GPT-2 uses the tanh approximation of GELU
    resid_pdrop: float = 0.1  # dropout on each sub-layer's output before it joins the residual stream
    embd_pdrop: float = 0.1  # dropout on token + position embeddings
    attn_pdrop: float = 0.1  # dropout on the attention probabilities
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02  # std of the normal initialisation of weights
    scale_attn_weights: bool = True  # divide scores by sqrt(D), as every transformer does
    scale_attn_by_inverse_layer_idx: bool = False  # also divide layer i's scores by i + 1 (Mistral/Stanford CRFM)
    reorder_and_upcast_attn: bool = False  # attention in fp32 under mixed precision (stability); eager path only
    tie_word_embeddings: bool = True  # the LM head reuses the token embedding (an untied LM head is refused)
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256  # <|endoftext|> ends a generation
    pad_token_id: int | None = None  # GPT-2 has none; sequence classification needs one for batches
    classifier_dropout: float | None = None  # before the token classifier; None: 0.1, as Hugging Face's
    add_cross_attention: bool = False  # GPT-2 as a seq2seq decoder: not supported here

    def __post_init__(self):
        super().__post_init__()
        self.check_at_least_one("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}; "
                             "choose a head count that divides it")
        self.check_probabilities("resid_pdrop", "embd_pdrop", "attn_pdrop")
        if self.add_cross_attention:
            raise ValueError("GPT-2 with cross-attention (add_cross_attention=true) is not supported; "
                             "use BART for encoder-decoder models")
        get_activation(self.activation_function)  # fails early, naming the activations there are

    @property
    def inner_dim(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd


# --------------------------------------------------------------------------------------------
# Attention and block
# --------------------------------------------------------------------------------------------
class GPT2Attention(nn.Module):
    """Causal self-attention with one fused projection for q, k and v (`c_attn`, E -> 3E), as in
    GPT-2's checkpoints; the masks and the attention itself come from minibert.nn."""

    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__()
        self.num_heads = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.implementation = config.attn_implementation
        self.upcast = config.reorder_and_upcast_attn
        scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        self.scale = scale / (layer_idx + 1) if config.scale_attn_by_inverse_layer_idx else scale

    def forward(self, x, keep=None, past_key_value=None, use_cache=False, output_attentions=False,
                cache_position=None):
        B, T, E = x.shape
        qkv = self.c_attn(x).view(B, T, 3, self.num_heads, self.head_dim)  # (B, T, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, T, D)
        if cache_position is not None:  # static cache: written in place at cache_position
            k, v = write_static(past_key_value, k, v, cache_position)  # (B, H, L, D)
        elif past_key_value is not None:
            k = torch.cat([past_key_value[0], k], dim=2)  # (B, H, P + T, D)
            v = torch.cat([past_key_value[1], v], dim=2)
        out, probs = attend(q, k, v, keep, implementation=self.implementation, scale=self.scale,
                            dropout_p=self.dropout if self.training else 0.0, need_probs=output_attentions,
                            upcast=self.upcast and self.implementation == "eager")  # (HF: on its eager path only)
        if not output_attentions:
            probs = None  # (the eager path, upcast or not, computes them on the way)
        out = out.transpose(1, 2).reshape(B, T, E)  # (B, T, E)
        return self.resid_dropout(self.c_proj(out)), probs, (k, v) if use_cache else None


class GPT2Block(nn.Module):
    """One pre-LN block: x + attention(LN(x)), then h + feed_forward(LN(h))."""

    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = FeedForward(config.n_embd, config.inner_dim, config.activation_function, dropout=config.resid_pdrop)

    def forward(self, x, keep=None, past_key_value=None, use_cache=False, output_attentions=False,
                cache_position=None):
        attn_out, probs, cache = self.attn(self.ln_1(x), keep, past_key_value, use_cache, output_attentions,
                                           cache_position)
        h = x + attn_out
        return h + self.mlp(self.ln_2(h)), probs, cache


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------
class GPT2PreTrainedModel(PreTrainedModel):
    config_class = GPT2Config
    base_model_prefix = "transformer"

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2's initialisation: weights ~ N(0, initializer_range), biases 0, LayerNorm 1 / 0; the
        projections that write into the residual stream are scaled down by 1/sqrt(2 * n_layer) so the
        stream's variance does not grow with depth (GPT-2 paper, section 2.3)."""
        std = self.config.initializer_range
        normal_init(module, std)
        # apply() visits children first, so these overwrite the plain init above.
        residual_std = std / math.sqrt(2 * self.config.n_layer)
        if isinstance(module, GPT2Attention):
            nn.init.normal_(module.c_proj.weight, std=residual_std)
        elif isinstance(module, FeedForward):
            nn.init.normal_(module.down.weight, std=residual_std)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.wte


class GPT2Model(GPT2PreTrainedModel):
    """Embeddings -> N pre-LN blocks -> final LayerNorm; returns the cache when use_cache=True."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.gradient_checkpointing = False
        self.post_init()

    def check_inputs(self, input_ids, attention_mask, position_ids, token_type_ids, past: int,
                     mask_length: int | None = None) -> None:
        """Bad input fails here with the fix, not deep inside an embedding lookup. mask_length: the
        attention mask's length when it is not past + new (a static cache's, covering all its slots)."""
        config = self.config
        check_ids(input_ids, config.vocab_size)
        if position_ids is not None:
            check_ids(position_ids, config.n_positions, "position_ids", "n_positions",
                      fix="truncate the input, or drop position_ids to number the tokens from the cache's end")
        if token_type_ids is not None:  # GPT-2 looks segment ids up in the token table
            check_ids(token_type_ids, config.vocab_size, "token_type_ids",
                      fix="GPT-2 embeds segment ids as tokens: pass token ids (or drop token_type_ids)")
        for name, ids in (("position_ids", position_ids), ("token_type_ids", token_type_ids)):
            # (1, T) is broadcast over the batch, as in Hugging Face; another shape was broadcast silently (a (2, T)
            # for one sequence gave two outputs) or failed in the embedding sum
            if ids is not None and (ids.size(1) != input_ids.size(1) or ids.size(0) not in (1, input_ids.size(0))):
                raise ValueError(f"{name} has shape {tuple(ids.shape)} but input_ids has {tuple(input_ids.shape)}; "
                                 "pass one per new token, (batch, sequence), or (1, sequence) for every row alike")
        if position_ids is None and past + input_ids.size(1) > config.n_positions:
            raise ValueError(
                f"input has {past + input_ids.size(1)} positions ({past} cached + {input_ids.size(1)} new) but "
                f"n_positions is {config.n_positions}; truncate the input to at most {config.n_positions} tokens"
            )
        want = (input_ids.size(0), mask_length or past + input_ids.size(1))
        if attention_mask is not None and tuple(attention_mask.shape) != want:
            covers = ("every slot of the static cache" if mask_length else
                      f"the {past} cached positions and the {input_ids.size(1)} new ones")
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but should be {want}: it "
                             f"covers {covers}")

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        past_key_values: tuple | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        check: bool = True,
        cache_position: torch.Tensor | None = None,
    ) -> BaseModelOutput:
        """input_ids (B, T) are the new tokens; attention_mask (B, P + T) covers the cached ones too.
        Positions default to P, P+1, ... as in Hugging Face's forward; `generate` passes positions
        counted over real tokens so that left-padded prompts start at 0. `check=False` skips the
        input checks (generate validates once, then calls this at every step). use_cache=None: the config's
        (modeling.wants_cache), so the cache comes back by default, as from Hugging Face's forward.
        With a StaticCache, cache_position (T,) gives the slots of the new tokens and attention_mask
        (B, L) covers all L slots; nothing here then depends on a Python number that changes per step."""
        static = isinstance(past_key_values, StaticCache)
        if static != (cache_position is not None):
            raise ValueError("a StaticCache and cache_position go together: pass both (static decoding) or neither")
        if check:
            past = int(cache_position[0]) if static else cache_length(past_key_values)
            if static and int(cache_position[-1]) >= past_key_values.max_length:
                raise ValueError(f"cache_position reaches slot {int(cache_position[-1])} but the StaticCache holds "
                                 f"{past_key_values.max_length} slots; allocate it for the whole output")
            self.check_inputs(input_ids, attention_mask, position_ids, token_type_ids, past,
                              past_key_values.max_length if static else None)
        use_cache = wants_cache(self, use_cache)
        B, T = input_ids.shape
        if position_ids is None and static:
            position_ids = cache_position[None]  # (1, T)
        elif position_ids is None:
            past = cache_length(past_key_values)
            position_ids = torch.arange(past, past + T, device=input_ids.device)[None]  # (1, T)
        h = self.wte(input_ids) + self.wpe(position_ids)  # (B, T, E)
        if token_type_ids is not None:  # as in Hugging Face: segment ids are looked up in the token table
            h = h + self.wte(token_type_ids)
        h = self.drop(h)
        # One query over all keys needs no causal mask, only the padding one; otherwise causal AND padding (the masks
        # in nn/attention.py). A static cache's unwritten slots are masked at every step.
        if static:
            padded = attention_mask.bool()[:, None, None, :] if attention_mask is not None else None  # (B, 1, 1, L)
            keep = combine(filled_slots_mask(cache_position, past_key_values.max_length), padded)
        else:
            keep = padding_mask(attention_mask)  # None when nothing is padded
            if T > 1:
                past = cache_length(past_key_values)
                keep = combine(causal_mask(T, past + T, device=input_ids.device), keep)

        hidden_states, attentions, caches = [], [], []
        for i, block in enumerate(self.h):
            hidden_states.append(h)
            layer_past = past_key_values[i] if past_key_values else None
            if self.gradient_checkpointing and self.training:
                h, probs, cache = checkpoint(block, h, keep, layer_past, use_cache, output_attentions,
                                             cache_position, use_reentrant=False)
            else:
                h, probs, cache = block(h, keep, layer_past, use_cache, output_attentions, cache_position)
            attentions.append(probs)
            caches.append(cache)
        h = self.ln_f(h)
        hidden_states.append(h)
        return BaseModelOutput(
            last_hidden_state=h,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            past_key_values=(past_key_values if static else tuple(caches)) if use_cache else None,
        )


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------
class GPT2LMHeadModel(GPT2PreTrainedModel, GenerationMixin):
    """Next-token prediction. The head is `F.linear(h, wte.weight)`: no separate parameter, so the
    state dict holds the V x E matrix once and a checkpoint's `lm_head.weight` is a dropped copy
    (weight tying, Press & Wolf 2016, https://arxiv.org/abs/1608.05859)."""

    def __init__(self, config: GPT2Config):
        if not config.tie_word_embeddings:  # only this head has an output matrix to tie (as BERT's LMHead)
            raise ValueError("tie_word_embeddings is false: this checkpoint's LM head is a matrix of its own, which "
                             "minibert's GPT-2 (its head is the token embedding) cannot hold; load it as GPT2Model or "
                             "GPT2ForSequenceClassification (setting tie_word_embeddings true would drop the trained "
                             "head)")
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.post_init()

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.transformer.wte.weight)  # (B, T, V)

    def forward(self, input_ids, attention_mask=None, position_ids=None, token_type_ids=None, labels=None,
                past_key_values=None, use_cache=None, output_hidden_states=False,
                output_attentions=False) -> CausalLMOutput:
        """labels (B, T) are the input ids themselves (-100 to ignore): the shift by one happens here."""
        out = self.transformer(input_ids, attention_mask, position_ids, token_type_ids, past_key_values, use_cache,
                               output_hidden_states, output_attentions)
        logits = self.lm_logits(out.last_hidden_state)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return CausalLMOutput(loss=loss, logits=logits, past_key_values=out.past_key_values,
                              hidden_states=out.hidden_states, attentions=out.attentions)

    def loss_items(self, batch: dict) -> int:
        """How many terms the loss averages: the engine weighs accumulated micro-batches by it."""
        return causal_lm_count(batch["labels"])

    # -- the generation protocol (minibert/generation.py) --------------------------------------
    def _position_limit(self) -> int:
        return self.config.n_positions

    def _check_generation_length(self, input_ids, attention_mask, max_new_tokens: int) -> None:
        """Positions are counted over real tokens (left padding takes none), and the last new token is
        never fed back, so a row needs real prompt + max_new_tokens - 1 positions."""
        limit = self.config.n_positions
        longest = int(attention_mask.ne(0).sum(1).max()) if attention_mask is not None else input_ids.size(1)
        if longest + max_new_tokens - 1 > limit:
            fix = (f"use max_new_tokens <= {limit + 1 - longest}" if longest <= limit else
                   f"the prompt alone is past n_positions: shorten it to at most {limit} tokens")
            raise ValueError(f"a prompt of {longest} tokens plus max_new_tokens={max_new_tokens} needs "
                             f"{longest + max_new_tokens - 1} positions (the last new token is never fed back), "
                             f"past n_positions ({limit}); {fix}")

    def _generation_setup(self, input_ids, attention_mask, max_new_tokens, decoder_start=None):
        """The output starts with the prompt. Positions are counted over real tokens (a left-padded
        row starts at 0, pads get 0) and each new token takes the last prompt position + 1, as in
        Hugging Face's generate; mask and positions are laid out for the whole output at once so
        no step has to grow them."""
        B, T = input_ids.shape
        if B > 1 and not bool(attention_mask[:, -1].all()):
            logger.warning("a prompt is right-padded: pad decoder-only prompts on the left (minibert's tokenizer "
                           "and Hugging Face's: padding_side='left'), or the new tokens follow the padding")
        prompt_positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)  # (B, T)
        steps = torch.arange(1, max_new_tokens + 1, device=input_ids.device)
        positions = torch.cat([prompt_positions, prompt_positions[:, -1:] + steps], dim=1)  # (B, T + new)
        full_mask = torch.cat([attention_mask, attention_mask.new_ones(B, max_new_tokens)], dim=1)  # (B, T + new)
        padded = not bool(attention_mask.all())
        return input_ids, {"attention_mask": full_mask if padded else None, "position_ids": positions}

    def _static_cache(self, rows: int, max_length: int, state) -> StaticCache:
        """Zeros (rows, H, max_length, D) for the keys and the values of every block."""
        config, weight = self.config, self.transformer.wte.weight
        shape = (rows, config.n_head, max_length, config.n_embd // config.n_head)
        return StaticCache([(weight.new_zeros(shape), weight.new_zeros(shape)) for _ in range(config.n_layer)])

    def _generation_forward(self, tokens, state, past_key_values, cached: int):
        """Logits (B, V) for the position after `tokens`, and the cache holding them too. A static
        cache gets the mask over all its slots (laid out for the whole output) and the new slots."""
        end = cached + tokens.size(1)
        mask = state["attention_mask"]
        cache_position = None
        if isinstance(past_key_values, StaticCache):
            cache_position = torch.arange(cached, end, device=tokens.device)
        elif mask is not None:
            mask = mask[:, :end]
        out = self.transformer(tokens, attention_mask=mask, position_ids=state["position_ids"][:, cached:end],
                               past_key_values=past_key_values, use_cache=True, check=False,
                               cache_position=cache_position)
        return self.lm_logits(out.last_hidden_state[:, -1]), out.past_key_values

    @staticmethod
    def _reorder_cache(past_key_values, beam_idx: torch.Tensor):
        if isinstance(past_key_values, StaticCache):
            return past_key_values.reorder_(beam_idx, tensors_per_layer=2)
        return tuple((k.index_select(0, beam_idx), v.index_select(0, beam_idx)) for k, v in past_key_values)


class GPT2ForSequenceClassification(GPT2PreTrainedModel):
    """A causal model has seen the whole sequence only at its last token, so that token's state is
    the summary: score = linear(h at the last non-pad token). Works with left or right padding."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=False)
        self.post_init()

    def last_token_index(self, input_ids: torch.Tensor) -> torch.Tensor:
        pad = self.config.pad_token_id
        if pad is None:
            if input_ids.size(0) > 1:
                raise ValueError("GPT-2 sequence classification of a batch needs pad_token_id in the config to find "
                                 "each row's last token; set config.pad_token_id (e.g. to eos_token_id)")
            return torch.full((1,), input_ids.size(1) - 1, device=input_ids.device)
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        return (positions * input_ids.ne(pad)).argmax(-1)  # rightmost non-pad token, (B,)

    def forward(self, input_ids, attention_mask=None, position_ids=None, token_type_ids=None, labels=None,
                past_key_values=None, use_cache=None, output_hidden_states=False,
                output_attentions=False) -> SequenceClassifierOutput:
        out = self.transformer(input_ids, attention_mask, position_ids, token_type_ids, past_key_values, use_cache,
                               output_hidden_states, output_attentions)
        last = self.last_token_index(input_ids)
        pooled = out.last_hidden_state[torch.arange(input_ids.size(0), device=input_ids.device), last]  # (B, E)
        logits = self.score(pooled)  # (B, C)
        loss = (sequence_classification_loss(logits, labels, self.config.num_labels, self.config.problem_type)
                if labels is not None else None)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                        attentions=out.attentions, past_key_values=out.past_key_values)


class GPT2ForTokenClassification(GPT2PreTrainedModel):
    """dropout(h_t) -> linear for every token t, as BERT's token head. A causal model's h_t has read only the
    tokens up to t: a word's tag is decided from its left context and itself."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.dropout = nn.Dropout(0.1 if config.classifier_dropout is None else config.classifier_dropout)
        self.classifier = nn.Linear(config.n_embd, config.num_labels)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, position_ids=None, token_type_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False) -> TokenClassifierOutput:
        out = self.transformer(input_ids, attention_mask, position_ids, token_type_ids, use_cache=False,
                               output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, C)
        loss = token_classification_loss(logits, labels) if labels is not None else None
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                     attentions=out.attentions)

    def loss_items(self, batch: dict) -> int:
        """How many terms the loss averages: the engine weighs accumulated micro-batches by it."""
        return labelled_count(batch["labels"])


class GPT2ForQuestionAnswering(GPT2PreTrainedModel):
    """Extractive QA, as BERT's: a linear layer gives every token a start and an end logit (Hugging Face's class,
    no dropout). Causal: a token's logits have read the question (which comes first) and the context up to it,
    never past it; only the last token has read the whole window (finetune/extractive_qa.py points "no answer"
    there, not at the first token as for BERT's [CLS])."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.qa_outputs = nn.Linear(config.n_embd, 2)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, position_ids=None, token_type_ids=None, start_positions=None,
                end_positions=None, output_hidden_states=False, output_attentions=False) -> QuestionAnsweringOutput:
        out = self.transformer(input_ids, attention_mask, position_ids, token_type_ids, use_cache=False,
                               output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(dim=-1)  # 2 x (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_extraction_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                       hidden_states=out.hidden_states, attentions=out.attentions)


# --------------------------------------------------------------------------------------------
# Hugging Face weight names: (minibert, Hugging Face); `{}` is the layer index.
# GPT-2's checkpoints store its four projections (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) as
# Conv1D, i.e. (in, out): the transpose of nn.Linear's (out, in). Those four are listed in
# `transposed`, and shape-checked on load where the shape can tell: not the square attn.c_proj (E, E).
# --------------------------------------------------------------------------------------------
GPT2PreTrainedModel.weight_map = WeightMap(
    base=(
        ("wte.weight", "wte.weight"),
        ("wpe.weight", "wpe.weight"),
        *weight_and_bias("h.{}.ln_1", "h.{}.ln_1"),
        *weight_and_bias("h.{}.attn.c_attn", "h.{}.attn.c_attn"),
        *weight_and_bias("h.{}.attn.c_proj", "h.{}.attn.c_proj"),
        *weight_and_bias("h.{}.ln_2", "h.{}.ln_2"),
        *weight_and_bias("h.{}.mlp.up", "h.{}.mlp.c_fc"),
        *weight_and_bias("h.{}.mlp.down", "h.{}.mlp.c_proj"),
        *weight_and_bias("ln_f", "ln_f"),
    ),
    heads=(("score.weight", "score.weight"), *weight_and_bias("classifier", "classifier"),
           *weight_and_bias("qa_outputs", "qa_outputs")),
    transposed=frozenset({"h.{}.attn.c_attn.weight", "h.{}.attn.c_proj.weight",
                          "h.{}.mlp.up.weight", "h.{}.mlp.down.weight"}),
    # h.N.attn.bias / masked_bias: the causal-mask buffers of old checkpoints; lm_head: the tied copy.
    dropped=(r"h\.\d+\.attn\.(bias|masked_bias)", r"lm_head\.weight"),
)

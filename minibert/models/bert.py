"""BERT and RoBERTa, top to bottom: config, embeddings, block, encoder, heads, weight names.

BERT: Devlin et al. 2018, https://arxiv.org/abs/1810.04805
RoBERTa: Liu et al. 2019, https://arxiv.org/abs/1907.11692 (same network; positions counted
after the padding index, one token type, byte-level BPE, no NSP)

Shapes: B batch, T sequence length, E hidden size, H heads, D = E / H, F intermediate size,
V vocabulary, C labels, N real tokens when unpadded, M labelled positions (sparse MLM).

BERT is a stack of post-LN blocks: the residual sum is normalised *after* each sub-layer.

    x ──► self-attention ──► dropout ──► (+x) ──► LayerNorm ──► h
    h ──► feed-forward (E→F→E, its dropout inside) ──► (+h) ──► LayerNorm ──► next block

    input_ids ─► word + token-type + position embeddings ─► LayerNorm ─► dropout
              ─► N blocks ─► last_hidden_state (B, T, E) ─┬─► MLM head: dense, act, LayerNorm,
                                                          │   decoder = word embeddings^T + bias
                                                          └─► pooler: tanh(dense(h[:, 0])) ─► NSP /
                                                              classification head
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from minibert.checkpoint import WeightMap, weight_and_bias
from minibert.modeling import ModelConfig, PreTrainedModel, check_ids, normal_init
from minibert.nn import FeedForward, MultiHeadAttention, Packing, get_activation, padding_mask
from minibert.nn.losses import (
    IGNORE_INDEX,
    labelled_count,
    sequence_classification_loss,
    span_extraction_loss,
    token_classification_loss,
)
from minibert.outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    PreTrainingOutput,
    QuestionAnsweringOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)


@dataclass
class BertConfig(ModelConfig):
    """Field names are those of Hugging Face's config.json, so loading a config is a copy."""

    model_type = "bert"
    vocab_size: int = 30522  # V: rows of the word embedding and of the tied MLM decoder
    hidden_size: int = 768  # E: width of every hidden state
    num_hidden_layers: int = 12  # number of post-LN blocks
    num_attention_heads: int = 12  # H: E must divide evenly into H heads of D = E / H
    intermediate_size: int = 3072  # F: inner width of the feed-forward network
    hidden_act: str = "gelu"  # feed-forward activation: gelu, gelu_new, relu, silu, ...
    hidden_dropout_prob: float = 0.1  # dropout on embeddings and on every sub-layer output
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention probabilities
    max_position_embeddings: int = 512  # longest sequence the learned positions cover
    type_vocab_size: int = 2  # segment ids: 2 for BERT (sentence A/B), 1 for RoBERTa
    initializer_range: float = 0.02  # std of the normal initialisation of weights
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon (RoBERTa checkpoints use 1e-5)
    pad_token_id: int | None = 0  # its embedding row starts at zero and receives no gradient; None: no such row
    chunk_size_feed_forward: int = 0  # >0: feed-forward this many positions at a time (less memory in inference only)
    classifier_dropout: float | None = None  # dropout before task heads; None = hidden_dropout_prob
    tie_word_embeddings: bool = True  # the MLM decoder reuses the word embeddings (an untied LM head is refused)
    unpad: bool = False  # position-wise layers on real tokens only: BertModel packs (B, T, E) -> (N, E)
    #                      (nn/packing.py), attention unpacks q, k, v for its scores; not saved
    sparse_mlm: bool = False  # with labels: the MLM head (transform, decoder) only where labels != -100; not saved

    def __post_init__(self):
        super().__post_init__()
        self.check_at_least_one("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                "intermediate_size", "max_position_embeddings", "type_vocab_size")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}; choose a head count that divides it"
            )
        self.check_probabilities("hidden_dropout_prob", "attention_probs_dropout_prob")
        pad = self.pad_token_id  # null in some config.json files, as Hugging Face's BERT allows
        if pad is not None and (not isinstance(pad, int) or isinstance(pad, bool) or not 0 <= pad < self.vocab_size):
            raise ValueError(f"pad_token_id {pad!r} must be a token id below vocab_size {self.vocab_size} (or null)")
        get_activation(self.hidden_act)  # fails early, naming the activations there are
        for name, what in (("is_decoder", "a causal decoder (BertLMHeadModel, RobertaForCausalLM)"),
                           ("add_cross_attention", "an encoder-decoder's decoder with cross-attention")):
            if self.extra.get(name):  # Hugging Face's own fields, which minibert's BERT would otherwise drop
                raise ValueError(f"config.json sets {name}: true, {what}; minibert's BERT and RoBERTa are "
                                 "bidirectional encoders only, and ignoring it would give other outputs")
        positions = self.extra.get("position_embedding_type", "absolute")  # transformers 4's BERT read it, 5's drops it
        if positions != "absolute":
            raise ValueError(f"config.json sets position_embedding_type: {positions!r}: relative position scores "
                             "(Shaw et al. / Huang et al.), which minibert's BERT lacks; only \"absolute\" (learned "
                             "positions added to the embeddings) loads")


@dataclass
class RobertaConfig(BertConfig):
    """RoBERTa's defaults: padding id 1, positions offset past it, one token type."""

    model_type = "roberta"
    vocab_size: int = 50265
    max_position_embeddings: int = 514  # 512 tokens + the padding index + 1
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2

    def __post_init__(self):
        super().__post_init__()
        if self.pad_token_id is None:
            raise ValueError("RoBERTa counts its positions from pad_token_id: config.json must set it (1 in RoBERTa's "
                             "checkpoints)")


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------
class BertEmbeddings(nn.Module):
    """word + token type + position, then LayerNorm and dropout: (B, T) ids -> (B, T, E)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=self.position_padding_idx(config))
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pad_token_id = config.pad_token_id

    @staticmethod
    def position_padding_idx(config: BertConfig) -> int | None:
        return None

    @staticmethod
    def max_tokens(config: BertConfig) -> int:
        return config.max_position_embeddings

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """BERT: 0, 1, ..., T-1 for every row."""
        return torch.arange(input_ids.size(1), device=input_ids.device).expand_as(input_ids)  # (T,) -> (B, T)

    def forward(self, input_ids, token_type_ids=None, position_ids=None) -> torch.Tensor:
        if position_ids is None:
            position_ids = self.position_ids(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.layer_norm(x))


class RobertaEmbeddings(BertEmbeddings):
    """Positions are counted over real tokens only and start after the padding index (fairseq's
    make_positions): with pad = 1, a row `<s> a b <pad>` gets positions 2 3 4 1."""

    @staticmethod
    def position_padding_idx(config: BertConfig) -> int | None:
        return config.pad_token_id

    @staticmethod
    def max_tokens(config: BertConfig) -> int:
        return config.max_position_embeddings - config.pad_token_id - 1

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        real = input_ids.ne(self.pad_token_id).long()  # (B, T)
        return real.cumsum(dim=1) * real + self.pad_token_id


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------
class BertLayer(nn.Module):
    """One post-LN block: LayerNorm(x + attention(x)), then LayerNorm(h + feed_forward(h))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = MultiHeadAttention(config.hidden_size, config.num_attention_heads,
                                            dropout=config.attention_probs_dropout_prob,
                                            implementation=config.attn_implementation)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act,
                               dropout=config.hidden_dropout_prob, chunk_size=config.chunk_size_feed_forward)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None, output_attentions: bool = False,
                packing: Packing | None = None):
        """x (B, T, E), or (N, E) real tokens when packed; the output has the same shape."""
        attn = self.attention(x, keep=keep, output_attentions=output_attentions, packing=packing)
        h = self.attention_norm(x + self.dropout(attn.output))
        return self.ffn_norm(h + self.ffn(h)), attn.probs


class BertPooler(nn.Module):
    """tanh(dense(h[:, 0])): the [CLS] state, transformed for sentence-level heads (NSP)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation("tanh")  # an attribute, as in the feed-forward: the tracer gives it a line

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(hidden_states[:, 0]))  # (B, T, E) -> the [CLS] state (B, E) -> (B, E)


class BertPreTrainedModel(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"
    optional_base_keys = (r"pooler\..*",)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation: weights ~ N(0, initializer_range), biases 0, LayerNorm 1 / 0,
        the padding embedding row 0."""
        normal_init(module, self.config.initializer_range)
        if isinstance(module, LMHead):
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.word_embeddings


class BertModel(BertPreTrainedModel):
    """Embeddings -> N blocks -> (last_hidden_state, pooler_output)."""

    embeddings_class = BertEmbeddings

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = self.embeddings_class(config)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.gradient_checkpointing = False
        self.post_init()

    def check_inputs(self, input_ids, attention_mask, token_type_ids, position_ids) -> None:
        """Bad input fails here with the fix, not deep inside an embedding lookup."""
        config = self.config
        check_ids(input_ids, config.vocab_size)
        limit = self.embeddings.max_tokens(config)
        if position_ids is None and input_ids.size(1) > limit:
            raise ValueError(
                f"input has {input_ids.size(1)} tokens but this model takes at most {limit} "
                f"(max_position_embeddings {config.max_position_embeddings}); truncate the input "
                f"(e.g. tokenizer max_length={limit} or --max_seq_length {limit})"
            )
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has "
                f"{tuple(input_ids.shape)}; pass the mask the tokenizer returned with these ids"
            )
        if token_type_ids is not None:
            segments = config.type_vocab_size
            check_ids(token_type_ids, segments, "token_type_ids", "type_vocab_size",
                      fix="this model takes a single segment: drop token_type_ids" if segments == 1 else
                      f"this model takes {segments} segments, ids 0 to {segments - 1}")
            if token_type_ids.shape != input_ids.shape:
                raise ValueError(f"token_type_ids has shape {tuple(token_type_ids.shape)} but input_ids has "
                                 f"{tuple(input_ids.shape)}")
        if position_ids is not None:
            check_ids(position_ids, config.max_position_embeddings, "position_ids", "max_position_embeddings",
                      fix="truncate the input, or drop position_ids to number the tokens from the start")
            # (1, T) is broadcast over the batch, as in Hugging Face; another shape was broadcast silently (a (2, T)
            # for one sequence gave two outputs) or failed in the embedding sum
            if position_ids.size(1) != input_ids.size(1) or position_ids.size(0) not in (1, input_ids.size(0)):
                raise ValueError(f"position_ids has shape {tuple(position_ids.shape)} but input_ids has "
                                 f"{tuple(input_ids.shape)}; pass one position per token, (batch, sequence), or "
                                 "(1, sequence) for the same positions in every row")

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutput:
        self.check_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        keep = padding_mask(attention_mask)  # None when nothing is padded
        # Unpadded only when every row starts with a real token: the pooler and the classification heads read
        # position 0, which a left-padded row would leave at zeros instead of its padded computation.
        unpad = self.config.unpad and keep is not None and bool(attention_mask[:, 0].all())
        packing = Packing.from_mask(attention_mask) if unpad else None
        h = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, E)
        if packing is not None:
            h = packing.pack(h)  # (N, E): real tokens only
        hidden_states, attentions = [h], []
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                h, probs = checkpoint(layer, h, keep, output_attentions, packing, use_reentrant=False)
            else:
                h, probs = layer(h, keep, output_attentions, packing)
            hidden_states.append(h)
            attentions.append(probs)
        if packing is not None:
            h = packing.unpack(h)  # (B, T, E), zeros at padding
            hidden_states = [packing.unpack(x) for x in hidden_states] if output_hidden_states else hidden_states
        return BaseModelOutput(
            last_hidden_state=h,
            pooler_output=self.pooler(h) if self.pooler is not None else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )


class RobertaModel(BertModel):
    """BERT's encoder under RoBERTa's config, embeddings (positions after the padding index) and
    checkpoint prefix; no pooler in RoBERTa's heads."""

    config_class = RobertaConfig
    base_model_prefix = "roberta"
    embeddings_class = RobertaEmbeddings


# --------------------------------------------------------------------------------------------
# Heads. Each builds its base model and its head in __init__, and its forward calls the base
# model, then the head, then the loss.
# --------------------------------------------------------------------------------------------
class LMHead(nn.Module):
    """Masked-LM head: dense, activation, LayerNorm, then the decoder, which is the word embedding matrix
    itself (tied, https://arxiv.org/abs/1608.05859: V x E parameters stored once) plus a bias of its own.

    Saving writes the matrix once, as the embedding; Hugging Face's `cls.predictions.decoder.weight`
    is the same tensor under a second name, so the weight table lists it as dropped on load."""

    def __init__(self, config: BertConfig, activation: str):
        super().__init__()
        if not config.tie_word_embeddings:  # only a model with this head has a decoder to tie (a classifier has none)
            family, base = ("RoBERTa", "RobertaModel") if config.model_type == "roberta" else ("BERT", "BertModel")
            raise ValueError(f"tie_word_embeddings is false: minibert's {family} ties its MLM decoder to the word "
                             "embeddings. A new model (a config of your own): set tie_word_embeddings to true. A "
                             "checkpoint trained untied, whose MLM decoder is a matrix of its own, cannot be held: "
                             f"load it as minibert.{base}.from_pretrained(path) or a classification head (setting "
                             "tie_word_embeddings true would drop the trained decoder)")
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(activation)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, h: torch.Tensor, word_embeddings: nn.Embedding) -> torch.Tensor:
        h = self.layer_norm(self.act(self.dense(h)))
        return F.linear(h, word_embeddings.weight, self.bias)  # (B, T, V)


def masked_lm(head: LMHead, word_embeddings: nn.Embedding, h: torch.Tensor, labels: torch.Tensor | None,
              sparse: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """MLM logits (B, T, V) = head(h, word_embeddings), and the loss when labels are given.

    labels (B, T) hold the token to predict, or IGNORE_INDEX (-100) where nothing is predicted.
    With `sparse` and labels, the whole head, whose V x E decoder is often the largest matrix
    product of a small model, runs only at the labelled positions (BERT's 15% of the tokens, the
    default pretraining run's 40%), as in NVIDIA's BERT pretraining; the other positions' logits
    are then zeros. Same loss and gradients either way. The returned logits are still a full (B, T, V)
    tensor, allocated as zeros and filled at the labelled positions: 119 MiB in fp32 at V = 30,522 and
    8 x 128 (about 4 GB at 256 x 128), and forward plus backward take 9% (V = 2,000, 16 x 64, 40%
    labelled) to 18% (V = 30,522, E = 768, 8 x 128, 15%) longer than returning the labelled logits only
    (one CPU thread)."""
    if labels is None or not sparse:
        logits = head(h, word_embeddings)  # (B, T, V)
        return logits, token_classification_loss(logits, labels) if labels is not None else None
    labels = labels.reshape(h.shape[:-1])  # (B, T), also from labels flattened to (B * T,) as the dense loss takes them
    labelled = labels != IGNORE_INDEX  # (B, T)
    picked = head(h[labelled], word_embeddings)  # (M, V): the labelled positions only
    logits = picked.new_zeros(*labels.shape, picked.size(-1))  # (B, T, V)
    logits[labelled] = picked
    return logits, token_classification_loss(picked, labels[labelled])


def _classifier_dropout(config: BertConfig) -> nn.Dropout:
    p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
    return nn.Dropout(p)


def check_padding_unlabelled(config: BertConfig, attention_mask, labels) -> None:
    """Under unpad=True the padded positions of a right-padded batch are not computed (their hidden states are
    zeros), so a label there was scored on zeros, not on Hugging Face's padded computation (a masked-LM loss 0.0175
    apart, without a word). Such labels are refused; -100, what tokenizers and the objectives put on padding,
    passes."""
    if labels is None or not config.unpad or attention_mask is None or not bool(attention_mask[:, 0].all()):
        return  # (a left-padded batch runs padded: BertModel.forward)
    if bool((labels[attention_mask == 0] != IGNORE_INDEX).any()):
        raise ValueError("labels other than -100 at padded positions (attention_mask 0): under unpad=True those "
                         "positions are not computed, so their loss would not be the padded model's; set the labels "
                         "of padding to -100 (or leave unpad out)")


class BertForPreTraining(BertPreTrainedModel):
    """MLM + next-sentence prediction; loss = MLM + NSP cross-entropy (one alone if only its labels come; HF: None)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.mlm_head = LMHead(config, config.hidden_act)
        self.nsp_head = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                next_sentence_label=None, output_hidden_states=False, output_attentions=False) -> PreTrainingOutput:
        check_padding_unlabelled(self.config, attention_mask, labels)
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                        output_attentions)
        prediction_logits, mlm_loss = masked_lm(self.mlm_head, self.bert.embeddings.word_embeddings,
                                                out.last_hidden_state, labels, self.config.sparse_mlm)
        seq_relationship_logits = self.nsp_head(out.pooler_output)  # (B, 2)
        nsp_loss = (F.cross_entropy(seq_relationship_logits, next_sentence_label.view(-1))  # (B, 2), (B,)
                    if next_sentence_label is not None else None)
        parts = [x for x in (mlm_loss, nsp_loss) if x is not None]
        return PreTrainingOutput(
            loss=sum(parts) if parts else None,
            prediction_logits=prediction_logits,
            seq_relationship_logits=seq_relationship_logits,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            mlm_loss=mlm_loss,
            nsp_loss=nsp_loss,
        )


class BertForMaskedLM(BertPreTrainedModel):
    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.mlm_head = LMHead(config, config.hidden_act)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False) -> MaskedLMOutput:
        check_padding_unlabelled(self.config, attention_mask, labels)
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                        output_attentions)
        logits, loss = masked_lm(self.mlm_head, self.bert.embeddings.word_embeddings, out.last_hidden_state,
                                 labels, self.config.sparse_mlm)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)

    def loss_items(self, batch: dict) -> int:
        """How many terms the loss averages: the engine weighs accumulated micro-batches by it."""
        return labelled_count(batch["labels"])


class BertForSequenceClassification(BertPreTrainedModel):
    """dropout(pooler_output) -> linear: regression (num_labels 1, MSE), single-label
    (cross-entropy) or multi-label (BCE) classification, as config.problem_type or the labels say."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False) -> SequenceClassifierOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                        output_attentions)
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, C)
        loss = (sequence_classification_loss(logits, labels, self.config.num_labels, self.config.problem_type)
                if labels is not None else None)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                        attentions=out.attentions)


class BertForTokenClassification(BertPreTrainedModel):
    """dropout(h_t) -> linear for every token t (NER, POS tagging)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False) -> TokenClassifierOutput:
        check_padding_unlabelled(self.config, attention_mask, labels)
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                        output_attentions)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, C)
        loss = token_classification_loss(logits, labels) if labels is not None else None
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                     attentions=out.attentions)

    def loss_items(self, batch: dict) -> int:
        """How many terms the loss averages: the engine weighs accumulated micro-batches by it."""
        return labelled_count(batch["labels"])


class BertForQuestionAnswering(BertPreTrainedModel):
    """Extractive QA (SQuAD): a linear layer gives every token a start and an end logit."""

    def __init__(self, config: BertConfig):
        if config.unpad:
            raise ValueError("unpad=True cannot run extractive QA exactly: its span softmax reads every position, "
                             "padding included (as Hugging Face's), and unpadding leaves padded positions at zeros; "
                             "leave unpad out")
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_hidden_states=False,
                output_attentions=False) -> QuestionAnsweringOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                        output_attentions)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(dim=-1)  # 2 x (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_extraction_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                       hidden_states=out.hidden_states, attentions=out.attentions)


class RobertaForMaskedLM(BertPreTrainedModel):
    """BertForMaskedLM under RoBERTa's names; its LM head always uses exact GELU, whatever
    hidden_act says."""

    config_class = RobertaConfig
    base_model_prefix = "roberta"

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.lm_head = LMHead(config, "gelu")
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False) -> MaskedLMOutput:
        check_padding_unlabelled(self.config, attention_mask, labels)
        out = self.roberta(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                           output_attentions)
        logits, loss = masked_lm(self.lm_head, self.roberta.embeddings.word_embeddings, out.last_hidden_state,
                                 labels, self.config.sparse_mlm)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)

    def loss_items(self, batch: dict) -> int:
        """How many terms the loss averages: the engine weighs accumulated micro-batches by it."""
        return labelled_count(batch["labels"])


class RobertaClassificationHead(nn.Module):
    """RoBERTa's own head on the <s> token: dropout, dense, tanh, dropout, out_proj (no pooler)."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = _classifier_dropout(config)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.dropout(h[:, 0])  # (B, E): the <s> token
        return self.out_proj(self.dropout(torch.tanh(self.dense(x))))  # (B, C)


class RobertaForSequenceClassification(BertPreTrainedModel):
    """Regression, single- or multi-label classification as in BertForSequenceClassification, with
    RoBERTa's head on the <s> token instead of BERT's pooler."""

    config_class = RobertaConfig
    base_model_prefix = "roberta"

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.classifier = RobertaClassificationHead(config)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False) -> SequenceClassifierOutput:
        out = self.roberta(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                           output_attentions)
        logits = self.classifier(out.last_hidden_state)  # (B, C)
        loss = (sequence_classification_loss(logits, labels, self.config.num_labels, self.config.problem_type)
                if labels is not None else None)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                        attentions=out.attentions)


class RobertaForTokenClassification(BertPreTrainedModel):
    """BertForTokenClassification under RoBERTa's names: dropout(h_t) -> linear for every token t."""

    config_class = RobertaConfig
    base_model_prefix = "roberta"

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False) -> TokenClassifierOutput:
        check_padding_unlabelled(self.config, attention_mask, labels)
        out = self.roberta(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                           output_attentions)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, C)
        loss = token_classification_loss(logits, labels) if labels is not None else None
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                     attentions=out.attentions)

    def loss_items(self, batch: dict) -> int:
        """How many terms the loss averages: the engine weighs accumulated micro-batches by it."""
        return labelled_count(batch["labels"])


class RobertaForQuestionAnswering(BertPreTrainedModel):
    """BertForQuestionAnswering under RoBERTa's names: a start and an end logit for every token."""

    config_class = RobertaConfig
    base_model_prefix = "roberta"

    def __init__(self, config: RobertaConfig):
        if config.unpad:
            raise ValueError("unpad=True cannot run extractive QA exactly: its span softmax reads every position, "
                             "padding included (as Hugging Face's), and unpadding leaves padded positions at zeros; "
                             "leave unpad out")
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_hidden_states=False,
                output_attentions=False) -> QuestionAnsweringOutput:
        out = self.roberta(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                           output_attentions)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(dim=-1)  # 2 x (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_extraction_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                       hidden_states=out.hidden_states, attentions=out.attentions)


# --------------------------------------------------------------------------------------------
# Hugging Face weight names: (minibert, Hugging Face); `{}` is the layer index.
# --------------------------------------------------------------------------------------------
_ENCODER = (
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
    *weight_and_bias("embeddings.layer_norm", "embeddings.LayerNorm"),
    *weight_and_bias("layers.{}.attention.q_proj", "encoder.layer.{}.attention.self.query"),
    *weight_and_bias("layers.{}.attention.k_proj", "encoder.layer.{}.attention.self.key"),
    *weight_and_bias("layers.{}.attention.v_proj", "encoder.layer.{}.attention.self.value"),
    *weight_and_bias("layers.{}.attention.out_proj", "encoder.layer.{}.attention.output.dense"),
    *weight_and_bias("layers.{}.attention_norm", "encoder.layer.{}.attention.output.LayerNorm"),
    *weight_and_bias("layers.{}.ffn.up", "encoder.layer.{}.intermediate.dense"),
    *weight_and_bias("layers.{}.ffn.down", "encoder.layer.{}.output.dense"),
    *weight_and_bias("layers.{}.ffn_norm", "encoder.layer.{}.output.LayerNorm"),
    *weight_and_bias("pooler.dense", "pooler.dense"),
)
_BUFFERS = (r"embeddings\.position_ids", r"embeddings\.token_type_ids")

BertPreTrainedModel.weight_map = WeightMap(
    base=_ENCODER,
    heads=(
        *weight_and_bias("mlm_head.dense", "cls.predictions.transform.dense"),
        *weight_and_bias("mlm_head.layer_norm", "cls.predictions.transform.LayerNorm"),
        ("mlm_head.bias", "cls.predictions.bias"),
        *weight_and_bias("nsp_head", "cls.seq_relationship"),
        *weight_and_bias("classifier", "classifier"),
        *weight_and_bias("qa_outputs", "qa_outputs"),
    ),
    # The decoder is the word embedding matrix and its bias is cls.predictions.bias: tied copies.
    dropped=(*_BUFFERS, r"cls\.predictions\.decoder\.(weight|bias)"),
    aliases=(("cls.predictions.decoder.bias", "cls.predictions.bias"),),
)

# RoBERTa's classes share one table: same encoder names, RoBERTa's head names.
ROBERTA_WEIGHTS = WeightMap(
    base=_ENCODER,
    heads=(
        *weight_and_bias("lm_head.dense", "lm_head.dense"),
        *weight_and_bias("lm_head.layer_norm", "lm_head.layer_norm"),
        ("lm_head.bias", "lm_head.bias"),
        *weight_and_bias("classifier.dense", "classifier.dense"),  # sequence classification's head
        *weight_and_bias("classifier.out_proj", "classifier.out_proj"),
        *weight_and_bias("classifier", "classifier"),  # token classification's
        *weight_and_bias("qa_outputs", "qa_outputs"),
    ),
    dropped=(*_BUFFERS, r"lm_head\.decoder\.(weight|bias)"),
    aliases=(("lm_head.decoder.bias", "lm_head.bias"),),
)
for _roberta_class in (RobertaModel, RobertaForMaskedLM, RobertaForSequenceClassification,
                       RobertaForTokenClassification, RobertaForQuestionAnswering):
    _roberta_class.weight_map = ROBERTA_WEIGHTS

"""minibert: BERT, RoBERTa, BART and GPT-2-style transformers from scratch in plain PyTorch."""

from minibert.auto import load_pretrained
from minibert.generation import GenerationMixin
from minibert.models.bart import (
    BartConfig,
    BartForConditionalGeneration,
    BartForQuestionAnswering,
    BartForSequenceClassification,
    BartModel,
    shift_tokens_right,
)
from minibert.models.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
)
from minibert.models.electra import ElectraForPreTraining
from minibert.models.gpt import (
    GPT2Config,
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
)
from minibert.sentence_embeddings import Whitening, embed
from minibert.tokenizer import Tokenizer, load_tokenizer, train_tokenizer
from minibert.tracing import trace, trace_generation

__version__ = "0.1.0"

__all__ = [
    "BartConfig",
    "BartForConditionalGeneration",
    "BartForQuestionAnswering",
    "BartForSequenceClassification",
    "BartModel",
    "GPT2Config",
    "GPT2ForQuestionAnswering",
    "GPT2ForSequenceClassification",
    "GPT2ForTokenClassification",
    "GPT2LMHeadModel",
    "GPT2Model",
    "GenerationMixin",
    "BertConfig",
    "BertForMaskedLM",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "ElectraForPreTraining",
    "RobertaConfig",
    "RobertaForMaskedLM",
    "RobertaForQuestionAnswering",
    "RobertaForSequenceClassification",
    "RobertaForTokenClassification",
    "RobertaModel",
    "Tokenizer",
    "Whitening",
    "embed",
    "load_pretrained",
    "load_tokenizer",
    "shift_tokens_right",
    "trace",
    "trace_generation",
    "train_tokenizer",
]

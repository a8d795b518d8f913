"""minibert: BERT, RoBERTa, BART and GPT-2-style transformers from scratch in plain PyTorch."""

from minibert.auto import load_pretrained
from minibert.models.bart import BartConfig, BartForConditionalGeneration, BartForSequenceClassification, BartModel
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
    RobertaForSequenceClassification,
    RobertaModel,
)
from minibert.models.gpt import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2Model

__version__ = "0.1.0"

__all__ = [
    "BartConfig",
    "BartForConditionalGeneration",
    "BartForSequenceClassification",
    "BartModel",
    "GPT2Config",
    "GPT2ForSequenceClassification",
    "GPT2LMHeadModel",
    "GPT2Model",
    "BertConfig",
    "BertForMaskedLM",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "RobertaConfig",
    "RobertaForMaskedLM",
    "RobertaForSequenceClassification",
    "RobertaModel",
    "load_pretrained",
]

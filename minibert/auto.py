"""`load_pretrained(path)`: pick the minibert class for a Hugging Face checkpoint directory from
its config.json (`model_type`, then the first of `architectures`), then load it."""

import os

from minibert.checkpoint import read_config_dict
from minibert.modeling import PreTrainedModel, check_config_keywords
from minibert.models import bart, bert, gpt

# model_type -> (class used when no architecture is named, {architecture name: class})
FAMILIES: dict[str, tuple[type[PreTrainedModel], dict[str, type[PreTrainedModel]]]] = {
    "bert": (bert.BertModel, {cls.__name__: cls for cls in (
        bert.BertModel, bert.BertForPreTraining, bert.BertForMaskedLM, bert.BertForSequenceClassification,
        bert.BertForTokenClassification, bert.BertForQuestionAnswering)}),
    "roberta": (bert.RobertaModel, {cls.__name__: cls for cls in (
        bert.RobertaModel, bert.RobertaForMaskedLM, bert.RobertaForSequenceClassification)}),
    "gpt2": (gpt.GPT2Model, {cls.__name__: cls for cls in (
        gpt.GPT2Model, gpt.GPT2LMHeadModel, gpt.GPT2ForSequenceClassification)}),
    "bart": (bart.BartModel, {cls.__name__: cls for cls in (
        bart.BartModel, bart.BartForConditionalGeneration, bart.BartForSequenceClassification)}),
}


def model_class_for(config: dict) -> type[PreTrainedModel]:
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(
            f"unsupported model_type {model_type!r} in config.json; minibert supports {sorted(FAMILIES)}"
        )
    default, classes = FAMILIES[model_type]
    for name in config.get("architectures") or ():
        if name in classes:
            return classes[name]
    return default


def load_pretrained(path: str | os.PathLike, **config_overrides) -> PreTrainedModel:
    """Load any supported Hugging Face (or minibert) checkpoint directory as its minibert class."""
    model_class = model_class_for(read_config_dict(path))
    check_config_keywords(model_class.config_class, config_overrides, "load_pretrained")
    return model_class.from_pretrained(path, **config_overrides)

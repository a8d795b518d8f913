"""`load_pretrained(path)`: pick the minibert class for a Hugging Face checkpoint directory from
its config.json (`model_type`, then the first of `architectures` that minibert has; when it names
only classes minibert lacks, refuse rather than drop their heads), then load it."""

import os
from pathlib import Path

from minibert.checkpoint import (
    BESIDE_BASE_FILE,
    MULTITASK_KEY,
    NEW_ENCODER_DIR,
    NEW_ENCODER_SETTINGS,
    POOLED_CLASSIFIER_KEY,
    read_config_dict,
)
from minibert.modeling import PreTrainedModel, check_config_keywords
from minibert.models import bart, bert, gpt

# model_type -> (class used when no architecture is named, {architecture name: class})
FAMILIES: dict[str, tuple[type[PreTrainedModel], dict[str, type[PreTrainedModel]]]] = {
    "bert": (bert.BertModel, {cls.__name__: cls for cls in (
        bert.BertModel, bert.BertForPreTraining, bert.BertForMaskedLM, bert.BertForSequenceClassification,
        bert.BertForTokenClassification, bert.BertForQuestionAnswering)}),
    "roberta": (bert.RobertaModel, {cls.__name__: cls for cls in (
        bert.RobertaModel, bert.RobertaForMaskedLM, bert.RobertaForSequenceClassification,
        bert.RobertaForTokenClassification, bert.RobertaForQuestionAnswering)}),
    "gpt2": (gpt.GPT2Model, {cls.__name__: cls for cls in (
        gpt.GPT2Model, gpt.GPT2LMHeadModel, gpt.GPT2ForSequenceClassification,
        gpt.GPT2ForTokenClassification, gpt.GPT2ForQuestionAnswering)}),
    "bart": (bart.BartModel, {cls.__name__: cls for cls in (
        bart.BartModel, bart.BartForConditionalGeneration, bart.BartForSequenceClassification,
        bart.BartForQuestionAnswering)}),
}


def model_class_for(config: dict) -> type[PreTrainedModel]:
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise ValueError(
            f"unsupported model_type {model_type!r} in config.json; minibert supports {sorted(FAMILIES)}"
        )
    default, classes = FAMILIES[model_type]
    names = config.get("architectures") or ()
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        # a bare string would be read letter by letter ("names architecture B, e, r, t, ...")
        raise ValueError(f"config.json's architectures must be a list of class names, such as "
                         f"[\"{default.__name__}\"], got {names!r}; correct it in config.json")
    for name in names:
        if name in classes:
            return classes[name]
    if names == ["BartForCausalLM"]:  # a decoder alone: BartModel.from_pretrained would miss the whole encoder
        raise ValueError("config.json names architecture BartForCausalLM, a BART decoder alone (no encoder), which "
                         "minibert does not have; use transformers' BartForCausalLM for it")
    if names:
        # The base class would load the encoder and drop the head the checkpoint was trained with
        # (next-sentence, multiple choice, ...), leaving a model that looks loaded but is not that one.
        raise ValueError(
            f"config.json names architecture {', '.join(names)}, which minibert does not have; its "
            f"{model_type} classes are {', '.join(sorted(classes))}. To use the base model alone (the "
            f"head dropped), load it explicitly: minibert.{default.__name__}.from_pretrained(path)"
        )
    return default


# What train.py writes that config.json alone does not describe; only load_finetuned rebuilds it.
FINETUNED_OUTPUTS = {
    "beside_base": ("the parameters an --adapter_size / --ladder_side_tuning run trained, saved beside their base "
                    "checkpoint (beside_base.json)"),
    "new_encoder": "a BART with a new encoder front (train.py --new_encoder_vocab; the front is in new_encoder/)",
    POOLED_CLASSIFIER_KEY: "a classifier saved by train.py --pooling (pooling and classifier in head.safetensors)",
    MULTITASK_KEY: "a multi-task classifier saved by train.py --multitask (its task heads are beside the encoder)",
}


def finetuned_output(path: str | os.PathLike, config: dict | None) -> str | None:
    """Which train.py output the directory holds beyond its config.json (a key of FINETUNED_OUTPUTS; `config`:
    None when it has none), or None for a plain checkpoint."""
    if (Path(path) / BESIDE_BASE_FILE).is_file():
        return "beside_base"
    if (Path(path) / NEW_ENCODER_DIR / NEW_ENCODER_SETTINGS).is_file():
        return "new_encoder"
    return next((key for key in (POOLED_CLASSIFIER_KEY, MULTITASK_KEY) if key in (config or {})), None)


def check_not_finetuned(path: str | os.PathLike, config: dict | None) -> None:
    """Refuse a directory whose model is more than its config.json names (`config`: None when it has
    none): loading it as a plain checkpoint would give a bare encoder, the trained parts left behind."""
    found = finetuned_output(path, config)
    if found:
        raise ValueError(f"{path} holds {FINETUNED_OUTPUTS[found]}, which load_pretrained cannot rebuild; load it with "
                         f"minibert.finetuning.load_finetuned({str(path)!r})")


def checkpoint_class(path: str | os.PathLike) -> type[PreTrainedModel]:
    """The class load_pretrained builds for the directory `path`, found without loading any weights."""
    config = None if (Path(path) / BESIDE_BASE_FILE).is_file() else read_config_dict(path)  # it has no config.json
    check_not_finetuned(path, config)
    return model_class_for(config)


def load_pretrained(path: str | os.PathLike, ignore_mismatched_sizes: bool = False,
                    **config_overrides) -> PreTrainedModel:
    """Load any supported Hugging Face (or minibert) checkpoint directory as its minibert class.
    What train.py saved with parts of its own (--pooling, --multitask, adapters, ladder side-tuning,
    --new_encoder_vocab) is refused: minibert.finetuning.load_finetuned loads it. With
    ignore_mismatched_sizes, a task head that does not fit `num_labels=` starts afresh."""
    model_class = checkpoint_class(path)
    check_config_keywords(model_class.config_class, config_overrides, "load_pretrained")
    return model_class.from_pretrained(path, ignore_mismatched_sizes=ignore_mismatched_sizes, **config_overrides)

"""A sequence classifier with any pooling head: encoder -> pooling -> dropout -> linear.

The family heads (BertForSequenceClassification, RobertaForSequenceClassification) pool one
way each; this wraps a base encoder (BertModel, RobertaModel) with any pooling of
minibert.finetune.pooling. `model.base_model` is the encoder, so every trick that looks for
`base_model.embeddings / layers / pooler` works on it unchanged.

Saved as: the encoder in Hugging Face format (config.json + model.safetensors, loadable by
`transformers.AutoModel` and minibert's `BertModel.from_pretrained` / `RobertaModel.from_pretrained`),
with the head's settings under the config key "minibert_pooled_classifier", plus head.safetensors
(pooling and classifier weights). `minibert.load_pretrained` refuses the directory, naming
`minibert.finetuning.load_finetuned`, which rebuilds the whole classifier.
"""

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from minibert.checkpoint import POOLED_CLASSIFIER_KEY
from minibert.finetune.losses import task_loss
from minibert.finetune.pooling import build_pooling
from minibert.outputs import SequenceClassifierOutput

HEAD_KEY = POOLED_CLASSIFIER_KEY  # the config.json key that marks this head (checkpoint.py)
HEAD_FILE = "head.safetensors"


def head_dropout(config, dropout: float | None) -> float:
    """A task head's dropout: `dropout` when given, else the config's classifier_dropout, else its
    hidden_dropout_prob (Hugging Face's rule, and the family heads')."""
    for p in (dropout, getattr(config, "classifier_dropout", None), getattr(config, "hidden_dropout_prob", 0.1)):
        if p is not None:
            return p
    return 0.1


class PooledClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, pooling: str, num_labels: int,
                 problem_type: str = "single_label_classification", multi_label_loss: str = "bce",
                 dropout: float | None = None, layer: int = -2):
        super().__init__()
        config = encoder.config
        self.encoder = encoder
        # Everything the constructor takes, so load() rebuilds the head as trained (a model trained on
        # after load_finetuned keeps its dropout; None means the encoder config's classifier_dropout, or
        # when that is None its hidden_dropout_prob: Hugging Face's rule, and the family heads').
        self.settings = {"pooling": pooling, "num_labels": num_labels, "problem_type": problem_type,
                         "multi_label_loss": multi_label_loss, "layer": layer, "dropout": dropout}
        self.pooling = build_pooling(pooling, config.hidden_size, config.num_hidden_layers, layer=layer)
        self.dropout = nn.Dropout(head_dropout(config, dropout))
        self.classifier = nn.Linear(self.pooling.out_dim, num_labels)
        nn.init.normal_(self.classifier.weight, std=getattr(config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)
        self.config = config

    @property
    def base_model(self) -> nn.Module:
        return self.encoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embeddings.word_embeddings

    def gradient_checkpointing_enable(self) -> None:
        self.encoder.gradient_checkpointing_enable()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_hidden_states: bool = False) -> SequenceClassifierOutput:
        """Expects right-padded rows with at least one real token each, as minibert's tokenizer and
        collators give (see minibert.finetune.pooling): a left-padded batch makes the [CLS]-reading
        heads read a pad. Not checked here, on every training step."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           output_hidden_states=True)
        pooled = self.pooling(out.hidden_states, attention_mask, out.pooler_output)  # (B, P)
        logits = self.classifier(self.dropout(pooled))  # (B, C)
        loss = None
        if labels is not None:
            loss = task_loss(logits, labels, self.settings["problem_type"], self.settings["multi_label_loss"])
        # every layer's states are read by the pooling, but returned only when asked, as the family heads do
        # (returned, they would count as used for DDP: a head that reads a lower layer leaves the top blocks
        # without a gradient, and DDP's find_unused_parameters must see that from the outputs)
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=out.hidden_states if output_hidden_states else None)

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        self.encoder.config.extra[HEAD_KEY] = self.settings
        self.encoder.save_pretrained(path)
        head = {f"pooling.{k}": v for k, v in self.pooling.state_dict().items()}
        head.update({f"classifier.{k}": v for k, v in self.classifier.state_dict().items()})
        save_file({k: v.detach().contiguous().cpu() for k, v in head.items()}, str(path / HEAD_FILE))

    @classmethod
    def load(cls, path: str | os.PathLike, encoder_class) -> "PooledClassifier":
        path = Path(path)
        settings = json.loads((path / "config.json").read_text())[HEAD_KEY]
        model = cls(encoder_class.from_pretrained(path), **settings)
        head = load_file(str(path / HEAD_FILE))
        model.pooling.load_state_dict({k[len("pooling."):]: v for k, v in head.items() if k.startswith("pooling.")})
        model.classifier.load_state_dict(
            {k[len("classifier."):]: v for k, v in head.items() if k.startswith("classifier.")}
        )
        return model.eval()

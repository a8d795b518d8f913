"""What a fourth newcomer walk met in the Python API: a model returning Hugging Face's dict or tuple was told it
"returned no loss; the batch needs labels", Hugging Face TrainingArguments names and numbers given as strings failed
with bare TypeErrors, and unpad=True scored labels at padded positions on zeros. Each test fails without its fix."""

import numpy as np
import pytest
import torch
from test_engine import ToyModel, collate, make_args, toy_dataset

from minibert.engine import Trainer, TrainingArguments
from minibert.models.bert import BertConfig, BertForMaskedLM, BertForTokenClassification


class DictModel(ToyModel):
    """ToyModel whose forward returns {"loss", "logits"} (or, as_tuple, (loss, logits)), as Hugging Face's models
    do with return_dict=False or custom heads."""

    def __init__(self, as_tuple: bool = False):
        super().__init__()
        self.as_tuple = as_tuple

    def forward(self, input_ids, labels=None, attention_mask=None):
        out = super().forward(input_ids, labels, attention_mask)
        return (out.loss, out.logits) if self.as_tuple else {"loss": out.loss, "logits": out.logits}


@pytest.mark.parametrize("as_tuple", [False, True])
def test_a_model_returning_a_dict_or_a_tuple_trains_as_one_returning_a_dataclass(as_tuple, tmp_path):
    """The Trainer reads the loss where Hugging Face's does: a dict's "loss", a tuple's first item. The weights come
    out as those of the same model returning minibert's output."""
    torch.manual_seed(0)  # (the engine leaves the global generator, dropout's, to its caller: seeded before each)
    reference = ToyModel()
    Trainer(reference, make_args(tmp_path / "a", max_steps=3), toy_dataset(), collate).train()
    torch.manual_seed(0)
    model = DictModel(as_tuple)
    Trainer(model, make_args(tmp_path / "b", max_steps=3), toy_dataset(), collate).train()
    for a, b in zip(reference.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_a_model_without_a_loss_is_told_where_the_trainer_looks(tmp_path):
    class NoLoss(ToyModel):
        def forward(self, input_ids, labels=None, attention_mask=None):
            return {"logits": super().forward(input_ids).logits}

    with pytest.raises(ValueError, match=r"NoLoss returned no loss \(a dict; the Trainer reads its `loss` field, a "
                                         r"dict's \"loss\" or a tuple's first item"):
        Trainer(NoLoss(), make_args(tmp_path, max_steps=1), toy_dataset(), collate).train()


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(eval_strategy="steps"), r"has no eval_strategy, a Hugging Face argument minibert's engine does not take: "
                                  r"evaluation runs every eval_steps steps"),
    (dict(report_to="none"), r"has no report_to, .*output_dir/metrics.jsonl"),
    (dict(learnin_rate=1e-3), r"has no learnin_rate; did you mean learning_rate\?"),
    (dict(learning_rate="5e-5"), r"learning_rate must be a number, got '5e-5' \(str\); pass it unquoted"),
    (dict(per_device_train_batch_size="16"), r"per_device_train_batch_size must be a whole number, got '16'"),
    (dict(max_steps=2.5), r"max_steps must be a whole number, got 2.5"),
    (dict(fp16="no"), r"fp16 must be True or False, got 'no'"),
])
def test_training_arguments_explain_a_name_or_a_type_they_do_not_take(kwargs, message):
    with pytest.raises(TypeError, match=message):
        TrainingArguments(**kwargs)
    TrainingArguments(learning_rate=1, num_train_epochs=2, eval_steps=None, warmup_ratio=0)  # ints for floats: fine
    TrainingArguments(max_steps=np.int64(10), warmup_ratio=np.float64(0.1))  # NumPy's numbers too (a sweep's)


@pytest.mark.parametrize("head", [BertForMaskedLM, BertForTokenClassification])
def test_unpad_refuses_labels_at_padded_positions_and_equals_the_padded_loss_without_them(head):
    """Under unpad=True padded positions are zeros, not computed: a label there gave a loss 0.0175 apart from the
    padded model's, unsaid. It is refused; with -100 there, the losses are equal."""
    torch.manual_seed(0)
    config = dict(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                  num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    padded = head(BertConfig(**config)).eval()
    unpadded = head(BertConfig(**config, unpad=True)).eval()
    unpadded.load_state_dict(padded.state_dict())
    ids = torch.randint(3, 40, (2, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    labels = torch.randint(0, 3, (2, 6))
    with pytest.raises(ValueError, match=r"labels other than -100 at padded positions \(attention_mask 0\)"):
        unpadded(ids, attention_mask=mask, labels=labels)
    labels = labels.masked_fill(mask == 0, -100)
    with torch.no_grad():
        torch.testing.assert_close(unpadded(ids, attention_mask=mask, labels=labels).loss,
                                   padded(ids, attention_mask=mask, labels=labels).loss, atol=1e-6, rtol=1e-6)

"""An audit of the fine-tuning tricks and the optimizer / schedule building blocks: each test here failed
before the fix it names, on a tiny model, in a second or so."""

import copy

import torch

from minibert.finetune.mixout import MixLinear, apply_mixout
from minibert.models.bert import BertConfig, BertForSequenceClassification


def tiny_model(layers: int = 2) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3)
    return BertForSequenceClassification(config)


def test_mixout_on_a_model_in_eval_mode_keeps_it_in_eval_mode():
    """from_pretrained returns a model in eval mode, and apply_mixout is called right after it: the new
    MixLinear layers were built training (a fresh Module trains), so until the next model.train() / eval()
    the 'evaluating' model mixed its weights with the pretrained ones at random on every call."""
    model = tiny_model().eval()
    apply_mixout(model, 0.5)
    assert not any(m.training for m in model.modules())
    with torch.no_grad():  # fine-tuned away from the mixout targets
        for m in model.modules():
            if isinstance(m, MixLinear):
                m.weight.add_(0.1)
    plain = copy.deepcopy(model)
    for m in list(plain.modules()):  # the same weights in plain Linear layers
        for child_name, child in list(m.named_children()):
            if isinstance(child, MixLinear):
                linear = torch.nn.Linear(child.in_features, child.out_features)
                linear.weight, linear.bias = child.weight, child.bias
                setattr(m, child_name, linear.eval())
    ids = torch.randint(1, 50, (3, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, plain(ids).logits, rtol=0, atol=0)
    model.train()
    assert all(m.training for m in model.modules())  # and train() still turns mixing on

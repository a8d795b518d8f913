"""A second audit of the fine-tuning tricks: each test here failed before the fix it names, on a tiny model,
in a second or so."""

import tempfile
from types import SimpleNamespace

import pytest
import torch

from minibert.engine.arguments import TrainingArguments
from minibert.engine.optim import build_optimizer
from minibert.finetune.adapters import add_adapters
from minibert.finetune.multitask import MultiTaskClassifier
from minibert.finetune.new_encoder import BartWithNewEncoder, TwoStageTraining
from minibert.finetune.param_groups import param_groups
from minibert.finetune.unfreezing import GradualUnfreezing
from minibert.models.bart import BartConfig, BartForConditionalGeneration
from minibert.models.bert import BertConfig, BertForSequenceClassification, BertModel


def tiny_config(**more) -> BertConfig:
    return BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                      max_position_embeddings=16, num_labels=3, **more)


def trainer_at(step: int, optimizer) -> SimpleNamespace:
    """What the callbacks read of the engine's Trainer."""
    return SimpleNamespace(state=SimpleNamespace(global_step=step), optimizer=optimizer)


def test_gradual_unfreezing_built_before_its_optimizer_is_refused():
    """Built first, GradualUnfreezing froze the encoder, so an optimizer built next (the no-decay groups leave
    frozen parameters out) held only the head: every stage thawed blocks that got gradients no step applied, and
    the run trained the head alone without a word. finetune builds the optimizer first; a Python caller may not."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config())
    unfreezing = GradualUnfreezing(model, steps_per_stage=1)
    optimizer = torch.optim.AdamW(param_groups(model, 1e-2, 0.0))
    with pytest.raises(ValueError, match=r"GradualUnfreezing thaws \d+ parameter tensors that are in no group of the "
                                         r"optimizer \(bert\.embeddings\..*build the optimizer before the "
                                         r"GradualUnfreezing"):
        unfreezing.on_train_begin(trainer_at(0, optimizer))
    # in finetune's order every parameter it thaws is in the optimizer, and a resumed run takes its stage back
    model = BertForSequenceClassification(tiny_config())
    optimizer = torch.optim.AdamW(param_groups(model, 1e-2, 0.0))
    unfreezing = GradualUnfreezing(model, steps_per_stage=1)
    unfreezing.on_train_begin(trainer_at(2, optimizer))
    assert unfreezing.stage == 2


def test_two_stage_training_built_before_its_optimizer_is_refused():
    """The same for BART's new encoder front: stage two thaws every parameter, and an optimizer built after
    stage one froze most of BART trained the stage-one parameters alone through stage two."""
    torch.manual_seed(0)
    config = BartConfig(vocab_size=40, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32)
    model = BartWithNewEncoder(BartForConditionalGeneration(config), vocab_size=50, pad_token_id=1)
    stages = TwoStageTraining(model, stage_one_steps=2)
    optimizer = torch.optim.AdamW(param_groups(model, 1e-2, 0.0))
    with pytest.raises(ValueError, match=r"TwoStageTraining thaws \d+ parameter tensors that are in no group"):
        stages.on_train_begin(trainer_at(0, optimizer))
    optimizer = torch.optim.AdamW([p for p in model.parameters()])  # built over every parameter: accepted
    stages.on_train_begin(trainer_at(3, optimizer))
    assert stages.stage == 2


def tiny_multitask() -> MultiTaskClassifier:
    torch.manual_seed(0)
    encoder = BertModel(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    return MultiTaskClassifier(encoder, {"genre": {"num_labels": 2}, "length": {"num_labels": 1}}, "mean")


def test_a_multitask_task_index_out_of_range_is_refused_naming_the_tasks():
    """task=-1 ran the last task's head without a word (a Python list's negative index), task=2 of 2 tasks
    failed with a bare IndexError, and one int for the batch with "'int' object is not subscriptable"."""
    model = tiny_multitask().eval()
    ids = torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]])
    torch.testing.assert_close(model(ids, 1).logits, model(ids, torch.tensor([1, 1])).logits, rtol=0, atol=0)
    for task in (torch.tensor([-1, -1]), torch.tensor([2, 2]), -1, 2, "length"):
        with pytest.raises(ValueError, match=r"task .* is not a task index of this model; its tasks are 0 genre, "
                                             r"1 length"):
            model(ids, task)
    with pytest.raises(ValueError, match="a multi-task batch mixes tasks"):
        model(ids, torch.tensor([0, 1]))


def test_a_multitask_model_trains_with_gradient_checkpointing():
    """`train.py --multitask ... --gradient_checkpointing` was refused once the data was read ("MultiTaskClassifier
    has no gradient_checkpointing_enable()"), though its encoder checkpoints as PooledClassifier's does."""
    plain, checkpointed = tiny_multitask(), tiny_multitask()
    checkpointed.gradient_checkpointing_enable()
    assert checkpointed.encoder.gradient_checkpointing and checkpointed.training  # (equal gradients alone
    # would pass with a method that does nothing)
    ids, task = torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]]), torch.tensor([0, 0])
    mask = (ids != 0).long()
    for model in (plain, checkpointed):
        model(ids, task, mask).logits.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_adapters_added_to_a_model_with_adapters_are_refused():
    """A second add_adapters replaced each block's `adapter` while the first adapters' hooks kept running: trained
    adapters in every forward but in no parameters(), so never saved (the reloaded model lost them) nor trained."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config())
    add_adapters(model, 4)
    with pytest.raises(ValueError, match="has adapters already"):
        add_adapters(model, 4)
    assert [len(layer.ffn._forward_hooks) for layer in model.base_model.layers] == [1, 1]


def test_build_optimizer_refuses_parameters_in_place_of_groups():
    """torch.optim takes parameters or groups; build_optimizer takes groups, and parameters failed with "'Parameter'
    object is not a mapping" (one group not in a list: "'str' object is not a mapping")."""
    model = torch.nn.Linear(4, 2)
    args = TrainingArguments(output_dir=tempfile.mkdtemp())
    for given in (list(model.parameters()), model.parameters(), {"params": list(model.parameters())}):
        with pytest.raises(ValueError, match=r"param_groups must be a list of groups, dicts with the group's tensors "
                                             r"under \"params\""):
            build_optimizer(model, args, given)
    # groups, in a list or a generator, still build
    groups = ({"params": [p], "weight_decay": wd} for p, wd in ((model.weight, 0.1), (model.bias, 0.0)))
    optimizer = build_optimizer(model, args, groups)
    assert [(len(g["params"]), g["weight_decay"]) for g in optimizer.param_groups] == [(1, 0.1), (1, 0.0)]

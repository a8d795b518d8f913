"""The training engine, from a second audit (each test but the first failed before its fix): an exact resume
mid-epoch with accumulation, smart batching and evaluations between (checked, not changed), optimizer groups
given as generators, eval_fn values that are tensors or NumPy scalars, a stop asked for at an evaluation
(early stopping), "None" on the command line, and the help of flags whose comment sits above them."""

import json
import random

import numpy as np
import pytest
import torch
from test_engine import ToyModel, collate, make_args, masking_collate, toy_dataset

from minibert.engine import Trainer, build_optimizer
from minibert.engine.arguments import CommandLineParser, TrainingArguments, add_arguments, from_namespace
from minibert.engine.checkpointing import list_checkpoints
from minibert.finetune.smart_batching import UniformLengthSampler

TIMING = ("tokens_per_second", "data_wait_share")  # wall-clock measures: the only keys a resume may change


class Crash(Exception):
    pass


class CrashAfter:
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer):
        if trainer.state.global_step == self.step:
            raise Crash


def evaluation_on_the_global_rngs(model) -> dict:
    """An evaluation drawing from torch's, Python's and NumPy's generators, as a random-masking one would."""
    return {"loss": torch.rand(()).item() + random.random() + float(np.random.rand())}


def resumable_run(tmp_path, callbacks=(), resume=None):
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    # 36 examples in batches of 4: 9 batches an epoch, so steps of 2 micro-batches straddle the epochs
    args = make_args(tmp_path, max_steps=14, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                     eval_steps=3, logging_steps=4, save_steps=5, warmup_ratio=0.2, weight_decay=0.1)
    trainer = Trainer(ToyModel(), args, toy_dataset(36), masking_collate, eval_fn=evaluation_on_the_global_rngs,
                      callbacks=callbacks, sampler=UniformLengthSampler([6] * 36, 4))
    try:
        trainer.train(resume_from_checkpoint=resume)
    except Crash:
        pass
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    after = (torch.rand(2).tolist(), random.random(), float(np.random.rand()))  # the generators' next draws
    return [{k: v for k, v in r.items() if k not in TIMING} for r in lines], trainer.model.state_dict(), after


def test_a_crashed_run_resumed_mid_epoch_repeats_the_uninterrupted_one(tmp_path):
    """Crash after step 7 (checkpoint 5: mid-epoch, a logging window and an evaluation since); the resumed
    run logs the same lines (losses, learning rates, grad norms, epochs, evaluations), ends with the same
    weights bit for bit, and leaves the generators where the uninterrupted run left them."""
    full_lines, full_weights, full_after = resumable_run(tmp_path / "full")
    resumable_run(tmp_path / "cut", callbacks=[CrashAfter(7)])
    lines, weights, after = resumable_run(tmp_path / "cut", resume="last")
    assert [r["step"] for r in lines] == [3, 4, 6, 8, 9, 12, 12, 14, 14]
    assert lines == full_lines
    assert all(torch.equal(weights[k], full_weights[k]) for k in full_weights)
    assert after == full_after


def test_param_groups_given_as_generators_train_every_parameter(tmp_path):
    """torch.optim takes any iterable of parameters (its docs pass model.base.parameters()); build_optimizer read
    the first group's generator once to find the device, so its first parameter (here the embedding) never
    reached AdamW and never trained."""
    model = ToyModel()
    groups = [{"params": model.embed.parameters(), "lr": 1e-3}, {"params": model.out.parameters()},
              {"params": model.norm.weight}]  # a lone tensor, as torch.optim also takes
    optimizer = build_optimizer(model, make_args(tmp_path), groups)
    assert [len(g["params"]) for g in optimizer.param_groups] == [1, 2, 1]
    assert optimizer.param_groups[0]["params"][0] is model.embed.weight
    with pytest.raises(ValueError, match='param_groups hold no parameter; put the parameters to train in'):
        build_optimizer(model, make_args(tmp_path), [{"params": []}])  # a bare StopIteration before


@pytest.mark.parametrize("value", [torch.tensor(0.25), np.float32(0.25), torch.tensor([0.25])])
def test_an_eval_fn_returning_a_tensor_or_a_numpy_scalar_is_logged_as_a_number(tmp_path, value):
    """`loss_sum / count` left as a tensor, or a NumPy float32, stopped the run at its first evaluation with
    "Object of type Tensor is not JSON serializable"; Hugging Face's Trainer turns them into numbers."""
    seen = []

    class Sees:
        def on_evaluate(self, trainer, metrics):
            seen.append(metrics)

    args = make_args(tmp_path, max_steps=4, eval_steps=2, metric_for_best_model="loss")
    result = Trainer(ToyModel(), args, toy_dataset(16), collate, callbacks=[Sees()],
                     eval_fn=lambda model: {"loss": value, "count": np.int64(16)}).train()
    evaluations = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
                   if "eval_loss" in line]
    assert evaluations == [{"step": 2, "eval_loss": 0.25, "eval_count": 16}, {"step": 4, "eval_loss": 0.25,
                                                                               "eval_count": 16}]
    assert result.best_metric == 0.25 and type(seen[0]["loss"]) is float and type(seen[0]["count"]) is int


def test_a_stop_asked_for_at_an_evaluation_ends_the_run_as_a_last_step(tmp_path):
    """Early stopping sets should_stop in on_evaluate. The step it came at ended the run without its
    training line (the window since the last one was never logged) and without a checkpoint (none was due):
    nothing to resume from. Set in on_step_end, the same stop gave both."""
    class EarlyStopping:
        def on_evaluate(self, trainer, metrics):
            trainer.should_stop = trainer.state.global_step == 4

    args = make_args(tmp_path, max_steps=12, eval_steps=2, logging_steps=3, save_steps=100)
    result = Trainer(ToyModel(), args, toy_dataset(16), collate, eval_fn=lambda model: {"loss": 1.0},
                     callbacks=[EarlyStopping()]).train()
    assert result.global_step == 4
    trained = [r["step"] for r in result.history if "loss" in r]
    assert trained == [3, 4] and result.history[-1]["step"] == 4
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["checkpoint-4"]
    assert result.last_checkpoint == str(tmp_path / "run" / "checkpoint-4")


def parse(argv: list[str]) -> TrainingArguments:
    parser = CommandLineParser(prog="train.py")
    add_arguments(parser)
    return from_namespace(parser.parse_args(argv))


@pytest.mark.parametrize("flag", ["--torch_compile_backend", "--metric_for_best_model", "--resume_from_checkpoint",
                                  "--greater_is_better", "--eval_steps"])
def test_none_on_the_command_line_is_none_for_every_optional_flag(flag):
    """--help shows "(default: None)"; `--eval_steps None` meant None, but a str flag took the text: with
    `--torch_compile_backend None` the model was compiled with a backend named "None"; a bool one was refused."""
    args = parse([flag, "None"])
    assert getattr(args, flag[2:]) is None and not args.torch_compile
    assert parse(["--torch_compile_backend", "aot_eager"]).torch_compile  # a real value still is one
    assert parse(["--greater_is_better", "false"]).greater_is_better is False


def test_an_optional_float_flag_takes_none(capsys):
    """`--llrd None` (train.py's float | None flags) was refused: "invalid float value: 'None'"."""
    from minibert.finetuning import FinetuneArguments

    parser = CommandLineParser(prog="train.py")
    add_arguments(parser, FinetuneArguments)
    assert parser.parse_args(["--llrd", "None"]).llrd is None and parser.parse_args(["--llrd", "0.9"]).llrd == 0.9


def test_a_flag_whose_comment_sits_above_its_field_has_it_as_help():
    """--save_steps, --phase2_ratio and --dataloader_drop_last carry their comment on the lines above (too long
    for the field's line): their --help said only "(default: ...)". A section title is no flag's help."""
    parser = CommandLineParser(prog="train.py")
    add_arguments(parser)
    helps = {action.dest: action.help for action in parser._actions}
    assert helps["save_steps"].startswith("checkpoint every this many steps, at the end, and at each new best")
    assert helps["phase2_ratio"].startswith("minibert: two-phase training as in NVIDIA's BERT recipe")
    assert helps["dataloader_drop_last"].startswith("drop the last incomplete batch of each epoch")
    assert helps["learning_rate"].startswith("peak learning rate")  # a comment on the line itself still wins
    assert helps["seed"].strip() == "(default: 42)"  # no comment: none taken from elsewhere

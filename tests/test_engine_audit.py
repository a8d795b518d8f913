"""The training engine's bookkeeping around the steps, from an audit (each test failed before its fix):
the run's tokens/s under gradient accumulation, logging windows holding a step with no labelled token,
the progress bar on such a window, --load_best_model_at_end without a metric, the DataLoader workers'
seeds, and the logged epoch."""

import json
import random

import numpy as np
import pytest
import torch
from test_engine import ToyModel, collate, make_args, toy_dataset

from minibert.engine import Trainer
from minibert.engine.checkpointing import load_model_weights


def test_the_runs_tokens_per_second_counts_every_micro_batch(tmp_path):
    """One logging window over the whole run: the result's rate and the logged one sum the same tokens over
    the same seconds. The result counted only the last micro-batch of each step (a quarter, here)."""
    torch.manual_seed(0)
    args = make_args(tmp_path, per_device_train_batch_size=2, gradient_accumulation_steps=4, max_steps=6,
                     logging_steps=100)
    result = Trainer(ToyModel(), args, toy_dataset(), collate).train()
    assert len(result.history) == 1
    assert result.tokens_per_second == pytest.approx(result.history[0]["tokens_per_second"], rel=1e-9)


def unlabelled_first_batch() -> tuple[list[dict], object, type]:
    """32 examples in four fixed batches of 8; the first batch's labels are all -100 (its loss is NaN)."""
    data = toy_dataset(32)
    for i, example in enumerate(data):
        example["hide"] = i < 8

    def hiding_collate(examples):
        batch = collate(examples)
        if all(e["hide"] for e in examples):
            batch["labels"] = torch.full_like(batch["labels"], -100)
        return batch

    class InOrder:
        def __iter__(self):
            return iter([list(range(i, i + 8)) for i in range(0, 32, 8)])

    return data, hiding_collate, InOrder


def labelled_accuracy(batch, outputs) -> dict:
    keep = batch["labels"] != -100
    return {"accuracy": (outputs.logits.argmax(-1)[keep] == batch["labels"][keep]).float().mean().item()}


def test_a_step_with_no_labelled_token_leaves_its_windows_means_finite(tmp_path):
    """The skipped step's NaN loss part and NaN accuracy made the whole window's means NaN (written as NaN,
    which strict JSON readers refuse), although three good steps shared it."""
    data, hiding_collate, in_order = unlabelled_first_batch()
    torch.manual_seed(0)
    args = make_args(tmp_path, max_steps=4, logging_steps=4)
    Trainer(ToyModel(), args, data, hiding_collate, sampler=in_order(), metrics_fn=labelled_accuracy).train()
    line = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0]
    record = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} written in {line}"))
    assert record["skipped_steps"] == 1 and record["token_loss"] == pytest.approx(record["loss"])
    assert 0 <= record["accuracy"] <= 1


def test_the_progress_bar_shows_a_logged_window_without_a_loss(tmp_path):
    """Step 1 logged alone (logging_steps 1) was skipped, so its line has no loss: the bar stopped the run
    with KeyError: 'loss'."""
    data, hiding_collate, in_order = unlabelled_first_batch()
    torch.manual_seed(0)
    args = make_args(tmp_path, max_steps=2, logging_steps=1, disable_tqdm=False)
    result = Trainer(ToyModel(), args, data, hiding_collate, sampler=in_order()).train()
    assert "loss" not in result.history[0] and "loss" in result.history[1]


def test_load_best_model_at_end_without_a_metric_keeps_the_lowest_eval_loss(tmp_path):
    """As Hugging Face: metric_for_best_model defaults to the loss. No checkpoint was ever the best, so
    --load_best_model_at_end (pretrain.py's, whose metric has no default) kept the last step's model."""
    losses = iter([1.0, 0.5, 2.0])  # evaluations at steps 2, 4 and 6: the best is step 4's
    torch.manual_seed(0)
    args = make_args(tmp_path, max_steps=6, eval_steps=2, save_steps=2, load_best_model_at_end=True)
    model = ToyModel()
    result = Trainer(model, args, toy_dataset(), collate, eval_fn=lambda m: {"loss": next(losses)}).train()
    assert result.best_checkpoint == str(tmp_path / "run" / "checkpoint-4") and result.best_metric == 0.5
    best = ToyModel()
    load_model_weights(best, tmp_path / "run" / "checkpoint-4")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), best.state_dict().values(), strict=True))
    assert args.metric_for_best_model is None  # the caller's arguments are left as given
    # an eval_fn with no loss: the message says where "loss" came from (it named a setting never made)
    args = make_args(tmp_path / "b", max_steps=2, eval_steps=2, save_steps=2, load_best_model_at_end=True)
    with pytest.raises(ValueError, match=r"--load_best_model_at_end with no --metric_for_best_model keeps the lowest "
                                         r"eval loss, which eval_fn does not return \(its keys: \['accuracy'\]\)"):
        Trainer(ToyModel(), args, toy_dataset(), collate, eval_fn=lambda m: {"accuracy": 0.5}).train()


def test_dataloader_workers_draw_new_seeds_every_epoch(tmp_path):
    """A collate_fn without the engine's generator (Hugging Face's DataCollatorForLanguageModeling) draws from
    the global RNG; in a worker that RNG was seeded alike every epoch, whatever --seed: the same masks again."""
    draws = []

    def noisy_collate(examples):
        return {**collate(examples), "noise": torch.rand(1)}

    class Record:
        def on_backward_end(self, trainer, batch):
            draws.append(float(batch["noise"]))

    def loss_fn(model, batch):
        outputs = model(batch["input_ids"], batch["labels"])
        return outputs.loss, outputs

    runs = []
    for seed in (1, 2):
        draws.clear()
        args = make_args(tmp_path / str(seed), max_steps=4, per_device_train_batch_size=32, dataloader_num_workers=1,
                         seed=seed)  # two batches an epoch
        Trainer(ToyModel(), args, toy_dataset(), noisy_collate, callbacks=[Record()], loss_fn=loss_fn).train()
        assert draws[:2] != draws[2:]  # epoch 0's draws, then epoch 1's
        runs.append(list(draws))
    assert runs[0] != runs[1]


def test_the_logged_epoch_holds_the_share_of_the_epoch_done(tmp_path):
    """As Hugging Face logs it, and as metrics.py's example shows (it was the whole number: 0, 0, 1, 1, 2)."""
    torch.manual_seed(0)
    args = make_args(tmp_path, max_steps=10, logging_steps=2, per_device_train_batch_size=16)  # 4 batches an epoch
    result = Trainer(ToyModel(), args, toy_dataset(), collate).train()
    assert [r["epoch"] for r in result.history] == [0.5, 1.0, 1.5, 2.0, 2.5]


@pytest.mark.parametrize("overrides, flag", [
    ({"adam_beta1": 1.5}, "--adam_beta1"), ({"adam_beta2": 1.0}, "--adam_beta2"),
    ({"adam_epsilon": -1e-8}, "--adam_epsilon"), ({"weight_decay": -0.1}, "--weight_decay"),
    ({"dataloader_num_workers": -1}, "--dataloader_num_workers"),
])
def test_bad_optimizer_and_loader_flags_are_named_before_any_work(tmp_path, overrides, flag):
    """AdamW refused these only once the Trainer was built (pretraining: after preparing the corpus), in words
    naming no flag ("Invalid beta parameter at index 0"); a negative worker count failed at the first step."""
    with pytest.raises(ValueError, match=flag):
        make_args(tmp_path, **overrides)


DDP_WORKER = """
import os, sys, json
from pathlib import Path
sys.path.insert(0, {tests!r})
import torch
from test_engine_audit import labelled_accuracy, unlabelled_first_batch
from test_engine import ToyModel, make_args
from minibert.engine import Trainer

data, hiding_collate, in_order = unlabelled_first_batch()
torch.manual_seed(0)
args = make_args(Path({tmp!r}), max_steps=2, logging_steps=1)
result = Trainer(ToyModel(dropout=0.0), args, data, hiding_collate, sampler=in_order(),
                 metrics_fn=labelled_accuracy).train()
"""


def test_a_process_whose_window_holds_no_loss_logs_with_the_others(tmp_path):
    """Two processes: rank 0's first batch has no labelled token, rank 1's has. Rank 0's window then held no
    loss and no accuracy, and the all-reduce of the two windows' means (lists of other lengths) aborted gloo."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER.format(tests=str(Path(__file__).parent), tmp=str(tmp_path / "ddp")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(port), str(script)]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "ddp" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2] and lines[0]["skipped_steps"] == 1
    assert all(0 <= r["accuracy"] <= 1 and r["loss"] > 0 for r in lines)  # rank 1's, then both ranks'


def test_a_resume_with_loader_workers_and_a_collate_on_the_global_rng_is_exact(tmp_path):
    """Fresh workers after a resume replayed the epoch's first draws of a collate_fn without the engine's
    generator (Hugging Face's DataCollatorForLanguageModeling): steps 4-6 drew other noise than the
    uninterrupted run's."""
    def run(directory, stop_at=None, resume=False):
        draws = {}

        def noisy(examples):  # torch's global RNG, and numpy's and Python's (a collate returning numpy arrays)
            return {**collate(examples), "noise": torch.rand(1) + float(np.random.rand()) + random.random()}

        class Record:
            def on_backward_end(self, trainer, batch):
                draws[trainer.state.global_step + 1] = float(batch["noise"])

            def on_step_end(self, trainer):
                if stop_at and trainer.state.global_step == stop_at:
                    trainer.should_stop = True

        torch.manual_seed(0)
        args = make_args(directory, max_steps=6, per_device_train_batch_size=8, dataloader_num_workers=1,
                         save_steps=100, logging_steps=1)
        Trainer(ToyModel(), args, toy_dataset(), noisy, callbacks=[Record()],
                loss_fn=lambda model, batch: (model(batch["input_ids"], batch["labels"]).loss, None)).train(
            resume_from_checkpoint="last" if resume else None)
        return draws

    full = run(tmp_path / "full")
    run(tmp_path / "cut", stop_at=3)
    resumed = run(tmp_path / "cut", resume=True)
    assert [resumed[step] for step in (4, 5, 6)] == [full[step] for step in (4, 5, 6)]


def strict_json_lines(path) -> list[dict]:
    """Parse JSON lines as jq or JavaScript would: a bare NaN or Infinity fails the test."""
    def refuse(name):
        pytest.fail(f"{name} written in {path}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def test_an_undefined_evaluation_measure_is_written_as_null_and_the_plot_skips_it(tmp_path):
    """A Pearson of constant predictions (NaN) was written as a bare NaN, which is not JSON: jq stopped at
    that line. It is null in metrics.jsonl (written at the evaluation and rewritten on resume), the run's
    history keeps the NaN, and the loss plot leaves the point out."""
    pytest.importorskip("matplotlib")
    values = iter([float("nan"), 0.5, float("inf"), 0.25])
    args = make_args(tmp_path, max_steps=8, eval_steps=2, save_steps=4, logging_steps=2, plot_loss=True)
    result = Trainer(ToyModel(), args, toy_dataset(), collate,
                     eval_fn=lambda m: {"loss": next(values), "pearson": 0.1}).train()
    evaluations = [r for r in strict_json_lines(tmp_path / "run" / "metrics.jsonl") if "eval_loss" in r]
    assert [r["eval_loss"] for r in evaluations] == [None, 0.5, None, 0.25]
    assert any(isinstance(r.get("eval_loss"), float) and np.isnan(r["eval_loss"]) for r in result.history)
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    # the checkpoint's trainer_state.json (for reading; the resume reads the .pt) is strict JSON too
    state = json.loads((tmp_path / "run" / "checkpoint-4" / "trainer_state.json").read_text(),
                       parse_constant=lambda name: pytest.fail(f"{name} in trainer_state.json"))
    assert state["history"][1]["eval_loss"] is None
    # a resume rewrites metrics.jsonl from the saved history (where the NaN is kept): still strict JSON
    values = iter([0.75, 0.5])
    args = make_args(tmp_path, max_steps=8, eval_steps=2, save_steps=4, logging_steps=2,
                     resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-4"))
    Trainer(ToyModel(), args, toy_dataset(), collate, eval_fn=lambda m: {"loss": next(values)}).train()
    evaluations = [r for r in strict_json_lines(tmp_path / "run" / "metrics.jsonl") if "eval_loss" in r]
    assert [r["eval_loss"] for r in evaluations] == [None, 0.5, 0.75, 0.5]

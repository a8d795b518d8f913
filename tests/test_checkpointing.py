"""Nothing lost: exact resume, rotation, and a save killed half-way never harms the last good checkpoint."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_engine import VOCAB, ToyModel, ToyOutput, collate, make_args, masking_collate, toy_dataset, weights
from torch import nn

from minibert.engine import Trainer
from minibert.engine.checkpointing import list_checkpoints
from minibert.finetune.swa import SWA
from minibert.finetune.unfreezing import GradualUnfreezing

TESTS = Path(__file__).parent


class Crash:
    """Raise in the middle of step `at + 1`, after checkpoint `at` or earlier was written."""

    def __init__(self, at: int):
        self.at = at

    def on_backward_end(self, trainer, batch):
        if trainer.state.global_step == self.at:
            raise KeyboardInterrupt("simulated crash")


def losses(history: list[dict]) -> list[tuple]:
    return [(r["step"], r["loss"], r["token_loss"], r["learning_rate"], r["grad_norm"]) for r in history]


def test_resume_is_exact(tmp_path):
    """Interrupted at step 6 (last checkpoint: 4) and resumed == uninterrupted, at every step up to 11:
    dropout, random masking, shuffling across an epoch boundary (8 batches per epoch) and the schedule."""
    args = dict(max_steps=11, save_steps=4, logging_steps=1, warmup_steps=3, weight_decay=0.01)
    torch.manual_seed(0)
    reference = ToyModel()
    expected = Trainer(reference, make_args(tmp_path / "a", **args), toy_dataset(), masking_collate).train()

    torch.manual_seed(0)
    crashed = Trainer(
        ToyModel(), make_args(tmp_path / "b", **args), toy_dataset(), masking_collate, callbacks=[Crash(6)]
    )
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    assert [p.name for p in list_checkpoints(tmp_path / "b" / "run")] == ["checkpoint-4"]

    torch.manual_seed(1234)  # a different model and RNG state: the checkpoint must restore both
    resumed_model = ToyModel()
    resumed = Trainer(
        resumed_model, make_args(tmp_path / "b", **args, resume_from_checkpoint="last"), toy_dataset(), masking_collate
    ).train()
    assert losses(resumed.history) == losses(expected.history)
    for name, value in weights(reference).items():
        torch.testing.assert_close(resumed_model.state_dict()[name], value, rtol=0, atol=0)
    lines = (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 11  # the lines of steps 5-6 written before the crash were not duplicated


def test_resume_inside_stochastic_weight_averaging_is_exact(tmp_path):
    """Interrupted after SWA took over the learning rate (at step 3; last checkpoint: 8) and resumed ==
    uninterrupted: the same losses and learning rates (SWALR's), weights, and average."""
    args = dict(max_steps=11, save_steps=4, logging_steps=1, warmup_steps=3)

    def swa():
        return SWA(start=0.3, swa_lr=0.05, anneal_steps=2)

    torch.manual_seed(0)
    reference, reference_swa = ToyModel(), swa()
    expected = Trainer(reference, make_args(tmp_path / "a", **args), toy_dataset(), masking_collate,
                       callbacks=[reference_swa]).train()
    torch.manual_seed(0)
    crashed = Trainer(ToyModel(), make_args(tmp_path / "b", **args), toy_dataset(), masking_collate,
                      callbacks=[swa(), Crash(9)])
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    assert (tmp_path / "b" / "run" / "checkpoint-8" / "swa_state.pt").is_file()

    torch.manual_seed(1234)
    resumed_model, resumed_swa = ToyModel(), swa()
    resumed = Trainer(resumed_model, make_args(tmp_path / "b", **args, resume_from_checkpoint="last"),
                      toy_dataset(), masking_collate, callbacks=[resumed_swa]).train()
    assert losses(resumed.history) == losses(expected.history)
    assert resumed_swa.averaged.n_averaged.item() == reference_swa.averaged.n_averaged.item() == 9  # steps 3-11
    for name, value in weights(reference).items():
        torch.testing.assert_close(resumed_model.state_dict()[name], value, rtol=0, atol=0)
    for name, value in reference_swa.averaged_module().state_dict().items():
        torch.testing.assert_close(resumed_swa.averaged_module().state_dict()[name], value, rtol=0, atol=0)


class ToyStack(nn.Module):
    """ToyModel with the shape gradual unfreezing thaws: embeddings, then layers, then a head."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.embeddings = nn.Embedding(VOCAB, dim)
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(2))
        self.head = nn.Linear(dim, VOCAB)

    def forward(self, input_ids, labels=None, attention_mask=None):
        h = self.embeddings(input_ids)
        for layer in self.layers:
            h = h + torch.tanh(layer(h))
        logits = self.head(h)  # (B, T, V)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return ToyOutput(loss=loss, logits=logits, token_loss=loss)


def test_resume_inside_gradual_unfreezing_is_exact(tmp_path):
    """Resumed from checkpoint 4, the run thaws what step 5 thawed before (stage 2: the head and the top two
    groups), not stage 0: the same losses as the uninterrupted run."""
    args = dict(max_steps=9, save_steps=4, logging_steps=1)

    def run(directory, crash=None, **more):
        torch.manual_seed(0)
        model = ToyStack()
        trainer = Trainer(model, make_args(directory, **args, **more), toy_dataset(), masking_collate)
        trainer.callbacks.append(GradualUnfreezing(model, steps_per_stage=2))  # after the optimizer, as finetune does
        if crash is not None:
            trainer.callbacks.append(crash)
        return trainer.train(), model

    expected, reference = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", Crash(5))
    resumed, model = run(tmp_path / "b", resume_from_checkpoint="last")
    assert losses(resumed.history) == losses(expected.history)
    for name, value in weights(reference).items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_a_resume_between_two_logged_records_logs_the_same_means(tmp_path):
    """Logging every 5 steps, checkpoint 4 is taken with steps 1-4 not yet logged: the resumed run's record at
    step 5 is the mean over steps 1-5, as the uninterrupted run's is, not over step 5 alone."""
    args = dict(max_steps=10, save_steps=4, logging_steps=5)
    torch.manual_seed(0)
    expected = Trainer(ToyModel(), make_args(tmp_path / "a", **args), toy_dataset(), masking_collate).train()
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        Trainer(ToyModel(), make_args(tmp_path / "b", **args), toy_dataset(), masking_collate,
                callbacks=[Crash(5)]).train()
    resumed = Trainer(ToyModel(), make_args(tmp_path / "b", **args, resume_from_checkpoint="last"), toy_dataset(),
                      masking_collate).train()
    assert [r["step"] for r in expected.history] == [5, 10]
    assert losses(resumed.history) == losses(expected.history)


def test_keeps_the_last_k_checkpoints_each_complete(tmp_path):
    args = make_args(tmp_path, max_steps=8, save_steps=2, save_total_limit=2)
    Trainer(ToyModel(), args, toy_dataset(), collate).train()
    kept = list_checkpoints(tmp_path / "run")
    assert [p.name for p in kept] == ["checkpoint-6", "checkpoint-8"]
    assert sorted(f.name for f in kept[-1].iterdir()) == [
        "model_state.pt",
        "optimizer.pt",
        "rng_state_0.pt",
        "trainer_state.json",
        "trainer_state.pt",
    ]


def test_bad_resume_paths_are_named(tmp_path):
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        Trainer(ToyModel(), make_args(tmp_path, resume_from_checkpoint="last"), toy_dataset(), collate).train()
    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(ValueError, match="not a complete training checkpoint"):
        Trainer(ToyModel(), make_args(tmp_path), toy_dataset(), collate).train(str(tmp_path / "checkpoint-3"))


KILLED_DURING_SAVE = """
import sys, time, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_engine import ToyModel, collate, make_args, toy_dataset
from minibert.engine import Trainer

real_save = torch.save

def stalling_save(obj, f, *args, **kwargs):
    if str(f).endswith("optimizer.pt") and "checkpoint-4" in str(f):
        with open(f, "wb") as half:
            half.write(b"half a file")
        print("SAVING", flush=True)
        time.sleep(120)
    return real_save(obj, f, *args, **kwargs)

torch.save = stalling_save
args = make_args(Path({tmp!r}), max_steps=6, save_steps=2, save_total_limit=1, logging_steps=1)
Trainer(ToyModel(), args, toy_dataset(), collate).train()
"""


def test_killing_during_a_save_keeps_the_last_good_checkpoint(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(KILLED_DURING_SAVE.format(tests=str(TESTS), tmp=str(tmp_path))))
    job = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == "SAVING"
    finally:
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2"]
    assert (run / ".tmp-checkpoint-4").is_dir()  # the half-written save, never taken for a checkpoint
    model = ToyModel()
    result = Trainer(
        model,
        make_args(
            tmp_path, max_steps=6, save_steps=2, save_total_limit=1, logging_steps=1, resume_from_checkpoint="last"
        ),
        toy_dataset(),
        collate,
    ).train()
    assert [r["step"] for r in result.history] == [1, 2, 3, 4, 5, 6]  # 1-2 from the checkpoint
    assert [p.name for p in run.iterdir() if "checkpoint" in p.name] == ["checkpoint-6"]


def test_resuming_from_an_older_checkpoint_sets_the_newer_ones_aside(tmp_path):
    """Redoing steps 3-6 from checkpoint-2: the first run's checkpoint-4/-6 were taken by "last" and by
    save_total_limit for the new run's newest, so the redone steps were silently thrown away."""
    from minibert.engine.checkpointing import resolve_checkpoint

    class Signs:  # marks each checkpoint with the run that wrote it
        def __init__(self, name):
            self.name = name

        def on_save(self, trainer, directory):
            (directory / "written_by").write_text(self.name)

    run = tmp_path / "run"
    first = make_args(tmp_path, max_steps=6, save_steps=2)
    Trainer(ToyModel(), first, toy_dataset(), collate, callbacks=[Signs("first")]).train()
    redo = make_args(tmp_path, max_steps=6, save_steps=2, save_total_limit=2,
                     resume_from_checkpoint=str(run / "checkpoint-2"))
    Trainer(ToyModel(), redo, toy_dataset(), collate, callbacks=[Signs("redo")]).train()
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-4", "checkpoint-6"]
    assert [(run / f"checkpoint-{s}" / "written_by").read_text() for s in (4, 6)] == ["redo", "redo"]
    assert [(run / f"abandoned-checkpoint-{s}" / "written_by").read_text() for s in (4, 6)] == ["first", "first"]
    assert resolve_checkpoint("last", run) == run / "checkpoint-6"


def test_a_resume_into_another_runs_directory_sets_its_checkpoints_aside(tmp_path):
    """Resuming run b's checkpoint-4 with --output_dir a, where run a saved checkpoints 4, 6 and 8: a's newer ones
    stayed "last" (save_total_limit 1 then deleted the resumed run's own checkpoint-6), and a's checkpoint-4 could
    be taken for this run's (its best, by load_best_model_at_end). All of them are set aside."""
    from minibert.engine.checkpointing import resolve_checkpoint

    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    Trainer(ToyModel(), make_args(tmp_path / "a", max_steps=8, save_steps=2), toy_dataset(), collate).train()
    Trainer(ToyModel(), make_args(tmp_path / "b", max_steps=6, save_steps=2), toy_dataset(), collate).train()
    assert [p.name for p in list_checkpoints(a)] == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]
    resumed = make_args(tmp_path / "a", max_steps=6, save_steps=2, save_total_limit=1,
                        resume_from_checkpoint=str(b / "checkpoint-4"))
    Trainer(ToyModel(), resumed, toy_dataset(), collate).train()
    assert resolve_checkpoint("last", a) == a / "checkpoint-6"
    assert sorted(p.name for p in a.iterdir() if p.name.startswith("abandoned")) == [
        "abandoned-checkpoint-4", "abandoned-checkpoint-6", "abandoned-checkpoint-8"]  # kept, out of the way
    # resumed in its own directory, only the newer ones are set aside, as before
    resumed = make_args(tmp_path / "b", max_steps=6, save_steps=2, resume_from_checkpoint=str(b / "checkpoint-4"))
    Trainer(ToyModel(), resumed, toy_dataset(), collate).train()
    assert sorted(p.name for p in b.iterdir() if p.name.startswith("abandoned")) == ["abandoned-checkpoint-6"]


def test_a_resume_through_a_link_to_its_own_checkpoint_sets_aside_only_the_newer_ones(tmp_path):
    """A link beside the run to its checkpoint-2 counted as another run's directory: every checkpoint of the
    run was set aside, the one resumed from too."""
    run = tmp_path / "run"
    Trainer(ToyModel(), make_args(tmp_path, max_steps=6, save_steps=2), toy_dataset(), collate).train()
    (tmp_path / "link").symlink_to(run / "checkpoint-2", target_is_directory=True)
    resumed = make_args(tmp_path, max_steps=6, save_steps=2, resume_from_checkpoint=str(tmp_path / "link"))
    Trainer(ToyModel(), resumed, toy_dataset(), collate).train()
    assert sorted(p.name for p in run.iterdir() if "checkpoint" in p.name) == [
        "abandoned-checkpoint-4", "abandoned-checkpoint-6", "checkpoint-2", "checkpoint-4", "checkpoint-6"]


def test_a_checkpoint_set_aside_for_its_successor_comes_back_if_the_save_died(tmp_path):
    from minibert.engine.checkpointing import resolve_checkpoint

    run = tmp_path / "run"
    Trainer(ToyModel(), make_args(tmp_path, max_steps=4, save_steps=2), toy_dataset(), collate).train()
    (run / "checkpoint-4").rename(run / ".replaced-checkpoint-4")  # killed between the two renames
    assert resolve_checkpoint("last", run) == run / "checkpoint-4"


def test_a_resume_with_other_data_or_optimizer_settings_is_refused(tmp_path):
    """The data position is batches done in the epoch: under another batch size or seed it points at
    other examples (16 of 64 seen twice, 16 never); another optimizer's state failed with a KeyError."""
    from minibert.finetune.prior_wd import PriorWD

    run = tmp_path / "run"
    Trainer(ToyModel(), make_args(tmp_path, max_steps=4, save_steps=2), toy_dataset(), collate).train()
    cases = [(dict(per_device_train_batch_size=4), "--per_device_train_batch_size: 8 then, 4 now"),
             (dict(seed=7), "--seed: 1 then, 7 now"),
             (dict(gradient_accumulation_steps=2), "--gradient_accumulation_steps: 1 then, 2 now")]
    for overrides, message in cases:
        args = make_args(tmp_path, max_steps=6, resume_from_checkpoint=str(run / "checkpoint-2"), **overrides)
        with pytest.raises(ValueError, match=message):
            Trainer(ToyModel(), args, toy_dataset(), collate).train()
    with pytest.raises(ValueError, match=r"the training examples .*: \[64\] then, \[40\] now"):
        args = make_args(tmp_path, max_steps=6, resume_from_checkpoint=str(run / "checkpoint-2"))
        Trainer(ToyModel(), args, toy_dataset()[:40], collate).train()
    model = ToyModel()
    wrapped = PriorWD(torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1))
    args = make_args(tmp_path, max_steps=6, resume_from_checkpoint=str(run / "checkpoint-2"))
    with pytest.raises(ValueError, match=r"the optimizer \(--optim, --prior_wd\): AdamW then, PriorWD\(AdamW\) now"):
        Trainer(model, args, toy_dataset(), collate, optimizer=wrapped).train()
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2", "checkpoint-4"]  # a refused resume moved nothing
    trainer = Trainer(ToyModel(), make_args(tmp_path, max_steps=6), toy_dataset(), collate)
    with pytest.raises(ValueError, match="the number of processes: 2 then, 1 now"):  # saved under torchrun
        trainer.check_resume_settings({"run_settings": {**trainer.run_settings(), "world_size": 2}}, run)


def test_a_resume_into_another_directory_finds_its_best_checkpoint_there(tmp_path):
    """The best checkpoint is named in the state; resumed into a new --output_dir it was looked for there
    (and reported as corrupt after all the training); the new directory did not exist either."""
    first = make_args(tmp_path / "a", max_steps=4, save_steps=2, eval_steps=2, metric_for_best_model="loss",
                      greater_is_better=False, load_best_model_at_end=True)
    def eval_fn(model):  # constant, so the first checkpoint stays the best
        return {"loss": 1.0}

    Trainer(ToyModel(), first, toy_dataset(), collate, eval_fn=eval_fn).train()
    again = make_args(tmp_path / "b" / "new", max_steps=6, save_steps=2, eval_steps=2, metric_for_best_model="loss",
                      greater_is_better=False, load_best_model_at_end=True,
                      resume_from_checkpoint=str(tmp_path / "a" / "run" / "checkpoint-4"))
    result = Trainer(ToyModel(), again, toy_dataset(), collate, eval_fn=eval_fn).train()
    assert result.best_checkpoint == str(tmp_path / "a" / "run" / "checkpoint-2")
    assert (tmp_path / "b" / "new" / "run" / "metrics.jsonl").is_file()


def test_a_directory_holding_a_saved_model_is_not_overwritten(tmp_path):
    from minibert.models.bert import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path / "run")
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"holds a saved model \(model.safetensors\)"):
        Trainer(ToyModel(), make_args(tmp_path, max_steps=2, save_steps=2), toy_dataset(), collate).train()
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before

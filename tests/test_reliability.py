"""Hostile-but-realistic input and faults (issue 11): nothing in a checkpoint is ever executed,
nothing on disk is lost, and every bad file or argument gets one clear error naming it."""

import json
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_engine import ToyModel, collate, make_args, masking_collate, toy_dataset, weights

from minibert.engine import Trainer, TrainingInterrupted
from minibert.engine.checkpointing import list_checkpoints, load_model_weights


class CreatesFile:
    """Unpickling this object creates `marker`: a stand-in for any code hidden in a pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


class RunsCommand(CreatesFile):
    """The same through os.system: torch names a blocked module in other words ("unsupported GLOBAL")."""

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def train_tiny(tmp_path, **overrides):
    args = make_args(tmp_path, **{"max_steps": 2, "save_steps": 2, **overrides})
    return Trainer(ToyModel(), args, toy_dataset(), collate).train()


@pytest.mark.parametrize("payload", [CreatesFile, RunsCommand])
@pytest.mark.parametrize("name", ["optimizer.pt", "trainer_state.pt", "rng_state_0.pt", "model_state.pt"])
def test_a_checkpoint_file_holding_code_is_refused_and_never_run(tmp_path, name, payload):
    train_tiny(tmp_path)
    marker = tmp_path / "ran"
    torch.save({"state": payload(marker)}, tmp_path / "unsafe.pt")
    torch.load(tmp_path / "unsafe.pt", weights_only=False)  # the payload is live: a plain load runs it
    assert marker.exists()
    marker.unlink()
    (tmp_path / "unsafe.pt").replace(tmp_path / "run" / "checkpoint-2" / name)
    with pytest.raises(ValueError, match=rf"checkpoint-2/{name} holds objects other than tensors.*refusing"):
        train_tiny(tmp_path, max_steps=4, resume_from_checkpoint="last")
    assert not marker.exists()


# -- set-up as the README says ---------------------------------------------------------------------
ROOT = Path(__file__).parent.parent


def test_the_readme_install_is_what_ci_runs_and_brings_every_test_dependency():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def names(extra: str) -> set[str]:
        found = set()
        for requirement in extras[extra]:
            name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
            included = re.fullmatch(r"minibert\[(.*)\]", requirement)
            found |= set().union(*(names(e) for e in included.group(1).split(","))) if included else {name}
        return found

    # every package a test imports or skips without: the suite must run whole after the README's install
    imported = {"pytest", "ruff", "transformers", "jieba", "opencc", "matplotlib", "seqeval", "torchmetrics"}
    assert imported <= names("dev")
    readme = (ROOT / "README.md").read_text()
    commands = ["pip install torch==2.13.0", 'pip install -e ".[dev]"', "ruff check .", "python -m pytest"]
    for command in commands:
        assert re.search(rf"^{re.escape(command)}\s", readme, re.M), command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    run = [line.replace(" --quiet", "") for line in ci if line.startswith(("pip ", "ruff ", "python "))]
    assert run == commands


# -- nothing on disk is lost -----------------------------------------------------------------------
def test_checkpoint_files_and_directories_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    train_tiny(tmp_path)
    run, temp = tmp_path / "run", tmp_path / "run" / ".tmp-checkpoint-2"
    files = sorted(str(temp / f.name) for f in (run / "checkpoint-2").iterdir())
    assert len(files) == 5 and set(files) <= set(synced)  # each file, under its temporary name
    assert synced[-2:] == [str(temp), str(run)]  # the directory before the rename, its parent after


def test_save_pretrained_files_follow_the_umask(tmp_path):
    from minibert.models.bert import BertConfig, BertModel

    previous = os.umask(0o027)
    try:
        BertModel(BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=16)).save_pretrained(tmp_path / "model")
    finally:
        os.umask(previous)
    for name in ("config.json", "model.safetensors"):
        assert stat.S_IMODE((tmp_path / "model" / name).stat().st_mode) == 0o666 & ~0o027, name
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors"]


def test_a_moved_run_resumes_and_rotation_keeps_its_best_checkpoint(tmp_path):
    def run(directory, max_steps, scores, **overrides):
        args = make_args(directory, max_steps=max_steps, eval_steps=2, save_steps=2, save_total_limit=1,
                         metric_for_best_model="accuracy", load_best_model_at_end=True, **overrides)
        scores = iter(scores)
        return Trainer(ToyModel(), args, toy_dataset(), collate, eval_fn=lambda model: {"accuracy": next(scores)})

    run(tmp_path / "a", 6, [0.5, 0.9, 0.7]).train()  # best: checkpoint-4
    shutil.move(tmp_path / "a", tmp_path / "b")
    state = json.loads((tmp_path / "b" / "run" / "checkpoint-6" / "trainer_state.json").read_text())
    assert (state["best_checkpoint"], state["last_checkpoint"]) == ("checkpoint-4", "checkpoint-6")

    resumed = run(tmp_path / "b", 10, [0.6, 0.65], resume_from_checkpoint="last")
    result = resumed.train()
    run_dir = tmp_path / "b" / "run"
    assert [p.name for p in list_checkpoints(run_dir)] == ["checkpoint-4", "checkpoint-10"]
    assert result.best_checkpoint == str(run_dir / "checkpoint-4") and result.best_metric == 0.9
    best = ToyModel()
    load_model_weights(best, run_dir / "checkpoint-4")
    torch.testing.assert_close(resumed.model.out.weight, best.out.weight, rtol=0, atol=0)  # loaded at the end


def test_the_best_checkpoint_knows_it_is_the_best(tmp_path):
    """Resumed from the best checkpoint itself, the run still protects and reloads it."""
    scores = iter([0.5, 0.9, 0.1, 0.1, 0.1, 0.1])
    args = dict(max_steps=4, eval_steps=2, save_steps=2, save_total_limit=1, metric_for_best_model="accuracy")
    eval_fn = lambda model: {"accuracy": next(scores)}
    Trainer(ToyModel(), make_args(tmp_path, **args), toy_dataset(), collate, eval_fn=eval_fn).train()
    state = json.loads((tmp_path / "run" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["best_checkpoint"] == "checkpoint-4"
    args.update(max_steps=8, resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-4"))
    result = Trainer(ToyModel(), make_args(tmp_path, **args), toy_dataset(), collate, eval_fn=eval_fn).train()
    assert result.best_checkpoint == str(tmp_path / "run" / "checkpoint-4")
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["checkpoint-4", "checkpoint-8"]


class SendsSignal:
    def __init__(self, signal_number: int, at: int):
        self.signal_number, self.at = signal_number, at

    def on_backward_end(self, trainer, batch):  # in the middle of step `at`
        if trainer.state.global_step + 1 == self.at:
            os.kill(os.getpid(), self.signal_number)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_the_step_then_stops_and_resume_is_exact(tmp_path, signal_number):
    args = dict(max_steps=6, save_steps=100, logging_steps=1)
    torch.manual_seed(0)
    reference = ToyModel()
    Trainer(reference, make_args(tmp_path / "a", **args), toy_dataset(), masking_collate).train()

    before = signal.getsignal(signal_number)
    torch.manual_seed(0)
    stopped = Trainer(ToyModel(), make_args(tmp_path / "b", **args), toy_dataset(), masking_collate,
                      callbacks=[SendsSignal(signal_number, at=3)])
    with pytest.raises(TrainingInterrupted, match=r"stopped after step 3.*checkpoint-3.*--resume_from_checkpoint last"):
        stopped.train()
    assert signal.getsignal(signal_number) is before  # the handler lives only as long as train()
    assert [p.name for p in list_checkpoints(tmp_path / "b" / "run")] == ["checkpoint-3"]

    torch.manual_seed(1234)
    resumed = ToyModel()
    resume_args = make_args(tmp_path / "b", **args, resume_from_checkpoint="last")
    Trainer(resumed, resume_args, toy_dataset(), masking_collate).train()
    for name, value in weights(reference).items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)


STOPPED_FROM_OUTSIDE = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_engine import ToyModel, collate, make_args, masking_collate, toy_dataset, weights
from minibert.engine import Trainer, TrainingInterrupted

class WaitsForTheSignalAtStep2:
    def on_step_end(self, trainer):
        print("STEP", trainer.state.global_step, flush=True)
        deadline = time.monotonic() + 60
        while trainer.state.global_step == 2 and trainer.stop_signal is None and time.monotonic() < deadline:
            time.sleep(0.01)

try:
    args = make_args(Path({tmp!r}), max_steps=100)
    Trainer(ToyModel(), args, toy_dataset(), collate, callbacks=[WaitsForTheSignalAtStep2()]).train()
except TrainingInterrupted as stop:
    print(stop, file=sys.stderr)
    sys.exit(stop.exit_code)
"""


def test_sigterm_from_outside_saves_the_step_and_exits_143(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(STOPPED_FROM_OUTSIDE.format(tests=str(Path(__file__).parent), tmp=str(tmp_path)))
    job = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().split() == ["STEP", "1"]
        assert job.stdout.readline().split() == ["STEP", "2"]
        job.send_signal(signal.SIGTERM)  # the job waits for it at the end of step 2
        _, stderr = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode == 143
    assert "SIGTERM received: training stopped after step 2" in stderr and "--resume_from_checkpoint last" in stderr
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["checkpoint-2"]


# -- corrupt or mismatched state gets one clear message --------------------------------------------
def truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


@pytest.mark.parametrize("name", ["optimizer.pt", "trainer_state.pt"])
def test_a_truncated_checkpoint_file_is_named_with_the_checkpoint_to_resume_from_instead(tmp_path, name):
    train_tiny(tmp_path, max_steps=4)
    truncate(tmp_path / "run" / "checkpoint-4" / name)
    earlier = tmp_path / "run" / "checkpoint-2"
    message = rf"checkpoint-4/{name} is truncated or corrupt.*--resume_from_checkpoint {re.escape(str(earlier))}$"
    with pytest.raises(ValueError, match=message):
        train_tiny(tmp_path, max_steps=6, resume_from_checkpoint="last")
    truncate(earlier / name)
    with pytest.raises(ValueError, match=rf"checkpoint-2/{name} is truncated.*no earlier complete checkpoint"):
        train_tiny(tmp_path, max_steps=6, resume_from_checkpoint=str(earlier))


@pytest.mark.parametrize(("name", "value", "missing"), [("trainer_state.pt", {}, "scheduler, scaler, trainer"),
                                                      ("optimizer.pt", [1], "state, param_groups"),
                                                      ("rng_state_0.pt", {"python": 1}, "numpy, torch")])
def test_a_replaced_training_state_file_is_named_with_the_checkpoint_to_resume_from(tmp_path, name, value, missing):
    """A file that loads but is not what the trainer wrote there failed with a bare KeyError ('trainer',
    'python') or AttributeError, naming neither the file nor the earlier checkpoint."""
    train_tiny(tmp_path, max_steps=4)
    torch.save(value, tmp_path / "run" / "checkpoint-4" / name)
    earlier = tmp_path / "run" / "checkpoint-2"
    message = (rf"checkpoint-4/{name} does not hold what the trainer writes there .*missing: {missing}\): it was "
               rf"replaced or damaged; resume from the previous checkpoint instead: --resume_from_checkpoint "
               rf"{re.escape(str(earlier))}$")
    with pytest.raises(ValueError, match=message):
        train_tiny(tmp_path, max_steps=6, resume_from_checkpoint="last")


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt"])
def test_a_checkpoint_written_short_is_never_kept(tmp_path, name):
    """A full disk can cut a file short without an error from the writer: the save reads back."""

    class WritesShort:
        def on_save(self, trainer, directory):
            if name == "model.safetensors":  # as pretraining saves the model in Hugging Face format
                save_file(trainer.model.state_dict(), directory / name)
            if trainer.state.global_step == 4:
                truncate(directory / name)

    args = make_args(tmp_path, max_steps=4, save_steps=2)
    with pytest.raises(OSError, match=rf"\.tmp-checkpoint-4/{name} was written but cannot be read back"):
        Trainer(ToyModel(), args, toy_dataset(), collate, callbacks=[WritesShort()]).train()
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["checkpoint-2"]


# -- library: files -------------------------------------------------------------------------------
def tiny_bert_dir(tmp_path) -> Path:
    from minibert.models.bert import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    BertForMaskedLM(config).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("model.safetensors", truncate, "model.safetensors is truncated or corrupt"),
        ("config.json", lambda f: f.write_text('{"model_type": "bert",'), "config.json is not valid JSON"),
        ("config.json", lambda f: f.write_text('["bert"]'), "config.json holds a JSON list, not an object"),
    ],
)
def test_a_damaged_model_file_is_named(tmp_path, name, damage, message):
    from minibert import load_pretrained

    model_dir = tiny_bert_dir(tmp_path)
    damage(model_dir / name)
    with pytest.raises(ValueError, match=message):
        load_pretrained(model_dir)


def test_a_pickled_weights_file_holding_code_is_refused(tmp_path):
    from minibert import load_pretrained

    model_dir = tiny_bert_dir(tmp_path)
    (model_dir / "model.safetensors").unlink()
    weights_with_code = {"bert.embeddings.word_embeddings.weight": CreatesFile(tmp_path / "ran")}
    torch.save(weights_with_code, model_dir / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin holds objects other than tensors"):
        load_pretrained(model_dir)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("text", ['{"version": "1.0", "model": ', "[]", "\xff\xfe not json"])
def test_a_damaged_tokenizer_json_is_named(tmp_path, text):
    from minibert.tokenizer import load_tokenizer

    (tmp_path / "tokenizer.json").write_text(text, encoding="latin-1")
    with pytest.raises(ValueError, match="tokenizer.json is not a readable tokenizer"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(ValueError, match="tokenizer_config.json is not valid JSON"):
        load_tokenizer(tmp_path)


# -- library: calls -------------------------------------------------------------------------------
def tiny(family: str):
    from minibert.models.bart import BartConfig, BartForConditionalGeneration
    from minibert.models.bert import BertConfig, BertModel
    from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

    if family == "bert":
        return BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=16, max_position_embeddings=16)).eval()
    if family == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=30, n_positions=16, n_embd=8, n_layer=1, n_head=2)).eval()
    return BartForConditionalGeneration(BartConfig(
        vocab_size=30, d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=16)).eval()


@pytest.mark.parametrize("family", ["bert", "gpt2", "bart"])
@pytest.mark.parametrize(
    "input_ids, error, message",
    [
        (torch.tensor([[3, -7, 4]]), ValueError, r"input_ids holds id -7, outside 0..29 \(vocab_size is 30\)"),
        (torch.tensor([[3, 30]]), ValueError, r"input_ids holds id 30, outside 0..29"),
        (torch.zeros(2, 0, dtype=torch.long), ValueError, r"input_ids has shape \(2, 0\): no tokens"),
        ([[3, 4, 5]], TypeError, r"input_ids must be a torch.Tensor.*got a list.*torch.tensor"),
        (torch.tensor([[3.0, 4.0]]), TypeError, r"input_ids must hold integer ids.*\.long\(\)"),
    ],
)
def test_bad_input_ids_are_named(family, input_ids, error, message):
    model = tiny(family)
    with pytest.raises(error, match=message):
        model(input_ids)
    if family != "bert":  # generate checks its prompt too (its forward passes inside skip the checks)
        with pytest.raises(error, match=message):
            model.generate(input_ids, max_new_tokens=2)


def test_bert_segment_and_position_ids_outside_their_tables_are_named():
    model, ids = tiny("bert"), torch.tensor([[3, 4, 5]])
    with pytest.raises(ValueError, match=r"token_type_ids holds id 2, outside 0..1 \(type_vocab_size is 2\); "
                                         r"this model takes 2 segments"):
        model(ids, token_type_ids=torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match=r"token_type_ids holds id -1"):
        model(ids, token_type_ids=torch.tensor([[0, -1, 1]]))
    with pytest.raises(ValueError, match=r"position_ids holds id 16, outside 0..15 \(max_position_embeddings is 16"):
        model(ids, position_ids=torch.tensor([[0, 1, 16]]))


def test_gpt2_position_and_segment_ids_outside_their_tables_are_named():
    model, ids = tiny("gpt2"), torch.tensor([[3, 4, 5]])
    with pytest.raises(ValueError, match=r"position_ids holds id 16, outside 0..15 \(n_positions is 16\)"):
        model(ids, position_ids=torch.tensor([[14, 15, 16]]))
    with pytest.raises(ValueError, match=r"token_type_ids holds id 31"):
        model(ids, token_type_ids=torch.tensor([[0, 0, 31]]))


def test_an_unknown_keyword_to_load_pretrained_is_named_with_the_accepted_ones(tmp_path):
    from minibert import load_pretrained
    from minibert.models.bert import BertForMaskedLM

    model_dir = tiny_bert_dir(tmp_path)
    with pytest.raises(TypeError, match=r"load_pretrained got an unknown keyword 'attn_implementaion'; did you mean "
                                        r"'attn_implementation'\? BertConfig accepts \[.*'hidden_size'"):
        load_pretrained(model_dir, attn_implementaion="eager")
    with pytest.raises(TypeError, match=r"BertForMaskedLM.from_pretrained got an unknown keyword 'hidden_dropout'"):
        BertForMaskedLM.from_pretrained(model_dir, hidden_dropout=0.0)
    assert load_pretrained(model_dir, attn_implementation="eager").config.attn_implementation == "eager"


def test_a_step_with_no_labelled_token_is_skipped_not_stopped(tmp_path, caplog):
    """Every label -100 (a short MLM row can mask nothing) made a loss of 0 / 0: with one batch a step,
    training stopped blaming the learning rate. The step is skipped: no update, the schedule unspent."""
    calls = {"n": 0}

    def some_unlabelled(examples: list[dict]) -> dict:
        batch = collate(examples)
        calls["n"] += 1
        if calls["n"] in (2, 3):  # steps 2 and 3
            batch["labels"] = torch.full_like(batch["labels"], -100)
        return batch

    seen = []

    class Record:
        def on_step_end(self, trainer):
            seen.append((weights(trainer.model), trainer.scheduler.get_last_lr()[0]))

    args = make_args(tmp_path, max_steps=5, logging_steps=1, lr_scheduler_type="linear", dataloader_num_workers=0)
    with caplog.at_level("WARNING", logger="minibert.engine.trainer"):
        result = Trainer(ToyModel(dropout=0.0), args, toy_dataset(), some_unlabelled, callbacks=[Record()]).train()
    assert result.global_step == 5
    for step in (2, 3):  # weights and learning rate as after the step before
        for name, value in seen[step - 1][0].items():
            torch.testing.assert_close(value, seen[step - 2][0][name], rtol=0, atol=0)
        assert seen[step - 1][1] == seen[step - 2][1]
    assert any(not torch.equal(seen[3][0][n], seen[2][0][n]) for n in seen[3][0])  # step 4 learns again
    assert [r.get("skipped_steps", 0.0) for r in result.history] == [0.0, 1.0, 1.0, 0.0, 0.0]
    assert "step 2: a batch of this step has no labelled token" in caplog.text


def test_a_step_with_one_unlabelled_micro_batch_is_skipped_for_a_model_without_token_weights(tmp_path, caplog):
    """A model whose loss is not one mean over tokens (BertForPreTraining's MLM + SOP: no loss_items) takes
    1 / accumulation per micro-batch, so one micro-batch with nothing masked made the step's loss NaN: the
    run stopped, blaming the learning rate, although the step as a whole had labelled tokens."""
    calls = {"n": 0}

    def third_unlabelled(examples: list[dict]) -> dict:
        batch = collate(examples)
        calls["n"] += 1
        if calls["n"] == 3:  # step 2's first micro-batch
            batch["labels"] = torch.full_like(batch["labels"], -100)
        return batch

    args = make_args(tmp_path, max_steps=3, logging_steps=1, gradient_accumulation_steps=2)
    with caplog.at_level("WARNING", logger="minibert.engine.trainer"):
        result = Trainer(ToyModel(dropout=0.0), args, toy_dataset(), third_unlabelled).train()
    assert result.global_step == 3
    assert [r.get("skipped_steps", 0.0) for r in result.history] == [0.0, 1.0, 0.0]
    assert "step 2: a batch of this step has no labelled token" in caplog.text


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_a_sigterm_outside_the_training_steps_stops_with_a_message(monkeypatch, capsys, command):
    """Outside the steps (data preparation, the last evaluation and saves) SIGTERM ended the process with
    no word (143, the output directory looking finished when it was not), and Ctrl-C gave a traceback."""
    import pretrain
    import train

    module = {"train": train, "pretrain": pretrain}[command]

    def finishing(*args, **kwargs):  # the run, signalled while it writes its final files
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(module, "finetune" if command == "train" else "run_pretraining", finishing)
    before = signal.getsignal(signal.SIGTERM)
    assert module.main(["--output_dir", "unused"]) == 143
    err = capsys.readouterr().err
    assert f"{command}.py: SIGTERM received outside the training steps: stopped at once, and the run is " \
           "unfinished" in err and "--resume_from_checkpoint last" in err
    assert "else with --overwrite_output_dir" in err  # a run stopped before its first checkpoint is started again
    assert signal.getsignal(signal.SIGTERM) == before  # the command's handler is gone with it


def test_the_pretraining_summary_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """It holds the only copy of the held-out metrics before training; written in place, a kill or a full disk
    mid-write left a broken file, and the resume's advice (delete it) lost those numbers."""
    from minibert.pretraining import recorded_eval_start, write_summary

    write_summary(tmp_path, {"eval_start": {"mlm_accuracy": 0.1}})
    real = Path.write_text

    def half(self, text, *args, **kwargs):
        real(self, text[:5], *args, **kwargs)
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_text", half)
    with pytest.raises(OSError):
        write_summary(tmp_path, {"eval_start": {"mlm_accuracy": 0.2}, "steps": 1600})
    monkeypatch.undo()
    assert recorded_eval_start([tmp_path]) == {"mlm_accuracy": 0.1}
    assert [p.name for p in tmp_path.iterdir()] == ["pretraining_summary.json"]


def test_a_kill_while_rotating_or_writing_leaves_nothing_behind_for_good(tmp_path, monkeypatch):
    """A checkpoint deleted half-way by rotation was no longer listed, so nothing ever removed the rest; a
    copy of a file a kill interrupted (.NAME.<hex>.tmp) stayed in the output directory for good."""
    from minibert.checkpoint import write_json
    from minibert.engine import checkpointing

    train_tiny(tmp_path, max_steps=4, save_steps=2)  # checkpoint-2 and checkpoint-4
    run_dir = tmp_path / "run"
    real = shutil.rmtree

    def killed_half_way(path, *args, **kwargs):
        next(p for p in Path(path).iterdir() if p.is_file()).unlink()
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(checkpointing.shutil, "rmtree", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        checkpointing.rotate_checkpoints(run_dir, keep=1)
    monkeypatch.setattr(checkpointing.shutil, "rmtree", real)
    checkpointing.rotate_checkpoints(run_dir, keep=1)  # the next save's rotation
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == ["checkpoint-4"]

    stale = run_dir / ".config.json.0123abcd.tmp"
    stale.write_text('{"half": ')
    write_json(run_dir / "config.json", {"whole": True})
    assert not stale.exists() and json.loads((run_dir / "config.json").read_text()) == {"whole": True}


def test_a_checkpoint_whose_optimizer_trained_other_parameters_is_named(tmp_path):
    """A 4-head pretraining run checkpointed before the neighbour-heads fix (block 0's query and key frozen,
    so not in the optimizer) met torch's bare "doesn't match the size of optimizer's group" on resume."""
    train_tiny(tmp_path, max_steps=2, save_steps=2)
    model = ToyModel()
    model.norm.requires_grad_(False)  # trained by the checkpoint's run, frozen in this one
    args = make_args(tmp_path, max_steps=4, save_steps=2, resume_from_checkpoint="last")
    with pytest.raises(ValueError, match=r"checkpoint-2's optimizer holds \[\d+, \d+\] parameters per group and "
                                         r"this run trains \[\d+, \d+\].*--init_from"):
        Trainer(model, args, toy_dataset(), collate).train()


def test_a_start_measure_that_was_not_finite_comes_back_as_a_number(tmp_path):
    """The summary writes it as null (strict JSON); read back as None, the resumed run's last summary line
    (f"{start[key]:.4f}") stopped with a TypeError after all its training."""
    from minibert.pretraining import recorded_eval_start, write_summary

    write_summary(tmp_path, {"eval_start": {"loss": math.inf, "mlm_accuracy": 0.1}})
    start = recorded_eval_start([tmp_path])
    assert math.isnan(start["loss"]) and start["mlm_accuracy"] == 0.1
    assert f"{start['loss']:.4f}" == "nan"

"""A newcomer's walk, fourth: a failed bench child shows its stderr, --text_column and --multitask's label column
are named as what the user passed, lr_scheduler_kwargs values are checked, and a gradual-unfreezing run too short
to thaw anything says so."""

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_train import checkpoint, rows, write_jsonl  # noqa: F401 (checkpoint: a fixture)

import train
from minibert.data.corpus import iter_records
from minibert.engine.arguments import TrainingArguments
from minibert.engine.schedules import get_scheduler
from minibert.finetune.unfreezing import GradualUnfreezing
from minibert.models.bert import BertConfig, BertForSequenceClassification

ROOT = Path(__file__).parent.parent


def test_a_failed_bench_child_shows_its_command_and_stderr(monkeypatch, tmp_path):
    """Run with capture_output and check=True, a failing child showed only "exit status 1"."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # it imports run_child from bench/_child.py
    spec = importlib.util.spec_from_file_location("bench_efficient_finetuning",
                                                  ROOT / "bench" / "bench_efficient_finetuning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    failed = "Traceback (most recent call last):\n  ...\nValueError: no checkpoint in nowhere\n"
    monkeypatch.setattr(subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 1, "", failed))
    monkeypatch.setattr(sys, "argv", ["bench_efficient_finetuning.py", "--models", "nowhere",
                                      "--output", str(tmp_path / "out.json")])
    with pytest.raises(SystemExit, match=r"(?s)exit status 1.*--time nowhere.*ValueError: no checkpoint in nowhere"):
        module.main()


def test_a_text_column_passed_but_absent_is_named_with_a_column_to_pass(tmp_path):
    """It said "pass --text_column with the field holding the text" to a user who had passed it."""
    jsonl = tmp_path / "genre.jsonl"
    jsonl.write_text('{"text": "To be", "label": 1, "play": "Hamlet"}\n')
    with pytest.raises(ValueError, match=r"^--text_column sentence: .*genre\.jsonl:1 has no string `sentence` field "
                                         r"\(its fields: text, label, play\); pass --text_column text$"):
        list(iter_records(jsonl, "sentence"))
    table = tmp_path / "genre.csv"
    table.write_text("line,play\nTo be,Hamlet\n")
    with pytest.raises(ValueError, match=r"^--text_column sentence: .*genre\.csv has no `sentence` column \(its "
                                         r"columns: line, play\); pass --text_column with the one that holds the text"):
        list(iter_records(table, "sentence"))
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"line": "To be"}\n')
    with pytest.raises(ValueError, match="JSON lines need"):  # --text_column not passed: the default's message
        list(iter_records(lines, "text"))


def test_a_multitask_label_column_missing_names_the_specs_third_field(checkpoint, tmp_path, capsys):  # noqa: F811
    """--multitask takes a task's label column from NAME=TRAIN,VALIDATION,LABEL_COLUMN, yet the error said to pass
    --label_column."""
    data = write_jsonl(tmp_path / "train.jsonl", rows(8, "single"))
    common = ["--model_name_or_path", str(checkpoint), "--text_column", "sentence", "--max_seq_length", "16",
              "--max_steps", "1", "--device", "cpu", "--output_dir", str(tmp_path / "out")]
    assert train.main(common + ["--multitask", f"genre={data},{data},nocol"]) == 2
    err = capsys.readouterr().err
    assert "no column ['nocol']" in err
    assert "Name the right one with the third field of --multitask genre=TRAIN,VALIDATION,LABEL_COLUMN" in err
    assert "--label_column" not in err  # the spec named the column: --label_column would not change it
    assert train.main(common + ["--multitask", f"genre={data},{data}", "--label_column", "nocol"]) == 2
    assert "(or --label_column, for every task without one)" in capsys.readouterr().err


@pytest.mark.parametrize("name, kwargs, message", [
    ("polynomial", {"power": "x"}, r"power='x' does not fit --lr_scheduler_type polynomial: power must be a number "
                                   r"> 0.*write the number unquoted"),
    ("polynomial", {"lr_end": -1e-5}, "lr_end must be a number >= 0"),
    ("cosine_with_restarts", {"num_cycles": -1}, "num_cycles must be a whole number >= 1"),
    ("cosine_with_restarts", {"num_cycles": 1.5}, "num_cycles must be a whole number >= 1"),
    ("cosine", {"num_cycles": 0}, "num_cycles must be a number > 0"),
    ("cosine", [0.5], "must be a JSON object"),
])
def test_lr_scheduler_kwargs_values_are_checked_before_any_model_loads(name, kwargs, message):
    """A string power crashed in schedules.py after the model loaded; num_cycles -1 trained without a word."""
    with pytest.raises(ValueError, match=message):
        TrainingArguments(lr_scheduler_type=name, lr_scheduler_kwargs=kwargs)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    if isinstance(kwargs, dict):
        with pytest.raises(ValueError, match=message):  # a Python caller of get_scheduler too
            get_scheduler(name, optimizer, 0, 10, **kwargs)
    TrainingArguments(lr_scheduler_type="cosine_with_restarts", lr_scheduler_kwargs={"num_cycles": 3})


def test_gradual_unfreezing_warns_when_the_run_ends_before_the_first_thaw(caplog):
    """--max_steps 10 under a 34-step stage trained the head alone, without a word."""
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3)
    model = BertForSequenceClassification(config)

    def begin(total_steps: int, stage_steps: int) -> str:
        caplog.clear()
        unfreezing = GradualUnfreezing(model, stage_steps)
        with caplog.at_level(logging.WARNING, logger="minibert.finetune.unfreezing"):
            unfreezing.on_train_begin(SimpleNamespace(state=SimpleNamespace(global_step=0), total_steps=total_steps))
        return caplog.text

    warned = begin(10, 34)
    assert "the run's 10 steps end before the first layer group thaws (a stage is 34 steps" in warned
    assert "--unfreeze_stage_steps 2 to thaw all 3 groups" in warned
    assert begin(35, 34) == ""

"""Options of the bench/ scripts that CI never runs: bench_finetune_methods.py --work_dir holds every
path the script writes (runs/ untouched; the default keeps the README's runs/ layout), and a --quick
run says beside each goal that the goal is judged on the full run. The training is stubbed out."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SMOKE_NOTE = "(smoke size: the goal is judged on the full run)"


def load(name: str):
    if str(ROOT / "bench") not in sys.path:  # scripts import their neighbours (_child, _clock): `python bench/x.py` can
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_methods(monkeypatch, cwd: Path, argv: list[str]) -> list[list[str]]:
    """main() with train.py / pretrain.py replaced by stubs that write what the script reads back."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # it imports its neighbour's run_child
    module = load("bench_finetune_methods")
    commands = []

    def fake_run(command, **kwargs):
        commands.append([str(c) for c in command])
        out = Path(command[command.index("--output_dir") + 1])
        out.mkdir(parents=True, exist_ok=True)
        if "train.py" in command:
            metrics = {"accuracy": 0.5, "genre_accuracy": 0.5}
            (out / "eval_results.json").write_text(json.dumps({"metrics": metrics}))
        else:
            (out / "config.json").write_text("{}")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(module.subprocess, "run", fake_run)
    monkeypatch.setattr(module, "base_fingerprint", lambda: "abc")
    monkeypatch.setattr(module, "trainable_parameters", lambda flags: 0)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["bench_finetune_methods.py", "--methods", "full", "further_pretraining",
                                      "--seeds", "1", *argv])
    module.main()
    return commands


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_finetune_methods_work_dir_holds_every_path(monkeypatch, tmp_path, capsys):
    (tmp_path / "cwd").mkdir()
    work = tmp_path / "work"
    commands = run_methods(monkeypatch, tmp_path / "cwd", ["--work_dir", str(work)])
    assert files_under(tmp_path / "cwd") == set()  # nothing under runs/ (or anywhere else) in the cwd
    assert {c[c.index("--output_dir") + 1] for c in commands} == {str(work / "pretrain-sop-tapt"), str(
        work / "methods" / "full-1"), str(work / "methods" / "further_pretraining-1")}
    further = next(c for c in commands if "train.py" in c and "further_pretraining-1" in " ".join(c))
    assert further[further.index("--model_name_or_path") + 1] == str(work / "pretrain-sop-tapt")
    assert set(json.loads((work / "bench_finetune_methods.json").read_text())) == {"full", "further_pretraining"}
    assert str(work / "pretrain-sop-tapt") in capsys.readouterr().out


def test_finetune_methods_default_paths_are_the_readme_ones(monkeypatch, tmp_path):
    commands = run_methods(monkeypatch, tmp_path, [])
    assert {c[c.index("--output_dir") + 1] for c in commands} == {
        "runs/pretrain-sop-tapt", "runs/methods/full-1", "runs/methods/further_pretraining-1"}
    assert "runs/bench_finetune_methods.json" in files_under(tmp_path)
    rerun = run_methods(monkeypatch, tmp_path, [])  # the same base checkpoint: every result is reused
    assert rerun == []


def test_a_failed_train_run_shows_its_command_and_stderr(monkeypatch, tmp_path):
    """Its train.py runs were captured with check=True: a failing one showed only "exit status 1"."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    module = load("bench_finetune_methods")
    failed = "Traceback (most recent call last):\n  ...\nValueError: --adapter_size must be positive\n"
    monkeypatch.setattr(module.subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 1, "", failed))
    monkeypatch.setattr(module, "base_fingerprint", lambda: "abc")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench_finetune_methods.py", "--methods", "adapters", "--seeds", "1"])
    with pytest.raises(SystemExit, match=r"(?s)^bench_finetune_methods\.py: a child run failed \(exit status 1\): "
                                         r"\S+ train\.py --seed 1 .*--adapter_size 16.*ValueError: --adapter_size"):
        module.main()


def test_quick_runs_say_the_goal_is_the_full_runs(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_sbert_wk.py", "--quick"])
    load("bench_sbert_wk").main()
    goals = [line for line in capsys.readouterr().out.splitlines() if "goal" in line]
    assert len(goals) == 1 and "(goal >= 10x)" in goals[0] and goals[0].endswith(SMOKE_NOTE)
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # bench_gpu imports its neighbour
    assert load("bench_gpu").main(["--quick", "--parts", "gpt2", "--steps", "1"]) == 0
    goals = [line for line in capsys.readouterr().out.splitlines() if "goal" in line]
    assert len(goals) == 1 and goals[0].endswith("(goal >= 45%) " + SMOKE_NOTE)


@pytest.fixture
def torch_threads():
    import torch

    threads = torch.get_num_threads()
    yield torch
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["bench_bert", "bench_generate", "bench_masking", "bench_pretrain_step",
                                  "bench_sbert_wk", "bench_efficient_finetuning"])
def test_every_timing_script_takes_the_shared_clock_options(name, monkeypatch, capsys):
    """Each script that times CPU work offers --clock and --threads from bench/_clock.py, one rule for all."""
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as done:
        load(name).main()
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert "--clock {cpu,wall}" in out and "on one thread unless --threads says otherwise" in out
    assert "--threads THREADS" in out


def test_cpu_clock_runs_on_one_thread_unless_told_and_warns_when_told_more(torch_threads, capsys):
    """CPU time adds up every thread's time (spin-waits too), so --clock cpu alone means one thread; an explicit
    --threads 2 is obeyed with a warning; --threads 0 is refused; the wall clock leaves torch's choice alone."""
    import argparse
    import time

    load("bench_masking")  # puts bench/ on sys.path
    from _clock import add_clock_options, apply_clock_options

    def parse(argv, **defaults):
        parser = argparse.ArgumentParser()
        add_clock_options(parser, **defaults)
        return parser.parse_args(argv)

    torch = torch_threads
    torch.set_num_threads(2)
    assert apply_clock_options(parse([])) is time.perf_counter and torch.get_num_threads() == 2
    assert apply_clock_options(parse(["--clock", "cpu"])) is time.process_time and torch.get_num_threads() == 1
    assert capsys.readouterr().err == ""
    apply_clock_options(parse(["--clock", "cpu", "--threads", "2"]))
    assert torch.get_num_threads() == 2 and "adds up every thread's CPU time" in capsys.readouterr().err
    assert apply_clock_options(parse([], clock="cpu", threads=1)) is time.process_time
    assert torch.get_num_threads() == 1
    with pytest.raises(SystemExit, match="--threads must be at least 1, got 0"):
        apply_clock_options(parse(["--threads", "0"]))


def test_efficient_finetuning_warns_of_threads_where_it_shows(monkeypatch, tmp_path, capsys, torch_threads):
    """Its timing runs in a child whose stderr is captured, so the parent says it (and leaves its threads alone)."""
    torch = torch_threads
    module = load("bench_efficient_finetuning")
    monkeypatch.setattr(module, "run_child", lambda command: (_ for _ in ()).throw(SystemExit("stop here")))
    threads = torch.get_num_threads()
    monkeypatch.setattr(sys, "argv", ["bench_efficient_finetuning.py", "--models", "nowhere", "--threads", "2",
                                      "--output", str(tmp_path / "out.json")])
    with pytest.raises(SystemExit, match="stop here"):
        module.main()
    assert "--clock cpu with 2 threads adds up every thread's CPU time" in capsys.readouterr().err
    assert torch.get_num_threads() == threads

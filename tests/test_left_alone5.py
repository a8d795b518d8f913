"""Behaviours earlier sessions noticed and left alone, fixed in session 21, each with a test that fails on the old
code: evaluate_generation decoded greedily a run trained with beam search unless told (every other setting came
from the run), a run on a busy CPU with several torch threads said nothing of why it crawled, and
bench_finetune_methods.py's failing train.py showed only "exit status 1" (tested in tests/test_bench_options.py
beside its other options)."""

import json
import logging

import torch
from test_engine import ToyModel, collate, make_args, toy_dataset
from test_train_seq2seq import checkpoints, run  # noqa: F401 (checkpoints is a fixture)

from minibert.engine import Trainer, trainer
from minibert.finetune import evaluate_generation
from minibert.finetune.evaluate_generation import evaluate_saved


def test_evaluate_generation_decodes_as_the_run_did_unless_told(checkpoints, tmp_path, capsys):  # noqa: F811
    """A run trained with --num_beams 2 and evaluated again with no flags gave its greedy numbers, so a user
    checking the run's eval_results.json saw other numbers from the same weights. Now the run's own --num_beams
    is the default, and --num_beams 1 still asks for greedy decoding."""
    run(checkpoints["bart"], tmp_path, "--num_beams", "2")
    out = tmp_path / "out"
    recorded = json.loads((out / "eval_results.json").read_text())
    assert recorded["generation"]["num_beams"] == 2
    again = evaluate_saved(out)
    assert again["num_beams"] == 2
    assert {k: round(again[k], 4) for k in ("chrf", "exact_match")} == \
        {k: round(recorded["metrics"][k], 4) for k in ("chrf", "exact_match")}
    assert evaluate_saved(out, num_beams=1)["num_beams"] == 1
    assert evaluate_generation.main([str(out)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["num_beams"] == 2


def test_a_run_on_a_busy_cpu_with_several_threads_is_told_to_use_one(monkeypatch, tmp_path, caplog):
    """torch's threads wait on each other when another process holds a core (the README's 20-step run: 29 s
    against 14 s with one thread); a user who missed the README's note saw only a slow run."""
    monkeypatch.setattr(trainer.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(trainer.os, "getloadavg", lambda: (3.0, 1.0, 1.0))
    monkeypatch.setattr(trainer.torch, "get_num_threads", lambda: 2)
    cpu = torch.device("cpu")
    assert "load average 3.0 on 2 cores" in trainer.crowded_cpu_hint(cpu)
    assert "Set OMP_NUM_THREADS=1" in trainer.crowded_cpu_hint(cpu)
    assert trainer.crowded_cpu_hint(torch.device("cuda")) is None  # the GPU does the work there
    with caplog.at_level(logging.WARNING, logger="minibert.engine.trainer"):
        Trainer(ToyModel(), make_args(tmp_path, max_steps=2), toy_dataset(16), collate).train()
    assert [r.getMessage() for r in caplog.records].count(trainer.crowded_cpu_hint(cpu)) == 1
    monkeypatch.setattr(trainer.os, "getloadavg", lambda: (1.5, 1.0, 1.0))  # a core to spare
    assert trainer.crowded_cpu_hint(cpu) is None
    monkeypatch.setattr(trainer.os, "getloadavg", lambda: (3.0, 1.0, 1.0))
    monkeypatch.setattr(trainer.torch, "get_num_threads", lambda: 1)  # OMP_NUM_THREADS=1 already
    assert trainer.crowded_cpu_hint(cpu) is None

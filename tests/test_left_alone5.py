"""Behaviours earlier sessions noticed and left alone, fixed in session 21, each with a test that fails on the old
code: evaluate_generation decoded greedily a run trained with beam search unless told (every other setting came
from the run), a run on a busy CPU with several torch threads said nothing of why it crawled, and
bench_finetune_methods.py's failing train.py showed only "exit status 1" (tested in tests/test_bench_options.py
beside its other options), and --disable_tqdm left the corpus preparation's progress bar on."""

import json
import logging
from pathlib import Path

import pytest
import torch
from test_engine import ToyModel, collate, make_args, toy_dataset
from test_pretrain import corpus, pretrain, tiny_config  # noqa: F401 (corpus and tiny_config are fixtures)
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
    against 14 s with one thread); a user who missed the README's note saw only a slow run. Other processes'
    share is sampled from /proc with this process's own time taken out (the review's case: a second run in
    one process, whose first run alone had raised the load average to the core count, was told of "another
    process")."""
    ticks = iter([])

    def sampled(others: float, own: float, cores: int = 2):
        """Two /proc readings 100 ticks per core apart: others and own in cores."""
        nonlocal ticks
        ticks = iter([(0, 0, 0), (round(100 * (others + own)), 100 * cores, round(100 * own))])

    monkeypatch.setattr(trainer, "_cpu_jiffies", lambda: next(ticks))
    monkeypatch.setattr(trainer.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(trainer.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(trainer.torch, "get_num_threads", lambda: 2)
    cpu = torch.device("cpu")
    sampled(others=1.0, own=0.0)
    hint = trainer.crowded_cpu_hint(cpu)
    assert "other processes keep 1.0 of the 2 cores busy" in hint and "Set OMP_NUM_THREADS=1" in hint
    sampled(others=0.2, own=1.8)  # this process's own work: no other process to blame
    assert trainer.crowded_cpu_hint(cpu) is None
    assert trainer.crowded_cpu_hint(torch.device("cuda")) is None  # the GPU does the work there
    sampled(others=1.0, own=0.0)
    with caplog.at_level(logging.WARNING, logger="minibert.engine.trainer"):
        Trainer(ToyModel(), make_args(tmp_path, max_steps=2), toy_dataset(16), collate).train()
    assert sum("other processes keep 1.0 of the 2 cores busy" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.setattr(trainer.os, "cpu_count", lambda: 16)
    sampled(others=1.0, own=0.0, cores=16)  # 2 threads and 1 busy core of 16: room for both
    assert trainer.crowded_cpu_hint(cpu) is None
    monkeypatch.setattr(trainer.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(trainer.torch, "get_num_threads", lambda: 1)  # OMP_NUM_THREADS=1 already
    assert trainer.crowded_cpu_hint(cpu) is None

    def unreadable():
        raise OSError("no /proc here")

    monkeypatch.setattr(trainer.torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(trainer, "_cpu_jiffies", unreadable)  # macOS, Windows: no advice, and no crash
    assert trainer.crowded_cpu_hint(cpu) is None


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="/proc is Linux's")
def test_the_cpu_reading_is_this_machines():
    """_cpu_jiffies reads /proc: busy <= total, and this process's own time grows as it works."""
    busy, total, mine = trainer._cpu_jiffies()
    assert 0 <= busy <= total and mine >= 0
    sum(i * i for i in range(2_000_000))
    assert trainer._cpu_jiffies()[2] > mine


def test_disable_tqdm_hides_the_corpus_preparations_bar_too(tmp_path, monkeypatch, corpus, tiny_config):  # noqa: F811
    """bench_transfer.py sets disable_tqdm, and still printed "preparing 1 corpus file(s): ...%" for each share
    of the corpus: the preparation's bar was always on. It now follows --disable_tqdm, as the training's does."""
    import minibert.pretraining as pretraining

    shown = []
    prepare_corpus = pretraining.prepare_corpus

    def watched(*args, progress=False, **kwargs):
        shown.append(progress)
        return prepare_corpus(*args, progress=progress, **kwargs)

    monkeypatch.setattr(pretraining, "prepare_corpus", watched)
    pretrain(tmp_path, corpus, tiny_config, objective="mlm", steps=1, disable_tqdm=True)
    pretrain(tmp_path / "again", corpus, tiny_config, objective="mlm", steps=1, disable_tqdm=False,
             data_cache_dir=str(tmp_path / "other-cache"))
    assert shown == [False, True]

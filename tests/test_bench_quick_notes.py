"""bench/ scripts whose quick run prints a figure the README quotes say beside it that the run is smoke-sized and
the README's figure comes from the full run; the full run prints its figures without the note. Sizes are cut
down (or the training stubbed) where the script allows, so that this stays a few seconds."""

import sys

import torch
from test_bench_options import load  # a bench/ script as a module

NOTE = "(smoke size: the README's figures are from the full run)"


def lines_with(text: str, out: str) -> list[str]:
    return [line for line in out.splitlines() if text in line]


def test_pretrain_step_ratios(monkeypatch, capsys):
    module = load("bench_pretrain_step")
    small = ["--batch_size", "1", "--seq_len", "8", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", ["bench_pretrain_step.py", "--quick", *small])
    module.main()
    ratios = lines_with(" / ", capsys.readouterr().out)  # the three ratio lines the README quotes
    assert len(ratios) == 3 and all(line.endswith(NOTE) for line in ratios)
    monkeypatch.setattr(module, "BASE", module.TINY)  # the full run's code path, on a tiny model
    monkeypatch.setattr(sys, "argv", ["bench_pretrain_step.py", "--steps", "1", *small])
    module.main()
    out = capsys.readouterr().out
    assert len(lines_with(" / ", out)) == 3 and "smoke" not in out


def test_bert_ratios(monkeypatch, capsys):
    module = load("bench_bert")
    batch = module.make_batch
    monkeypatch.setattr(module, "make_batch", lambda b, s, vocab: batch(2, 16, vocab))
    monkeypatch.setattr(sys, "argv", ["bench_bert.py", "--quick", "--threads", "1"])
    module.main()
    ratios = lines_with("(ratio ", capsys.readouterr().out)  # forward and training step
    assert len(ratios) == 2 and all(line.endswith(NOTE) for line in ratios)


def test_generate_table(monkeypatch, capsys):
    module = load("bench_generate")
    monkeypatch.setattr(sys, "argv", ["bench_generate.py", "--quick", "--families", "gpt2", "--settings",
                                      "greedy-b1", "--threads", "1"])
    module.main()
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("model "))
    assert out[header].endswith(" (smoke size: tiny models; the README's GPT-2 124M and BART-base figures are from "
                                "the full run)")
    assert "x  yes" in out[header + 1]  # the row right under it: the figure the note stands beside


def tiny_batches(count: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (count, 4, 16), generator=g)
    return [{"input_ids": i, "attention_mask": torch.ones_like(i), "token_type_ids": torch.zeros_like(i),
             "labels": i.masked_fill(torch.rand(i.shape, generator=g) > 0.4, -100),
             "next_sentence_label": torch.tensor([0, 1, 0, 1])} for i in ids], 100


def test_default_step_figures(monkeypatch, capsys):
    module = load("bench_default_step")
    monkeypatch.setattr(module, "batches", tiny_batches)  # not the corpus and a trained tokenizer
    monkeypatch.setattr(module, "matmul_flops_per_second", lambda: 1e9)
    module.main(["--quick"])
    out = capsys.readouterr().out
    figures = lines_with(" of plain", out) + lines_with("GFLOP/s", out)
    assert len(figures) == 5 and all(line.endswith(NOTE) for line in figures)
    module.main(["--steps", "1"])
    out = capsys.readouterr().out
    assert len(lines_with(" of plain", out) + lines_with("GFLOP/s", out)) == 5 and "smoke" not in out


def test_transfer_accuracies(monkeypatch, tmp_path, capsys):
    module = load("bench_transfer")
    stats = {"examples": 10, "passes": 1.0, "eval_end": {"mlm_accuracy": 0.1, "sop_accuracy": 0.5}}
    monkeypatch.setattr(module, "pretrain", lambda *args: stats)  # the pipeline is tests/test_bench_transfer.py's
    monkeypatch.setattr(module, "fine_tune", lambda *args: 0.4)
    monkeypatch.setattr(module, "plot", lambda *args: False)
    assert module.main(["--quick", "--output_dir", str(tmp_path / "quick")]) == 0
    out = capsys.readouterr().out
    figures = lines_with(": accuracy ", out) + lines_with("mean +- std", out)  # progress lines, the table's header
    assert len(figures) == 3 and all(line.endswith(NOTE) for line in figures)
    assert module.main(["--fractions", "1.0", "--seeds", "1", "--output_dir", str(tmp_path / "full")]) == 0
    out = capsys.readouterr().out
    assert len(lines_with(": accuracy ", out)) == 1 and "smoke" not in out

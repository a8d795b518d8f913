"""bench/bench_gpu.py --quick: every part (BERT MLM step beside Hugging Face, GPT-2 training step,
batch-1 decoding with both caches beside Hugging Face's generate) runs on the CPU with tiny models;
on a GPU the same script prints the figures of issue 13."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_quick_gpu_bench_runs_every_part_on_the_cpu(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # as when run as a script: it imports its neighbour
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "1. BERT-tiny MLM training step" in out and "ratio minibert / HF sdpa" in out
    assert "2. GPT-2 tiny causal-LM training step" in out
    assert out.count("same tokens") == 3 and "NOT THE SAME" not in out  # HF, dynamic, static
    assert "MFU n/a (no peak known)" in out  # no peak is guessed for a CPU
    assert module.training_flops(n=10, layers=2, seq_len=8, width=4, tokens=3) == (60 + 12 * 2 * 8 * 4) * 3

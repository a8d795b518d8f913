"""bench/bench_transfer.py --quick: the data-scale experiment's whole pipeline (pretrain on shares
of A, fine-tune each and random weights on B over seeds, table, JSON and plot) on a tiny model."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_quick_transfer_run_writes_table_json_and_plot(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_transfer", ROOT / "bench" / "bench_transfer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--output_dir", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "transfer.json").read_text())
    assert [r["fraction"] for r in record["pretrained"]] == [0.1, 1.0]
    small, full = record["pretrained"]
    assert small["training_examples"] < full["training_examples"]  # a tenth of A is a tenth of the examples
    for row in [*record["pretrained"], record["random"]]:
        assert len(row["accuracies"]) == 2 and all(0.0 <= a <= 1.0 for a in row["accuracies"])
    assert 0.3 < record["majority"] < 0.5
    # every fraction shares the full run's tokenizer, so only the encoder's data differs
    vocab = (tmp_path / "pretrain-100" / "vocab.txt").read_text()
    assert (tmp_path / "pretrain-10" / "vocab.txt").read_text() == vocab
    assert (tmp_path / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "random weights" in out and "majority class" in out and "pretrained on 10% of A" in out

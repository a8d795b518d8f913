"""Issue 12's reading goal, held: one forward of BERT-MLM (and of every family) runs code in at most 5
project files, counted as bench/reading_cost.py counts them (every Python call, under sys.settrace)."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("transformers")
ROOT = Path(__file__).parent.parent


def load_bench():
    spec = importlib.util.spec_from_file_location("reading_cost", ROOT / "bench" / "reading_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_forward_of_each_family_reads_at_most_five_project_files():
    rows = {name: (ours, hf) for name, ours, hf in load_bench().measure()}
    assert set(rows) == {"BERT-MLM", "RoBERTa-MLM", "GPT-2 LM", "BART seq2seq"}
    bert, hf_bert = rows["BERT-MLM"]
    # the count sees what runs: the family file, the shared blocks, the loss (and only project files)
    assert {"minibert/models/bert.py", "minibert/nn/attention.py", "minibert/nn/feed_forward.py",
            "minibert/nn/losses.py"} <= set(bert)
    assert "masked_lm" in bert["minibert/models/bert.py"]
    assert all(path.startswith("transformers/") for path in hf_bert)
    for name, (ours, hf) in rows.items():
        assert len(ours) <= 5, (name, sorted(ours))
        assert sum(map(len, ours.values())) < sum(map(len, hf.values())), name

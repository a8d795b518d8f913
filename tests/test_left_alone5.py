"""Behaviours earlier sessions noticed and left alone, fixed in session 21, each with a test that fails on the old
code: evaluate_generation decoded greedily a run trained with beam search unless told (every other setting came
from the run), and bench_finetune_methods.py's failing train.py showed only "exit status 1" (tested in
tests/test_bench_options.py beside its other options)."""

import json

from test_train_seq2seq import checkpoints, run  # noqa: F401 (checkpoints is a fixture)

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

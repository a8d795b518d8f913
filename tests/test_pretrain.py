"""pretrain.py and minibert.pretraining: every objective end to end on a tiny model, the Hugging
Face output, resuming, continuing from a checkpoint, two-phase length, and bad input."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

import minibert
from minibert.data import build_objective, read_records
from minibert.engine import TrainingArguments
from minibert.models.bert import BertConfig
from minibert.pretraining import PretrainingOptions, build_model, format_summary, run_pretraining
from minibert.tokenizer import train_tokenizer

ROOT = Path(__file__).parent.parent
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "n_embd": 32,
    "n_layer": 1,
    "n_head": 2,
    "n_inner": 64,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Ten documents of the shipped Shakespeare, as JSON lines."""
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    path.write_text("".join(json.dumps({"text": r["text"][:3000]}) + "\n" for r in read_records("shakespeare")[:10]))
    return path


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "config.json"
    path.write_text(json.dumps(TINY))
    return path


def pretrain(tmp_path, corpus, tiny_config, objective="sop", steps=3, **overrides):
    training = {
        "output_dir": str(tmp_path / "run"),
        "max_steps": steps,
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "save_steps": 2,
        "learning_rate": 1e-3,
        "device": "cpu",
        "plot_loss": False,
    }
    options = {
        "objective": objective,
        "corpus": [str(corpus)],
        "config_file": str(tiny_config),
        "vocab_size": 300,
        "max_seq_length": 32,
        "validation_share": 0.2,
        "max_eval_examples": 8,
    }
    for key, value in overrides.items():
        (training if key in TrainingArguments.__dataclass_fields__ else options)[key] = value
    return run_pretraining(PretrainingOptions(**options), TrainingArguments(**training))


@pytest.mark.parametrize("objective", ["mlm", "wwm", "span", "nsp", "sop", "bart", "clm", "electra"])
def test_every_objective_trains_and_saves_a_loadable_model(tmp_path, corpus, tiny_config, objective):
    result = pretrain(tmp_path, corpus, tiny_config, objective)
    out = tmp_path / "run"
    assert result.train.global_step == 3 and all(
        torch.isfinite(torch.tensor(r["loss"])) for r in result.train.history if "loss" in r
    )
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in out.iterdir()
    }
    assert (out / "checkpoint-2" / "model.safetensors").is_file()  # each checkpoint is a model too
    model = minibert.load_pretrained(out) if objective not in ("bart", "clm") else None
    tokenizer = minibert.load_tokenizer(out)
    text = "To be, or not to be"
    ids = tokenizer(text)["input_ids"][0].tolist()
    if objective == "clm":  # a prompt for GPT-2 ends where its text ends, not with the </s> between documents
        assert ids == tokenizer.encode(text)
    else:  # BERT's and BART's tokenizers frame each text
        ends = (tokenizer.sep_token_id, tokenizer.eos_token_id)
        assert len(ids) == len(tokenizer.encode(text)) + 2 and ids[-1] in ends
    if objective == "electra":  # the discriminator, saved as a plain BERT encoder
        assert type(model).__name__ == "BertModel"
    assert result.eval_end and "loss" in result.eval_end
    assert "saved to" in format_summary(result)


def test_every_seed_is_evaluated_on_the_same_held_out_examples(tmp_path, corpus, tiny_config, monkeypatch):
    import minibert.pretraining as pretraining

    seen = []
    make_eval_fn = pretraining.make_eval_fn
    monkeypatch.setattr(pretraining, "make_eval_fn", lambda objective, examples, *a: seen.append(examples)
                        or make_eval_fn(objective, examples, *a))
    for seed in (1, 2):
        pretrain(tmp_path / str(seed), corpus, tiny_config, "sop", seed=seed, max_eval_examples=1000)
    assert len(seen) == 2 and len(seen[0]) > 8
    def plain(examples):
        return [{k: torch.as_tensor(v).tolist() for k, v in example.items()} for example in examples]

    assert plain(seen[0]) == plain(seen[1])


def test_output_loads_in_transformers(tmp_path, corpus, tiny_config):
    transformers = pytest.importorskip("transformers")
    pretrain(tmp_path, corpus, tiny_config, "sop")
    out = tmp_path / "run"
    theirs = transformers.BertForPreTraining.from_pretrained(out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ours = minibert.load_pretrained(out)
    batch = tokenizer(["Now is the winter of our discontent."], return_tensors="pt")
    with torch.no_grad():
        expected = theirs(**batch).prediction_logits
        got = ours(**batch).prediction_logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_resume_last_and_continue_from_a_checkpoint(tmp_path, corpus, tiny_config):
    first = pretrain(tmp_path, corpus, tiny_config, "mlm", steps=4, save_steps=2)
    resumed = pretrain(tmp_path, corpus, tiny_config, "mlm", steps=6, save_steps=2, resume_from_checkpoint="last")
    assert [r["step"] for r in resumed.train.history if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert resumed.train.history[:4] == [r for r in first.train.history if "loss" in r][:4]
    assert f"resumed from {tmp_path / 'run' / 'checkpoint-4'}" in format_summary(resumed).splitlines()[0]
    assert "resumed from" not in format_summary(first)
    done = pretrain(tmp_path, corpus, tiny_config, "mlm", steps=6, save_steps=2, resume_from_checkpoint="last")
    assert "no step left to run" in format_summary(done) and " 0 tokens/s" not in format_summary(done)
    further = pretrain(tmp_path / "b", corpus, tiny_config, "wwm", steps=2, init_from=str(tmp_path / "run"))
    assert further.eval_start["loss"] < resumed.eval_start.get("loss", float("inf")) or further.eval_start
    # continuing with a tokenizer that is not the checkpoint's (other ids, more of them) is refused
    train_tokenizer(["the king is dead"] * 5, kind="bytelevel_bpe", vocab_size=300,
                    min_frequency=1).save_pretrained(tmp_path / "bpe")
    code, err = cli("--objective", "mlm", "--corpus", str(corpus), "--init_from", str(tmp_path / "run"),
                    "--tokenizer", str(tmp_path / "bpe"), "--output_dir", str(tmp_path / "c"))
    assert code == 1 and "it is not this model's tokenizer" in err


def test_two_phase_sequence_length(tmp_path, corpus, tiny_config):
    result = pretrain(
        tmp_path, corpus, tiny_config, "mlm", steps=10, max_seq_length=16, max_seq_length_phase2=48, phase2_ratio=0.2
    )
    phases = [r["phase"] for r in result.train.history if "loss" in r]
    assert phases == [0] * 8 + [1] * 2


def cli(*args) -> tuple[int, str]:
    """Run pretrain.py's main() in this process: (exit code, stderr)."""
    import importlib.util
    import io
    from contextlib import redirect_stderr

    spec = importlib.util.spec_from_file_location("pretrain_cli", ROOT / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    err = io.StringIO()
    with redirect_stderr(err):
        try:
            code = module.main([str(a) for a in args])  # paths too
        except SystemExit as exit_:  # argparse errors
            code = exit_.code
    return code, err.getvalue()


def test_cli_bad_input_is_named(tmp_path, corpus, tiny_config):
    code, err = cli("--objective", "xlnet")
    assert code == 2 and "invalid choice: 'xlnet'" in err and "electra" in err
    code, err = cli("--no_such_flag")
    assert code == 2 and "unrecognized arguments: --no_such_flag" in err
    code, err = cli("--corpus", str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "o"))
    assert code == 1 and "missing.txt does not exist" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    code, err = cli("--corpus", str(empty), "--output_dir", str(tmp_path / "o"))
    assert code == 1 and "is empty" in err
    code, err = cli("--init_from", str(tmp_path), "--output_dir", str(tmp_path / "o"))
    assert code == 1 and "no config.json" in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_objective_must_fit_the_checkpoint_family(tmp_path, corpus, tiny_config):
    from minibert.models.bert import BertConfig, BertForMaskedLM

    BertForMaskedLM(
        BertConfig(
            vocab_size=50,
            **{
                k: v
                for k, v in TINY.items()
                if k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
            },
        )
    ).save_pretrained(tmp_path)
    code, err = cli("--objective", "clm", "--init_from", str(tmp_path), "--output_dir", str(tmp_path / "o"))
    assert code == 1 and "trains a gpt model but" in err and "objectives that fit it: mlm, wwm, span, nsp, sop" in err


def test_refuses_another_runs_directory(tmp_path, corpus, tiny_config):
    pretrain(tmp_path, corpus, tiny_config, "mlm", steps=2)
    weights = (tmp_path / "run" / "model.safetensors").read_bytes()
    code, err = cli("--corpus", str(corpus), "--config_file", str(tiny_config), "--output_dir", str(tmp_path / "run"))
    assert code == 1 and "already holds a finished training run" in err and "--resume_from_checkpoint" not in err
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == weights


def test_same_command_same_seed_same_tokenizer_and_losses(tmp_path, corpus, tiny_config):
    """Two runs of the same command: the trained tokenizer and every logged loss are identical, so
    experiments compare (tokenizers' WordPiece trainer alone is not reproducible, tokenizer.py)."""
    # each run its own data cache: the second must train its tokenizer again, not reuse the first's
    first = pretrain(tmp_path / "a", corpus, tiny_config, "sop", steps=4, data_cache_dir=str(tmp_path / "a" / "cache"))
    second = pretrain(tmp_path / "b", corpus, tiny_config, "sop", steps=4, data_cache_dir=str(tmp_path / "b" / "cache"))
    assert (tmp_path / "a" / "run" / "vocab.txt").read_text() == (tmp_path / "b" / "run" / "vocab.txt").read_text()
    losses = [[r["loss"] for r in result.train.history if "loss" in r] for result in (first, second)]
    assert len(losses[0]) == 4 and losses[0] == losses[1]
    assert first.eval_end == second.eval_end


def test_held_out_works_passes_and_warnings(tmp_path, tiny_config, caplog):
    plays = tmp_path / "plays.jsonl"
    rows = [{"title": f"Play {p}", "text": r["text"][:1500]} for p, r in enumerate(read_records("shakespeare")[:12])]
    plays.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with caplog.at_level("WARNING"):
        result = pretrain(tmp_path, plays, tiny_config, "mlm", steps=40, validation_share=0.25,
                          per_device_train_batch_size=32)
    assert len(result.held_out_works) == 3 and all(w.startswith("Play ") for w in result.held_out_works)
    assert result.passes > 3 and "passes over the" in caplog.text and "use more text" in caplog.text
    assert "masked tokens" in result.eval_warning  # eight held-out examples mean little: said, not hidden
    summary = json.loads((tmp_path / "run" / "pretraining_summary.json").read_text())
    assert summary["held_out_works"] == result.held_out_works and summary["passes_over_corpus"] == result.passes
    # every setting the run used, defaults included
    assert summary["arguments"]["pretraining"]["objective"] == "mlm"
    assert summary["arguments"]["pretraining"]["validation_share"] == 0.25
    assert summary["arguments"]["training"]["max_steps"] == 40
    assert summary["arguments"]["training"]["per_device_train_batch_size"] == 32
    text = format_summary(result)
    assert "passes over them" in text and "WARNING: held-out set too small" in text and "Play " in text
    half = pretrain(tmp_path / "half", plays, tiny_config, "mlm", steps=2, validation_share=0.25, corpus_fraction=0.5)
    assert half.num_examples < result.num_examples and half.held_out_works == result.held_out_works
    with pytest.raises(ValueError, match="corpus_fraction"):
        PretrainingOptions(corpus_fraction=0.0)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory`, by relative path: equal snapshots mean nothing was written."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_an_output_dir_that_is_contains_or_sits_inside_an_input_is_refused(tmp_path, corpus, tiny_config):
    pretrain(tmp_path, corpus, tiny_config, "mlm", steps=2)
    run, source = tmp_path / "run", tmp_path / "run" / "checkpoint-2"
    before = snapshot(run)
    common = ("--objective", "mlm", "--corpus", str(corpus), "--max_steps", "1", "--device", "cpu")
    cases = [
        (("--init_from", str(source), "--output_dir", str(source)), "is the --init_from directory"),
        (("--init_from", str(source), "--output_dir", str(source / "more")), "sits inside the --init_from"),
        (("--init_from", str(source), "--output_dir", str(run), "--overwrite_output_dir"), "contains the --init_from"),
        (("--tokenizer", str(source), "--config_file", str(tiny_config), "--output_dir", str(source)),
         "is the --tokenizer directory"),
    ]
    for flags, message in cases:
        code, err = cli(*common, *flags)
        assert code == 1 and message in err and "pass an --output_dir" in err, err
    assert snapshot(run) == before


def test_an_output_dir_that_holds_the_config_file_is_refused(tmp_path, corpus, tiny_config):
    """The run would replace the user's config.json: refused with this reason, not as a directory
    holding a model (whose advice, --overwrite_output_dir, would replace it), and even with that flag."""
    mine = tmp_path / "myconfig"
    mine.mkdir()
    shutil.copy(tiny_config, mine / "config.json")
    before = snapshot(mine)
    for overwrite in ([], ["--overwrite_output_dir"]):
        code, err = cli("--objective", "mlm", "--max_steps", "1", "--vocab_size", "300", "--max_seq_length", "32",
                        "--device", "cpu", "--plot_loss", "false", "--corpus", str(corpus), "--config_file",
                        str(mine / "config.json"), "--output_dir", str(mine), *overwrite)
        assert code == 1 and "contains the --config_file file" in err and "does not hold it" in err, err
    assert snapshot(mine) == before


def test_an_output_dir_that_is_or_holds_the_corpus_is_refused(tmp_path, corpus, tiny_config):
    """Even with --overwrite_output_dir: a run written into its corpus directory becomes corpus (the
    next run, the printed resume command included, reads its metrics.jsonl as text)."""
    texts = tmp_path / "texts"
    texts.mkdir()
    shutil.copy(corpus, texts / "small.jsonl")
    before = snapshot(texts)
    common = ("--objective", "mlm", "--max_steps", "1", "--vocab_size", "300", "--max_seq_length", "32",
              "--device", "cpu", "--plot_loss", "false", "--config_file", str(tiny_config), "--overwrite_output_dir")
    cases = [
        (("--corpus", str(texts), "--output_dir", str(texts)), "is the --corpus directory"),
        (("--corpus", str(corpus), str(texts / "small.jsonl"), "--output_dir", str(texts)), "contains the --corpus"),
    ]
    for flags, message in cases:
        code, err = cli(*common, *flags)
        assert code == 1 and message in err and "pass an --output_dir" in err, err
    assert snapshot(texts) == before
    from minibert.data.corpus import SHIPPED
    from minibert.pretraining import check_inputs_kept

    # a shipped corpus's name is checked as the file it stands for
    with pytest.raises(ValueError, match="contains the --corpus"):
        check_inputs_kept(PretrainingOptions(corpus=["shakespeare"]), SHIPPED["shakespeare"].parent)
    # a corpus file is checked as itself: an output_dir beside it (corpus.txt, runs/x) is fine
    check_inputs_kept(PretrainingOptions(corpus=[str(texts / "small.jsonl")]), texts / "runs" / "x")


def test_a_resume_keeps_the_start_metrics_the_run_recorded(tmp_path, corpus, tiny_config):
    first = pretrain(tmp_path, corpus, tiny_config, "mlm", steps=4, save_steps=2)
    summary_file = tmp_path / "run" / "pretraining_summary.json"
    assert first.eval_start and json.loads(summary_file.read_text())["eval_start"] == first.eval_start
    resumed = pretrain(tmp_path, corpus, tiny_config, "mlm", steps=6, save_steps=2, resume_from_checkpoint="last")
    summary = json.loads(summary_file.read_text())
    assert resumed.eval_start == summary["eval_start"] == first.eval_start
    assert summary["global_step"] == 6 and summary["eval_end"] == resumed.eval_end
    summary_file.write_text("{not json")
    with pytest.raises(ValueError, match="pretraining_summary.json is not a JSON object; restore it, or delete"):
        pretrain(tmp_path, corpus, tiny_config, "mlm", steps=8, save_steps=2, resume_from_checkpoint="last")
    assert summary_file.read_text() == "{not json"


def test_a_resume_from_another_runs_checkpoint_uses_the_tokenizer_it_carries(tmp_path, corpus, tiny_config):
    pretrain(tmp_path / "a", corpus, tiny_config, "mlm", steps=4, save_steps=2)
    vocab = (tmp_path / "a" / "run" / "vocab.txt").read_text()
    # vocab_size differs from run a's: a tokenizer trained here would give the loaded weights other ids
    resumed = pretrain(tmp_path / "b", corpus, tiny_config, "mlm", steps=4, save_steps=2, vocab_size=200,
                       resume_from_checkpoint=str(tmp_path / "a" / "run" / "checkpoint-2"))
    assert [r["step"] for r in resumed.train.history if "loss" in r] == [1, 2, 3, 4]  # steps 1-2: run a's
    assert (tmp_path / "b" / "run" / "vocab.txt").read_text() == vocab
    assert (tmp_path / "b" / "run" / "checkpoint-4" / "vocab.txt").read_text() == vocab
    (tmp_path / "a" / "run" / "checkpoint-4" / "vocab.txt").unlink()
    (tmp_path / "a" / "run" / "checkpoint-4" / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="checkpoint-4, which holds no tokenizer files; pass --tokenizer"):
        pretrain(tmp_path / "c", corpus, tiny_config, "mlm", steps=6,
                 resume_from_checkpoint=str(tmp_path / "a" / "run" / "checkpoint-4"))


def test_bad_arguments_are_refused_before_any_tokenizer_is_trained(tmp_path, corpus, tiny_config, monkeypatch):
    import minibert.pretraining

    def no_training(*args, **kwargs):
        raise AssertionError("a tokenizer was trained before the arguments were checked")

    monkeypatch.setattr(minibert.pretraining, "train_tokenizer", no_training)
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    locked = tmp_path / "locked"
    locked.mkdir()
    common = ("--corpus", str(corpus), "--config_file", str(tiny_config))
    cases = [
        (("--max_seq_length", "1"), "--max_seq_length 1 is too short: a sop example needs at least 8 tokens"),
        (("--max_seq_length", "-5"), "pass --max_seq_length 8 or more"),
        (("--max_seq_length_phase2", "0"), "--max_seq_length_phase2 0 is too short"),
        (("--per_device_train_batch_size", "0"), "--per_device_train_batch_size must be >= 1, got 0"),
        (("--objective", "bart", "--mlm_probability", "0.3"), "--mlm_probability applies to the masked-LM objectives"),
        (("--objective", "clm", "--mlm_probability", "0.3"), "clm masks nothing"),
        (("--phase2_batch_size", "4"), "--phase2_batch_size is the batch of the second phase"),
        (("--phase2_batch_size", "0"), "--phase2_batch_size must be >= 1"),
        (("--output_dir", str(a_file)), f"--output_dir {a_file} is a file; pass a directory path"),
        (("--output_dir", str(a_file / "run")), f"sits under {a_file}, which is a file"),
        (("--output_dir", str(locked / "run")), f"{locked} is not writable by this user"),
    ]
    real_access = os.access  # this test may run as root, whom os.access never refuses: stand in for the OS
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    for flags, message in cases:
        flags = flags if "--output_dir" in flags else (*flags, "--output_dir", str(tmp_path / "run"))
        code, err = cli(*common, *flags)
        assert code == 1 and message in err, err
    assert a_file.read_text() == "keep me" and not (tmp_path / "run").exists() and not any(locked.iterdir())


@pytest.mark.parametrize("objective", ["sop", "electra", "bart"])
def test_a_corpus_the_tokenizer_cannot_read_stops_before_training(tmp_path, tiny_config, objective):
    from minibert.tokenizer import train_tokenizer

    english = train_tokenizer(["the king is dead, long live the king.", "a horse, a horse, my kingdom for a horse!"],
                              "wordpiece", vocab_size=80, min_frequency=1)
    english.save_pretrained(tmp_path / "english")
    chinese = tmp_path / "poems.txt"
    chinese.write_text("\n\n".join("床前明月光，疑是地上霜。举头望明月，低头思故乡。" for _ in range(20)))
    code, err = cli("--objective", objective, "--corpus", str(chinese), "--tokenizer", str(tmp_path / "english"),
                    "--config_file", str(tiny_config), "--max_seq_length", "32", "--max_steps", "2",
                    "--output_dir", str(tmp_path / "run"))
    assert code == 1, err
    assert "100% of the training tokens are unknown to the tokenizer" in err and "leave out --tokenizer" in err
    assert not (tmp_path / "run" / "checkpoint-1").exists()


def test_resuming_with_another_model_says_in_one_line_what_differs(tmp_path, corpus, tiny_config):
    pretrain(tmp_path, corpus, tiny_config, "mlm", steps=2, save_steps=2)
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({**TINY, "hidden_size": 48, "intermediate_size": 96}))
    with pytest.raises(ValueError) as error:
        pretrain(tmp_path, corpus, wider, "mlm", steps=4, resume_from_checkpoint="last")
    message = str(error.value)
    assert "\n" not in message and "saved from a different model" in message
    assert re.search(r"weights have other shapes \(first: \S+ \(\d+, 32\) in the checkpoint, \(\d+, 48\) here\)",
                     message) and "model size" in message
    with pytest.raises(ValueError) as error:  # another objective (sop adds the sentence-order head): named first
        pretrain(tmp_path, corpus, tiny_config, "sop", steps=4, resume_from_checkpoint="last")
    message = str(error.value)
    assert "\n" not in message and "other settings (--objective: mlm then, sop now)" in message


def test_a_config_file_of_another_family_or_with_a_typo_is_refused_before_any_data_work(tmp_path, tiny_config):
    """A GPT-2 config.json given to a BERT objective would keep only vocab_size and silently train
    BERT-base; a misspelt key would be dropped the same way. The corpus here does not even exist:
    the config is refused first."""
    missing = str(tmp_path / "no-such-corpus.jsonl")
    gpt = tmp_path / "gpt.json"
    gpt.write_text(json.dumps({"model_type": "gpt2", "n_embd": 96, "n_layer": 2, "vocab_size": 500}))
    code, err = cli("--objective", "sop", "--corpus", missing, "--config_file", str(gpt), "--output_dir",
                    str(tmp_path / "a"))
    assert code == 1 and "--objective sop trains a bert model but --config_file" in err and "describes a 'gpt2'" in err
    assert "objectives that fit it: clm" in err
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({**json.loads(tiny_config.read_text()), "hidden_sizes": 256}))
    code, err = cli("--objective", "mlm", "--corpus", str(tmp_path / "x.jsonl"), "--config_file", str(typo),
                    "--output_dir", str(tmp_path / "b"), "--max_steps", "1")
    assert code == 1 and "'hidden_sizes' is no config field; did you mean 'hidden_size'?" in err
    code, err = cli("--objective", "mlm", "--corpus", missing, "--config_file", str(tmp_path), "--output_dir",
                    str(tmp_path / "c"))
    assert code == 1 and "is a directory; pass the config.json inside it" in err


def test_a_held_out_set_that_is_empty_or_cannot_make_pairs_is_said_so(tmp_path, tiny_config, corpus):
    """A corpus that is one work holds nothing out: said in the summary, not silently skipped. Held-out
    works that cannot make sentence pairs are named as such (the corpus's own message blamed all of it).
    SOP's held-out pairs are counted like NSP's (the check looked for NSP's label alone)."""
    from minibert.data import build_objective, load_corpus
    from minibert.pretraining import eval_warning

    one_work = tmp_path / "hamlet.jsonl"
    one_work.write_text("".join(json.dumps({"title": "Hamlet", "text": r["text"][:1500]}) + "\n"
                                for r in read_records("shakespeare")[:6]))
    result = pretrain(tmp_path / "one", one_work, tiny_config, "mlm", steps=1)
    assert result.held_out_works == [] and "nothing is held out: the corpus is one work" in result.eval_warning
    assert "WARNING: nothing is held out" in format_summary(result)

    five = tmp_path / "five.txt"  # five long documents: one held out, and nsp draws B from another document
    five.write_text("\n\n".join(r["text"][:2000] for r in read_records("shakespeare")[:5]))
    with pytest.raises(ValueError, match=r"the held-out works \(document \d\) cannot make nsp examples .*"
                                         r"--validation_share 0"):
        pretrain(tmp_path / "five", five, tiny_config, "nsp", steps=1)

    tokenizer = train_tokenizer([r["text"][:3000] for r in read_records("shakespeare")[:10]], vocab_size=300)
    sop = build_objective("sop", tokenizer, 32)
    pairs = sop.examples(load_corpus(corpus))[:20]
    assert "20 sentence pairs (want >= 500)" in eval_warning(sop, pairs, ["A", "B"])
    # where the cap on examples binds and the works are many, more works would add nothing: said so
    capped = eval_warning(sop, pairs, [str(i) for i in range(20)], cap=20)
    assert "already takes its most examples (20" in capped and "more works" not in capped
    assert "more works" in eval_warning(sop, pairs, [str(i) for i in range(20)], cap=4000)


def test_best_model_epochs_and_metric_flags_do_what_they_say(tmp_path, corpus, tiny_config):
    """--load_best_model_at_end saved the best checkpoint but reported the last evaluation; a misspelt
    --metric_for_best_model failed at the first evaluation, with nothing saved (Hugging Face's eval_loss
    too); --num_train_epochs lost to the default run's --max_steps (1 epoch became 1,600 steps)."""
    best = pretrain(tmp_path / "best", corpus, tiny_config, "mlm", steps=6, save_steps=2, eval_steps=2,
                    metric_for_best_model="eval_loss", greater_is_better=True, load_best_model_at_end=True)
    evaluations = {r["step"]: r["eval_loss"] for r in best.train.history if "eval_loss" in r}
    assert best.train.best_checkpoint.endswith("checkpoint-2") and best.eval_end["loss"] == evaluations[2] != \
        evaluations[6]
    summary = json.loads((tmp_path / "best" / "run" / "pretraining_summary.json").read_text())
    assert summary["saved_model"] == "checkpoint-2"
    with pytest.raises(ValueError, match="--metric_for_best_model los is not a held-out measure .*loss"):
        pretrain(tmp_path / "typo", corpus, tiny_config, "mlm", steps=4, eval_steps=2, metric_for_best_model="los")
    code, err = cli("--objective", "mlm", "--corpus", str(corpus), "--config_file", str(tiny_config), "--vocab_size",
                    "300", "--max_seq_length", "32", "--num_train_epochs", "1", "--save_total_limit", "None",
                    "--device", "cpu", "--plot_loss", "false", "--output_dir", str(tmp_path / "epochs"))
    assert code == 0, err
    summary = json.loads((tmp_path / "epochs" / "pretraining_summary.json").read_text())
    assert summary["passes_over_corpus"] <= 1.0 and summary["global_step"] < 100


def test_a_roberta_checkpoint_continues_masked_lm_pretraining(tmp_path, corpus):
    """A RoBERTa --init_from was refused ("is not one minibert pretrains"), though continuing RoBERTa on task
    text is what Gururangan et al. 2020 did: mlm / wwm / span now continue it as a RoBERTa (its positions, its
    LM head), saved as one Hugging Face loads; nsp / sop (no head for them) and a --config_file naming roberta
    (a new one is not built here) are refused by name before any work."""
    transformers = pytest.importorskip("transformers")
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
    tokenizer = train_tokenizer(texts, kind="bytelevel_bpe", vocab_size=400)  # RoBERTa's <s> <pad> </s> <unk> <mask>
    tokenizer.save_pretrained(tmp_path / "roberta")
    torch.manual_seed(0)
    transformers.RobertaForMaskedLM(transformers.RobertaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=34, pad_token_id=tokenizer.pad_token_id,
    )).save_pretrained(tmp_path / "roberta")
    common = ("--corpus", str(corpus), "--init_from", str(tmp_path / "roberta"), "--device", "cpu",
              "--plot_loss", "false")
    code, err = cli("--objective", "mlm", *common, "--max_seq_length", "33", "--output_dir", str(tmp_path / "o"))
    assert code == 1 and "--max_seq_length 33 is longer than" in err and "(32 positions)" in err, err
    for objective in ("sop", "nsp"):
        code, err = cli("--objective", objective, *common, "--output_dir", str(tmp_path / "o"))
        assert code == 1 and "is a RoBERTa, which continues pretraining under --objective mlm / wwm / span" in err
    code, err = cli("--objective", "clm", *common, "--output_dir", str(tmp_path / "o"))
    assert code == 1 and "--objective clm trains a GPT-2, not a RoBERTa" in err, err
    code, err = cli("--objective", "mlm", "--corpus", str(corpus), "--config_file",
                    str(tmp_path / "roberta" / "config.json"), "--output_dir", str(tmp_path / "o"))
    assert code == 1 and "model_type 'roberta' is not one minibert pretrains without --model_type roberta" in err
    assert not (tmp_path / "o").exists()
    code, err = cli("--objective", "mlm", *common, "--max_seq_length", "32", "--max_steps", "3",
                    "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "tapt"))
    assert code == 0, err
    ours = minibert.load_pretrained(tmp_path / "tapt")
    assert type(ours).__name__ == "RobertaForMaskedLM"
    theirs = transformers.RobertaForMaskedLM.from_pretrained(tmp_path / "tapt").eval()
    before = transformers.RobertaForMaskedLM.from_pretrained(tmp_path / "roberta").eval()
    batch = tokenizer(texts[:2], max_length=32)
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(theirs(**batch).logits, before(**batch).logits)  # it trained


def test_evaluating_electra_neither_varies_nor_moves_the_training(tmp_path, corpus, tiny_config):
    """ELECTRA's generator samples from the global generator: two evaluations of the same weights gave
    0.4933 and 0.4925, and each one moved the dropout of the steps after it, so --eval_steps changed the
    training."""
    often = pretrain(tmp_path / "often", corpus, tiny_config, "electra", steps=4, eval_steps=1, save_steps=4)
    once = pretrain(tmp_path / "once", corpus, tiny_config, "electra", steps=4, eval_steps=100, save_steps=4)
    assert [r["loss"] for r in often.train.history if "loss" in r] == \
        [r["loss"] for r in once.train.history if "loss" in r]
    assert often.eval_end == once.eval_end


def test_a_second_phase_longer_than_the_positions_names_its_own_flag(tmp_path, corpus, tiny_config):
    """The refusal spoke of max_seq_length, which the user had kept within the positions."""
    with pytest.raises(ValueError, match=r"^--max_seq_length_phase2 4096 is larger than the model allows \(\d+ "
                                         r"positions\); pass --max_seq_length_phase2 <= \d+"):
        pretrain(tmp_path, corpus, tiny_config, "mlm", steps=2, max_seq_length_phase2=4096)


def test_continuing_a_checkpoint_keeps_its_dropout_unless_asked(tmp_path, corpus, tiny_config):
    """--dropout's from-scratch default (0.0) was applied over an --init_from checkpoint's (BERT's 0.1), and
    written into the output's config.json, so the fine-tuning after it ran without dropout too."""
    pretrain(tmp_path / "a", corpus, tiny_config, "mlm", steps=1)
    source = tmp_path / "a" / "run"
    assert json.loads((source / "config.json").read_text())["hidden_dropout_prob"] == 0.1  # the config's
    common = ("--objective", "mlm", "--corpus", str(corpus), "--init_from", str(source), "--max_steps", "1",
              "--max_seq_length", "32", "--plot_loss", "false", "--disable_tqdm", "true")
    code, err = cli(*common, "--output_dir", str(tmp_path / "kept"))
    assert code == 0, err
    assert json.loads((tmp_path / "kept" / "config.json").read_text())["hidden_dropout_prob"] == 0.1
    code, err = cli(*common, "--output_dir", str(tmp_path / "asked"), "--dropout", "0.0")
    assert code == 0, err
    assert json.loads((tmp_path / "asked" / "config.json").read_text())["hidden_dropout_prob"] == 0.0


def test_the_held_out_examples_are_spread_over_every_held_out_work():
    """The first 4,000 in corpus order: with two corpora every evaluated example came from the first."""
    from types import SimpleNamespace

    import numpy as np

    from minibert.data.objectives.base import Examples
    from minibert.pretraining import held_out_examples

    # 5,000 examples from each of two files, built lazily as an objective's are (example i is i)
    evaluation = SimpleNamespace(examples=lambda docs: Examples(int, np.arange(10_000)))
    chosen = list(held_out_examples(evaluation, [0], ["a", "b"], SimpleNamespace(max_eval_examples=4000)))
    assert len(chosen) == 4000 and sum(i >= 5000 for i in chosen) == 2000  # (a step of 3 gave 3,334)
    assert len(held_out_examples(evaluation, [0], ["a"], SimpleNamespace(max_eval_examples=9_999))) == 9_999
    assert list(held_out_examples(evaluation, [0], ["a"], SimpleNamespace(max_eval_examples=20_000))) == \
        list(range(10_000))


def test_continuing_a_generator_keeps_its_decoding_defaults(tmp_path, corpus, tiny_config):
    """--init_from built the model from the config's known fields only: generation_config.json and
    config.json's older decoding fields (num_beams ...) were lost, and the continued BART decoded greedily."""
    pretrain(tmp_path / "a", corpus, tiny_config, "bart", steps=1)
    source = tmp_path / "a" / "run"
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "num_beams": 4, "task_specific_params": {"x": 1}}))
    (source / "generation_config.json").write_text(json.dumps({"num_beams": 4, "min_length": 5}))
    pretrain(tmp_path / "b", corpus, tiny_config, "bart", steps=1, init_from=str(source))
    out = tmp_path / "b" / "run"
    saved = json.loads((out / "config.json").read_text())
    assert saved["num_beams"] == 4 and saved["task_specific_params"] == {"x": 1}
    assert json.loads((out / "generation_config.json").read_text()) == {"num_beams": 4, "min_length": 5}


def test_a_missing_extra_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    """wwm on Chinese text without jieba printed a 13-frame traceback."""
    from minibert.data import chinese

    corpus = tmp_path / "zh.txt"
    poem = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    corpus.write_text("\n\n".join(poem for _ in range(30)), encoding="utf-8")
    chinese._jieba.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "jieba", None)  # as if not installed
    try:
        code, err = cli("--objective", "wwm", "--corpus", str(corpus), "--output_dir", str(tmp_path / "run"),
                        "--model_size", "micro", "--max_steps", "1", "--data_cache_dir", str(tmp_path / "cache"),
                        "--validation_share", "0")
    finally:
        chinese._jieba.cache_clear()
    assert code == 1 and 'jieba is needed for Chinese text; install the extra' in err and "Traceback" not in err, err


def test_the_summary_names_ten_held_out_works_at_most(tmp_path, corpus, tiny_config):
    """The Tang poems hold out 1,380 titles: the summary printed them all on one line (34 KB)."""
    result = pretrain(tmp_path, corpus, tiny_config, "mlm", steps=1)
    result.held_out_works = [f"poem {i}" for i in range(1380)]
    summary = format_summary(result)
    assert "poem 9, ... (1370 more: pretraining_summary.json lists them)" in summary and "poem 10," not in summary


def test_the_masked_objectives_build_the_unpad_and_sparse_mlm_model_and_electra_does_not(corpus, tiny_config):
    """pretrain.py's speed paths (models/bert.py: unpad and the sparse MLM head) are on for a BERT that a
    masked-LM objective trains; ELECTRA's generator and discriminator keep them off."""
    tokenizer = train_tokenizer([r["text"] for r in read_records(corpus)], vocab_size=300)
    for objective in ("mlm", "wwm", "span", "nsp", "sop", "electra"):
        options = PretrainingOptions(objective=objective, corpus=[str(corpus)], config_file=str(tiny_config),
                                     max_seq_length=32)
        model, _ = build_model(options, build_objective(objective, tokenizer, 32))
        configs = [m.config for m in model.modules() if isinstance(getattr(m, "config", None), BertConfig)]
        assert configs, objective
        on = objective != "electra"
        assert all(c.unpad is on and c.sparse_mlm is on for c in configs), (objective, configs)


def test_resuming_with_another_objective_or_masking_rate_is_refused_naming_them(tmp_path, corpus, tiny_config):
    """mlm, wwm and span make as many examples from a corpus and share one model, so a resume with another
    --objective or --mlm_probability passed every check and trained the rest of the run on another recipe."""
    pretrain(tmp_path, corpus, tiny_config, "mlm", steps=2, save_steps=2, objective_options={"mlm_probability": 0.15})
    for objective, options, named in (("span", {"mlm_probability": 0.15}, "--objective: mlm then, span now"),
                                      ("mlm", {"mlm_probability": 0.3}, "--mlm_probability: 0.15 then, 0.3 now")):
        with pytest.raises(ValueError, match="other settings") as error:
            pretrain(tmp_path, corpus, tiny_config, objective, steps=4, resume_from_checkpoint="last",
                     objective_options=options)
        assert named in str(error.value)
    resumed = pretrain(tmp_path, corpus, tiny_config, "mlm", steps=4, resume_from_checkpoint="last",
                       objective_options={"mlm_probability": 0.15})  # the same recipe resumes
    assert resumed.train.global_step == 4


def test_a_config_json_minibert_saved_is_taken_as_config_file_without_a_warning(tmp_path, caplog):
    """The README's recipe (--config_file runs/pretrain-sop/config.json, edited) warned "left out model_type
    (no field of the bert config)", though model_type was read and checked."""
    from minibert.models.bert import BertConfig, BertForPreTraining
    from minibert.pretraining import read_config_file

    BertForPreTraining(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32)).save_pretrained(tmp_path)  # as pretrain.py writes it
    with caplog.at_level("WARNING", logger="minibert.pretraining"):
        config = read_config_file(str(tmp_path / "config.json"), "sop")
    assert "left out" not in caplog.text and config["hidden_size"] == 16

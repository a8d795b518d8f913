"""train.py end to end on tiny data: every task type, tricks as flags, saving, bad input."""

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import train
from minibert.finetune.task_data import Task, encode_label, infer_task, read_rows
from minibert.finetuning import DEFAULT_PRETRAIN_COMMAND, compute_metrics, load_finetuned
from minibert.models.bert import BertConfig, BertForPreTraining
from minibert.tokenizer import load_tokenizer, train_tokenizer

WORDS = "the king queen fool love war crown sword jest wedding death ghost night song".split()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def tiny_checkpoint(path):
    """A tiny pretrained BERT (2 layers of 16) and a WordPiece tokenizer of WORDS, saved in `path`."""
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (12,), generator=g).tolist()) for _ in range(50)]
    tokenizer = train_tokenizer(texts, "wordpiece", vocab_size=80, min_frequency=1)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertForPreTraining(config).save_pretrained(path)
    return path


def rows(n, kind, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(2, 10, (1,), generator=g))
        words = [WORDS[j] for j in torch.randint(0, len(WORDS), (length,), generator=g).tolist()]
        label = {"single": ["comedy", "tragedy"][("war" in words) or ("death" in words)],
                 "regression": float(len(words)) / 10,
                 "multi": [w for w in ("love", "war") if w in words]}[kind]
        out.append({"sentence": " ".join(words), "other": " ".join(reversed(words)), "label": label})
    return out


def write_jsonl(path, data):
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    return str(path)


def write_csv(path, data):
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    return str(path)


def run(checkpoint, tmp_path, train_file, validation_file, *extra):
    argv = ["--model_name_or_path", str(checkpoint), "--train_file", train_file, "--validation_file",
            validation_file, "--text_column", "sentence", "--output_dir", str(tmp_path / "out"),
            "--max_steps", "4", "--eval_steps", "2", "--per_device_train_batch_size", "8", "--max_seq_length", "16",
            "--disable_tqdm", "--device", "cpu", "--learning_rate", "1e-3", *extra]
    finetune_args, training = train.parse(argv)
    training.plot_loss = False  # matplotlib's import alone takes seconds
    return train.finetune(finetune_args, training)


def test_pair_classification_csv_with_tricks_saves_a_reloadable_best_model(checkpoint, tmp_path):
    data = write_csv(tmp_path / "train.csv", rows(32, "single"))
    dev = write_csv(tmp_path / "dev.csv", rows(16, "single", seed=1))
    result = run(checkpoint, tmp_path, data, dev, "--text_pair_column", "other", "--fgm", "--llrd", "0.8",
                 "--head_lr", "2e-3", "--reinit_layers", "1", "--freeze_embeddings", "false",
                 "--mixout", "0.1", "--prior_wd", "--swa_start", "0.5", "--optim", "bertadam")
    assert result.task.label_names == ["comedy", "tragedy"]
    assert [r["step"] for r in result.history] == [2, 4]
    assert {"eval_accuracy", "eval_f1_macro", "eval_loss"} <= set(result.history[0])
    assert result.swa_metrics and "accuracy" in result.swa_metrics
    saved = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    # named within the run's directory, beside the record (it was the path as given, relative to the shell)
    assert saved["best_checkpoint"] in ("checkpoint-2", "checkpoint-4")
    # every setting the run used, defaults included, so the command need not be remembered
    finetune_args, training = saved["arguments"]["finetune"], saved["arguments"]["training"]
    assert finetune_args["mixout"] == 0.1 and finetune_args["text_pair_column"] == "other"
    assert finetune_args["model_name_or_path"] == str(checkpoint) and finetune_args["adv_epsilon"] == 1.0
    assert training["learning_rate"] == 1e-3 and training["max_steps"] == 4 and training["seed"] == 42
    assert saved["arguments"]["working_directory"] == os.getcwd()  # what relative paths are relative to
    model = load_finetuned(tmp_path / "out")
    tokenizer = load_tokenizer(tmp_path / "out")
    dev_rows = rows(16, "single", seed=1)
    enc = tokenizer([r["sentence"] for r in dev_rows], [r["other"] for r in dev_rows], max_length=16)
    pred = model(**enc).logits.argmax(-1)
    gold = torch.tensor([["comedy", "tragedy"].index(r["label"]) for r in dev_rows])
    assert float((pred == gold).float().mean()) == pytest.approx(saved["metrics"]["accuracy"])


@pytest.mark.parametrize("pooling", ["mean_max", "sbert_wk"])
def test_regression_jsonl_with_a_pooling_head(checkpoint, tmp_path, pooling):
    data = write_jsonl(tmp_path / "train.jsonl", rows(24, "regression"))
    result = run(checkpoint, tmp_path, data, data, "--pooling", pooling, "--pgd_steps", "2", "--lr_groups", "2")
    assert result.task.problem_type == "regression"
    assert {"rmse", "pearson"} <= set(result.metrics)
    model = load_finetuned(tmp_path / "out")
    assert model.settings["pooling"] == pooling


def test_multi_label_with_zlpr_and_random_init(checkpoint, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", rows(24, "multi"))
    result = run(checkpoint, tmp_path, data, data, "--multi_label_loss", "zlpr", "--model_name_or_path", "random",
                 "--config_name", str(checkpoint), "--optim", "radam_lookahead", "--group_by_length", "false",
                 "--padding", "max_length")
    assert result.task.problem_type == "multi_label_classification" and result.task.label_names == ["love", "war"]
    assert {"f1_micro", "f1_macro", "exact_match"} <= set(result.metrics)


def test_bad_input_is_named(checkpoint, tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", rows(8, "single"))
    with pytest.raises(ValueError, match=r"no column \['text'\]; the columns are \['label', 'other', 'sentence'\]"):
        run(checkpoint, tmp_path, data, data, "--text_column", "text")
    with pytest.raises(ValueError, match="does not fit --num_labels 3"):
        run(checkpoint, tmp_path, data, data, "--num_labels", "3")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        run(checkpoint, tmp_path, data, data, "--mixout", "1.5")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        run(checkpoint, tmp_path, data, data, "--llrd", "1.5")
    with pytest.raises(ValueError, match="the embedding parameters are"):
        run(checkpoint, tmp_path, data, data, "--fgm", "--adv_emb_name", "nope")
    unseen = write_jsonl(tmp_path / "dev.jsonl", [{"sentence": "the king", "label": "history", "other": ""}])
    with pytest.raises(ValueError, match=r"dev\.jsonl: row 1: label 'history' is not among the task's 2 labels"):
        run(checkpoint, tmp_path, data, unseen)
    infinite = write_jsonl(tmp_path / "inf.jsonl", [{"sentence": f"the king {i}", "label": label}
                                                    for i, label in enumerate([0.5, 1.5, "inf", 2.5])])
    with pytest.raises(ValueError, match=r"inf\.jsonl: row 3: regression label 'inf' is not a finite number"):
        run(checkpoint, tmp_path, infinite, infinite)  # it trained, and stopped at step 1 blaming the rate
    with pytest.raises(SystemExit):
        train.parse(["--pooling", "median"])
    assert "sbert_wk" in capsys.readouterr().err
    missing = str(tmp_path / "nowhere")
    assert train.main(["--model_name_or_path", missing, "--output_dir", str(tmp_path / "o")]) == 2
    assert "not a checkpoint directory" in capsys.readouterr().err


def test_data_files_in_the_wrong_encoding_or_format_are_named(tmp_path):
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("sentence,label\ncaf\u00e9 au lait,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv is not UTF-8: the byte at offset 18 \(line 2\).*iconv"):
        read_rows(latin1)
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffsentence,label\ncaf\u00e9,1\n".encode())
    assert read_rows(bom) == [{"sentence": "caf\u00e9", "label": "1"}]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('\n{"sentence": "a", "label": 0}\n{"sentence": "b", "label": \n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:3 is not valid JSON"):
        read_rows(broken)
    tabs = tmp_path / "tabs.csv"
    tabs.write_text("sentence\tlabel\nhello\t1\n")
    with pytest.raises(ValueError, match=r"delimiter is probably wrong: rename the file to tabs\.tsv"):
        read_rows(tabs)
    semicolons = tmp_path / "semicolons.csv"  # Excel's CSV where a comma is the decimal mark
    semicolons.write_text("sentence;label\nhello;1\n")
    with pytest.raises(ValueError, match=r"one column split by ';', not ','; \.csv files are read with commas: save "
                                         r"it with commas"):
        read_rows(semicolons)
    quoted = tmp_path / "quoted.tsv"  # an unclosed quote read the next rows into its cell (4 rows came back as 2)
    quoted.write_text('label\tsentence\n1\tFine.\n0\t"Unclosed quote.\n1\tThird.\n0\tFourth.\n')
    with pytest.raises(ValueError, match=r"quoted\.tsv:3: the `sentence` cell holds a tab and 3 line break"):
        read_rows(quoted)


def test_labels_are_never_silently_a_different_task(checkpoint, tmp_path, caplog):
    def labelled(labels):
        return [{"sentence": f"the king {i}", "label": label} for i, label in enumerate(labels)]

    for name, hole in [("empty", ""), ("nan", "nan"), ("null", None)]:
        data = write_jsonl(tmp_path / f"{name}.jsonl", labelled(["a", "b", hole, "a"]))
        with pytest.raises(ValueError, match=rf"{name}\.jsonl: row 3 .*has no label \({hole!r}\).* is \[\] in a file"):
            run(checkpoint, tmp_path, data, data)
    with caplog.at_level("INFO", logger="minibert.finetune.task_data"):
        task = infer_task(["0", "1", "1.0", 0.0, "01"], "auto", None)
    assert task.label_names == ["0", "1"]
    assert "task: single_label_classification (2 distinct integer labels" in caplog.text
    assert encode_label("1.0", task, "train.csv") == encode_label(1, task, "train.csv") == 1
    with pytest.raises(ValueError, match=r"row 51 has the label 'n/a' among 50 numeric labels"):
        infer_task([str(i / 10) for i in range(50)] + ["n/a"], "auto", None, "scores.csv")
    with pytest.raises(ValueError, match=r"row 2 has the label 'love\|war'.*--task_type multi_label_classification"):
        infer_task(["love", "love|war", "war"], "auto", None)
    with pytest.raises(ValueError, match=r"row 1 has the label 'love, war'"):
        infer_task(["love, war", "war"], "auto", None)
    assert infer_task(["love|war", "war"], "single_label_classification", None).label_names == ["love|war", "war"]
    with caplog.at_level("INFO", logger="minibert.finetune.task_data"):
        assert infer_task(["love", "war", "peace"], "auto", None).problem_type == "single_label_classification"
    assert "task: single_label_classification (3 distinct text labels)" in caplog.text


def test_missing_default_checkpoint_names_the_pretrain_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train.main([]) == 2
    assert DEFAULT_PRETRAIN_COMMAND in capsys.readouterr().err


def test_a_run_without_output_dir_never_replaces_an_earlier_run(checkpoint, tmp_path, monkeypatch, capsys):
    """The default output_dir is kept like any other: a second run there (the demo, or any other
    command without --output_dir) is refused, naming the flags, unless it passes --overwrite_output_dir;
    `--overwrite_output_dir false` stays false."""
    monkeypatch.chdir(tmp_path)
    assert not train.parse([])[1].overwrite_output_dir
    assert not train.parse(["--overwrite_output_dir", "false"])[1].overwrite_output_dir
    data = write_jsonl(tmp_path / "my_train.jsonl", rows(16, "single"))
    command = ["--model_name_or_path", str(checkpoint), "--train_file", data, "--validation_file", data,
               "--text_column", "sentence", "--max_steps", "1", "--max_seq_length", "16", "--disable_tqdm",
               "--plot_loss", "false", "--device", "cpu"]
    assert train.main(command) == 0
    run = tmp_path / "runs" / "finetune-shakespeare-genre"  # train.py's default output_dir
    first = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for again in ([], ["--overwrite_output_dir", "false"]):
        assert train.main(command + ["--seed", "7", *again]) == 2
        err = capsys.readouterr().err
        assert "already holds a finished training run" in err and "--overwrite_output_dir" in err
        assert "--resume_from_checkpoint" not in err  # a finished run has nothing to continue
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == first
    assert train.main(command + ["--seed", "7", "--overwrite_output_dir"]) == 0  # asked for: replaced
    assert (run / "model.safetensors").read_bytes() != first["model.safetensors"]


def test_an_output_dir_that_is_contains_or_sits_inside_an_input_is_refused(checkpoint, tmp_path, monkeypatch, capsys):
    source = tmp_path / "runs" / "finetune-shakespeare-genre"  # train.py's default output_dir
    shutil.copytree(checkpoint, source)
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    data = write_jsonl(tmp_path / "train.jsonl", rows(8, "single"))
    (tmp_path / "dev").mkdir()
    dev = write_jsonl(tmp_path / "dev" / "dev.jsonl", rows(8, "single", seed=1))
    common = ["--train_file", data, "--validation_file", data, "--text_column", "sentence", "--max_steps", "1",
              "--max_seq_length", "16", "--device", "cpu", "--plot_loss", "false"]
    monkeypatch.chdir(tmp_path)
    cases = [
        # the default output_dir
        (["--model_name_or_path", str(source)], "is the --model_name_or_path directory"),
        (["--model_name_or_path", str(source), "--output_dir", str(source / "more")], "sits inside"),
        (["--model_name_or_path", str(source), "--output_dir", "runs", "--overwrite_output_dir"], "contains"),
        (["--model_name_or_path", "random", "--config_name", str(source), "--output_dir", str(source)],
         "is the --config_name directory"),
        (["--model_name_or_path", str(checkpoint), "--tokenizer_name", str(source), "--output_dir", str(source)],
         "is the --tokenizer_name directory"),
        # the data files: checked as files, so only their own directory (or one above) is refused
        (["--model_name_or_path", str(checkpoint), "--output_dir", str(tmp_path), "--overwrite_output_dir"],
         "contains the --train_file"),
        (["--model_name_or_path", str(checkpoint), "--validation_file", dev, "--output_dir", str(tmp_path / "dev")],
         "contains the --validation_file"),
        (["--model_name_or_path", str(checkpoint), "--multitask", f"genre={data},{dev}", "--output_dir",
          str(tmp_path / "dev")], "contains the --multitask"),
    ]
    for flags, message in cases:
        assert train.main(common + flags) == 2
        err = capsys.readouterr().err
        assert message in err and "pass an --output_dir" in err, err
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "dev").iterdir()) == ["dev.jsonl"]


def test_bad_arguments_are_refused_before_any_work(checkpoint, tmp_path, monkeypatch, capsys):
    import minibert.finetuning

    def no_loading(*args, **kwargs):
        raise AssertionError("the tokenizer was loaded before the arguments were checked")

    monkeypatch.setattr(minibert.finetuning, "load_tokenizer", no_loading)
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    locked = tmp_path / "locked"
    locked.mkdir()
    cases = [
        (["--max_seq_length", "1"], "--max_seq_length 1 is too short: it must hold the special tokens"),
        (["--max_seq_length", "-3"], "pass --max_seq_length 8 or more"),
        (["--per_device_eval_batch_size", "0"], "--per_device_eval_batch_size must be >= 1, got 0"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be >= 1, got 0"),
        (["--output_dir", str(a_file)], f"--output_dir {a_file} is a file; pass a directory path"),
        (["--output_dir", str(locked / "out")], f"{locked} is not writable by this user"),
        (["--prior_wd", "--weight_decay", "0"], "--prior_wd with --weight_decay 0 pulls nothing"),
    ]
    real_access = os.access  # this test may run as root, whom os.access never refuses: stand in for the OS
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    for flags, message in cases:
        flags = flags if "--output_dir" in flags else [*flags, "--output_dir", str(tmp_path / "out")]
        try:
            code = train.main(["--model_name_or_path", str(checkpoint), *flags])
        except SystemExit as exit_:  # argparse's error for a bad flag value
            code = exit_.code
        assert code == 2 and message in capsys.readouterr().err
    assert a_file.read_text() == "keep me" and not (tmp_path / "out").exists() and not any(locked.iterdir())


def test_a_length_past_the_positions_or_a_missing_resume_is_refused_before_work(checkpoint, tmp_path, capsys):
    common = ["--model_name_or_path", str(checkpoint), "--output_dir", str(tmp_path / "out")]
    assert train.main(common + ["--max_seq_length", "4096"]) == 2
    assert "--max_seq_length 4096 is longer than" in capsys.readouterr().err
    assert train.main(common + ["--resume_from_checkpoint", "last"]) == 2
    assert "holds no complete checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_own_training_file_without_validation_file_is_not_scored_on_the_shipped_task(checkpoint, tmp_path, caplog):
    """The shipped validation file belongs to the shipped training file: someone else's data without a
    --validation_file trains unevaluated (said so), never scored on Shakespeare's genres."""
    data = write_jsonl(tmp_path / "train.jsonl", rows(32, "single"))
    argv = ["--model_name_or_path", str(checkpoint), "--train_file", data, "--text_column", "sentence",
            "--output_dir", str(tmp_path / "out"), "--max_steps", "4", "--eval_steps", "2",
            "--per_device_train_batch_size", "8", "--max_seq_length", "16", "--disable_tqdm", "--device", "cpu"]
    finetune_args, training = train.parse(argv)
    assert finetune_args.validation_file is None
    training.plot_loss = False
    with caplog.at_level("WARNING", logger="minibert.finetuning"):
        result = train.finetune(finetune_args, training)
    assert "no --validation_file: the run is not evaluated" in caplog.text
    assert not any("eval_accuracy" in record or "eval_loss" in record for record in result.history)
    assert load_finetuned(tmp_path / "out") is not None
    # the shipped training file keeps its own validation file, however the path is written
    shipped = train.parse(["--train_file", "minibert/data/tasks/shakespeare_genre_train.jsonl"])[0]
    assert shipped.validation_file.endswith("shakespeare_genre_validation.jsonl")


def test_swa_without_a_validation_file_saves_the_average_as_the_final_model(checkpoint, tmp_path, caplog):
    """With nothing to compare the average against, SWA's own choice: the average is saved (this
    crashed with KeyError: None before anything was saved)."""
    data = write_jsonl(tmp_path / "train.jsonl", rows(32, "single"))
    argv = ["--model_name_or_path", str(checkpoint), "--train_file", data, "--text_column", "sentence",
            "--output_dir", str(tmp_path / "out"), "--max_steps", "4", "--per_device_train_batch_size", "8",
            "--max_seq_length", "16", "--disable_tqdm", "--device", "cpu", "--swa_start", "0.5"]
    finetune_args, training = train.parse(argv)
    training.plot_loss = False

    class KeepAverage:
        def on_train_end(self, trainer):
            swa = next(c for c in trainer.callbacks if type(c).__name__ == "SWA")
            self.average = {k: v.clone() for k, v in swa.averaged_module().state_dict().items()}

    spy = KeepAverage()
    with caplog.at_level("INFO", logger="minibert.finetuning"):
        result = train.finetune(finetune_args, training, callbacks=[spy])
    assert "the final model is the SWA average" in caplog.text  # the no-validation warning
    assert "the SWA average (3 steps averaged) is the final model" in caplog.text
    assert result.metrics == {} and result.swa_metrics is None
    saved = load_finetuned(tmp_path / "out").state_dict()
    assert saved.keys() == spy.average.keys()
    assert all(torch.equal(saved[k], spy.average[k]) for k in saved)


def test_a_head_learning_rate_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        train.parse(["--head_lr", "-1"])
    assert "--head_lr must be > 0" in capsys.readouterr().err


def test_finetune_leaves_the_callers_training_arguments_as_they_were(checkpoint, tmp_path):
    """One TrainingArguments reused across runs (a sweep): the first run's best-model metric must not
    carry over into a run of another task."""
    classes = write_jsonl(tmp_path / "classes.jsonl", rows(32, "single"))
    numbers = write_jsonl(tmp_path / "numbers.jsonl", rows(32, "regression"))
    argv = ["--model_name_or_path", str(checkpoint), "--text_column", "sentence", "--max_steps", "2",
            "--eval_steps", "2", "--per_device_train_batch_size", "8", "--max_seq_length", "16", "--disable_tqdm",
            "--device", "cpu"]
    _, training = train.parse([*argv, "--output_dir", str(tmp_path / "a")])
    training.plot_loss = False
    before = (training.metric_for_best_model, training.greater_is_better)
    train.finetune(train.parse([*argv, "--train_file", classes, "--validation_file", classes])[0], training)
    assert (training.metric_for_best_model, training.greater_is_better) == before
    training.output_dir = str(tmp_path / "b")
    result = train.finetune(train.parse([*argv, "--train_file", numbers, "--validation_file", numbers])[0], training)
    assert "eval_rmse" in result.history[-1] or any("eval_rmse" in r for r in result.history)


@pytest.mark.parametrize("lines, message", [
    ([{"text": "a b", "label": "x"}, {"text": "c d", "label": "y"}, {"text": "e f"}], "row 3 .* has no label"),
    ([{"text": "a b", "label": "x"}, {"label": "y"}], r"example 2 \(counting from 1\) has no 'text'"),
    ([{"text": "a b", "label": "x"}, {"text": None, "label": "y"}], "example 2 .* has no 'text'"),
    ([{"text": "a b", "label": "x"}, {"text": " ", "label": "y"}], r"example 2 .* has no 'text' \(' '\)"),
    ([{"text": "a b", "label": "x"}, {"text": float("nan"), "label": "y"}], r"example 2 .* has no 'text' \(nan\)"),
    ([{"text": "a b", "label": ["x"]}, {"text": "c", "label": ["y", None]}], r"row 2: the label list .* holds None"),
    ([{"text": "a b", "label": "neg"}, {"text": "c", "label": " neg"}, {"text": "d", "label": "pos"}],
     r"the labels \['neg', ' neg'\] differ only by spaces"),
    ([{"text": "a b", "label": "x"}, {"text": ["a", "b"], "label": "y"}], "example 2 has list .* not a text"),
    ([{"text": "a b", "label": "x"}, {"text": "c", "label": "[unsure]"}], r"'\[unsure\]' starts with '\[' but is"),
    ([{"text": "a b", "label": "x"}, ["c", "y"]], "example 2 is list .* not an object"),
])
def test_a_broken_example_is_named_with_its_row_never_trained_on(tmp_path, lines, message):
    """A missing text or label, a null, a list where a text belongs, a bracketed label that is not JSON:
    each named with its file and example, not a KeyError, not the text "None"."""
    from minibert.finetune.task_data import load_split

    path = write_jsonl(tmp_path / "train.jsonl", lines)
    tokenizer = train_tokenizer(["a b c d e f"] * 4, kind="wordpiece", vocab_size=60, min_frequency=1)
    with pytest.raises(ValueError, match=message) as error:
        load_split(path, tokenizer, 16)
    assert str(path) in str(error.value)


def test_a_json_file_of_one_object_is_refused_naming_where_the_examples_may_be(tmp_path):
    """A pretty-printed {"data": [...]} was "not valid JSON: write one object per line" (it is valid JSON), and
    pandas' default to_json ({"text": {"0": ...}}) "has dict as its 'text'"; one example on one line still reads."""
    from minibert.finetune.task_data import infer_task, read_rows

    path = tmp_path / "train.json"
    path.write_text(json.dumps({"data": [{"text": "a", "label": 1}]}, indent=2))
    with pytest.raises(ValueError, match=r"holds one JSON object .*the examples may be under 'data'"):
        read_rows(path)
    path.write_text(json.dumps({"text": {"0": "a"}, "label": {"0": 1}}))
    with pytest.raises(ValueError, match=r"holds one JSON object .*orient='records', lines=True"):
        read_rows(path)
    path.write_text(json.dumps({"text": "a", "label": ["x", "y"]}) + "\n")
    assert read_rows(path) == [{"text": "a", "label": ["x", "y"]}]
    with pytest.raises(ValueError, match=r"--num_labels is 2; if the labels are classes .*single_label_class"):
        infer_task([0.0, 1.0], "auto", 2)
    # (true / false in a list of scores stay 1 / 0: the check of a multi-label list's items lets them through)
    assert infer_task([[True, False], [False, True]], "auto", None).label_names == ["LABEL_0", "LABEL_1"]


def test_a_csv_cell_longer_than_the_csv_modules_limit_reads_whole(tmp_path):
    import csv as csv_module

    text = "word " * 40_000  # 200,000 characters: past csv's default field limit of 131,072
    path = write_csv(tmp_path / "train.csv", [{"text": text, "label": "a"}, {"text": "short", "label": "b"}])
    limit = csv_module.field_size_limit()
    assert read_rows(path)[0]["text"] == text
    assert csv_module.field_size_limit() == limit  # put back: the limit is the whole process's


def test_a_tokenizer_that_is_not_the_checkpoints_is_refused(checkpoint, tmp_path, capsys):
    """--tokenizer_name with other ids (a byte-level tokenizer: more tokens than the model embeds, padding
    with id 1 where the model pads with 0) would feed the model ids past its embedding table, or words it
    never saw as padding."""
    from minibert.tokenizer import check_tokenizer_fits

    data = write_jsonl(tmp_path / "train.jsonl", rows(16, "single"))
    bpe = train_tokenizer(WORDS * 4, kind="bytelevel_bpe", vocab_size=300, min_frequency=1)
    bpe.save_pretrained(tmp_path / "bpe")
    assert train.main(["--model_name_or_path", str(checkpoint), "--train_file", data, "--text_column", "sentence",
                       "--max_steps", "1", "--max_seq_length", "16", "--device", "cpu", "--disable_tqdm",
                       "--tokenizer_name", str(tmp_path / "bpe"), "--output_dir", str(tmp_path / "a")]) == 2
    assert f"has {bpe.vocab_size} tokens but {checkpoint} embeds" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"pads with id 1 \('<pad>'\) but CKPT was trained with pad_token_id 0"):
        check_tokenizer_fits(bpe, {"vocab_size": 1000, "pad_token_id": 0}, "--tokenizer_name X", "CKPT")
    check_tokenizer_fits(load_tokenizer(checkpoint), json.loads((checkpoint / "config.json").read_text()), "-", "-")


def test_a_smaller_tokenizer_with_the_same_pad_id_is_refused_beside_the_checkpoints_own(checkpoint, tmp_path,
                                                                                       capsys):
    """A WordPiece of fewer tokens, padding with id 0 as the model does, passed the size and pad checks: the
    run trained on ids that mean other pieces to the embeddings. The checkpoint's own tokenizer decides; its
    copy in another directory, and any tokenizer for random weights, pass."""
    from minibert.tokenizer import check_tokenizer_fits

    data = write_jsonl(tmp_path / "train.jsonl", rows(16, "single"))
    small = train_tokenizer([w for w in reversed(WORDS)] * 4, kind="wordpiece", vocab_size=60, min_frequency=1)
    small.save_pretrained(tmp_path / "small")
    config = json.loads((checkpoint / "config.json").read_text())
    assert small.vocab_size <= config["vocab_size"] and small.pad_token_id == config["pad_token_id"]
    common = ["--train_file", data, "--text_column", "sentence", "--max_steps", "1", "--max_seq_length", "16",
              "--device", "cpu", "--disable_tqdm", "--tokenizer_name", str(tmp_path / "small")]
    assert train.main(["--model_name_or_path", str(checkpoint), *common, "--output_dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert f"--tokenizer_name {tmp_path / 'small'} is not the tokenizer saved with {checkpoint}" in err
    assert "the embeddings are read by id; drop --tokenizer_name" in err and not (tmp_path / "a").exists()
    load_tokenizer(checkpoint).save_pretrained(tmp_path / "copy")
    check_tokenizer_fits(load_tokenizer(tmp_path / "copy"), config, "-", "-", weights_dir=checkpoint)
    # a checkpoint whose own tokenizer cannot be read (why one passes --tokenizer_name): not compared, said
    unreadable = tmp_path / "unreadable"
    shutil.copytree(checkpoint, unreadable)
    settings = json.loads((unreadable / "tokenizer_config.json").read_text())
    (unreadable / "tokenizer_config.json").write_text(json.dumps({**settings, "do_lower_case": "True"}))
    check_tokenizer_fits(load_tokenizer(tmp_path / "copy"), config, "-", "-", weights_dir=unreadable)
    assert train.main(["--model_name_or_path", "random", "--config_name", str(checkpoint), *common,
                       "--output_dir", str(tmp_path / "b")]) == 0


def test_a_tokenizer_without_a_pad_token_is_refused_before_a_classifier_trains(checkpoint, tmp_path, capsys,
                                                                               monkeypatch):
    """The first batch said "set one (tok.pad_token = tok.eos_token)", which no flag of train.py does."""
    from minibert import finetuning
    from minibert.tokenizer import Tokenizer

    own = load_tokenizer(checkpoint)
    no_pad = Tokenizer(own.backend, {k: v for k, v in own.special_tokens.items() if k != "pad_token"}, own.kind)
    monkeypatch.setattr(finetuning, "load_tokenizer", lambda path: no_pad)  # as GPT-2's files name none
    data = write_jsonl(tmp_path / "train.jsonl", rows(16, "single"))
    assert train.main(["--model_name_or_path", str(checkpoint), "--train_file", data, "--text_column", "sentence",
                       "--max_steps", "1", "--max_seq_length", "16", "--device", "cpu", "--disable_tqdm",
                       "--output_dir", str(tmp_path / "a")]) == 2
    assert f"the tokenizer of {checkpoint} has no pad token, and a classifier's batches are padded" in \
        capsys.readouterr().err and not (tmp_path / "a").exists()


def test_macro_f1_averages_over_the_classes_seen_in_gold_or_predictions():
    """As scikit-learn's f1_score(average="macro"): a training class absent from a small validation
    set and never predicted counted as F1 = 0 (one right answer scored 0.25)."""
    task = Task("single_label_classification", ["a", "b", "c", "d"])
    one_hot = torch.eye(4)
    metrics = compute_metrics(one_hot[[0, 1, 1, 0, 2]], torch.tensor([0, 1, 2, 0, 1]), task)
    assert metrics["f1_macro"] == pytest.approx((1 + 0.5 + 0) / 3)  # classes 0, 1, 2; class 3 appears nowhere
    assert compute_metrics(one_hot[[2]], torch.tensor([2]), task) == {"accuracy": 1.0, "f1_macro": 1.0}


@pytest.mark.parametrize("average_better", [True, False])
def test_the_swa_average_is_kept_only_when_it_validates_better(checkpoint, tmp_path, monkeypatch, caplog,
                                                                 average_better):
    """The README says the average is kept if it validates better; the choice itself was never tested
    (always keeping it, or never, passed every test)."""
    import minibert.finetuning

    calls = []

    def better(a, b, greater):
        calls.append((a, b, greater))
        return average_better

    monkeypatch.setattr(minibert.finetuning, "_better", better)
    data = write_jsonl(tmp_path / "train.jsonl", rows(32, "single"))
    dev = write_jsonl(tmp_path / "dev.jsonl", rows(16, "single", seed=1))
    with caplog.at_level("INFO", logger="minibert.finetuning"):
        result = run(checkpoint, tmp_path, data, dev, "--swa_start", "0.5", "--eval_steps", "4")
    assert calls == [(result.swa_metrics["accuracy"], pytest.approx(calls[0][1]), True)]
    kept = "the SWA average is the final model" in caplog.text
    assert kept == average_better
    saved = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    model, tokenizer = load_finetuned(tmp_path / "out"), load_tokenizer(tmp_path / "out")
    enc = tokenizer([r["sentence"] for r in rows(16, "single", seed=1)], max_length=16)
    gold = torch.tensor([["comedy", "tragedy"].index(r["label"]) for r in rows(16, "single", seed=1)])
    logits = model(**enc).logits
    loss = float(torch.nn.functional.cross_entropy(logits, gold))
    # the saved model is the one whose metrics are reported: the average's when kept, the last step's if not
    assert loss == pytest.approx((result.swa_metrics if average_better else saved["metrics"])["loss"], rel=1e-4)
    assert (saved["metrics"] == result.swa_metrics) == average_better


def test_a_classifier_checkpoint_of_other_labels_fine_tunes(tmp_path, caplog):
    """A 3-label classifier on a 2-label task crashed ("check config.json against the weights"); one with
    the task's labels in another order had its rows reused under other names (tragedy's row as comedy's)."""
    transformers = pytest.importorskip("transformers")
    from minibert.finetune.task_data import Task
    from minibert.finetuning import FinetuneArguments, build_model

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, num_labels=3,
                                     id2label={0: "tragedy", 1: "history", 2: "comedy"})
    hf = transformers.BertForSequenceClassification(config).eval()
    hf.save_pretrained(tmp_path / "mnli-like")
    args = FinetuneArguments(model_name_or_path=str(tmp_path / "mnli-like"))
    model, _ = build_model(args, Task("single_label_classification", ["comedy", "history", "tragedy"]))
    for ours, theirs in ((0, 2), (1, 1), (2, 0)):  # each class keeps the row trained for it
        torch.testing.assert_close(model.classifier.weight[ours], hf.classifier.weight[theirs], rtol=0, atol=0)
        torch.testing.assert_close(model.classifier.bias[ours], hf.classifier.bias[theirs], rtol=0, atol=0)
    with caplog.at_level("WARNING", logger="minibert.finetuning"):  # the same size, other names: said
        model, _ = build_model(args, Task("single_label_classification", ["bad", "good", "meh"]))
    assert "trained for the labels ['tragedy', 'history', 'comedy'] and this task's are ['bad', 'good', 'meh']" \
        in caplog.text and "'tragedy''s row now starts 'bad''s" in caplog.text
    torch.testing.assert_close(model.classifier.weight, hf.classifier.weight, rtol=0, atol=0)  # kept as it was
    caplog.clear()
    with caplog.at_level("WARNING", logger="minibert.modeling"):
        model, _ = build_model(args, Task("single_label_classification", ["no", "yes"]))
    assert model.classifier.out_features == 2
    assert "task head of another size in the checkpoint, initialised afresh" in caplog.text
    torch.testing.assert_close(model.bert.embeddings.word_embeddings.weight, hf.bert.embeddings.word_embeddings.weight)
    import minibert

    with pytest.raises(ValueError, match=r"a task head of another size .*ignore_mismatched_sizes=True"):
        minibert.load_pretrained(tmp_path / "mnli-like", num_labels=2)
    fresh = minibert.load_pretrained(tmp_path / "mnli-like", num_labels=2, ignore_mismatched_sizes=True)
    assert fresh.classifier.out_features == 2


def test_a_pair_task_on_a_one_segment_bert_is_refused_before_work(checkpoint, tmp_path, capsys):
    """It failed at the first batch with "this model takes a single segment: drop token_type_ids", which
    a train.py user cannot act on."""
    one = tmp_path / "one-segment"
    shutil.copytree(checkpoint, one)
    config = json.loads((one / "config.json").read_text())
    (one / "config.json").write_text(json.dumps({**config, "type_vocab_size": 1}))
    weights = load_file(str(one / "model.safetensors"))
    key = next(k for k in weights if "token_type_embeddings" in k)
    save_file({**weights, key: weights[key][:1].contiguous()}, str(one / "model.safetensors"))
    code = train.main(["--model_name_or_path", str(one), "--text_pair_column", "other", "--max_seq_length", "16",
                       "--output_dir", str(tmp_path / "out"), "--train_file", str(tmp_path / "missing.jsonl")])
    assert code == 2 and "has a single segment (type_vocab_size 1)" in capsys.readouterr().err


def test_dataloader_drop_last_drops_the_partial_batch_under_smart_batching(checkpoint, tmp_path):
    """20 examples in batches of 8 for one epoch: 3 steps, or 2 with --dataloader_drop_last (smart batching, on by
    default, made its own batches and kept the partial one whatever the flag said)."""
    data = write_jsonl(tmp_path / "train.jsonl", rows(20, "single"))
    valid = write_jsonl(tmp_path / "valid.jsonl", rows(8, "single", seed=1))
    steps = {}
    for drop in (False, True):
        extra = ["--max_steps", "-1", "--num_train_epochs", "1", "--eval_steps", "100"]
        result = run(checkpoint, tmp_path / str(drop), data, valid, *extra, *(["--dataloader_drop_last"] * drop))
        steps[drop] = result.history[-1]["step"]
    assert steps == {False: 3, True: 2}


def test_eval_results_json_is_strict_json_when_a_metric_is_undefined(checkpoint, tmp_path):
    """Four identical validation texts give constant predictions, so the Pearson is NaN: eval_results.json held
    bare NaNs (not JSON: jq and JavaScript refuse it), as metrics.jsonl did. They are null now."""
    data = write_jsonl(tmp_path / "train.jsonl", rows(16, "regression"))
    same = [{"sentence": "love and war", "other": "", "label": value} for value in (0.1, 0.2, 0.3, 0.4)]
    run(checkpoint, tmp_path, data, write_jsonl(tmp_path / "valid.jsonl", same))

    def refuse(name):
        pytest.fail(f"{name} written in eval_results.json")

    record = json.loads((tmp_path / "out" / "eval_results.json").read_text(), parse_constant=refuse)
    assert record["metrics"]["pearson"] is None


@pytest.mark.parametrize("swa", [False, True])
def test_the_report_of_a_run_without_validation_says_it_was_not_evaluated(checkpoint, tmp_path, capsys, swa):
    """It printed an empty "evaluations (validation set):" list and "best step None: {}", which read as a failure;
    under SWA a won average was still labelled "best step N"."""
    data = write_jsonl(tmp_path / "train.jsonl", rows(32, "single"))
    argv = ["--model_name_or_path", str(checkpoint), "--train_file", data, "--text_column", "sentence",
            "--output_dir", str(tmp_path / "out"), "--max_steps", "4", "--per_device_train_batch_size", "8",
            "--max_seq_length", "16", "--disable_tqdm", "--device", "cpu", "--plot_loss", "false",
            *(["--swa_start", "0.5"] if swa else [])]
    assert train.main(argv) == 0
    out = capsys.readouterr().out
    which = "the SWA average" if swa else "the last step's"
    assert f"final model (single_label_classification, {which}): not evaluated (no validation file" in out
    assert "evaluations (validation set)" not in out and "best step None" not in out


def test_a_validation_file_without_a_training_file_is_refused_naming_it(tmp_path, capsys):
    """The shipped genre file was trained on with the user's validation file, and the error, if any, was about
    the shipped file's columns."""
    dev = write_jsonl(tmp_path / "dev.jsonl", rows(8, "single"))
    with pytest.raises(SystemExit):
        train.parse(["--validation_file", dev, "--text_column", "sentence"])
    assert "--validation_file without --train_file" in capsys.readouterr().err
    assert train.parse(["--validation_file", dev, "--train_file", dev])[0].train_file == dev  # both given: fine


def test_a_flag_is_taken_by_its_whole_name_and_a_misspelt_one_gets_a_suggestion(capsys):
    """--max_step 20 was taken for --max_steps (argparse's prefixes); an unknown flag printed the 50-line usage
    and nothing closer."""
    for argv, hint in ((["--max_step", "20"], "--max_step: did you mean --max_steps?"),
                       (["--lr", "1e-3"], "--lr: did you mean --learning_rate?")):
        with pytest.raises(SystemExit):
            train.parse(argv)
        err = capsys.readouterr().err
        assert hint in err and "`python train.py --help` lists every flag" in err and "usage:" not in err


def test_the_report_names_the_final_model_as_saved(checkpoint, tmp_path, capsys):
    """With --load_best_model_at_end false the last step's model is saved, but the report named the best step
    beside the last step's numbers; a --multitask run without validation was told to pass --validation_file,
    which --multitask refuses."""
    data = write_jsonl(tmp_path / "train.jsonl", rows(32, "single"))
    common = ["--model_name_or_path", str(checkpoint), "--text_column", "sentence", "--max_steps", "4",
              "--per_device_train_batch_size", "8", "--max_seq_length", "16", "--disable_tqdm", "--device", "cpu",
              "--plot_loss", "false"]
    assert train.main(common + ["--train_file", data, "--validation_file", data, "--eval_steps", "1",
                                "--load_best_model_at_end", "false", "--output_dir", str(tmp_path / "last")]) == 0
    assert "final model (single_label_classification, the last step's): " in capsys.readouterr().out
    assert train.main(common + ["--multitask", f"genre={data}", "--output_dir", str(tmp_path / "multi")]) == 0
    assert "not evaluated (no validation file; give each task a validation file: --multitask NAME=TRAIN,VALIDATION)" \
        in capsys.readouterr().out

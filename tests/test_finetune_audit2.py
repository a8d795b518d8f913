"""Fine-tuning as a user runs it, a second audit; each test written against a bug it found: SWA beside
Hugging Face's eval_-prefixed metric name, labels whose kind does not fit the task (a text label's
characters taken as multi-label classes, a list as a single-label class), lists of class ids, flags of a
method that is off, errors naming the wrong flag or calling a directory missing, and evaluate_generation's
sizes of 0."""

import json

import pytest
import torch
from test_train import WORDS, tiny_checkpoint

import train
from minibert.finetune.evaluate_generation import evaluate_saved
from minibert.finetune.evaluate_generation import main as evaluate_generation_main
from minibert.finetune.task_data import Task, encode_label, infer_task, read_rows
from minibert.finetuning import METRICS, FinetuneArguments, check_methods, compute_metrics


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def genre_rows(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        words = [WORDS[j] for j in torch.randint(0, len(WORDS), (int(torch.randint(2, 8, (1,), generator=g)),),
                                                 generator=g).tolist()]
        rows.append({"text": " ".join(words), "label": "tragedy" if "death" in words or "war" in words else "comedy"})
    return rows


def run(checkpoint, tmp_path, *extra):
    data = write_jsonl(tmp_path / "train.jsonl", genre_rows(32))
    dev = write_jsonl(tmp_path / "dev.jsonl", genre_rows(12, seed=1))
    argv = ["--model_name_or_path", str(checkpoint), "--train_file", data, "--validation_file", dev,
            "--output_dir", str(tmp_path / "out"), "--max_steps", "4", "--eval_steps", "2",
            "--per_device_train_batch_size", "8", "--max_seq_length", "16", "--disable_tqdm", "--device", "cpu",
            "--learning_rate", "1e-3", *extra]
    args, training = train.parse(argv)
    training.plot_loss = False  # matplotlib's import alone takes seconds
    return train.finetune(args, training)


# -- SWA ------------------------------------------------------------------------------------------
def test_swa_takes_hugging_faces_eval_prefixed_metric_name(checkpoint, tmp_path):
    """The engine reads --metric_for_best_model eval_accuracy as accuracy (Hugging Face's spelling); the SWA
    comparison after training looked the name up as given and crashed with KeyError, saving nothing."""
    result = run(checkpoint, tmp_path, "--swa_start", "0.5", "--metric_for_best_model", "eval_accuracy")
    record = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert set(record["swa_metrics"]) == {"loss", "accuracy", "f1_macro"}
    assert record["metrics"] == result.metrics
    # the SWA average is the final model exactly when its accuracy beats the trained model's
    if result.swa_is_final:
        assert record["metrics"] == record["swa_metrics"]
    else:
        assert record["swa_metrics"]["accuracy"] <= record["metrics"]["accuracy"]


# -- labels whose kind does not fit the task ------------------------------------------------------
def test_a_multi_label_task_refuses_a_text_label_instead_of_taking_its_characters_as_classes():
    """Auto-detection refuses "tragedy|history" and names --task_type multi_label_classification as the fix; with
    the flag alone the labels stayed strings, and their characters became the classes ('a', 'c', ..., '|')."""
    with pytest.raises(ValueError, match=r"train.csv: row 1: the label 'comedy' is not a list; a multi-label task "
                                         r"writes every label as a JSON list"):
        infer_task(["comedy", "tragedy|history"], "multi_label_classification", None, "train.csv")
    task = Task("multi_label_classification", ["comedy", "history", "tragedy"])
    with pytest.raises(ValueError, match=r"dev.csv: row 2: the label 'comedy' is not a list"):
        encode_label("comedy", task, "dev.csv: row 2")  # a validation file's bare label: no character soup either
    assert encode_label('["comedy"]', task, "dev.csv: row 2") == [1.0, 0.0, 0.0]  # a JSON list in a CSV cell


def test_a_list_or_object_label_is_never_a_single_label_class():
    """A list's repr ("['comedy', 'history']") or a JSON object's was a class of its own."""
    with pytest.raises(ValueError, match=r"row 1 has the label 'comedy' and row 2 the list \['comedy', 'history'\]; "
                                         r"in a multi-label file every label is a JSON list \(write \[\"comedy\"\]"):
        infer_task(["comedy", ["comedy", "history"], "history"], "auto", None, "train.jsonl")
    with pytest.raises(ValueError, match=r"row 2: the label \['comedy', 'history'\] is a list, and the task is "
                                         r"single_label_classification; .* --task_type multi_label_classification"):
        infer_task(["comedy", ["comedy", "history"]], "single_label_classification", None, "train.jsonl")
    with pytest.raises(ValueError, match=r"row 1: the label \{'genre': 'comedy'\} is a JSON object"):
        infer_task([{"genre": "comedy"}, {"genre": "history"}], "auto", None, "train.jsonl")
    task = Task("single_label_classification", ["comedy", "history"])
    with pytest.raises(ValueError, match=r"dev.jsonl: row 3: the label \['comedy'\] is a list"):
        encode_label(["comedy"], task, "dev.jsonl: row 3")


def test_lists_of_class_ids_and_empty_lists_name_the_file_and_the_fix(tmp_path):
    """GoEmotions-style ids ([27], [0, 2]) are read as one score per class; lists of other lengths said only
    'multi-label score lists have different lengths [1, 2]', with no file and no fix, and a file of empty lists
    'num_labels must be at least 1, got 0'."""
    with pytest.raises(ValueError, match=r"train.jsonl: the labels are lists of numbers, read as one 0/1 or soft "
                                         r"score per class, but the lists have different lengths \[1, 2\]; if the "
                                         r"numbers are class ids, write them as names"):
        infer_task([[27], [0, 2]], "auto", None, "train.jsonl")
    with pytest.raises(ValueError, match=r"train.jsonl: every label is an empty list"):
        infer_task([[], []], "auto", None, "train.jsonl")
    task = infer_task([["27"], ["0", "2"]], "auto", None, "train.jsonl")  # the fix the message names works
    assert task.label_names == ["0", "2", "27"]


# -- flags of a method that is off ----------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    ({"gradual_unfreezing": True, "unfreeze_stage_steps": 0}, r"--unfreeze_stage_steps must be >= 1"),
    ({"new_encoder_layers": 3}, r"--new_encoder_layers sets up the new encoder of --new_encoder_vocab"),
    ({"task_type": "seq2seq", "target_column": "t", "new_encoder_stage_two_steps": 5},
     r"--new_encoder_stage_two_steps sets up the new encoder of --new_encoder_vocab .* or drop "
     r"--new_encoder_stage_two_steps"),
    ({"task_type": "seq2seq", "target_column": "t", "new_encoder_vocab": ".", "new_encoder_stage_two_steps": -3},
     r"--new_encoder_stage_two_steps must be >= 0"),
    ({"task_type": "causal_lm", "target_column": "t", "padding": "max_length"},
     r"--padding is a classification method that --task_type causal_lm does not support"),
])
def test_a_setting_of_a_method_that_is_off_is_refused_before_any_work(flags, message):
    """Each was accepted and did nothing (0 stage steps became one epoch: `0 or steps_per_epoch`; a negative
    stage two never came, so the pretrained BART never trained; a generation batch is padded to its longest)."""
    with pytest.raises(ValueError, match=message):
        check_methods(FinetuneArguments(**flags))


def test_zlpr_on_a_task_that_is_not_multi_label_is_refused_once_the_labels_show_it(checkpoint, tmp_path):
    """task_loss applies ZLPR to multi-label logits only: on the genre task it trained with cross-entropy."""
    with pytest.raises(ValueError, match=r"--multi_label_loss zlpr is a loss of multi-label classification, and the "
                                         r"task is single_label_classification"):
        run(checkpoint, tmp_path, "--multi_label_loss", "zlpr")
    assert not (tmp_path / "out").exists()  # refused before any training


# -- errors that name the wrong thing -------------------------------------------------------------
def test_a_missing_config_name_is_named_as_config_name(checkpoint, tmp_path, monkeypatch, capsys):
    """--model_name_or_path random reads its shape from --config_name; the error named --model_name_or_path."""
    data = write_jsonl(tmp_path / "train.jsonl", genre_rows(8))
    common = ["--train_file", data, "--validation_file", data, "--output_dir", str(tmp_path / "out")]
    assert train.main(["--model_name_or_path", "random", "--config_name", str(tmp_path / "nowhere"), *common]) == 2
    assert f"--config_name {tmp_path / 'nowhere'} is not a checkpoint directory" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # no runs/pretrain-sop here
    assert train.main(["--model_name_or_path", "random", *common]) == 2
    err = capsys.readouterr().err
    assert "runs/pretrain-sop does not exist (--model_name_or_path random reads its config" in err
    assert "or pass --config_name <checkpoint dir>" in err


def test_a_directory_given_as_a_data_file_is_named_a_directory(tmp_path):
    """It was said not to exist."""
    with pytest.raises(ValueError, match=r"is a directory; pass the file itself \(.csv, .tsv, .json or .jsonl\)"):
        read_rows(tmp_path)


# -- evaluate_generation --------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, r"--per_device_eval_batch_size must be >= 1, got 0"),  # was "range() arg 3 must not be zero"
    ({"max_new_tokens": 0}, r"--generation_max_length must be >= 1, got 0"),  # 0 took the run's limit silently
    ({"num_beams": 0}, r"--num_beams must be >= 1, got 0"),
])
def test_evaluate_generation_refuses_sizes_below_one_before_loading_anything(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_saved(tmp_path / "no-run-here", **kwargs)


def test_evaluate_generation_refuses_zero_threads(tmp_path, capsys):
    """--threads 0 was read as "not given" and used torch's default."""
    with pytest.raises(SystemExit):
        evaluate_generation_main([str(tmp_path), "--threads", "0"])
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("flags, reader", [({"ladder_side_tuning": 8}, "--ladder_side_tuning"),
                                           ({"pooling": "mean"}, "--pooling mean"),
                                           ({"adapter_size": 8, "pooling": "mean_max"}, "--pooling mean_max")])
def test_reinit_pooler_under_a_head_that_never_reads_the_pooler_is_refused(flags, reader):
    """--reinit_pooler with a ladder or a pooling head that reads the hidden states only: the pooler was drawn
    again and never read, so the flag changed nothing but the random draws after it (a tricks audit)."""
    with pytest.raises(ValueError, match=f"--reinit_pooler with {reader}: that head never reads the pooler"):
        check_methods(FinetuneArguments(reinit_pooler=True, **flags))
    for pooling in ("default", "pooler"):
        check_methods(FinetuneArguments(reinit_pooler=True, pooling=pooling))  # these read it


def test_a_metric_for_best_model_the_task_never_reports_is_refused_before_training(checkpoint, tmp_path):
    """A name no evaluation returns (a typo, or rmse on a classification task) was found at the first
    evaluation only, after the steps before it had trained. The names accepted are compute_metrics' own."""
    with pytest.raises(ValueError, match=r"--metric_for_best_model rmse: a single_label_classification task is "
                                         r"evaluated by loss, accuracy, f1_macro"):
        run(checkpoint, tmp_path, "--metric_for_best_model", "rmse")
    assert not (tmp_path / "out" / "checkpoint-2").exists()
    assert run(checkpoint, tmp_path, "--metric_for_best_model", "eval_f1_macro").metrics["f1_macro"] >= 0


def test_the_metrics_a_best_model_may_name_are_those_compute_metrics_returns():
    logits = {"regression": torch.randn(4, 1), "multi_label_classification": torch.randn(4, 3),
              "single_label_classification": torch.randn(4, 3)}
    labels = {"regression": torch.randn(4), "multi_label_classification": torch.randint(0, 2, (4, 3)).float(),
              "single_label_classification": torch.tensor([0, 1, 2, 1])}
    for problem_type, names in METRICS.items():
        task = Task(problem_type, ["a", "b", "c"] if problem_type != "regression" else [])
        assert tuple(compute_metrics(logits[problem_type], labels[problem_type], task)) == names


def test_seq2seq_sources_cut_to_max_seq_length_are_warned_of_as_targets_are(checkpoint, caplog):
    """Only cut targets were warned of: a source cut to --max_seq_length left the model the first tokens of
    its input without a word."""
    from minibert.finetune.generative import seq2seq_examples
    from minibert.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(checkpoint)
    long, short = " ".join(WORDS), "the king"
    with caplog.at_level("WARNING", logger="minibert.finetune.generative"):
        examples = seq2seq_examples([long, short, long], [short, short, long], tokenizer, max_seq_length=6)
    assert [len(e["input_ids"]) for e in examples][::2] == [6, 6]  # <s>, 4 tokens, </s>
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("2 of 3 sources are longer than --max_seq_length 6 and were cut") for m in messages)
    assert any(m.startswith("1 of 3 targets are longer than --max_seq_length 6") for m in messages), messages


def test_a_metric_for_best_model_a_multitask_run_never_reports_is_refused_before_training(checkpoint, tmp_path):
    """--multitask reports score and each task's metrics under its name (genre_accuracy, ...); another name was
    found at the first evaluation only, after checkpoint-1 had been written."""
    data = write_jsonl(tmp_path / "train.jsonl", genre_rows(16))
    dev = write_jsonl(tmp_path / "dev.jsonl", genre_rows(8, seed=1))
    argv = ["--model_name_or_path", str(checkpoint), "--multitask", f"genre={data},{dev}", f"again={data},{dev}",
            "--output_dir", str(tmp_path / "out"), "--max_steps", "2", "--eval_steps", "1", "--save_steps", "1",
            "--per_device_train_batch_size", "8", "--max_seq_length", "16", "--disable_tqdm", "--device", "cpu",
            "--metric_for_best_model", "accuracy"]
    args, training = train.parse(argv)
    training.plot_loss = False
    with pytest.raises(ValueError, match=r"--metric_for_best_model accuracy: a multi-task run is evaluated by score, "
                                         r"genre_loss, genre_accuracy, genre_f1_macro, again_loss"):
        train.finetune(args, training)
    assert not (tmp_path / "out" / "checkpoint-1").exists()
    args, training = train.parse([*argv[:-1], "eval_genre_f1_macro"])
    training.plot_loss = False
    assert "score" in train.finetune(args, training).metrics
    saved = json.loads((tmp_path / "out" / "eval_results.json").read_text())["arguments"]
    assert saved["finetune"]["multitask"] == [f"genre={data},{dev}", f"again={data},{dev}"]
    assert saved["training"]["metric_for_best_model"] == "eval_genre_f1_macro"

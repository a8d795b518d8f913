"""Fine-tuning follow-ups to test_left_alone.py, each with the test written against it: a missing data file's
message named train.py's flags in evaluate_generation (which has no --train_file) and in a --multitask run
(which refuses them); a --pooling checkpoint whose labels are the task's in another order started its
classifier afresh; a --multitask run on a --multitask run's checkpoint dropped its trained task heads without a
word (and a single-task run on one too, under a --pooling head)."""

import contextlib
import copy
import io
import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_left_alone import genre_rows
from test_train import tiny_checkpoint

import train
from minibert.finetune.classifier import PooledClassifier
from minibert.finetune.evaluate_generation import main as evaluate_generation
from minibert.finetune.multitask import MultiTaskClassifier
from minibert.finetuning import load_finetuned
from minibert.models.bert import BertModel
from minibert.tokenizer import load_tokenizer, train_tokenizer


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


class StartingModel:
    """A copy of the model as training begins (in eval mode, for logits without dropout)."""

    def on_train_begin(self, trainer):
        self.model = copy.deepcopy(trainer.model).eval()


class FinalModel:
    def on_train_end(self, trainer):
        self.model = copy.deepcopy(trainer.model).eval()


def run(model, out, *extra, data=None, callbacks=()):
    flags = [] if "--multitask" in extra else ["--train_file", data]
    args, training = train.parse(["--model_name_or_path", str(model), *flags, "--output_dir", str(out),
                                  "--max_steps", "2", "--per_device_train_batch_size", "8", "--max_seq_length", "16",
                                  "--disable_tqdm", "--device", "cpu", *extra])
    training.plot_loss = False
    return train.finetune(args, training, list(callbacks))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def some_ids(checkpoint):
    return load_tokenizer(checkpoint)(["the king and the war", "a sweet song"], padding=True, return_tensors="pt")


# -- 1. a missing data file names the flag of the command that reads it -----------------------------------
def test_evaluate_generation_names_its_own_flag_for_a_missing_file(tmp_path, monkeypatch):
    """It said "pass --train_file / --validation_file", and evaluate_generation has no --train_file."""
    run_dir = tmp_path / "run"
    train_tokenizer(["a small text", "another one"] * 10, "bytelevel_bpe", vocab_size=270,
                    min_frequency=1).save_pretrained(run_dir)
    (run_dir / "eval_results.json").write_text(json.dumps({
        "task": {"problem_type": "seq2seq", "label_names": []},
        "generation": {"text_column": "source", "target_column": "target", "max_seq_length": 24,
                       "validation_file": str(tmp_path / "dev.jsonl")}}))
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert evaluate_generation([str(run_dir), "--validation_file", "missing.jsonl"]) == 2
    assert err.getvalue() == "error: data file missing.jsonl does not exist; pass --validation_file FILE\n"


def test_a_multitask_runs_missing_file_names_its_task_spec(checkpoint, tmp_path):
    """It said "pass --train_file / --validation_file", which --multitask refuses."""
    data = write_jsonl(tmp_path / "genre.jsonl", genre_rows(16))
    for spec in (f"genre={tmp_path / 'missing.jsonl'}", f"genre={data},{tmp_path / 'missing.jsonl'}"):
        with pytest.raises(ValueError) as caught:
            run(checkpoint, tmp_path / "out", "--multitask", spec)
        assert str(caught.value) == (f"--multitask genre=...: data file {tmp_path / 'missing.jsonl'} does not exist; "
                                     "pass files that exist in --multitask genre=TRAIN[,VALIDATION[,LABEL_COLUMN]]")


# -- 2. a --pooling checkpoint of the task's labels in another order ------------------------------------
def test_a_pooled_head_of_the_same_labels_in_another_order_keeps_each_labels_row(checkpoint, tmp_path, caplog):
    """A --pooling checkpoint whose labels are the task's in another order (one built from Python, its id2label
    tragedy, comedy; train.py orders the labels comedy, tragedy): its classifier started afresh, where a family
    head's checkpoint has its rows put in the task's order."""
    torch.manual_seed(1)
    encoder = BertModel.from_pretrained(checkpoint, num_labels=2, id2label={0: "tragedy", 1: "comedy"})
    saved = PooledClassifier(encoder, "attention", 2)
    with torch.no_grad():  # a head unlike any fresh draw
        saved.classifier.weight.normal_()
        saved.classifier.bias.normal_()
    saved.save(tmp_path / "pooled")
    load_tokenizer(checkpoint).save_pretrained(tmp_path / "pooled")
    start = StartingModel()
    with caplog.at_level(logging.INFO, logger="minibert"):
        run(tmp_path / "pooled", tmp_path / "out", "--pooling", "attention",
            data=write_jsonl(tmp_path / "train.jsonl", genre_rows(16)), callbacks=[start])
    batch = some_ids(checkpoint)
    with torch.no_grad():
        before = load_finetuned(tmp_path / "pooled")(**batch).logits  # tragedy, comedy
        after = start.model(**batch).logits  # the task's order: comedy, tragedy
    torch.testing.assert_close(after, before[:, [1, 0]], rtol=1e-5, atol=1e-6)
    assert "its classifier rows put in the task's label order ['comedy', 'tragedy'] (they were ['tragedy', " \
           "'comedy'])" in caplog.text
    assert "starts afresh" not in caplog.text


# -- 3. a --multitask run on a --multitask run's checkpoint -------------------------------------------
@pytest.fixture(scope="module")
def multitask(checkpoint, tmp_path_factory):
    """A --multitask run of two tasks under --pooling attention (a pooling with weights of its own), its heads
    then set to values unlike any fresh draw (two steps may train one task only, whose head keeps its draw)."""
    path = tmp_path_factory.mktemp("multitask")
    genre = write_jsonl(path / "genre.jsonl", genre_rows(24))
    mood = write_jsonl(path / "mood.jsonl", genre_rows(24, ("calm", "grim"), seed=1))
    run(checkpoint, path / "run", "--multitask", f"genre={genre}", f"mood={mood}", "--pooling", "attention")
    model = load_finetuned(path / "run")
    torch.manual_seed(2)
    with torch.no_grad():
        for p in [*model.poolings.parameters(), *model.classifiers.parameters()]:
            p.normal_()
    model.save(path / "run")
    return path


def test_a_multitask_run_fine_tunes_on_from_the_trained_task_heads(multitask, checkpoint, tmp_path, caplog):
    """The heads of the tasks of the same name and labels start as trained (they all started afresh, with no
    word); one renamed starts afresh, and the warnings name it and the saved head it drops."""
    saved = load_finetuned(multitask / "run")
    start, final = StartingModel(), FinalModel()
    with caplog.at_level(logging.INFO, logger="minibert"):
        run(multitask / "run", tmp_path / "out", "--multitask", f"genre={multitask / 'genre.jsonl'}",
            f"feeling={multitask / 'mood.jsonl'}", "--pooling", "attention", callbacks=[start, final])
    batch = some_ids(checkpoint)
    with torch.no_grad():
        torch.testing.assert_close(start.model(**batch, task=0).logits, saved(**batch, task=0).logits,
                                   rtol=1e-5, atol=1e-6)
    for name, value in start.model.poolings["genre"].state_dict().items():
        torch.testing.assert_close(value, saved.poolings["genre"].state_dict()[name], rtol=0, atol=0)
    assert not torch.equal(start.model.classifiers["feeling"].weight, saved.classifiers["mood"].weight)
    assert "fine-tuning on from the trained --pooling attention heads of" in caplog.text
    assert "task_heads.safetensors): genre\n" in caplog.text + "\n"
    assert "these heads start afresh: feeling (no trained head of that name)" in caplog.text
    assert "the trained heads of its tasks mood are dropped, as this run has no task of that name" in caplog.text
    # the result is saved as itself, and loads as trained
    loaded = load_finetuned(tmp_path / "out")
    assert isinstance(loaded, MultiTaskClassifier) and loaded.names == ["genre", "feeling"]
    with torch.no_grad():
        for task in (0, 1):
            torch.testing.assert_close(loaded(**batch, task=task).logits, final.model(**batch, task=task).logits,
                                       rtol=1e-5, atol=1e-6)


def test_a_multitask_task_of_other_labels_keeps_its_pooling(multitask, tmp_path, caplog):
    saved = load_file(str(multitask / "run" / "task_heads.safetensors"))
    other = write_jsonl(tmp_path / "other.jsonl", genre_rows(24, ("no", "yes")))
    start = StartingModel()
    with caplog.at_level(logging.WARNING, logger="minibert"):
        run(multitask / "run", tmp_path / "out", "--multitask", f"genre={other}", "--pooling", "attention",
            callbacks=[start])
    for name, value in start.model.poolings["genre"].state_dict().items():
        torch.testing.assert_close(value, saved[f"poolings.genre.{name}"], rtol=0, atol=0)
    assert not torch.equal(start.model.classifiers["genre"].weight, saved["classifiers.genre.weight"])
    assert ("these heads start afresh: genre's classifier (trained for the single_label_classification labels "
            "['comedy', 'tragedy'], and this task's are the single_label_classification labels ['no', 'yes']; its "
            "trained pooling is kept)") in caplog.text


def test_a_multitask_task_of_the_same_labels_in_another_order_keeps_each_labels_row(checkpoint, tmp_path):
    torch.manual_seed(1)
    saved = MultiTaskClassifier(BertModel.from_pretrained(checkpoint), {"genre": {
        "num_labels": 2, "problem_type": "single_label_classification", "label_names": ["tragedy", "comedy"]}},
        "mean")
    with torch.no_grad():
        saved.classifiers["genre"].weight.normal_()
        saved.classifiers["genre"].bias.normal_()
    saved.save(tmp_path / "saved")
    load_tokenizer(checkpoint).save_pretrained(tmp_path / "saved")
    start = StartingModel()
    genre = write_jsonl(tmp_path / "g.jsonl", genre_rows(16))
    run(tmp_path / "saved", tmp_path / "out", "--multitask", f"genre={genre}", "--pooling", "mean", callbacks=[start])
    batch = some_ids(checkpoint)
    with torch.no_grad():
        before = load_finetuned(tmp_path / "saved")(**batch, task=0).logits  # tragedy, comedy
        after = start.model(**batch, task=0).logits  # comedy, tragedy
    torch.testing.assert_close(after, before[:, [1, 0]], rtol=1e-5, atol=1e-6)


def test_a_multitask_run_of_another_pooling_says_what_is_dropped(multitask, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="minibert"):
        run(multitask / "run", tmp_path / "out", "--multitask", f"genre={multitask / 'genre.jsonl'}", "--pooling",
            "mean")
    assert ("was saved by a --multitask run pooling with --pooling attention: its trained task heads (genre, mood, "
            "in task_heads.safetensors) are dropped, and each task's head (--pooling mean) starts afresh; pass "
            "--pooling attention to fine-tune on from them") in caplog.text


@pytest.mark.parametrize("extra, head", [((), "BertForSequenceClassification's own classifier"),
                                         (("--pooling", "attention"), "--pooling attention")])
def test_a_single_task_run_on_a_multitask_checkpoint_says_what_is_dropped(multitask, tmp_path, caplog, extra, head):
    with caplog.at_level(logging.WARNING, logger="minibert"):
        run(multitask / "run", tmp_path / "out", *extra, data=str(multitask / "genre.jsonl"))
    assert (f"was saved by a --multitask run: its trained task heads (genre, mood, in task_heads.safetensors) are "
            f"dropped, and this run's head ({head}) starts afresh; to fine-tune on from one, run --multitask with a "
            "task of its name (NAME=TRAIN[,VALIDATION]), which may be the only one, and --pooling attention") \
        in caplog.text


@pytest.mark.parametrize("extra", [("--multitask", "genre=GENRE"), ()])
def test_a_directory_with_the_old_stale_multitask_marker_trains_on_with_a_warning(multitask, tmp_path, caplog,
                                                                                 extra):
    """A single task trained on from a --multitask run by an older minibert saved config.json with the multitask
    marker and no task_heads.safetensors: a --multitask run on it crashed (FileNotFoundError), and a single task
    was told of heads "dropped" that were never there."""
    stale = tmp_path / "stale"
    shutil.copytree(multitask / "run", stale)
    (stale / "task_heads.safetensors").unlink()
    extra = tuple(e.replace("GENRE", str(multitask / "genre.jsonl")) for e in extra)
    with caplog.at_level(logging.WARNING, logger="minibert"):
        run(stale, tmp_path / "out", *extra, "--pooling", "attention", data=str(multitask / "genre.jsonl"))
    assert ("config.json names --multitask heads (genre, mood) but the directory holds no task_heads.safetensors"
            in caplog.text)
    assert "are dropped" not in caplog.text


def test_load_finetuned_of_a_directory_with_a_stale_marker_loads_what_its_weights_are(multitask, tmp_path, caplog):
    """train.py warned and carried on; load_finetuned crashed on the missing heads file."""
    from minibert.models.bert import BertForSequenceClassification

    run(multitask / "run", tmp_path / "family", data=str(multitask / "genre.jsonl"))
    stale = tmp_path / "family"
    config = json.loads((stale / "config.json").read_text())
    config["minibert_multitask"] = {"tasks": {"genre": {}}, "pooling": "mean"}  # as an older minibert left it
    (stale / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="minibert"):
        model = load_finetuned(stale)
    assert isinstance(model, BertForSequenceClassification)
    assert "names a minibert head saved in task_heads.safetensors, which the directory lacks" in caplog.text


def test_a_list_flag_given_twice_keeps_every_value():
    """`--multitask a=... --multitask b=...` trained b alone, and `--corpus a --corpus b` read b alone: argparse's
    plain store keeps the last. Now each adds to the list; given once or not at all, nothing changes."""
    import pretrain

    args, _ = train.parse(["--multitask", "a=x.jsonl", "--multitask", "b=y.jsonl", "c=z.jsonl"])
    assert args.multitask == ["a=x.jsonl", "b=y.jsonl", "c=z.jsonl"]
    assert train.parse([])[0].multitask is None
    assert pretrain.parse_args(["--corpus", "a.txt", "--corpus", "b.txt"]).corpus == ["a.txt", "b.txt"]
    assert pretrain.parse_args([]).corpus == ["shakespeare"]

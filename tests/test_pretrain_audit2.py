"""A second audit of pretraining's orchestration and command line: flags the run would ignore, held-out sets too
small to read, best-model flags without a held-out set, the passes of an epoch-counted two-phase run, and bad
values refused before any data work. Each test fails without its fix."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_pretrain import cli  # pretrain.py's main() in this process: (exit code, stderr)

from minibert.data import build_objective, read_records
from minibert.engine import TrainingArguments
from minibert.pretraining import PretrainingOptions, eval_warning, run_pretraining
from minibert.tokenizer import train_tokenizer

ROOT = Path(__file__).parent.parent
BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture
def no_tokenizer_training(monkeypatch):
    import minibert.pretraining

    def refuse(*args, **kwargs):
        raise AssertionError("a tokenizer was trained before the arguments were checked")

    monkeypatch.setattr(minibert.pretraining, "train_tokenizer", refuse)


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BERT))
    return path


def plays(path: Path, titles, chars: int = 1500) -> Path:
    """Shakespeare's first scenes as JSON lines, under the given titles (one per record)."""
    records = read_records("shakespeare")[: len(titles)]
    path.write_text("".join(json.dumps({"title": title, "text": record["text"][:chars]}) + "\n"
                            for title, record in zip(titles, records, strict=True)))
    return path


def test_a_size_the_run_would_ignore_is_refused_before_any_work(tmp_path, config, no_tokenizer_training):
    """--init_from builds the model from its own config.json and takes its tokenizer, --config_file gives the
    size and --tokenizer the vocabulary: --config_file, --model_size and --vocab_size beside them were silently
    ignored (--init_from with a 3-layer --config_file saved a 1-layer model, as --init_from's)."""
    checkpoint, tokenizer = tmp_path / "checkpoint", tmp_path / "tokenizer"  # never read: refused before
    common = ("--objective", "mlm", "--max_steps", "1", "--output_dir", tmp_path / "run")
    cases = [
        (("--init_from", checkpoint, "--config_file", config), "--config_file"),
        (("--init_from", checkpoint, "--model_size", "small"), "--model_size small with --init_from"),
        (("--config_file", config, "--model_size", "large"), "--model_size large with --config_file"),
        (("--config_file", config, "--tokenizer", tokenizer, "--vocab_size", "5000"),
         "--vocab_size 5000 with --tokenizer"),
        (("--init_from", checkpoint, "--vocab_size", "100"), "--vocab_size 100 with --init_from"),
    ]
    for flags, message in cases:
        code, err = cli(*common, *flags)
        assert code == 1 and message in err and "would be ignored" in err, err
    code, err = cli(*common, "--init_from", checkpoint, "--config_file", config)
    assert "with --init_from" in err and "drop --config_file" in err
    assert not (tmp_path / "run").exists()


def test_a_resume_keeps_vocab_size_as_the_first_command_gave_it(config):
    """The resume command is the first one with --resume_from_checkpoint added: --vocab_size stays allowed."""
    spec = importlib.util.spec_from_file_location("pretrain_cli", ROOT / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--config_file", str(config), "--vocab_size", "300", "--resume_from_checkpoint", "last"]
    ns = module.parse_args(argv)
    module.check_flags_apply({"--config_file", "--vocab_size", "--resume_from_checkpoint"}, ns)  # no error
    # nor with the --tokenizer a resume from a checkpoint without tokenizer files is told to add
    argv += ["--tokenizer", str(config.parent)]
    module.check_flags_apply({"--config_file", "--vocab_size", "--resume_from_checkpoint", "--tokenizer"},
                             module.parse_args(argv))
    with pytest.raises(ValueError, match="--vocab_size 300 with --tokenizer"):  # a first run: ignored, refused
        first_run = module.parse_args(argv[:4] + argv[6:])
        module.check_flags_apply({"--config_file", "--vocab_size", "--tokenizer"}, first_run)


@pytest.mark.parametrize("objective", ["clm", "bart"])
def test_a_clm_or_bart_held_out_set_of_a_few_hundred_tokens_is_flagged(objective):
    """The masked objectives were warned under 20,000 masked tokens; clm and bart predict every token, yet
    their held-out numbers were printed without a word however few tokens they came from (27 examples of a
    few lines each: 864 tokens)."""
    tokenizer = train_tokenizer(["The king is gone. Where art thou, my lord? Good night, sweet prince."],
                                kind="bytelevel_bpe", vocab_size=300, frame=objective == "bart")
    evaluation = build_objective(objective, tokenizer, 32)
    example = ({"input_ids": np.zeros(32, dtype=np.int64)} if objective == "clm"
               else {"sentences": [np.zeros(16, dtype=np.int64), np.zeros(16, dtype=np.int64)]})
    warning = eval_warning(evaluation, [example] * 27, ["As You Like It", "Henry V"])
    assert warning is not None and "about 864 predicted tokens (want >= 20,000)" in warning, warning
    assert eval_warning(evaluation, [example] * 700, ["As You Like It", "Henry V"]) is None  # 22,400 tokens


def test_best_model_flags_with_nothing_held_out_are_refused(tmp_path, config, no_tokenizer_training, monkeypatch):
    """With nothing held out there is no evaluation to pick a checkpoint by: --load_best_model_at_end saved the
    last step's model and --metric_for_best_model took any name, without a word."""
    code, err = cli("--objective", "mlm", "--config_file", config, "--validation_share", "0",
                    "--load_best_model_at_end", "--metric_for_best_model", "mlm_accuracy", "--max_steps", "1",
                    "--output_dir", tmp_path / "run")
    assert code == 1 and "--load_best_model_at_end and --metric_for_best_model pick the best checkpoint" in err, err
    assert "--validation_share 0 holds nothing out" in err and not (tmp_path / "run").exists()
    # a corpus of one work holds nothing out either: found once it is read, before anything is written
    monkeypatch.undo()
    corpus = plays(tmp_path / "one_work.jsonl", ["Hamlet"] * 6)
    code, err = cli("--objective", "mlm", "--config_file", config, "--corpus", corpus, "--vocab_size", "300",
                    "--max_seq_length", "32", "--metric_for_best_model", "no_such_metric", "--max_steps", "1",
                    "--data_cache_dir", tmp_path / "cache", "--output_dir", tmp_path / "run", "--device", "cpu")
    assert code == 1 and "--metric_for_best_model picks the best checkpoint" in err, err
    assert "nothing is held out (the corpus is one work)" in err and not (tmp_path / "run").exists()


def test_the_passes_of_an_epoch_counted_two_phase_run_count_both_phases(tmp_path, config):
    """--num_train_epochs with --max_seq_length_phase2: the engine runs that many epochs of the first phase's
    batches, the last --phase2_ratio of those steps over the (fewer) longer examples. The passes printed were
    the epochs, 2.0, where the run made 4.9, and the memorisation warning (past 3) stayed silent."""
    corpus = plays(tmp_path / "corpus.jsonl", [f"play {i}" for i in range(6)], chars=600)
    options = PretrainingOptions(objective="mlm", corpus=[str(corpus)], config_file=str(config), vocab_size=300,
                                 max_seq_length=16, max_seq_length_phase2=64, validation_share=0.0,
                                 data_cache_dir=str(tmp_path / "cache"))
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=-1, num_train_epochs=2, phase2_ratio=0.5,
                             per_device_train_batch_size=8, logging_steps=1, save_steps=1000, device="cpu",
                             plot_loss=False)
    result = run_pretraining(options, args)
    last_epoch = {r["phase"]: r["epoch"] for r in result.train.history if "loss" in r}
    assert set(last_epoch) == {0, 1} and last_epoch[1] > 2  # the case: the second phase goes over its examples often
    assert math.isclose(result.passes, last_epoch[0] + last_epoch[1], rel_tol=0.05), (result.passes, last_epoch)


def test_a_bad_dropout_or_masking_rate_names_its_flag_before_any_data_work(tmp_path, config, no_tokenizer_training):
    """Checked only where the model and the objective are built, after the tokenizer was trained and the corpus
    tokenised, and named as a config field: "resid_pdrop must be in [0, 1)" for --dropout."""
    common = ("--config_file", config, "--max_steps", "1", "--output_dir", tmp_path / "run")
    cases = [(("--dropout", "1.5"), "--dropout must be in [0, 1), got 1.5"),
             (("--objective", "clm", "--dropout", "-0.1"), "--dropout must be in [0, 1), got -0.1"),
             (("--dropout", "nan"), "--dropout must be in [0, 1), got nan"),
             (("--objective", "electra", "--mlm_probability", "1.5"), "--mlm_probability must be in (0, 1), got 1.5"),
             (("--mlm_probability", "0"), "--mlm_probability must be in (0, 1), got 0.0")]
    for flags, message in cases:
        code, err = cli(*common, *flags)
        assert code == 1 and message in err, err
    assert not (tmp_path / "run").exists()
    # bart and clm keep their own message: they take no --mlm_probability at all
    code, err = cli(*common, "--objective", "bart", "--mlm_probability", "1.5")
    assert code == 1 and "--mlm_probability applies to the masked-LM objectives" in err, err


def test_held_out_works_holding_most_of_the_text_are_warned_of(tmp_path, config, caplog):
    """Works are held out whole: a folder of four files, one of them most of the text, held out 80% of its
    tokens at --validation_share 0.2 (and the tokenizer never saw them), said only by the summary's counts."""
    from minibert.data.corpus import split_works

    titles = [f"play {i}" for i in range(5)]
    (big,) = split_works(titles, 0.2)
    records = read_records("shakespeare")[:5]
    for name, big_chars in (("balanced", 1500), ("lopsided", 30000)):
        corpus = tmp_path / f"{name}.jsonl"
        corpus.write_text("".join(json.dumps({"title": t, "text": r["text"][:big_chars if t == big else 1500]}) + "\n"
                                  for t, r in zip(titles, records, strict=True)))
        options = PretrainingOptions(objective="mlm", corpus=[str(corpus)], config_file=str(config), vocab_size=300,
                                     max_seq_length=32, validation_share=0.2, data_cache_dir=str(tmp_path / "cache"))
        args = TrainingArguments(output_dir=str(tmp_path / name), max_steps=1, per_device_train_batch_size=4,
                                 save_steps=1000, device="cpu", plot_loss=False)
        caplog.clear()
        with caplog.at_level("WARNING", logger="minibert.pretraining"):
            run_pretraining(options, args)
        warned = f"the held-out works ({big}) hold" in caplog.text
        assert warned == (name == "lopsided"), caplog.text
    assert "where --validation_share asks 20%: works are held out whole, and this corpus has 5" in caplog.text


def test_a_tokenizer_whose_ids_name_other_tokens_than_init_froms_is_refused(tmp_path):
    """pretrain.py --tokenizer with --init_from took a tokenizer of the same pad id and no more tokens, whose ids
    named other pieces than the checkpoint's own (train.py --tokenizer_name refused it)."""
    from minibert.models.bert import BertConfig, BertForMaskedLM

    corpus = plays(tmp_path / "corpus.jsonl", ["a", "b", "c"], chars=800)
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
    own = train_tokenizer(texts, kind="wordpiece", vocab_size=200, min_frequency=1)
    own.save_pretrained(tmp_path / "ckpt")
    BertForMaskedLM(BertConfig(vocab_size=own.vocab_size, pad_token_id=own.pad_token_id, **BERT)).save_pretrained(
        tmp_path / "ckpt")
    other = train_tokenizer(texts[1:], kind="wordpiece", vocab_size=150, min_frequency=1)  # same specials, other words
    other.save_pretrained(tmp_path / "other")
    code, err = cli("--objective", "mlm", "--corpus", corpus, "--init_from", tmp_path / "ckpt", "--tokenizer",
                    tmp_path / "other", "--output_dir", tmp_path / "run", "--device", "cpu")
    assert code == 1 and f"--tokenizer {tmp_path / 'other'} is not the tokenizer saved with --init_from" in err, err
    assert not (tmp_path / "run").exists()


def test_a_text_column_for_text_files_only_is_refused(tmp_path, no_tokenizer_training):
    """--text_column names a JSON field or a CSV / TSV column; with a corpus of .txt files only it was silently
    ignored (the run read the whole file). A corpus with one file that has columns keeps it."""
    text = tmp_path / "a.txt"
    text.write_text("One document.\n\nAnother one.\n")
    common = ("--objective", "mlm", "--max_steps", "1", "--output_dir", tmp_path / "run")
    code, err = cli(*common, "--corpus", text, "--text_column", "sentence")
    assert code == 1 and "--text_column sentence with a corpus of text files only" in err, err
    assert "would be ignored" in err and not (tmp_path / "run").exists()
    rows = plays(tmp_path / "b.jsonl", ["a"])
    code, err = cli(*common, "--corpus", text, rows, "--text_column", "sentence")
    assert "text files only" not in err  # b.jsonl has fields: the run goes on (to b.jsonl's own message)
    assert "has no string `sentence` field" in err, err


def test_preparation_workers_below_one_are_refused():
    """--preparation_workers 0 (or -2) prepared in this process without a word, as 1 does."""
    for workers in (0, -2):
        with pytest.raises(ValueError, match=f"--preparation_workers must be at least 1, got {workers}"):
            PretrainingOptions(preparation_workers=workers)
    assert PretrainingOptions(preparation_workers=1).preparation_workers == 1

"""The prepared-data format (minibert.data.prepared): a corpus tokenised once into memory-mapped
arrays, reused while its files and the tokenizer are unchanged, read lazily by every objective."""

import json
import pickle
import shutil

import numpy as np
import pytest

import minibert.data.prepared as prepared
from minibert.data import OBJECTIVES, build_objective, load_corpus, read_records
from minibert.data.prepared import NotEnoughDiskSpace, TokenizedCorpus, prepare_corpus
from minibert.tokenizer import train_tokenizer

MSL = 64


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    """A directory of three "books" (plain text, one document per scene, blank lines between)."""
    folder = tmp_path_factory.mktemp("books")
    scenes = [r["text"][:2500] for r in read_records("shakespeare")[:24]]
    for b in range(3):
        (folder / f"book{b}.txt").write_text("\n\n".join(scenes[b * 8:(b + 1) * 8]) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def tokenizers(books):
    texts = [" ".join(d) for d in load_corpus(books)]
    return {"wordpiece": train_tokenizer(texts, vocab_size=600),
            "bytelevel_bpe": train_tokenizer(texts, kind="bytelevel_bpe", vocab_size=600)}


def _same(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_reads_the_prepared_arrays_as_it_reads_documents(name, books, tokenizers, tmp_path):
    tokenizer = tokenizers["wordpiece" if OBJECTIVES[name].model_family == "bert" else "bytelevel_bpe"]
    objective = build_objective(name, tokenizer, MSL)
    corpus = prepare_corpus(books, tokenizer, tmp_path, words=objective.word_rule)
    lazy, direct = objective.examples(corpus), objective.examples(load_corpus(books))
    assert len(lazy) == len(direct) > 10
    for i in range(len(lazy)):
        assert lazy[i].keys() == direct[i].keys() and all(_same(lazy[i][k], direct[i][k]) for k in lazy[i])
    shard = corpus.shards[0]
    assert isinstance(shard.tokens, np.memmap) and shard.tokens.dtype == np.uint16  # 600 ids fit 16 bits


def test_prepared_once_reused_and_prepared_again_when_a_file_changes(books, tokenizers, tmp_path, monkeypatch):
    folder = tmp_path / "corpus"
    shutil.copytree(books, folder)
    tokenizer = tokenizers["wordpiece"]
    first = prepare_corpus(folder, tokenizer, tmp_path / "cache")
    calls = []
    real = prepared.DocumentTokenizer.__call__
    monkeypatch.setattr(prepared.DocumentTokenizer, "__call__",
                        lambda self, docs: calls.append(len(docs)) or real(self, docs))
    again = prepare_corpus(folder, tokenizer, tmp_path / "cache")
    assert calls == [] and [s.directory for s in again.shards] == [s.directory for s in first.shards]

    # a new file: only it is prepared
    (folder / "book3.txt").write_text("A new book. It has two sentences.\n\nAnd a second scene here.\n")
    grown = prepare_corpus(folder, tokenizer, tmp_path / "cache")
    assert len(calls) == 1 and len(grown.shards) == 4 and len(grown) == len(first) + 2

    # an edited file: a new fingerprint, prepared again, the old arrays never mixed in
    (folder / "book0.txt").write_text("Only this now. Nothing else.\n")
    edited = prepare_corpus(folder, tokenizer, tmp_path / "cache")
    assert len(calls) == 2 and edited.shards[0].directory != first.shards[0].directory
    assert edited.tokens(0, 0, edited.shards[0].sentences[-1]).tolist() == tokenizer.encode(
        " Only this now.") + tokenizer.encode(" Nothing else.")

    # a removed file is no longer read
    (folder / "book1.txt").unlink()
    assert len(prepare_corpus(folder, tokenizer, tmp_path / "cache").shards) == 3


def test_another_tokenizer_never_reads_the_cache(books, tokenizers, tmp_path):
    a = prepare_corpus(books, tokenizers["wordpiece"], tmp_path)
    b = prepare_corpus(books, tokenizers["bytelevel_bpe"], tmp_path)
    other_vocab = train_tokenizer([" ".join(d) for d in load_corpus(books)], vocab_size=500)
    c = prepare_corpus(books, other_vocab, tmp_path)
    directories = [{s.directory.parent for s in corpus.shards} for corpus in (a, b, c)]
    assert all(len(d) == 1 for d in directories) and len(set.union(*directories)) == 3
    first_sentence = load_corpus(books)[0][0]
    end = int(c.shards[0].sentences[1])
    assert c.tokens(0, 0, end).tolist() == other_vocab.encode(" " + first_sentence)


def test_an_interrupted_preparation_is_never_read(books, tokenizers, tmp_path, monkeypatch):
    tokenizer = tokenizers["wordpiece"]

    def fail(self, docs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepared.DocumentTokenizer, "__call__", fail)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(books, tokenizer, tmp_path)
    monkeypatch.undo()
    root = next((tmp_path / "prepared").iterdir())
    assert list(root.iterdir()) == []  # the half-written directory was removed
    corpus = prepare_corpus(books, tokenizer, tmp_path)
    assert all((s.directory / "meta.json").is_file() for s in corpus.shards)


def test_a_disk_too_small_is_named_before_any_work(books, tokenizers, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(NotEnoughDiskSpace, match=r"needs about [\d,]+ MB and 1 MB are free.*--data_cache_dir"):
        prepare_corpus(books, tokenizers["wordpiece"], tmp_path)
    assert not any((tmp_path / "prepared").rglob("*.bin"))


def test_parallel_preparation_gives_the_same_arrays(books, tokenizers, tmp_path, monkeypatch):
    tokenizer = tokenizers["wordpiece"]
    inline = prepare_corpus(books / "book0.txt", tokenizer, tmp_path / "a", workers=1)
    monkeypatch.setattr(prepared, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(prepared, "CHUNK_CHARS", 3000)  # several chunks, handed to 2 processes
    parallel = prepare_corpus(books / "book0.txt", tokenizer, tmp_path / "b", workers=2)
    for name in prepared.ARRAYS:
        assert np.array_equal(getattr(inline.shards[0], name), getattr(parallel.shards[0], name)), name
    assert inline.work_names() == parallel.work_names()


def test_shards_travel_to_dataloader_workers_by_path(books, tokenizers, tmp_path):
    corpus = prepare_corpus(books, tokenizers["wordpiece"], tmp_path)
    copy = pickle.loads(pickle.dumps(corpus))
    assert len(pickle.dumps(corpus.shards[0])) < 1000  # the path, not the arrays
    assert isinstance(copy.shards[0].tokens, np.memmap)
    assert np.array_equal(copy.shards[0].tokens, corpus.shards[0].tokens)


def test_work_names_and_subsets(tmp_path, tokenizers):
    rows = [{"title": "Play A", "text": "One. Two."}, {"text": "   "}, {"title": "Play B", "text": "Three. Four."},
            {"text": "Five. Six."}]
    path = tmp_path / "plays.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus = prepare_corpus(path, tokenizers["wordpiece"], tmp_path / "cache")
    assert corpus.work_names() == ["Play A", "Play B", "document 3"]  # record 1 holds no text, yet counts
    sub = corpus.subset(np.array([2, 0]))
    assert isinstance(sub, TokenizedCorpus) and sub.work_names() == ["Play A", "document 3"]
    objective = build_objective("mlm", tokenizers["wordpiece"], MSL)
    assert len(objective.examples(sub)) == 2


def test_resume_from_the_prepared_format_is_exact(books, tmp_path):
    """The engine's exact-resume guarantee holds on memory-mapped data: the data position in the
    checkpoint picks up the same lazy examples, with the same masks."""
    from minibert.engine import TrainingArguments
    from minibert.pretraining import PretrainingOptions, run_pretraining

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                  "intermediate_size": 64}))

    class StopAfter3:  # an interruption after step 3 (its checkpoint saved), as a SIGTERM would make
        def on_step_end(self, trainer):
            trainer.should_stop = trainer.state.global_step == 3

    def run(directory, steps, resume=None, callbacks=()):
        options = PretrainingOptions(objective="wwm", corpus=[str(books)], config_file=str(config), vocab_size=300,
                                     max_seq_length=32, max_eval_examples=8, data_cache_dir=str(tmp_path / "cache"))
        args = TrainingArguments(output_dir=str(directory), max_steps=steps, per_device_train_batch_size=4,
                                 logging_steps=1, save_steps=3, learning_rate=1e-3, device="cpu", plot_loss=False,
                                 resume_from_checkpoint=resume)
        history = run_pretraining(options, args, callbacks=callbacks).train.history
        return [(r["step"], r["loss"]) for r in history if "loss" in r]

    straight = run(tmp_path / "straight", 6)
    assert run(tmp_path / "stopped", 6, callbacks=[StopAfter3()])[-1][0] == 3
    resumed = run(tmp_path / "stopped", 6, resume="last")
    assert resumed[-3:] == straight[-3:] and [s for s, _ in resumed][-3:] == [4, 5, 6]


def test_a_fine_tuning_file_is_a_corpus_through_its_text_column(tmp_path, tokenizers):
    """Further pretraining on task text (Gururangan et al. 2020): CSV/TSV rows and JSON lines whose text sits
    in another column are read through --text_column, and the column is part of the cache key."""
    rows = [("Speak, I charge thee. Stay and speak.", "tragedy"), ("What is the matter? Nothing, my lord.", "comedy")]
    table = tmp_path / "train.csv"
    table.write_text("sentence,label\n" + "".join(f'"{t}",{g}\n' for t, g in rows), encoding="utf-8")
    tsv = tmp_path / "train.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"{t}\t{g}\n" for t, g in rows), encoding="utf-8")
    expected = [["Speak, I charge thee.", "Stay and speak."], ["What is the matter?", "Nothing, my lord."]]
    assert load_corpus(table, text_column="sentence") == expected == load_corpus(tsv, text_column="sentence")
    corpus = prepare_corpus(table, tokenizers["wordpiece"], tmp_path / "cache", text_column="sentence")
    assert len(corpus) == 2 and corpus.work_names() == ["document 0", "document 1"]
    with pytest.raises(ValueError, match=r"has no `text` column \(its columns: sentence, label\); pass --text_column"):
        load_corpus(table)
    lines = tmp_path / "train.jsonl"
    lines.write_text(json.dumps({"speech": "One. Two."}) + "\n")
    with pytest.raises(ValueError, match=r"no string `text` field \(its fields: speech\).*--text_column"):
        prepare_corpus(lines, tokenizers["wordpiece"], tmp_path / "cache")
    assert load_corpus(lines, text_column="speech") == [["One.", "Two."]]


def test_a_killed_preparations_folder_is_removed_once_abandoned(tmp_path):
    """kill -9 (or the OOM killer) leaves `<name>.tmp-<pid>`; the next preparation removes it once its
    process is gone and nothing was written in it for an hour, and keeps anything that may be live."""
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    final = tmp_path / "cache" / "book-0123"
    old = final.with_name(f"{final.name}.tmp-{int(dead.stdout)}")
    recent = final.with_name(f"{final.name}.tmp-{int(dead.stdout) + 1}")  # pids are reused; treat it as recent
    live = final.with_name(f"{final.name}.tmp-{os.getppid()}")
    for folder in (old, recent, live):
        folder.mkdir(parents=True)
        (folder / "tokens.bin").write_bytes(b"x" * 10)
    hour_ago = os.path.getmtime(old) - prepared.ABANDONED_AFTER - 60
    for folder in (old, live):
        for p in (folder, folder / "tokens.bin"):
            os.utime(p, (hour_ago, hour_ago))
    prepared.remove_abandoned_temporaries(final)
    assert not old.exists() and recent.exists() and live.exists()


def test_preparation_workers_leave_ctrl_c_to_the_main_process(tokenizers, monkeypatch):
    """Ctrl-C reaches every process of the terminal's group: each worker printed its own KeyboardInterrupt
    traceback (three of them, 99 lines, over the command's message)."""
    import signal

    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # set back after the test, as the handler below
    before = signal.getsignal(signal.SIGINT)
    try:
        prepared._init_worker(tokenizers["wordpiece"], "vocab")
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)

"""An audit of corpus reading and preparation (minibert.data.corpus, minibert.data.prepared): each test
failed before the fix it names."""

import errno
import json
import os
from pathlib import Path

import pytest

import minibert.data.prepared as prepared
from minibert.data.corpus import corpus_file_list, corpus_files, load_works
from minibert.data.prepared import CacheNotWritable, prepare_corpus
from minibert.pretraining import scan_work_names
from minibert.tokenizer import train_tokenizer

TEXTS = ["The cat sat on the mat. The dog ran far away! Where is the bird?",
         "Alpha beta gamma. Delta epsilon zeta. Eta theta iota kappa."] * 5


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=200)


def _two_files(folder: Path) -> Path:
    folder.mkdir()
    (folder / "a.txt").write_text("The cat sat. The dog ran.\n\nWhere is the bird?\n", encoding="utf-8")
    (folder / "b.txt").write_text("Alpha beta. Gamma delta.\n", encoding="utf-8")
    return folder


def test_hidden_names_and_what_is_not_a_file_in_a_corpus_directory_are_passed_over(tmp_path, tokenizer):
    """macOS's AppleDouble `._a.txt` (mostly NUL bytes: valid UTF-8) was trained on as a work of its own; an
    editor's lock `.#a.txt` (a dangling link) and a folder named `old.txt` stopped the run with a traceback."""
    folder = _two_files(tmp_path / "corpus")
    (folder / "._a.txt").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 40
                                     + b"ATTR\x00\x00com.apple.quarantine\x00q/0081;5f2a;Safari;" + b"\x00" * 60)
    os.symlink("user@host.1234", folder / ".#a.txt")
    (folder / "old.txt").mkdir()
    assert [p.name for p in corpus_files(folder)] == ["a.txt", "b.txt"]
    corpus = prepare_corpus(folder, tokenizer, tmp_path / "cache")
    assert sorted(set(corpus.work_names())) == ["a.txt", "b.txt"]
    assert [p.name for p in corpus_files(folder / "._a.txt")] == ["._a.txt"]  # named on its own, it is read
    # a directory of hidden corpus files only: the error names them (it said the directory held none)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".part-0001.txt").write_text("The cat sat.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"holds no .*\(passed over, hidden or not a file: \.part-0001\.txt\)"):
        corpus_files(hidden)


def test_an_unreadable_corpus_file_is_named_not_blamed_on_the_cache(tmp_path, tokenizer, monkeypatch):
    """Reading the corpus went through the same conversion as writing the cache: a corpus file this user could
    not read was reported as "cannot write the prepared corpus into the data cache"."""
    file = tmp_path / "c.txt"
    file.write_text("The cat sat.\n\nThe dog ran.\n", encoding="utf-8")
    real_open = open

    def unreadable(name, *args, **kwargs):
        if str(name) == str(file):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(name))
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr("builtins.open", unreadable)
    with pytest.raises(PermissionError, match=r"c\.txt"):
        prepare_corpus(file, tokenizer, tmp_path / "cache", workers=0)


def test_a_title_of_0_or_false_names_the_same_work_for_the_tokenizer_and_for_training(tmp_path, tokenizer):
    """The tokenizer's documents (scan_work_names) and load_works read a JSON title 0 or false as no title
    ("document N"), the prepared corpus as the title "0": the two held out different works."""
    file = tmp_path / "c.jsonl"
    titles = [0, 1, False, 0, 1, False, None, ""]
    file.write_text("".join(json.dumps({"title": t, "text": f"Chapter {i} text. More words."}) + "\n"
                            for i, t in enumerate(titles)), encoding="utf-8")
    scanned = scan_work_names(corpus_file_list([file]))
    assert scanned == ["0", "1", "False", "0", "1", "False", "document 6", "document 7"]
    assert [w for w, _ in load_works(file)] == scanned
    assert prepare_corpus(file, tokenizer, tmp_path / "cache").work_names() == scanned


def test_a_prepared_folder_that_lost_its_meta_json_is_prepared_again(tmp_path, tokenizer):
    """A folder at the final name without meta.json (a copy or clean-up cut short) was prepared again, the
    rename refused (the folder was there), and opening it failed, on this run and every later one."""
    file = tmp_path / "c.txt"
    file.write_text("The cat sat.\n\nThe dog ran.\n", encoding="utf-8")
    first = prepare_corpus(file, tokenizer, tmp_path / "cache")
    ids = first.shards[0].tokens.tolist()
    (first.shards[0].directory / "meta.json").unlink()
    again = prepare_corpus(file, tokenizer, tmp_path / "cache")
    assert again.shards[0].tokens.tolist() == ids and again.prepared_bytes > 0
    assert prepare_corpus(file, tokenizer, tmp_path / "cache").prepared_bytes == 0  # and reused after that
    assert [p.name for p in again.shards[0].directory.parent.iterdir()] == [again.shards[0].directory.name]


def test_a_complete_folder_prepared_by_another_process_meanwhile_is_kept(tmp_path, tokenizer):
    """The race the rename settles (not a change): another run completed the same folder while this one
    prepared it; its copy stays, and this run's temporary folder goes."""
    file = tmp_path / "c.txt"
    file.write_text("The cat sat.\n\nThe dog ran.\n", encoding="utf-8")
    directory = prepare_corpus(file, tokenizer, tmp_path / "cache").shards[0].directory
    before = (directory / "tokens.bin").stat().st_ino
    prepared.prepare_files([(file, directory)], tokenizer, "vocab", workers=1, progress=False)
    assert (directory / "tokens.bin").stat().st_ino == before
    assert [p.name for p in directory.parent.iterdir()] == [directory.name]


@pytest.mark.parametrize("where", ["prepared", "shard"])
def test_a_cache_that_cannot_be_written_is_named_with_the_flag_to_use(tmp_path, tokenizer, monkeypatch, capsys, where):
    """A read-only cache (a shared or mounted one) stopped pretrain.py with a PermissionError traceback.
    (Simulated: this test may run as root, whom permissions do not stop.)"""
    file = tmp_path / "c.txt"
    file.write_text("The cat sat.\n\nThe dog ran.\n", encoding="utf-8")
    cache = tmp_path / "cache"
    if where == "shard":  # the cache's folders exist; only the new shard folder cannot be made
        (cache / "prepared" / prepared.tokenizer_fingerprint(tokenizer, "vocab")).mkdir(parents=True)
    real_mkdir = Path.mkdir

    def read_only(path, *args, **kwargs):
        if cache in path.parents and not path.is_dir():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(CacheNotWritable, match=r"cannot write .*--data_cache_dir"):
        prepare_corpus(file, tokenizer, cache)
    assert not [p for p in cache.rglob("*") if p.is_file()]

    import pretrain

    tokenizer.save_pretrained(tmp_path / "tok")
    code = pretrain.main(["--objective", "mlm", "--corpus", str(file), "--tokenizer", str(tmp_path / "tok"),
                          "--data_cache_dir", str(cache), "--output_dir", str(tmp_path / "run"), "--max_steps", "1",
                          "--disable_tqdm", "true", "--device", "cpu"])
    assert code == 1 and "pretrain.py: error: cannot write the prepared corpus" in capsys.readouterr().err
    # without --tokenizer the run trains one and caches it first: the same one-line error, not a traceback
    code = pretrain.main(["--objective", "mlm", "--corpus", str(file), "--data_cache_dir", str(cache),
                          "--output_dir", str(tmp_path / "run2"), "--max_steps", "1", "--disable_tqdm", "true",
                          "--device", "cpu"])
    assert code == 1 and "pretrain.py: error: cannot write the trained tokenizer" in capsys.readouterr().err

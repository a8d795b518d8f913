"""A second audit of the data path below the objectives (corpus reading, prepared corpora, tokenizers): each
test failed before the fix it names."""

import codecs
import gzip
import hashlib
import json
import logging
import os
import subprocess
import sys

import pytest
import transformers

import minibert.data.corpus as corpus
import minibert.data.prepared as prepared
from minibert.data.corpus import corpus_files, decode_utf8, load_works, read_records
from minibert.data.prepared import prepare_corpus
from minibert.tokenizer import load_tokenizer, train_tokenizer

TEXTS = ["The cat sat on the mat. It's fine, isn't it? I'm sure we've seen it!",
         "Alpha beta gamma. Delta epsilon zeta. You're right, don't go."] * 5


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=200)


def test_corpus_file_suffixes_are_read_in_any_case(tmp_path):
    """A corpus directory's "B.TXT" was passed over without a word, and "rows.CSV" or "lines.JSONL" named on its
    own was read as plain text: its CSV header and JSON syntax trained on as one document."""
    (tmp_path / "a.txt").write_text("Lower case. Read.\n", encoding="utf-8")
    (tmp_path / "B.TXT").write_text("Upper case. Read too.\n", encoding="utf-8")
    (tmp_path / "C.CSV").write_text('text,label\n"A row. Its cell.",1\n', encoding="utf-8")
    (tmp_path / "D.JSONL").write_text(json.dumps({"text": "A line. Its text."}) + "\n", encoding="utf-8")
    (tmp_path / "E.txt.GZ").write_bytes(gzip.compress(b"Gzipped. Upper case suffix.\n"))
    assert [p.name for p in corpus_files(tmp_path)] == ["B.TXT", "C.CSV", "D.JSONL", "E.txt.GZ", "a.txt"]
    assert [r["text"] for r in read_records(tmp_path / "C.CSV")] == ["A row. Its cell."]
    assert [r["text"] for r in read_records(tmp_path / "D.JSONL")] == ["A line. Its text."]
    assert sorted(sentences[0] for _, sentences in load_works(tmp_path)) == [
        "A line.", "A row.", "Gzipped.", "Lower case.", "Upper case."]
    # a cache of "C.CSV" prepared when it was read as plain text is not this text: such a name gets a new
    # fingerprint, a lower-case name keeps its own (every other cache stays valid)
    from minibert.data.prepared import file_fingerprint

    def path_size_time(file):  # the fingerprint's key before the change
        stat = file.stat()
        return hashlib.sha1(f"{file.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:16]

    lower = tmp_path / "lower" / "c.csv"  # apart: a case-insensitive file system holds one of c.csv and C.CSV
    lower.parent.mkdir()
    lower.write_text((tmp_path / "C.CSV").read_text(), encoding="utf-8")
    assert file_fingerprint(tmp_path / "C.CSV") != path_size_time(tmp_path / "C.CSV")
    assert file_fingerprint(lower) == path_size_time(lower)
    assert file_fingerprint(tmp_path / "B.TXT") == path_size_time(tmp_path / "B.TXT")  # text before, text now


@pytest.mark.parametrize("encoding, bom, name", [("utf-16-le", codecs.BOM_UTF16_LE, "utf-16"),
                                                 ("utf-16-be", codecs.BOM_UTF16_BE, "utf-16"),
                                                 ("utf-32-le", codecs.BOM_UTF32_LE, "utf-32"),
                                                 ("utf-32-be", codecs.BOM_UTF32_BE, "utf-32")])
def test_a_utf16_or_utf32_file_is_told_to_convert_from_its_encoding(tmp_path, encoding, bom, name):
    """Windows' "Unicode" (Notepad, PowerShell 5's `>`) is UTF-16 with a byte-order mark: the error told to run
    `iconv -f latin1`, whose copy has a NUL byte after every letter and loads without an error."""
    data = bom + "Hello world. 你好。\n\nAnother document.\n".encode(encoding)
    (tmp_path / "notes.txt").write_bytes(data)
    match = rf"notes\.txt is not UTF-8: .*`iconv -f {name} -t utf-8 .*notes\.txt > utf8_copy` \(it starts with a "
    with pytest.raises(ValueError, match=match + name.upper()):
        load_works(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=f"iconv -f {name} "):  # the fine-tuning files' reader
        decode_utf8(data, "notes.txt")


def test_utf16_without_a_byte_order_mark_and_other_compressions_are_refused_with_their_fix(tmp_path):
    """UTF-16 without a byte-order mark is valid UTF-8 for English text, a NUL byte after every letter: its blank
    lines were not blank (one document of all), and BPE learned NUL tokens, without a word. A .xz / .bz2 / .zip
    corpus was read as text and told to re-save it with iconv."""
    import lzma

    (tmp_path / "notes.txt").write_bytes("Hello world.\n\nAnother document.\n".encode("utf-16-le"))
    for read in (lambda: load_works(tmp_path / "notes.txt"),  # the corpus reader, and the fine-tuning files' one
                 lambda: decode_utf8((tmp_path / "notes.txt").read_bytes(), "notes.txt")):
        with pytest.raises(ValueError, match=r"notes\.txt holds a NUL byte \(line 1\).*iconv -f utf-16le -t utf-8"):
            read()
    (tmp_path / "a.txt.xz").write_bytes(lzma.compress(b"Hello world."))
    with pytest.raises(ValueError, match=r"a\.txt\.xz is compressed as \.xz, which is not read .*\(xz -dk\)"):
        load_works(tmp_path / "a.txt.xz")


def test_an_empty_gz_file_in_a_corpus_is_prepared_as_empty_and_a_cut_one_is_named(tmp_path, tokenizer):
    """Seeking to the gzip trailer of a file shorter than it (an empty .gz, a download cut at once) stopped
    prepare_corpus with a bare "OSError: [Errno 22] Invalid argument" naming no file, where load_works read
    the empty file as empty."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("The cat sat. The dog ran.\n", encoding="utf-8")
    (folder / "b.txt.gz").write_bytes(b"")
    prepared_corpus = prepare_corpus(folder, tokenizer, tmp_path / "cache")
    assert len(prepared_corpus) == len(load_works(folder)) == 1
    (folder / "b.txt.gz").write_bytes(gzip.compress(b"The bird flew.\n")[:3])
    with pytest.raises(ValueError, match=r"b\.txt\.gz is not a complete gzip file"):
        prepare_corpus(folder, tokenizer, tmp_path / "cache")


@pytest.mark.parametrize("damage", ["tokens.bin lost", "sentences.bin cut", "meta.json empty"])
def test_a_prepared_folder_with_an_array_lost_or_cut_is_prepared_again(tmp_path, tokenizer, damage):
    """meta.json alone was trusted: a folder whose arrays a copy or clean-up cut short failed at every later run
    (FileNotFoundError, "mmap length is greater than file size", a JSONDecodeError) and was never prepared again."""
    file = tmp_path / "c.txt"
    file.write_text("The cat sat. The dog ran.\n\nWhere is the bird?\n", encoding="utf-8")
    first = prepare_corpus(file, tokenizer, tmp_path / "cache")
    directory, ids = first.shards[0].directory, first.shards[0].tokens.tolist()
    name = damage.split()[0]
    if damage.endswith("lost"):
        (directory / name).unlink()
    else:
        (directory / name).write_bytes((directory / name).read_bytes()[:0 if name == "meta.json" else 8])
    again = prepare_corpus(file, tokenizer, tmp_path / "cache")
    assert again.shards[0].tokens.tolist() == ids and again.prepared_bytes > 0
    assert again.shards[0].directory == directory and prepared.is_complete(directory)
    assert prepare_corpus(file, tokenizer, tmp_path / "cache").prepared_bytes == 0  # and reused after that
    assert [p.name for p in directory.parent.iterdir()] == [directory.name]


def test_an_abandoned_temporary_of_a_file_with_brackets_in_its_name_is_removed(tmp_path):
    """The folder's name went into a glob pattern as it was: "notes[draft]" is a character class there, so a
    killed preparation of notes[draft].txt left its temporary folder (as large as the prepared corpus) forever."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    final = tmp_path / "cache" / "notes[draft]-0123abcd"
    old = final.with_name(f"{final.name}.tmp-{int(dead.stdout)}")
    old.mkdir(parents=True)
    (old / "tokens.bin").write_bytes(b"x" * 10)
    hour_ago = os.path.getmtime(old) - prepared.ABANDONED_AFTER - 60
    for path in (old / "tokens.bin", old):
        os.utime(path, (hour_ago, hour_ago))
    prepared.remove_abandoned_temporaries(final)
    assert not old.exists()


def test_decode_cleans_up_spaces_as_transformers_when_tokenizer_config_says_so(tokenizer, tmp_path):
    """tokenizer_config.json's clean_up_tokenization_spaces was not read: a BERT tokenizer saved with it true
    (transformers 4 wrote true) decoded "it ' s" where transformers gives "it's". Byte-level BPE is left as it
    is, as transformers leaves it (its text comes back exact)."""
    tokenizer.save_pretrained(tmp_path / "bert")
    config_file = tmp_path / "bert" / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config_file.write_text(json.dumps({**config, "clean_up_tokenization_spaces": True}), encoding="utf-8")
    ours, theirs = load_tokenizer(tmp_path / "bert"), transformers.AutoTokenizer.from_pretrained(tmp_path / "bert")
    ids = ours(TEXTS[:2])["input_ids"]
    assert ours.batch_decode(ids) == theirs.batch_decode(ids, skip_special_tokens=True)
    assert "it's fine, isn't it?" in ours.decode(ids[0])
    ours.save_pretrained(tmp_path / "again")  # and saved as it was read
    again = json.loads((tmp_path / "again" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert again["clean_up_tokenization_spaces"] is True

    bpe = train_tokenizer(TEXTS, kind="bytelevel_bpe", vocab_size=300)
    bpe.save_pretrained(tmp_path / "bpe")
    config_file = tmp_path / "bpe" / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config_file.write_text(json.dumps({**config, "clean_up_tokenization_spaces": True}), encoding="utf-8")
    ours, theirs = load_tokenizer(tmp_path / "bpe"), transformers.AutoTokenizer.from_pretrained(tmp_path / "bpe")
    ids = ours.encode("Hello , world . it ' s")
    assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True) == "Hello , world . it ' s"


def test_a_text_file_without_blank_lines_is_warned_of_once(tmp_path, monkeypatch, caplog):
    """A text file holding one document per line (as `datasets`' text loader reads a file) was one document,
    held in memory whole (a 12 MB file took 222 MB to prepare), without a word."""
    monkeypatch.setattr(corpus, "LARGE_DOCUMENT_BYTES", 200, raising=False)
    file = tmp_path / "lines.txt"
    file.write_text("".join(f"Document number {n} is a line. It has two sentences.\n" for n in range(20)),
                    encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="minibert.data.corpus"):
        assert len(load_works(file)) == 1
        load_works(file)
    warned = [r.getMessage() for r in caplog.records if "without a blank line" in r.getMessage()]
    assert len(warned) == 1 and "lines.txt" in warned[0] and "JSON lines" in warned[0]
    caplog.clear()
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("".join(f"Document number {n}.\n\n" for n in range(40)), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="minibert.data.corpus"):
        assert len(load_works(spaced)) == 40
    assert not caplog.records


def test_a_shipped_name_that_is_also_a_directory_here_is_warned_of(tmp_path, monkeypatch, caplog):
    """`--corpus shakespeare` beside a folder of one's own named shakespeare read the shipped corpus instead,
    without a word."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(corpus, "_warned_shadowed", set(), raising=False)
    (tmp_path / "shakespeare").mkdir()
    (tmp_path / "shakespeare" / "mine.txt").write_text("My own text. Mine.\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="minibert.data.corpus"):
        assert corpus_files("shakespeare") == [corpus.SHIPPED["shakespeare"]]
        corpus_files("shakespeare")
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "pass ./shakespeare to read it instead" in warned[0]
    assert [p.name for p in corpus_files("./shakespeare")] == ["mine.txt"]

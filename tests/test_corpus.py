"""Corpus reading, sentence splitting, the shipped corpora, Chinese conversion and segmentation."""

import json
from pathlib import Path

import pytest

from minibert.data import (
    OPENCC_CONVERSIONS,
    convert_chinese,
    default_corpus_path,
    join_sentences,
    load_corpus,
    read_records,
    segment_words,
    split_sentences,
)
from minibert.data.corpus import load_works, split_works
from minibert.finetuning import TASKS_DIR as TASKS
from minibert.pretraining import select_documents


def test_split_sentences_english_and_chinese():
    assert split_sentences("He said \"Go!\" Then Dr. Faustus left.\nAnd  J. Smith stayed? Yes.") == [
        'He said "Go!"', "Then Dr. Faustus left.", "And J. Smith stayed?", "Yes."]
    assert split_sentences("你好。我很好！真的吗？”是的。”还有") == [
        "你好。", "我很好！", "真的吗？”", "是的。”", "还有"]
    assert split_sentences("   ") == []
    assert split_sentences('他說："你好。"然後走了。') == ['他說："你好。"', "然後走了。"]  # the quote closes it
    assert split_sentences('他走了。"你好"她說。') == ["他走了。", '"你好"她說。']  # and here opens the next
    two = '他說："你好。我很好。"她笑了。'  # a quote opened one sentence before
    assert split_sentences(two) == ['他說："你好。', '我很好。"', "她笑了。"]
    assert join_sentences(["你好。", "我很好！"]) == "你好。我很好！"
    assert join_sentences(["One.", "Two."]) == "One. Two."


def test_plain_text_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("First doc. Still first!\n\n\nSecond doc.\nSame sentence? Yes.\n")
    rows = [{"text": "床前明月光，疑是地上霜。举头望明月，低头思故乡。", "title": "静夜思"}, {"text": "One. Two."}]
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "\n")
    assert load_corpus(tmp_path / "a.txt") == [["First doc.", "Still first!"],
                                               ["Second doc.", "Same sentence?", "Yes."]]
    docs = load_corpus(tmp_path)  # a directory: every corpus file in it, sorted
    assert len(docs) == 4 and docs[2] == ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"]
    assert read_records(tmp_path / "b.jsonl")[0]["title"] == "静夜思"


def test_shipped_corpora_keep_titles_and_genres():
    records = read_records("shakespeare")
    assert default_corpus_path() == default_corpus_path("shakespeare") and default_corpus_path().is_file()
    titles = {r["title"] for r in records}
    assert len(titles) == 37 and {"Macbeth", "Pericles"} <= titles  # the 36 Folio plays and Pericles
    assert {r["genre"] for r in records} == {"comedy", "history", "tragedy", None}  # Pericles: not in the Folio
    assert len(records) > 700 and sum(len(r["text"]) for r in records) > 3_500_000  # every scene, a few MB
    docs = load_corpus()
    assert len(docs) == len(records) and sum(map(len, docs)) > 40_000
    poems = read_records("tang_poems")
    assert len(poems) > 7000 and all(r["author"] and r["title"] for r in poems)
    couplets = [len(d) for d in load_corpus("tang_poems")]  # eight lines: four couplets ending in 。
    assert couplets.count(4) / len(couplets) > 0.95
    for path in (default_corpus_path("shakespeare"), default_corpus_path("tang_poems")):
        assert path.suffix == ".gz" and path.stat().st_size < 2_000_000  # gzipped: under 2 MB each


def test_dataset_b_never_repeats_dataset_a():
    """The fine-tuning task's speeches are left out of the pretraining corpus (pretrain on A,
    fine-tune and evaluate on B)."""
    corpus = "\n".join(r["text"] for r in read_records("shakespeare"))
    for split in ("train", "validation"):
        rows = read_records(TASKS / f"shakespeare_genre_{split}.jsonl")
        assert len(rows) >= 360
        assert not [r["text"] for r in rows if r["text"] in corpus]


def test_gzipped_files_and_works(tmp_path):
    import gzip

    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt.gz").write_bytes(gzip.compress(b"One. Two.\n\nThree. Four."))
    (tmp_path / "books" / "b.jsonl").write_text('{"text": "Five. Six.", "title": "B"}\n')
    works = load_works(tmp_path / "books")
    assert [w for w, _ in works] == ["a.txt.gz"] * 2 + ["B"]  # an untitled file's work: its name
    assert works[1][1] == ["Three.", "Four."]
    (tmp_path / "one.txt").write_text("A. B.\n\nC. D.\n\nE. F.")
    assert [w for w, _ in load_works(tmp_path / "one.txt")] == ["document 0", "document 1", "document 2"]


def test_held_out_works_are_whole_and_stable():
    works = load_works()
    held = split_works([w for w, _ in works], 0.15)
    assert len(held) == round(0.15 * 37) and held == split_works(list(reversed([w for w, _ in works])), 0.15)
    train, held_docs, names = select_documents([w for w, _ in works], 0.15, 1.0)
    assert set(names) == held and len(train) + len(held_docs) == len(works)
    assert len(held_docs) == sum(w in held for w, _ in works)  # every scene of a held-out play, none of the others
    assert all(works[i][0] in held for i in held_docs) and not any(works[i][0] in held for i in train)
    small, _, _ = select_documents([w for w, _ in works], 0.15, 0.1)  # a fixed subset, inside the larger ones
    assert len(small) == round(0.1 * len(train)) and set(small) <= set(train)
    assert split_works(["a"], 0.5) == set() and split_works(["a", "b"], 0.0) == set()


def test_opencc_conversions():
    pytest.importorskip("opencc")
    assert convert_chinese("蕭晨騎馬出皇都", "t2s") == "萧晨骑马出皇都"
    assert convert_chinese("萧晨骑马出皇都", "s2t") == "蕭晨騎馬出皇都"
    assert convert_chinese("软件", "s2twp") == "軟體"  # the p: phrases too
    for conversion in OPENCC_CONVERSIONS:
        assert convert_chinese("汉字", conversion)
    simplified = load_corpus("tang_poems", convert="t2s")
    assert simplified[0][0] == "萧晨骑马出皇都，闻说埋冤在路隅。"


def test_jieba_words_cover_the_text():
    pytest.importorskip("jieba")
    text = "我爱北京天安门，天安门上太阳升。"
    words = segment_words(text)
    assert "".join(words) == text and "天安门" in words


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="no paths|no corpus paths"):
        load_corpus([])
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match="`text` field"):
        load_corpus(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="unknown OpenCC conversion 'x2y'.*t2s"):
        load_corpus("tang_poems", convert="x2y")
    with pytest.raises(ValueError, match="no shipped corpus"):
        default_corpus_path("klingon")


def test_a_file_that_is_not_utf8_is_named_with_its_position(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("An English line.\n")
    (corpus / "b.txt").write_bytes("Hello there.\nA caf\u00e9 in Paris.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"b\.txt is not UTF-8: the byte at offset 18 \(line 2\).*iconv -f latin1"):
        load_corpus(corpus)
    poem = "床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。\n"
    for encoding, name in (("gbk", "gb18030"), ("big5", "big5")):  # `iconv -f latin1` made mojibake of these
        # short, and past 64 KB with a title line first (one line alone passed for the other encoding)
        for text in (poem, "將進酒\n" + poem * 4000):
            (corpus / "b.txt").write_bytes(text.encode(encoding))
            with pytest.raises(ValueError, match=rf"iconv -f {name} -t utf-8 .* \(its bytes read as {name}: Chin"):
                load_corpus(corpus)
    (corpus / "b.txt").write_bytes("\ufeffHello there.\n".encode())
    (corpus / "c.jsonl").write_text('{"text": "fine"}\n\n{"text": "broken"\n')
    with pytest.raises(ValueError, match=r"c\.jsonl:3 is not valid JSON"):
        load_corpus(corpus)
    (corpus / "c.jsonl").unlink()
    assert load_corpus(corpus)[1] == ["Hello there."]  # the byte-order mark is not text


def test_missing_extra_names_it(monkeypatch):
    from minibert.data import chinese

    chinese._converter.cache_clear()
    chinese._jieba.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "opencc", None)  # as if not installed
    monkeypatch.setitem(__import__("sys").modules, "jieba", None)
    try:
        with pytest.raises(ImportError, match=r"pip install -e \"\.\[zh\]\" \(or pip install jieba opencc\)"):
            convert_chinese("漢字", "t2s")
        with pytest.raises(ImportError, match=r"pip install -e \"\.\[zh\]\" \(or pip install jieba opencc\)"):
            segment_words("汉字")
    finally:
        chinese._converter.cache_clear()
        chinese._jieba.cache_clear()


def test_work_names_do_not_depend_on_how_the_path_is_spelt(tmp_path, monkeypatch):
    """Untitled files are works named by their file's name: a relative and an absolute path (and any
    working directory) hold out the same works. An empty file is not a work and changes nothing."""
    from minibert.data.corpus import corpus_files
    from minibert.data.prepared import prepare_corpus
    from minibert.pretraining import scan_work_names
    from minibert.tokenizer import train_tokenizer

    books = tmp_path / "corpora" / "books"
    books.mkdir(parents=True)
    for i in range(6):
        (books / f"book{i}.txt").write_text(f"Book {i} begins. It goes on.\n\nIt ends here, book {i}.")
    spellings = [(books, tmp_path), (books.relative_to(tmp_path), tmp_path), (Path("books"), tmp_path / "corpora")]
    held = []
    for path, cwd in spellings:
        monkeypatch.chdir(cwd)
        held.append(split_works([w for w, _ in load_works(path)], 0.34))
    assert held[0] == held[1] == held[2] and held[0] <= {f"book{i}.txt" for i in range(6)}

    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "a.txt").write_text("One. Two.\n\nThree. Four.\n\nFive. Six.")
    (lone / "b.txt").write_text("")  # empty: the corpus is still one file of documents, each its own work
    expected = ["document 0", "document 1", "document 2"]
    assert [w for w, _ in load_works(lone)] == expected
    assert scan_work_names(corpus_files(lone)) == expected
    tokenizer = train_tokenizer(["One two three four five six"], vocab_size=60)
    assert prepare_corpus(lone, tokenizer, tmp_path / "cache").work_names() == expected


def test_a_corpus_file_named_twice_is_refused_by_every_reader(tmp_path):
    """`--corpus a.txt a.txt` (or a directory and a file in it) crashed the first preparation with a
    missing meta.json (two workers on one cache folder) and would have read its works twice."""
    from minibert.data.prepared import prepare_corpus
    from minibert.pretraining import PretrainingOptions, trained_tokenizer
    from minibert.tokenizer import train_tokenizer

    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "a.txt").write_text("One. Two.\n\nThree. Four.")
    (folder / "b.txt").write_text("Five. Six.")
    tokenizer = train_tokenizer(["One two three four five six"], vocab_size=60)
    message = r"corpus file .*a\.txt is named twice .*; name each file once"
    for paths in ([folder / "a.txt", folder / "a.txt"], [folder, folder / "a.txt"]):
        with pytest.raises(ValueError, match=message):
            load_works(paths)
        with pytest.raises(ValueError, match=message):
            prepare_corpus(paths, tokenizer, tmp_path / "cache")
        with pytest.raises(ValueError, match=message):
            trained_tokenizer(PretrainingOptions(corpus=[str(p) for p in paths], data_cache_dir=str(tmp_path)))
    assert not (tmp_path / "cache" / "prepared").exists() or not any((tmp_path / "cache" / "prepared").rglob("*.npy"))
    assert join_sentences(["Hello,", "", "你好世界。"]) == join_sentences(["Hello,", "你好世界。"])  # an IndexError

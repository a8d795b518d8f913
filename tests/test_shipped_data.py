"""The data shipped in minibert/data: the counts, checksums and promises of the two SOURCES.md files and the
README, checked on the files themselves (no network, a few seconds), and the rebuild scripts' determinism."""

import _pyio
import collections
import gzip
import hashlib
import importlib.util
import json
import os
import zlib
from pathlib import Path

from minibert.data.corpus import load_works, split_sentences, split_works

DATA = Path(__file__).parent.parent / "minibert" / "data"
CORPUS, TASKS = DATA / "corpus", DATA / "tasks"
SOURCES = (CORPUS / "SOURCES.md").read_text(encoding="utf-8") + (TASKS / "SOURCES.md").read_text(encoding="utf-8")
# SHA-256 of each shipped file, and of the JSON lines inside the gzipped ones (as SOURCES.md states them)
FILE_SHA256 = {
    CORPUS / "shakespeare.jsonl.gz": "c5cf1fa1d8f4a88208720939f3d53f4a7c2b0720f537d11681b1c75e614f850f",
    CORPUS / "tang_poems.jsonl.gz": "75117dec95c3457e766afa66830e9dfd94940024673857acd3a9bd8781fecc6c",
    TASKS / "shakespeare_genre_train.jsonl": "38d4c506b4730b36aeeb98f6944cda420977c9b67f9f9a8860b2df5351237101",
    TASKS / "shakespeare_genre_validation.jsonl": "9952af0c1447e369b3c502f97b2305af042c8b96ac96c00ab9699770f8202d09",
    TASKS / "tang_t2s_train.jsonl": "c496d9dc35863dbbfffc84504110aeb10836a311bc483f2d23ce5ac927ad5daa",
    TASKS / "tang_t2s_validation.jsonl": "bc3e699a655175aa6955407d23d56bf3de4e5e8b28c26029c543cc7739d6b861",
    TASKS / "shakespeare_turns_train.jsonl": "91515060a258546fb3133e4650adb68873ae626c52548304a73b481cf916eee5",
    TASKS / "shakespeare_turns_validation.jsonl": "da407138f1785114d0ac095f5e9973e4dbafe3fa67edee3e39360bf614293aa1",
    TASKS / "shakespeare_speakers_train.json": "0db801dd632ddddd75e03b45ef2bf056922e748fa614d70051e1c9ed0a992343",
    TASKS / "shakespeare_speakers_validation.json": "ad3041afa63b6b186d502c8856f3082c18ce8445673b934cb843e9e23b8a65bc",
}
LINES_SHA256 = {
    CORPUS / "shakespeare.jsonl.gz": "d6dd1be19336e1b0133af9cefaa086bd574251cabfd8260d48daec640c025516",
    CORPUS / "tang_poems.jsonl.gz": "486855b1f71f6bdcc33e322a0c76342aaa42f3a36329d28bc383dc72c89a064f",
}


def _script(path: Path):
    """A rebuild script as a module (minibert/data/corpus/ is a folder beside the module corpus.py: not importable)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [json.loads(line) for line in data.decode("utf-8").split("\n") if line]  # every line parses


def test_shipped_files_match_the_checksums_sources_md_states():
    for path, digest in FILE_SHA256.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path.name
        assert digest in SOURCES, f"{path.name}: SOURCES.md does not state the checksum"
    for path, digest in LINES_SHA256.items():
        assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == digest and digest in SOURCES


def test_every_line_has_the_documented_fields():
    fields = {"shakespeare.jsonl.gz": ["title", "genre", "scene", "heading", "source", "text"],
              "tang_poems.jsonl.gz": ["title", "author", "text"],
              "shakespeare_genre_train.jsonl": ["text", "label", "play"],
              "shakespeare_genre_validation.jsonl": ["text", "label", "play"],
              "tang_t2s_train.jsonl": ["source", "target", "title"],
              "tang_t2s_validation.jsonl": ["source", "target", "title"],
              "shakespeare_turns_train.jsonl": ["tokens", "tags", "play", "scene"],
              "shakespeare_turns_validation.jsonl": ["tokens", "tags", "play", "scene"]}
    for path in FILE_SHA256:
        if path.suffix == ".json":  # SQuAD's format, one JSON document: test_speakers_task_... reads it
            continue
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        assert raw.endswith(b"\n") and b"\r" not in raw, path.name  # LF lines, the last one ended
        for row in _rows(path):
            assert list(row) == fields[path.name], path.name
            for key, value in row.items():
                if key == "genre":
                    assert value in ("comedy", "history", "tragedy", None)
                elif key == "scene":
                    assert isinstance(value, int) and value >= 0
                elif key in ("tokens", "tags"):  # words and their tags, one each
                    assert value and len(value) == len(row["tokens"])
                    assert all(isinstance(w, str) and w and not any(c.isspace() for c in w) for w in value)
                else:
                    assert isinstance(value, str) and value.strip() == value and value, (path.name, key, value)


def test_shakespeare_corpus_counts_as_documented():
    path = CORPUS / "shakespeare.jsonl.gz"
    rows = _rows(path)
    assert len(rows) == 750 and round(path.stat().st_size / 1e6, 1) == 1.5  # 750 documents, 1.5 MB gzipped
    assert round(sum(len(r["text"]) for r in rows) / 1e6, 1) == 3.6  # 3.6 million characters
    speeches = [s for r in rows for s in r["text"].split("\n")]
    assert len(speeches) == 28_281 and sum("[" in s or "]" in s for s in speeches) == 205  # a direction in a line
    genre = {r["title"]: r["genre"] for r in rows}
    assert len(genre) == 37 and genre["Pericles"] is None and genre["Troilus and Cressida"] == "tragedy"
    assert collections.Counter(genre.values()) == {"comedy": 14, "history": 10, "tragedy": 12, None: 1}
    assert all(len({(r["genre"], r["source"]) for r in rows if r["title"] == t}) == 1 for t in genre)
    missing = {}  # scene: the scene's place among the play's headings, from 0, in order
    for title in genre:
        numbers = [r["scene"] for r in rows if r["title"] == title]
        assert numbers == sorted(set(numbers))
        if gaps := sorted(set(range(numbers[-1] + 1)) - set(numbers)):
            missing[title] = gaps
    assert missing == {"Romeo and Juliet": [0], "Richard III": [13]}  # all their speeches went to the task


def test_tang_corpus_counts_as_documented():
    path = CORPUS / "tang_poems.jsonl.gz"
    rows = _rows(path)
    assert len(rows) == 7_423 and round(path.stat().st_size / 1e6, 1) == 0.9
    assert all(len(r["text"]) == 64 for r in rows)  # eight lines of seven characters, each with its ，or 。
    counts = collections.Counter(len(split_sentences(r["text"])) for r in rows)
    assert counts[4] == 7_325 and sum(counts.values()) - counts[4] == 98 and set(counts) == {2, 3, 4, 5}
    copies = collections.defaultdict(list)
    for r in rows:
        copies[r["text"]].append(r["title"])
    assert sum(len(t) - 1 for t in copies.values()) == 52 and sum(len(set(t)) > 1 for t in copies.values()) == 34
    assert collections.Counter(r["author"] for r in rows)["徐鉉"] == 113  # 916-991: not all of it is Tang


def test_genre_task_labels_are_the_folio_genres_and_the_splits_are_disjoint():
    make_corpus = _script(CORPUS / "make_corpus.py")
    folio = {title: genre for genre, plays in make_corpus.FOLIO.items() for _, title in plays}
    assert collections.Counter(folio.values()) == {"comedy": 14, "history": 10, "tragedy": 12}
    corpus_genre = {r["title"]: r["genre"] for r in _rows(CORPUS / "shakespeare.jsonl.gz")}
    train = _rows(TASKS / "shakespeare_genre_train.jsonl")
    validation = _rows(TASKS / "shakespeare_genre_validation.jsonl")
    assert (len(train), len(validation)) == (1_080, 360)
    for rows, per_play in ((train, 30), (validation, 10)):
        assert collections.Counter(r["play"] for r in rows) == {title: per_play for title in folio}
        assert all(r["label"] == folio[r["play"]] == corpus_genre[r["play"]] for r in rows)  # metadata, no rule
        assert all(60 <= len(r["text"]) <= 1_000 for r in rows)
        assert len({r["text"] for r in rows}) == len(rows)  # no text twice
    assert sum("[" in r["text"] or "]" in r["text"] for r in train + validation) == 18  # a direction in a line
    labels = collections.Counter(r["label"] for r in validation)
    assert labels == {"comedy": 140, "history": 100, "tragedy": 120}
    assert round(max(labels.values()) / len(validation), 3) == 0.389  # the majority baseline the README states
    assert not {r["text"] for r in train} & {r["text"] for r in validation}
    # none in the pretraining corpus's training part (nor in its held-out plays: test_corpus.py checks the whole)
    works = load_works("shakespeare")
    held = split_works([w for w, _ in works], 0.2)
    assert len(held) == 7
    training_part = "\n".join(r["text"] for r in _rows(CORPUS / "shakespeare.jsonl.gz") if r["title"] not in held)
    assert not [r["text"] for r in train + validation if r["text"] in training_part]


def test_tang_t2s_splits_follow_the_held_out_titles():
    train, validation = _rows(TASKS / "tang_t2s_train.jsonl"), _rows(TASKS / "tang_t2s_validation.jsonl")
    assert (len(train), len(validation)) == (2_000, 300)
    works = load_works("tang_poems")
    held = split_works([w for w, _ in works], 0.2)  # pretrain.py --corpus tang_poems, --validation_share 0.2
    assert {r["title"] for r in validation} <= held and not {r["title"] for r in train} & held
    assert not {r["source"] for r in train} & {r["source"] for r in validation}
    sentences = collections.defaultdict(set)
    for title, poem in works:
        sentences[title].update(poem)
    assert all(r["source"] in sentences[r["title"]] for r in train + validation)  # a sentence of its own poem
    training_part = {s for title, poem in works if title not in held for s in poem}
    assert sum(r["source"] in training_part for r in validation) == 7  # the repeats SOURCES.md names
    assert len(train) - len({r["source"] for r in train}) == 3
    rows = train + validation
    assert collections.Counter(len(r["source"]) for r in rows) == {16: 2_288, 8: 3, 32: 9}
    assert all(len(r["source"]) == len(r["target"]) for r in rows)
    assert [sum(r["source"] == r["target"] for r in split) for split in (train, validation)] == [2, 1]
    changed = sum(a != b for r in rows for a, b in zip(r["source"], r["target"], strict=True))
    assert round(changed / sum(len(r["source"]) for r in rows), 2) == 0.29


def test_turns_task_is_the_corpus_speeches_of_plays_pretraining_holds_out():
    """Each example is consecutive speeches of one scene of the corpus, in order, a speech's first word tagged
    B-SPEECH and its others I-SPEECH; every play is one that pretrain.py holds out, and no play is in both splits."""
    train = _rows(TASKS / "shakespeare_turns_train.jsonl")
    validation = _rows(TASKS / "shakespeare_turns_validation.jsonl")
    assert (len(train), len(validation)) == (925, 297)
    scenes = {(r["title"], r["scene"]): r["text"].split("\n") for r in _rows(CORPUS / "shakespeare.jsonl.gz")}
    held = split_works(sorted({title for title, _ in scenes}), 0.2)  # pretrain.py's default --validation_share
    plays = [{r["play"] for r in split} for split in (train, validation)]
    assert plays[0] | plays[1] == held and not plays[0] & plays[1] and len(plays[1]) == 2
    for row in train + validation:
        speeches, current = [], None
        for word, tag in zip(row["tokens"], row["tags"], strict=True):
            assert tag in ("B-SPEECH", "I-SPEECH") and (tag == "B-SPEECH") == (current is None or tag == "B-SPEECH")
            if tag == "B-SPEECH":
                current = [word]
                speeches.append(current)
            else:
                current.append(word)
        lines = [" ".join(line.split()) for line in scenes[(row["play"], row["scene"])]]
        texts = [" ".join(words) for words in speeches]
        assert len(texts) >= 2 and len(row["tokens"]) <= 48
        # consecutive speeches of the scene, verbatim but for runs of spaces
        assert any(lines[i : i + len(texts)] == texts for i, line in enumerate(lines) if line == texts[0])


def test_speakers_task_asks_who_says_a_line_of_plays_pretraining_holds_out():
    """SQuAD v1.1's format; each context is consecutive speeches of one scene of a held-out play, each printed
    after its speaker's name; each question quotes a speech's opening words, found once in the context, and its
    answer is the name printed just before them, at its offset. No play is in both splits."""
    splits = {s: json.loads((TASKS / f"shakespeare_speakers_{s}.json").read_text(encoding="utf-8"))
              for s in ("train", "validation")}
    corpus = collections.defaultdict(set)  # each held-out play's speeches, as the corpus prints them
    for row in _rows(CORPUS / "shakespeare.jsonl.gz"):
        corpus[row["title"]].update(" ".join(line.split()) for line in row["text"].split("\n"))
    held = split_works(sorted(corpus), 0.2)
    plays = [{article["title"] for article in splits[s]["data"]} for s in ("train", "validation")]
    assert plays[0] | plays[1] == held and not plays[0] & plays[1] and len(plays[1]) == 2
    counts = []
    for split in splits.values():
        assert split["version"] == "1.1"
        questions = 0
        for article in split["data"]:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                lines = context.split("\n")
                assert len(lines) >= 2 and len({line.split(". ", 1)[0] for line in lines}) >= 2
                assert len(context.split()) <= 60
                for qa in paragraph["qas"]:
                    questions += 1
                    quote = qa["question"].removeprefix('Who says "').removesuffix('"?')
                    [answer] = qa["answers"]
                    name, start = answer["text"], answer["answer_start"]
                    assert context.count(quote) == 1 and context[start : start + len(name)] == name
                    line = context[start:].split("\n", 1)[0]
                    assert line.startswith(f"{name}. {quote}")  # the name printed before the quoted words
        counts.append(questions)
    assert counts == [3220, 1021]
    speeches = {line.split(". ", 1)[1] for split in splits.values() for article in split["data"]
                for paragraph in article["paragraphs"] for line in paragraph["context"].split("\n")}
    in_corpus = sum(any(s in corpus[t] for t in held) for s in speeches)
    assert in_corpus / len(speeches) > 0.95  # the corpus's speeches (the rest: the genre task's, left out of it)


def test_make_shakespeare_turns_rebuilds_the_shipped_files(monkeypatch, tmp_path):
    script = _script(TASKS / "make_shakespeare_turns.py")
    monkeypatch.setattr(script, "HERE", tmp_path)
    script.main()
    for split in ("train", "validation"):
        name = f"shakespeare_turns_{split}.jsonl"
        assert (tmp_path / name).read_bytes() == (TASKS / name).read_bytes()


def test_make_tang_t2s_rebuilds_the_shipped_sentences_and_titles():
    """The sources and titles depend only on the shipped poems and the repository's code (the targets also on
    OpenCC's version, which SOURCES.md names)."""
    built = _script(TASKS / "make_tang_t2s.py").build()
    for split in ("train", "validation"):
        shipped = _rows(TASKS / f"tang_t2s_{split}.jsonl")
        assert [(r["source"], r["title"]) for r in built[split]] == [(r["source"], r["title"]) for r in shipped]


def test_write_jsonl_gives_the_shipped_bytes_whatever_gzip_compress_writes(monkeypatch, tmp_path):
    """Python 3.10 and 3.13+ write the gzip header's OS byte 255 in gzip.compress(mtime=0), 3.11-3.12 zlib's
    code for the system (https://github.com/python/cpython/issues/112346): the rebuild must not depend on it."""
    make_corpus = _script(CORPUS / "make_corpus.py")
    shipped = (CORPUS / "tang_poems.jsonl.gz").read_bytes()
    rows = _rows(CORPUS / "tang_poems.jsonl.gz")

    def compress_313(data, compresslevel=9, *, mtime=None):  # CPython 3.13's gzip.compress
        out = bytearray(zlib.compress(data, level=compresslevel, wbits=31))
        out[9] = 255
        return bytes(out)

    monkeypatch.setattr(gzip, "compress", compress_313)
    make_corpus.write_jsonl(tmp_path / "tang_poems.jsonl.gz", rows)
    assert (tmp_path / "tang_poems.jsonl.gz").read_bytes() == shipped
    make_corpus.write_jsonl(tmp_path / "plain.jsonl", rows[:3])  # no .gz: the JSON lines as they are
    assert (tmp_path / "plain.jsonl").read_bytes() == b"".join(gzip.decompress(shipped).splitlines(True)[:3])


def test_make_tang_t2s_writes_lf_lines_and_counts_the_unchanged(monkeypatch, tmp_path, capsys):
    """On Windows Path.write_text with newline=None writes os.linesep ("\\r\\n"): emulated with _pyio, which reads
    os.linesep. And 1,998 of 2,000 converted is printed as a count, not as "100%"."""
    script = _script(TASKS / "make_tang_t2s.py")
    rows = {"train": [{"source": "騎馬", "target": "骑马", "title": "a"}] * 1_998
            + [{"source": "山。", "target": "山。", "title": "b"}] * 2,
            "validation": [{"source": "騎馬", "target": "骑马", "title": "c"}]}
    monkeypatch.setattr(script, "build", lambda: rows)
    monkeypatch.setattr(script, "HERE", tmp_path)

    def windows_write_text(self, data, encoding=None, errors=None, newline=None):
        with _pyio.open(self, "w", encoding=encoding, errors=errors, newline=newline) as f:
            return f.write(data)

    monkeypatch.setattr(os, "linesep", "\r\n")
    monkeypatch.setattr(Path, "write_text", windows_write_text)
    script.main()
    written = (tmp_path / "tang_t2s_train.jsonl").read_bytes()
    assert b"\r" not in written and written.count(b"\n") == 2_000
    assert "2000 examples, 1998 of them with at least one character converted" in capsys.readouterr().out

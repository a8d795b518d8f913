"""Build the shipped sequence-to-sequence task `tang_t2s`: Traditional -> Simplified Chinese
conversion of lines of the shipped Tang poems (see SOURCES.md here).

    python minibert/data/tasks/make_tang_t2s.py       # writes tang_t2s_{train,validation}.jsonl here

Sources are sentences of `minibert/data/corpus/tang_poems.jsonl.gz` (Traditional, as the corpus
ships them), one per poem; targets are what OpenCC's t2s conversion makes of them
(minibert.data.chinese.convert_chinese, extra `zh`). The split follows the works that
`pretrain.py --corpus tang_poems` holds out (split_works with its default validation_share 0.2):
validation sentences come from the titles the pretrained BART never read, training sentences from the
others, so no title is in both. Held-out titles are not held-out text everywhere: the package ships
some poems twice under two titles, at times with variants (相和歌辭：陽春曲 and 陽春曲), and 7 of the 300
validation sentences are also in a poem of a training title (SOURCES.md). The output is deterministic (seeded)
for a given OpenCC: the shipped targets are opencc 1.4.2's (1.3.2 gives the same; 1.1.9 differs on 7
of the 2,300).
"""

import json
import random
from pathlib import Path

from minibert.data.chinese import convert_chinese
from minibert.data.corpus import load_works, split_works

HERE = Path(__file__).parent
NUM_TRAIN = 2000  # examples: a few minutes of fine-tuning a tiny BART on a CPU
NUM_VALIDATION = 300
PRETRAINING_VALIDATION_SHARE = 0.2  # pretrain.py's default --validation_share: the same held-out works


def build(seed: int = 0) -> dict[str, list[dict]]:
    works = load_works("tang_poems")
    held = split_works([name for name, _ in works], PRETRAINING_VALIDATION_SHARE)
    rng = random.Random(seed)
    splits = {"train": [], "validation": []}
    for name, sentences in works:
        source = rng.choice(sentences)  # one sentence (a couplet, two lines) per poem: many poems, little repetition
        splits["validation" if name in held else "train"].append(
            {"source": source, "target": convert_chinese(source, "t2s"), "title": name})
    for split, size in (("train", NUM_TRAIN), ("validation", NUM_VALIDATION)):
        rows = splits[split]
        rng.shuffle(rows)
        splits[split] = rows[:size]
    return splits


def main() -> None:
    for split, rows in build().items():
        path = HERE / f"tang_t2s_{split}.jsonl"
        # newline="\n": the same bytes on every system (newline=None writes "\r\n" on Windows)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8", newline="\n")
        # a count, not a rounded share: 1,998 of 2,000 printed as "100%" hid the 2 unchanged examples
        changed = sum(r["source"] != r["target"] for r in rows)
        print(f"{path.name}: {len(rows)} examples, {changed} of them with at least one character converted")


if __name__ == "__main__":
    main()

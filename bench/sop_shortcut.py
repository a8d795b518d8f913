"""How much of the held-out SOP accuracy surface rules get, with the old pair rules and with today's (issue 9).

    python bench/sop_shortcut.py [TOKENIZER_DIR]      # default: runs/pretrain-sop's tokenizer, else one trained here

The rules, each scoring what SOP can reach without learning sentence order:
- ends: look at the token just before the middle [SEP]. If it is not ".", "!" or "?", the first segment stops
  mid-sentence: guess "swapped". Block 0's previous-token head reads that token directly.
- lengths: if the first segment is the longer, guess "in order". Where the middle [SEP] sits tells it.
- both: the ends rule where exactly one segment stops mid-sentence, else the lengths rule.

The pair rules:
- bert: pairs as the first landing built them, after BERT's create_pretraining_data.py: a run of sentences
  grows until it passes the room (61 tokens at --max_seq_length 64), then the longer segment loses its *end*.
  The overflowing sentence is always in B, so B is cut more often than A, and a first segment that stops
  mid-sentence means "swapped".
- forward: the second rule (2026-11-23 morning): a run ends before the sentence that would overflow, and what
  must still be cut is cut from the front. Ends say nothing, but every run is laid from its document's start,
  so its first sentence (the one that overflowed the run before) is long more often than not, and when both
  segments are cut the odd token always came from B: A is the longer segment in most pairs.
- now: minibert's sop objective (minibert/data/objectives/nsp.py): as forward, but each document's runs are
  laid from its start or its end by a coin, and the odd token is cut from A or B by a coin.
The first two are written out below as references; the library no longer builds them.

Prints one JSON line per pair rule: the number of pairs and each surface rule's
accuracy over the default run's held-out plays (each pair counted once swapped and once not, so no draw).
"""

import json
import sys
from pathlib import Path

import numpy as np

from minibert.data import build_objective
from minibert.data.corpus import load_works
from minibert.pretraining import DEFAULT_RUN, select_documents
from minibert.tokenizer import load_tokenizer, train_tokenizer

ROOM = DEFAULT_RUN["max_seq_length"] - 3  # [CLS] A [SEP] B [SEP]


def old_pairs(documents, tokenizer, rule: str, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pairs of an old rule, "bert" or "forward" (above), from each document's sentences."""
    rng = np.random.default_rng(seed)
    pairs = []
    for sentences in documents:
        ids = [np.asarray(tokenizer.encode(s), dtype=np.int64) for s in sentences]
        if len(ids) < 2:
            continue
        runs, first, used = [], 0, 0
        for s, sentence in enumerate(ids):
            if rule == "forward" and used + len(sentence) > ROOM and s - first >= 2:  # close before sentence s
                runs.append(ids[first:s])
                first, used = s, 0
            used += len(sentence)
            if rule == "bert" and used >= ROOM and s + 1 - first >= 2:  # the sentence that overflows stays in
                runs.append(ids[first:s + 1])
                first, used = s + 1, 0
        if len(ids) - first >= 2:
            runs.append(ids[first:])
        for run in runs:
            split = int(rng.integers(1, len(run)))  # 1 .. n-1 sentences in A
            a, b = np.concatenate(run[:split]), np.concatenate(run[split:])
            la, lb = len(a), len(b)
            while la + lb > ROOM:  # the longer one loses a token; on a tie, B
                if la > lb:
                    la -= 1
                else:
                    lb -= 1
            if rule == "bert":  # from the end
                pairs.append((a[:la], b[:lb]))
            else:  # from the front
                pairs.append((a[len(a) - la:], b[len(b) - lb:]))
    return pairs


def rule_accuracies(pairs, tokenizer) -> dict[str, float]:
    """Each surface rule's accuracy, each pair shown in both orders; and the share of pairs cut."""
    ends = set(tokenizer.convert_tokens_to_ids([t for t in (".", "!", "?") if t in tokenizer.get_vocab()]))
    rules = {"ends": lambda first, second: int(first[-1]) in ends,  # True: "in order"
             "lengths": lambda first, second: len(first) > len(second)}
    rules["both"] = lambda first, second: (rules["ends"](first, second) if rules["ends"](first, second)
                                           != rules["ends"](second, first) else rules["lengths"](first, second))
    scores = {}
    for name, rule in rules.items():
        right = sum(rule(a, b) + (not rule(b, a)) for a, b in pairs)
        scores[f"{name}_rule_accuracy"] = round(right / (2 * len(pairs)), 3)
    return scores


def main(argv: list[str]) -> None:
    works = load_works()
    train, held, _ = select_documents([w for w, _ in works], 0.2, 1.0)  # the default run's split
    held_documents = [works[i][1] for i in held]
    path = Path(argv[0] if argv else "runs/pretrain-sop")
    if (path / "tokenizer.json").exists() or (path / "vocab.txt").exists():
        tokenizer = load_tokenizer(path)
    elif argv:
        raise SystemExit(f"{path} holds no tokenizer (tokenizer.json or vocab.txt); pass a checkpoint directory")
    else:
        tokenizer = train_tokenizer([" ".join(works[i][1]) for i in train], vocab_size=DEFAULT_RUN["vocab_size"])
    for rule in ("bert", "forward"):
        pairs = old_pairs(held_documents, tokenizer, rule)
        print(json.dumps({"pairs_rule": rule, "pairs": len(pairs), **rule_accuracies(pairs, tokenizer)}))
    examples = build_objective("sop", tokenizer, DEFAULT_RUN["max_seq_length"]).examples(held_documents)
    pairs = [(e["a"], e["b"]) for e in examples]
    print(json.dumps({"pairs_rule": "now", "pairs": len(pairs), **rule_accuracies(pairs, tokenizer)}))

if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the docstring is the usage
        print(__doc__)
        raise SystemExit(0)
    main(sys.argv[1:])

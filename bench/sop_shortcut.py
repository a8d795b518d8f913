"""How much of the held-out SOP accuracy one surface rule gets, with the old pair rule and with today's (issue 9).

    python bench/sop_shortcut.py [TOKENIZER_DIR]      # default: runs/pretrain-sop's tokenizer, else one trained here

The rule: look at the token just before the middle [SEP]. If it is not ".", "!" or "?", the first segment
stops mid-sentence: guess "swapped". A model with a previous-token head (block 0 has one) can read that
token directly, so whatever this rule scores is a score SOP can reach without learning sentence order.

- old: pairs as the first landing built them, after BERT's create_pretraining_data.py: a run of sentences
  grows until it passes the room (61 tokens at --max_seq_length 64), then the longer segment loses its *end*.
  The overflowing sentence is always in B, so B is cut more often than A, and a first segment that stops
  mid-sentence means "swapped". Written out below as the reference; the library no longer builds it.
- now: minibert's sop objective (minibert/data/objectives/nsp.py): a run ends before the sentence that would
  overflow, and what must still be cut is cut from the front, so every segment ends where a sentence ends.

Prints one JSON line per rule: pairs, the share of pairs whose A and B were cut (old rule), and the rule's
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


def old_pairs(documents, tokenizer, seed: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray]], float, float]:
    """The old rule: runs overflow the room by their last sentence, then the longer segment loses its end."""
    rng = np.random.default_rng(seed)
    pairs, a_cut, b_cut = [], 0, 0
    for sentences in documents:
        ids = [np.asarray(tokenizer.encode(s), dtype=np.int64) for s in sentences]
        if len(ids) < 2:
            continue
        runs, first, used = [], 0, 0
        for s, sentence in enumerate(ids):
            used += len(sentence)
            if used >= ROOM and s + 1 - first >= 2:  # the sentence that overflows stays in the run
                runs.append(ids[first:s + 1])
                first, used = s + 1, 0
        if len(ids) - first >= 2:
            runs.append(ids[first:])
        for run in runs:
            split = int(rng.integers(1, len(run) - 1)) if len(run) >= 3 else 1
            a, b = np.concatenate(run[:split]), np.concatenate(run[split:])
            la, lb = len(a), len(b)
            while la + lb > ROOM:  # the old truncate_pair: the longer one loses its end
                if la > lb:
                    la -= 1
                else:
                    lb -= 1
            a_cut, b_cut = a_cut + (la < len(a)), b_cut + (lb < len(b))
            pairs.append((a[:la], b[:lb]))
    return pairs, a_cut / len(pairs), b_cut / len(pairs)


def rule_accuracy(pairs, tokenizer) -> float:
    """Accuracy of "the first segment stops mid-sentence -> swapped", each pair shown in both orders."""
    ends = set(tokenizer.convert_tokens_to_ids([".", "!", "?"]))
    right = 0
    for a, b in pairs:
        right += int(a[-1]) in ends  # not swapped (A first): right when A ends a sentence
        right += int(b[-1]) not in ends  # swapped (B first): right when B stops mid-sentence
    return right / (2 * len(pairs))


def main(argv: list[str]) -> None:
    works = load_works()
    train, held, _ = select_documents([w for w, _ in works], 0.2, 1.0)  # the default run's split
    held_documents = [works[i][1] for i in held]
    path = Path(argv[0] if argv else "runs/pretrain-sop")
    if (path / "tokenizer.json").exists() or (path / "vocab.txt").exists():
        tokenizer = load_tokenizer(path)
    else:
        tokenizer = train_tokenizer([" ".join(works[i][1]) for i in train], vocab_size=DEFAULT_RUN["vocab_size"])
    pairs, a_cut, b_cut = old_pairs(held_documents, tokenizer)
    print(json.dumps({"rule": "old", "pairs": len(pairs), "a_cut": round(a_cut, 3), "b_cut": round(b_cut, 3),
                      "surface_rule_accuracy": round(rule_accuracy(pairs, tokenizer), 3)}))
    examples = build_objective("sop", tokenizer, DEFAULT_RUN["max_seq_length"]).examples(held_documents)
    pairs = [(e["a"], e["b"]) for e in examples]
    print(json.dumps({"rule": "now", "pairs": len(pairs),
                      "surface_rule_accuracy": round(rule_accuracy(pairs, tokenizer), 3)}))


if __name__ == "__main__":
    main(sys.argv[1:])

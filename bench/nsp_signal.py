"""How much "does B follow A?" a word count finds in nsp's pairs, beside what pretraining learns (issue 9).

    python bench/nsp_signal.py [TOKENIZER_DIR]        # default: runs/pretrain-sop's tokenizer (about 1 minute)

Measured 2026-11-23 on the held-out plays' 3,054 pairs: 0.590 (training pairs 0.592), where
`python pretrain.py --objective nsp` (the default recipe otherwise) ends at held-out NSP accuracy 0.506, its
NSP loss at ln 2 from the first evaluation to the last, training NSP accuracy 0.50 throughout.

nsp's second segment is, half of the time, a run of sentences from another scene (label 1). Another scene
often has other people in it and talks about other things, so the two segments share fewer of their rarer
words. This fits a logistic regression to four such overlap features (the share of B's rarer word types
found in A, of A's found in B, whether any is shared, and their Jaccard index; "rarer": outside the 150
most frequent tokens of the training plays) on the training plays' pairs, and scores the held-out plays'
pairs. It is a floor on the signal in the pairs, not a ceiling; sop's own order signal is in
bench/sop_signal.py.
"""

import collections
import json
import sys

import torch

from minibert.data import build_objective
from minibert.data.corpus import load_works
from minibert.pretraining import DEFAULT_RUN, HELD_OUT_SEED, select_documents
from minibert.tokenizer import load_tokenizer

COMMON = 150  # the most frequent tokens, left out of the overlap


def overlap_features(a: list[int], b: list[int], common: set[int]) -> list[float]:
    words_a, words_b = set(a) - common, set(b) - common
    shared = len(words_a & words_b)
    return [shared / max(1, len(words_b)), shared / max(1, len(words_a)), float(shared > 0),
            shared / max(1, len(words_a | words_b))]


def design(examples, common: set[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 4) features and (N,) labels (1 = B comes from another scene)."""
    x = torch.tensor([overlap_features(e["a"].tolist(), e["b"].tolist(), common) for e in examples])
    y = torch.tensor([float(e["next_sentence_label"]) for e in examples])
    return x, y


def fit(x: torch.Tensor, y: torch.Tensor, steps: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    w, b = torch.zeros(x.shape[1], requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y).backward()
        opt.step()
    return w.detach(), b.detach()


def accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    return round(((x @ w + b > 0).float() == y).float().mean().item(), 3)


def main(argv: list[str]) -> None:
    works = load_works()
    train, held, _ = select_documents([w for w, _ in works], 0.2, 1.0)  # the default run's split
    tokenizer = load_tokenizer(argv[0] if argv else "runs/pretrain-sop")
    objective = build_objective("nsp", tokenizer, DEFAULT_RUN["max_seq_length"], seed=HELD_OUT_SEED)
    train_examples = objective.examples([works[i][1] for i in train])
    frequency = collections.Counter(t for e in train_examples for t in e["a"].tolist())
    common = {t for t, _ in frequency.most_common(COMMON)}
    x, y = design(train_examples, common)
    x_held, y_held = design(objective.examples([works[i][1] for i in held]), common)
    mean, std = x.mean(0), x.std(0) + 1e-6  # standardised with the training pairs' statistics
    x, x_held = (x - mean) / std, (x_held - mean) / std
    w, b = fit(x, y)
    print(json.dumps({"train_accuracy": accuracy(x, y, w, b), "held_out_accuracy": accuracy(x_held, y_held, w, b),
                      "held_out_pairs": len(y_held), "held_out_share_random": round(y_held.mean().item(), 3)}))


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the docstring is the usage
        print(__doc__)
        raise SystemExit(0)
    main(sys.argv[1:])

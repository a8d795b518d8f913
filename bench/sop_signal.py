"""How much sentence order a simple model finds in the default run's pairs, without a transformer (issue 9).

    python bench/sop_signal.py [TOKENIZER_DIR]        # default: runs/pretrain-sop's tokenizer (about 1 minute)

Measured 2026-11-23 on the held-out plays' 3,057 pairs: 0.524, 0.528 and 0.516 at L2 1e-5, 1e-4 and 1e-3
(training pairs 0.885, 0.763, 0.649).

Once the pairs' shapes say nothing (bench/sop_shortcut.py), what is left for SOP is the text. This fits a
logistic regression, on the training plays' pairs shown in both orders, to hashed indicator features a
transformer's first block sees at once: each segment's first and last token, its first two tokens, and the
two junctions (the first segment's last token with the second's first, and the second's last with the
first's first: "ay" after "?", an answer after its question). It then scores the held-out plays' pairs:
what it finds there is order signal that needs no understanding of the text, and with enough L2 it cannot
memorise the training pairs. The default run's SOP head would have to find far more than this to reach
issue 9's 0.70.
"""

import json
import sys
import zlib

import torch

from minibert.data import build_objective
from minibert.data.corpus import load_works
from minibert.pretraining import DEFAULT_RUN, select_documents
from minibert.tokenizer import load_tokenizer

BUCKETS = 1 << 18  # hashed feature space


def features(first: list[int], second: list[int]) -> list[int]:
    """Hashed feature ids of the pair (first, second) as shown to the model."""
    names = [("first starts", first[0]), ("first ends", first[-1]), ("second starts", second[0]),
             ("second ends", second[-1]), ("junction", first[-1], second[0]), ("wrap", second[-1], first[0]),
             ("first opens", *first[:2]), ("second opens", *second[:2])]
    return [zlib.crc32(repr(name).encode()) % BUCKETS for name in names]  # hash() of a str changes per process


def design(objective, documents) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, BUCKETS) sparse 0/1 features and (N,) labels (1 = swapped), every pair in both orders."""
    rows, labels = [], []
    for e in objective.examples(documents):
        a, b = e["a"].tolist(), e["b"].tolist()
        rows += [features(a, b), features(b, a)]
        labels += [0, 1]
    index = torch.tensor([[i, j] for i, row in enumerate(rows) for j in row]).T  # (2, nonzeros)
    # check_invariants said outright: left unsaid, torch warns that the checks are implicitly off. On: one
    # pass over the indices, which are in range by construction (crc32 % BUCKETS).
    x = torch.sparse_coo_tensor(index, torch.ones(index.shape[1]), (len(rows), BUCKETS),
                                check_invariants=True).coalesce()
    return x, torch.tensor(labels, dtype=torch.float32)


def fit(x: torch.Tensor, y: torch.Tensor, l2: float, steps: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    w, b = torch.zeros(BUCKETS, 1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        logits = torch.sparse.mm(x, w).squeeze(1) + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + l2 * (w ** 2).sum()
        loss.backward()
        opt.step()
    return w.detach(), b.detach()


def accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    return round(((torch.sparse.mm(x, w).squeeze(1) + b > 0).float() == y).float().mean().item(), 3)


def main(argv: list[str]) -> None:
    works = load_works()
    train, held, _ = select_documents([w for w, _ in works], 0.2, 1.0)  # the default run's split
    tokenizer = load_tokenizer(argv[0] if argv else "runs/pretrain-sop")
    objective = build_objective("sop", tokenizer, DEFAULT_RUN["max_seq_length"])
    x, y = design(objective, [works[i][1] for i in train])
    x_held, y_held = design(objective, [works[i][1] for i in held])
    for l2 in (1e-5, 1e-4, 1e-3):
        w, b = fit(x, y, l2)
        print(json.dumps({"l2": l2, "train_accuracy": accuracy(x, y, w, b),
                          "held_out_accuracy": accuracy(x_held, y_held, w, b), "held_out_pairs": len(y_held) // 2}),
              flush=True)


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the docstring is the usage
        print(__doc__)
        raise SystemExit(0)
    main(sys.argv[1:])

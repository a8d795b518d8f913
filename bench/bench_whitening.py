"""BERT-whitening on a real-label retrieval task: which speeches come from the same play?

Queries: the 360 validation speeches of the shipped task (10 per play, 36 plays); candidates: the
1,080 training speeches (30 per play); a candidate is relevant when it comes from the query's play
(the `play` field, from the corpus's metadata). Every query is ranked against every candidate by
cosine. Reported: recall@k (the share of queries with a same-play speech in the top k) and MRR
(mean of 1 / rank of the first same-play speech). The whitening is fitted on the candidates'
vectors only (no labels), so the queries are unseen.

Rows per model and pooling: no whitening, then beta, gamma in {0, 0.5, 1} x k in {full, E/2, E/4}
(full: every direction the vectors x - beta mu spread along: E - 1 for the mean or [CLS] of a
post-LN BERT at beta 1, whose final LayerNorm puts them on a hyperplane, and at every beta where
that hyperplane holds the origin, as the random-weights model's does (its LayerNorm bias is 0);
E otherwise);
models: the pretrained checkpoint and the same architecture with random weights; also what a
random ranking scores (exact) and a TF-IDF over the tokenizer's word pieces, for scale.

    python bench/bench_whitening.py                               # runs/pretrain-sop, mean and cls
    python bench/bench_whitening.py --model DIR --poolings mean   # another BERT / RoBERTa checkpoint

The default checkpoint is made by `python pretrain.py --objective sop` (a few minutes on 2 CPU cores).
"""

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch

from minibert.auto import load_pretrained
from minibert.sentence_embeddings import Whitening, chance_scores, directions_with_variance, embed, retrieval_scores
from minibert.tokenizer import load_tokenizer

TASKS = Path(__file__).resolve().parent.parent / "minibert" / "data" / "tasks"
GRID = (0.0, 0.5, 1.0)


def read_speeches(split: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (TASKS / f"shakespeare_genre_{split}.jsonl").read_text().splitlines()]
    return [r["text"] for r in rows], [r["play"] for r in rows]


def tfidf(tokenizer, candidates: list[str], queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word-piece counts, log-scaled, times idf from the candidates: (M, V) and (Q, V)."""
    V = tokenizer.vocab_size

    def counts(texts):
        out = np.zeros((len(texts), V))
        for i, ids in enumerate(tokenizer.encode_batch(texts)):
            np.add.at(out[i], ids, 1.0)
        return np.log1p(out)

    c, q = counts(candidates), counts(queries)
    idf = np.log((1 + len(candidates)) / (1 + (c > 0).sum(axis=0))) + 1
    return c * idf, q * idf


def grid_rows(candidates: np.ndarray, queries: np.ndarray, cand_labels, query_labels) -> list[dict]:
    E = candidates.shape[1]
    rows = [{"whitening": "none", **retrieval_scores(queries, candidates, query_labels, cand_labels)}]
    for beta, gamma in itertools.product(GRID, GRID):
        full = directions_with_variance(candidates, beta)  # E, or E - 1 (post-LN vectors: see above)
        for k in (full, E // 2, E // 4):
            w = Whitening(beta, gamma, k).fit(candidates)
            scores = retrieval_scores(w.transform(queries), w.transform(candidates), query_labels, cand_labels)
            rows.append({"whitening": f"beta {beta:g} gamma {gamma:g} k {k}", "beta": beta, "gamma": gamma,
                         "k": k, "k_name": "full" if k == full else f"E/{E // k}", **scores})
    return rows


def fmt(scores: dict) -> str:
    se = f" +- {scores['mrr_se']:.3f}" if "mrr_se" in scores else ""
    return " | ".join(f"{scores[m]:.3f}" for m in ("recall@1", "recall@5", "recall@10", "mrr")) + se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/pretrain-sop", help="a BERT / RoBERTa checkpoint directory")
    parser.add_argument("--poolings", nargs="+", default=["mean", "cls"])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="for the random-weights model")
    parser.add_argument("--output", default=None, help="also write every row as JSON here")
    args = parser.parse_args()
    if not (Path(args.model) / "config.json").is_file():
        raise SystemExit(f"no checkpoint at {args.model}; make the default one with `python pretrain.py "
                         "--objective sop` or pass --model DIR")

    candidates, cand_labels = read_speeches("train")
    queries, query_labels = read_speeches("validation")
    tokenizer = load_tokenizer(args.model)
    pretrained = load_pretrained(args.model)
    torch.manual_seed(args.seed)
    random_weights = type(pretrained)(pretrained.config)
    per_play = cand_labels.count(cand_labels[0])
    print(f"{len(queries)} queries, {len(candidates)} candidates, {len(set(cand_labels))} plays, "
          f"{per_play} relevant candidates per query; whitening fitted on the candidates\n")
    print("| model | pooling | whitening | recall@1 | recall@5 | recall@10 | MRR +- standard error |")
    print("|---|---|---|---|---|---|---|")
    print(f"| chance (exact) | | | {fmt(chance_scores(len(candidates), per_play))} |")
    c, q = tfidf(tokenizer, candidates, queries)
    print(f"| TF-IDF over word pieces | | | {fmt(retrieval_scores(q, c, query_labels, cand_labels))} |")

    results = []
    for name, model in (("pretrained", pretrained), ("random weights", random_weights)):
        for pooling in args.poolings:
            kwargs = dict(pooling=pooling, tokenizer=tokenizer, batch_size=args.batch_size, device="cpu")
            cand_vectors = embed(model, candidates, **kwargs).astype(np.float64)  # (M, E)
            query_vectors = embed(model, queries, **kwargs).astype(np.float64)  # (Q, E)
            for row in grid_rows(cand_vectors, query_vectors, cand_labels, query_labels):
                print(f"| {name} | {pooling} | {row['whitening']} | {fmt(row)} |", flush=True)
                results.append({"model": name, "pooling": pooling, **row})
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

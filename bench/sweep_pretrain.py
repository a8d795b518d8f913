"""The sweep behind the old default pretraining recipe, before the neighbour heads (docs/pretraining-notes.md,
"How the old recipe was chosen"): one setting per run, the same training time for each,
then held-out MLM and SOP accuracy.

    python bench/sweep_pretrain.py vocab=2000 B=16      # the default recipe as it was swept (15% masking, no
                                                        # neighbour heads: today's default adds both, see README)
    python bench/sweep_pretrain.py vocab=8000 B=32      # the old default
    python bench/sweep_pretrain.py vocab=2000 B=16 lr=0.004 mlm=0.3 L=128 size=micro sinpos=1 budget=150

A plain loop (AdamW on the one no-decay rule, linear warmup and decay, clipping at 1.0, as the
engine) so that every setting gets the same wall-clock budget: the number of steps is set from the
first five steps' time. SOP on the shipped Shakespeare, 15% of the plays held out (the sweep was
run before the default became 20%), 1,500 held-out examples evaluated at 15% masking whatever the
training masking rate. `sinpos` > 0 starts the learned positions from sinusoids of that many times
the usual 0.02 standard deviation. Prints one JSON line.
"""

import json
import math
import sys
import time

import torch

from minibert.data import build_objective
from minibert.data.corpus import load_works
from minibert.pretraining import select_documents, size_config
from minibert.tokenizer import train_tokenizer

DEFAULTS = {"vocab": 8000, "L": 64, "B": 32, "lr": 2e-3, "size": "tiny", "budget": 150.0, "mlm": 0.15,
            "wd": 0.01, "warm": 0.06, "sinpos": 0.0}


def sinusoids(positions: int, width: int) -> torch.Tensor:
    """(positions, width) sines and cosines of the Transformer paper (Vaswani et al. 2017)."""
    pos = torch.arange(positions).unsqueeze(1).float()
    freq = torch.exp(torch.arange(0, width, 2).float() * (-math.log(10000.0) / width))
    table = torch.zeros(positions, width)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return table


def main(argv: list[str]) -> None:
    cfg = dict(DEFAULTS)
    for item in argv:
        key, value = item.split("=")
        cfg[key] = type(cfg[key])(value)
    torch.manual_seed(0)
    works = load_works()
    train, held, _ = select_documents([w for w, _ in works], 0.15, 1.0)
    train_docs, held_docs = [works[i][1] for i in train], [works[i][1] for i in held]
    tokenizer = train_tokenizer([" ".join(d) for d in train_docs], vocab_size=cfg["vocab"])
    objective = build_objective("sop", tokenizer, cfg["L"], mlm_probability=cfg["mlm"])
    evaluation = build_objective("sop", tokenizer, cfg["L"])
    examples, held = objective.examples(train_docs), evaluation.examples(held_docs)[:1500]
    model = objective.build_model({**size_config("bert", cfg["size"]), "sparse_mlm": True,
                                   "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    if cfg["sinpos"]:
        weight = model.bert.embeddings.position_embeddings.weight
        table = sinusoids(*weight.shape)
        with torch.no_grad():
            weight.copy_(table * cfg["sinpos"] * 0.02 / table.std())
    groups = [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": cfg["wd"]},
              {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg["lr"])
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0)).tolist()
    step, seen, total, warm, start = 0, 0, None, 1, time.perf_counter()
    while total is None or step < total:
        batch = objective.collate([examples[order[(seen + i) % len(order)]] for i in range(cfg["B"])], generator)
        seen += cfg["B"]
        if total is None and step == 5:
            total = int(cfg["budget"] / ((time.perf_counter() - start) / 5))
            warm = max(1, int(cfg["warm"] * total))
        scale = 0.01 if total is None else (step / warm if step < warm else max(0.0, (total - step) / (total - warm)))
        for group in optimizer.param_groups:
            group["lr"] = cfg["lr"] * scale
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
    seconds = time.perf_counter() - start
    model.eval()
    totals = {"mlm_accuracy": 0.0, "sop_accuracy": 0.0}
    with torch.no_grad():
        for s in range(0, len(held), 64):
            batch = evaluation.collate(held[s : s + 64], torch.Generator().manual_seed(s))
            for key, value in evaluation.metrics(batch, model(**batch)).items():
                totals[key] += value * len(batch["input_ids"])
    result = {k: round(v / len(held), 4) for k, v in totals.items()}
    print(json.dumps({**cfg, "steps": step, "passes": round(seen / len(examples), 2), "train_s": round(seconds),
                      "held_out": result}), flush=True)


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the docstring is the usage
        print(__doc__)
        raise SystemExit(0)
    main(sys.argv[1:])

"""The data-scale experiment of the source notes, in miniature: pretrain on A, fine-tune on B,
evaluate on B, and watch how much the size of A helps.

    python bench/bench_transfer.py                 # 1%, 10%, 100% of the shipped Shakespeare, 3 seeds (~21 min)
    python bench/bench_transfer.py --quick         # a smoke run of the whole pipeline (seconds)
    python bench/bench_transfer.py --max_steps 12800 --output_dir runs/transfer-long   # 8x the steps (~70 min)

For each fraction of corpus A's training documents (a fixed subset, each smaller one inside the
larger), the default `pretrain.py --objective sop` recipe runs for the same number of steps;
every checkpoint, and the same architecture from random weights, is then fine-tuned with the
default `train.py` recipe on the shipped genre task (dataset B) with each seed. All fractions
share one tokenizer (the one trained on 100% of A), so only the encoder's pretraining data
varies. Prints the table, writes transfer.json and draws transfer.png (accuracy against the
amount of pretraining text, error bars = standard deviation over seeds, random weights and the
majority class as lines).
"""

import argparse
import json
import logging
import statistics
import sys
from collections import Counter
from pathlib import Path

from minibert.engine import TrainingArguments
from minibert.finetune.task_data import read_rows
from minibert.finetuning import DEFAULT_TRAINING as FINETUNE_TRAINING
from minibert.finetuning import DEFAULT_VALIDATION_FILE, RANDOM_INIT, FinetuneArguments, finetune
from minibert.pretraining import DEFAULT_RUN, DEFAULT_TRAINING, PretrainingOptions, run_pretraining

QUICK_MODEL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
# Beside the accuracies under --quick only: 3 steps of a tiny model check the pipeline, not the README's table.
SMOKE_NOTE = " (smoke size: the README's figures are from the full run)"


def pretrain(fraction: float, out: Path, tokenizer: str | None, quick: bool, max_steps: int) -> dict:
    options = PretrainingOptions(objective="sop", corpus_fraction=fraction, tokenizer=tokenizer,
                                 model_size=DEFAULT_RUN["model_size"], vocab_size=DEFAULT_RUN["vocab_size"],
                                 max_seq_length=DEFAULT_RUN["max_seq_length"], dropout=DEFAULT_RUN["dropout"],
                                 objective_options={"mlm_probability": DEFAULT_RUN["mlm_probability"]})
    every = max(max_steps // 4, 1)  # four held-out evaluations and checkpoints, however long the run
    training = {**DEFAULT_TRAINING, "output_dir": str(out), "disable_tqdm": True, "overwrite_output_dir": True,
                "max_steps": max_steps, "eval_steps": every, "save_steps": every}
    if quick:
        config = out.parent / "quick_config.json"
        config.write_text(json.dumps(QUICK_MODEL))
        options.config_file, options.max_eval_examples, options.vocab_size = str(config), 32, 500
        training.update(max_steps=3, eval_steps=None, save_steps=1000, logging_steps=1, plot_loss=False)
    result = run_pretraining(options, TrainingArguments(**training))
    return {"examples": result.num_examples, "passes": result.passes, "eval_end": result.eval_end}


def fine_tune(model: str, config: str | None, seed: int, out: Path, quick: bool) -> float:
    args = FinetuneArguments(model_name_or_path=model, config_name=config)
    training = {**FINETUNE_TRAINING, "output_dir": str(out), "seed": seed, "disable_tqdm": True,
                "overwrite_output_dir": True}
    if quick:
        training.update(max_steps=3, eval_steps=3, logging_steps=1, plot_loss=False)
    return finetune(args, TrainingArguments(**training)).metrics["accuracy"]


def summarise(accuracies: list[float]) -> tuple[float, float]:
    return statistics.mean(accuracies), statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0


def plot(rows: list[dict], random_row: dict, majority: float, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["training_examples"] for r in rows]
    ax.errorbar(x, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], marker="o", capsize=4,
                label="pretrained on a share of A")
    for r in rows:
        ax.annotate(f"{r['fraction']:.0%}", (r["training_examples"], r["mean"]), textcoords="offset points",
                    xytext=(6, -12))
    ax.axhline(random_row["mean"], color="tab:red", label="random weights")
    ax.axhspan(random_row["mean"] - random_row["std"], random_row["mean"] + random_row["std"], color="tab:red",
               alpha=0.15)
    ax.axhline(majority, color="gray", linestyle="--", label="majority class")
    ax.set_xscale("log")
    ax.set_xlabel("pretraining examples of corpus A (sentence pairs of up to 64 tokens, log scale)")
    ax.set_ylabel("validation accuracy on B (genre)")
    ax.set_title("Pretrain on A, fine-tune on B: the size of A")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--output_dir", default="runs/transfer")
    parser.add_argument("--max_steps", type=int, default=DEFAULT_TRAINING["max_steps"],
                        help="pretraining steps for every fraction (default: the default run's)")
    parser.add_argument("--quick", action="store_true", help="tiny model, 3 steps each: checks the pipeline only")
    ns = parser.parse_args(argv)
    if ns.quick:
        ns.fractions, ns.seeds = [0.1, 1.0], [1, 2]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(ns.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fractions = sorted(ns.fractions, reverse=True)  # the largest first: its tokenizer serves the others
    if fractions[0] != 1.0:
        fractions.insert(0, 1.0)
    full = out / "pretrain-100"
    note = SMOKE_NOTE if ns.quick else ""
    rows = []
    for fraction in fractions:
        directory = out / f"pretrain-{fraction * 100:g}"
        stats = pretrain(fraction, directory, None if fraction == 1.0 else str(full), ns.quick, ns.max_steps)
        accuracies = [fine_tune(str(directory), None, seed, out / "finetune", ns.quick) for seed in ns.seeds]
        mean, std = summarise(accuracies)
        rows.append({"fraction": fraction, "training_examples": stats["examples"], "passes": stats["passes"],
                     "held_out": stats["eval_end"], "accuracies": accuracies, "mean": mean, "std": std})
        print(f"pretrained on {fraction:.0%} of A: accuracy {mean:.3f} +- {std:.3f} {accuracies}{note}", flush=True)
    accuracies = [fine_tune(RANDOM_INIT, str(full), seed, out / "finetune", ns.quick) for seed in ns.seeds]
    mean, std = summarise(accuracies)
    random_row = {"accuracies": accuracies, "mean": mean, "std": std}
    labels = [str(r["label"]) for r in read_rows(DEFAULT_VALIDATION_FILE)]
    majority = Counter(labels).most_common(1)[0][1] / len(labels)

    rows.sort(key=lambda r: r["fraction"])
    seeds = " ".join(f"seed {s:<5}" for s in ns.seeds)
    print(f"\nfine-tuned on B (shakespeare_genre validation accuracy); majority class {majority:.3f}")
    print(f"{'start from':<28} {'A examples':>10} {'passes':>7} {'held-out mlm/sop':>17}  {seeds}  mean +- std{note}")
    for r in rows:
        held = r["held_out"]
        held_text = f"{held.get('mlm_accuracy', float('nan')):.3f}/{held.get('sop_accuracy', float('nan')):.3f}"
        per_seed = " ".join(f"{a:<10.3f}" for a in r["accuracies"])
        print(f"{'pretrained on ' + format(r['fraction'], '.0%') + ' of A':<28} {r['training_examples']:>10} "
              f"{r['passes']:>7.1f} {held_text:>17}  {per_seed}  {r['mean']:.3f} +- {r['std']:.3f}")
    per_seed = " ".join(f"{a:<10.3f}" for a in random_row["accuracies"])
    print(f"{'random weights':<28} {'-':>10} {'-':>7} {'-':>17}  {per_seed}  {mean:.3f} +- {std:.3f}")
    record = {"majority": majority, "seeds": ns.seeds, "max_steps": ns.max_steps, "pretrained": rows,
              "random": random_row, "quick": ns.quick}
    (out / "transfer.json").write_text(json.dumps(record, indent=2) + "\n")
    drawn = plot(rows, random_row, majority, out / "transfer.png")
    print(f"\nwrote {out / 'transfer.json'}" + (f" and {out / 'transfer.png'}" if drawn else
                                                 " (no transfer.png: pip install minibert[plot])"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

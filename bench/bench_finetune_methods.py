"""Accuracy of each fine-tuning method on the default task over seeds, beside full fine-tuning.

    python bench/bench_finetune_methods.py                     # every method, seeds 1 2 3 (~15 min, 2 cores)
    python bench/bench_finetune_methods.py --methods full adapters --seeds 1

Each run is `python train.py --seed S <the method's flags>` (the default task, checkpoint and
recipe), one at a time; the table gives the final model's validation accuracy (the best
evaluation's checkpoint), the trainable parameters and the run's wall time. Further pretraining
first runs its `pretrain.py` command once (skipped when its output exists and was made from the same
runs/pretrain-sop; so is any run whose result exists from it): the default checkpoint's
own objective (SOP, which includes MLM, and keeps the pooler that an MLM-only run would drop, so
the comparison changes one thing) on the task's training text.
"""

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

TAPT_DIR = "runs/pretrain-sop-tapt"
TAPT_COMMAND = ["pretrain.py", "--objective", "sop", "--init_from", "runs/pretrain-sop", "--corpus",
                "minibert/data/tasks/shakespeare_genre_train.jsonl", "--max_steps", "400", "--output_dir", TAPT_DIR,
                "--overwrite_output_dir"]
TASKS = "minibert/data/tasks/shakespeare_genre"
METHODS = {
    "full": [],
    "random": ["--model_name_or_path", "random", "--config_name", "runs/pretrain-sop"],
    "adapters": ["--adapter_size", "16", "--learning_rate", "2e-3"],
    "gradual_unfreezing": ["--gradual_unfreezing"],
    "gradual_unfreezing_llrd": ["--gradual_unfreezing", "--llrd", "0.8"],
    "ladder": ["--ladder_side_tuning", "4", "--learning_rate", "2e-3"],
    "multitask": ["--multitask", f"genre={TASKS}_train.jsonl,{TASKS}_validation.jsonl",
                  f"play={TASKS}_train.jsonl,{TASKS}_validation.jsonl,play", "--mixing", "equal",
                  "--task_type", "single_label_classification"],  # a play's title may hold a comma
    "further_pretraining": ["--model_name_or_path", TAPT_DIR],
}


BASE_STAMP = "base_checkpoint.sha1"  # beside each result: the runs/pretrain-sop it was fine-tuned from


def base_fingerprint() -> str:
    """The default checkpoint's weights, hashed: a result (or the further-pretrained checkpoint) made
    from another runs/pretrain-sop is run again, never mixed into the table."""
    weights = Path("runs/pretrain-sop/model.safetensors")
    if not weights.is_file():
        raise SystemExit("runs/pretrain-sop/model.safetensors is missing; run python pretrain.py --objective sop")
    return hashlib.sha1(weights.read_bytes()).hexdigest()


def trainable_parameters(flags: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # train.py, beside bench/
    import train
    from minibert.finetune.task_data import Task
    from minibert.finetuning import build_model, build_multitask_model

    args, _ = train.parse(flags)
    task = Task("single_label_classification", ["comedy", "history", "tragedy"])
    if args.multitask:
        model = build_multitask_model(args, args.model_name_or_path, {"genre": task, "play": Task(
            "single_label_classification", [str(i) for i in range(36)])})
    else:
        model = build_model(args, task)[0]
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--output", default="runs/bench_finetune_methods.json")
    args = parser.parse_args()
    base = base_fingerprint()
    tapt_stamp = Path(TAPT_DIR) / BASE_STAMP
    if "further_pretraining" in args.methods and not (
            (Path(TAPT_DIR) / "config.json").is_file() and tapt_stamp.is_file() and tapt_stamp.read_text() == base):
        subprocess.run([sys.executable, *TAPT_COMMAND], check=True)
        tapt_stamp.write_text(base)
    results = {}
    for name in args.methods:
        runs = []
        for seed in args.seeds:
            out = Path("runs/methods") / f"{name}-{seed}"
            start = time.perf_counter()
            stamp = out / BASE_STAMP
            if (out / "eval_results.json").is_file() and stamp.is_file() and stamp.read_text() == base:
                # done before from this same runs/pretrain-sop: reused (delete runs/methods to redo)
                runs.append({"seed": seed, "seconds": float("nan"),
                             **json.loads((out / "eval_results.json").read_text())["metrics"]})
                continue
            subprocess.run([sys.executable, "train.py", "--seed", str(seed), "--output_dir", str(out),
                            "--overwrite_output_dir", "--disable_tqdm", "--plot_loss", "false", *METHODS[name]],
                           check=True, capture_output=True)
            stamp.write_text(base)
            metrics = json.loads((out / "eval_results.json").read_text())["metrics"]
            runs.append({"seed": seed, "seconds": time.perf_counter() - start, **metrics})
            print(name, json.dumps(runs[-1]), flush=True)
        results[name] = {"flags": METHODS[name], "trainable": trainable_parameters(METHODS[name]), "runs": runs}
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print("\n| method | flags | trainable | " + " | ".join(f"seed {s}" for s in args.seeds) +
          " | mean +- std | s / run |\n|" + "---|" * (len(args.seeds) + 5))
    for name, result in results.items():
        key = "genre_accuracy" if name == "multitask" else "accuracy"
        accuracies = [r[key] for r in result["runs"]]
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        seconds = statistics.mean(r["seconds"] for r in result["runs"])  # nan when a run was reused
        print(f"| {name} | `{' '.join(result['flags'])}` | {result['trainable']:,} | " +
              " | ".join(f"{a:.3f}" for a in accuracies) +
              f" | {statistics.mean(accuracies):.3f} +- {spread:.3f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()

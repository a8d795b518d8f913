"""Accuracy of each fine-tuning method on the default task over seeds, beside full fine-tuning.

    python bench/bench_finetune_methods.py                     # every method, seeds 1 2 3 (~15 min, 2 cores)
    python bench/bench_finetune_methods.py --methods full adapters --seeds 1
    python bench/bench_finetune_methods.py --methods full --seeds 1 --work_dir /tmp/methods   # runs/ untouched

Each run is `python train.py --seed S <the method's flags>` (the default task, checkpoint and
recipe), one at a time; the table gives the final model's validation accuracy (the best
evaluation's checkpoint), the trainable parameters and the run's wall time. Further pretraining
first runs its `pretrain.py` command once (skipped when its output exists and was made from the same
runs/pretrain-sop; so is any run whose result exists from it): the default checkpoint's
own objective (SOP, which includes MLM, and keeps the pooler that an MLM-only run would drop, so
the comparison changes one thing) on the task's training text.

Everything the script writes (and reads back) goes under --work_dir (default runs): the runs in
<work_dir>/methods/<method>-<seed>, the further-pretrained checkpoint in <work_dir>/pretrain-sop-tapt
and the table's JSON in <work_dir>/bench_finetune_methods.json (or --output). runs/pretrain-sop, the
checkpoint every method starts from, is only read; the further pretraining's prepared data goes to the shared
cache of every pretrain.py run ($MINIBERT_CACHE, ~/.cache/minibert), not under --work_dir.
"""

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _child import run_child  # a failed train.py run shows its command and stderr

DEFAULT_WORK_DIR = "runs"  # where the README's table was made: runs/methods, runs/pretrain-sop-tapt


def tapt_dir(work_dir: str) -> str:
    return str(Path(work_dir) / "pretrain-sop-tapt")


def tapt_command(work_dir: str) -> list[str]:
    return ["pretrain.py", "--objective", "sop", "--init_from", "runs/pretrain-sop", "--corpus",
            "minibert/data/tasks/shakespeare_genre_train.jsonl", "--max_steps", "400", "--output_dir",
            tapt_dir(work_dir), "--overwrite_output_dir"]


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
    "further_pretraining": ["--model_name_or_path", tapt_dir(DEFAULT_WORK_DIR)],  # under --work_dir: method_flags
}


def method_flags(name: str, work_dir: str) -> list[str]:
    """A method's train.py flags, the further-pretrained checkpoint read from this run's --work_dir."""
    return ["--model_name_or_path", tapt_dir(work_dir)] if name == "further_pretraining" else METHODS[name]


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
    parser.add_argument("--work_dir", default=DEFAULT_WORK_DIR,
                        help="where the runs, the further-pretrained checkpoint and the JSON go, and where earlier "
                             "results are reused from (default: runs, as for the README's table)")
    parser.add_argument("--output", default=None,
                        help="the table's JSON (default: <work_dir>/bench_finetune_methods.json)")
    args = parser.parse_args()
    output = Path(args.output or Path(args.work_dir) / "bench_finetune_methods.json")
    base = base_fingerprint()
    tapt_stamp = Path(tapt_dir(args.work_dir)) / BASE_STAMP
    if "further_pretraining" in args.methods and not (
            (Path(tapt_dir(args.work_dir)) / "config.json").is_file() and tapt_stamp.is_file()
            and tapt_stamp.read_text() == base):
        subprocess.run([sys.executable, *tapt_command(args.work_dir)], check=True)
        tapt_stamp.write_text(base)
    results = {}
    for name in args.methods:
        runs = []
        for seed in args.seeds:
            out = Path(args.work_dir) / "methods" / f"{name}-{seed}"
            start = time.perf_counter()
            stamp = out / BASE_STAMP
            if (out / "eval_results.json").is_file() and stamp.is_file() and stamp.read_text() == base:
                # done before from this same runs/pretrain-sop: reused (delete <work_dir>/methods to redo)
                runs.append({"seed": seed, "seconds": float("nan"),
                             **json.loads((out / "eval_results.json").read_text())["metrics"]})
                continue
            flags = method_flags(name, args.work_dir)
            run_child([sys.executable, "train.py", "--seed", str(seed), "--output_dir", str(out),
                       "--overwrite_output_dir", "--disable_tqdm", "--plot_loss", "false", *flags])
            stamp.write_text(base)
            metrics = json.loads((out / "eval_results.json").read_text())["metrics"]
            runs.append({"seed": seed, "seconds": time.perf_counter() - start, **metrics})
            print(name, json.dumps(runs[-1]), flush=True)
        flags = method_flags(name, args.work_dir)
        results[name] = {"flags": flags, "trainable": trainable_parameters(flags), "runs": runs}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
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

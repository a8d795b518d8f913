"""Smart batching (dynamic padding + uniform-length batches) against fixed max-length padding,
fine-tuning the same model on the shipped Shakespeare genre task for the same epochs.

Prints, for each: the share of padding positions in an epoch's batches, the training time per
epoch (optimizer steps only; evaluation and saving excluded) and the validation accuracy of
the best checkpoint; then the speed-up (goal >= 2x with no loss of accuracy). Times are given
as wall time and as CPU time (the one to trust on a shared machine).

    python bench/bench_smart_batching.py            # 3 epochs each (several minutes on 2 cores)
    python bench/bench_smart_batching.py --quick    # 1 epoch each
    python bench/bench_smart_batching.py --model_name_or_path runs/pretrain-sop/checkpoint-1600   # any checkpoint
"""

import argparse
import logging
import tempfile
import time

import torch

from minibert.engine import TrainingArguments
from minibert.finetune.smart_batching import PaddingCollator, UniformLengthSampler, padding_share
from minibert.finetune.task_data import load_split
from minibert.finetuning import DEFAULT_PRETRAINED, FinetuneArguments, finetune
from minibert.tokenizer import load_tokenizer


class StepTimer:
    """Time of the optimizer steps, from the first backward to the last step's end (the runs
    evaluate and save only after the last step, so nothing else falls in between): wall time,
    and this process's CPU time, which other processes on a shared machine disturb far less."""

    def __init__(self):
        self.start = self.end = None

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def on_backward_end(self, trainer, batch):
        if self.start is None:
            self.start = self.now()

    def on_step_end(self, trainer):
        self.end = self.now()


def epoch_padding(args: FinetuneArguments, batch_size: int) -> float:
    tokenizer = load_tokenizer(args.model_name_or_path)
    examples, _ = load_split(args.train_file, tokenizer, args.max_seq_length, args.text_column, args.label_column,
                             args.text_pair_column)
    collate = PaddingCollator(tokenizer.pad_token_id, args.max_seq_length, args.padding)
    if args.group_by_length:
        batches = list(UniformLengthSampler([len(e["input_ids"]) for e in examples], batch_size))
    else:
        batches = [list(range(i, min(i + batch_size, len(examples)))) for i in range(0, len(examples), batch_size)]
    return padding_share([collate([examples[i] for i in b]) for b in batches])


def run(name: str, model: str, epochs: float, smart: bool, output_dir: str) -> dict:
    args = FinetuneArguments(model_name_or_path=model, group_by_length=smart,
                             padding="longest" if smart else "max_length")
    training = TrainingArguments(output_dir=output_dir, overwrite_output_dir=True, learning_rate=5e-4,
                                 num_train_epochs=epochs, per_device_train_batch_size=32, warmup_ratio=0.1,
                                 weight_decay=0.01, eval_steps=10_000, save_steps=10_000, logging_steps=10_000,
                                 load_best_model_at_end=True, plot_loss=False, device="cpu", seed=0)
    timer = StepTimer()
    result = finetune(args, training, callbacks=[timer])
    wall, cpu = (end - start for end, start in zip(timer.end, timer.start, strict=True))
    return {"name": name, "padding": epoch_padding(args, 32), "wall": wall / epochs, "cpu": cpu / epochs,
            "accuracy": result.metrics["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model_name_or_path", default=DEFAULT_PRETRAINED)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared machine, 2 threads spin-wait on each other and the "
                             "waiting, not the work, dominates a small model's step)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    epochs = 1.0 if args.quick else 3.0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, smart in (("fixed max-length padding (128)", False), ("smart batching", True)):
            rows.append(run(name, args.model_name_or_path, epochs, smart, f"{tmp}/{int(smart)}"))
    print(f"Shakespeare genre task, {args.model_name_or_path}, {epochs:g} epochs, batch 32, max_seq_length 128, "
          f"{args.threads} thread(s)")
    for r in rows:
        print(f"  {r['name']:32s} padding {r['padding']:6.1%}   per epoch: {r['wall']:6.1f} s wall, "
              f"{r['cpu']:6.1f} s CPU   accuracy {r['accuracy']:.3f}")
    fixed, smart = rows
    print(f"  speed-up: {fixed['wall'] / smart['wall']:.1f}x wall, {fixed['cpu'] / smart['cpu']:.1f}x CPU time "
          f"(goal >= 2x); accuracy {smart['accuracy'] - fixed['accuracy']:+.3f}"
          + (" (smoke size: the goal is judged on the full run)" if args.quick else ""))


if __name__ == "__main__":
    main()

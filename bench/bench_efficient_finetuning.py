"""Training memory and step time: full fine-tuning, adapters and ladder side-tuning on one model.

    python bench/bench_efficient_finetuning.py                  # the default checkpoint + a wider one
    python bench/bench_efficient_finetuning.py --models runs/pretrain-sop --steps 5

Every method trains on the same batches: B random sequences of T tokens, AdamW over the trainable
parameters. Step time: the three methods in one process, taking turns step by step (so that background
load hits all alike), on one thread and the process's CPU clock (`--threads`, `--clock wall` to change),
two warm-up steps each, then the median. Timing them one process after another on the wall clock, as
this script first did, moved the same method's step 2-14x between runs on a shared machine.

Memory, on a CPU (where there is no max_memory_allocated), two ways:
- counted (exact, deterministic): the tensors autograd saves for backward during one training
  forward (torch.autograd.graph.saved_tensors_hooks, each storage counted once, weights not
  counted here, since they are counted once among all parameters), plus the
  gradients and AdamW's two moments of the trainable parameters, plus all parameters. This is
  the peak a caching-free allocator would reach at the end of the forward pass; the saved
  activations are what ladder side-tuning claims to cut.
- measured: the rise of the process's peak resident memory (ru_maxrss) over training, from
  just before the first step, each method in a fresh process; noisier (the allocator keeps freed
  blocks) but not a model.
"""

import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from _child import run_child  # a failed child shows its command and stderr (bench_finetune_methods.py too)
from _clock import add_clock_options, apply_clock_options, warn_of_threads  # --clock, --threads, in one place

METHODS = {"full": [], "adapters": ["adapter_size"], "ladder": ["ladder_side_tuning"]}
WIDE = {"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8, "intermediate_size": 2048}


def build(model_dir: str, method: str, size: int):
    """(model in train mode, its trainable parameters, AdamW over them) for one method."""
    from minibert.finetune.task_data import Task
    from minibert.finetuning import FinetuneArguments, build_model

    torch.manual_seed(0)
    options = {"adapter_size": size} if method == "adapters" else {"ladder_side_tuning": size} if (
        method == "ladder") else {}
    model, _ = build_model(FinetuneArguments(model_name_or_path=model_dir, **options),
                           Task("single_label_classification", ["a", "b", "c"]))
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    return model, trainable, torch.optim.AdamW(trainable, lr=1e-4)


def make_batches(vocab: int, batch_size: int, seq_len: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(5, vocab, (batch_size, seq_len), generator=g),
             "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
             "labels": torch.randint(0, 3, (batch_size,), generator=g)} for _ in range(2)]


def step_times(model_dir: str, sizes: dict, batch_size: int, seq_len: int, steps: int, clock) -> dict:
    """Median ms per training step of each method, the methods taking turns step by step."""
    built = {method: build(model_dir, method, sizes.get(method, 0)) for method in METHODS}
    batches = make_batches(built["full"][0].config.vocab_size, batch_size, seq_len)
    times = {method: [] for method in METHODS}
    for step in range(steps + 2):
        for method, (model, _, optimizer) in built.items():
            start = clock()
            model(**batches[step % 2]).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= 2:
                times[method].append(clock() - start)
    return {method: 1000 * statistics.median(t) for method, t in times.items()}


def measure(model_dir: str, method: str, size: int, batch_size: int, seq_len: int, steps: int) -> dict:
    """Memory of one method, alone in this process."""
    model, trainable, optimizer = build(model_dir, method, size)
    batches = make_batches(model.config.vocab_size, batch_size, seq_len)

    storages: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}  # saved too, but counted as weights

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for step in range(min(steps + 2, 4)):  # the peak is reached in the first steps (AdamW's moments at step 1)
        if step == 0:
            with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
                loss = model(**batches[0]).loss
        else:
            loss = model(**batches[step % 2]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable_bytes = sum(p.numel() * p.element_size() for p in trainable)
    saved = sum(storages.values())
    counted = param_bytes + 3 * trainable_bytes + saved  # weights, grads + 2 AdamW moments, activations
    return {"method": method if method == "full" else f"{method} {size}",
            "parameters": sum(p.numel() for p in model.parameters()), "trainable": sum(p.numel() for p in trainable),
            "saved_activations_mb": saved / 2**20, "counted_peak_mb": counted / 2**20,
            "rss_rise_mb": (rss_after - rss_before) / 1024}


def wide_checkpoint(base: str, directory: Path) -> str:
    """The default checkpoint's vocabulary and tokenizer at a wider, deeper shape (random weights)."""
    from minibert.checkpoint import read_config_dict
    from minibert.models.bert import BertConfig, BertForPreTraining

    config = BertConfig.from_dict(read_config_dict(base), **WIDE)
    torch.manual_seed(0)
    BertForPreTraining(config).save_pretrained(directory)
    return str(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["runs/pretrain-sop", "wide"],
                        help="checkpoint dirs; 'wide' = the default one at " + json.dumps(WIDE))
    parser.add_argument("--adapter_size", type=int, default=16)
    parser.add_argument("--ladder_side_tuning", type=int, default=4)  # as in bench_finetune_methods.py
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    add_clock_options(parser, clock="cpu", threads=1)  # the threads while timing
    parser.add_argument("--output", default="runs/bench_efficient_finetuning.json")
    parser.add_argument("--one", nargs=2, metavar=("MODEL_DIR", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--time", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = {"adapters": args.adapter_size, "ladder": args.ladder_side_tuning}
    if args.one:
        model_dir, method = args.one
        print(json.dumps(measure(model_dir, method, sizes.get(method, 0), args.batch_size, args.seq_len, args.steps)))
        return
    if args.time:
        clock = apply_clock_options(args)
        print(json.dumps(step_times(args.time, sizes, args.batch_size, args.seq_len, args.steps, clock)))
        return
    warn_of_threads(args.clock, args.threads)  # here, where it shows: the timing child's stderr is captured
    common = ["--adapter_size", str(args.adapter_size), "--ladder_side_tuning", str(args.ladder_side_tuning),
              "--batch_size", str(args.batch_size), "--seq_len", str(args.seq_len), "--steps", str(args.steps)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model_dir = wide_checkpoint("runs/pretrain-sop", Path(tmp) / "wide") if name == "wide" else name
            command = [sys.executable, __file__, "--time", model_dir, "--threads", str(args.threads), "--clock",
                       args.clock, *common]
            times = json.loads(run_child(command))
            for method in METHODS:
                command = [sys.executable, __file__, "--one", model_dir, method, *common]
                row = json.loads(run_child(command))
                results.append({"model": name, **row, "step_ms": times[method]})
                print(json.dumps(results[-1]), flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print("\n| model | method | trainable / all parameters | saved activations (MB) | counted peak (MB) | "
          f"peak RSS rise (MB) | step (ms, {args.clock} clock, {args.threads} thread(s)) |\n"
          "|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['method']} | {r['trainable']:,} / {r['parameters']:,} | "
              f"{r['saved_activations_mb']:.1f} | {r['counted_peak_mb']:.1f} | {r['rss_rise_mb']:.0f} | "
              f"{r['step_ms']:.0f} |")


if __name__ == "__main__":
    main()

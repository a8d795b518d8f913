"""One pretraining step (MLM + NSP heads, BERT-base size, seq 128, small batch), three ways, side by
side in one process, alternating so that background load hits all three alike:

    minibert engine   minibert.BertForPreTraining trained by minibert.engine.Trainer (one training_step)
    minibert plain    the same model in a plain PyTorch loop (forward, backward, clip, AdamW, schedule)
    HF plain          transformers.BertForPreTraining (sdpa) in the same plain loop

All three use the same weights, the same batch (15% of the tokens labelled, realistic padding), AdamW
over the same decay / no-decay groups, gradient clipping at 1.0 and a linear schedule. Printed:
median seconds per step, tokens/s, and the ratios (below 1.0: minibert is faster).

    python bench/bench_pretrain_step.py              # BERT-base, batch 8 x 128, 20 timed steps each
    python bench/bench_pretrain_step.py --threads 1 --clock cpu   # steady on a shared CPU
    python bench/bench_pretrain_step.py --quick      # a tiny model, 2 steps: a smoke run
    python bench/bench_pretrain_step.py --device cuda --bf16   # on a GPU, with tokens/s and MFU
"""

import argparse
import statistics
import tempfile
from collections import defaultdict

import torch
from _clock import add_clock_options, apply_clock_options  # --clock, --threads (one thread under the CPU clock)

from minibert.engine import Trainer, TrainingArguments, build_optimizer, get_scheduler
from minibert.finetune.param_groups import param_groups
from minibert.models.bert import BertConfig, BertForPreTraining

BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core peaks
# Beside the ratios under --quick only: a tiny model's 2 steps say nothing about the README's BERT-base ratios.
SMOKE_NOTE = " (smoke size: the README's figures are from the full run)"


def make_batch(batch_size: int, seq_len: int, vocab: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(seq_len // 2, seq_len + 1, (batch_size,), generator=g)
    lengths[0] = seq_len
    keep = torch.arange(seq_len)[None, :] < lengths[:, None]  # (B, T) real tokens
    input_ids = torch.randint(5, vocab, (batch_size, seq_len), generator=g).masked_fill(~keep, 0)
    chosen = (torch.rand(batch_size, seq_len, generator=g) < 0.15) & keep
    return {
        "input_ids": input_ids,
        "attention_mask": keep.long(),
        "token_type_ids": (torch.arange(seq_len)[None, :] >= lengths[:, None] // 2).long() * keep,
        "labels": input_ids.masked_fill(~chosen, -100),
        "next_sentence_label": torch.randint(0, 2, (batch_size,), generator=g),
    }


class PlainLoop:
    """What every hand-written training loop does, for any model returning `.loss`."""

    def __init__(self, model, args: TrainingArguments, steps: int, device, autocast):
        self.model, self.device, self.autocast = model.to(device).train(), device, autocast
        self.optimizer = build_optimizer(model, args, param_groups(model, args.learning_rate, args.weight_decay))
        self.scheduler = get_scheduler("linear", self.optimizer, 0, steps)

    def step(self, batch: dict) -> None:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with self.autocast():
            loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 steps: a smoke run")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--bf16", action="store_true")
    add_clock_options(parser)
    ns = parser.parse_args()
    import transformers

    if ns.clock == "cpu" and ns.device == "cuda":
        parser.error("--clock cpu times the CPU's work; on a GPU use the wall clock")
    clock = apply_clock_options(ns)

    sizes, steps = (TINY, 2) if ns.quick else (BASE, ns.steps)
    vocab = 30522
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(vocab_size=vocab, attn_implementation="sdpa", **sizes)
    hf_model = transformers.BertForPreTraining(hf_config)
    models = {}
    for name in ("minibert engine", "minibert plain"):
        ours = BertForPreTraining(BertConfig(vocab_size=vocab, attn_implementation="sdpa", **sizes))
        ours.load_hf_state_dict(hf_model.state_dict())
        models[name] = ours
    batch = make_batch(ns.batch_size, ns.seq_len, vocab)
    tokens = int(batch["attention_mask"].sum())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            learning_rate=1e-4,
            weight_decay=0.01,
            max_steps=steps + 1,
            per_device_train_batch_size=ns.batch_size,
            device=ns.device,
            bf16=ns.bf16,
            logging_steps=10**6,
            save_steps=10**6,
            plot_loss=False,
        )
        trainer = Trainer(models["minibert engine"], args, [batch] * 4, lambda examples: dict(examples[0]))
        device = trainer.device
        runners = {
            "minibert engine": lambda: trainer.training_step(defaultdict(list)),
            "minibert plain": PlainLoop(models["minibert plain"], args, steps + 1, device, trainer.autocast).step,
            "HF plain": PlainLoop(hf_model, args, steps + 1, device, trainer.autocast).step,
        }
        times = {name: [] for name in runners}
        for step in range(steps + 1):  # step 0 warms up (allocations, first-call costs), not timed
            for name, run in runners.items():
                sync(device)
                start = clock()
                run() if name == "minibert engine" else run(batch)
                sync(device)
                if step > 0:
                    times[name].append(clock() - start)

    params = sum(p.numel() for p in hf_model.parameters())
    print(
        f"one pretraining step, BertForPreTraining {'tiny' if ns.quick else 'base'} ({params / 1e6:.0f}M params), "
        f"batch {ns.batch_size} x {ns.seq_len} ({tokens} real tokens), {device}, "
        f"{'bf16' if ns.bf16 else 'fp32'}, {torch.get_num_threads()} thread(s), {ns.clock} clock, torch "
        f"{torch.__version__}, transformers {transformers.__version__}"
    )
    medians = {name: statistics.median(t) for name, t in times.items()}
    peak = next(
        (v for k, v in PEAK_BF16_FLOPS.items() if device.type == "cuda" and k in torch.cuda.get_device_name()), None
    )
    for name, seconds in medians.items():
        flops = 6 * params * ns.batch_size * ns.seq_len  # forward + backward, padded positions included
        mfu = f", MFU {flops / seconds / peak:.1%}" if peak and ns.bf16 else ""
        print(
            f"  {name:<16} {seconds * 1000:9.1f} ms/step  {tokens / seconds:9.0f} tokens/s{mfu}  "
            f"(min {min(times[name]) * 1000:.1f} ms over {len(times[name])} steps)"
        )
    note = SMOKE_NOTE if ns.quick else ""
    print(f"ratio minibert engine / HF plain loop:  {medians['minibert engine'] / medians['HF plain']:.3f}{note}")
    print(f"ratio minibert plain / HF plain loop:   {medians['minibert plain'] / medians['HF plain']:.3f}{note}")
    print(f"engine overhead (engine / plain loop):  {medians['minibert engine'] / medians['minibert plain']:.3f}{note}")


if __name__ == "__main__":
    main()

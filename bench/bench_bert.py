"""minibert BERT vs Hugging Face BERT (sdpa), side by side in one process, same weights.

BERT-base size (12 layers, 768 hidden), batch 8 x 128 with realistic padding (row lengths
spread between 40% and 100% of the batch's longest), fp32 on the CPU. Times a forward pass in
eval mode and one training step (forward, MLM loss, backward, AdamW step), alternating the
implementations so that load from other processes hits all alike, and prints median times and
the ratio minibert / Hugging Face (< 1.0 means minibert is faster) for minibert as loaded
(every position computed, as Hugging Face does) and with `unpad=True` (the position-wise layers
skip padding; minibert/nn/packing.py).

    python bench/bench_bert.py                         # the full measurement (minutes on 2 cores)
    python bench/bench_bert.py --threads 1 --clock cpu # on a busy, shared machine
    python bench/bench_bert.py --quick                 # a tiny model, to check the script runs

--clock cpu times each call by this process's CPU time instead of the wall clock: with one thread
it is what the work costs, whatever else the machine is doing."""

import argparse
import statistics
import tempfile

import torch
import transformers
from _clock import add_clock_options, apply_clock_options  # --clock, --threads (one thread under the CPU clock)

from minibert.models.bert import BertForMaskedLM

# Beside the ratios under --quick only: a tiny model's 2 repeats say nothing about the README's BERT-base ratios.
SMOKE_NOTE = " (smoke size: the README's figures are from the full run)"


def make_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.linspace(int(0.4 * seq), seq, batch).round().long()[torch.randperm(batch, generator=g)]
    lengths[0] = seq
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1000, vocab, (batch, seq), generator=g) * mask
    labels = ids.masked_fill(torch.rand(batch, seq, generator=g) > 0.15, -100).masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "labels": labels}


def timed(fn, clock) -> float:
    start = clock()
    fn()
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, few repeats: a smoke run")
    parser.add_argument("--repeats", type=int, default=7)
    add_clock_options(parser)
    args = parser.parse_args()
    clock = apply_clock_options(args)
    transformers.utils.logging.disable_progress_bar()  # save_pretrained's "Writing model shards" bar, mid-table
    size = (dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
            if args.quick else dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                    intermediate_size=3072))
    repeats = 2 if args.quick else args.repeats
    config = transformers.BertConfig(vocab_size=30522, **size, attn_implementation="sdpa")
    torch.manual_seed(0)
    hf = transformers.BertForMaskedLM(config)
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        ours = BertForMaskedLM.from_pretrained(tmp, attn_implementation="sdpa")
        unpadded = BertForMaskedLM.from_pretrained(tmp, attn_implementation="sdpa", unpad=True)
    batch = make_batch(8, 128, config.vocab_size)
    real = batch["attention_mask"].float().mean().item()
    print(f"BERT {size['num_hidden_layers']} layers x {size['hidden_size']}, batch 8 x 128, "
          f"{real:.0%} real tokens, {torch.get_num_threads()} threads, {args.clock} clock, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")

    with torch.inference_mode():
        reference = hf.eval()(**batch).logits
        torch.testing.assert_close(ours.eval()(**batch).logits, reference, atol=1e-4, rtol=1e-4)
        real = batch["attention_mask"].bool()
        torch.testing.assert_close(unpadded.eval()(**batch).logits[real], reference[real], atol=1e-4, rtol=1e-4)

    def forward(model):
        model.eval()
        with torch.inference_mode():
            model(**batch)

    models = {"Hugging Face": hf, "minibert": ours, "minibert unpad": unpadded}
    optimizers = {id(m): torch.optim.AdamW(m.parameters(), lr=1e-5) for m in models.values()}

    def train_step(model):
        model.train()
        opt = optimizers[id(model)]
        opt.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        opt.step()

    for name, fn in (("forward (eval)", forward), ("training step", train_step)):
        times = {label: [] for label in models}
        for model in models.values():
            fn(model)  # warm-up
        for _ in range(repeats):  # alternate, so background load hits every side alike
            for label, model in models.items():
                times[label].append(timed(lambda fn=fn, model=model: fn(model), clock))
        median = {label: statistics.median(t) for label, t in times.items()}
        hf_ms = median["Hugging Face"]
        print(f"{name:15s} Hugging Face {hf_ms * 1e3:8.1f} ms | " + " | ".join(
            f"{label} {median[label] * 1e3:8.1f} ms (ratio {median[label] / hf_ms:.3f})"
            for label in ("minibert", "minibert unpad")) + (SMOKE_NOTE if args.quick else ""))


if __name__ == "__main__":
    main()

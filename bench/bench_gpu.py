"""Near the hardware's limit (issue 13): training MFU and decoding latency, minibert beside Hugging
Face in one process on the same weights and batches. Written for a CUDA GPU (bf16 autocast there);
`--quick` runs every part with tiny models on the CPU as a smoke test.

1. BERT-base MLM pretraining step (forward, backward, clipping, AdamW), batch 32 x 128 with
   realistic padding (lengths uniform in [T/2, T]) and 32 x 512: minibert as pretrain.py runs it
   (sdpa, MLM decoder on the labelled positions only, position-wise layers on real tokens only)
   against transformers' BertForMaskedLM with attn_implementation="sdpa". Time ratio, tokens/s, MFU.
2. GPT-2 124M causal-LM training step, sequence 1024: tokens/s and MFU.
3. GPT-2 124M batch-1 greedy decoding: ms per new token for Hugging Face's generate, minibert's
   (dynamic cache), and minibert's static cache under torch.compile (mode "reduce-overhead", i.e.
   CUDA graphs, on a GPU); against the floor = weight bytes / memory bandwidth. Same tokens checked.

FLOPs:
    training, per token:  6 * N + 12 * L * T * E
        N the parameters of the matrix products (every nn.Linear, plus the V x E output projection,
        which the LM head shares with the token embedding), L layers, T sequence length, E width:
        6N for the forward and backward products with the weights (2 + 4 FLOPs per weight and token),
        12 L T E for attention's two T x T products (llm.c's and PaLM's formula; llm.c counts N as
        every parameter, embeddings too, which adds the position table: <1% for GPT-2 small).
    MFU = the work the step needs / seconds per step / peak, the same numerator for both sides: for
        GPT-2 every token of its full rows; for BERT's MLM the real tokens only (not the padding) and
        the MLM transform and decoder only at the labelled positions (the loss reads nothing else).
        So skipping padding or the unlabelled logits is neither credited nor charged: it shows only
        as time. Crediting every position (as this script first did) gave minibert, which skips
        them, an MFU 1.45x its hardware use at 84% real tokens.
    HFU (BERT) = the FLOPs each side executes (torch.utils.flop_counter over one forward and
        backward) / seconds / peak: how busy each side keeps the hardware, padding and all.
    The peak is dense bf16 tensor-core throughput (H100 SXM: 989 TFLOP/s), by device name or
        --peak_tflops. Not printed without a peak.
    decoding floor, per token: bytes of every weight read once (fp32 / bf16) / memory bandwidth
        (H100 SXM HBM3: 3.35 TB/s), by device name or --bandwidth_gbs.

    python bench/bench_gpu.py                 # on a GPU: all three parts (bf16)
    python bench/bench_gpu.py --quick         # tiny models on the CPU: does every part run?
    python bench/bench_gpu.py --parts decode  # one part: bert, gpt2, decode
"""

import argparse
import statistics
import time

import torch
import transformers
from bench_pretrain_step import PlainLoop, make_batch, sync

from minibert.engine import TrainingArguments
from minibert.models.bert import BertConfig, BertForMaskedLM
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16 tensor-core peaks
BANDWIDTH_GBS = {"H100": 3350.0, "H200": 4800.0, "A100": 2039.0}  # HBM bandwidth (SXM parts)
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
BERT_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
GPT_TINY = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=128, bos_token_id=999,
                eos_token_id=999)


def by_device_name(table: dict, device: torch.device, given: float | None) -> float | None:
    if given is not None:
        return given
    if device.type != "cuda":
        return None
    return next((v for k, v in table.items() if k in torch.cuda.get_device_name(device)), None)


def matmul_params(model: torch.nn.Module, vocab: int, width: int) -> int:
    """N of the FLOP formula: every nn.Linear weight, plus the tied V x E output projection."""
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return linear + vocab * width


def training_flops(n: int, layers: int, seq_len: int, width: int, tokens: int) -> float:
    return (6 * n + 12 * layers * seq_len * width) * tokens


def executed_flops(loop, batch: dict) -> float:
    """FLOPs one forward and backward of `loop`'s model executes on `batch` (matrix products and
    attention, as torch.utils.flop_counter counts them); the gradients are dropped after."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, loop.autocast():
        loop.model(**{k: v.to(loop.device) for k, v in batch.items()}).loss.backward()
    loop.optimizer.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def median_step_times(runners: dict, steps: int, device) -> dict:
    """Alternate the runners step by step (load hits all alike); step 0 warms up and is not timed."""
    times = {name: [] for name in runners}
    for step in range(steps + 1):
        for name, run in runners.items():
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            if step > 0:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


SMOKE_NOTE = " (smoke size: the goal is judged on the full run)"  # beside a goal, under --quick only


def mfu_text(flops: float, seconds: float, peak_tflops: float | None) -> str:
    return f"MFU {flops / seconds / (peak_tflops * 1e12):6.1%}" if peak_tflops else "MFU n/a (no peak known)"


def training_args(device, bf16: bool, steps: int) -> TrainingArguments:
    return TrainingArguments(output_dir="runs/bench-gpu", learning_rate=1e-4, weight_decay=0.01, max_steps=steps + 1,
                             device=device.type, bf16=bf16, plot_loss=False)


def autocast_for(device, bf16: bool):
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def bert_part(ns, device, peak) -> None:
    sizes = BERT_TINY if ns.quick else BERT_BASE
    shapes = [(4, 32)] if ns.quick else [(32, 128), (32, 512)]
    vocab = 1000 if ns.quick else 30522
    torch.manual_seed(0)
    hf = transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=vocab, attn_implementation="sdpa",
                                                              max_position_embeddings=512, **sizes))
    ours = BertForMaskedLM(BertConfig(vocab_size=vocab, max_position_embeddings=512, sparse_mlm=True, unpad=True,
                                      **sizes))
    ours.load_hf_state_dict(hf.state_dict())
    args = training_args(device, ns.bf16, ns.steps)
    loops = {name: PlainLoop(model, args, ns.steps + 1, device, autocast_for(device, ns.bf16))
             for name, model in (("minibert", ours), ("HF sdpa", hf))}
    width, layers = sizes["hidden_size"], sizes["num_hidden_layers"]
    n_encoder = matmul_params(hf.bert.encoder, 0, width)  # the blocks' products, at every real token
    n_head = width * width + vocab * width  # the MLM transform and the tied decoder, at the labelled positions
    print(f"1. BERT-{'tiny' if ns.quick else 'base'} MLM training step ({(n_encoder + n_head) / 1e6:.3g}M matmul "
          "parameters)")
    for batch_size, seq_len in shapes:
        batch = make_batch(batch_size, seq_len, vocab)
        batch = {k: v for k, v in batch.items() if k != "next_sentence_label"}
        steps = {name: lambda loop=loop, batch=batch: loop.step(batch) for name, loop in loops.items()}
        executed = {name: executed_flops(loop, batch) for name, loop in loops.items()}
        medians = median_step_times(steps, ns.steps, device)
        real, labelled = int(batch["attention_mask"].sum()), int((batch["labels"] != -100).sum())
        needed = training_flops(n_encoder, layers, seq_len, width, real) + 6 * n_head * labelled
        for name, seconds in medians.items():
            hfu = mfu_text(executed[name], seconds, peak).replace("MFU", "HFU")
            print(f"   {batch_size} x {seq_len:<4} {name:<9} {seconds * 1e3:9.1f} ms/step {real / seconds:10.0f} "
                  f"real tokens/s  {mfu_text(needed, seconds, peak)}  {hfu} ({executed[name] / 1e9:.3g} GFLOP "
                  f"executed, {needed / 1e9:.3g} needed)")
        print(f"   {batch_size} x {seq_len:<4} ratio minibert / HF sdpa: {medians['minibert'] / medians['HF sdpa']:.3f}"
              "  (goal <= 0.67)" + (SMOKE_NOTE if ns.quick else ""))


def gpt_part(ns, device, peak) -> None:
    sizes = GPT_TINY if ns.quick else {}
    config = GPT2Config(**sizes, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    batch_size, seq_len = (2, 64) if ns.quick else (ns.gpt_batch_size, 1024)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    ids = torch.randint(0, config.vocab_size, (batch_size, seq_len))
    batch = {"input_ids": ids, "labels": ids}
    loop = PlainLoop(model, training_args(device, ns.bf16, ns.steps), ns.steps + 1, device,
                     autocast_for(device, ns.bf16))
    seconds = median_step_times({"minibert": lambda: loop.step(batch)}, ns.steps, device)["minibert"]
    n = matmul_params(model.transformer, config.vocab_size, config.n_embd)
    flops = training_flops(n, config.n_layer, seq_len, config.n_embd, batch_size * seq_len)
    print(f"2. GPT-2 {'tiny' if ns.quick else '124M'} causal-LM training step, {batch_size} x {seq_len} "
          f"({n / 1e6:.3g}M matmul parameters)")
    print(f"   minibert {seconds * 1e3:9.1f} ms/step {batch_size * seq_len / seconds:10.0f} tokens/s  "
          f"{mfu_text(flops, seconds, peak)}  (goal >= 45%)" + (SMOKE_NOTE if ns.quick else ""))


def decode_part(ns, device, bandwidth_gbs) -> None:
    sizes = GPT_TINY if ns.quick else {}
    new_tokens = 8 if ns.quick else 64
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(**sizes)
    dtype = torch.bfloat16 if ns.bf16 else torch.float32
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    ours = GPT2LMHeadModel(GPT2Config.from_dict(hf_config.to_dict()))
    ours.load_hf_state_dict(hf.state_dict())
    hf, ours = hf.to(device, dtype), ours.eval().to(device, dtype)
    ids = torch.randint(3, hf_config.vocab_size - 1, (1, 16), device=device)
    common = dict(attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, eos_token_id=hf_config.vocab_size - 1,
                  pad_token_id=hf_config.vocab_size - 1)  # an eos the random model does not produce: no early stop
    runs = {
        "HF generate": lambda: hf.generate(ids, do_sample=False, **common),
        "minibert dynamic": lambda: ours.generate(ids, **common),
        "minibert static": lambda: ours.generate(ids, cache_implementation="static", **common),
    }
    mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs replay the whole step
    if ns.compile:
        runs["minibert static+compile"] = lambda: ours.generate(ids, cache_implementation="static", **common)
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    floor_ms = weight_bytes / (bandwidth_gbs * 1e9) * 1e3 if bandwidth_gbs else None
    print(f"3. GPT-2 {'tiny' if ns.quick else '124M'} batch-1 greedy, {new_tokens} new tokens, {dtype}: "
          f"floor {f'{floor_ms:.3f} ms/token' if floor_ms else 'n/a (no bandwidth known)'} "
          f"({weight_bytes / 1e6:.3g} MB of weights per token)")
    reference = None
    with torch.no_grad():
        for name, run in runs.items():
            if name.endswith("compile"):
                ours.transformer.compile(dynamic=False, mode=mode)  # in place; last, as it stays compiled
            run()  # warm-up (compilation, CUDA graph capture)
            times = []
            for _ in range(ns.repeats):
                sync(device)
                start = time.perf_counter()
                out = run()
                sync(device)
                times.append(time.perf_counter() - start)
            reference = out if reference is None else reference
            ms = statistics.median(times) / (out.size(1) - ids.size(1)) * 1e3
            share = f"floor / this {floor_ms / ms:6.1%}" if floor_ms else ""
            print(f"   {name:<24} {ms:8.3f} ms/token  {share}  "
                  f"{'same tokens' if torch.equal(out, reference) else 'NOT THE SAME TOKENS'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models, 2 steps, on the CPU: a smoke run")
    parser.add_argument("--parts", default="bert,gpt2,decode", help="comma-separated: bert, gpt2, decode")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 10; 2 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed generations (default 5; 1 with --quick)")
    parser.add_argument("--gpt_batch_size", type=int, default=8)
    parser.add_argument("--peak_tflops", type=float, default=None, help="the device's dense bf16 peak")
    parser.add_argument("--bandwidth_gbs", type=float, default=None, help="the device's memory bandwidth, GB/s")
    parser.add_argument("--bf16", type=lambda s: s.lower() == "true", default=None,
                        help="true|false (default: true on CUDA, false on the CPU)")
    parser.add_argument("--compile", type=lambda s: s.lower() == "true", default=None,
                        help="decode part: also the static cache under torch.compile (default: true on CUDA)")
    ns = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not ns.quick else "cpu")
    ns.bf16 = device.type == "cuda" if ns.bf16 is None else ns.bf16
    ns.compile = device.type == "cuda" if ns.compile is None else ns.compile
    ns.steps = ns.steps or (2 if ns.quick else 10)
    ns.repeats = ns.repeats or (1 if ns.quick else 5)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = by_device_name(PEAK_BF16_TFLOPS, device, ns.peak_tflops)
    bandwidth = by_device_name(BANDWIDTH_GBS, device, ns.bandwidth_gbs)
    print(f"{name}, {'bf16 autocast' if ns.bf16 else 'fp32'}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, peak {peak or 'n/a'} TFLOP/s, bandwidth {bandwidth or 'n/a'} GB/s")
    parts = ns.parts.split(",")
    if "bert" in parts:
        bert_part(ns, device, peak)
    if "gpt2" in parts:
        gpt_part(ns, device, peak)
    if "decode" in parts:
        decode_part(ns, device, bandwidth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

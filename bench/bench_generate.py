"""minibert's generate() against Hugging Face's, side by side in one process, on the same weights.

GPT-2 small (124M) and BART-base (139M) sized models, randomly initialised (nothing is
downloaded); greedy decoding of 64 new tokens at batch 1 and batch 8, and beam search with 4
beams. Runs alternate between the two libraries and the median of --repeats is reported, so a
burst of load from another process hits both. Every pair of outputs is also checked to be the
same tokens. Prints tokens/s (new tokens per second, beams not counted) and the ratio.

For GPT-2 batch-1 greedy it also prints the weight-read floor (the bare matrix products one token
needs) and minibert against it with each key/value cache: dynamic (grown by torch.cat), static
(preallocated, written in place), and with --compile the static cache under torch.compile (one graph
for every decoding step; inductor).

    python bench/bench_generate.py            # the full run (a few minutes on 2 quiet cores)
    python bench/bench_generate.py --quick    # tiny models, a few tokens: a smoke run
    python bench/bench_generate.py --threads 1 --clock cpu   # on a busy, shared machine
    python bench/bench_generate.py --families gpt2 --threads 1 --clock cpu --compile   # the floor rows
    python bench/bench_generate.py --families gpt2 --settings greedy-b1 --threads 1 --profile   # time in products

--clock cpu times each call by the CPU time of this process instead of the wall clock: on a machine
shared with other jobs, time spent waiting for a core then counts for neither library (it runs on one
thread unless --threads says otherwise: with more, the thread pool's spin-waits are counted).
"""

import argparse
import statistics
import time

import torch
import transformers
from _clock import add_clock_options, apply_clock_options  # --clock, --threads (one thread under the CPU clock)

from minibert.models.bart import BartConfig, BartForConditionalGeneration
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

# On the table's header under --quick only, as bench_masking.py does: its rows are then tiny models', while the
# README's Speed table quotes the full-size ones (it gives the tiny models' range apart, named as --quick's).
SMOKE_NOTE = " (smoke size: tiny models; the README's GPT-2 124M and BART-base figures are from the full run)"


def build(family: str, quick: bool):
    """A random Hugging Face model and minibert's copy of its weights."""
    torch.manual_seed(0)
    if family == "gpt2":
        tiny = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, bos_token_id=999, eos_token_id=999)
        size = tiny if quick else {}
        config = transformers.GPT2Config(**size)
        hf = transformers.GPT2LMHeadModel(config).eval()
        ours = GPT2LMHeadModel(GPT2Config.from_dict(config.to_dict()))
    else:
        size = (dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=1000) if quick
                else dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                          decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072))
        config = transformers.BartConfig(**size)
        hf = transformers.BartForConditionalGeneration(config).eval()
        ours = BartForConditionalGeneration(BartConfig.from_dict(config.to_dict()))
    ours.load_hf_state_dict(hf.state_dict())
    return hf, ours.eval()


def weight_read_floor(model: GPT2LMHeadModel, repeats: int, clock) -> float:
    """Tokens/s of the bare matrix-vector products one batch-1 decoding step of GPT-2 cannot avoid:
    every weight matrix of every block plus the V x E LM head, read once, and nothing else. At batch 1
    on a CPU both libraries are bound by this memory traffic, not by their Python."""
    mats = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)] + [model.transformer.wte.weight]
    inputs = {w.size(1): torch.randn(1, w.size(1)) for w in mats}  # one input row per fan-in
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            start = clock()
            for w in mats:
                torch.nn.functional.linear(inputs[w.size(1)], w)
            times.append(clock() - start)
    return 1.0 / statistics.median(times[1:])


def timed(fn, clock):
    start = clock()
    out = fn()
    return clock() - start, out


def against_the_floor(ours: GPT2LMHeadModel, ids, common: dict, reference, args, clock) -> None:
    """Batch-1 greedy tokens/s of each cache (and of the compiled static cache), as a share of the floor."""
    floor = weight_read_floor(ours, args.repeats, clock)
    print(f"{'':<6} {'(floor b1)':<12} {floor:>10.1f}   <- weights read once per token, no attention, no Python")
    variants = [("dynamic", "dynamic", False), ("static", "static", False)]
    if args.compile:
        variants.append(("static+compile", "static", True))
    for name, cache, compiled in variants:
        if compiled:
            ours.transformer.compile(dynamic=False)  # in place: generate's calls of the decoder go through it
        run = lambda: ours.generate(ids, cache_implementation=cache, **common)  # noqa: B023
        with torch.no_grad():
            start = time.perf_counter()
            run()  # warm-up (with --compile: captures and compiles the prompt's and the step's graphs)
            warm_up = time.perf_counter() - start
            times, same = [], True
            for _ in range(args.repeats):
                t, out = timed(run, clock)
                times.append(t)
                same &= torch.equal(out, reference)
        rate = (out.size(1) - ids.size(1)) / statistics.median(times)
        note = f", first call {warm_up:.0f} s (compilation)" if compiled else ""
        print(f"{'':<6} {f'{name} b1':<12} {'':>10} {rate:>15.1f} {rate / floor:>6.0%} of the floor  "
              f"{'same tokens' if same else 'NOT THE SAME TOKENS'}{note}")


MATRIX_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mv", "aten::addmv")


def profiled(name: str, run) -> None:
    """One generate call under torch.profiler: the share of its CPU time in the matrix products
    themselves, and the operators the rest goes to."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_PRODUCTS)
    rest = sorted((e for e in events if e.key not in MATRIX_PRODUCTS), key=lambda e: -e.self_cpu_time_total)
    print(f"  profile, {name}: {products / total:.0%} of the CPU time in matrix products; then "
          + ", ".join(f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in rest[:5]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models and 8 new tokens: a smoke run")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per library and setting, median reported (default 3, or 1 with --quick)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--families", default="gpt2,bart", help="comma-separated: gpt2, bart")
    parser.add_argument("--settings", default="greedy-b1,greedy-b8,beam4-b1",
                        help="comma-separated: greedy-b1, greedy-b8, beam4-b1 (GPT-2's floor rows need greedy-b1)")
    add_clock_options(parser)
    parser.add_argument("--compile", action="store_true",
                        help="also time the static cache under torch.compile (GPT-2 batch-1 greedy; compiles once)")
    parser.add_argument("--profile", action="store_true",
                        help="torch.profiler over one call of each setting: the share of time in matrix products")
    args = parser.parse_args()
    if args.quick:
        args.new_tokens = 8
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    clock = apply_clock_options(args)
    known = {"greedy-b1": ("greedy", 1, 1), "greedy-b8": ("greedy", 8, 1), "beam4-b1": ("beam4", 1, 4)}
    settings = [known[name] for name in args.settings.split(",")]

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
          f"{args.new_tokens} new tokens, prompt {args.prompt_length}, median of {args.repeats}, {args.clock} clock")
    print(f"{'model':<6} {'setting':<12} {'HF tok/s':>10} {'minibert tok/s':>15} {'ratio':>7}  same tokens"
          + (SMOKE_NOTE if args.quick else ""))
    for family in args.families.split(","):
        hf, ours = build(family, args.quick)
        vocab = hf.config.vocab_size
        for name, batch, beams in settings:
            torch.manual_seed(1)
            ids = torch.randint(3, vocab - 1, (batch, args.prompt_length))
            mask = torch.ones_like(ids)
            # Neither library may stop early: eos is an id the random models do not produce at these lengths.
            common = dict(attention_mask=mask, max_new_tokens=args.new_tokens, num_beams=beams,
                          eos_token_id=vocab - 1, pad_token_id=vocab - 1)
            run_hf = lambda: hf.generate(ids, do_sample=False, **common)  # noqa: B023
            run_ours = lambda: ours.generate(ids, **common)  # noqa: B023
            with torch.no_grad():
                run_hf(), run_ours()  # warm-up
                hf_times, our_times, same = [], [], True
                for _ in range(args.repeats):
                    t_hf, out_hf = timed(run_hf, clock)
                    t_ours, out_ours = timed(run_ours, clock)
                    hf_times.append(t_hf)
                    our_times.append(t_ours)
                    same &= torch.equal(out_hf, out_ours)
            new = batch * (out_hf.size(1) - (args.prompt_length if family == "gpt2" else 1))
            hf_rate, our_rate = new / statistics.median(hf_times), new / statistics.median(our_times)
            print(f"{family:<6} {f'{name} b{batch}':<12} {hf_rate:>10.1f} {our_rate:>15.1f} "
                  f"{our_rate / hf_rate:>6.2f}x  {'yes' if same else 'NO'}")
            if args.profile:
                profiled("Hugging Face", run_hf)
                profiled("minibert", run_ours)
                if family == "gpt2" and batch == 1 and beams == 1:
                    profiled("minibert, static cache",
                             lambda: ours.generate(ids, cache_implementation="static", **common))  # noqa: B023
            if family == "gpt2" and name == "greedy" and batch == 1:
                batch_one = (ids, common, out_hf)
        if family == "gpt2" and ("greedy", 1, 1) in settings:  # last: --compile compiles the model in place
            against_the_floor(ours, *batch_one, args, clock)


if __name__ == "__main__":
    main()

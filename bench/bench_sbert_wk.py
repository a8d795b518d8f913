"""SBERT-WK pooling: minibert's vectorised version (a batched Cholesky of each token's Gram matrix per layer) against
minibert's own direct loops (sbert_wk_loops: per sentence, per token, per layer, one QR each, as
the authors' code is written), on the same hidden states. The loops are not the authors' code:
they share its formulas, but clip the context window at the lowest used layers, where the
authors' code drops the left neighbours of layers 1..window-1 (see the comment above _window in
minibert/finetune/pooling.py); both paths compute in float64.

BERT-base shapes: 13 hidden states of width 768, layers 4..12 used, window 2, a batch of
16 sentences of up to 64 tokens with padding. Checks that both give the same vectors, then
prints median times and the ratio (goal >= 10x).

    python bench/bench_sbert_wk.py                          # BERT-base shapes (1-2 minutes on 2 cores)
    python bench/bench_sbert_wk.py --threads 1 --clock cpu  # on a busy, shared machine: one thread's CPU time
    python bench/bench_sbert_wk.py --quick                  # small shapes, to check the script runs
"""

import argparse
import statistics
import time

import torch
from _clock import add_clock_options, apply_clock_options  # --clock, --threads (one thread under the CPU clock)

from minibert.finetune.pooling import sbert_wk, sbert_wk_loops


def median_time(fn, repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    add_clock_options(parser)
    args = parser.parse_args()
    clock = apply_clock_options(args)
    batch, tokens, hidden, layers, repeats = (4, 16, 64, 7, 3) if args.quick else (16, 64, 768, 12, 5)
    layer_start = 4 if not args.quick else 2
    g = torch.Generator().manual_seed(0)
    states = tuple(torch.randn(batch, tokens, hidden, generator=g) for _ in range(layers + 1))
    lengths = torch.linspace(tokens // 4, tokens, batch).long()
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).long()
    real = int(mask.sum()) - batch  # tokens the pooling weighs (the last of each row is left out)

    with torch.no_grad():
        fast_out = sbert_wk(states, mask, layer_start)
        start = clock()
        slow_out = sbert_wk_loops(states, mask, layer_start)  # slow enough to time once
        slow = clock() - start
        torch.testing.assert_close(fast_out, slow_out, rtol=1e-5, atol=1e-6)  # both float64 inside
        fast = median_time(lambda: sbert_wk(states, mask, layer_start), repeats, clock)
    print(f"SBERT-WK, batch {batch} x {tokens} tokens ({real} weighed), hidden {hidden}, "
          f"{layers + 1 - layer_start} layers, window 2, {torch.get_num_threads()} threads, {args.clock} clock")
    print(f"  per-token loops (reference): {slow * 1000:9.1f} ms")
    print(f"  vectorised (Gram, Cholesky): {fast * 1000:9.1f} ms")
    same = "to the last bit" if torch.equal(fast_out, slow_out) else "within 1e-5"
    print(f"  speed-up: {slow / fast:.1f}x (goal >= 10x); outputs equal {same}"
          + (" (smoke size: the goal is judged on the full run)" if args.quick else ""))


if __name__ == "__main__":
    main()

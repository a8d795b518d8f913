"""--clock and --threads, written once for the bench scripts that time work on the CPU (torch is imported only when
the options are applied).

--clock wall times by `time.perf_counter` (elapsed time); --clock cpu by `time.process_time`, this process's
CPU time, which other processes on a busy, shared machine stretch less than the wall clock (they still share its
caches and memory bandwidth). CPU time adds up every thread's time, a thread spinning at a barrier included, so
with the CPU clock a script runs on one thread unless --threads says otherwise, and warns when it is told to use
more.
"""

import argparse
import sys
import time

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def add_clock_options(parser: argparse.ArgumentParser, clock: str = "wall", threads: int | None = None) -> None:
    """Add --clock (default `clock`) and --threads (default `threads`; None: torch's choice, or one thread under
    the CPU clock)."""
    parser.add_argument("--clock", choices=sorted(CLOCKS), default=clock,
                        help=f"wall: elapsed time; cpu: this process's CPU time, less stretched by other jobs, on one "
                             f"thread unless --threads says otherwise (default {clock})")
    default = f"{threads}" if threads is not None else "torch's choice, 1 with --clock cpu"
    parser.add_argument("--threads", type=int, default=threads, help=f"torch threads (default: {default})")


def apply_clock_options(args: argparse.Namespace):
    """Set torch's threads from args.threads and return the clock function args.clock names.

    With the CPU clock and no --threads, one thread; with more than one, a warning on stderr (CPU time then counts
    every thread's time, so the figure is the work done, not how long it took)."""
    import torch

    if args.threads is None and args.clock == "cpu":
        args.threads = 1
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    warn_of_threads(args.clock, torch.get_num_threads())
    return CLOCKS[args.clock]


def warn_of_threads(clock: str, threads: int) -> None:
    """On stderr, when the CPU clock would add up the time of more than one thread."""
    if clock == "cpu" and threads > 1:
        print(f"warning: --clock cpu with {threads} threads adds up every thread's CPU time, spin-waits included; "
              "--threads 1 times one thread's work", file=sys.stderr)

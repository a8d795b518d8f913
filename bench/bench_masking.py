"""Masking speed: minibert's mlm and wwm collate vs Hugging Face's data collators, one process,
the same token ids, batches of 32 x 128 from the shipped Shakespeare corpus.

    python bench/bench_masking.py               # about a minute
    python bench/bench_masking.py --clock cpu   # on a busy, shared machine: this process's CPU time
    python bench/bench_masking.py --quick       # a few seconds

Hugging Face gets the fast path its docs recommend (special_tokens_mask precomputed, and for
whole words the offset mapping that v5's whole_word_mask=True reads; v4's
DataCollatorForWholeWordMask is used where it exists). Both sides pad and mask the same
examples; the figure is examples per second, best of --repeats runs.
"""

import argparse
import functools
import tempfile
import time
import warnings

import numpy as np
import torch
from _clock import add_clock_options, apply_clock_options  # --clock, --threads (one thread under the CPU clock)

from minibert.data import build_objective, load_corpus
from minibert.tokenizer import train_tokenizer


def hf_features(examples, special_ids, whole_word: bool) -> list[dict]:
    """The same ids as Hugging Face features; offsets that put the same word boundaries as ours."""
    features = []
    for e in examples:
        ids = e["input_ids"]
        special = np.isin(ids, special_ids)
        feature = {"input_ids": ids.tolist(), "special_tokens_mask": special.astype(int).tolist()}
        if whole_word:
            position, offsets = 0, []
            for is_special, starts_word in zip(special, e["word_starts"], strict=True):
                if is_special:
                    offsets.append((0, 0))
                    continue
                position += int(starts_word)  # a gap before a new word
                offsets.append((position, position + 1))
                position += 1
            feature["offset_mapping"] = offsets
        features.append(feature)
    return features


def rates(collates, batch_lists, repeats: int, clock=time.perf_counter) -> list[float]:
    """Examples per second of each collate over its batches: best of `repeats` runs, taken in
    turns so that both sides see the same load on a shared machine. clock: time.perf_counter (wall)
    or time.process_time (this process's CPU time, which other processes stretch less)."""
    best = [float("inf")] * len(collates)
    for _ in range(repeats):
        for i, (collate, batches) in enumerate(zip(collates, batch_lists, strict=True)):
            start = clock()
            for batch in batches:
                collate(batch)
            best[i] = min(best[i], clock() - start)
    return [sum(len(b) for b in batches) / t for batches, t in zip(batch_lists, best, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few batches, one repeat")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    add_clock_options(parser, threads=1)  # one thread, as in a DataLoader worker
    args = parser.parse_args()
    if args.quick:
        args.batches, args.repeats = 8, 1
    clock = apply_clock_options(args)
    import transformers

    warnings.filterwarnings("ignore")
    docs = load_corpus()
    tokenizer = train_tokenizer([" ".join(d) for d in docs], vocab_size=8000)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        hf_tokenizer = transformers.BertTokenizerFast.from_pretrained(folder)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size} x {args.max_seq_length}, {args.batches} batches, best of {args.repeats}, "
          f"{args.clock} clock")
    print(f"{'':5s}{'minibert ex/s':>14s}{'HF ex/s':>12s}{'ratio':>8s}{'goal':>7s}  Hugging Face collator"
          + ("  (smoke size: the goal is judged on the full run)" if args.quick else ""))
    for name, goal in (("mlm", 3.0), ("wwm", 10.0)):
        objective = build_objective(name, tokenizer, args.max_seq_length)
        examples = [e for e in objective.examples(docs) if len(e["input_ids"]) == args.max_seq_length]
        examples = (examples * (1 + args.batches * args.batch_size // len(examples)))[: args.batches * args.batch_size]
        ours = [examples[i:i + args.batch_size] for i in range(0, len(examples), args.batch_size)]
        theirs_features = hf_features(examples, tokenizer.all_special_ids, whole_word=name == "wwm")
        theirs = [theirs_features[i:i + args.batch_size] for i in range(0, len(examples), args.batch_size)]
        if name == "wwm" and hasattr(transformers, "DataCollatorForWholeWordMask"):
            hf = transformers.DataCollatorForWholeWordMask(hf_tokenizer, mlm_probability=0.15)
            label = "DataCollatorForWholeWordMask"
        else:
            hf = transformers.DataCollatorForLanguageModeling(hf_tokenizer, mlm_probability=0.15,
                                                              whole_word_mask=name == "wwm")
            label = "DataCollatorForLanguageModeling" + ("(whole_word_mask)" if name == "wwm" else "")
        ours_collate = functools.partial(objective.collate, generator=torch.Generator().manual_seed(0))
        mine, hf_rate = rates([ours_collate, hf], [ours, theirs], args.repeats, clock)
        print(f"{name:5s}{mine:14.0f}{hf_rate:12.0f}{mine / hf_rate:7.1f}x{goal:6.0f}x  {label}")


if __name__ == "__main__":
    main()

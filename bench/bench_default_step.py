"""The default pretraining run's training step with and without its two exact speed paths (issue 9).

    python bench/bench_default_step.py           # 40 timed steps per setting
    python bench/bench_default_step.py --quick   # 2 steps each: a smoke run
    python bench/bench_default_step.py --profile # and where pretrain.py's step spends its time (torch.profiler)

The model and data of `python pretrain.py --objective sop` (a tiny BERT, vocabulary 2,000, batches of 16
sentence pairs of up to 64 tokens, 40% of the tokens masked, the neighbour heads written and kept fixed),
one training step (forward, backward, clip, AdamW) four ways, from the same weights, on the same real
batches, taking turns step by step so that background load hits all four alike:

    plain         every position through every layer, the MLM decoder at every position
    sparse_mlm    the decoder only at the masked positions (pretrain.py's default)
    unpad         the position-wise layers only on real tokens
    both          sparse_mlm + unpad: what pretrain.py runs

Both paths are proven equal to the plain step in tests/test_bert.py. Printed: median milliseconds per step,
real tokens per second, and each setting's time over the plain step's (below 1.0: faster); then how close
the step runs to the machine: its matrix-product FLOPs (torch.utils.flop_counter, forward and backward) per
second, beside what one large matrix product (2048 x 2048 x 2048, fp32) reaches in the same process.
"""

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from minibert.data import build_objective
from minibert.data.corpus import load_works
from minibert.models.bert import BertConfig, BertForPreTraining
from minibert.neighbour_heads import keep_fixed, write_neighbour_heads
from minibert.pretraining import DEFAULT_RUN, DEFAULT_TRAINING, MODEL_SIZES, select_documents
from minibert.tokenizer import train_tokenizer

SETTINGS = {"plain": (False, False), "sparse_mlm": (True, False), "unpad": (False, True), "both": (True, True)}
# Beside each timed figure under --quick only: 2 steps are too few for the medians the README quotes.
SMOKE_NOTE = " (smoke size: the README's figures are from the full run)"


def batches(count: int) -> tuple[list[dict], int]:
    """`count` batches of the default run's training pairs, and the vocabulary size."""
    works = load_works()
    train, _, _ = select_documents([w for w, _ in works], 0.2, 1.0)
    documents = [works[i][1] for i in train]
    tokenizer = train_tokenizer([" ".join(d) for d in documents], vocab_size=DEFAULT_RUN["vocab_size"])
    objective = build_objective("sop", tokenizer, DEFAULT_RUN["max_seq_length"],
                                mlm_probability=DEFAULT_RUN["mlm_probability"])
    examples = objective.examples(documents)
    size = DEFAULT_TRAINING["per_device_train_batch_size"]
    generator = torch.Generator().manual_seed(0)
    return [objective.collate(examples[i * size:(i + 1) * size], generator) for i in range(count)], len(tokenizer)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true", help="torch.profiler over 10 of pretrain.py's steps")
    ns = parser.parse_args(argv)
    steps = 2 if ns.quick else ns.steps
    data, vocab = batches(steps + 2)  # two warm-up steps
    layers, hidden, heads, ffn = MODEL_SIZES[DEFAULT_RUN["model_size"]]
    shape = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                 intermediate_size=ffn, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    start = BertForPreTraining(BertConfig(**shape)).state_dict()
    models, optimizers = {}, {}
    for name, (sparse_mlm, unpad) in SETTINGS.items():
        models[name] = BertForPreTraining(BertConfig(**shape, sparse_mlm=sparse_mlm, unpad=unpad))
        models[name].load_state_dict(start)
        # fixed in the default run (2 heads: whole tensors, so no gradient, no update; pretraining.build_model)
        assert keep_fixed(write_neighbour_heads(models[name].bert)) is None
        trainable = [p for p in models[name].parameters() if p.requires_grad]
        optimizers[name] = torch.optim.AdamW(trainable, lr=DEFAULT_TRAINING["learning_rate"])
    seconds = {name: [] for name in SETTINGS}
    for step, batch in enumerate(data):
        for name, model in models.items():
            began = time.perf_counter()
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            if step >= 2:
                seconds[name].append(time.perf_counter() - began)
    real = statistics.mean(int(b["attention_mask"].sum()) for b in data[2:])
    width = data[2]["input_ids"].numel()
    print(f"default run's step, {torch.get_num_threads()} threads; a batch holds {real:.0f} real tokens of {width}")
    plain = statistics.median(seconds["plain"])
    note = SMOKE_NOTE if ns.quick else ""
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"{name:<11} {median * 1000:7.1f} ms/step  {real / median:8.0f} real tokens/s  "
              f"{median / plain:5.2f} of plain{note}")
    with FlopCounterMode(display=False) as counter:  # one step of what pretrain.py runs
        models["both"](**data[2]).loss.backward()
    models["both"].zero_grad(set_to_none=True)
    step_flops, peak = counter.get_total_flops(), matmul_flops_per_second()
    achieved = step_flops / statistics.median(seconds["both"])
    print(f"the default step: {step_flops / 1e9:.2f} GFLOP of matrix products, {achieved / 1e9:.1f} GFLOP/s; "
          f"a 2048^3 matrix product here: {peak / 1e9:.1f} GFLOP/s ({achieved / peak:.2f} of it){note}")
    if ns.profile:
        profile_steps(models["both"], optimizers["both"], data[2:][:10], step_flops, note)


MATRIX_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def profile_steps(model, optimizer, data: list[dict], step_flops: float, note: str = "") -> None:
    """Where the time of pretrain.py's step goes: the matrix products themselves against the rest
    (attention's softmax, AdamW, GELU, LayerNorm, element-wise work), over len(data) steps."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        began = time.perf_counter()
        for batch in data:
            model(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        wall = time.perf_counter() - began
    events = prof.key_averages()
    products = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_PRODUCTS) / 1e6 / len(data)
    step = wall / len(data)
    print(f"profiled {len(data)} steps (the profiler adds its own overhead): {step * 1000:.0f} ms a step, "
          f"{products * 1000:.0f} ms of it in matrix products ({step_flops / products / 1e9:.0f} GFLOP/s while "
          f"multiplying){note}; the rest, by operator:")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))


def matmul_flops_per_second(n: int = 2048, seconds: float = 1.0) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    began, runs = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        a @ b
        runs += 1
    return 2 * n**3 * runs / (time.perf_counter() - began)


if __name__ == "__main__":
    main()

"""Second DDP audit (two torchrun CPU processes, gloo): each finding with a test that fails without its fix."""

import json
import os
import subprocess
import sys
import textwrap

import torch
from safetensors.torch import load_file
from test_ddp import TESTS, free_port
from test_train import rows, tiny_checkpoint, write_jsonl

from minibert.finetune.multitask import MixtureSampler
from minibert.finetune.smart_batching import UniformLengthSampler

MULTITASK_WORKER = """
import sys
import train

out, batch_size = sys.argv[1], sys.argv[2]
assert train.main(["--model_name_or_path", {bert!r}, "--text_column", "sentence", "--multitask", "a={a},{dev}",
                   "b={b},{dev}", "--max_steps", "4", "--eval_steps", "2", "--save_steps", "1000",
                   "--logging_steps", "1", "--max_seq_length", "24", "--per_device_train_batch_size", batch_size,
                   "--disable_tqdm", "--device", "cpu", "--plot_loss", "false", "--output_dir", out]) == 0
"""


def test_the_mixture_deals_every_process_a_batch_of_the_same_task():
    """Under DDP each process took every world_size-th batch of the mixture, so the processes trained other
    tasks at the same step. Now a task is drawn per global batch: world_size batches of it in a row, which
    together are one process's batch of world_size * batch_size (the same draws, the same examples)."""
    sizes, rates = [12, 9, 8], [0.5, 0.3, 0.2]
    one = list(MixtureSampler(sizes, rates, 8, torch.Generator().manual_seed(0), world_size=1))
    two = list(MixtureSampler(sizes, rates, 4, torch.Generator().manual_seed(0), world_size=2))
    assert len(two) == len(MixtureSampler(sizes, rates, 4, world_size=2)) == 2 * len(one)
    task_of = [m for m, size in enumerate(sizes) for _ in range(size)]
    for i, batch in enumerate(one):
        first, second = two[2 * i], two[2 * i + 1]
        assert {task_of[j] for j in first + second} == {task_of[batch[0]]}
        assert first + second == batch
    # without a process group: one process, as before
    assert list(MixtureSampler(sizes, rates, 8, torch.Generator().manual_seed(0))) == one


def test_multitask_under_two_processes_trains_as_one_process_with_the_global_batch(tmp_path):
    """--multitask under DDP: rank 0 trained one task's head while rank 1 trained another's, and DDP averaged
    each head's gradient with the other process's zeros (1e-3 away from one process after 4 steps)."""
    bert = dropout_free_bert(tmp_path)
    a = write_jsonl(tmp_path / "a.jsonl", rows(40, "single"))
    b = write_jsonl(tmp_path / "b.jsonl", rows(24, "single", seed=2))
    dev = write_jsonl(tmp_path / "dev.jsonl", rows(12, "single", seed=1))
    run_two_processes_and_one(tmp_path, MULTITASK_WORKER.format(bert=str(bert), a=a, b=b, dev=dev))
    assert_same_weights(tmp_path, "model.safetensors", "task_heads.safetensors")  # the encoder, each task's head
    results = [json.loads((tmp_path / d / "eval_results.json").read_text()) for d in ("ddp", "one")]
    for ours, theirs in zip(results[0]["evaluations"], results[1]["evaluations"], strict=True):
        assert ours["step"] == theirs["step"]
        for key in ("eval_a_loss", "eval_b_loss"):
            assert abs(ours[key] - theirs[key]) < 1e-5, (key, ours, theirs)


SMART_WORKER = """
import sys
import train

out, batch_size = sys.argv[1], sys.argv[2]
assert train.main(["--model_name_or_path", {bert!r}, "--text_column", "sentence", "--train_file", {a!r},
                   "--validation_file", {dev!r}, "--max_steps", "4", "--eval_steps", "2", "--save_steps", "1000",
                   "--logging_steps", "1", "--max_seq_length", "24", "--per_device_train_batch_size", batch_size,
                   "--disable_tqdm", "--device", "cpu", "--plot_loss", "false", "--output_dir", out]) == 0
"""


def test_smart_batching_deals_every_process_a_slice_of_one_global_batch():
    """Smart batching cut the sorted list into per-process batches and the engine dealt them out in turn, so a
    step read two unrelated stretches of it, not the global batch one process reads. Now each global batch comes
    as world_size batches in a row: the same draws, the same examples, split."""
    lengths = torch.randint(3, 40, (37,), generator=torch.Generator().manual_seed(0)).tolist()
    for drop_last in (False, True):
        one = UniformLengthSampler(lengths, 8, generator=torch.Generator().manual_seed(1), drop_last=drop_last)
        two = UniformLengthSampler(lengths, 4, generator=torch.Generator().manual_seed(1), drop_last=drop_last,
                                   world_size=2)
        one, two = list(one), list(two)
        assert len(two) == len(UniformLengthSampler(lengths, 4, drop_last=drop_last, world_size=2)) == 2 * len(one)
        for i, batch in enumerate(one):
            first, second = two[2 * i], two[2 * i + 1]
            assert len(first) == len(second) == 4  # a full share for each process
            assert first + second == batch or (len(batch) < 8 and (first + second)[: len(batch)] == batch)


def test_fine_tuning_under_two_processes_trains_as_one_process_with_the_global_batch(tmp_path):
    """train.py's default smart batching under DDP: 1e-3 away from one process with the global batch after 4
    steps (the README says they agree up to float rounding when dropout is off)."""
    bert = dropout_free_bert(tmp_path)
    a = write_jsonl(tmp_path / "a.jsonl", rows(32, "single"))
    dev = write_jsonl(tmp_path / "dev.jsonl", rows(12, "single", seed=1))
    run_two_processes_and_one(tmp_path, SMART_WORKER.format(bert=str(bert), a=a, dev=dev))
    assert_same_weights(tmp_path, "model.safetensors")


def dropout_free_bert(tmp_path):
    """test_train's tiny BERT without dropout: each process draws its own masks, so with dropout two processes
    equal one only on average."""
    bert = tiny_checkpoint(tmp_path / "bert")
    config = json.loads((bert / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (bert / "config.json").write_text(json.dumps(config))
    return bert


def run_two_processes_and_one(tmp_path, worker: str) -> None:
    """The worker (argv: output dir, per-device batch) under torchrun on 2 CPU processes with batch 4, into
    tmp_path/ddp, then in one process with the global batch 8, into tmp_path/one."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(worker))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS.parent)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), str(tmp_path / "ddp"), "4"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "8"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def assert_same_weights(tmp_path, *files: str) -> None:
    for weights in files:
        ours, theirs = load_file(str(tmp_path / "ddp" / weights)), load_file(str(tmp_path / "one" / weights))
        for name, value in theirs.items():
            torch.testing.assert_close(ours[name], value, rtol=1e-5, atol=1e-6, msg=name)

"""Distributed data parallel on CPU: two torchrun processes (gloo), each holding half of every
global batch, must train exactly like one process holding the whole batch, a token-level loss
(labelled tokens falling unevenly between the ranks) included."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from test_engine import ToyModel, collate, make_args, stack, toy_dataset, uneven_token_dataset

from minibert.engine import Trainer
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

TESTS = Path(__file__).parent

WORKER = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_engine import ToyModel, collate, make_args, toy_dataset
from minibert.engine import Trainer

torch.manual_seed(0)
model = ToyModel(dropout=0.0)
args = make_args(Path({tmp!r}), max_steps=5, per_device_train_batch_size=4, logging_steps=1, save_steps=5)
trainer = Trainer(model, args, toy_dataset(n=40), collate)
assert trainer.context.world_size == 2
trainer.train()

# a causal LM, whose loss is a mean over labelled tokens that fall unevenly between the ranks and the
# micro-batches: 2 ranks x 2 micro-batches of 2 must be one batch of 8
from test_engine import stack, uneven_token_dataset
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel
torch.manual_seed(0)
lm = GPT2LMHeadModel(GPT2Config(vocab_size=60, n_embd=16, n_layer=1, n_head=2, n_positions=16, resid_pdrop=0.0,
                                embd_pdrop=0.0, attn_pdrop=0.0))
args = make_args(Path({tmp!r}) / "lm", max_steps=3, per_device_train_batch_size=2, gradient_accumulation_steps=2,
                 max_grad_norm=0.0, logging_steps=1, save_steps=3)
Trainer(lm, args, uneven_token_dataset(first=2), stack, optimizer=torch.optim.SGD(lm.parameters(), lr=0.5)).train()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_match_one_process_with_the_global_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER.format(tests=str(TESTS), tmp=str(tmp_path / "ddp"))))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(script),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    torch.manual_seed(0)
    single = ToyModel(dropout=0.0)  # 40 examples, 5 steps of 8: more than one epoch (5 batches each)
    args = make_args(tmp_path / "single", max_steps=5, per_device_train_batch_size=8, logging_steps=1, save_steps=5)
    expected = Trainer(single, args, toy_dataset(n=40), collate).train()

    distributed = torch.load(tmp_path / "ddp" / "run" / "checkpoint-5" / "model_state.pt", weights_only=True)
    for name, value in single.state_dict().items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-5, atol=1e-6)
    lines = [json.loads(x) for x in (tmp_path / "ddp" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5]  # rank 0 alone writes
    for ours, theirs in zip(lines, expected.history, strict=True):  # logged loss: mean over both ranks
        assert abs(ours["loss"] - theirs["loss"]) < 1e-5

    # the causal LM: each micro-batch weighed by its share of the labelled tokens of all ranks
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=60, n_embd=16, n_layer=1, n_head=2, n_positions=16, resid_pdrop=0.0,
                                    embd_pdrop=0.0, attn_pdrop=0.0))
    args = make_args(tmp_path / "single-lm", max_steps=3, per_device_train_batch_size=8, max_grad_norm=0.0,
                     save_steps=3)
    Trainer(lm, args, uneven_token_dataset(first=2), stack, optimizer=torch.optim.SGD(lm.parameters(), lr=0.5)).train()
    distributed = torch.load(tmp_path / "ddp" / "lm" / "run" / "checkpoint-3" / "model_state.pt", weights_only=True)
    for name, value in lm.state_dict().items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-5, atol=1e-6, msg=name)

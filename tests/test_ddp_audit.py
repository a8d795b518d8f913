"""DDP audit findings (two torchrun CPU processes, gloo), each with a test that fails without its fix."""

import json
import os
import subprocess
import sys
import textwrap

from test_ddp import TESTS, free_port

# A run of 4 steps logged every 2, and the same run resumed from its checkpoint-3 (saved between two records)
# in another directory: the resumed run's record of step 4 averages step 3 (from the checkpoint's window) and
# step 4. Each process's loss is the mean over its own half of the batch, so the processes' windows differ.
RESUME_WORKER = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_engine import ToyModel, collate, make_args, toy_dataset
from minibert.engine import Trainer

out = Path({tmp!r})
torch.manual_seed(0)
args = make_args(out / "full", max_steps=4, per_device_train_batch_size=4, logging_steps=2, save_steps=3)
Trainer(ToyModel(dropout=0.0), args, toy_dataset(n=40), collate).train()
torch.manual_seed(0)
args = make_args(out / "resumed", max_steps=4, per_device_train_batch_size=4, logging_steps=2, save_steps=3)
Trainer(ToyModel(dropout=0.0), args, toy_dataset(n=40), collate).train(
    resume_from_checkpoint=str(out / "full" / "run" / "checkpoint-3"))
"""


def test_a_resumed_ddp_run_logs_what_the_uninterrupted_run_logs(tmp_path):
    """The window of measurements not yet logged is saved with a checkpoint; under DDP rank 0 wrote its own
    window alone, every process resumed with it, and the first record after the resume averaged rank 0's
    share of the loss twice (the step-4 record differed from the uninterrupted run's)."""
    script = tmp_path / "resume.py"
    script.write_text(textwrap.dedent(RESUME_WORKER.format(tests=str(TESTS), tmp=str(tmp_path))))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    def records(name):
        lines = (tmp_path / name / "run" / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: r for r in map(json.loads, lines)}

    full, resumed = records("full"), records("resumed")
    assert sorted(full) == sorted(resumed) == [2, 4]
    for key in ("loss", "grad_norm", "learning_rate"):
        assert abs(resumed[4][key] - full[4][key]) < 1e-6, (key, resumed[4], full[4])

"""Token classification and question answering under DDP: two torchrun CPU processes, each with half of every
batch, train the weights one process trains with the whole batch (dropout off: each rank draws its own masks).
The token loss is a mean over labelled words, so each rank's share is weighed by its labelled words across ranks
(the model's loss_items); the span loss is a mean over windows, equal halves. As Hugging Face's, the span head's
softmax reads padded positions too, so each rank padding to its own longest window would change the loss: the QA
runs pad to --max_seq_length (run_qa.py's default), as a run whose numbers must not depend on the batching should.
The span head's bias has no gradient at all (a shift of every start logit leaves the softmax as it is): Adam divides
its rounding noise, which differs with the order the ranks' gradients are summed in, by that noise's own size, so
the runs take --adam_epsilon 1e-3, under which such noise moves a weight by a negligible step."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from test_ddp import free_port
from test_extractive_qa import qa_rows
from test_tagging import tagged_rows, write
from test_train import tiny_checkpoint

import train

TESTS = Path(__file__).parent
WORKER = """
import sys
sys.path.insert(0, {tests!r})
import train

common = ["--model_name_or_path", {model!r}, "--disable_tqdm", "--device", "cpu", "--plot_loss", "false",
          "--max_steps", "3", "--save_steps", "3", "--logging_steps", "1", "--max_seq_length", "32",
          "--group_by_length", "false", "--learning_rate", "3e-3", "--warmup_ratio", "0", "--adam_epsilon", "1e-3"]
for task, data, extra in (("token_classification", {tagged!r}, ["--text_column", "words", "--label_column", "labels"]),
                          ("question_answering", {answered!r}, ["--doc_stride", "4", "--padding", "max_length"])):
    args, training = train.parse(["--task_type", task, "--train_file", data, "--output_dir", {out!r} + "/" + task,
                                  "--per_device_train_batch_size", "4", *extra, *common])
    train.finetune(args, training)
"""


def test_two_processes_train_the_weights_one_process_trains_with_the_global_batch(tmp_path):
    model = tiny_checkpoint(tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))
    tagged = write(tmp_path / "tagged.jsonl", tagged_rows(24, 5))
    answered = write(tmp_path / "answered.jsonl", qa_rows(24, 5))
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER.format(tests=str(TESTS), model=str(model), tagged=tagged,
                                                    answered=answered, out=str(tmp_path / "ddp"))))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS.parent)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for task, data, extra in (("token_classification", tagged, ["--text_column", "words", "--label_column", "labels"]),
                              ("question_answering", answered, ["--doc_stride", "4", "--padding", "max_length"])):
        args, training = train.parse(["--task_type", task, "--train_file", data, "--model_name_or_path", str(model),
                                      "--output_dir", str(tmp_path / "one" / task), "--per_device_train_batch_size",
                                      "8", "--disable_tqdm", "--device", "cpu", "--max_steps", "3", "--save_steps", "3",
                                      "--logging_steps", "1", "--max_seq_length", "32", "--group_by_length", "false",
                                      "--learning_rate", "3e-3", "--warmup_ratio", "0", "--adam_epsilon", "1e-3",
                                      *extra])
        training.plot_loss = False
        train.finetune(args, training)
        ours = torch.load(tmp_path / "ddp" / task / "checkpoint-3" / "model_state.pt", weights_only=True)
        theirs = torch.load(tmp_path / "one" / task / "checkpoint-3" / "model_state.pt", weights_only=True)
        assert set(ours) == set(theirs)
        for name, value in theirs.items():
            torch.testing.assert_close(ours[name], value, rtol=1e-5, atol=1e-6)
    shutil.rmtree(tmp_path / "ddp")

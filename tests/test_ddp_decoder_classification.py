"""GPT-2 and BART classification under DDP: two torchrun CPU processes, each with half of every batch, train the
weights one process trains with the whole batch (dropout off: each rank draws its own masks). Each rank pads its
half to its own longest text; neither head reads padding (GPT-2's reads the last real token, BART's the last </s>),
so the losses, and the weights, are the same."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from test_ddp import free_port

import train
from minibert.models.bart import BartConfig, BartForConditionalGeneration
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel
from minibert.tokenizer import train_tokenizer

TESTS = Path(__file__).parent
WORDS = "king queen fool love war crown sword jest night song".split()
FLAGS = ["--disable_tqdm", "--device", "cpu", "--plot_loss", "false", "--max_steps", "3", "--save_steps", "3",
         "--logging_steps", "1", "--max_seq_length", "16", "--group_by_length", "false", "--learning_rate", "3e-3",
         "--warmup_ratio", "0", "--adam_epsilon", "1e-3"]
WORKER = """
import sys
sys.path.insert(0, {tests!r})
import train

for family in ("gpt2", "bart"):
    args, training = train.parse(["--model_name_or_path", {root!r} + "/" + family, "--train_file", {data!r},
                                  "--output_dir", {root!r} + "/ddp-" + family, "--per_device_train_batch_size", "4",
                                  *{flags!r}])
    train.finetune(args, training)
"""


def test_two_processes_train_the_gpt2_and_bart_classifiers_one_process_trains(tmp_path):
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(WORDS[j] for j in torch.randint(0, 10, (int(torch.randint(2, 8, (1,), generator=g)),),
                                                      generator=g).tolist()) for _ in range(24)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": "royal" if "king" in t else "common"}) + "\n"
                            for t in texts))
    for family in ("gpt2", "bart"):
        tok = train_tokenizer(texts * 3, "bytelevel_bpe", vocab_size=300, min_frequency=1, frame=family == "bart")
        ids = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(
            vocab_size=tok.vocab_size, n_positions=32, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0,
            embd_pdrop=0.0, attn_pdrop=0.0, **ids)) if family == "gpt2" else BartForConditionalGeneration(BartConfig(
                vocab_size=tok.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32,
                dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, classifier_dropout=0.0,
                decoder_start_token_id=tok.eos_token_id, **ids))
        model.save_pretrained(tmp_path / family)
        tok.save_pretrained(tmp_path / family)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER.format(tests=str(TESTS), root=str(tmp_path), data=str(data),
                                                    flags=FLAGS)))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS.parent)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for family in ("gpt2", "bart"):
        args, training = train.parse(["--model_name_or_path", str(tmp_path / family), "--train_file", str(data),
                                      "--output_dir", str(tmp_path / f"one-{family}"), "--per_device_train_batch_size",
                                      "8", *FLAGS])
        train.finetune(args, training)
        ours = torch.load(tmp_path / f"ddp-{family}" / "checkpoint-3" / "model_state.pt", weights_only=True)
        theirs = torch.load(tmp_path / f"one-{family}" / "checkpoint-3" / "model_state.pt", weights_only=True)
        assert set(ours) == set(theirs)
        for name, value in theirs.items():
            torch.testing.assert_close(ours[name], value, rtol=1e-5, atol=1e-6, msg=f"{family}: {name}")

"""What a newcomer following the README with their own data met (the lead's share; tests/test_journey.py holds
the rest): the step log printed a learning rate of 2e-5 as 0.0."""

import logging

from test_ddp import free_port
from test_engine import ToyModel, collate, make_args, toy_dataset

from minibert.engine import Trainer


def test_the_step_log_shows_a_small_learning_rate(tmp_path, caplog):
    """round(v, 4) printed `'learning_rate': 0.0` for the learning rates fine-tuning uses (2e-5)."""
    args = make_args(tmp_path, learning_rate=2e-5, max_steps=4, logging_steps=4, lr_scheduler_type="constant",
                     warmup_steps=0)
    with caplog.at_level(logging.INFO, logger="minibert"):
        Trainer(ToyModel(), args, toy_dataset(), collate).train()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("step 4:"))
    assert "'learning_rate': 2e-05" in line


def test_whitenings_k_bound_is_one_the_vectors_can_take():
    """With repeated sentences the first error said "pass k<=47" and k=47 was then refused ("vary in only 38")."""
    import numpy as np
    import pytest

    from minibert.sentence_embeddings import Whitening

    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(39, 64))
    vectors = np.concatenate([distinct, distinct[:9]])  # 48 sentences, 39 distinct: centred, they span 38
    with pytest.raises(ValueError, match=r"spread along at most 47 directions \(these along 38: some repeat\).* "
                                         r"pass k<=38"):
        Whitening(k=60).fit(vectors)
    assert Whitening(k=38).fit(vectors).transform(vectors).shape == (48, 38)


def test_a_bart_decoder_alone_is_refused_without_advice_that_fails(tmp_path):
    """BartForCausalLM was told to load as minibert.BartModel, which then missed the whole encoder."""
    import json

    import pytest

    import minibert

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bart", "architectures": ["BartForCausalLM"]}))
    with pytest.raises(ValueError, match="BartForCausalLM, a BART decoder alone .* use transformers' BartForCausalLM"):
        minibert.load_pretrained(tmp_path)


def test_a_tokenizer_with_tokens_the_model_never_embedded_is_refused_naming_the_resize(tmp_path):
    """added_tokens.json beside a model saved without resizing: the first batch stopped on id 80, telling to load
    the checkpoint's tokenizer, which the run was using."""
    import json

    import pytest
    from test_train import tiny_checkpoint

    import train

    path = tiny_checkpoint(tmp_path / "ckpt")
    (path / "tokenizer.json").unlink()  # a slow tokenizer's files: vocab.txt and added_tokens.json
    (path / "added_tokens.json").write_text(json.dumps({"<ent>": 80}))
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": f"the king <ent> {i}", "label": "ab"[i % 2]}) + "\n" for i in range(8)))
    args, training = train.parse(["--model_name_or_path", str(path), "--train_file", str(data), "--output_dir",
                                  str(tmp_path / "out"), "--max_steps", "1", "--max_seq_length", "16", "--disable_tqdm",
                                  "--device", "cpu"])
    with pytest.raises(ValueError, match=r"has 81 tokens, but the model embeds 80: '<ent>' \(id 80\) lie past its "
                                         r"embeddings.*"
                                         r"resize_token_embeddings"):
        train.finetune(args, training)


def two_ranks_after_setup(tmp_path, body: str):
    """Run `body` on 2 torchrun CPU processes after minibert's setup("cpu"); returns the finished process and, for
    each rank, whether its process group was still initialised after setup's exit handler ran."""
    import os
    import subprocess
    import sys
    import textwrap

    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(f"""
        import atexit, os
        import torch, torch.distributed as dist
        from minibert.engine.distributed import setup

        def report():  # registered before setup's own handler, so it runs after it
            with open(os.path.join({str(tmp_path)!r}, "rank" + os.environ["RANK"]), "w") as f:
                f.write(str(dist.is_initialized()))

        atexit.register(report)
        setup("cpu")
    """) + textwrap.dedent(body))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(worker)]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=120)
    return done, [(tmp_path / f"rank{r}").read_text() for r in (0, 1)]


def test_a_process_group_the_engine_made_is_destroyed_at_exit(tmp_path):
    """No process group was ever destroyed: left to the interpreter's teardown, a rank of a finished 2-process CPU
    test run once ended with SIGABRT ("terminate called without an active exception") and failed the test."""
    done, initialised = two_ranks_after_setup(tmp_path, """
        total = torch.ones(1)
        dist.all_reduce(total)
        assert total.item() == 2
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert initialised == ["False", "False"]


def test_a_special_token_the_checkpoint_never_embedded_is_warned_of_not_refused(tmp_path, caplog):
    """facebook/bart-large-cnn, -xsum and distilbart have vocab_size 50264 and a tokenizer of 50265 (<mask> last,
    never embedded): no summary holds <mask>, and they fine-tuned; refusing every tokenizer longer than the
    embeddings stopped them."""
    import json
    import logging

    import transformers
    from tokenizers import ByteLevelBPETokenizer

    import train

    texts = ["the king walked to the castle", "the queen sang a song", "a short summary of the story"] * 20
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=300, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    bpe.save_model(str(tmp_path))
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    vocab["<mask>"] = len(vocab)
    merges = [tuple(line.split()) for line in (tmp_path / "merges.txt").read_text().splitlines()[1:] if line]
    ckpt = tmp_path / "bart-cnn"
    transformers.BartTokenizer(vocab=vocab, merges=merges).save_pretrained(ckpt)
    config = transformers.BartConfig(vocab_size=len(vocab) - 1, d_model=16, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                     decoder_ffn_dim=32, max_position_embeddings=64)
    transformers.BartForConditionalGeneration(config).save_pretrained(ckpt)
    data = tmp_path / "sum.jsonl"
    data.write_text("".join(json.dumps({"source": t, "target": t.split()[-1]}) + "\n" for t in texts[:8]))
    args, training = train.parse(["--task_type", "seq2seq", "--model_name_or_path", str(ckpt), "--train_file",
                                  str(data), "--text_column", "source", "--target_column", "target", "--output_dir",
                                  str(tmp_path / "out"), "--max_steps", "1", "--max_seq_length", "16",
                                  "--disable_tqdm", "--device", "cpu"])
    training.plot_loss = False
    with caplog.at_level(logging.WARNING, logger="minibert"):
        train.finetune(args, training)
    assert f"'<mask>' (id {len(vocab) - 1}) past its embeddings" in caplog.text


def test_a_cls_or_sep_token_past_the_embeddings_is_refused_not_warned_of(tmp_path):
    """Only the mask token (and a byte-level unknown token) is never in a batch: a [CLS]/[SEP] of the tokenizer past
    the embedding table went into every example, and was warned of only."""
    import json

    import pytest
    from test_train import tiny_checkpoint

    import train

    path = tiny_checkpoint(tmp_path / "ckpt")
    (path / "tokenizer.json").unlink()
    (path / "added_tokens.json").write_text(json.dumps({"<cls>": 80, "<sep>": 81}))
    config = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**config, "cls_token": "<cls>", "sep_token": "<sep>"}))
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": f"the king {i}", "label": "ab"[i % 2]}) + "\n" for i in range(8)))
    args, training = train.parse(["--model_name_or_path", str(path), "--train_file", str(data), "--output_dir",
                                  str(tmp_path / "out"), "--max_steps", "1", "--max_seq_length", "16", "--disable_tqdm",
                                  "--device", "cpu"])
    with pytest.raises(ValueError, match=r"'<cls>' \(id 80\), '<sep>' \(id 81\) lie past its embeddings"):
        train.finetune(args, training)


def test_a_rank_that_raised_leaves_its_process_group_to_the_exit(tmp_path):
    """Destroyed after an uncaught exception, the group's closed sockets made the other rank fail first, and
    torchrun named that innocent rank as the root cause. The rank that ends cleanly still destroys its own."""
    done, initialised = two_ranks_after_setup(tmp_path, """
        if os.environ["RANK"] == "1":
            raise RuntimeError("rank 1 fails")
    """)
    assert done.returncode != 0 and "rank 1 fails" in done.stderr
    assert initialised == ["False", "True"]

"""What a newcomer following the README with their own data met (the lead's share; tests/test_journey.py holds
the rest): the step log printed a learning rate of 2e-5 as 0.0."""

import logging

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
    with pytest.raises(ValueError, match=r"has 81 tokens, but the model embeds 80: tokens were added .*"
                                         r"resize_token_embeddings"):
        train.finetune(args, training)

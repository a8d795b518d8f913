"""Behaviours a reading of the source notes against the code found missing or different (2026-11-25), each with a
test that fails on the code before it.

- train.py fine-tuned any checkpoint at 5e-4 when --learning_rate was not given: right for the 128-wide model
  pretrain.py makes by default, and 25 times BERT's fine-tuning rate for a pretrained BERT-base (note 000: 2e-5;
  Devlin et al. 2018, appendix A.3: 2e-5 to 5e-5). The default now follows the model's width.
"""

import json
import logging

import pytest

import train
from minibert.finetuning import DEFAULT_TRAINING, WIDE_MODEL_LEARNING_RATE, default_learning_rate


def config_dir(path, **config):
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


@pytest.fixture
def models(tmp_path):
    return {"bert-base": config_dir(tmp_path / "bert", model_type="bert", hidden_size=768),
            "bart-large": config_dir(tmp_path / "bart", model_type="bart", d_model=1024),
            "gpt2": config_dir(tmp_path / "gpt2", model_type="gpt2", n_embd=768),
            "mini": config_dir(tmp_path / "mini", model_type="bert", hidden_size=256),
            "tiny": config_dir(tmp_path / "tiny", model_type="bert", hidden_size=128)}


def learning_rate(argv):
    return train.parse(argv)[1].learning_rate


def test_the_default_learning_rate_follows_the_models_width(models, tmp_path, caplog):
    assert DEFAULT_TRAINING["learning_rate"] == 5e-4 and WIDE_MODEL_LEARNING_RATE == 2e-5
    with caplog.at_level(logging.INFO, logger="train"):
        assert learning_rate(["--model_name_or_path", models["bert-base"]]) == 2e-5
    assert "learning rate 2e-05: no --learning_rate was given and the model is 768 wide" in caplog.text
    assert "pass --learning_rate to choose" in caplog.text
    for wide in ("bart-large", "gpt2"):  # BART's d_model, GPT-2's n_embd
        assert learning_rate(["--model_name_or_path", models[wide]]) == 2e-5, wide
    for small in ("mini", "tiny"):  # pretrain.py's sizes up to mini (256 wide) keep the rate tuned on them
        assert learning_rate(["--model_name_or_path", models[small]]) == 5e-4, small
    # random weights take the width of the config they are built from
    assert learning_rate(["--model_name_or_path", "random", "--config_name", models["bert-base"]]) == 2e-5
    assert learning_rate(["--model_name_or_path", "random", "--config_name", models["tiny"]]) == 5e-4


def test_a_given_learning_rate_is_kept_whatever_the_width(models):
    assert learning_rate(["--model_name_or_path", models["bert-base"], "--learning_rate", "1e-3"]) == 1e-3
    assert learning_rate(["--model_name_or_path", models["bert-base"], "--learning_rate=3e-5"]) == 3e-5
    assert learning_rate(["--model_name_or_path", models["tiny"], "--learning_rate", "5e-4"]) == 5e-4


def test_an_unreadable_checkpoint_keeps_the_default_and_is_named_by_loading(tmp_path):
    """The rule reads only config.json; a missing or broken checkpoint is left to the loader's own error."""
    assert default_learning_rate(str(tmp_path / "nowhere")) == (5e-4, None)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    assert default_learning_rate(str(tmp_path / "broken")) == (5e-4, None)
    assert default_learning_rate("random", None) == (5e-4, None)
    assert learning_rate(["--model_name_or_path", str(tmp_path / "nowhere")]) == 5e-4

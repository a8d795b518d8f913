"""Fine-tuning across model families and combinations of tricks: each test would fail without its fix."""

import json

import pytest
import torch

import train
from minibert.finetune.multitask import MultiTaskClassifier
from minibert.finetuning import FinetuneArguments, check_methods, load_finetuned
from minibert.models.bert import BertConfig, BertModel


def tiny_encoder() -> BertModel:
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0))


def test_a_multitask_model_reloads_with_its_tasks_in_training_order(tmp_path):
    """config.json is written with sorted keys: tasks named out of alphabetical order (genre, play, as in
    `--multitask genre=... play=...` with "r", "m" after "a") came back reordered, so `task=1` of the
    reloaded model ran another task's head than it trained with (and inspect's default task changed)."""
    tasks = {"r": {"num_labels": 1, "problem_type": "regression", "label_names": []},
             "m": {"num_labels": 3, "problem_type": "multi_label_classification", "label_names": ["x", "y", "z"]},
             "a": {"num_labels": 2, "problem_type": "single_label_classification", "label_names": ["n", "p"]}}
    model = MultiTaskClassifier(tiny_encoder(), tasks, "mean").eval()
    model.save(tmp_path / "mt")
    reloaded = load_finetuned(tmp_path / "mt")
    assert reloaded.names == ["r", "m", "a"]
    ids = torch.tensor([[2, 5, 7, 3]])
    for i in range(3):
        task = torch.tensor([i])
        torch.testing.assert_close(reloaded(ids, task).logits, model(ids, task).logits)
    # the order sits beside the tasks' settings, not inside them (a minibert that predates it passed every
    # setting to __init__, and failed on the new key)
    config = json.loads((tmp_path / "mt" / "config.json").read_text())
    assert config["minibert_multitask_order"] == ["r", "m", "a"]
    assert "minibert_multitask_order" not in config["minibert_multitask"]
    # a model saved before the order was kept: its run's eval_results.json lists the tasks in training order
    del config["minibert_multitask_order"]
    (tmp_path / "mt" / "config.json").write_text(json.dumps(config, sort_keys=True))
    (tmp_path / "mt" / "eval_results.json").write_text(json.dumps({"metrics": {}, "tasks": tasks}))
    assert load_finetuned(tmp_path / "mt").names == ["r", "m", "a"]
    # a model saved by the commits that kept the order inside the settings ("task_order"): it failed to load
    # (TypeError: an unexpected keyword argument 'task_order')
    (tmp_path / "mt" / "eval_results.json").unlink()
    config["minibert_multitask"]["task_order"] = ["r", "m", "a"]
    (tmp_path / "mt" / "config.json").write_text(json.dumps(config, sort_keys=True))
    assert load_finetuned(tmp_path / "mt").names == ["r", "m", "a"]


def test_a_family_without_a_classifier_here_is_refused_before_the_data_is_read(tmp_path, capsys):
    """train.py classifies with BERT, RoBERTa, GPT-2 and BART (tests/test_decoder_classification.py). Another
    family was refused only in build_model, after the whole training and validation files were read and tokenised
    (a bad label was named instead of the family)."""
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": "t5", "vocab_size": 30}))
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": "a b", "label": v}) + "\n" for v in ("x", None, "x", "y")))
    for extra in ([], ["--task_type", "regression"], ["--pooling", "mean"]):
        code = train.main(["--model_name_or_path", str(tmp_path / "ckpt"), "--train_file", str(data),
                           "--output_dir", str(tmp_path / "out"), *extra])
        err = capsys.readouterr().err
        assert code == 2, err
        assert ("model_type 't5' cannot be fine-tuned here for classification; use a BERT, RoBERTa, GPT-2 or BART "
                "checkpoint") in err, err
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("freezer", [{"adapter_size": 4}, {"freeze_embeddings": True}])
@pytest.mark.parametrize("attack", [{"fgm": True}, {"pgd_steps": 2}])
def test_an_attack_on_frozen_word_embeddings_is_refused_before_any_work(freezer, attack):
    """--fgm / --pgd_steps with --adapter_size or --freeze_embeddings: the word embeddings they attack have
    no gradient. FGM refused it only when built, after the data was read and the model loaded."""
    args = FinetuneArguments(model_name_or_path="some/bert", **freezer, **attack)
    with pytest.raises(ValueError, match="attacks the word embeddings along their gradient, and --"):
        check_methods(args)

"""bench/plateau.py, the issue 9 diagnosis: what its numbers rest on (which input each prediction saw,
the ALiBi patch, the partial re-initialisation, the word-count baseline)."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import minibert.nn.attention as attention
from minibert.models.bert import BertConfig, BertForPreTraining
from minibert.tokenizer import train_tokenizer

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def plateau():
    spec = importlib.util.spec_from_file_location("plateau", ROOT / "bench" / "plateau.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prediction_kinds_tell_mask_kept_and_random_apart(plateau):
    mask = 4
    batch = {"input_ids": torch.tensor([[1, mask, 7, 9, 2]]), "labels": torch.tensor([[-100, 5, 7, 8, -100]])}
    kinds = plateau.prediction_kinds(batch, mask)
    assert kinds[0, 1:4].tolist() == [0, 1, 2]  # [MASK], the token kept, a random token in its place


def test_alibi_patch_biases_attention_towards_near_tokens(plateau, monkeypatch):
    monkeypatch.setattr(attention, "attend", attention.attend)  # the patch is undone after the test
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=32)).eval()
    ids = torch.randint(5, 50, (1, 12))
    plain = model(input_ids=ids, output_attentions=True).attentions[0]  # (B, H, T, T)
    plateau.patch(model, {"position": "alibi", "slopes": "20,0", "preln": 0, "untie": 0})
    biased = model(input_ids=ids, output_attentions=True).attentions[0]
    assert biased[0, 0].diagonal().min() > 0.99  # head 0: a slope of 20 leaves a token nothing but itself
    torch.testing.assert_close(biased[0, 1], plain[0, 1])  # head 1: slope 0, unchanged
    torch.testing.assert_close(biased.sum(-1), torch.ones(1, 2, 12))


def test_reset_qk_draws_queries_and_keys_again_and_keeps_the_rest(plateau, tmp_path):
    torch.manual_seed(1)
    model = BertForPreTraining(BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=32))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # "pretrained": far from any fresh initialisation
    model.save_pretrained(tmp_path / "ckpt")
    train_tokenizer(["to be or not to be that is the question"] * 5, vocab_size=60).save_pretrained(tmp_path / "ckpt")
    reset = BertForPreTraining.from_pretrained(plateau.reset(str(tmp_path / "ckpt"), "qk", str(tmp_path / "reset")))
    before, after = dict(model.named_parameters()), dict(reset.named_parameters())
    for name, value in after.items():
        if ".q_proj." in name or ".k_proj." in name:
            assert (value - before[name]).abs().min() > 0.5, name  # drawn again (weights ~N(0, 0.02), biases 0)
        else:
            torch.testing.assert_close(value, before[name], msg=name)


def test_word_count_baseline_beats_the_majority_class(plateau, capsys):
    plateau.bag_of_words()
    accuracy = json.loads(capsys.readouterr().out)["naive_bayes_validation_accuracy"]
    assert 0.45 < accuracy <= 1.0  # the majority class (comedy) is 0.389 of the validation speeches


def test_nearest_words_reads_the_word_table(plateau, tmp_path, capsys):
    tokenizer = train_tokenizer(["the king and the queen speak , the lord goes"] * 20, vocab_size=60)
    vocab = tokenizer.get_vocab()
    model = BertForPreTraining(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                          num_attention_heads=2, intermediate_size=32))
    with torch.no_grad():
        table = model.bert.embeddings.word_embeddings.weight
        table[vocab["queen"]] = table[vocab["king"]] + 1e-3  # the queen written next to the king
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    plateau.nearest_words(str(tmp_path), "king,throne")
    king, throne = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert king["nearest"][0] == "queen" and len(king["nearest"]) == 5
    assert throne["nearest"] == "not in the vocabulary"


def test_finetune_on_a_file_of_its_own_is_scored_on_the_tasks_validation_speeches(plateau, monkeypatch, capsys):
    """`finetune CKPT train_file=few.jsonl` (docs/pretraining-notes.md's 360-speech rows) trained unevaluated,
    since train.py evaluates another training file only on a validation file named with it, and then failed on
    max() of no accuracies. It now passes the task's validation file and prints the best accuracy."""
    import minibert.finetuning as finetuning

    seen = {}

    def fake_finetune(args, training):
        seen["args"] = args
        return SimpleNamespace(history=[{"step": 5, "eval_accuracy": 0.4}, {"step": 10, "eval_accuracy": 0.45}])

    monkeypatch.setattr(finetuning, "finetune", fake_finetune)
    plateau.main(["finetune", "CKPT", "train_file=few.jsonl", "epochs=10"])
    assert seen["args"].train_file == "few.jsonl"
    assert seen["args"].validation_file == str(finetuning.DEFAULT_VALIDATION_FILE)
    assert json.loads(capsys.readouterr().out)["best_validation_accuracy"] == 0.45

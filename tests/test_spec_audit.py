"""Behaviours a reading of the source notes against the code found missing or different (2026-11-25), each with a
test that fails on the code before it.

- train.py fine-tuned any checkpoint at 5e-4 when --learning_rate was not given: right for the 128-wide model
  pretrain.py makes by default, and 25 times BERT's fine-tuning rate for a pretrained BERT-base (note 000: 2e-5;
  Devlin et al. 2018, appendix A.3: 2e-5 to 5e-5). The default now follows the model's width.
- pretrain.py could continue a RoBERTa (--init_from) but not start one (note 001: RoBERTa drops NSP and token types
  and reads byte-level BPE): `--model_type roberta` builds one for mlm, wwm or span.
"""

import json
import logging

import pytest
import torch
from safetensors.torch import load_file
from test_pretrain import cli, corpus, pretrain, tiny_config  # noqa: F401 (corpus and tiny_config are fixtures)

import minibert
import train
from minibert.finetuning import DEFAULT_TRAINING, WIDE_MODEL_LEARNING_RATE, default_learning_rate, load_finetuned
from minibert.models.bert import RobertaConfig, RobertaModel
from minibert.neighbour_heads import write_neighbour_heads
from minibert.tokenizer import load_tokenizer


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
    assert "learning rate 2e-05: no --learning_rate was given and the pretrained model is 768 wide" in caplog.text
    assert "pass --learning_rate to choose" in caplog.text
    for wide in ("bart-large", "gpt2"):  # BART's d_model, GPT-2's n_embd
        assert learning_rate(["--model_name_or_path", models[wide]]) == 2e-5, wide
    for small in ("mini", "tiny"):  # pretrain.py's sizes up to mini (256 wide) keep the rate tuned on them
        assert learning_rate(["--model_name_or_path", models[small]]) == 5e-4, small
    # weights trained from scratch keep 5e-4 at any width: random weights, adapters, a ladder, BART's new encoder
    assert learning_rate(["--model_name_or_path", "random", "--config_name", models["bert-base"]]) == 5e-4
    for flags in (["--adapter_size", "16"], ["--ladder_side_tuning", "4"], ["--new_encoder_vocab", models["tiny"]]):
        assert learning_rate(["--model_name_or_path", models["bert-base"], *flags]) == 5e-4, flags
    assert learning_rate(["--model_name_or_path", models["bert-base"], "--gradual_unfreezing"]) == 2e-5  # (full)


def test_a_resume_takes_the_rate_its_checkpoint_was_trained_at(tmp_path):
    """A run of a wide model saved before the rule (or with --learning_rate 5e-4) resumed without the flag: refused,
    naming a --learning_rate the user never passed. It now goes on at the checkpoint's rate."""
    from test_train import rows, tiny_checkpoint, write_jsonl

    from minibert.models.bert import BertConfig, BertForPreTraining

    wide = tiny_checkpoint(tmp_path / "wide")
    config = json.loads((wide / "config.json").read_text())
    config.update(hidden_size=264, num_hidden_layers=1, intermediate_size=64)  # wider than 256
    BertForPreTraining(BertConfig.from_dict(config)).save_pretrained(wide)
    data = write_jsonl(tmp_path / "a.jsonl", rows(24, "single"))
    common = ["--model_name_or_path", str(wide), "--train_file", data, "--text_column", "sentence",
              "--max_seq_length", "16", "--per_device_train_batch_size", "8", "--save_steps", "2",
              "--disable_tqdm", "--device", "cpu", "--plot_loss", "false", "--output_dir", str(tmp_path / "run")]
    assert train.main([*common, "--learning_rate", "5e-4", "--max_steps", "2"]) == 0
    assert learning_rate([*common, "--resume_from_checkpoint", "last"]) == 5e-4
    assert learning_rate([*common, "--resume_from_checkpoint", str(tmp_path / "run" / "checkpoint-2")]) == 5e-4
    assert train.main([*common, "--max_steps", "3", "--resume_from_checkpoint", "last"]) == 0
    assert learning_rate(common) == 2e-5  # a new run of the same model


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


@pytest.mark.parametrize("objective", ["mlm", "wwm", "span"])
def test_a_new_roberta_pretrains_and_loads_in_transformers(tmp_path, corpus, tiny_config, objective):  # noqa: F811
    """--model_type roberta: byte-level BPE framed <s> ... </s>, padding id 1, one token type, positions counted
    from the padding id (514 rows for 512 tokens), the neighbour heads written into its block 0 as into BERT's; saved
    as a RoBERTa that Hugging Face loads to the same logits."""
    transformers = pytest.importorskip("transformers")
    result = pretrain(tmp_path, corpus, tiny_config, objective=objective, model_type="roberta", steps=4)
    config = json.loads((result.output_dir / "config.json").read_text())
    assert config["model_type"] == "roberta" and config["architectures"] == ["RobertaForMaskedLM"]
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"], config["type_vocab_size"]) == (
        1, 0, 2, 1)
    assert config["max_position_embeddings"] == 512 + 1 + 1 and config["hidden_size"] == 32  # the config file's
    summary = json.loads((result.output_dir / "pretraining_summary.json").read_text())
    assert summary["neighbour_heads"] is True
    written = RobertaModel(RobertaConfig.from_dict(config), add_pooling_layer=False)
    write_neighbour_heads(written)  # what the run wrote into block 0, and kept fixed while it trained
    saved = load_file(str(result.output_dir / "model.safetensors"))
    torch.testing.assert_close(saved["roberta.embeddings.position_embeddings.weight"],
                               written.embeddings.position_embeddings.weight.detach(), rtol=0, atol=0)
    tokenizer = load_tokenizer(result.output_dir)
    assert (tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token, tokenizer.mask_token) == (
        "<s>", "</s>", "<pad>", "<mask>")
    ours = minibert.load_pretrained(result.output_dir).eval()
    assert type(ours).__name__ == "RobertaForMaskedLM"
    theirs = transformers.RobertaForMaskedLM.from_pretrained(result.output_dir).eval()
    batch = tokenizer(["To be, or not to be, that is the question.", "A horse!"], max_length=32)
    assert batch["input_ids"][0][0] == 0 and batch["input_ids"][1][-1] == 1  # <s> first, <pad> after the short one
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=1e-5)
    if objective == "mlm":  # train.py fine-tunes it
        from test_train import rows, write_jsonl

        data = write_jsonl(tmp_path / "task.jsonl", rows(24, "single"))
        assert train.main(["--model_name_or_path", str(result.output_dir), "--train_file", data, "--validation_file",
                           data, "--text_column", "sentence", "--max_steps", "2", "--eval_steps", "2",
                           "--max_seq_length", "24", "--disable_tqdm", "--device", "cpu", "--plot_loss", "false",
                           "--output_dir", str(tmp_path / "tuned")]) == 0
        assert type(load_finetuned(tmp_path / "tuned")).__name__ == "RobertaForSequenceClassification"


def test_a_new_roberta_sizes_its_positions_for_both_phases(tmp_path, corpus, tiny_config):  # noqa: F811
    """Its position table is sized past the longer phase: a second phase of 514 tokens passed the check against
    the raw max_position_embeddings (514) and crashed at its first full batch, after phase one had trained."""
    result = pretrain(tmp_path, corpus, tiny_config, objective="mlm", model_type="roberta", steps=4,
                      max_seq_length_phase2=514, phase2_ratio=0.5)
    config = json.loads((result.output_dir / "config.json").read_text())
    assert config["max_position_embeddings"] == 514 + 1 + 1 and result.train.global_step == 4
    small = tmp_path / "small.json"  # a --config_file's table, checked before any data work, less the padding id
    small.write_text(json.dumps({**json.loads(tiny_config.read_text()), "max_position_embeddings": 34}))
    common = ("--objective", "mlm", "--model_type", "roberta", "--corpus", str(corpus), "--config_file", str(small),
              "--device", "cpu", "--output_dir", str(tmp_path / "o"))
    code, err = cli(*common, "--max_seq_length", "33")
    assert code == 1 and f"--max_seq_length 33 is longer than --config_file {small} can take (32 positions)" in err
    code, err = cli(*common, "--max_seq_length", "32", "--max_seq_length_phase2", "33")
    assert code == 1 and "--max_seq_length_phase2 33 is longer than" in err, err
    assert not (tmp_path / "o").exists()


def test_a_new_roberta_refuses_a_wordpiece_tokenizer(tmp_path, corpus):  # noqa: F811
    """A RoBERTa with a WordPiece --tokenizer trained and saved, and then could not fine-tune on pairs: [CLS] a
    [SEP] b [SEP] gives token type 1, which its single type cannot embed."""
    from test_train import tiny_checkpoint

    wordpiece = tiny_checkpoint(tmp_path / "bert")
    code, err = cli("--objective", "wwm", "--model_type", "roberta", "--tokenizer", str(wordpiece), "--corpus",
                    str(corpus), "--device", "cpu", "--output_dir", str(tmp_path / "o"))
    assert code == 1 and "is a wordpiece tokenizer framing texts in [CLS] ... [SEP], and --model_type roberta" in err
    assert not (tmp_path / "o").exists()


def test_roberta_is_refused_where_it_cannot_work_before_any_work(tmp_path, corpus, tiny_config):  # noqa: F811
    common = ("--corpus", str(corpus), "--device", "cpu", "--plot_loss", "false", "--output_dir", str(tmp_path / "o"))
    for objective in ("sop", "nsp", "electra"):
        code, err = cli("--objective", objective, "--model_type", "roberta", *common)
        assert code == 1 and "--model_type roberta pretrains with --objective mlm / wwm / span" in err, err
        assert "needs a head RoBERTa does not have" in err
    code, err = cli("--objective", "clm", "--model_type", "roberta", *common)
    assert code == 1 and "--objective clm trains a GPT-2" in err, err
    code, err = cli("--objective", "mlm", "--model_type", "roberta", "--init_from", str(tmp_path), *common)
    assert code == 1 and "--init_from continues one whose config.json says what it is" in err, err
    bert_config = tmp_path / "bert.json"
    bert_config.write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    code, err = cli("--objective", "mlm", "--model_type", "roberta", "--config_file", str(bert_config), *common)
    assert code == 1 and "describes a 'bert' model, and --model_type roberta builds a RoBERTa" in err, err
    roberta_config = tmp_path / "roberta.json"
    roberta_config.write_text(json.dumps({"model_type": "roberta", "hidden_size": 32}))
    code, err = cli("--objective", "mlm", "--config_file", str(roberta_config), *common)
    assert code == 1 and "without --model_type roberta (a new RoBERTa: pass --model_type roberta" in err, err
    code, err = cli("--objective", "mlm", "--model_type", "bert", *common)
    assert code == 2 and "invalid choice: 'bert'" in err, err
    assert not (tmp_path / "o").exists()


def test_pretrain_optim_bertadam_is_berts_update_and_a_resume_keeps_it(tmp_path, corpus, tiny_config):  # noqa: F811
    """Note 003: BERT pretrained with Adam without bias correction; pretrain.py had AdamW only. --optim bertadam
    trains with finetune/optimizers.py's BertAdam (correct_bias=False) over the engine's no-decay groups, recorded in
    the checkpoint, so a resume under another optimizer is refused."""
    from minibert.checkpoint import load_torch_file
    from minibert.engine.checkpointing import OPTIMIZER_FILE

    run = tmp_path / "run"
    common = ("--objective", "mlm", "--corpus", str(corpus), "--config_file", str(tiny_config), "--vocab_size", "300",
              "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--save_steps", "2", "--device", "cpu",
              "--plot_loss", "false", "--disable_tqdm", "--output_dir", str(run))
    assert cli(*common, "--optim", "bertadam", "--max_steps", "2")[0] == 0
    groups = load_torch_file(run / "checkpoint-2" / OPTIMIZER_FILE)["param_groups"]
    assert all(g["correct_bias"] is False for g in groups)  # BertAdam's own setting: AdamW has none
    assert sorted(g["weight_decay"] for g in groups) == [0.0, 0.01]  # biases and LayerNorm weights: none
    state = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["run_settings"]["optimizer"] == "BertAdam"
    resume = (*common, "--resume_from_checkpoint", "last", "--max_steps", "3")
    code, err = cli(*resume)
    assert code == 1 and "the optimizer (--optim, --prior_wd): BertAdam then, AdamW now" in err, err
    assert cli(*resume, "--optim", "bertadam")[0] == 0
    code, err = cli("--objective", "mlm", "--optim", "radam_lookahead", "--output_dir", str(tmp_path / "o"))
    assert code == 2 and "invalid choice: 'radam_lookahead'" in err


def test_a_resume_of_another_model_type_or_objective_is_refused_first(tmp_path, corpus, tiny_config,  # noqa: F811
                                                                       monkeypatch):
    """The checkpoint of a new RoBERTa resumed without --model_type was refused only once the corpus was prepared
    ("saved from a different model": 42 weights named bert.* against roberta.*): now before any data work, naming
    the flag."""
    import minibert.pretraining as pretraining

    pretrain(tmp_path, corpus, tiny_config, objective="mlm", model_type="roberta", steps=2, save_steps=2)
    monkeypatch.setattr(pretraining, "pretraining_data", lambda *a, **k: pytest.fail("the data work began"))
    for objective, model_type, named in (("mlm", None, "--model_type: roberta then, None now"),
                                         ("wwm", "roberta", "--objective: mlm then, wwm now")):
        with pytest.raises(ValueError, match="was saved by a run with other settings") as error:
            pretrain(tmp_path, corpus, tiny_config, objective=objective, model_type=model_type, steps=4,
                     resume_from_checkpoint="last")
        assert named in str(error.value)

"""minibert/neighbour_heads.py: the two heads look next door from step 0, stay fixed while pretraining,
and leave a checkpoint that Hugging Face's BERT loads and runs to the same numbers."""

import dataclasses
import json

import pytest
import torch

from minibert.engine import TrainingArguments
from minibert.models.bert import BertConfig, BertForPreTraining, RobertaConfig, RobertaModel
from minibert.neighbour_heads import keep_fixed, write_neighbour_heads
from minibert.pretraining import PretrainingOptions, run_pretraining

SMALL = {"vocab_size": 120, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 128}


def neighbour_attention(attentions: torch.Tensor) -> tuple[float, float]:
    """attentions (B, H, T, T) of block 0: head 0's mean weight on the previous token, head 1's on the next."""
    return attentions[:, 0].diagonal(-1, -2, -1).mean().item(), attentions[:, 1].diagonal(1, -2, -1).mean().item()


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_the_heads_look_at_the_previous_and_the_next_token_from_step_0(family):
    torch.manual_seed(0)
    if family == "bert":
        model = BertForPreTraining(BertConfig(**SMALL)).eval()
        encoder = model.bert
    else:  # RoBERTa's positions start after the padding index: only distances matter, so it works the same
        model = encoder = RobertaModel(RobertaConfig(**SMALL, pad_token_id=1)).eval()
    ids = torch.randint(5, 120, (4, 24))
    before = neighbour_attention(model(input_ids=ids, output_attentions=True).attentions[0])
    fixed = write_neighbour_heads(encoder)
    after = neighbour_attention(model(input_ids=ids, output_attentions=True).attentions[0])
    assert max(before) < 0.1 and min(after) > 0.3, (before, after)  # uniform attention would give 1/24
    first = encoder.layers[0].attention
    assert {id(p) for p, _ in fixed} == {id(encoder.embeddings.position_embeddings.weight),
                                         *map(id, first.q_proj.parameters()), *map(id, first.k_proj.parameters())}


def test_too_few_heads_are_refused_with_the_fix_and_small_heads_get_fewer_sinusoids():
    model = BertForPreTraining(BertConfig(**{**SMALL, "num_attention_heads": 1}))
    with pytest.raises(ValueError, match="need 2 heads of at least 4 dimensions; this model has 1 of 64.*"
                                         "--neighbour_heads false"):
        write_neighbour_heads(model.bert)
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(**{**SMALL, "hidden_size": 32})).eval()  # heads of 16 dims: F = 8
    write_neighbour_heads(model.bert)
    ids = torch.randint(5, 120, (4, 24))
    assert min(neighbour_attention(model(input_ids=ids, output_attentions=True).attentions[0])) > 0.3


def test_on_by_default_only_for_a_bert_started_from_scratch(tmp_path):
    assert PretrainingOptions(objective="sop").uses_neighbour_heads
    assert PretrainingOptions(objective="mlm").uses_neighbour_heads
    assert not PretrainingOptions(objective="sop", neighbour_heads=False).uses_neighbour_heads
    for objective in ("clm", "bart", "electra"):
        assert not PretrainingOptions(objective=objective).uses_neighbour_heads
        with pytest.raises(ValueError, match="--neighbour_heads true needs a BERT started from scratch"):
            PretrainingOptions(objective=objective, neighbour_heads=True)
    assert not PretrainingOptions(objective="sop", init_from=str(tmp_path)).uses_neighbour_heads
    with pytest.raises(ValueError, match="--init_from's attention is already trained"):
        PretrainingOptions(objective="sop", init_from=str(tmp_path), neighbour_heads=True)


def test_pretraining_keeps_the_heads_fixed_and_saves_a_plain_hugging_face_bert(tmp_path):
    import transformers

    from minibert.data import read_records

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": r["text"][:3000]}) + "\n" for r in read_records("shakespeare")[:10]))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({k: v for k, v in SMALL.items() if k != "vocab_size"}))
    options = PretrainingOptions(objective="sop", corpus=[str(corpus)], config_file=str(config), vocab_size=300,
                                 max_seq_length=32, validation_share=0.0, data_cache_dir=str(tmp_path / "cache"))
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=4,
                             learning_rate=1e-2, logging_steps=2, save_steps=100, device="cpu", disable_tqdm=True)
    result = run_pretraining(options, args)
    trained = BertForPreTraining.from_pretrained(result.output_dir)

    # what write_neighbour_heads writes does not depend on the rest of the model: write it into a fresh one
    fresh = BertForPreTraining(trained.config)
    write_neighbour_heads(fresh.bert)
    first, written = trained.bert.layers[0].attention, fresh.bert.layers[0].attention
    torch.testing.assert_close(trained.bert.embeddings.position_embeddings.weight,
                               fresh.bert.embeddings.position_embeddings.weight)
    for name in ("q_proj", "k_proj"):  # two heads of D = 32 = 2F: every row of the two projections is written
        torch.testing.assert_close(getattr(first, name).weight, getattr(written, name).weight)
        torch.testing.assert_close(getattr(first, name).bias, torch.zeros(64))
    assert json.loads((result.output_dir / "pretraining_summary.json").read_text())["neighbour_heads"] is True

    reference = transformers.BertForPreTraining.from_pretrained(result.output_dir, attn_implementation="eager").eval()
    ids = torch.randint(5, trained.config.vocab_size, (2, 20))
    theirs = reference(input_ids=ids, output_attentions=True)
    ours = trained.eval()(input_ids=ids, output_attentions=True)
    torch.testing.assert_close(ours.prediction_logits, theirs.prediction_logits, atol=1e-4, rtol=1e-4)
    assert min(neighbour_attention(theirs.attentions[0])) > 0.3  # transformers runs the same neighbour heads


def test_the_default_run_masks_40_percent_from_scratch_and_is_always_evaluated_at_15(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    import minibert.pretraining as pretraining
    from minibert.data import read_records

    spec = importlib.util.spec_from_file_location("pretrain_cli", Path(__file__).parent.parent / "pretrain.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.masking_options("sop", None, None) == {"mlm_probability": 0.4}
    assert cli.masking_options("sop", 0.2, None) == {"mlm_probability": 0.2}  # the flag wins
    assert cli.masking_options("sop", None, "path/to/bert") == {}  # continuing a checkpoint: the objective's 0.15
    assert cli.masking_options("clm", None, None) == {} and cli.masking_options("electra", None, None) == {}

    seen = {}
    make_eval_fn = pretraining.make_eval_fn

    def recording_make_eval_fn(objective, *args):
        seen["held_out"] = objective
        return make_eval_fn(objective, *args)

    monkeypatch.setattr(pretraining, "make_eval_fn", recording_make_eval_fn)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": r["text"][:2000], "title": r["title"]}) + "\n"
                              for r in read_records("shakespeare")[:40:4]))
    options = PretrainingOptions(objective="sop", corpus=[str(corpus)], model_size="micro", vocab_size=300,
                                 max_seq_length=32, objective_options={"mlm_probability": 0.5},
                                 data_cache_dir=str(tmp_path / "cache"))
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2,
                             save_steps=100, device="cpu", disable_tqdm=True)
    result = run_pretraining(options, args)
    assert seen["held_out"].mlm_probability == 0.15 and result.eval_end  # trained at 0.5, held out at BERT's 0.15


def test_a_default_run_leaves_the_heads_out_of_a_model_without_room_and_says_so(tmp_path, caplog):
    from minibert.data import read_records

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": r["text"][:2000]}) + "\n" for r in read_records("shakespeare")[:6]))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**{k: v for k, v in SMALL.items() if k != "vocab_size"}, "num_attention_heads": 1}))
    options = PretrainingOptions(objective="mlm", corpus=[str(corpus)], config_file=str(config), vocab_size=300,
                                 max_seq_length=32, validation_share=0.0, data_cache_dir=str(tmp_path / "cache"))
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2,
                             save_steps=100, device="cpu", disable_tqdm=True)
    result = run_pretraining(options, args)
    assert "this model has 1 of 64; pretraining without them" in caplog.text
    assert json.loads((result.output_dir / "pretraining_summary.json").read_text())["neighbour_heads"] is False
    with pytest.raises(ValueError, match="need 2 heads"):  # asked for explicitly: refused, not left out
        run_pretraining(dataclasses.replace(options, neighbour_heads=True),
                        dataclasses.replace(args, output_dir=str(tmp_path / "run2")))


def test_with_more_heads_in_block_0_only_the_two_written_heads_stay_fixed(tmp_path):
    """Block 0's whole query and key projections were frozen: with 4 heads, heads 2 and 3 kept their random
    queries and keys for the whole run (and the README measured them as 'free heads')."""
    from minibert.data import read_records

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": r["text"][:3000]}) + "\n" for r in read_records("shakespeare")[:10]))
    config = tmp_path / "config.json"  # 4 heads of D = 16: rows 0..32 are heads 0 and 1
    config.write_text(json.dumps({**{k: v for k, v in SMALL.items() if k != "vocab_size"}, "num_attention_heads": 4}))
    options = PretrainingOptions(objective="mlm", corpus=[str(corpus)], config_file=str(config), vocab_size=300,
                                 max_seq_length=32, validation_share=0.0, data_cache_dir=str(tmp_path / "cache"))
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=3, per_device_train_batch_size=4,
                             learning_rate=1e-2, weight_decay=0.1, logging_steps=3, save_steps=100, device="cpu",
                             disable_tqdm=True)
    result = run_pretraining(options, args)
    trained = BertForPreTraining.from_pretrained(result.output_dir).bert
    fresh = BertForPreTraining(trained.config)
    write_neighbour_heads(fresh.bert)
    written = fresh.bert.layers[0].attention
    torch.testing.assert_close(trained.embeddings.position_embeddings.weight,
                               fresh.bert.embeddings.position_embeddings.weight, rtol=0, atol=0)
    for name in ("q_proj", "k_proj"):
        ours, theirs = getattr(trained.layers[0].attention, name), getattr(written, name)
        torch.testing.assert_close(ours.weight[:32], theirs.weight[:32], rtol=0, atol=0)  # held, decay and all
        torch.testing.assert_close(ours.bias[:32], torch.zeros(32), rtol=0, atol=0)
        assert ours.bias[32:].abs().min() > 0  # heads 2 and 3 trained (their biases start at 0)


def test_keep_fixed_freezes_whole_tensors_and_holds_the_rows_of_shared_ones():
    model = BertForPreTraining(BertConfig(**{**SMALL, "num_attention_heads": 4}))
    keeper = keep_fixed(write_neighbour_heads(model.bert))
    first = model.bert.layers[0].attention
    assert not model.bert.embeddings.position_embeddings.weight.requires_grad
    assert first.q_proj.weight.requires_grad and keeper is not None and len(keeper.parts) == 4
    model.bert.layers[0].attention.q_proj.weight.sum().backward()
    assert (first.q_proj.weight.grad[:32] == 0).all() and (first.q_proj.weight.grad[32:] == 1).all()
    two = BertForPreTraining(BertConfig(**SMALL))  # 2 heads: every row is written, nothing is held row by row
    assert keep_fixed(write_neighbour_heads(two.bert)) is None
    assert not any(p.requires_grad for p in two.bert.layers[0].attention.q_proj.parameters())


@pytest.mark.parametrize("pooling", ["default", "mean"])
def test_train_py_writes_the_heads_into_random_weights_when_asked(tmp_path, pooling):
    """train.py --model_name_or_path random --neighbour_heads: the baseline that tells what pretraining's text taught
    from what the two written heads give; they look next door from the first step, and fine-tuning trains them."""
    from test_train import tiny_checkpoint

    from minibert.finetune.task_data import Task
    from minibert.finetuning import FinetuneArguments, build_model

    source = tiny_checkpoint(tmp_path / "ckpt")
    ids = torch.randint(5, 40, (4, 24))
    looks = []
    for neighbour_heads in (False, True):
        args = FinetuneArguments(model_name_or_path="random", config_name=str(source), pooling=pooling,
                                 neighbour_heads=neighbour_heads)
        torch.manual_seed(0)
        model = build_model(args, Task("single_label_classification", ["a", "b"]))[0].eval()
        encoder = model.base_model if pooling == "default" else model.encoder
        looks.append(neighbour_attention(encoder(input_ids=ids, output_attentions=True).attentions[0]))
        assert all(p.requires_grad for p in model.parameters())
    assert max(looks[0]) < 0.05 and min(looks[1]) > 0.12, looks  # uniform: 1 / 24 (16 wide: fewer sinusoids)


@pytest.mark.parametrize("argv, message", [
    (["--model_name_or_path", "CKPT"], r"pass --model_name_or_path random --config_name DIR, or drop --neighbour"),
    (["--model_name_or_path", "random", "--config_name", "GPT2"], r"GPT2 is a GPT-2 checkpoint; drop --neighbour"),
    (["--model_name_or_path", "random", "--config_name", "ONEHEAD"], r"need 2 heads of at least 4 dimensions; this "
                                                                     r"model has 1 of 16 \(.*ONEHEAD\)"),
    (["--model_name_or_path", "GPT2"], r"GPT2 is a GPT-2 checkpoint; drop --neighbour"),  # (not "pass random")
    (["--model_name_or_path", "random", "--config_name", "CKPT", "--reinit_layers", "2"],
     r"re-drawing block 0 would erase the written heads; drop --reinit_layers"),
])
def test_neighbour_heads_where_they_cannot_go_are_refused_before_any_work(tmp_path, argv, message):
    from test_train import tiny_checkpoint

    import train
    from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

    source = tiny_checkpoint(tmp_path / "ckpt")
    GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=16)).save_pretrained(
        tmp_path / "GPT2")
    (tmp_path / "GPT2" / "vocab.txt").write_text((source / "vocab.txt").read_text())
    (tmp_path / "ONEHEAD").mkdir()
    config = json.loads((source / "config.json").read_text())
    (tmp_path / "ONEHEAD" / "config.json").write_text(json.dumps({**config, "num_attention_heads": 1}))
    (tmp_path / "ONEHEAD" / "vocab.txt").write_text((source / "vocab.txt").read_text())
    names = {"CKPT": str(source), "GPT2": str(tmp_path / "GPT2"), "ONEHEAD": str(tmp_path / "ONEHEAD")}
    args, training = train.parse([*(names.get(a, a) for a in argv), "--neighbour_heads", "--max_seq_length", "16",
                                  "--output_dir",
                                  str(tmp_path / "out")])
    with pytest.raises(ValueError, match=message):
        train.finetune(args, training)
    assert not (tmp_path / "out").exists()

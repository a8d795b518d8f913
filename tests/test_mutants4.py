"""Tests written from a fourth mutation pass: each pins a rule that a single-point change to the code (a
flipped comparison, an off-by-one, a dropped check, a changed default) broke without any other test noticing.
Each test names the rule and its reference (PyTorch, Hugging Face transformers, a paper, a hand computation,
the docstring).

Modules covered: finetune/{new_encoder, saved_heads, generative, evaluate_generation}, engine/distributed,
neighbour_heads, nn/attention. (Also mutated, each change caught by the suite already: nn/packing. The mutants
left without a test, and why, are listed at the end of the file.)
"""

import logging

import pytest
import torch
from torch import nn

from minibert.finetune.new_encoder import BartWithNewEncoder, NewEncoderFront, TwoStageTraining
from minibert.models.bart import BartConfig, BartForConditionalGeneration


# -- finetune/new_encoder -----------------------------------------------------------------------------------
def tiny_bart_config(**changes) -> BartConfig:
    return BartConfig(**{"vocab_size": 40, "d_model": 16, "encoder_layers": 1, "decoder_layers": 1,
                         "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 32,
                         "decoder_ffn_dim": 32, "max_position_embeddings": 32, "dropout": 0.0, **changes})


def new_encoder_bart(num_layers=1, **changes) -> BartWithNewEncoder:
    torch.manual_seed(0)
    return BartWithNewEncoder(BartForConditionalGeneration(tiny_bart_config(**changes)), vocab_size=50,
                              pad_token_id=1, num_layers=num_layers).eval()


def test_the_new_front_is_initialised_as_barts_own_weights_with_a_zero_padding_row():
    # BART's _init_weights (Hugging Face's BartPreTrainedModel): weights ~ N(0, init_std), biases 0, the padding
    # row 0; and nn.Embedding(padding_idx=...) gives that row no gradient, so it stays 0 through training.
    torch.manual_seed(0)
    front = NewEncoderFront(tiny_bart_config(init_std=0.05), vocab_size=400, pad_token_id=3, num_layers=2)
    weight = front.embed_tokens.weight
    assert front.embed_tokens.padding_idx == 3 and not weight[3].any()
    assert weight[4:].std().item() == pytest.approx(0.05, rel=0.05)
    linears = [m for m in front.modules() if isinstance(m, nn.Linear)]
    assert linears and all(not m.bias.any() for m in linears)
    assert all(m.weight.std().item() == pytest.approx(0.05, rel=0.3) for m in linears)
    front(torch.tensor([[5, 3, 7, 3]])).sum().backward()
    assert not weight.grad[3].any() and weight.grad[5].any()


def test_a_front_of_no_layers_is_an_embedding_and_fewer_is_refused():
    # --new_encoder_layers "must be >= 0": 0 layers leave the new embedding alone as the front.
    front = NewEncoderFront(tiny_bart_config(), vocab_size=50, pad_token_id=1, num_layers=0)
    ids = torch.tensor([[4, 9, 1]])
    assert torch.equal(front(ids), front.embed_tokens(ids))
    with pytest.raises(ValueError, match="--new_encoder_layers must be >= 0, got -1"):
        NewEncoderFront(tiny_bart_config(), vocab_size=50, pad_token_id=1, num_layers=-1)


def test_the_front_runs_every_layer_and_hides_its_padding():
    # The docstring: an embedding and `num_layers` encoder layers, each reading the padding (the pad ids) as
    # masked keys: a real token's vector is the same with padding after it as without (a hand composition).
    torch.manual_seed(0)
    front = NewEncoderFront(tiny_bart_config(dropout=0.0), vocab_size=50, pad_token_id=1, num_layers=2).eval()
    ids = torch.tensor([[4, 9, 7]])
    expected = front.embed_tokens(ids)
    for layer in front.layers:
        expected = layer(expected, None)[0]
    with torch.no_grad():
        torch.testing.assert_close(front(ids), expected)
        padded = front(torch.tensor([[4, 9, 7, 1, 1]]))
    torch.testing.assert_close(padded[:, :3], expected, rtol=1e-5, atol=1e-6)


def test_source_padding_changes_neither_the_loss_nor_the_generated_text():
    # As BART's own forward and generate: the attention mask keeps the source's padding out of the encoder's
    # self-attention and the decoder's cross-attention, so a row padded in a batch is read as the row alone.
    model = new_encoder_bart(init_std=0.5)
    alone, padded = torch.tensor([[0, 8, 30, 12, 2]]), torch.tensor([[0, 8, 30, 12, 2, 1, 1, 1]])
    labels = torch.tensor([[0, 5, 9, 2]])
    with torch.no_grad():
        want = model(alone, torch.ones_like(alone), labels=labels).logits
        got = model(padded, padded.ne(1).long(), labels=labels).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    batch = torch.cat([padded, torch.tensor([[0, 44, 21, 17, 6, 9, 33, 2]])])
    out = model.generate(batch, attention_mask=batch.ne(1).long(), max_new_tokens=6, num_beams=1)
    one = model.generate(alone, attention_mask=torch.ones_like(alone), max_new_tokens=6, num_beams=1)
    assert out[0, : one.size(1)].tolist() == one[0].tolist()


def test_a_saved_new_encoder_bart_loads_whole_and_ready_to_evaluate(tmp_path):
    # Hugging Face's from_pretrained returns the model in eval mode (dropout off); the front's layer count is
    # part of what is saved, so a 2-layer front loads as 2 layers.
    from minibert.finetuning import load_finetuned

    model = new_encoder_bart(num_layers=2, dropout=0.3)
    model.save(tmp_path)
    loaded = load_finetuned(tmp_path)
    assert isinstance(loaded, BartWithNewEncoder) and len(loaded.front.layers) == 2 and not loaded.training
    ids, labels = torch.tensor([[0, 8, 45, 2]]), torch.tensor([[0, 7, 2]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, labels=labels).logits, model(ids, labels=labels).logits)


def test_a_plain_bart_saved_over_a_new_encoder_run_loads_as_a_plain_bart(tmp_path):
    # save_pretrained removes the front's new_encoder/front.json (the marker) and leaves the rest of the folder:
    # the plain model saved last is what loads (checkpoint.py's rule for a model saved over another).
    from minibert.finetuning import load_finetuned

    new_encoder_bart().save(tmp_path)
    torch.manual_seed(1)
    BartForConditionalGeneration(tiny_bart_config()).save_pretrained(tmp_path)
    assert (tmp_path / "new_encoder" / "front.safetensors").is_file()
    assert type(load_finetuned(tmp_path)) is BartForConditionalGeneration


def test_stage_one_of_no_step_is_refused_and_the_loss_counts_barts_labelled_tokens():
    # TwoStageTraining: stage one "needs at least 1 step"; loss_items is BART's count (labels not -100), by which
    # the engine weighs accumulated micro-batches.
    model = new_encoder_bart()
    with pytest.raises(ValueError, match="stage one needs at least 1 step, got 0"):
        TwoStageTraining(model, stage_one_steps=0)
    assert model.loss_items({"labels": torch.tensor([[0, 5, 2, -100], [0, -100, -100, -100]])}) == 4


# -- finetune/saved_heads -----------------------------------------------------------------------------------
def tiny_bert_config(**changes):
    from minibert.models.bert import BertConfig

    return BertConfig(**{"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "intermediate_size": 32, **changes})


@pytest.mark.parametrize("names, problem_type, num_labels, task, rows", [
    # the same labels in another order: the checkpoint's row of each task label, in the task's order
    (["b", "c", "a"], "single_label_classification", 3, ("single_label_classification", ["a", "b", "c"]),
     [2, 0, 1]),
    (["x", "y"], "single_label_classification", 2, ("single_label_classification", ["x", "y"]), [0, 1]),
    (["x", "y"], "multi_label_classification", 2, ("single_label_classification", ["x", "y"]), None),  # other type
    (["x", "y"], "single_label_classification", 3, ("single_label_classification", ["x", "y"]), None),  # other size
    ([], "regression", 1, ("regression", []), [0]),  # a regression has no label names: its one row is kept
])
def test_checkpoint_label_rows_matches_labels_by_name_type_and_count(names, problem_type, num_labels, task, rows):
    # checkpoint_label_rows' docstring: the same problem type and number of outputs, the same names in any order.
    from minibert.finetune.saved_heads import checkpoint_label_rows
    from minibert.finetune.task_data import Task

    assert checkpoint_label_rows(names, problem_type, num_labels, Task(*task)) == rows


def test_a_family_heads_rows_follow_their_labels_through_a_three_cycle():
    # keep_checkpoint_label_rows: each task class keeps the checkpoint's row (weight and bias) trained for it. A
    # 3-cycle (c, a, b -> a, b, c) tells the permutation from its inverse, which a swap of two does not.
    from minibert.finetune.saved_heads import keep_checkpoint_label_rows
    from minibert.finetune.task_data import Task
    from minibert.models.bert import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([10.0, 20.0, 30.0]))  # Hugging Face's init leaves it 0
    weight = model.classifier.weight.detach().clone()
    model.loading_info = {"newly_initialized": [], "mismatched": []}
    keep_checkpoint_label_rows(model, {"id2label": {"0": "c", "1": "a", "2": "b"}}, Task(
        "single_label_classification", ["a", "b", "c"]))
    assert model.classifier.bias.tolist() == [20.0, 30.0, 10.0]
    torch.testing.assert_close(model.classifier.weight.detach(), weight[[1, 2, 0]], rtol=0, atol=0)


def test_a_checkpoint_of_default_label_names_keeps_its_rows_without_a_warning(caplog):
    # Hugging Face's run_glue warns of the model's labels only when its label2id is not the default
    # (LABEL_0, LABEL_1, ...): default names say nothing of the classes, so no row is "another class's".
    from minibert.finetune.saved_heads import keep_checkpoint_label_rows
    from minibert.finetune.task_data import Task
    from minibert.models.bert import BertForSequenceClassification

    model = BertForSequenceClassification(tiny_bert_config(num_labels=2))
    model.loading_info = {"newly_initialized": [], "mismatched": []}
    task = Task("single_label_classification", ["neg", "pos"])
    with caplog.at_level(logging.WARNING, logger="minibert"):
        keep_checkpoint_label_rows(model, {"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}, task)
        assert not caplog.records
        keep_checkpoint_label_rows(model, {"id2label": {"0": "bad", "1": "good"}}, task)
    assert "trained for the labels ['bad', 'good'] and this task's are ['neg', 'pos']" in caplog.text


def test_forget_saved_heads_drops_every_key_of_the_checkpoints_own_head():
    # Its docstring: the keys that mark --pooling and --multitask heads (the task order beside the tasks) go.
    from minibert.finetune.classifier import HEAD_KEY
    from minibert.finetune.multitask import TASK_ORDER_KEY, TASKS_KEY
    from minibert.finetune.saved_heads import forget_saved_heads

    config = tiny_bert_config()
    config.extra.update({HEAD_KEY: {}, TASKS_KEY: {}, TASK_ORDER_KEY: ["genre"], "kept": 1})
    forget_saved_heads(config)
    assert config.extra == {"kept": 1}


def test_a_cls_layer_head_of_another_layer_starts_afresh(tmp_path, caplog):
    # reload_pooling_head / reload_task_heads: the head is reloaded for "the same --pooling" only, and for
    # cls_layer that includes --pooling_layer (a classifier trained on layer -2's [CLS] reads another layer's).
    from types import SimpleNamespace

    from minibert.checkpoint import read_config_dict
    from minibert.finetune.classifier import PooledClassifier
    from minibert.finetune.multitask import TASKS_KEY, MultiTaskClassifier
    from minibert.finetune.saved_heads import reload_pooling_head, reload_task_heads
    from minibert.finetune.task_data import Task
    from minibert.models.bert import BertModel

    torch.manual_seed(0)
    PooledClassifier(BertModel(tiny_bert_config()), "cls_layer", 2, layer=-2).save(tmp_path / "pooled")
    model = PooledClassifier(BertModel(tiny_bert_config()), "cls_layer", 2, layer=-1)
    fresh = model.classifier.weight.detach().clone()
    task = Task("single_label_classification", ["LABEL_0", "LABEL_1"])
    with caplog.at_level(logging.WARNING, logger="minibert"):
        reload_pooling_head(model, tmp_path / "pooled", read_config_dict(tmp_path / "pooled"),
                            SimpleNamespace(pooling="cls_layer", pooling_layer=-1), task)
    assert torch.equal(model.classifier.weight, fresh)
    assert ("this run's head (--pooling cls_layer --pooling_layer -1) starts afresh; pass --pooling cls_layer "
            "--pooling_layer -2 to fine-tune on from it") in caplog.text
    tasks = {"genre": {"num_labels": 2, "problem_type": "single_label_classification"}}
    MultiTaskClassifier(BertModel(tiny_bert_config()), tasks, "cls_layer", layer=-2).save(tmp_path / "multi")
    model = MultiTaskClassifier(BertModel(tiny_bert_config()), tasks, "cls_layer", layer=-1)
    fresh = model.classifiers["genre"].weight.detach().clone()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="minibert"):
        reload_task_heads(model, tmp_path / "multi", read_config_dict(tmp_path / "multi")[TASKS_KEY],
                          {"genre": task})
    assert torch.equal(model.classifiers["genre"].weight, fresh)
    assert "each task's head (--pooling cls_layer --pooling_layer -1) starts afresh" in caplog.text


# -- finetune/generative ------------------------------------------------------------------------------------
GEN_WORDS = "king queen fool love war crown sword jest night song".split()


@pytest.fixture(scope="module")
def bytelevel():
    from minibert.tokenizer import train_tokenizer

    g = torch.Generator().manual_seed(0)
    texts = [" ".join(GEN_WORDS[i] for i in torch.randint(0, 10, (6,), generator=g).tolist()) for _ in range(40)]
    return train_tokenizer(texts, "bytelevel_bpe", vocab_size=300, min_frequency=1)


def tiny_gpt2(tokenizer, n_positions=32):
    from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=n_positions, n_embd=16, n_layer=1,
                                      n_head=2, pad_token_id=tokenizer.pad_token_id,
                                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)).eval()


def test_only_what_is_cut_is_warned_of_and_a_prompt_that_fills_the_sequence_is_refused(bytelevel, caplog):
    # seq2seq_examples: <s> source </s> fits max_seq_length with max_seq_length - 2 tokens between; causal_lm:
    # prompt + completion + <eos> fits with room max_seq_length - len(prompt), and a prompt that fills the
    # sequence alone "is an error". Nothing that fits is cut, and nothing is said of it.
    from minibert.finetune.generative import causal_lm_examples, seq2seq_examples

    four = " king queen fool love"
    assert len(bytelevel.encode(four)) == 4
    with caplog.at_level(logging.WARNING, logger="minibert.finetune.generative"):
        [example] = seq2seq_examples([four], [four], bytelevel, max_seq_length=6)
        [fits] = causal_lm_examples([four], [" war"], bytelevel, 6, "f")  # 4 + 1 + <eos>: exactly 6
    assert len(example["input_ids"]) == len(example["labels"]) == 6 and len(fits["input_ids"]) == 6
    assert not caplog.records
    [cut] = causal_lm_examples([four], [" war crown"], bytelevel, 6, "f")  # the completion is cut to the room
    assert cut["input_ids"] == bytelevel.encode(four + " war crown")[:6] and len(cut["labels"]) == 6
    with pytest.raises(ValueError, match="the prompt alone has 4 tokens"):
        causal_lm_examples([four], [" war"], bytelevel, 4, "f")


def test_input_rows_are_padded_with_the_pad_token_before_any_end_token(bytelevel):
    # input_pad_token_id's docstring: the pad token, or (GPT-2's tokenizer has none) the end-of-text token. A
    # WordPiece tokenizer's [SEP] ends every BART source framed with it: padding with it, the new encoder front
    # (which finds the padding by its id) would hide the source's own [SEP].
    from minibert.finetune.generative import input_pad_token_id
    from minibert.tokenizer import train_tokenizer

    wordpiece = train_tokenizer(GEN_WORDS * 3, "wordpiece", vocab_size=60, min_frequency=1)
    assert input_pad_token_id(wordpiece) == wordpiece.pad_token_id != wordpiece.sep_token_id
    assert input_pad_token_id(bytelevel) == bytelevel.pad_token_id != bytelevel.eos_token_id


@pytest.mark.parametrize("config, length, generation_max_length, refused", [
    ({"model_type": "bart", "max_position_embeddings": 16}, 16, 16, None),  # all the positions: taken
    ({"model_type": "bart", "max_position_embeddings": 16}, 17, None, "--max_seq_length 17 is longer"),
    ({"model_type": "bart", "max_position_embeddings": 16}, 8, 17, "--generation_max_length 17 is past the 16"),
    ({"model_type": "gpt2", "n_positions": 16}, 16, None, None),
    ({"model_type": "gpt2", "n_positions": 16}, 17, None, r"can take \(16 positions\)"),
])
def test_max_seq_length_may_use_every_position_and_no_more(config, length, generation_max_length, refused):
    # BART's max_position_embeddings and GPT-2's n_positions are the longest sequence the positions cover.
    from minibert.finetune.generative import check_generative_checkpoint

    task = "seq2seq" if config["model_type"] == "bart" else "causal_lm"
    if refused is None:
        check_generative_checkpoint(task, config, length, "ckpt", generation_max_length)
    else:
        with pytest.raises(ValueError, match=refused):
            check_generative_checkpoint(task, config, length, "ckpt", generation_max_length)


class RecordedGenerate:
    """A model's generate, recorded: what it was given, and (in place of a random model's tokens) the ids
    `new` after each row's input (a decoder's start and tokens alone), as generate returns them."""

    def __init__(self, new, seq2seq=False):
        self.new, self.seq2seq, self.calls = new, seq2seq, []

    def __call__(self, inputs, **kwargs):
        self.calls.append((inputs.clone(), kwargs))
        new = torch.tensor(self.new).expand(inputs.size(0), -1)
        return new if self.seq2seq else torch.cat([inputs, new], 1)


def test_a_causal_lm_prediction_is_the_text_after_the_prompt_and_the_loss_a_token_mean(bytelevel, caplog):
    # GenerationEvaluator: generate reads the prompts alone (left-padded), with new tokens that fit GPT-2's
    # positions (prompt P + new n feeds P + n - 1 tokens: n <= n_positions + 1 - P); the prediction is the text
    # after the prompt up to <eos>; the loss is the mean over every target token of the set (as one batch's).
    from minibert.finetune.generative import GenerationEvaluator, GenerativeCollator, causal_lm_examples

    model = tiny_gpt2(bytelevel, n_positions=12)
    examples = causal_lm_examples([" king queen fool", " war"], [" love", " crown sword jest night"], bytelevel, 12,
                                  "f")
    eos = bytelevel.eos_token_id
    model.generate = RecordedGenerate([*bytelevel.encode(" song"), eos, eos])
    evaluator = GenerationEvaluator(examples, "causal_lm", bytelevel, batch_size=1, max_new_tokens=20)
    metrics = evaluator(model)
    assert evaluator.predictions == [" song", " song"]
    # each prompt alone, with the new tokens that fit beside it (in whichever order the evaluator batches them)
    calls = {tuple(call[0][0].tolist()): call[1]["max_new_tokens"] for call in model.generate.calls}
    assert len(model.generate.calls) == 2 and all(call[0].shape[0] == 1 for call in model.generate.calls)
    assert calls == {tuple(bytelevel.encode(" king queen fool")): 10, tuple(bytelevel.encode(" war")): 12}
    with torch.no_grad():
        whole = model(**GenerativeCollator(bytelevel.pad_token_id)(examples)).loss
    assert metrics["loss"] == pytest.approx(float(whole), rel=1e-5)
    assert not model.training  # the evaluation leaves the model in the mode it found it in


def test_barts_evaluation_uses_the_given_pad_id_and_every_decoder_position(bytelevel, caplog):
    # GenerationEvaluator: pad_token_id is the inputs' (a new encoder's source vocabulary, not the decoding
    # tokenizer's); --generation_max_length equal to BART's decoder positions is taken as it is, without a word.
    from minibert.finetune.generative import GenerationEvaluator

    torch.manual_seed(0)
    model = BartForConditionalGeneration(tiny_bart_config(
        vocab_size=bytelevel.vocab_size, max_position_embeddings=16, pad_token_id=bytelevel.pad_token_id,
        bos_token_id=bytelevel.bos_token_id, eos_token_id=bytelevel.eos_token_id,
        decoder_start_token_id=bytelevel.eos_token_id)).eval()
    eos, bos = bytelevel.eos_token_id, bytelevel.bos_token_id
    model.generate = RecordedGenerate([eos, bos, *bytelevel.encode(" war king"), eos], seq2seq=True)
    examples = [{"input_ids": [bos, 5, 6, eos], "labels": [bos, 7, eos], "source": "s", "target": " war king"},
                {"input_ids": [bos, 5, eos], "labels": [bos, 7, eos], "source": "s", "target": "x"}]
    evaluator = GenerationEvaluator(examples, "seq2seq", bytelevel, batch_size=2, max_new_tokens=16, pad_token_id=99)
    with caplog.at_level(logging.WARNING):
        metrics = evaluator(model)
    inputs, kwargs = model.generate.calls[0]
    assert inputs[0].tolist() == [bos, 5, eos, 99] and kwargs["max_new_tokens"] == 16 and not caplog.records
    assert evaluator.predictions == [" war king"] * 2 and metrics["exact_match"] == 0.5


# -- engine/distributed -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cuda", [False, True])
def test_devices_resolve_as_the_docstring_says(monkeypatch, cuda):
    # resolve_device: 'auto' -> CUDA when present, else CPU; under torchrun each process takes cuda:LOCAL_RANK;
    # 'cuda' asked for without one is refused by name (not a failure at the first tensor moved).
    from minibert.engine.distributed import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("cpu", 1) == torch.device("cpu")
    if cuda:
        assert resolve_device("auto", 1) == resolve_device("cuda", 1) == torch.device("cuda", 1)
    else:
        assert resolve_device("auto", 1) == torch.device("cpu")
        with pytest.raises(ValueError, match="device 'cuda' was asked for but PyTorch sees no CUDA device"):
            resolve_device("cuda")


def test_setup_reads_torchruns_ranks_and_reuses_a_group_already_joined(monkeypatch):
    # setup's docstring: torchrun's RANK, WORLD_SIZE and LOCAL_RANK (the second process of the second machine of
    # two: rank 3, local rank 1); "join (or reuse) the process group": one already made is not made again.
    import torch.distributed as dist

    from minibert.engine import distributed

    def init_process_group(**kwargs):
        raise AssertionError("a second process group was made")

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    context = distributed.setup("cpu")
    assert (context.rank, context.world_size, context.local_rank, context.is_main) == (3, 4, 1, False)
    monkeypatch.delenv("RANK")  # no torchrun: the one process is the main one, and logs at the level asked
    assert distributed.process_rank() == 0 and distributed.log_level(logging.INFO) == logging.INFO


def two_ranks(monkeypatch, other: list[float], other_keys: list[str] | None = None) -> None:
    """This process as rank 0 of 2, its partner holding `other` (what it all-reduces) and `other_keys`: an
    all-reduce adds the partner's tensor (of the same length, as gloo requires), a gather puts its keys second."""
    import torch.distributed as dist

    def all_reduce(tensor):
        tensor.add_(torch.tensor(other, dtype=tensor.dtype))  # a length other than the partner's fails, as in gloo

    def all_gather_object(gathered, value):
        gathered[:] = [value, other_keys]

    monkeypatch.setattr(dist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    monkeypatch.setattr(dist, "all_gather_object", all_gather_object)


def test_sums_and_means_across_ranks_by_hand(monkeypatch):
    # Every process gets the sum (an exact count: float64 holds every integer below 2^53, float32 none past
    # 2^24 + 1), and mean_across_ranks divides by the processes: (2 + 4) / 2, (0.5 + 1) / 2.
    from minibert.engine.distributed import DistributedContext, mean_across_ranks, sum_across_ranks

    context = DistributedContext(rank=0, world_size=2)
    two_ranks(monkeypatch, [3.0])
    assert sum_across_ranks(2.0 ** 24, context) == 2.0 ** 24 + 3
    two_ranks(monkeypatch, [1.0, 4.0])  # the partner's accuracy and loss, in the keys' sorted order
    assert mean_across_ranks({"accuracy": 0.5, "loss": 2.0}, context) == {"accuracy": 0.75, "loss": 3.0}


def test_a_value_only_some_ranks_hold_is_averaged_over_those_ranks(monkeypatch):
    # mean_of_present_across_ranks' docstring: each key averaged over the processes that hold it; the key names
    # are gathered first, so a process that lacks one still all-reduces a list as long as its partner's.
    from minibert.engine.distributed import DistributedContext, mean_of_present_across_ranks

    context = DistributedContext(rank=0, world_size=2)
    two_ranks(monkeypatch, [1.0, 0.0, 1.0, 0.0], ["accuracy"])  # the partner: accuracy 1.0, no loss
    assert mean_of_present_across_ranks({"accuracy": 0.5, "loss": 2.0}, context) == {"accuracy": 0.75, "loss": 2.0}
    two_ranks(monkeypatch, [0.5, 2.0, 1.0, 1.0], ["accuracy", "loss"])  # seen from the process without the loss
    assert mean_of_present_across_ranks({"accuracy": 1.0}, context) == {"accuracy": 0.75, "loss": 2.0}


# -- neighbour_heads ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("hidden_size, frequencies", [(64, 16), (32, 8)])  # heads of 32 and of 16 dimensions
def test_the_neighbour_heads_dot_products_are_the_docstrings_sums_of_cosines(hidden_size, frequencies):
    # The module docstring: p_i = a [cos(w_1 i), sin(w_1 i), ..., cos(w_F i), sin(w_F i), 0, ...], w_f from pi
    # down to pi / 8 (geometric), a^2 F = initializer_range^2 E; head h's queries copy those 2F dimensions (and
    # read nothing else), its keys rotate each pair, so q_i . k_j = s^2 a^2 sum_f cos(w_f (i - j -+ 1)), s = 1;
    # a head of D < 2F dimensions gets F = D / 2 sinusoids.
    import math

    from minibert.models.bert import BertModel
    from minibert.neighbour_heads import angular_frequencies, write_neighbour_heads

    config = tiny_bert_config(hidden_size=hidden_size, max_position_embeddings=20)
    encoder = BertModel(config)
    write_neighbour_heads(encoder)
    omega = angular_frequencies(frequencies)
    assert omega[0] == pytest.approx(math.pi) and omega[-1] == pytest.approx(math.pi / 8)
    torch.testing.assert_close(omega[1:] / omega[:-1], torch.full((frequencies - 1,), 8 ** (-1 / (frequencies - 1)),
                                                                  dtype=torch.float64))
    positions = encoder.embeddings.position_embeddings.weight.detach().double()
    a = 0.02 * math.sqrt(hidden_size / frequencies)
    i = torch.arange(20, dtype=torch.float64)[:, None]
    want = torch.zeros(20, hidden_size, dtype=torch.float64)
    want[:, 0:2 * frequencies:2], want[:, 1:2 * frequencies:2] = a * torch.cos(i * omega), a * torch.sin(i * omega)
    torch.testing.assert_close(positions, want, rtol=0, atol=1e-6)
    attention, D = encoder.layers[0].attention, hidden_size // 2
    for head, shift in ((0, 1), (1, -1)):
        rows = slice(head * D, head * D + 2 * frequencies)
        q, k = attention.q_proj.weight.detach().double()[rows], attention.k_proj.weight.detach().double()[rows]
        assert not q[:, 2 * frequencies:].any() and not k[:, 2 * frequencies:].any()
        dots = (positions @ q.T) @ (positions @ k.T).T  # (P, P): position i's query against position j's key
        distance = i - i.T - shift  # (P, P): i - j -+ 1
        expected = a * a * torch.cos(distance[..., None] * omega).sum(-1)
        torch.testing.assert_close(dots, expected, rtol=0, atol=1e-6)


def test_heads_too_small_for_one_sinusoid_pair_are_refused():
    # why_no_room: 2 heads of at least 4 dimensions. Heads of 3 would get F = 1 (pi alone, and
    # angular_frequencies(1) is 0 / 0: NaN positions).
    from minibert.models.bert import BertModel
    from minibert.neighbour_heads import write_neighbour_heads

    with pytest.raises(ValueError, match="need 2 heads of at least 4 dimensions; this model has 2 of 3"):
        write_neighbour_heads(BertModel(tiny_bert_config(hidden_size=6, num_attention_heads=2)))


# -- finetune/evaluate_generation ---------------------------------------------------------------------------
def test_a_new_encoder_run_is_re_evaluated_through_its_own_source_vocabulary(bytelevel, tmp_path, monkeypatch):
    # evaluate_saved decodes "the very same weights" as the run did: a --new_encoder_vocab run's sources are read
    # with the new encoder's tokenizer (saved in new_encoder/), framed by its [CLS] / [SEP] and padded with its
    # [PAD] (train.py: input_pad_token_id(source_tokenizer or tokenizer)), the outputs decoded with BART's.
    import json

    from minibert.finetune import evaluate_generation
    from minibert.tokenizer import train_tokenizer

    wordpiece = train_tokenizer(GEN_WORDS * 3, "wordpiece", vocab_size=60, min_frequency=1)
    torch.manual_seed(0)
    bart = BartForConditionalGeneration(tiny_bart_config(
        vocab_size=bytelevel.vocab_size, pad_token_id=bytelevel.pad_token_id, bos_token_id=bytelevel.bos_token_id,
        eos_token_id=bytelevel.eos_token_id, decoder_start_token_id=bytelevel.eos_token_id))
    BartWithNewEncoder(bart, wordpiece.vocab_size, wordpiece.pad_token_id).save(tmp_path, wordpiece)
    bytelevel.save_pretrained(tmp_path)
    data = tmp_path / "dev.jsonl"
    data.write_text(json.dumps({"source": "war king", "target": "king war"}) + "\n")
    (tmp_path / "eval_results.json").write_text(json.dumps({"task": {"problem_type": "seq2seq"}, "generation": {
        "text_column": "source", "target_column": "target", "num_beams": 1, "max_seq_length": 16,
        "validation_file": str(data), "generation_max_length": 3}}))
    seen = []

    class Recorded(evaluate_generation.GenerationEvaluator):
        def __init__(self, examples, *args):
            super().__init__(examples, *args)
            seen.append(self)

    monkeypatch.setattr(evaluate_generation, "GenerationEvaluator", Recorded)
    assert evaluate_generation.evaluate_saved(tmp_path)["examples"] == 1
    [evaluator] = seen
    framed = [wordpiece.cls_token_id, *wordpiece.encode("war king"), wordpiece.sep_token_id]  # [CLS] war king [SEP]
    assert evaluator.examples[0]["input_ids"] == framed
    assert evaluator.pad_token_id == wordpiece.pad_token_id and evaluator.tokenizer.vocab_size == bytelevel.vocab_size


@pytest.mark.parametrize("record, message", [
    (None, "has no eval_results.json; pass the output_dir of a train.py --task_type seq2seq or causal_lm run"),
    ({}, "the run had no validation file; pass --validation_file"),
    # recorded as typed by a run saved before it was recorded absolute: the message says relative to what
    ({"validation_file": "dev.jsonl"}, r"the run's validation file dev.jsonl \(relative to the directory the run "
                                       r"was started in, not to .*\) does not exist; pass --validation_file FILE"),
])
def test_a_directory_evaluate_generation_cannot_re_evaluate_is_named_before_any_loading(tmp_path, record, message):
    # The module docstring: the validation file comes from the run's eval_results.json unless given; what is
    # missing is said as a ValueError (main prints it as one "error:" line), not a traceback.
    import json

    from minibert.finetune.evaluate_generation import evaluate_saved

    if record is not None:
        (tmp_path / "eval_results.json").write_text(json.dumps({"task": {"problem_type": "seq2seq"},
                                                                "generation": record}))
    with pytest.raises(ValueError, match=message):
        evaluate_saved(tmp_path)


# -- nn/attention -------------------------------------------------------------------------------------------
def test_packed_inputs_are_refused_for_cross_attention_and_a_cache():
    # MultiHeadAttention.forward's docstring: (N, E) packed inputs are for self-attention without a cache; the
    # packing describes the queries' batch, not an encoder memory's or a cache's.
    from minibert.nn.attention import MultiHeadAttention
    from minibert.nn.packing import Packing

    attention = MultiHeadAttention(8, 2)
    packing = Packing.from_mask(torch.tensor([[1, 1, 0]]))
    packed = torch.randn(2, 8)
    with pytest.raises(ValueError, match="packed .* inputs work for self-attention without a cache only"):
        attention(packed, key_value_states=torch.randn(1, 3, 8), packing=packing)
    with pytest.raises(ValueError, match="packed .* inputs work for self-attention without a cache only"):
        attention(packed, past_key_value=(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4)), packing=packing)
    assert attention(packed, packing=packing).output.shape == (2, 8)


# -- mutants left without a test ----------------------------------------------------------------------------
# Also mutated, with no test here: each change is caught by the suite already, or is of no effect, or has no
# reference to pin.
#   saved_heads: keep_checkpoint_label_rows without its `names == task.label_names` early return (the identity
#     reorder changes nothing); without its `mismatched` check (a mismatched head has another number of labels,
#     so the sorted-names check returns first); `[-1]` -> `[0]` over the classifier's Linears (differs only for
#     a RoBERTa head whose hidden_size equals num_labels, where dense would be taken for out_proj).
#   generative: chrf without its length check (zip(strict=True) refuses unequal lists as a ValueError too);
#     build_generative_model without .train() (the Trainer puts the model in training mode itself); the decoded
#     row not cut at <eos> (generate pads a finished row with pad or <eos>, special tokens decode drops).
#   engine/distributed: mean_across_ranks over `list(values)` for `sorted(values)` (every process builds its dict
#     in the same code order, so the all-reduced lists line up either way).
#   neighbour_heads: a bool `frequencies` let through the isinstance check (True and False are < 2 and refused
#     by the range check anyway).
#   nn/attention: StaticCache.reorder_ moving every tensor of a layer (BART's cross-attention keys are equal
#     across a source's beams, and beam_idx picks within them); attend ignoring `upcast` on the sdpa path (gpt.py
#     passes upcast on the eager path only, as Hugging Face).

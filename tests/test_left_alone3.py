"""Behaviours earlier sessions noticed and left alone (third set): Lookahead's runs ended on its fast weights; a file
with lone \\r line ends was one document; load_finetuned called a pooler its model never reads "newly initialised".
Tiny models, seconds each."""

import gzip
import io
import json
import logging
import random
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_checkpointing import Crash
from test_train import WORDS, checkpoint, rows, write_jsonl  # noqa: F401 (checkpoint is a fixture)

import minibert.data.corpus as corpus_module
import train
from minibert.checkpoint import load_torch_file
from minibert.data.corpus import SHIPPED, iter_records, load_works
from minibert.data.prepared import prepare_corpus
from minibert.finetune.beside_base import TRAINED_FILE, save_beside_base
from minibert.finetune.optimizers import Lookahead, radam_lookahead
from minibert.finetune.prior_wd import PriorWD
from minibert.finetune.task_data import Task
from minibert.finetuning import BESIDE_BASE_FIELDS, FinetuneArguments, build_model, finetuning_optimizer, load_finetuned
from minibert.models.bert import BertConfig, BertForMaskedLM, BertModel
from minibert.tokenizer import train_tokenizer


# -- 1. Lookahead: evaluated and saved on its slow weights ----------------------------------------------------------
def lookahead_after(steps: int, k: int = 5) -> tuple[torch.nn.Parameter, Lookahead]:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = Lookahead(torch.optim.SGD([w], lr=0.1), k=k, alpha=0.5)
    for _ in range(steps):
        w.grad = torch.randn(4, 3)
        opt.step()
    return w, opt


def test_lookahead_slow_weights_are_the_pull_that_ends_the_cycle_and_the_fast_weights_come_back():
    """7 steps of k = 5: 2 steps past a pull. Evaluated: slow + alpha (fast - slow), the pull the 10th step would make
    with these fast weights (the model returned if the run ended here); after the block the fast weights, bit for
    bit; close_cycle leaves exactly the weights the block lent."""
    w, opt = lookahead_after(7)
    fast, slow = w.detach().clone(), opt.wrapper_state[w]["slow"].clone()
    assert not torch.equal(fast, slow)
    closed = slow + 0.5 * (fast - slow)
    with opt.slow_weights():
        lent = w.detach().clone()
    torch.testing.assert_close(lent, closed, rtol=0, atol=1e-7)
    assert torch.equal(w.detach(), fast)  # training goes on from the fast weights
    opt.close_cycle()
    assert torch.equal(w.detach(), lent) and torch.equal(opt.wrapper_state[w]["slow"], lent)


def test_lookahead_ends_a_run_of_a_multiple_of_k_steps_where_it_is():
    """Right after a pull fast == slow: nothing to lend or close (and a run of 3 steps, under k, is not left
    untrained: its weights move by alpha of the way)."""
    w, opt = lookahead_after(10)
    fast = w.detach().clone()
    assert torch.equal(fast, opt.wrapper_state[w]["slow"])
    with opt.slow_weights():
        assert torch.equal(w.detach(), fast)
    opt.close_cycle()
    assert torch.equal(w.detach(), fast)
    w, opt = lookahead_after(3)
    start = lookahead_after(0)[0].detach()
    fast = w.detach().clone()
    opt.close_cycle()
    torch.testing.assert_close(w.detach(), start + 0.5 * (fast - start), rtol=0, atol=1e-7)


def finetune_lookahead(checkpoint, tmp_path, name, steps, *extra, callbacks=()):  # noqa: F811
    data = write_jsonl(tmp_path / "train.jsonl", rows(24, "single"))
    dev = write_jsonl(tmp_path / "dev.jsonl", rows(16, "single", seed=1))
    argv = ["--model_name_or_path", str(checkpoint), "--train_file", data, "--validation_file", dev,
            "--text_column", "sentence", "--output_dir", str(tmp_path / name), "--max_steps", str(steps),
            "--per_device_train_batch_size", "8", "--max_seq_length", "16", "--disable_tqdm", "--device", "cpu",
            "--learning_rate", "1e-2", "--optim", "radam_lookahead", "--plot_loss", "false", *extra]
    finetune_args, training = train.parse(argv)
    return train.finetune(finetune_args, training, callbacks), finetune_args, training


def closed_weights(directory, finetune_args, training) -> dict:
    """A checkpoint's slow weights after the pull that ends its cycle, by name: from its fast weights
    (model_state.pt) and the slow ones in its optimizer state, in the optimizer's parameter order."""
    model = load_finetuned(directory.parent)
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in finetuning_optimizer(model, finetune_args, training).param_groups
             for p in g["params"]]
    fast, state = load_torch_file(directory / "model_state.pt"), load_torch_file(directory / "optimizer.pt")
    assert state["inner_steps"] % 5 != 0  # between two pulls: fast != slow
    slow = {order[int(i)]: tensors["slow"] for i, tensors in state["wrapper"].items()}
    return {n: slow[n] + 0.5 * (fast[n] - slow[n]) for n in slow}


@pytest.mark.parametrize("best", ["true", "false"])
def test_a_radam_lookahead_run_saves_and_evaluates_its_slow_weights(checkpoint, tmp_path, best):  # noqa: F811
    """7 steps of k = 5, evaluated at the end: the model saved was the fast weights, 2 steps past the last pull (the
    paper returns the slow ones); it is the slow weights, and the final metrics are the last evaluation's."""
    result, finetune_args, training = finetune_lookahead(checkpoint, tmp_path, "out", 7, "--eval_steps", "7",
                                                         "--load_best_model_at_end", best)
    expected = closed_weights(tmp_path / "out" / "checkpoint-7", finetune_args, training)
    saved = dict(load_finetuned(tmp_path / "out").named_parameters())
    fast = load_torch_file(tmp_path / "out" / "checkpoint-7" / "model_state.pt")
    assert max(float((saved[n].detach() - fast[n]).abs().max()) for n in expected) > 1e-5  # the fast weights are not it
    for name, value in expected.items():
        torch.testing.assert_close(saved[name].detach(), value, rtol=0, atol=1e-7, msg=name)
    last = {k.removeprefix("eval_"): v for k, v in result.history[-1].items() if k.startswith("eval_")}
    assert result.metrics == pytest.approx(last, rel=0, abs=1e-6)


def test_the_best_checkpoint_of_a_radam_lookahead_run_is_saved_with_its_own_slow_weights(checkpoint,  # noqa: F811
                                                                                          tmp_path):
    """Evaluations every 2 steps: each reads the slow weights of its step; the best (step 2: the accuracy never
    rises, and only a better one replaces it) is saved as the slow weights of that step, taken from its
    checkpoint's optimizer state (the final step's were those of step 7), and scores what it scored then."""
    result, finetune_args, training = finetune_lookahead(checkpoint, tmp_path, "out", 7, "--eval_steps", "2",
                                                         "--save_steps", "2")
    assert result.best_step == 2
    expected = closed_weights(tmp_path / "out" / "checkpoint-2", finetune_args, training)
    saved = dict(load_finetuned(tmp_path / "out").named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(saved[name].detach(), value, rtol=0, atol=1e-7, msg=name)
    best = {k.removeprefix("eval_"): v for k, v in result.history[0].items() if k.startswith("eval_")}
    assert result.history[0]["step"] == 2 and result.metrics == pytest.approx(best, rel=0, abs=1e-6)


def test_a_radam_lookahead_run_with_evaluations_inside_its_cycles_resumes_exactly(checkpoint, tmp_path):  # noqa: F811
    """Evaluations lend the parameters the slow weights between pulls: a run stopped in step 6 (last checkpoint 4)
    and resumed saves, bit for bit, what the uninterrupted run saves: the best checkpoint's (step 2, saved before the
    stop) slow weights."""
    extra = ("--eval_steps", "2", "--save_steps", "2")
    finetune_lookahead(checkpoint, tmp_path, "whole", 7, *extra)
    with pytest.raises(KeyboardInterrupt):
        finetune_lookahead(checkpoint, tmp_path, "stopped", 7, *extra, callbacks=[Crash(5)])
    finetune_lookahead(checkpoint, tmp_path, "stopped", 7, *extra, "--resume_from_checkpoint", "last")
    whole, resumed = load_finetuned(tmp_path / "whole"), load_finetuned(tmp_path / "stopped")
    for (name, a), (_, b) in zip(whole.named_parameters(), resumed.named_parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)


def test_slow_weights_are_found_under_prior_wd():
    """PriorWD(Lookahead(RAdam)): the wrapper chain is walked to the Lookahead."""
    from minibert.finetuning import on_slow_weights

    model = torch.nn.Linear(3, 2)
    callbacks = []
    on_slow_weights(PriorWD(radam_lookahead(model.parameters(), weight_decay=0.1)), lambda m: {}, callbacks)
    assert len(callbacks) == 1 and isinstance(callbacks[0].lookahead, Lookahead)
    callbacks = []
    assert on_slow_weights(torch.optim.AdamW(model.parameters()), None, callbacks) is None and not callbacks


# -- 3. lone \r line ends ----------------------------------------------------------------------------------------------
TEXT = "The first play. It has two sentences.\n\nThe second play. Also two.\n\nThird one here. Done now.\n"


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_a_text_file_reads_the_same_documents_whatever_its_line_ends(tmp_path, ending):
    """Old Mac OS line ends (lone \\r) made the whole file one line, so one document."""
    file = tmp_path / "plays.txt"
    file.write_bytes(TEXT.replace("\n", ending).encode())
    assert [r["text"] for r, _ in iter_records(file)] == ["The first play. It has two sentences.",
                                                          "The second play. Also two.", "Third one here. Done now."]
    assert [sentences for _, sentences in load_works(file)][1] == ["The second play.", "Also two."]
    assert sum(size for _, size in iter_records(file)) == file.stat().st_size
    tokenizer = train_tokenizer([TEXT], "wordpiece", vocab_size=60, min_frequency=1)  # pretrain.py's reading
    prepared = prepare_corpus([file], tokenizer, cache_dir=tmp_path / "cache", workers=1)
    assert len(prepared) == 3 and prepared.num_tokens() == 42


def test_a_stray_cr_in_a_file_of_newlines_ends_no_line(tmp_path):
    """\r\r\n (CRLF converted twice) was one line end before lone \r was read; reading every lone \r made each
    line a document of its own (a \r, then an empty \r\n line). Only a file whose line ends are lone \r reads them."""
    file = tmp_path / "twice.txt"
    file.write_bytes(b"First play, line one.\r\r\nLine two.\r\r\n\r\r\nSecond play.\r\r\n")
    assert len(list(iter_records(file))) == 2


def test_a_lone_cr_file_prepared_before_lone_cr_was_read_is_prepared_again(tmp_path, monkeypatch):
    """Its cache (one document) was found again by the unchanged fingerprint: a fresh cache read three."""
    import minibert.data.prepared as prepared_module

    file = tmp_path / "mac.txt"
    file.write_bytes(TEXT.replace("\n", "\r").encode())
    tokenizer = train_tokenizer([TEXT], "wordpiece", vocab_size=60, min_frequency=1)
    with monkeypatch.context() as before:  # as the code before: no lone \r line ends, no mark in the fingerprint
        before.setattr(corpus_module, "ends_lines_with_lone_cr", lambda file: False)
        before.setattr(prepared_module, "ends_lines_with_lone_cr", lambda file: False, raising=False)
        assert len(prepare_corpus([file], tokenizer, cache_dir=tmp_path / "cache", workers=1)) == 1
    assert len(prepare_corpus([file], tokenizer, cache_dir=tmp_path / "cache", workers=1)) == 3


def test_json_lines_and_tables_keep_their_line_ends(tmp_path):
    """Only a text file ends lines at a lone \\r: JSON lines are separated by \\n (a \\r between tokens is
    whitespace), and in a CSV a lone \\r inside a row is refused (test_corpus_errors.py) or, in a quoted cell, kept."""
    (tmp_path / "a.jsonl").write_bytes(b'{"title": "A",\r"text": "One. Two."}\n{"text": "Three."}\r\n')
    assert [r["text"] for r, _ in iter_records(tmp_path / "a.jsonl")] == ["One. Two.", "Three."]
    (tmp_path / "b.csv").write_bytes(b'text,label\n"one\rtwo. Three.",a\n"x",b\n')
    assert [r["text"] for r, _ in iter_records(tmp_path / "b.csv")] == ["one\rtwo. Three.", "x"]


def test_byte_lines_end_lines_as_python_text_mode_does_across_block_boundaries(monkeypatch):
    """\\n, \\r\\n and lone \\r, with a \\r\\n, or a line, cut between two blocks (blocks of 1 to 5 bytes here)."""
    from minibert.data.corpus import byte_lines

    rng = random.Random(0)
    for _ in range(1500):
        data = bytes(rng.choice(b"ab\r\n") for _ in range(rng.randint(0, 30)))
        expected = io.TextIOWrapper(io.BytesIO(data), encoding="latin-1", newline="").readlines()
        for block in (1, 2, 3, 5, 1 << 20):
            monkeypatch.setattr(corpus_module, "LINE_BLOCK", block)
            assert [line.decode("latin-1") for line in byte_lines(io.BytesIO(data))] == expected, (data, block)


def test_the_shipped_corpora_read_as_json_lines_split_at_newlines():
    """They hold no \\r: every record and its size as a plain reading of the gzip at \\n gives them."""
    for path in SHIPPED.values():
        with gzip.open(path, "rb") as f:
            expected = [(json.loads(line), len(line)) for line in f.read().split(b"\n") if line.strip()]
        got = list(iter_records(path))
        assert len(got) == len(expected) and len(got) > 700
        assert all(row == record and size in (n, n + 1) for (row, size), (record, n) in zip(got, expected, strict=True))


# -- 4. load_finetuned's report of weights left random -----------------------------------------------------------------
@pytest.fixture(scope="module")
def base_without_pooler(tmp_path_factory):
    """A masked-LM checkpoint, which holds no pooler (as Hugging Face's BertForMaskedLM saves none)."""
    path = tmp_path_factory.mktemp("mlm_base")
    tokenizer = train_tokenizer([" ".join(WORDS)] * 5, "wordpiece", vocab_size=80, min_frequency=1)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
                    ).save_pretrained(path)
    return path


def saved_beside(base, path, **flags):
    task = Task("single_label_classification", ["comedy", "tragedy"])
    args = FinetuneArguments(model_name_or_path=str(base), **flags)
    model, _ = build_model(args, task)
    save_beside_base(model, path, base, {"args": {k: getattr(args, k) for k in BESIDE_BASE_FIELDS},
                                         "task": asdict(task)})
    return path


def reported_new(caplog, path) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_finetuned(path)
    return [r.getMessage() for r in caplog.records if "newly initialised" in r.getMessage()]


@pytest.mark.parametrize("flags", [{"adapter_size": 4, "pooling": "mean"}, {"ladder_side_tuning": 2}],
                         ids=["adapters_mean_pooling", "ladder"])
def test_a_pooler_the_model_never_reads_is_not_called_newly_initialised(base_without_pooler, tmp_path, caplog, flags):
    """The base has no pooler, and neither --pooling mean nor the side network reads one: random at every load, it
    changes no output, yet load_finetuned said "newly initialised ... train before use: ['pooler.dense.weight',
    'pooler.dense.bias']"."""
    path = saved_beside(base_without_pooler, tmp_path / "run", **flags)
    assert reported_new(caplog, path) == []


def test_a_pooler_the_head_reads_is_named_when_the_saved_file_lacks_it(base_without_pooler, tmp_path, caplog):
    """BERT's own head reads the pooler: under adapters it trains and is saved, so loading says nothing; a saved
    file without it (or without the classifier) leaves it random where the head reads it, which is said."""
    path = saved_beside(base_without_pooler, tmp_path / "run", adapter_size=4)
    assert reported_new(caplog, path) == []
    saved = load_file(str(path / TRAINED_FILE))
    save_file({k: v for k, v in saved.items() if ".pooler." not in k and not k.startswith("classifier.")},
              str(path / TRAINED_FILE))
    said = reported_new(caplog, path)
    assert len(said) == 1, said
    assert "['bert.pooler.dense.weight', 'bert.pooler.dense.bias', 'classifier.weight', 'classifier.bias']" in said[0]


def test_new_weights_unreported_holds_back_the_warning_only_and_only_in_its_block(base_without_pooler, caplog):
    """load_beside_base's way to hold back from_pretrained's report (a logging filter matching the message text
    did): the weights are still listed in loading_info, and the warning comes back after the block."""
    from minibert.modeling import new_weights_unreported

    with caplog.at_level(logging.WARNING):
        with new_weights_unreported():
            model = BertModel.from_pretrained(base_without_pooler)
        assert model.loading_info["newly_initialized"] == ["pooler.dense.weight", "pooler.dense.bias"]
        assert not [r for r in caplog.records if "newly initialised" in r.getMessage()]
        assert [r for r in caplog.records if "ignored checkpoint weights" in r.getMessage()]  # other warnings stay
        BertModel.from_pretrained(base_without_pooler)
    assert len([r for r in caplog.records if "newly initialised" in r.getMessage()]) == 1


@pytest.mark.parametrize("flags, named", [({"pooling": "mean"}, False), ({"ladder_side_tuning": 2}, False),
                                          ({"pooling": "cls_layer"}, False), ({"pooling": "pooler"}, True)],
                         ids=["mean", "ladder", "cls_layer", "pooler"])
def test_training_from_a_base_without_a_pooler_names_the_pooler_only_when_the_head_reads_it(
        base_without_pooler, caplog, flags, named):
    """train.py --pooling mean on an MLM checkpoint warned "BertModel: newly initialised (not in the checkpoint;
    train before use): ['pooler.dense.weight', 'pooler.dense.bias']", a pooler nothing reads; --pooling pooler
    reads it, so it is still named."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_model(FinetuneArguments(model_name_or_path=str(base_without_pooler), **flags),
                    Task("single_label_classification", ["comedy", "tragedy"]))
    said = [r.getMessage() for r in caplog.records if "newly initialised" in r.getMessage()]
    assert said == (["BertModel: newly initialised (not in the checkpoint; train before use): "
                     "['pooler.dense.weight', 'pooler.dense.bias']"] if named else []), said


@pytest.mark.parametrize("pooling, named", [("mean", False), ("default", True)])
def test_multitask_from_a_base_without_a_pooler_names_the_pooler_only_when_its_heads_read_it(
        base_without_pooler, caplog, pooling, named):
    """--multitask pools with the pooler by default (it is read, and starts random: said); --pooling mean does not."""
    from minibert.finetuning import build_multitask_model

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_multitask_model(FinetuneArguments(model_name_or_path=str(base_without_pooler), pooling=pooling),
                              str(base_without_pooler), {"genre": Task("single_label_classification", ["a", "b"])})
    said = [r.getMessage() for r in caplog.records if "newly initialised" in r.getMessage()]
    assert len(said) == named and all("pooler.dense.weight" in m for m in said), said

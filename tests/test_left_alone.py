"""Four defects an earlier audit left, each with the test written against it: evaluate_generation read the
run's validation file relative to the current directory; fine-tuning on from a --pooling run's checkpoint
dropped its trained head without a word (and a family head trained on it saved a model that would not
load); a CSV cell opening a quote that never closes swallowed the rows after it; BART's decoder with a
StaticCache took a decoder attention_mask of any shape that broadcasts."""

import gzip
import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_train import WORDS, tiny_checkpoint
from test_train_seq2seq import pairs, sentences

import train
from minibert.data.corpus import read_records
from minibert.finetune.classifier import PooledClassifier
from minibert.finetune.evaluate_generation import evaluate_saved
from minibert.finetune.multitask import MultiTaskClassifier
from minibert.finetune.task_data import read_rows
from minibert.finetuning import load_finetuned
from minibert.models.bart import BartConfig, BartForConditionalGeneration
from minibert.models.bert import BertForSequenceClassification
from minibert.tokenizer import train_tokenizer


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# -- 1. evaluate_generation finds the run's own validation file ------------------------------------
@pytest.fixture(scope="module")
def bart(tmp_path_factory):
    """A tiny BART and its byte-level tokenizer."""
    path = tmp_path_factory.mktemp("bart")
    tokenizer = train_tokenizer(sentences(60, seed=9), "bytelevel_bpe", vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    config = BartConfig(vocab_size=tokenizer.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        max_position_embeddings=64, decoder_start_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    BartForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_evaluate_generation_reads_the_runs_validation_file_from_any_directory(bart, tmp_path, monkeypatch):
    """The run recorded --validation_file as typed (dev.jsonl), which evaluate_generation read from the current
    directory: from another one it failed, or read another file of that name (3 examples, not the run's 6)."""
    started, elsewhere = tmp_path / "started", tmp_path / "elsewhere"
    started.mkdir()
    elsewhere.mkdir()
    write_jsonl(started / "train.jsonl", pairs(16))
    write_jsonl(started / "dev.jsonl", pairs(6, seed=1))
    monkeypatch.chdir(started)
    args, training = train.parse(["--model_name_or_path", str(bart), "--train_file", "train.jsonl",
                                  "--validation_file", "dev.jsonl", "--task_type", "seq2seq", "--text_column", "source",
                                  "--target_column", "target", "--output_dir", str(tmp_path / "out"),
                                  "--max_steps", "2", "--eval_steps", "2", "--per_device_train_batch_size", "8",
                                  "--max_seq_length", "24", "--generation_max_length", "4", "--disable_tqdm",
                                  "--device", "cpu"])
    training.plot_loss = False
    result = train.finetune(args, training)
    record_file = tmp_path / "out" / "eval_results.json"
    record = json.loads(record_file.read_text())
    assert record["generation"]["validation_file"] == str(started / "dev.jsonl")
    monkeypatch.chdir(elsewhere)
    write_jsonl(elsewhere / "dev.jsonl", pairs(3, seed=5))  # another file of the same relative name
    again = evaluate_saved(tmp_path / "out")
    assert again["examples"] == 6
    assert {k: again[k] for k in result.metrics} == result.metrics
    # a run saved before the path was recorded absolute: its relative path, missing here, is named with the flag
    record["generation"]["validation_file"] = "data/dev.jsonl"
    record_file.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"the run's validation file data/dev.jsonl \(relative to the directory the "
                                         r"run was started in, not to .*elsewhere\) does not exist; pass "
                                         r"--validation_file FILE"):
        evaluate_saved(tmp_path / "out")


# -- 2. fine-tuning on from a --pooling run's checkpoint -------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def genre_rows(n, names=("comedy", "tragedy"), seed=0):
    """Texts of WORDS, labelled names[1] when they speak of war or death."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        words = [WORDS[j] for j in torch.randint(0, len(WORDS), (int(torch.randint(2, 8, (1,), generator=g)),),
                                                 generator=g).tolist()]
        rows.append({"text": " ".join(words), "label": names["death" in words or "war" in words]})
    return rows


class StartingHead:
    """The classifier's weights when training begins."""

    def on_train_begin(self, trainer):
        self.weight = trainer.model.classifier.weight.detach().clone()


def run(model, out, *extra, names=("comedy", "tragedy")):
    data = write_jsonl(out.parent / f"{out.name}-train.jsonl", genre_rows(24, names=names))
    flags = [] if "--multitask" in extra else ["--train_file", data, "--validation_file", data]
    args, training = train.parse(["--model_name_or_path", str(model), *flags, "--output_dir", str(out),
                                  "--max_steps", "2", "--eval_steps", "2", "--per_device_train_batch_size", "8",
                                  "--max_seq_length", "16", "--disable_tqdm", "--device", "cpu", *extra])
    training.plot_loss = False
    start = StartingHead()
    train.finetune(args, training, [start] if "--multitask" not in extra else [])
    return start


@pytest.fixture(scope="module")
def pooled(checkpoint, tmp_path_factory):
    """A --pooling attention run (a pooling with weights of its own)."""
    out = tmp_path_factory.mktemp("pooled") / "run"
    run(checkpoint, out, "--pooling", "attention")
    return out


def test_the_same_pooling_fine_tunes_on_from_the_trained_head(pooled, tmp_path, caplog):
    """build_model read the encoder only: a second --pooling attention run started a new, random head."""
    trained = load_file(str(pooled / "head.safetensors"))
    with caplog.at_level(logging.INFO, logger="minibert"):
        start = run(pooled, tmp_path / "again", "--pooling", "attention")
    torch.testing.assert_close(start.weight, trained["classifier.weight"], rtol=0, atol=0)
    assert "fine-tuning on from the trained --pooling attention head" in caplog.text
    # another task on the same pooling: the trained pooling is kept, the classifier of other labels starts afresh
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="minibert"):
        start = run(pooled, tmp_path / "other", "--pooling", "attention", names=("no", "yes"))
    assert not torch.equal(start.weight, trained["classifier.weight"])
    assert "trained for the single_label_classification labels ['comedy', 'tragedy'] and this task's are " \
           "['no', 'yes']: that classifier starts afresh (the trained pooling is kept)" in caplog.text


def test_the_pooling_weights_are_reloaded_with_the_head(pooled, tmp_path):
    trained = load_file(str(pooled / "head.safetensors"))
    seen = {}

    class StartingPooling:
        def on_train_begin(self, trainer):
            seen.update({k: v.detach().clone() for k, v in trainer.model.pooling.state_dict().items()})

    data = write_jsonl(tmp_path / "train.jsonl", genre_rows(24))
    args, training = train.parse(["--model_name_or_path", str(pooled), "--train_file", data, "--output_dir",
                                  str(tmp_path / "out"), "--max_steps", "1", "--per_device_train_batch_size", "8",
                                  "--max_seq_length", "16", "--disable_tqdm", "--device", "cpu", "--pooling",
                                  "attention"])
    training.plot_loss = False
    train.finetune(args, training, [StartingPooling()])
    assert seen and set(seen) == {k[len("pooling."):] for k in trained if k.startswith("pooling.")}
    for name, value in seen.items():
        torch.testing.assert_close(value, trained[f"pooling.{name}"], rtol=0, atol=0)


@pytest.mark.parametrize("extra, head", [((), "BertForSequenceClassification's own classifier"),
                                         (("--pooling", "mean"), "--pooling mean")])
def test_another_head_on_a_pooling_checkpoint_says_what_is_dropped(pooled, tmp_path, caplog, extra, head):
    with caplog.at_level(logging.WARNING, logger="minibert"):
        run(pooled, tmp_path / "out", *extra)
    assert (f"was saved by a --pooling attention run: its trained pooling head (head.safetensors) is dropped, and "
            f"this run's head ({head}) starts afresh; pass --pooling attention to fine-tune on from it") in caplog.text


def test_a_model_trained_on_from_another_head_is_saved_as_itself(pooled, checkpoint, tmp_path):
    """Its config.json kept the checkpoint's head marker: load_finetuned rebuilt a family head trained on a
    --pooling run (or a multi-task model on one, a family head on a multi-task run) as the old head, and failed
    on its missing head file."""
    run(pooled, tmp_path / "family")
    assert isinstance(load_finetuned(tmp_path / "family"), BertForSequenceClassification)
    spec = f"genre={write_jsonl(tmp_path / 'genre.jsonl', genre_rows(24))}"
    run(pooled, tmp_path / "multitask", "--multitask", spec)
    assert isinstance(load_finetuned(tmp_path / "multitask"), MultiTaskClassifier)
    run(tmp_path / "multitask", tmp_path / "family_from_multitask")
    assert isinstance(load_finetuned(tmp_path / "family_from_multitask"), BertForSequenceClassification)
    run(tmp_path / "multitask", tmp_path / "pooled_from_multitask", "--pooling", "mean")
    assert isinstance(load_finetuned(tmp_path / "pooled_from_multitask"), PooledClassifier)
    assert "minibert_multitask" not in json.loads((tmp_path / "pooled_from_multitask" / "config.json").read_text())


def test_a_directory_with_the_old_stale_head_marker_trains_on_with_a_warning(pooled, tmp_path, caplog):
    """A family head trained on from a --pooling run by an older minibert saved config.json with the pooled marker
    and no head.safetensors (the stale marker forget_saved_heads now drops): trained on with that --pooling, the
    reload looked for the missing file and crashed (FileNotFoundError)."""
    stale = tmp_path / "stale"
    shutil.copytree(pooled, stale)
    (stale / "head.safetensors").unlink()
    with caplog.at_level(logging.WARNING, logger="minibert"):
        run(stale, tmp_path / "out", "--pooling", "attention")
    assert "config.json names a --pooling attention head but the directory holds no head.safetensors" in caplog.text


# -- 3. a CSV cell whose quote never closes ---------------------------------------------------------
@pytest.mark.parametrize("text", [
    # the last column's quote reads on to the end of the file: 2 rows of 4, with no error at all
    'label,text\ncomedy,fine day\ntragedy,"a storm\ncomedy,sweet love\ntragedy,war again\n',
    # a later quoted cell closes it (the error was a row of 3 cells, a misplaced comma, on the wrong line)
    'text,label\nfine day,comedy\n"a storm,tragedy\nsweet love,comedy\n"war, again",tragedy\nend,comedy\n',
    # the same in a TSV of one column (no tab for its own check to find)
    'text\nfine day\n"a storm\nsweet love\nwar again\n',
])
def test_a_cell_whose_quote_never_closes_is_refused_naming_the_line(tmp_path, text):
    path = tmp_path / ("data.tsv" if "label" not in text else "data.csv")
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{path.name}:3: a cell there starts with a quote \(\"\) that does not close "
                                         r"where the cell ends, so it read on over lines 4-5, rows included; "
                                         r"remove that quote or double it"):
        read_rows(path)


def test_quoted_cells_over_several_lines_still_read(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b'text,label\r\n"line one\r\nline ""two"", yes",comedy\r\n\r\n"Hi" she said,tragedy\r\n'
                     b'"last\nrow",comedy')
    assert read_rows(path) == [{"text": 'line one\r\nline "two", yes', "label": "comedy"},
                               {"text": "Hi she said", "label": "tragedy"},  # one line: read as it always was
                               {"text": "last\nrow", "label": "comedy"}]


@pytest.mark.parametrize("gz", [False, True])
def test_a_pretraining_corpus_cell_whose_quote_never_closes_is_refused(tmp_path, gz):
    """The same check on the streamed corpus reader (pretrain.py --corpus data.csv[.gz] --text_column text):
    4 documents were read as 2, the last holding three rows."""
    text = 'label,text\ncomedy,fine day\ntragedy,"a storm\ncomedy,sweet love\ntragedy,war again\n'
    path = tmp_path / ("corpus.csv.gz" if gz else "corpus.csv")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    with pytest.raises(ValueError, match=rf"{path.name}:3: a cell there starts with a quote .* read on over lines 4-5"):
        read_records(path)
    good = tmp_path / "good.csv"
    good.write_text('label,text\ncomedy,"line one\nline ""two"", yes"\n\ntragedy,"Hi" she said\n')
    assert [r["text"] for r in read_records(good)] == ['line one\nline "two", yes', "Hi she said"]


@pytest.mark.parametrize("text", [
    'text,title,label\n"two\nlines","Hi" she said,1\nplain,t,0\n',  # a later cell opening with a quoted word
    'text,title,label\n"two\nlines",he said "hi",1\nplain,t,0\n',
    'text,label\n"He said ""hi""\nand left",1\nplain,0\n',
    'text,label\nplain,0\n"two\nlines",1',  # ends at the end of the file
])
def test_a_row_over_several_lines_with_quoted_words_is_still_read(tmp_path, text):
    """A strict re-read of the whole row refused a row that spans lines when another of its cells opened with a
    quoted word ("Hi" she said), which the reader takes as it takes it on a one-line row."""
    path = tmp_path / "data.csv"
    path.write_text(text)
    rows = read_rows(path)
    assert len(rows) == 2 and {"two\nlines", 'He said "hi"\nand left'} & {r["text"] for r in rows}
    assert [r["text"] for r in read_records(path)] == [r["text"] for r in rows]


# -- 4. BART's decoder mask with a StaticCache --------------------------------------------------------
def tiny_bart():
    torch.manual_seed(0)
    config = BartConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    return BartForConditionalGeneration(config).eval()


@pytest.mark.parametrize("shape", [(2, 1), (1, 8), (2, 3)])
def test_a_static_cache_refuses_a_decoder_mask_of_another_shape(shape):
    """(2, 1) over the new token only was broadcast over all 8 slots (a 0 hid the whole row), (1, 8) gave row 0's
    padding to row 1, (2, 3) failed in a broadcast with no word of the fix."""
    model = tiny_bart()
    source = torch.randint(3, 50, (2, 5))
    state = {"memory": model.model.encoder(source).last_hidden_state, "memory_attention_mask": None}
    tokens = torch.tensor([[2, 7, 9], [2, 8, 4]])
    mask = torch.ones(shape, dtype=torch.long)
    with pytest.raises(ValueError, match=rf"attention_mask has shape \({shape[0]}, {shape[1]}\) but should be "
                                         r"\(2, 8\): with a StaticCache it covers every slot of the cache"):
        model.model.decoder(tokens, state["memory"], mask, None, model._static_cache(2, 8, state), use_cache=True,
                            cache_position=torch.arange(3))
    # the mask over every slot is taken: row 0's first slot hidden changes row 0 only
    with torch.no_grad():
        full = torch.ones(2, 8, dtype=torch.long)
        plain = model.model.decoder(tokens, state["memory"], None, None, model._static_cache(2, 8, state),
                                    use_cache=True, cache_position=torch.arange(3)).last_hidden_state
        full[0, 0] = 0
        masked = model.model.decoder(tokens, state["memory"], full, None, model._static_cache(2, 8, state),
                                     use_cache=True, cache_position=torch.arange(3)).last_hidden_state
    torch.testing.assert_close(masked[1], plain[1], rtol=0, atol=0)
    assert not torch.allclose(masked[0], plain[0])


def test_static_generation_is_unchanged():
    model = tiny_bart()
    ids = torch.randint(3, 50, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    static = model.generate(ids, attention_mask=mask, max_new_tokens=6, cache_implementation="static")
    dynamic = model.generate(ids, attention_mask=mask, max_new_tokens=6)
    assert torch.equal(static, dynamic)

"""train.py classifies with GPT-2 and BART (their own heads: GPT-2's last token, BART's decoder state at the last
</s>), with the tricks that fit them; the saved model is Hugging Face's; what does not fit them is refused first."""

import json

import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import train
from minibert.finetune.extractive_qa import QACollator, QAEvaluator, Question, predict_answers, qa_features
from minibert.finetune.param_groups import embeddings_and_blocks, layer_wise_lr_decay_groups
from minibert.finetune.saved_heads import keep_checkpoint_label_rows
from minibert.finetune.tagging import predict_tags
from minibert.finetune.task_data import Task
from minibert.finetuning import FinetuneArguments, load_finetuned, sequence_splits, task_splits
from minibert.models.bart import BartConfig, BartForConditionalGeneration, BartForSequenceClassification
from minibert.models.gpt import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
)
from minibert.nn.losses import span_extraction_loss
from minibert.tokenizer import load_tokenizer, train_tokenizer

WORDS = "king queen fool love war crown sword jest night song".split()


def texts(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[j] for j in torch.randint(0, len(WORDS), (int(torch.randint(2, 7, (1,), generator=g)),),
                                                     generator=g).tolist()) for _ in range(n)]


def rows(n, seed):
    """The task: does the text name the king? (about half do)"""
    return [{"text": t, "label": "royal" if "king" in t.split() else "common"} for t in texts(n, seed)]


def write_jsonl(path, items):
    path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return str(path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny GPT-2 language model (its tokenizer adds nothing to a text, as pretrain.py --objective clm's) and a
    tiny BART (<s> ... </s>), as pretraining leaves them: no classification head."""
    root = tmp_path_factory.mktemp("decoders")
    paths = {"gpt2": root / "gpt2", "bart": root / "bart"}
    for family, path in paths.items():
        tok = train_tokenizer(texts(80, seed=9), "bytelevel_bpe", vocab_size=300, min_frequency=1,
                              frame=family == "bart")
        ids = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
        torch.manual_seed(0)
        if family == "gpt2":
            model = GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size, n_positions=32, n_embd=16, n_layer=2,
                                               n_head=2, **ids))
        else:
            model = BartForConditionalGeneration(BartConfig(
                vocab_size=tok.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32,
                decoder_start_token_id=tok.eos_token_id, **ids))
        model.save_pretrained(path)
        tok.save_pretrained(path)
    return paths


def run(checkpoint, tmp_path, *extra, train_rows=None, dev_rows=None, steps=4):
    data = write_jsonl(tmp_path / "train.jsonl", train_rows or rows(32, seed=1))
    dev = write_jsonl(tmp_path / "dev.jsonl", dev_rows or rows(16, seed=2))
    argv = ["--model_name_or_path", str(checkpoint), "--train_file", data, "--validation_file", dev,
            "--output_dir", str(tmp_path / "out"), "--max_steps", str(steps), "--eval_steps", "2",
            "--per_device_train_batch_size", "8", "--max_seq_length", "16", "--disable_tqdm", "--device", "cpu",
            "--learning_rate", "3e-3", "--seed", "0", *extra]
    return train.main(argv)


HF_CLASSES = {"gpt2": transformers.GPT2ForSequenceClassification, "bart": transformers.BartForSequenceClassification}


@pytest.mark.parametrize("family", ["gpt2", "bart"])
def test_a_gpt2_or_bart_classifier_trains_and_hugging_face_reads_what_it_saved(checkpoints, tmp_path, family):
    """They were refused for classification ("fine-tunes here on text generation"): each has a sequence head,
    parity-tested, that train.py could not train. The saved model is the family's Hugging Face class: on a padded
    batch of texts of different lengths (the padding read by neither head), its logits equal minibert's."""
    assert run(checkpoints[family], tmp_path) == 0
    out = tmp_path / "out"
    record = json.loads((out / "eval_results.json").read_text())
    assert set(record["metrics"]) == {"loss", "accuracy", "f1_macro"} and record["task"]["label_names"] == [
        "common", "royal"]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [HF_CLASSES[family].__name__] and config["id2label"] == {"0": "common",
                                                                                               "1": "royal"}
    ours = load_finetuned(out).eval()
    assert isinstance(ours, GPT2ForSequenceClassification if family == "gpt2" else BartForSequenceClassification)
    tok = load_tokenizer(out)
    batch = tok(["king", "war love song night crown sword"], padding=True)
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()  # row 0 is padded
    theirs = HF_CLASSES[family].from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=1e-5)
        # the padding changes nothing: each row alone gives the same scores
        for i, text in enumerate(["king", "war love song night crown sword"]):
            torch.testing.assert_close(ours(**tok([text])).logits[0], ours(**batch).logits[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("adapters", [False, True])
def test_a_gpt2_tokenizer_without_a_pad_token_pads_with_its_end_of_text_token(tmp_path, adapters):
    """Hugging Face's GPT-2 tokenizer has no pad token, and a classifier's batches are padded: it was refused
    ("set one (tok.pad_token = tok.eos_token)", which no flag does). The end-of-text token pads, as in Hugging
    Face's recipe; the saved tokenizer and config name it, so Hugging Face classifies a padded batch alike. With
    adapters the model is rebuilt beside its base, whose config names no pad: it pads with eos too."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(texts(80, seed=9), trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    eos = "<|endoftext|>"
    hf_tok = transformers.GPT2TokenizerFast(tokenizer_object=bpe, bos_token=eos, eos_token=eos, unk_token=eos)
    hf_tok.save_pretrained(tmp_path / "gpt2")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(hf_tok), n_embd=16, n_layer=1, n_head=2, n_positions=32,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(tmp_path / "gpt2")
    assert load_tokenizer(tmp_path / "gpt2").pad_token_id is None
    assert run(tmp_path / "gpt2", tmp_path, *(["--adapter_size", "4"] if adapters else [])) == 0
    out = tmp_path / "out"
    assert json.loads((out / "tokenizer_config.json").read_text())["pad_token"] == eos
    if adapters:
        model, tok = load_finetuned(out).eval(), load_tokenizer(out)
        assert model.config.pad_token_id == 0
        batch = tok(["king war", "love song night crown"], padding=True)
        with torch.no_grad():
            torch.testing.assert_close(model(**batch).logits[0], model(**tok(["king war"])).logits[0])
        return
    assert json.loads((out / "config.json").read_text())["pad_token_id"] == 0
    assert json.loads((out / "tokenizer_config.json").read_text())["pad_token"] == eos
    theirs_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert theirs_tok.pad_token == eos
    batch = theirs_tok(["king war", "love song night crown"], padding=True, return_tensors="pt")
    theirs = transformers.GPT2ForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(load_finetuned(out).eval()(batch["input_ids"], batch["attention_mask"]).logits,
                                   theirs(**batch).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family, task_type", [("gpt2", "auto"), ("bart", "auto"), ("gpt2", "token_classification"),
                                               ("bart", "question_answering")])
def test_gpt2_and_bart_batches_carry_no_segment_ids(checkpoints, tmp_path, family, task_type):
    """The tokenizer gives every text segment ids (zeros), as do the tagging and QA examples. GPT-2 looks
    token_type_ids up in its token table, so zeros would add token 0's vector to every position of every text;
    BART's forward takes none."""
    from test_extractive_qa import qa_rows
    from test_tagging import tagged_rows

    items, columns = {"auto": (rows(8, seed=1), {}),
                      "token_classification": (tagged_rows(8, 0), {"text_column": "words", "label_column": "labels"}),
                      "question_answering": (qa_rows(8, 0), {})}[task_type]
    data = write_jsonl(tmp_path / "train.jsonl", items)
    args = FinetuneArguments(model_name_or_path=str(checkpoints[family]), train_file=data, validation_file=data,
                             task_type=task_type, **columns)
    examples, _, dev, _ = task_splits(args, load_tokenizer(checkpoints[family]), str(checkpoints[family]))
    assert examples and dev and not any("token_type_ids" in e for e in examples + dev)


@pytest.mark.parametrize("family", ["gpt2", "bart"])
def test_gpt2_and_bart_learn_a_task_their_text_decides(checkpoints, tmp_path, family):
    """Whether a text names the king, learned from 96 examples by a model of two blocks, and scored on 64 texts it
    never saw: well above the majority class (a head that read no text, or the wrong token, stays near it)."""
    dev = rows(64, seed=2)
    assert run(checkpoints[family], tmp_path, "--eval_steps", "30", train_rows=rows(96, seed=1), dev_rows=dev,
               steps=60) == 0
    majority = max(sum(r["label"] == c for r in dev) for c in ("royal", "common")) / len(dev)
    accuracy = json.loads((tmp_path / "out" / "eval_results.json").read_text())["metrics"]["accuracy"]
    assert accuracy >= majority + 0.15, (accuracy, majority)  # (measured: GPT-2 0.89, BART 0.94; majority 0.70)


TRICKS = [["--llrd", "0.9"], ["--lr_groups", "2"], ["--head_lr", "1e-2"], ["--reinit_layers", "1"],
          ["--freeze_embeddings"], ["--gradual_unfreezing", "--unfreeze_stage_steps", "1"], ["--fgm"],
          ["--pgd_steps", "2"], ["--mixout", "0.1"], ["--prior_wd"], ["--swa_start", "0.5"],
          ["--optim", "radam_lookahead"], ["--padding", "max_length"], ["--task_type", "regression"],
          ["--adapter_size", "4"]]


@pytest.mark.parametrize("trick", TRICKS, ids=lambda t: t[0].lstrip("-") + (t[1] if t[0] == "--task_type" else ""))
@pytest.mark.parametrize("family", ["gpt2", "bart"])
def test_the_tricks_that_fit_gpt2_and_bart_train_them(checkpoints, tmp_path, family, trick):
    """Each trick runs to a saved model on both families: the depth-wise ones on GPT-2's blocks h and BART's
    encoder then decoder layers (param_groups.embeddings_and_blocks), FGM / PGD on their token tables."""
    train_rows = dev_rows = None
    if trick[0] == "--task_type":  # a number per text: how many words it has
        train_rows, dev_rows = ([{"text": r["text"], "label": float(len(r["text"].split()))} for r in rows(n, seed)]
                                for n, seed in ((32, 1), (8, 2)))
    code = run(checkpoints[family], tmp_path, *trick, train_rows=train_rows, dev_rows=dev_rows)
    assert code == 0
    assert load_finetuned(tmp_path / "out").config.model_type == family  # (adapters: beside the base)


@pytest.mark.parametrize("family", ["gpt2", "bart"])
def test_depth_wise_tricks_see_every_block_and_the_embeddings(checkpoints, family):
    """GPT-2: wte and wpe, then h[0..N-1]; BART: the shared table and both stacks' positions, then the encoder's
    layers and the decoder's (which read the encoder's top). Everything else is the head."""
    model = (GPT2ForSequenceClassification if family == "gpt2" else BartForSequenceClassification).from_pretrained(
        checkpoints[family], num_labels=2)
    embeddings, blocks = embeddings_and_blocks(model)
    base = model.base_model
    if family == "gpt2":
        assert blocks == list(base.h)
        assert {id(p) for p in embeddings.parameters()} == {id(base.wte.weight), id(base.wpe.weight)}
        head = {"score.weight", "transformer.ln_f.weight", "transformer.ln_f.bias"}
    else:
        assert blocks == [*base.encoder.layers, *base.decoder.layers]
        assert id(base.shared.weight) in {id(p) for p in embeddings.parameters()}
        head = {n for n, _ in model.named_parameters() if n.startswith("classification_head.")}
    groups = layer_wise_lr_decay_groups(model, 1.0, 0.01, 0.5)
    rates = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert {n for n, p in named.items() if rates[id(p)] == 1.0 and not any(
        p is q for b in blocks for q in b.parameters())} == head
    assert all(rates[id(p)] == 0.5 ** len(blocks) for p in embeddings.parameters())
    assert all(rates[id(p)] == 0.5 ** (len(blocks) - 1 - i) for i, b in enumerate(blocks) for p in b.parameters())


@pytest.mark.parametrize("family", ["gpt2", "bart"])
def test_frozen_embeddings_of_gpt2_and_bart_stay_as_they_were(checkpoints, tmp_path, family):
    assert run(checkpoints[family], tmp_path, "--freeze_embeddings") == 0
    before = (GPT2LMHeadModel if family == "gpt2" else BartForConditionalGeneration).from_pretrained(
        checkpoints[family])
    after = load_finetuned(tmp_path / "out")
    for old, new in zip(embeddings_and_blocks(before)[0].parameters(), embeddings_and_blocks(after)[0].parameters(),
                        strict=True):
        torch.testing.assert_close(new, old, atol=0, rtol=0)
    top_before, top_after = (next(embeddings_and_blocks(m)[1][-1].parameters()) for m in (before, after))
    assert not torch.equal(top_before, top_after)  # (the blocks trained)


@pytest.mark.parametrize("family, flag, why", [
    ("bart", ["--task_type", "token_classification"], "no BART head for it, as Hugging Face has none"),
    ("gpt2", ["--pooling", "mean"], "classifies with its own head (the last token's state)"),
    ("bart", ["--pooling", "cls"], "the decoder's state at the last </s>"),
    ("gpt2", ["--reinit_pooler"], "has no pooler"),
    ("bart", ["--ladder_side_tuning", "4"], "use --adapter_size N, which trains adapters in bart's blocks"),
    ("gpt2", ["--classifier_dropout", "0.1"], "GPT-2's score layer reads the last state without a dropout"),
    ("bart", ["--multitask", "a=TRAIN,DEV"], "its shared encoder and heads are BERT's and RoBERTa's"),
])
def test_what_does_not_fit_gpt2_or_bart_is_refused_before_the_data_is_read(tmp_path, capsys, family, flag, why):
    """A config alone: the data file holds a bad label, so a refusal after reading the data would name that."""
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": family, "vocab_size": 30}))
    data = write_jsonl(tmp_path / "train.jsonl", [{"text": "a b", "label": None}])
    argv = ["--model_name_or_path", str(tmp_path / "ckpt"), "--output_dir", str(tmp_path / "out"), *flag]
    if flag[0] != "--multitask":
        argv += ["--train_file", data]
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert f"is a {family} checkpoint, and {flag[0]}" in err and why in err, err
    assert not (tmp_path / "out").exists()


def test_a_gpt2_classifier_checkpoint_keeps_each_class_its_row(tmp_path):
    """Fine-tuning on from a GPT-2 classifier whose labels are the task's in another order: its rows are put in the
    task's order. GPT-2's score has no bias and is not named `classifier`: the reordering failed (IndexError)."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=16, n_embd=8, n_layer=1, n_head=2, num_labels=2,
                        id2label={0: "royal", 1: "common"}, label2id={"royal": 0, "common": 1})
    GPT2ForSequenceClassification(config).save_pretrained(tmp_path)
    model = GPT2ForSequenceClassification.from_pretrained(tmp_path)
    rows_before = model.score.weight.detach().clone()
    keep_checkpoint_label_rows(model, json.loads((tmp_path / "config.json").read_text()),
                               Task("single_label_classification", ["common", "royal"]))
    torch.testing.assert_close(model.score.weight, rows_before[[1, 0]], atol=0, rtol=0)


@pytest.mark.parametrize("family", ["gpt2", "bart"])
def test_a_pair_run_together_by_gpt2s_tokenizer_is_warned_of(checkpoints, tmp_path, caplog, family):
    """GPT-2's tokenizer adds nothing around or between texts: a pair is read as one text run together (as in
    Hugging Face). BART's frames them (<s> a </s></s> b </s>), so it is not warned of."""
    data = write_jsonl(tmp_path / "train.jsonl", [{**r, "other": r["text"]} for r in rows(8, seed=1)])
    args = FinetuneArguments(model_name_or_path=str(checkpoints[family]), train_file=data, validation_file=data,
                             text_pair_column="other")
    sequence_splits(args, load_tokenizer(checkpoints[family]), str(checkpoints[family]))
    warned = "puts nothing between a pair's two texts" in caplog.text
    assert warned == (family == "gpt2"), caplog.text


@pytest.mark.parametrize("family", ["gpt2", "bart"])
def test_gpt2_and_bart_adapters_train_alone_and_reload_beside_their_base(checkpoints, tmp_path, family):
    """An adapter after every block's feed-forward (GPT-2's mlp; BART's ffn, in both stacks): only the adapters,
    the LayerNorms and the head train, and the run saves them alone beside the base, which load_finetuned rebuilds."""
    assert run(checkpoints[family], tmp_path, "--adapter_size", "4") == 0
    model = load_finetuned(tmp_path / "out").eval()
    blocks = embeddings_and_blocks(model)[1]
    assert len(blocks) == 2 and all(hasattr(b, "adapter") for b in blocks)  # (GPT-2's h; BART's 1 + 1 layers)
    assert any(bool(b.adapter.up.weight.detach().any()) for b in blocks)  # trained, not the zero start
    base = (GPT2LMHeadModel if family == "gpt2" else BartForConditionalGeneration).from_pretrained(checkpoints[family])
    for name, p in base.base_model.named_parameters():  # the frozen weights are the base's, bit for bit
        if "norm" not in name and "ln_" not in name:
            torch.testing.assert_close(dict(model.base_model.named_parameters())[name], p, atol=0, rtol=0)
    tok = load_tokenizer(tmp_path / "out")
    with torch.no_grad():
        logits = model(**tok(["king", "war love song night crown sword"], padding=True)).logits
    assert logits.shape == (2, 2) and bool(torch.isfinite(logits).all())


def test_the_bart_sentence_vector_probe_runs_and_measures_what_it_says(checkpoints, capsys):
    """bench/bart_sentence_vector.py, whose figure the README quotes: on a tiny BART, both lines print, and its
    cosine is the mean over pairs of different rows (rows alike: 1; opposite pairs: -1/3 for four rows)."""
    from test_bench_options import load

    bench = load("bart_sentence_vector")
    assert bench.mean_cosine(torch.ones(4, 3)) == pytest.approx(1.0)
    assert bench.mean_cosine(torch.tensor([[1.0, 0], [-1, 0], [1, 0], [-1, 0]])) == pytest.approx(-1 / 3)
    bench.main(str(checkpoints["bart"]))
    out = capsys.readouterr().out
    assert "pretrained mean cosine between two texts: head's input" in out and "random     mean cosine" in out


def test_a_gpt2_adapter_run_reloads_with_the_pad_id_it_trained_with(checkpoints, tmp_path):
    """A GPT-2 base whose config names no pad (as Hugging Face's gpt2) under a tokenizer with a pad of its own: the
    run pads with the tokenizer's, and the model rebuilt beside its base took the config's end-of-text token instead,
    so its head read a pad as a padded row's last token (other logits than the row alone)."""
    base = tmp_path / "base"
    base.mkdir()
    for f in checkpoints["gpt2"].iterdir():
        (base / f.name).write_bytes(f.read_bytes())
    config = json.loads((base / "config.json").read_text())
    config["pad_token_id"] = None
    (base / "config.json").write_text(json.dumps(config))
    assert run(base, tmp_path, "--adapter_size", "4") == 0
    tok, model = load_tokenizer(tmp_path / "out"), load_finetuned(tmp_path / "out").eval()
    assert tok.pad_token_id != tok.eos_token_id and model.config.pad_token_id == tok.pad_token_id
    with torch.no_grad():
        padded = model(**tok(["king", "war love song night crown sword"], padding=True)).logits[0]
        torch.testing.assert_close(padded, model(**tok(["king"])).logits[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pair", [False, True])
def test_a_bart_text_holding_its_end_token_is_refused_with_its_row_before_training(checkpoints, tmp_path, capsys, pair):
    """"<s>old</s> king" (HTML's strike-through): BART's tokenizer reads the </s> as its end token, one more than
    the head's rule allows; the run stopped at the first batch holding it, saying to end each text with </s>."""
    train_rows = rows(8, seed=1)
    train_rows[5]["text"] = "<s>old</s> king"
    if pair:
        train_rows = [{**r, "other": "war"} for r in train_rows]
    code = run(checkpoints["bart"], tmp_path, *(["--text_pair_column", "other"] if pair else []),
               train_rows=train_rows, dev_rows=[{**r, "other": "war"} for r in rows(4, seed=2)])
    err = capsys.readouterr().err
    assert code == 2 and "train.jsonl: row 6 holds '</s>' in its text" in err, err
    assert f"the last one of the {3 if pair else 1} each row must hold" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("family, task_type", [("bart", "causal_lm"), ("gpt2", "seq2seq")])
def test_a_generation_task_on_the_other_family_names_the_family_first(checkpoints, tmp_path, capsys, family,
                                                                       task_type):
    """The length check learned GPT-2's and BART's positions for classification, and ran first on generation runs
    too: a BART under causal_lm was told to shorten --max_seq_length, and only on the next run that it needs seq2seq."""
    data = write_jsonl(tmp_path / "t.jsonl", [{"text": "king", "target": "queen"}] * 8)
    code = train.main(["--model_name_or_path", str(checkpoints[family]), "--train_file", data, "--task_type",
                       task_type, "--target_column", "target", "--output_dir", str(tmp_path / "out"), "--device",
                       "cpu", "--disable_tqdm"])
    err = capsys.readouterr().err
    assert code == 2 and "--max_seq_length" not in err and ("seq2seq" if family == "bart" else "causal_lm") in err, err


def test_gpt2_tags_words_and_hugging_face_reads_its_token_classifier(checkpoints, tmp_path):
    """--task_type token_classification on a GPT-2 (GPT2ForTokenClassification, Hugging Face's head): a word's tag
    is read at its first piece, from its left context and itself, which is all this task needs (each word's kind)."""
    from test_tagging import run_tagging

    result = run_tagging(checkpoints["gpt2"], tmp_path)
    assert result.metrics["f1"] >= 0.8, result.metrics  # (measured 1.0; a head that read nothing: 0)
    out = tmp_path / "out"
    assert json.loads((out / "config.json").read_text())["architectures"] == ["GPT2ForTokenClassification"]
    assert (out / "tag_predictions.jsonl").is_file()
    tok, ours = load_tokenizer(out), load_finetuned(out).eval()
    batch = tok(["king war", "love song night crown sword"], padding=True)
    theirs = transformers.GPT2ForTokenClassification.from_pretrained(out).eval()
    real = batch["attention_mask"].bool()[..., None]
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits * real, theirs(**batch).logits * real, atol=1e-5, rtol=1e-5)


def test_bart_answers_questions_and_hugging_face_reads_its_span_head(checkpoints, tmp_path):
    """--task_type question_answering on a BART (BartForQuestionAnswering, Hugging Face's head on the decoder's
    states): <s> question </s></s> context </s> windows, as RoBERTa's; the answer is the one word of the court."""
    from test_extractive_qa import run_qa

    # A tiny BART learns this slowly: its decoder's state at position t reads token t - 1 and must find token t by
    # cross-attention (a 600-step run at this rate: training loss 2.4 -> 0.26 by step 400, validation exact match
    # 0.04, 0.29, 0.38, 0.42, 0.46 at steps 100-500). One word of 5 to 10 by chance: about 0.14.
    result = run_qa(checkpoints["bart"], tmp_path, "--max_steps", "400", "--eval_steps", "100")
    assert result.metrics["exact_match"] >= 0.3, result.metrics
    out = tmp_path / "out"
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BartForQuestionAnswering"]
    assert (out / "qa_predictions.jsonl").is_file()
    tok, ours = load_tokenizer(out), load_finetuned(out).eval()
    batch = tok(["who is there", "who"], ["the king is here", "a fool and a night song"], padding=True)
    # the README's recipe for new questions (it passed BART the segment ids it takes none of: a TypeError)
    answers = predict_answers(ours, tok, [("who is there", "the king is here"), ("who", "a fool and a night song")],
                              max_seq_length=32, doc_stride=4)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    theirs = transformers.BartForQuestionAnswering.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).start_logits, theirs(**batch).start_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(**batch).end_logits, theirs(**batch).end_logits, atol=1e-5, rtol=1e-5)


def test_a_gpt2_tagger_with_adapters_and_its_own_dropout_reloads(checkpoints, tmp_path):
    """--adapter_size with --classifier_dropout on a GPT-2 tagger: rebuilt beside its base, the run was checked as a
    sentence classifier, whose GPT-2 head refuses --classifier_dropout: it trained and saved, and never loaded."""
    from test_tagging import run_tagging

    run_tagging(checkpoints["gpt2"], tmp_path, "--adapter_size", "4", "--classifier_dropout", "0.2", "--max_steps", "2")
    model = load_finetuned(tmp_path / "out")
    assert model.config.classifier_dropout == 0.2 and model.dropout.p == 0.2
    tags = predict_tags(model, load_tokenizer(tmp_path / "out"), [["king", "war"]], max_seq_length=32)
    assert len(tags[0]) == 2


def save_hugging_face_style_gpt2_tokenizer(path):
    """A byte-level BPE saved as Hugging Face's GPT-2 tokenizer is: <|endoftext|> its only special token, no pad."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(texts(80, seed=9), trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    eos = "<|endoftext|>"
    transformers.GPT2TokenizerFast(tokenizer_object=bpe, bos_token=eos, eos_token=eos, unk_token=eos).save_pretrained(
        path)
    return load_tokenizer(path)


def test_gpt2_taggers_predict_without_a_pad_token_and_with_a_first_word_too_long(tmp_path):
    """Hugging Face's GPT-2 tokenizer has no pad token: predict_tags padded with None (a TypeError). A tokenizer
    that frames nothing made a sentence whose first word does not fit --max_seq_length a row of no tokens, which
    stopped the whole batch (and a training run); it is the end token alone, its words untagged."""
    tok = save_hugging_face_style_gpt2_tokenizer(tmp_path)
    assert tok.pad_token_id is None
    torch.manual_seed(0)
    model = GPT2ForTokenClassification(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=32,
                                                  num_labels=2, bos_token_id=0, eos_token_id=0))
    long_word = "kingqueenfoollovewarcrownswordjestnightsong" * 2  # more pieces than max_seq_length
    tags = predict_tags(model, tok, [["king", "war", "song"], ["love"], [long_word, "king"]], max_seq_length=8)
    assert [len(t) for t in tags] == [3, 1, 2] and all(t is not None for t in tags[0] + tags[1])
    assert tags[2] == [None, None]


def test_gpt2_answers_questions_and_hugging_face_reads_its_span_head(checkpoints, tmp_path):
    """--task_type question_answering on a GPT-2 (GPT2ForQuestionAnswering, Hugging Face's head): the question, then
    the context, then the end-of-text token; the answer is the one word of the court."""
    from test_extractive_qa import qa_rows, run_qa

    # (120 steps at 1e-2: validation exact match 0.71, 0.71, 0.92, 0.88, 0.92, 0.88 every 20 steps; at 3e-3 it ends
    # at 0.79. One word of 5 to 10 by chance: about 0.14)
    result = run_qa(checkpoints["gpt2"], tmp_path, "--max_steps", "120", "--learning_rate", "1e-2")
    assert result.metrics["exact_match"] >= 0.8, result.metrics
    out = tmp_path / "out"
    assert json.loads((out / "config.json").read_text())["architectures"] == ["GPT2ForQuestionAnswering"]
    answers = [json.loads(line)["predicted"] for line in (out / "qa_predictions.jsonl").read_text().splitlines()]
    tok, ours = load_tokenizer(out), load_finetuned(out).eval()
    assert predict_answers(ours, tok, [(r["question"], r["context"]) for r in qa_rows(24, 1)], 32,
                           doc_stride=4) == answers
    theirs = transformers.GPT2ForQuestionAnswering.from_pretrained(out).eval()
    batch = tok(["who is there the king is here", "who a fool"], padding=True)
    real = batch["attention_mask"]
    with torch.no_grad():
        mine, hf = ours(**batch), theirs(**batch)
    for name in ("start_logits", "end_logits"):
        torch.testing.assert_close(getattr(mine, name) * real, getattr(hf, name) * real, atol=1e-5, rtol=1e-5)


def test_a_gpt2_window_says_no_answer_at_its_last_token_which_has_read_it_all(checkpoints):
    """A causal model's first token has read only itself, the same in every window: GPT-2's windows end with the
    end-of-text token, and a window without the answer points there; the evaluation reads that slot."""
    tok = load_tokenizer(checkpoints["gpt2"])
    questions = [Question("a", "who", "the king love", ["king"], [4]), Question("b", "who", "war love", [], [])]
    features = qa_features(questions, tok, 32, 4, at_end=True)
    for f in features:
        assert f["input_ids"][-1] == tok.eos_token_id and f["no_answer"] == len(f["input_ids"]) - 1
    assert features[1]["start_positions"] == features[1]["end_positions"] == len(features[1]["input_ids"]) - 1
    assert tok.decode(features[0]["input_ids"][features[0]["start_positions"]]).strip() == "king"
    assert [f["no_answer"] for f in qa_features(questions, tok, 32, 4)] == [0, 0]  # (BERT's [CLS], BART's <s>)

    king = tok.convert_tokens_to_ids(tok.tokenize(" king"))[0]

    class EndWins(torch.nn.Module):  # the king's piece scores highest where there is one, else the last real token
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask, **_):
            logits = torch.where(input_ids == king, 9.0, 0.0)
            last = attention_mask.sum(1) - 1
            logits[torch.arange(len(input_ids)), last] = torch.where((input_ids == king).any(1), 0.0, 9.0)
            return type("Out", (), {"start_logits": logits, "end_logits": logits.clone()})

    evaluator = QAEvaluator(questions, features, QACollator(tok.pad_token_id), 8, 30, allow_no_answer=True)
    assert evaluator(EndWins())["exact_match"] == 1.0 and evaluator.predictions == ["king", ""]
    reader = EndWins()
    reader.config = GPT2Config()  # predict_answers frames a GPT-2's windows so too
    assert predict_answers(reader, tok, [("who", "the king love"), ("who", "war love")], 32, doc_stride=4,
                           allow_no_answer=True) == ["king", ""]


def test_train_py_frames_a_gpt2_readers_windows_with_the_end_slot(checkpoints, tmp_path):
    from test_extractive_qa import qa_rows, write

    args = FinetuneArguments(model_name_or_path=str(checkpoints["gpt2"]), task_type="question_answering",
                             train_file=write(tmp_path / "train.jsonl", qa_rows(4, 0)),
                             validation_file=write(tmp_path / "dev.jsonl", qa_rows(4, 1)), max_seq_length=32,
                             doc_stride=4)
    tok = load_tokenizer(checkpoints["gpt2"])
    train_features, _, eval_features, _ = task_splits(args, tok, str(checkpoints["gpt2"]))
    for f in train_features + eval_features:
        assert f["input_ids"][-1] == tok.eos_token_id and f["no_answer"] == len(f["input_ids"]) - 1
        assert "token_type_ids" not in f


def squad2_rows(n, seed):
    """The court-word task of test_extractive_qa, every other context without its answer."""
    from test_extractive_qa import qa_rows

    out = qa_rows(n, seed)
    for r in out[::2]:
        word, start = r["answers"]["text"][0], r["answers"]["answer_start"][0]
        r["context"] = (r["context"][:start] + r["context"][start + len(word):]).strip().replace("  ", " ")
        r["answers"] = {"text": [], "answer_start": []}
    return out


def test_a_gpt2_reader_learns_to_answer_nothing(checkpoints, tmp_path):
    """SQuAD 2.0 on GPT-2: a context without a word of the court has no answer, learnt at the end-of-text token."""
    from test_extractive_qa import run_qa

    result = run_qa(checkpoints["gpt2"], tmp_path, "--max_steps", "120", "--learning_rate", "1e-2", rows=squad2_rows)
    assert result.task.label_names == ["no_answer"]
    predicted = [json.loads(line) for line in (tmp_path / "out" / "qa_predictions.jsonl").read_text().splitlines()]
    assert sum(p["predicted"] == "" for p in predicted[::2]) >= 10  # of 12 without an answer
    assert result.metrics["exact_match"] >= 0.8, result.metrics


def test_a_gpt2_reader_with_adapters_reloads_beside_its_base_and_answers(checkpoints, tmp_path):
    from test_extractive_qa import qa_rows, run_qa

    run_qa(checkpoints["gpt2"], tmp_path, "--adapter_size", "4", "--max_steps", "2")
    model = load_finetuned(tmp_path / "out")
    assert type(model).__name__ == "GPT2ForQuestionAnswering"
    answers = predict_answers(model, load_tokenizer(tmp_path / "out"),
                              [(r["question"], r["context"]) for r in qa_rows(3, 1)], 32, doc_stride=4)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)


def test_a_gpt2_readers_padding_takes_no_span_probability(tmp_path):
    """Hugging Face's GPT-2 tokenizer has no pad token, so its end-of-text token pads, the very token that ends every
    window as its no-answer slot; a pad after a window reads the whole window as the slot does. In Hugging Face's
    span softmax, which reads padding, the pads took the slot's probability (this run: exact match 0.83, validation
    loss 1.3-1.7; 0.83 / 0.71 on seeds 1 / 2). A GPT-2 reader's softmax leaves padding out: 0.92 / 0.96 / 0.92,
    loss 0.15-0.28."""
    from test_extractive_qa import run_qa

    tok = save_hugging_face_style_gpt2_tokenizer(tmp_path / "gpt2")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=0,
                               eos_token_id=0)).save_pretrained(tmp_path / "gpt2")
    result = run_qa(tmp_path / "gpt2", tmp_path, "--max_steps", "120", "--learning_rate", "1e-2", "--padding",
                    "max_length", "--seed", "0", rows=squad2_rows)
    assert load_tokenizer(tmp_path / "out").pad_token == "<|endoftext|>"
    assert result.metrics["exact_match"] >= 0.875 and result.metrics["loss"] < 0.8, result.metrics

    logits = torch.tensor([[1.0, 2.0, 0.5, 3.0, 3.0]])  # the last two positions padded
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    one = torch.tensor([1])
    torch.testing.assert_close(span_extraction_loss(logits, logits, one, one, mask),
                               span_extraction_loss(logits[:, :3], logits[:, :3], one, one))


def test_a_gpt2_readers_loss_does_not_depend_on_how_far_its_batch_is_padded(checkpoints):
    """Causal attention keeps a right pad from every real position, and the softmax leaves pads out: the loss of a
    batch padded to its longest window is the loss of the same batch padded to --max_seq_length (the head's own
    loss, as Hugging Face's, reads the pads and moves)."""
    from minibert.finetune.extractive_qa import real_span_loss
    from minibert.models.gpt import GPT2ForQuestionAnswering

    tok = load_tokenizer(checkpoints["gpt2"])
    questions = [Question("a", "who", "the king love", ["king"], [4]),
                 Question("b", "who is there", "war love", [], [])]
    features = qa_features(questions, tok, 32, 4, at_end=True)
    del features[0]["token_type_ids"], features[1]["token_type_ids"]
    torch.manual_seed(0)
    model = GPT2ForQuestionAnswering(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2,
                                                n_positions=32)).eval()  # (no dropout)
    losses, own = [], []
    for padding in ("longest", "max_length"):
        batch = QACollator(tok.pad_token_id, 32, padding)(features)
        losses.append(real_span_loss(model, batch)[0])
        own.append(model(**batch).loss)
    torch.testing.assert_close(losses[0], losses[1])
    assert not torch.allclose(own[0], own[1])

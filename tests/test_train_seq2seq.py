"""train.py --task_type seq2seq (BART) and causal_lm (GPT-2) on tiny data: chrF by hand, the examples
and their -100 labels, end-to-end runs, bad input, and BART's two-stage new-encoder recipe."""

import dataclasses
import json
import shutil

import pytest
import torch

import train
from minibert.finetune import evaluate_generation
from minibert.finetune.evaluate_generation import evaluate_saved
from minibert.finetune.generative import (
    GenerativeCollator,
    causal_lm_examples,
    chrf,
    exact_match,
    seq2seq_examples,
    text_pairs,
)
from minibert.finetune.new_encoder import BartWithNewEncoder, TwoStageTraining, stage_one_parameters
from minibert.finetuning import load_finetuned
from minibert.models.bart import BartConfig, BartForConditionalGeneration
from minibert.models.bert import BertConfig, BertForPreTraining
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel
from minibert.tokenizer import load_tokenizer, train_tokenizer

WORDS = "king queen fool love war crown sword jest night song".split()


def sentences(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[j] for j in torch.randint(0, len(WORDS), (int(torch.randint(2, 6, (1,), generator=g)),),
                                                     generator=g).tolist()) for _ in range(n)]


def pairs(n, seed=0):  # the task: write the words in reverse order
    return [{"source": s, "target": " ".join(reversed(s.split()))} for s in sentences(n, seed)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny BART and a tiny GPT-2 sharing one byte-level tokenizer, and a tiny BERT."""
    root = tmp_path_factory.mktemp("generators")
    tokenizer = train_tokenizer(sentences(60, seed=9), "bytelevel_bpe", vocab_size=300, min_frequency=1)
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id}
    torch.manual_seed(0)
    bart = BartConfig(vocab_size=tokenizer.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                      encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                      max_position_embeddings=64, decoder_start_token_id=tokenizer.eos_token_id, **ids)
    gpt = GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=32, n_embd=16, n_layer=1, n_head=2, **ids)
    paths = {"bart": root / "bart", "gpt2": root / "gpt2", "bert": root / "bert"}
    BartForConditionalGeneration(bart).save_pretrained(paths["bart"])
    GPT2LMHeadModel(gpt).save_pretrained(paths["gpt2"])
    BertForPreTraining(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32)).save_pretrained(paths["bert"])
    for path in paths.values():
        tokenizer.save_pretrained(path)
    wordpiece = train_tokenizer(sentences(60, seed=9), "wordpiece", vocab_size=60, min_frequency=1)
    paths["new_vocab"] = root / "new_vocab"
    wordpiece.save_pretrained(paths["new_vocab"])
    return paths


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def run(model, tmp_path, *extra, train_rows=None, dev_rows=None, callbacks=()):
    data = write_jsonl(tmp_path / "train.jsonl", train_rows or pairs(24))
    dev = write_jsonl(tmp_path / "dev.jsonl", dev_rows or pairs(6, seed=1))
    argv = ["--model_name_or_path", str(model), "--train_file", data, "--validation_file", dev,
            "--task_type", "seq2seq", "--text_column", "source", "--target_column", "target",
            "--output_dir", str(tmp_path / "out"),
            "--max_steps", "4", "--eval_steps", "2", "--per_device_train_batch_size", "8", "--max_seq_length", "24",
            "--generation_max_length", "8", "--disable_tqdm", "--device", "cpu", "--learning_rate", "1e-3", *extra]
    args, training = train.parse(argv)
    training.plot_loss = False  # matplotlib's import alone takes seconds
    return train.finetune(args, training, callbacks)


def test_chrf_against_a_hand_computed_case():
    # "ab" against "abc", orders 1..2. Order 1: 2 of 2 unigrams match (P 1), 2 of 3 reference ones (R 2/3).
    # Order 2: "ab" matches 1 of 1 (P 1), of the reference's "ab", "bc" (R 1/2). Means: P = 1, R = 7/12.
    # F2 = 5 P R / (4 P + R) = (35/12) / (55/12) = 7/11.
    assert chrf(["ab"], ["abc"], char_order=2) == pytest.approx(100 * 7 / 11)
    # Counts are clipped: "aa" against "a" matches one "a" of two (P 1/2, R 1); order 2 has no reference n-gram.
    assert chrf(["aa"], ["a"], char_order=2) == pytest.approx(100 * 5 * 0.5 / (4 * 0.5 + 1))
    assert chrf(["骑马 出 都"], ["骑马出都"]) == 100.0  # spaces do not count
    assert chrf(["xyz"], ["abc"]) == 0.0
    assert exact_match([" 骑马", "a"], ["骑马", "b"]) == 0.5


def test_seq2seq_and_causal_lm_examples_put_the_loss_on_the_target_only(checkpoints):
    tok = load_tokenizer(checkpoints["bart"])
    bos, eos = tok.bos_token_id, tok.eos_token_id
    [example] = seq2seq_examples(["king war"], ["war king"], tok, 24)
    assert example["input_ids"] == [bos, *tok.encode("king war"), eos]
    assert example["labels"] == [bos, *tok.encode("war king"), eos]
    prompt, completion = tok.encode("king war"), tok.encode(" =>war king")
    short, long = causal_lm_examples(["king war", "king war"], [" =>war king", " =>war king war king"], tok, 24, "f")
    assert short["input_ids"] == [*prompt, *completion, eos]
    assert short["labels"] == [-100] * len(prompt) + [*completion, eos]
    batch = GenerativeCollator(tok.pad_token_id)([short, long])
    assert batch["labels"][0, len(short["labels"]):].eq(-100).all()  # padding costs nothing
    assert batch["attention_mask"].sum(1).tolist() == [len(short["input_ids"]), len(long["input_ids"])]
    # The model's loss is the cross-entropy over the completion tokens alone.
    model = GPT2LMHeadModel.from_pretrained(checkpoints["gpt2"]).eval()
    logits = model(torch.tensor([short["input_ids"]])).logits[0]
    start = len(prompt)
    expected = torch.nn.functional.cross_entropy(logits[start - 1 : -1], torch.tensor([*completion, eos]))
    assert torch.allclose(model(**{k: v[:1] for k, v in batch.items()}).loss, expected, atol=1e-6)


def test_seq2seq_bart_end_to_end_with_beam_search(checkpoints, tmp_path, monkeypatch):
    result = run(checkpoints["bart"], tmp_path, "--num_beams", "2")
    assert result.task.problem_type == "seq2seq"
    assert [r["step"] for r in result.history] == [2, 4]
    assert {"eval_loss", "eval_exact_match", "eval_chrf"} <= set(result.history[0])
    out = tmp_path / "out"
    saved = json.loads((out / "eval_results.json").read_text())
    assert saved["metrics"]["chrf"] == pytest.approx(result.metrics["chrf"])
    assert saved["arguments"]["finetune"]["num_beams"] == 2 and saved["arguments"]["training"]["max_steps"] == 4
    predictions = [json.loads(line) for line in (out / "generated_predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 6 and {"target", "prediction"} <= set(predictions[0])
    assert isinstance(load_finetuned(out), BartForConditionalGeneration)
    # the same weights decoded again, as the run decoded them: its --generation_max_length 8 (not
    # --max_seq_length 24) is read from eval_results.json
    limits = []

    class RecordLimit(evaluate_generation.GenerationEvaluator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            limits.append(self.max_new_tokens)

    monkeypatch.setattr(evaluate_generation, "GenerationEvaluator", RecordLimit)
    again = evaluate_saved(out, num_beams=2)
    assert limits == [8] and again["examples"] == 6
    assert {k: again[k] for k in result.metrics} == result.metrics
    del saved["generation"]["generation_max_length"]  # a run saved before it was recorded: max_seq_length, as then
    (out / "eval_results.json").write_text(json.dumps(saved))
    evaluate_saved(out, num_beams=2)
    assert limits[-1] == 24


def test_a_re_decoding_writes_its_predictions_to_a_new_file_only(checkpoints, tmp_path):
    run(checkpoints["bart"], tmp_path, "--num_beams", "2")
    out = tmp_path / "out"
    written = out / "generated_predictions.jsonl"
    before = written.read_text()
    # the run's own settings decode the same texts again, into the file asked for
    assert evaluate_generation.main([str(out), "--num_beams", "2", "--predictions_file",
                                     str(tmp_path / "again" / "beams.jsonl")]) == 0
    assert (tmp_path / "again" / "beams.jsonl").read_text() == before
    # greedy decoding into another file; the run's record is left as it was
    evaluate_saved(out, num_beams=1, predictions_file=tmp_path / "greedy.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "greedy.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and list(rows[0]) == ["source", "target", "prediction"] and written.read_text() == before
    assert [r["source"] for r in rows] == [r["source"] for r in pairs(6, seed=1)]  # the validation file's order
    with pytest.raises(ValueError, match="already exists; name a new file"):
        evaluate_saved(out, predictions_file=written)
    assert written.read_text() == before


def test_causal_lm_gpt2_end_to_end(checkpoints, tmp_path):
    rows = [{"source": r["source"] + " =>", "target": " " + r["target"]} for r in pairs(24)]
    result = run(checkpoints["gpt2"], tmp_path, "--task_type", "causal_lm", train_rows=rows, dev_rows=rows[:6])
    assert {"loss", "exact_match", "chrf"} <= set(result.metrics)
    assert isinstance(load_finetuned(tmp_path / "out"), GPT2LMHeadModel)


def test_random_weights_from_the_bart_config(checkpoints, tmp_path):
    result = run("random", tmp_path, "--config_name", str(checkpoints["bart"]), "--max_steps", "2",
                 "--eval_steps", "2")
    assert result.metrics["loss"] > 0


def test_bad_input_is_named(checkpoints, tmp_path):
    with pytest.raises(ValueError, match=r"no column 'target'; the columns are \['source', 'text'\]. Pass "
                                         r"--target_column"):
        run(checkpoints["bart"], tmp_path, train_rows=[{"source": "king", "text": "x"}])
    empty = [*pairs(3), {"source": "king", "target": " "}, {"source": "war", "target": None}]
    with pytest.raises(ValueError, match=r"target column 'target' is empty in 2 of 5 rows \(rows 4, 5\)"):
        run(checkpoints["bart"], tmp_path, train_rows=empty)
    holes = [*pairs(3), {"target": "war"}, {"source": None, "target": "peace"}]  # they became "" silently
    with pytest.raises(ValueError, match=r"source column 'source' is missing in 2 of 5 rows \(rows 4, 5\); fill"):
        run(checkpoints["bart"], tmp_path, train_rows=holes)
    with pytest.raises(ValueError, match=r"example 4 has list \"\['king'\]\" as its 'source', not a text"):
        run(checkpoints["bart"], tmp_path, train_rows=[*pairs(3), {"source": ["king"], "target": "war"}])
    assert text_pairs([{"source": 0, "target": 1}, {"source": "", "target": "x"}], "source", "target", "causal_lm",
                      "f.jsonl") == (["0", ""], ["1", "x"])  # 0 is "0" (it was ""), and "" stays an empty prompt
    long_prompt = [{"source": " ".join(["king"] * 30), "target": "war"}]
    with pytest.raises(ValueError, match=r"row 1: the prompt alone has \d+ tokens.*--max_seq_length 24.*shorten"):
        run(checkpoints["gpt2"], tmp_path, "--task_type", "causal_lm", train_rows=long_prompt)
    with pytest.raises(ValueError, match=r"model_type 'gpt2' cannot be fine-tuned with --task_type seq2seq.*"
                                         r"--task_type causal_lm"):
        run(checkpoints["gpt2"], tmp_path, "--task_type", "seq2seq")
    with pytest.raises(ValueError, match=r"model_type 'bert'.*pretrain.py --objective bart"):
        run(checkpoints["bert"], tmp_path, "--task_type", "seq2seq")
    with pytest.raises(ValueError, match=r"--generation_max_length 65 is past the 64 decoder positions of .*; pass "
                                         r"--generation_max_length 64 or less"):  # it died at the first evaluation
        run(checkpoints["bart"], tmp_path, "--generation_max_length", "65")
    with pytest.raises(ValueError, match="--fgm is a classification method"):
        run(checkpoints["bart"], tmp_path, "--fgm")
    with pytest.raises(ValueError, match="--target_column is for text generation; pass --task_type seq2seq"):
        run(checkpoints["bart"], tmp_path, "--task_type", "auto")
    with pytest.raises(ValueError, match="needs --target_column"):
        args, training = train.parse(["--model_name_or_path", str(checkpoints["bart"]), "--task_type", "seq2seq",
                                      "--train_file", write_jsonl(tmp_path / "t.jsonl", pairs(4)), "--output_dir",
                                      str(tmp_path / "o"), "--max_seq_length", "24"])
        train.finetune(args, training)


def test_new_encoder_stage_one_updates_exactly_the_papers_parameters(checkpoints, tmp_path):
    before = BartForConditionalGeneration.from_pretrained(checkpoints["bart"]).state_dict()
    run(checkpoints["bart"], tmp_path, "--new_encoder_vocab", str(checkpoints["new_vocab"]),
        "--new_encoder_stage_two_steps", "0", "--eval_steps", "4")
    model = load_finetuned(tmp_path / "out")
    assert isinstance(model, BartWithNewEncoder)
    after = model.bart.state_dict()
    changed = {f"bart.{k}" for k in before if not torch.equal(before[k], after[k])}
    bart_stage_one = {n for n in stage_one_parameters(model) if n.startswith("bart.")}
    assert changed == bart_stage_one
    assert bart_stage_one == {
        "bart.model.encoder.embeddings.embed_positions.weight", "bart.model.decoder.embeddings.embed_positions.weight",
        *(f"bart.model.encoder.layers.0.self_attn.{p}_proj.{w}" for p in "qkv" for w in ("weight", "bias"))}
    saved_vocab = load_tokenizer(tmp_path / "out" / "new_encoder").vocab_size
    assert saved_vocab == load_tokenizer(checkpoints["new_vocab"]).vocab_size


def test_the_new_encoder_vocab_directory_is_never_the_output_dir(checkpoints, tmp_path, capsys):
    """The run saves BART's tokenizer to its output_dir: there it would replace the source-language
    tokenizer it reads (tokenizer.json and the rest), even with --overwrite_output_dir."""
    vocab = tmp_path / "source_vocab"
    shutil.copytree(checkpoints["new_vocab"], vocab)
    before = {p.name: p.read_bytes() for p in vocab.iterdir()}
    data = write_jsonl(tmp_path / "train.jsonl", pairs(8))
    code = train.main(["--model_name_or_path", str(checkpoints["bart"]), "--new_encoder_vocab", str(vocab),
                       "--output_dir", str(vocab), "--overwrite_output_dir", "--train_file", data,
                       "--task_type", "seq2seq", "--text_column", "source", "--target_column", "target",
                       "--max_steps", "1", "--max_seq_length", "24", "--disable_tqdm", "--plot_loss", "false",
                       "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and f"--output_dir {vocab} is the --new_encoder_vocab directory" in err, err
    assert {p.name: p.read_bytes() for p in vocab.iterdir()} == before


def test_new_encoder_two_stages_and_generation_beyond_barts_vocabulary(checkpoints):
    bart = BartForConditionalGeneration.from_pretrained(checkpoints["bart"])
    model = BartWithNewEncoder(bart, vocab_size=bart.config.vocab_size + 100, pad_token_id=0, num_layers=1)
    stages = TwoStageTraining(model, stage_one_steps=3)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(stage_one_parameters(model)) and any(n.startswith("front.layers.0") for n in trainable)

    class Step:  # the trainer as the callback sees it
        class state:
            global_step = 3

    stages.on_train_begin(Step)  # a run resumed at step 3 is in stage two before its first step
    assert all(p.requires_grad for p in model.parameters())
    source = torch.tensor([[5, bart.config.vocab_size + 50, 7], [0, 0, 9]]).flip(1)  # ids past BART's vocabulary
    out = model.generate(source, attention_mask=source.ne(0).long(), max_new_tokens=4, num_beams=2)
    assert out.shape[0] == 2 and out[0, 0] == bart.config.decoder_start_token_id
    loss = model(source, source.ne(0).long(), labels=torch.tensor([[0, 5, 2], [0, 6, 2]])).loss
    loss.backward()
    assert model.front.embed_tokens.weight.grad is not None


def test_a_resumed_seq2seq_run_repeats_the_run_it_resumes(checkpoints, tmp_path):
    """The evaluations' generate stores the weights input-major on the CPU; finetune takes that order before
    the first step, so the run resumed from checkpoint-2 (before the evaluation at step 4) gives the
    uninterrupted run's losses, gradient norms and weights bit for bit."""
    tiny = BartConfig.from_json(checkpoints["bart"] / "config.json")  # widened: the memory order must change the sums
    wide = tmp_path / "wide_bart"
    torch.manual_seed(0)
    BartForConditionalGeneration(dataclasses.replace(tiny, d_model=128, encoder_ffn_dim=256, decoder_ffn_dim=256)
                                 ).save_pretrained(wide)
    load_tokenizer(checkpoints["bart"]).save_pretrained(wide)
    flags = ("--max_steps", "6", "--save_steps", "2", "--logging_steps", "1", "--save_total_limit", "10")
    class Layouts:  # at every step: is each Linear weight stored input-major, as generate leaves it?
        seen = []

        def on_backward_end(self, trainer, batch):
            self.seen.append({m.weight.t().is_contiguous() for m in trainer.model.modules()
                              if isinstance(m, torch.nn.Linear)})

    (tmp_path / "a").mkdir()
    run(wide, tmp_path / "a", *flags, callbacks=[Layouts()])
    assert Layouts.seen == [{True}] * 6  # from step 1, before the first evaluation generates
    (tmp_path / "b").mkdir()
    shutil.copytree(tmp_path / "a" / "out", tmp_path / "b" / "out")
    for later in ("checkpoint-4", "checkpoint-6"):
        shutil.rmtree(tmp_path / "b" / "out" / later)
    run(wide, tmp_path / "b", *flags, "--resume_from_checkpoint", "last")

    def steps(directory):
        lines = [json.loads(line) for line in (directory / "out" / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["grad_norm"]) for r in lines if "loss" in r and r["step"] > 2]

    assert steps(tmp_path / "b") == steps(tmp_path / "a") and len(steps(tmp_path / "a")) == 4
    resumed, uninterrupted = (load_finetuned(tmp_path / d / "out").state_dict() for d in "ba")
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0)


def test_a_metric_for_best_model_generation_never_reports_is_refused_before_training(checkpoints, tmp_path):
    """A generation run's evaluation reports loss, exact_match and chrf; any other name was found at the first
    evaluation only, after the steps before it had trained."""
    with pytest.raises(ValueError, match=r"--metric_for_best_model accuracy: a seq2seq task is evaluated by loss, "
                                         r"exact_match, chrf"):
        run(checkpoints["bart"], tmp_path, "--metric_for_best_model", "accuracy")
    assert not (tmp_path / "out" / "checkpoint-2").exists()

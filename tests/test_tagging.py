"""Token classification (`train.py --task_type token_classification`, minibert/finetune/tagging.py): the entity
rules against seqeval (what Hugging Face's token-classification example scores with), word alignment, truncation,
the files it reads, a run end to end whose saved model Hugging Face loads to the same logits, and bad input."""

import json
import random
import warnings

import pytest
import torch
from test_train import WORDS, tiny_checkpoint

import train
from minibert.finetune.smart_batching import PaddingCollator
from minibert.finetune.tagging import (
    TagEvaluator,
    chunks,
    predict_tags,
    read_tagged,
    tag_task,
    tagged_examples,
    tagging_metrics,
)
from minibert.finetune.task_data import Task
from minibert.finetuning import DEFAULT_TAGGING_TRAIN_FILE, DEFAULT_TAGGING_VALIDATION_FILE, load_finetuned
from minibert.models.bert import BertForTokenClassification, RobertaConfig, RobertaForMaskedLM
from minibert.nn.losses import IGNORE_INDEX
from minibert.tokenizer import load_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny pretrained BERT and its WordPiece tokenizer of WORDS (test_train's)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


SCHEME_TAGS = ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B"]  # IOB1, IOB2, IOE, IOBES mixed


def random_tags(rng: random.Random, n: int) -> list[list[str]]:
    return [[rng.choice(SCHEME_TAGS) for _ in range(rng.randint(1, 12))] for _ in range(n)]


# -- entities and scores against seqeval ------------------------------------------------------------------
def test_entities_are_seqevals_on_every_scheme():
    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(0)
    for tags in random_tags(rng, 3000):
        assert chunks(tags) == set(get_entities(tags)), tags


def test_scores_are_seqevals_micro_scores():
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    rng = random.Random(1)
    for _ in range(50):
        gold = random_tags(rng, 20)
        predicted = [[t if rng.random() < 0.7 else rng.choice(SCHEME_TAGS) for t in g] for g in gold]
        ours = tagging_metrics(gold, predicted)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # seqeval warns when no entity is predicted
            theirs = {"f1": f1_score(gold, predicted), "precision": precision_score(gold, predicted),
                      "recall": recall_score(gold, predicted), "accuracy": accuracy_score(gold, predicted)}
        assert ours == pytest.approx(theirs, abs=1e-12)


def test_entity_rules_by_hand():
    assert chunks(["I-PER", "I-PER", "O", "I-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}  # IOB1: I after O starts one
    assert chunks(["B-PER", "I-LOC"]) == {("PER", 0, 0), ("LOC", 1, 1)}  # a type change ends one, starts another
    assert chunks(["B-PER", "B-PER", "I-PER"]) == {("PER", 0, 0), ("PER", 1, 2)}
    assert chunks(["U-X", "B-X", "L-X"]) == {("X", 0, 0), ("X", 1, 2)}  # BILOU reads as IOBES
    # a right type with a wrong end is wrong: one of two gold entities found, one of two predicted right
    scores = tagging_metrics([["B-A", "I-A", "O", "B-B"]], [["B-A", "O", "O", "B-B"]])
    assert scores["precision"] == scores["recall"] == 0.5 and scores["accuracy"] == 0.75
    assert tagging_metrics([["NN", "VB"]], [["NN", "NN"]], entities=False) == {"accuracy": 0.5}


# -- words to pieces --------------------------------------------------------------------------------------
def _roberta_tokenizer(path):
    texts = [" ".join(random.Random(i).choices(WORDS, k=10)) + " The King's." for i in range(40)]
    tok = train_tokenizer(texts, "bytelevel_bpe", vocab_size=300, min_frequency=1)
    tok.save_pretrained(path)
    return load_tokenizer(path)


@pytest.mark.parametrize("kind", ["wordpiece", "bytelevel_bpe"])
def test_each_words_first_piece_carries_its_tag_and_the_pieces_are_the_joined_texts(kind, ckpt, tmp_path):
    tok = load_tokenizer(ckpt) if kind == "wordpiece" else _roberta_tokenizer(tmp_path)
    words = ["the", "king's", "Crown", "jest.", "death"]
    tags = ["O", "B-PER", "I-PER", "O", "S-X"]
    task = Task("token_classification", ["O", "B-PER", "I-PER", "S-X"])
    [example], cut = tagged_examples([(words, tags)], tok, 64, task)
    assert cut == 0
    # the pieces are those of the sentence written out: byte-level BPE's words after the first read "Ġword"
    assert example["input_ids"] == tok.encode(" ".join(words), add_special_tokens=True)
    labelled = [i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX]
    assert labelled == example["word_starts"]
    assert [example["labels"][i] for i in labelled] == [0, 1, 2, 0, 3] == example["tags"]
    starts = example["word_starts"] + [len(example["input_ids"]) - 1]
    space = " " if kind == "bytelevel_bpe" else ""
    for i, (word, a, b) in enumerate(zip(words, starts[:-1], starts[1:], strict=True)):  # from its start to the next
        assert example["input_ids"][a:b] == tok.encode((space if i else "") + word)


def test_words_cut_by_max_seq_length_are_counted_and_scored_as_untagged(ckpt):
    tok = load_tokenizer(ckpt)
    words = ["king"] * 10
    task = Task("token_classification", ["O", "S-K"])
    [example], cut = tagged_examples([(words, ["S-K"] * 10)], tok, 8, task)  # room for 6 words
    assert cut == 4 and example["word_starts"][6:] == [-1] * 4 and len(example["input_ids"]) == 8

    class Perfect(torch.nn.Module):  # predicts every labelled piece's gold tag
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, **_):
            logits = torch.zeros(*input_ids.shape, 2)
            logits[..., 1] = 1.0
            return type("Out", (), {"logits": logits})

    evaluator = TagEvaluator([example], task, PaddingCollator(0, 8, token_labels=True), 4)
    scores = evaluator(Perfect())
    assert scores["recall"] == 0.6 and scores["precision"] == 1.0 and scores["accuracy"] == 0.6
    assert evaluator.predictions == [["S-K"] * 6 + [None] * 4]  # written as null: no prediction, scored as O


def test_the_collator_pads_token_labels_with_the_ignore_index():
    examples = [{"input_ids": [1, 2, 3], "labels": [-100, 4, -100]}, {"input_ids": [1, 5], "labels": [-100, 2]}]
    batch = PaddingCollator(0, token_labels=True)(examples)
    assert batch["labels"].tolist() == [[-100, 4, -100], [-100, 2, -100]]
    assert PaddingCollator(0, 6, "max_length", token_labels=True)(examples)["labels"].shape == (2, 6)


# -- files -----------------------------------------------------------------------------------------------
def test_conll_text_is_read_by_its_first_and_last_columns(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\nPeter NNP B-NP B-PER\n")
    assert read_tagged(path) == [(["EU", "rejects"], ["B-ORG", "O"]), (["Peter"], ["B-PER"])]
    path.write_text("EU B-ORG\nrejects\n")
    with pytest.raises(ValueError, match=r"line 2 holds one column"):
        read_tagged(path)


def test_conll_columns_are_split_by_spaces_and_tabs_only_and_json_under_another_name_is_refused(tmp_path):
    """str.split() cut "New\u00a0York" at its no-break space (York dropped without a word) and splitlines() a word
    at U+2028; a JSON lines file named .ndjson was read as CoNLL, each line a "word" tagged 'O"]}'."""
    path = tmp_path / "train.conll"
    path.write_bytes("New\u00a0York B-LOC\nis O\nking\u2028dom\tO\r\n[ O\n\nx\x0cy O\n".encode())
    assert read_tagged(path) == [(["New\u00a0York", "is", "king\u2028dom", "["], ["B-LOC", "O", "O", "O"]),
                                 (["x\x0cy"], ["O"])]
    path = tmp_path / "train.ndjson"
    path.write_text(json.dumps({"tokens": ["a"], "tags": ["O"]}) + "\n")
    with pytest.raises(ValueError, match=r"its first line is JSON, but only a .json or .jsonl file .*rename it"):
        read_tagged(path)


@pytest.mark.parametrize("row, message", [
    ({"tokens": ["a", "b"], "tags": ["O"]}, r"row 1 has 2 words but 1 tags"),
    ({"tokens": ["a"], "tags": [3]}, r"'tags' must be a list of strings.*tag ids: write each tag's name"),
    ({"tokens": "a b", "tags": ["O", "O"]}, r"'tokens' must be a list of strings"),
    ({"tokens": [101, 7], "tags": ["O", "O"]}, r"'tokens' must be .*\(token ids: write the words themselves"),
    ({"words": ["a"], "tags": ["O"]}, r"no column \['tokens'\]; the columns are \['tags', 'words'\].*--text_column"),
    ({"tokens": [], "tags": []}, r"row 1 has no words"),
])
def test_bad_rows_are_refused_naming_the_row_and_the_fix(tmp_path, row, message):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=message):
        read_tagged(path)


def test_a_csv_and_a_single_tag_and_an_unseen_tag_are_refused(tmp_path, ckpt):
    (tmp_path / "t.csv").write_text("tokens,tags\na,O\n")
    with pytest.raises(ValueError, match=r"a CSV cell does not hold.*JSON lines.*CoNLL"):
        read_tagged(tmp_path / "t.csv")
    with pytest.raises(ValueError, match=r"every word is tagged 'O'"):
        tag_task([(["a"], ["O"])])
    task = tag_task([(["a", "b"], ["B-X", "O"])])
    assert task.label_names == ["O", "B-X"]  # O first, whatever the file's order
    with pytest.raises(ValueError, match=r"sentence 1 has the tag 'B-Y', which the training file never uses"):
        tagged_examples([(["a"], ["B-Y"])], load_tokenizer(ckpt), 16, task)


# -- train.py end to end -----------------------------------------------------------------------------------
def tagged_rows(n: int, seed: int) -> list[dict]:
    """A learnable task over WORDS: a word of the court is a person (B-PER), a crown or a sword a thing (B-OBJ)."""
    rng = random.Random(seed)
    kinds = {"king": "B-PER", "queen": "B-PER", "fool": "B-PER", "ghost": "B-PER", "crown": "B-OBJ", "sword": "B-OBJ"}
    out = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(3, 9))
        out.append({"words": words, "labels": [kinds.get(w, "O") for w in words]})
    return out


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def run_tagging(ckpt, tmp_path, *extra):
    argv = ["--task_type", "token_classification", "--model_name_or_path", str(ckpt),
            "--train_file", write(tmp_path / "train.jsonl", tagged_rows(64, 0)),
            "--validation_file", write(tmp_path / "dev.jsonl", tagged_rows(24, 1)),
            "--text_column", "words", "--label_column", "labels", "--output_dir", str(tmp_path / "out"),
            "--max_steps", "40", "--eval_steps", "20", "--per_device_train_batch_size", "16", "--max_seq_length",
            "32", "--disable_tqdm", "--device", "cpu", "--learning_rate", "3e-3", "--warmup_ratio", "0", *extra]
    args, training = train.parse(argv)
    training.plot_loss = False
    return train.finetune(args, training)


def test_a_tagging_run_learns_saves_its_tags_and_hugging_face_reads_the_model(ckpt, tmp_path, caplog):
    import transformers

    result = run_tagging(ckpt, tmp_path)
    assert "words do not fit" not in caplog.text
    assert result.task.problem_type == "token_classification" and result.task.label_names == ["O", "B-OBJ", "B-PER"]
    assert result.metrics["f1"] > 0.9  # the tags follow the words; guessing, or "O" everywhere, scores near 0
    out = tmp_path / "out"
    record = json.loads((out / "eval_results.json").read_text())
    assert record["metrics"] == pytest.approx(result.metrics)
    predictions = [json.loads(line) for line in (out / "tag_predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 24 and tagging_metrics([p["tags"] for p in predictions],
                                                      [p["predicted"] for p in predictions]) == pytest.approx(
        {k: v for k, v in result.metrics.items() if k != "loss"})
    model, tok = load_finetuned(out), load_tokenizer(out)
    sentences = [p["tokens"] for p in predictions]
    assert predict_tags(model, tok, sentences, 32, batch_size=5) == [p["predicted"] for p in predictions]
    ours = BertForTokenClassification.from_pretrained(out).eval()
    theirs = transformers.AutoModelForTokenClassification.from_pretrained(out).eval()
    assert theirs.config.id2label == {0: "O", 1: "B-OBJ", 2: "B-PER"}
    ids = torch.tensor([load_tokenizer(out).encode("the king fool love", add_special_tokens=True)])
    torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, rtol=1e-5, atol=1e-5)


def test_random_weights_and_a_roberta_tag_too(tmp_path, ckpt):
    result = run_tagging("random", tmp_path, "--config_name", str(ckpt), "--max_steps", "2")
    assert set(result.metrics) == {"loss", "f1", "precision", "recall", "accuracy"}
    roberta = tmp_path / "roberta"
    _roberta_tokenizer(roberta)
    config = RobertaConfig(vocab_size=load_tokenizer(roberta).vocab_size, hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=32, max_position_embeddings=40)
    RobertaForMaskedLM(config).save_pretrained(roberta)
    (tmp_path / "r").mkdir()
    result = run_tagging(roberta, tmp_path / "r", "--max_steps", "2")
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    assert json.loads((tmp_path / "r" / "out" / "config.json").read_text())["architectures"] == [
        "RobertaForTokenClassification"]


def test_plain_tags_are_scored_by_accuracy_and_the_best_metric_must_be_one_of_theirs(ckpt, tmp_path, caplog):
    rows = [{"tokens": r["words"], "tags": ["NN" if t == "O" else "NNP" for t in r["labels"]]}
            for r in tagged_rows(40, 0)]
    argv = ["--task_type", "token_classification", "--model_name_or_path", str(ckpt), "--train_file",
            write(tmp_path / "pos.jsonl", rows), "--validation_file", str(tmp_path / "pos.jsonl"), "--output_dir",
            str(tmp_path / "out"), "--max_steps", "2", "--disable_tqdm", "--device", "cpu", "--max_seq_length", "8"]
    args, training = train.parse(argv)
    training.plot_loss = False
    result = train.finetune(args, training)
    assert set(result.metrics) == {"loss", "accuracy"}
    # a plain tag has no "untagged": a cut word counts as wrong
    assert "validation words do not fit --max_seq_length 8 and are scored as wrong" in caplog.text
    args, training = train.parse(argv + ["--metric_for_best_model", "f1", "--overwrite_output_dir"])
    with pytest.raises(ValueError, match=r"is evaluated by loss, accuracy"):
        train.finetune(args, training)


def test_the_default_tagging_run_reads_the_shipped_task(tmp_path):
    args, training = train.parse(["--task_type", "token_classification"])
    assert (args.train_file, args.validation_file) == (str(DEFAULT_TAGGING_TRAIN_FILE),
                                                        str(DEFAULT_TAGGING_VALIDATION_FILE))
    assert (args.text_column, args.label_column) == ("tokens", "tags")
    assert training.output_dir == "runs/finetune-shakespeare-turns"  # not the genre task's run
    assert train.parse([])[1].output_dir == "runs/finetune-shakespeare-genre"


@pytest.mark.parametrize("flag", [["--pooling", "mean"], ["--text_pair_column", "x"],
                                  ["--ladder_side_tuning", "2"], ["--reinit_pooler"], ["--num_labels", "3"],
                                  ["--multi_label_loss", "zlpr"], ["--multitask", "a=a.jsonl", "b=b.jsonl"]])
def test_sequence_level_flags_are_refused_before_any_work(flag, ckpt, tmp_path):
    args, training = train.parse(["--task_type", "token_classification", "--model_name_or_path", str(ckpt),
                                  "--output_dir", str(tmp_path / "out"), *flag])
    with pytest.raises(ValueError, match=rf"{flag[0]} is not for --task_type token_classification"):
        train.finetune(args, training)
    assert not (tmp_path / "out").exists()


def test_a_sentence_classifiers_head_is_not_taken_for_a_token_head(ckpt, tmp_path, caplog):
    """BERT's sequence and token heads are both `classifier` (hidden -> labels): a genre classifier's rows were
    loaded as a 2-tag token head."""
    from minibert.models.bert import BertForSequenceClassification

    source = tmp_path / "classifier"
    sentence_model = BertForSequenceClassification.from_pretrained(ckpt, num_labels=3)
    torch.nn.init.constant_(sentence_model.classifier.weight, 0.5)
    sentence_model.save_pretrained(source)
    load_tokenizer(ckpt).save_pretrained(source)
    result = run_tagging(source, tmp_path, "--max_steps", "1", "--learning_rate", "1e-9")
    assert result.metrics
    assert "training words do not fit --max_seq_length 32" not in caplog.text
    (tmp_path / "short").mkdir()
    run_tagging(source, tmp_path / "short", "--max_seq_length", "8", "--max_steps", "1")
    assert "training words do not fit --max_seq_length 8 and are not trained on" in caplog.text
    assert "validation words do not fit --max_seq_length 8 and are scored as untagged" in caplog.text
    model = load_finetuned(tmp_path / "out")
    assert model.classifier.weight.shape == (3, 16) and not torch.allclose(model.classifier.weight,
                                                                             torch.full((3, 16), 0.5), atol=1e-3)
    assert "its classifier scores whole texts, so this run's head starts afresh" in caplog.text
    # ... and the other way: a sentence task from the token classifier starts its head afresh too
    caplog.clear()
    (tmp_path / "back").mkdir()
    rows = [{"sentence": " ".join(r["words"]), "label": ["a", "b", "c"][i % 3]}
            for i, r in enumerate(tagged_rows(12, 0))]
    args, training = train.parse(["--model_name_or_path", str(tmp_path / "out"), "--train_file",
                                  write(tmp_path / "back" / "s.jsonl", rows), "--text_column", "sentence",
                                  "--output_dir", str(tmp_path / "back" / "out"), "--max_steps", "1", "--disable_tqdm",
                                  "--device", "cpu", "--max_seq_length", "32", "--learning_rate", "1e-9"])
    training.plot_loss = False
    train.finetune(args, training)
    assert "saved as BertForTokenClassification: its classifier scores single words" in caplog.text
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved.get("problem_type") is None  # not the sentence classifier's single_label_classification


def test_accumulated_micro_batches_are_weighed_by_their_labelled_words(ckpt, tmp_path):
    """A token loss is a mean over labelled pieces: two accumulated micro-batches count as one batch of both
    (the model's loss_items), not half each."""
    seen = []

    class Weights:
        def on_backward_end(self, trainer, batch):
            seen.append((trainer.loss_weight, int((batch["labels"] != IGNORE_INDEX).sum())))

    argv = ["--task_type", "token_classification", "--model_name_or_path", str(ckpt), "--train_file",
            write(tmp_path / "train.jsonl", tagged_rows(16, 3)), "--text_column", "words", "--label_column", "labels",
            "--output_dir", str(tmp_path / "out"),
            "--max_steps", "1", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2",
            "--disable_tqdm", "--device", "cpu", "--max_seq_length", "32", "--group_by_length", "false"]
    args, training = train.parse(argv)
    training.plot_loss = False
    train.finetune(args, training, callbacks=[Weights()])
    (w1, n1), (w2, n2) = seen
    assert n1 != n2 and (w1, w2) == pytest.approx((n1 / (n1 + n2), n2 / (n1 + n2)))


def test_a_resume_under_other_tags_is_refused_naming_them(ckpt, tmp_path):
    run_tagging(ckpt, tmp_path, "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2")
    renamed = [{"words": r["words"], "labels": [t.replace("B-OBJ", "B-THING") for t in r["labels"]]}
               for r in tagged_rows(64, 0)]
    write(tmp_path / "train.jsonl", renamed)
    args, training = train.parse(["--task_type", "token_classification", "--model_name_or_path", str(ckpt),
                                  "--train_file", str(tmp_path / "train.jsonl"), "--text_column", "words",
                                  "--label_column", "labels", "--output_dir", str(tmp_path / "out"),
                                  "--resume_from_checkpoint", "last", "--max_steps", "6", "--disable_tqdm",
                                  "--device", "cpu", "--max_seq_length", "32", "--learning_rate", "3e-3",
                                  "--warmup_ratio", "0", "--eval_steps", "2", "--save_steps", "2"])
    training.plot_loss = False
    with pytest.raises(ValueError, match=r"labels: \['O', 'B-OBJ', 'B-PER'\] then, \['O', 'B-PER', 'B-THING'\] now"):
        train.finetune(args, training)


def test_mixed_schemes_conll_u_and_strings_are_refused_and_any_other_file_reads_as_conll(tmp_path, ckpt):
    with pytest.raises(ValueError, match=r"the tags OBJ are not entity tags .* as B-PER are"):
        tag_task([(["a", "b", "c"], ["OBJ", "B-PER", "O"])])
    (tmp_path / "eng.train").write_text("EU B-ORG\nrejects O\n")  # CoNLL-2003's own file names
    assert read_tagged(tmp_path / "eng.train") == [(["EU", "rejects"], ["B-ORG", "O"])]
    (tmp_path / "t.tsv").write_bytes("Tr\xe4ume\tO\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"t.tsv.*UTF-8"):
        read_tagged(tmp_path / "t.tsv")
    (tmp_path / "ud.conllu").write_text("# sent_id = 1\n# text = The king.\n1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n")
    with pytest.raises(ValueError, match=r"as CoNLL-U \(Universal Dependencies\) writes"):
        read_tagged(tmp_path / "ud.conllu")
    model = BertForTokenClassification.from_pretrained(ckpt, num_labels=2)
    with pytest.raises(ValueError, match=r"lists of words \(a string would be tagged letter by letter\)"):
        predict_tags(model, load_tokenizer(ckpt), ["the king"])


def test_a_column_named_as_another_tasks_default_is_read(ckpt, tmp_path):
    """--text_column text and --label_column label were read as tokens and tags."""
    rows = [{"text": r["words"], "label": r["labels"]} for r in tagged_rows(16, 0)]
    args, _ = train.parse(["--task_type", "token_classification", "--train_file", write(tmp_path / "t.jsonl", rows),
                           "--text_column", "text", "--label_column", "label"])
    assert (args.text_column, args.label_column) == ("text", "label")
    assert len(read_tagged(args.train_file, args.text_column, args.label_column)) == 16


def test_tagging_from_a_pooling_runs_checkpoint_gives_no_advice_it_would_refuse(ckpt, tmp_path, caplog):
    rows = [{"sentence": " ".join(r["words"]), "label": ["a", "b"][i % 2]} for i, r in enumerate(tagged_rows(8, 0))]
    args, training = train.parse(["--model_name_or_path", str(ckpt), "--train_file", write(tmp_path / "s.jsonl", rows),
                                  "--text_column", "sentence", "--pooling", "mean", "--output_dir",
                                  str(tmp_path / "pooled"), "--max_steps", "1", "--disable_tqdm", "--device", "cpu",
                                  "--max_seq_length", "32"])
    training.plot_loss = False
    train.finetune(args, training)
    caplog.clear()
    run_tagging(tmp_path / "pooled", tmp_path, "--max_steps", "1")
    assert "was saved by a --pooling mean run" in caplog.text
    assert "pass --pooling" not in caplog.text
    assert "reads every token, not a sentence head's pooled vector" in caplog.text


def test_a_checkpoint_of_a_run_that_recorded_no_recipe_still_resumes(ckpt, tmp_path):
    """Runs before 2026-11-25 saved "recipe": None; the labels' recipe made every such resume a refusal that no
    setting could satisfy."""
    from minibert.engine.checkpointing import STATE_FILE

    run_tagging(ckpt, tmp_path, "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2")
    for checkpoint in (tmp_path / "out").glob("checkpoint-*"):
        state = torch.load(checkpoint / STATE_FILE, weights_only=True)
        assert state["trainer"]["run_settings"]["recipe"] == {"task": "token_classification",
                                                              "labels": ["O", "B-OBJ", "B-PER"]}
        state["trainer"]["run_settings"]["recipe"] = None
        torch.save(state, checkpoint / STATE_FILE)
    result = run_tagging(ckpt, tmp_path, "--max_steps", "6", "--eval_steps", "2", "--save_steps", "2",
                         "--resume_from_checkpoint", "last")
    assert result.metrics


def test_adapters_tag_and_answer_and_come_back_beside_their_base(ckpt, tmp_path):
    """--adapter_size trains adapters, LayerNorms and the token (or span) head beside the frozen base, and
    load_finetuned rebuilds that head on the base: its predictions are the run's own."""
    from test_extractive_qa import qa_rows, run_qa

    from minibert.finetune.extractive_qa import predict_answers

    result = run_tagging(ckpt, tmp_path, "--adapter_size", "4", "--learning_rate", "1e-2")
    out = tmp_path / "out"
    assert (out / "trained.safetensors").is_file() and not (out / "model.safetensors").exists()
    saved = [json.loads(line) for line in (out / "tag_predictions.jsonl").read_text().splitlines()]
    model, tok = load_finetuned(out), load_tokenizer(out)
    assert type(model).__name__ == "BertForTokenClassification" and result.metrics["accuracy"] > 0.6
    assert predict_tags(model, tok, [s["tokens"] for s in saved], 32) == [s["predicted"] for s in saved]
    (tmp_path / "qa").mkdir()
    run_qa(ckpt, tmp_path / "qa", "--adapter_size", "4", "--learning_rate", "1e-2")
    out = tmp_path / "qa" / "out"
    saved = [json.loads(line) for line in (out / "qa_predictions.jsonl").read_text().splitlines()]
    model, tok = load_finetuned(out), load_tokenizer(out)
    assert type(model).__name__ == "BertForQuestionAnswering"
    asked = [(r["question"], r["context"]) for r in qa_rows(24, 1)]
    assert predict_answers(model, tok, asked, 32, doc_stride=4) == [s["predicted"] for s in saved]


def test_a_head_of_another_size_is_started_afresh_once(ckpt, tmp_path, caplog):
    """A token classifier of 3 tags under a 2-label sentence task: the mismatched head was already new, and was
    initialised a second time with a second warning."""
    run_tagging(ckpt, tmp_path, "--max_steps", "1")
    caplog.clear()
    rows = [{"sentence": " ".join(r["words"]), "label": ["a", "b"][i % 2]} for i, r in enumerate(tagged_rows(8, 0))]
    args, training = train.parse(["--model_name_or_path", str(tmp_path / "out"), "--train_file",
                                  write(tmp_path / "s.jsonl", rows), "--text_column", "sentence", "--output_dir",
                                  str(tmp_path / "two"), "--max_steps", "1", "--disable_tqdm", "--device", "cpu",
                                  "--max_seq_length", "32"])
    training.plot_loss = False
    train.finetune(args, training)
    assert "classifier.weight" in caplog.text and "its classifier scores single words" not in caplog.text


def test_the_predictions_written_are_the_saved_models_under_swa(ckpt, tmp_path, monkeypatch):
    """With --swa_start the trained model is evaluated last, and then the average may replace it (made sure of
    here): the file must hold the model that was saved, the average."""
    import minibert.finetuning

    monkeypatch.setattr(minibert.finetuning, "_better", lambda *_: True)  # the average is the final model
    result = run_tagging(ckpt, tmp_path, "--swa_start", "0.5", "--swa_lr", "3")  # an average far from the model
    assert result.swa_is_final
    out = tmp_path / "out"
    saved = [json.loads(line) for line in (out / "tag_predictions.jsonl").read_text().splitlines()]
    model, tok = load_finetuned(out), load_tokenizer(out)
    assert predict_tags(model, tok, [s["tokens"] for s in saved], 32) == [s["predicted"] for s in saved]

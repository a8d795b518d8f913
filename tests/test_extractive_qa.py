"""Extractive question answering (`train.py --task_type question_answering`, minibert/finetune/extractive_qa.py): the
SQuAD scores against torchmetrics' port of the official script, the pair framing against the tokenizer's own, context
windows, span choice, the files it reads, a run end to end whose saved model Hugging Face loads to the same logits,
SQuAD 2.0's "no answer", and bad input."""

import json
import random

import pytest
import torch
from test_train import WORDS, tiny_checkpoint

import train
from minibert.finetune.extractive_qa import (
    QACollator,
    QAEvaluator,
    Question,
    answer_text,
    best_span,
    normalize_answer,
    predict_answers,
    qa_features,
    read_questions,
    squad_scores,
)
from minibert.finetuning import DEFAULT_QA_TRAIN_FILE, DEFAULT_QA_VALIDATION_FILE, load_finetuned
from minibert.models.bert import BertForQuestionAnswering, RobertaConfig, RobertaForMaskedLM
from minibert.tokenizer import load_tokenizer, train_tokenizer

COURT = ("king", "queen", "fool", "ghost")
OTHERS = [w for w in WORDS if w not in COURT]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny pretrained BERT and its WordPiece tokenizer of WORDS (test_train's)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


# -- scores against the official script (torchmetrics' port) ------------------------------------------------
def test_exact_match_and_f1_are_the_official_squad_scripts():
    from torchmetrics.functional.text import squad

    rng = random.Random(0)
    vocabulary = ["The", "king", "a", "Crown,", "an", "sword.", "of", "Denmark", "the", "ghost!", "night"]
    predictions, golds = [], []
    for _ in range(300):
        golds.append([" ".join(rng.choices(vocabulary, k=rng.randint(1, 4))) for _ in range(rng.randint(1, 3))])
        predictions.append(" ".join(rng.choices(vocabulary, k=rng.randint(1, 4))) if rng.random() < 0.7
                           else golds[-1][0].upper())
    theirs = squad([{"prediction_text": p, "id": str(i)} for i, p in enumerate(predictions)],
                   [{"answers": {"text": g, "answer_start": [0] * len(g)}, "id": str(i)} for i, g in enumerate(golds)])
    ours = squad_scores(predictions, golds)
    assert ours["exact_match"] * 100 == pytest.approx(float(theirs["exact_match"]), abs=1e-4)
    assert ours["f1"] * 100 == pytest.approx(float(theirs["f1"]), abs=1e-4)


def test_normalisation_and_no_answer_by_hand():
    assert normalize_answer("  The King's   Crown! ") == "kings crown"
    assert squad_scores(["the crown"], [["Crown", "a sword"]]) == {"exact_match": 1.0, "f1": 1.0}
    # "old crown" against "crown of gold": 1 word shared, precision 1/2, recall 1/3
    assert squad_scores(["the old crown"], [["crown of gold"]])["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (5 / 6))
    assert squad_scores(["", "king"], [[], []]) == {"exact_match": 0.5, "f1": 0.5}  # "" is right only for no answer


# -- features -----------------------------------------------------------------------------------------------
def _roberta(path):
    texts = [" ".join(random.Random(i).choices(WORDS, k=10)) + " Who? The King's." for i in range(40)]
    train_tokenizer(texts, "bytelevel_bpe", vocab_size=300, min_frequency=1).save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["wordpiece", "bytelevel_bpe"])
def test_a_window_is_the_tokenizers_own_pair_encoding_and_its_positions_point_at_the_answer(kind, ckpt, tmp_path):
    tok = load_tokenizer(ckpt if kind == "wordpiece" else _roberta(tmp_path))
    context = "the night song of the fool and the queen"
    q = Question("1", "who sings", context, ["the fool"], [context.index("the fool")])
    [feature] = qa_features([q], tok, 64, 8)
    pair = tok("who sings", context)
    assert feature["input_ids"] == pair["input_ids"][0].tolist()
    if kind == "wordpiece":
        assert feature["token_type_ids"] == pair["token_type_ids"][0].tolist()
    head = feature["context_start"]
    s, e = feature["start_positions"], feature["end_positions"]
    assert answer_text(context, feature["offsets"], s - head, e - head) == "the fool"


def test_a_long_context_is_read_in_overlapping_windows_and_each_holds_the_answer_whole_or_points_at_cls(ckpt):
    tok = load_tokenizer(ckpt)
    words = [OTHERS[i % len(OTHERS)] for i in range(60)]
    words[40] = "ghost"
    context = " ".join(words)
    q = Question("1", "who", context, ["ghost"], [context.index("ghost")])
    features = qa_features([q], tok, 24, 6)  # 24 - 3 specials - 1 question piece: 20 context pieces a window
    pieces = len(tok.encode(context))
    assert len(features) > 1 and all(len(f["input_ids"]) <= 24 for f in features)
    spans = [(f["offsets"][0], f["offsets"][-1]) for f in features]
    for before, after in zip(features, features[1:], strict=False):  # doc_stride pieces shared by neighbours
        assert before["offsets"][-6:] == after["offsets"][:6]
    assert spans[0][0][0] == 0 and spans[-1][1][1] == len(context) and pieces >= 60
    holding = [f for f in features if f["start_positions"]]
    assert holding and all(answer_text(context, f["offsets"], f["start_positions"] - f["context_start"],
                                       f["end_positions"] - f["context_start"]) == "ghost" for f in holding)
    assert all(f["end_positions"] == 0 for f in features if not f["start_positions"])


def test_the_best_span_stays_in_the_context_in_order_and_short_enough():
    feature = {"context_start": 3, "offsets": [(0, 3), (4, 8), (9, 12), (13, 17)]}  # positions 3..6
    start, end = torch.zeros(10), torch.zeros(10)
    start[0] = end[0] = start[1] = end[9] = 50.0  # [CLS], the question and padding are never an answer
    start[5], end[4] = 5.0, 4.0  # 5 -> 4 would score 9, but ends before it starts
    start[4], end[6] = 3.0, 3.0
    assert best_span(start, end, feature, max_answer_length=30) == (8.0, 2, 3)  # 5 -> 6
    assert best_span(start, end, feature, max_answer_length=1) == (7.0, 1, 1)  # 4 -> 4: one piece at most


# -- files --------------------------------------------------------------------------------------------------
def test_squad_json_and_rows_are_read_and_answers_checked_against_their_offsets(tmp_path):
    squad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "The king sleeps.", "qas": [
        {"id": "a", "question": "Who sleeps?", "answers": [{"text": "king", "answer_start": 4}]},
        {"id": "b", "question": "Who wakes?", "answers": [], "is_impossible": True}]}]}]}
    (tmp_path / "train.json").write_text(json.dumps(squad))
    assert read_questions(tmp_path / "train.json") == [Question("a", "Who sleeps?", "The king sleeps.", ["king"], [4]),
                                                       Question("b", "Who wakes?", "The king sleeps.", [], [])]
    row = {"question": "Who?", "context": "The king sleeps.", "answers": {"text": ["king"], "answer_start": [5]}}
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"row 1: the answer 'king' is not the context's text at its answer_start 5 "
                                         r"\(the text is at 4\)"):
        read_questions(tmp_path / "rows.jsonl")
    (tmp_path / "rows.csv").write_text("question,context,answers\na,b,c\n")
    with pytest.raises(ValueError, match=r"a CSV cell does not hold"):
        read_questions(tmp_path / "rows.csv")
    (tmp_path / "other.jsonl").write_text(json.dumps({"q": "a", "context": "b", "answers": {}}) + "\n")
    with pytest.raises(ValueError, match=r"no column \['question'\]; the columns are \['answers', 'context', 'q'\]"):
        read_questions(tmp_path / "other.jsonl")
    row["answers"] = {"text": ["king"], "answer_start": []}
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"1 answer texts but 0 offsets"):
        read_questions(tmp_path / "rows.jsonl")


# -- train.py end to end ------------------------------------------------------------------------------------
def qa_rows(n: int, seed: int) -> list[dict]:
    """A learnable task over WORDS: the one word of the court in a line is who is there."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(OTHERS, k=rng.randint(4, 9))
        at = rng.randrange(len(words) + 1)
        words.insert(at, rng.choice(COURT))
        context = " ".join(words)
        start = len(" ".join(words[:at])) + (1 if at else 0)
        rows.append({"id": f"{seed}-{i}", "question": "who is there", "context": context,
                     "answers": {"text": [words[at]], "answer_start": [start]}})
    return rows


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def run_qa(model, tmp_path, *extra, rows=qa_rows):
    argv = ["--task_type", "question_answering", "--model_name_or_path", str(model),
            "--train_file", write(tmp_path / "train.jsonl", rows(64, 0)),
            "--validation_file", write(tmp_path / "dev.jsonl", rows(24, 1)), "--output_dir", str(tmp_path / "out"),
            "--max_steps", "40", "--eval_steps", "20", "--per_device_train_batch_size", "16", "--max_seq_length", "32",
            "--disable_tqdm", "--device", "cpu", "--learning_rate", "3e-3", "--warmup_ratio", "0", "--doc_stride", "4",
            *extra]
    args, training = train.parse(argv)
    training.plot_loss = False
    return train.finetune(args, training)


def test_a_qa_run_learns_saves_its_answers_and_hugging_face_reads_the_model(ckpt, tmp_path):
    import transformers

    result = run_qa(ckpt, tmp_path)
    assert result.task.problem_type == "question_answering" and set(result.metrics) == {"loss", "exact_match", "f1"}
    assert result.metrics["exact_match"] > 0.9  # the court word is the answer; a random span scores far below
    out = tmp_path / "out"
    answers = [json.loads(line) for line in (out / "qa_predictions.jsonl").read_text().splitlines()]
    assert len(answers) == 24
    assert squad_scores([a["predicted"] for a in answers], [a["answers"] for a in answers]) == pytest.approx(
        {k: v for k, v in result.metrics.items() if k != "loss"})
    model, tok = load_finetuned(out), load_tokenizer(out)
    rows = qa_rows(24, 1)
    assert predict_answers(model, tok, [(r["question"], r["context"]) for r in rows], 32, doc_stride=4) == [
        a["predicted"] for a in answers]
    ours = BertForQuestionAnswering.from_pretrained(out).eval()
    theirs = transformers.AutoModelForQuestionAnswering.from_pretrained(out).eval()
    batch = tok("who is there", "the king love war")
    mine, hf = ours(**batch), theirs(**batch)
    torch.testing.assert_close(mine.start_logits, hf.start_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mine.end_logits, hf.end_logits, rtol=1e-5, atol=1e-5)


def test_a_roberta_answers_and_windows_train_too(tmp_path):
    roberta = _roberta(tmp_path / "roberta")
    config = RobertaConfig(vocab_size=load_tokenizer(roberta).vocab_size, hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=32, max_position_embeddings=40)
    RobertaForMaskedLM(config).save_pretrained(roberta)
    result = run_qa(roberta, tmp_path, "--max_steps", "2", "--max_seq_length", "20", "--doc_stride", "2")
    assert 0.0 <= result.metrics["f1"] <= 1.0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == [
        "RobertaForQuestionAnswering"]


def test_questions_without_an_answer_let_the_evaluation_answer_nothing(ckpt):
    tok = load_tokenizer(ckpt)
    questions = [Question("a", "who", "the king love", ["king"], [4]), Question("b", "who", "war love", [], [])]
    features = qa_features(questions, tok, 32, 4)
    assert features[1]["start_positions"] == features[1]["end_positions"] == 0  # no answer: [CLS]

    king = tok.convert_tokens_to_ids("king")

    class ClsWins(torch.nn.Module):  # "king" scores highest where there is one, else [CLS]
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, **_):
            logits = torch.where(input_ids == king, 9.0, 0.0)
            logits[:, 0] = torch.where((input_ids == king).any(1), 0.0, 9.0)
            return type("Out", (), {"start_logits": logits, "end_logits": logits.clone()})

    for allow, expected in ((True, {"exact_match": 1.0, "f1": 1.0}), (False, {"exact_match": 0.5, "f1": 0.5})):
        evaluator = QAEvaluator(questions, features, QACollator(tok.pad_token_id), 8, 30, allow_no_answer=allow)
        scores = evaluator(ClsWins())
        assert {k: scores[k] for k in expected} == expected
        assert evaluator.predictions[0] == "king" and (evaluator.predictions[1] == "") == allow


def test_the_default_qa_run_reads_the_shipped_task():
    args, training = train.parse(["--task_type", "question_answering"])
    assert (args.train_file, args.validation_file) == (str(DEFAULT_QA_TRAIN_FILE), str(DEFAULT_QA_VALIDATION_FILE))
    assert (args.text_column, args.text_pair_column, args.label_column) == ("question", "context", "answers")
    assert training.output_dir == "runs/finetune-shakespeare-speakers"


@pytest.mark.parametrize("argv, message", [
    (["--task_type", "question_answering", "--pooling", "mean"], r"--pooling is not for --task_type question_an"),
    (["--task_type", "question_answering", "--num_labels", "2"], r"--num_labels is not for --task_type question_ans"),
    (["--task_type", "question_answering", "--ladder_side_tuning", "4"], r"--ladder_side_tuning is not for --task"),
    (["--doc_stride", "8"], r"--doc_stride is for --task_type question_answering"),
    (["--task_type", "causal_lm", "--doc_stride", "8"], r"--doc_stride is for --task_type question_answering"),
    (["--task_type", "seq2seq", "--max_answer_length", "3"], r"--max_answer_length is for --task_type question"),
    (["--task_type", "question_answering", "--classifier_dropout", "0.5"], r"the span head has no dropout"),
    (["--task_type", "token_classification", "--max_answer_length", "8"], r"--max_answer_length is for --task_type"),
])
def test_flags_that_do_not_fit_are_refused_before_any_work(argv, message, ckpt, tmp_path):
    args, training = train.parse(["--model_name_or_path", str(ckpt), "--output_dir", str(tmp_path / "out"), *argv])
    with pytest.raises(ValueError, match=message):
        train.finetune(args, training)
    assert not (tmp_path / "out").exists()


def test_a_question_that_leaves_no_room_beyond_the_stride_is_refused_naming_it(ckpt):
    long = Question("q7", " ".join(["king"] * 20), "the fool", ["fool"], [4])
    with pytest.raises(ValueError, match=r"question q7 takes 20 pieces.*room for 5 context pieces, not more than "
                                         r"--doc_stride 8"):
        qa_features([long], load_tokenizer(ckpt), 28, 8)


def test_a_single_segment_bert_a_tuple_and_leading_spaces(ckpt, tmp_path):
    from minibert.models.bert import BertConfig, BertForMaskedLM

    tok = load_tokenizer(ckpt)
    one = tmp_path / "one-segment"
    tok.save_pretrained(one)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, type_vocab_size=1)
    BertForMaskedLM(config).save_pretrained(one)
    args, training = train.parse(["--task_type", "question_answering", "--model_name_or_path", str(one),
                                  "--output_dir", str(tmp_path / "out"), "--max_seq_length", "64"])
    with pytest.raises(ValueError, match=r"single segment.*cannot read the context as the second text"):
        train.finetune(args, training)
    model = BertForQuestionAnswering.from_pretrained(ckpt)
    with pytest.raises(ValueError, match=r"a list of \(question, context\) pairs"):
        predict_answers(model, tok, ("who is there", "the king"), 32, doc_stride=4)
    asked = [Question("1", question, "the king", ["king"], [4]) for question in ("who sings", "   who sings")]
    plain, spaced = qa_features(asked, tok, 32, 4)
    assert plain["input_ids"] == spaced["input_ids"]  # leading spaces take no room (run_qa strips them too)


@pytest.mark.parametrize("data, message", [
    ({"data": ["oops"]}, r"article 0 is str \"oops\", not a dict; SQuAD's layout is"),
    ({"data": [{"paragraphs": [{"context": "the king", "qas": ["who"]}]}]}, r"a question of article 0, paragraph 0"),
    ({"data": [{"paragraphs": [{"context": "the king", "qas": [{"id": "q", "question": "who", "answers": {
        "text": ["king"], "answer_start": [4]}}]}]}]}, r"question q's answers .* is for rows"),
])
def test_a_squad_file_of_the_wrong_shape_is_named_not_a_traceback(tmp_path, data, message):
    (tmp_path / "train.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        read_questions(tmp_path / "train.json")


def test_negative_offsets_lists_for_rows_and_a_classifiers_labels_are_refused_or_dropped(ckpt, tmp_path):
    row = {"question": "who", "context": "the king", "answers": {"text": ["the"], "answer_start": [-8]}}
    (tmp_path / "neg.jsonl").write_text(json.dumps(row) + "\n")  # context[-8:-5] is "the": a slice, not an offset
    with pytest.raises(ValueError, match=r"a non-empty text and its character offset, got 'the' at -8"):
        read_questions(tmp_path / "neg.jsonl")
    (tmp_path / "lists.jsonl").write_text(json.dumps(["who", "the king"]) + "\n")
    with pytest.raises(ValueError, match=r'write one \{"question": \.\.\., "context": \.\.\., "answers"'):
        read_questions(tmp_path / "lists.jsonl")
    from minibert.models.bert import BertForSequenceClassification

    classifier = tmp_path / "genre"
    genres = {0: "comedy", 1: "history", 2: "tragedy"}
    BertForSequenceClassification.from_pretrained(ckpt, num_labels=3, id2label=genres).save_pretrained(classifier)
    load_tokenizer(ckpt).save_pretrained(classifier)
    (tmp_path / "qa").mkdir()
    run_qa(classifier, tmp_path / "qa", "--max_steps", "1")
    saved = json.loads((tmp_path / "qa" / "out" / "config.json").read_text())
    assert saved["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"} and saved.get("problem_type") is None

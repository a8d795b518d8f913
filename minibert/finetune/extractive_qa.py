"""Extractive question answering (SQuAD): the answer is a span of the context, found by a start and an end logit
for every token (BERT, Devlin et al. 2018, section 4.2: https://arxiv.org/abs/1810.04805).

    read_questions   SQuAD's JSON ({"data": [{"paragraphs": [{"context", "qas": [...]}]}]}), or JSON lines / a JSON
                     list of rows with a question, a context and answers ({"text": [...], "answer_start": [...]},
                     Hugging Face datasets' squad columns) -> Question list
    qa_features      each question with each window of its context: input_ids, token_type_ids, and the answer's
                     first and last piece in the window (both the no-answer slot when the window does not hold it:
                     0, the [CLS] token; GPT-2's is the window's last token, an end-of-text token put there)
    best_span        one window's start and end logits -> its best span (n-best, --max_answer_length); the best
                     of a question's windows is its answer, cut from the context by answer_text
    squad_scores     exact match and F1, by the official SQuAD script's rules (the best over the gold answers)
    QAEvaluator      all of it at once, on a model; predict_answers: a trained model's answers to new questions

A context longer than the room the question leaves is read in windows of that many pieces, each sharing
--doc_stride pieces with the one before, as Hugging Face's run_qa.py does: an answer cut by one window's end is
whole in the next. Each window trains (a window without the answer learns to point at [CLS], as in SQuAD 2.0's
recipe), and at evaluation the best span of all a question's windows is its answer. When the training data has
questions with no answer (SQuAD 2.0: Rajpurkar et al. 2018, https://arxiv.org/abs/1806.03822), a question is
answered "" when [CLS]'s score (its start + end logit, lowest over the windows; GPT-2: the no-answer slot's, below)
beats the best span's: BERT's rule (section 4.3) at Hugging Face's default threshold 0.

GPT-2 reads left to right: its first token has read nothing but itself, the same in every window of a question, so
it cannot say whether this window holds the answer. Only the last token has read the whole window, so GPT-2's
windows end with its end-of-text token (when its tokenizer adds nothing there) and that token is the no-answer
slot (each feature's no_answer position; Hugging Face's run_qa.py would use the first token). Its span softmax
leaves padding out (`real_only`): a GPT-2 tokenizer without a pad token pads with that same end-of-text token, and
a pad after a window reads the whole window as the slot does, so in Hugging Face's softmax, which reads padding,
the pads took the slot's probability (a toy SQuAD 2.0 task under --padding max_length, seeds 0 / 1 / 2: exact match
0.83 / 0.83 / 0.71 with the pads in the softmax, 0.92 / 0.96 / 0.92 without; tests/test_decoder_classification.py).

Pieces map back to the context through the tokenizer's character offsets, so the answer is the context's own text
(its case, its spaces), whatever the tokenizer did to it. Scores are fractions (0-1), not percentages.
"""

import collections
import json
import math
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from minibert.finetune.smart_batching import PaddingCollator
from minibert.finetune.task_data import DATA_FILE_FLAGS, check_columns, read_rows
from minibert.nn.losses import span_extraction_loss

QA_METRICS = ("exact_match", "f1")
N_BEST = 20  # candidate starts and ends per window, as Hugging Face's run_qa.py
PUNCTUATION = frozenset(string.punctuation)  # what SQuAD's normalisation removes


@dataclass
class Question:
    id: str
    question: str
    context: str
    answers: list[str] = field(default_factory=list)  # gold texts; [] for a question with no answer (SQuAD 2.0)
    starts: list[int] = field(default_factory=list)  # their character offsets in the context


# -- reading ------------------------------------------------------------------------------------
def _squad_questions(data: dict, path) -> list[dict]:
    """SQuAD's nested layout flattened into rows; a part of the wrong kind is named (it would fail on a .get)."""
    rows = []

    def check(value, kind: type, what: str) -> None:
        if not isinstance(value, kind):
            layout = ('{"data": [{"paragraphs": [{"context": "...", "qas": [{"id": "...", "question": "...", '
                      '"answers": [{"text": "...", "answer_start": 0}]}]}]}]}')
            raise ValueError(f"{path}: {what} is {type(value).__name__} {json.dumps(value)[:60]}, not a "
                             f"{kind.__name__}; SQuAD's layout is {layout}")

    for a, article in enumerate(data["data"]):
        check(article, dict, f"article {a}")
        paragraphs = article.get("paragraphs", [])
        check(paragraphs, list, f"article {a}'s paragraphs")
        for p, paragraph in enumerate(paragraphs):
            check(paragraph, dict, f"article {a}, paragraph {p}")
            qas = paragraph.get("qas", [])
            check(qas, list, f"article {a}, paragraph {p}'s qas")
            for qa in qas:
                check(qa, dict, f"a question of article {a}, paragraph {p}")
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                check(answers, list, f"question {qa.get('id')}'s answers (a list of {{text, answer_start}} objects "
                      "in SQuAD's layout; the {text: [...], answer_start: [...]} form is for rows)")
                for answer in answers:
                    check(answer, dict, f"an answer of question {qa.get('id')}")
                rows.append({"id": qa.get("id"), "question": qa.get("question"), "context": paragraph.get("context"),
                             "answers": {"text": [a.get("text") for a in answers],
                                         "answer_start": [a.get("answer_start") for a in answers]}})
    return rows


def read_questions(path: str | os.PathLike, question_column: str = "question", context_column: str = "context",
                   answers_column: str = "answers", flag: str = DATA_FILE_FLAGS) -> list[Question]:
    """The questions of a SQuAD JSON file, or of rows (JSON lines, a JSON list) with question, context and answers
    columns; every answer is checked to be the context's text at its offset."""
    path = Path(path)
    squad = None
    if path.suffix.lower() == ".json" and path.is_file():
        try:
            whole = json.loads(path.read_text(encoding="utf-8-sig"))
        except ValueError:
            whole = None  # read_rows names the problem
        if isinstance(whole, dict) and isinstance(whole.get("data"), list):
            squad = _squad_questions(whole, path)
    if squad is not None:
        rows, where, columns = squad, "question", ("question", "context", "answers")
    else:
        if path.suffix.lower() in (".csv", ".tsv"):
            raise ValueError(f"{path}: question answering reads answers as a list of texts and their offsets, which a "
                             "CSV cell does not hold; write SQuAD's JSON, or JSON lines with question, context and "
                             "answers ({\"text\": [...], \"answer_start\": [...]})")
        rows, where, columns = (read_rows(path, flag, '{"question": ..., "context": ..., "answers": {"text": [...], '
                                          '"answer_start": [...]}}'), "row",
                                (question_column, context_column, answers_column))
    if not rows:
        raise ValueError(f"{path} holds no question; pass a file with at least one")
    check_columns(rows, dict(zip(columns, ("--text_column (the question)", "--text_pair_column (the context)",
                                           "--label_column (the answers)"), strict=True)), path)
    questions = []
    for number, row in enumerate(rows, 1):
        text, context, answers = (row.get(c) for c in columns)
        for name, value in ((columns[0], text), (columns[1], context)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{path}: {where} {number}: {name!r} must be a non-empty text, got "
                                 f"{json.dumps(value)[:80]}")
        if not (isinstance(answers, dict) and isinstance(answers.get("text"), list)
                and isinstance(answers.get("answer_start"), list)):
            raise ValueError(f"{path}: {where} {number}: {columns[2]!r} must be {{\"text\": [...], \"answer_start\": "
                             f"[...]}} (empty lists: no answer), got {json.dumps(answers)[:80]}")
        texts, starts = answers["text"], answers["answer_start"]
        if len(texts) != len(starts):
            raise ValueError(f"{path}: {where} {number} has {len(texts)} answer texts but {len(starts)} offsets")
        for answer, start in zip(texts, starts, strict=True):
            if not isinstance(answer, str) or not isinstance(start, int) or isinstance(start, bool) or not answer \
                    or start < 0:
                raise ValueError(f"{path}: {where} {number}: an answer is a non-empty text and its character offset, "
                                 f"got {answer!r} at {start!r}")
            if context[start : start + len(answer)] != answer:
                found = context.find(answer)
                hint = f" (the text is at {found})" if found >= 0 else " (the context does not hold it)"
                raise ValueError(f"{path}: {where} {number}: the answer {answer!r} is not the context's text at its "
                                 f"answer_start {start}{hint}; answer_start counts characters from 0")
        questions.append(Question(str(row.get("id") if row.get("id") is not None else number), text, context,
                                  list(texts), list(starts)))
    return questions


# -- features -----------------------------------------------------------------------------------
def _plain_encoding(tokenizer, text: str, pair: str | None = None, add_special_tokens: bool = False):
    """The backend's Encoding (ids, offsets, sequence ids) without the truncation or padding a tokenizer.json may
    switch on, which would cut a long context silently."""
    backend = tokenizer.backend
    saved_truncation, saved_padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    try:
        return backend.encode(text, pair, add_special_tokens=add_special_tokens)
    finally:
        if saved_truncation is not None:
            backend.enable_truncation(**saved_truncation)
        if saved_padding is not None:
            backend.enable_padding(**saved_padding)


def pair_frame(tokenizer) -> dict:
    """Where the tokenizer's special tokens frame a (question, context) pair, and each part's token type:
    BERT's [CLS] q [SEP] c [SEP] (types 0 ... 0 1 ... 1), RoBERTa's <s> q </s></s> c </s> (all 0)."""
    encoding = _plain_encoding(tokenizer, "a", "b", add_special_tokens=True)
    ids, types, sequence = encoding.ids, encoding.type_ids, encoding.sequence_ids
    first = [sequence.index(0), sequence.index(1)]
    last = [len(sequence) - 1 - sequence[::-1].index(s) for s in (0, 1)]
    return {"prefix": ids[: first[0]], "middle": ids[last[0] + 1 : first[1]], "suffix": ids[last[1] + 1 :],
            "prefix_types": types[: first[0]], "question_type": types[first[0]],
            "middle_types": types[last[0] + 1 : first[1]], "context_type": types[first[1]],
            "suffix_types": types[last[1] + 1 :]}


def no_answer_at_end(model_type: str | None) -> bool:
    """Whether a family's no-answer slot is each window's last token (GPT-2, causal) rather than its first."""
    return model_type == "gpt2"


def qa_features(questions: list[Question], tokenizer, max_seq_length: int, doc_stride: int,
                path="the data file", at_end: bool = False) -> list[dict]:
    """Every window of every question: input_ids, token_type_ids, start_positions / end_positions (the gold
    answer's first one whose pieces the window holds whole; the no-answer slot when none is), and for evaluation:
    question (its index), no_answer (the slot's position: 0, or with at_end the window's last token, an end-of-text
    token added when the tokenizer frames nothing after the context), context_start (the window's first context
    piece's position), offsets (each context piece's character span)."""
    frame = pair_frame(tokenizer)
    if at_end and not frame["suffix"]:
        if tokenizer.eos_token_id is None:
            raise ValueError("a GPT-2 reader's windows end with its end-of-text token, where it answers \"no answer\", "
                             "but the tokenizer has none; name one in its tokenizer_config.json (\"eos_token\")")
        frame["suffix"], frame["suffix_types"] = [tokenizer.eos_token_id], [frame["context_type"]]
    specials = len(frame["prefix"]) + len(frame["middle"]) + len(frame["suffix"])
    features = []
    for index, q in enumerate(questions):
        question_ids = _plain_encoding(tokenizer, q.question.lstrip()).ids  # (leading spaces: pieces of their own)
        room = max_seq_length - specials - len(question_ids)
        if room <= doc_stride:
            raise ValueError(f"{path}: question {q.id} takes {len(question_ids)} pieces, which leaves --max_seq_length "
                             f"{max_seq_length} room for {max(room, 0)} context pieces, not more than --doc_stride "
                             f"{doc_stride}; pass a larger --max_seq_length or a smaller --doc_stride")
        context = _plain_encoding(tokenizer, q.context)
        ids, offsets = context.ids, context.offsets
        spans = []  # (first piece, last piece) of each gold answer
        for answer, start in zip(q.answers, q.starts, strict=True):
            end = start + len(answer)
            inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
            if inside:
                spans.append((inside[0], inside[-1]))
        head = len(frame["prefix"]) + len(question_ids) + len(frame["middle"])  # the first context piece's position
        window = 0
        while True:
            stop = min(window + room, len(ids))
            input_ids = frame["prefix"] + question_ids + frame["middle"] + ids[window:stop] + frame["suffix"]
            no_answer = len(input_ids) - 1 if at_end else 0
            start_position = end_position = no_answer
            for first, last in spans:
                if window <= first and last < stop:
                    start_position, end_position = head + first - window, head + last - window
                    break
            types = (frame["prefix_types"] + [frame["question_type"]] * len(question_ids) + frame["middle_types"]
                     + [frame["context_type"]] * (stop - window) + frame["suffix_types"])
            features.append({"input_ids": input_ids, "token_type_ids": types, "start_positions": start_position,
                             "end_positions": end_position, "question": index, "no_answer": no_answer,
                             "context_start": head, "offsets": offsets[window:stop]})
            if stop >= len(ids):
                break
            window = stop - doc_stride
    return features


class QACollator:
    """Features -> a batch: PaddingCollator's input_ids, attention_mask, token_type_ids (B, T), and the answers'
    start_positions and end_positions (B,) when the features hold them."""

    def __init__(self, pad_token_id: int, max_length: int | None = None, padding: str = "longest"):
        self.pad = PaddingCollator(pad_token_id, max_length, padding)

    def __call__(self, features: list[dict]) -> dict:
        batch = self.pad(features)
        for key in ("start_positions", "end_positions"):
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
        return batch


# -- answers and scores -------------------------------------------------------------------------
def best_span(start_logits: torch.Tensor, end_logits: torch.Tensor, feature: dict,
              max_answer_length: int) -> tuple[float, int, int] | None:
    """The best (score, first, last context piece) of one window: among its N_BEST best starts and ends, a span
    inside the context, not reversed, of at most max_answer_length pieces; None if no pair qualifies."""
    head, n = feature["context_start"], len(feature["offsets"])
    starts = torch.topk(start_logits, min(N_BEST, len(start_logits))).indices.tolist()
    ends = torch.topk(end_logits, min(N_BEST, len(end_logits))).indices.tolist()
    best = None
    for s in starts:
        for e in ends:
            if not (head <= s < head + n and head <= e < head + n and s <= e < s + max_answer_length):
                continue
            score = float(start_logits[s] + end_logits[e])
            if best is None or score > best[0]:
                best = (score, s - head, e - head)
    return best


def answer_text(context: str, offsets: list[tuple[int, int]], first: int, last: int) -> str:
    """The context's characters from the first piece's start to the last piece's end, without outer spaces (a
    byte-level piece's span holds the space before its word)."""
    return context[offsets[first][0] : offsets[last][1]].strip()


def normalize_answer(text: str) -> str:
    """The official SQuAD script's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _f1(prediction: str, gold: str) -> float:
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not wanted:  # SQuAD 2.0's script: "no answer" is right only against "no answer"
        return float(predicted == wanted)
    common = sum((collections.Counter(predicted) & collections.Counter(wanted)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], golds: list[list[str]]) -> dict:
    """Exact match and F1 averaged over questions, each the best over its gold answers ([] counts as [""])."""
    exact = f1 = 0.0
    for prediction, answers in zip(predictions, golds, strict=True):
        answers = answers or [""]
        exact += max(float(normalize_answer(prediction) == normalize_answer(a)) for a in answers)
        f1 += max(_f1(prediction, a) for a in answers)
    n = max(len(predictions), 1)
    return {"exact_match": exact / n, "f1": f1 / n}


def _answers(model: nn.Module, questions: list[Question], features: list[dict], collate, batch_size: int,
             max_answer_length: int, allow_no_answer: bool, real_only: bool = False) -> tuple[list[str], float]:
    """Each question's answer, and the mean loss over the features that hold answer positions (nan if none;
    real_only: padding left out of its softmax, as GPT-2 trains)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    best: list[tuple[float, str] | None] = [None] * len(questions)
    null: list[float] = [math.inf] * len(questions)
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))  # little padding
    loss_sum, loss_count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = [features[i] for i in order[start : start + batch_size]]
            batch = collate(rows)
            positions = {k: batch.pop(k) for k in ("start_positions", "end_positions") if k in batch}
            out = model(**{k: v.to(device) for k, v in batch.items()})
            starts, ends = out.start_logits.float().cpu(), out.end_logits.float().cpu()  # (B, T) each
            if positions:
                loss_sum += float(span_extraction_loss(starts, ends, positions["start_positions"],
                                                       positions["end_positions"],
                                                       batch["attention_mask"] if real_only else None)) * len(rows)
                loss_count += len(rows)
            for row, feature in enumerate(rows):
                q = feature["question"]
                slot = feature["no_answer"]
                null[q] = min(null[q], float(starts[row, slot] + ends[row, slot]))
                span = best_span(starts[row], ends[row], feature, max_answer_length)
                if span is not None and (best[q] is None or span[0] > best[q][0]):
                    best[q] = (span[0], answer_text(questions[q].context, feature["offsets"], span[1], span[2]))
    model.train(was_training)
    answers = []
    for q in range(len(questions)):
        if best[q] is None or (allow_no_answer and null[q] > best[q][0]):
            answers.append("")
        else:
            answers.append(best[q][1])
    return answers, loss_sum / loss_count if loss_count else math.nan


def real_span_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, object]:
    """The span loss with padding left out of its softmax (a GPT-2 reader's, in train.py) -> (loss, outputs)."""
    positions = {k: batch[k] for k in ("start_positions", "end_positions")}
    outputs = model(**{k: v for k, v in batch.items() if k not in positions})
    return span_extraction_loss(outputs.start_logits, outputs.end_logits, positions["start_positions"],
                                positions["end_positions"], batch["attention_mask"]), outputs


class QAEvaluator:
    """Called with a model: its span loss on the validation windows, and exact match and F1 of its answers.
    `predictions` holds the last call's answers, one per question."""

    def __init__(self, questions: list[Question], features: list[dict], collate, batch_size: int,
                 max_answer_length: int, allow_no_answer: bool, real_only: bool = False):
        self.questions, self.features, self.collate, self.batch_size = questions, features, collate, batch_size
        self.max_answer_length, self.allow_no_answer, self.real_only = max_answer_length, allow_no_answer, real_only
        self.predictions: list[str] = []

    def __call__(self, model: nn.Module) -> dict:
        self.predictions, loss = _answers(model, self.questions, self.features, self.collate, self.batch_size,
                                          self.max_answer_length, self.allow_no_answer, self.real_only)
        return {"loss": loss, **squad_scores(self.predictions, [q.answers for q in self.questions])}


def predict_answers(model: nn.Module, tokenizer, questions: list[tuple[str, str]], max_seq_length: int = 128,
                    doc_stride: int = 32, max_answer_length: int = 30, allow_no_answer: bool = False,
                    batch_size: int = 64) -> list[str]:
    """A trained model's answer to each (question, context) pair: a span of the context ("" for no answer, with
    allow_no_answer)."""
    if isinstance(questions, tuple) or not all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(t, str) for t in p) for p in questions):
        raise ValueError("predict_answers takes a list of (question, context) pairs of texts, e.g. "
                         "[(\"Who says it?\", context)]; for one question, pass a list of one pair")
    asked = [Question(str(i), question, context) for i, (question, context) in enumerate(questions)]
    config = getattr(getattr(model, "module", model), "config", None)  # (through a DDP wrapper too)
    features = qa_features(asked, tokenizer, max_seq_length, doc_stride, "the questions",
                           at_end=no_answer_at_end(getattr(config, "model_type", None)))
    segments = hasattr(config, "type_vocab_size")  # BERT's, RoBERTa's; not GPT-2's or BART's
    for feature in features:  # no answers to learn: nothing to score
        del feature["start_positions"], feature["end_positions"]
        if not segments:
            del feature["token_type_ids"]
    # (a tokenizer without a pad token, as Hugging Face's GPT-2 family: its end token pads, hidden by the mask)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return _answers(model, asked, features, QACollator(pad), batch_size, max_answer_length, allow_no_answer)[0]


def write_answers(path: Path, questions: list[Question], predictions: list[str]) -> None:
    """One JSON line per validation question: its id, question, gold answers and the predicted answer."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for q, predicted in zip(questions, predictions, strict=True):
            f.write(json.dumps({"id": q.id, "question": q.question, "answers": q.answers, "predicted": predicted},
                               ensure_ascii=False) + "\n")

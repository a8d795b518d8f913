"""Token classification: a tag for every word (named entities, part-of-speech tags, speech turns).

    read_tagged       JSON lines / JSON (a list of words and a list of tags per row), or CoNLL text (a word
                      per line, its tag in the last column, a blank line between sentences) -> (words, tags)
    tag_task          the training tags -> a Task (token_classification, the tag names in id order)
    tagged_examples   words and tags -> {"input_ids", "token_type_ids", "labels", "word_starts", "tags"}
    chunks            tags -> entities (type, first word, last word), by the CoNLL evaluation script's rules
    tagging_metrics   entity precision / recall / F1 (micro, over every entity) and word accuracy
    TagEvaluator      a tag for every word (its first piece's argmax), scored against the gold tags
    predict_tags      a trained model's tags for new sentences

Words, not pieces, are what is tagged and scored. The tokenizer cuts a word into pieces; only the first
piece of each word carries the word's tag, the other pieces carry IGNORE_INDEX and are neither trained
nor read (BERT, Devlin et al. 2018, section 5.3: https://arxiv.org/abs/1810.04805). Byte-level BPE reads
a word after a space as "Ġword": each word but the first is encoded with the space before it, so the
pieces are those of the words' text joined by spaces.

A word cut away by --max_seq_length, or one the tokenizer makes no piece of (a control character), gets
no prediction: the evaluator counts it as tagged "O" (outside every entity; a plain-tag task has no "O",
so it counts as wrong), so the scores stay those of every gold entity, not of the ones that fit.

Entity scores follow the CoNLL-2000 script conlleval (https://www.clips.uantwerpen.be/conll2000/chunking/
output.html), which seqeval's default mode copies: tags are O or PREFIX-TYPE with PREFIX one of B, I, E, S
(IOB1, IOB2, IOE, IOBES; BILOU's L and U read as E and S). An entity is right only when both its type and its
exact first and last words are. A task whose tags are not of that form (part-of-speech: NN, VB, ...) is
scored by word accuracy alone.
"""

import json
import logging
import math
import os
import re
from pathlib import Path

import torch
from torch import nn

from minibert.data.corpus import decode_utf8
from minibert.finetune.smart_batching import PaddingCollator
from minibert.finetune.task_data import DATA_FILE_FLAGS, TOKEN_CLASSIFICATION, Task, check_columns, read_rows
from minibert.nn.losses import IGNORE_INDEX, token_classification_loss

logger = logging.getLogger(__name__)

ROW_SUFFIXES = (".json", ".jsonl")  # rows of a list of words and a list of tags; any other file is CoNLL text
ENTITY_TAG = re.compile(r"^([BIESLU])-(.+)$")
COLUMNS = re.compile(r"[ \t]+")  # what splits a CoNLL line into its columns
CONLLU_ID = re.compile(r"^\d+([-.]\d+)?$")  # a CoNLL-U word's index: 1, a multi-word token's 1-2, an empty node's 1.1
OUTSIDE = "O"
ENTITY_METRICS = ("f1", "precision", "recall", "accuracy")
PLAIN_METRICS = ("accuracy",)


# -- reading ------------------------------------------------------------------------------------
def _parses_as_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _read_conll(path: Path) -> list[dict]:
    """CoNLL text: one word per line (lines end at \\n, \\r\\n), its columns split by spaces or tabs, the word first
    and the tag last; a blank line ends a sentence; -DOCSTART- lines (CoNLL-2003's document marks) are skipped."""
    rows, words, tags = [], [], []
    text = decode_utf8(path.read_bytes(), path)
    first = next((line.strip() for line in text.split("\n") if line.strip()), "")
    if first[:1] in ("{", "[") and _parses_as_json(first):  # (a CoNLL line "[ O" does not)
        raise ValueError(f"{path}: its first line is JSON, but only a .json or .jsonl file is read as JSON (any "
                         "other name is CoNLL text: a word and its tag per line); rename it to .jsonl")
    for number, line in enumerate(text.split("\n"), 1):  # lines and columns as CoNLL writes them: a word may hold
        cells = COLUMNS.split(line.strip(" \t\r"))  # any other character, a no-break space or a form feed say
        cells = [] if cells == [""] else cells
        if line.count("\t") == 9 and CONLLU_ID.match(line.split("\t")[0]):  # (its # comment lines come first)
            raise ValueError(f"{path}: line {number} has 10 columns and an index first, as CoNLL-U (Universal "
                             "Dependencies) writes; write the word and its tag on each line (e.g. FORM and UPOS: "
                             "the 2nd and 4th columns), or JSON lines")
        if not cells or cells[0] == "-DOCSTART-":
            if words:
                rows.append({"tokens": words, "tags": tags})
                words, tags = [], []
            continue
        if len(cells) < 2:
            raise ValueError(f"{path}: line {number} holds one column ({line.strip()!r}); a CoNLL file needs the "
                             "word and its tag on each line, split by spaces or tabs (a blank line between "
                             "sentences)")
        words.append(cells[0])
        tags.append(cells[-1])
    if words:
        rows.append({"tokens": words, "tags": tags})
    return rows


def read_tagged(path: str | os.PathLike, tokens_column: str = "tokens", tags_column: str = "tags",
                flag: str = DATA_FILE_FLAGS) -> list[tuple[list[str], list[str]]]:
    """(words, tags) of every row of a tagged file: JSON lines / JSON whose rows hold a list of words and a list
    of as many tags (columns tokens_column and tags_column), or CoNLL text: any other file but a CSV (.conll,
    .iob, .tsv, CoNLL-2003's eng.train, ...)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        raise ValueError(f"{path}: token classification reads a list of words and a list of tags per row, which a "
                         "CSV cell does not hold; write JSON lines ({\"tokens\": [...], \"tags\": [...]}) or "
                         "CoNLL text (a word and its tag per line, split by spaces or tabs; .conll, .tsv, ...)")
    if suffix not in ROW_SUFFIXES and path.is_file():
        rows, tokens_column, tags_column, where = _read_conll(path), "tokens", "tags", "sentence"
    else:
        rows, where = read_rows(path, flag, '{"tokens": [...], "tags": [...]}'), "row"
    if not rows:
        raise ValueError(f"{path} holds no tagged sentence; pass a file with at least one")
    check_columns(rows, {tokens_column: "--text_column (the words)", tags_column: "--label_column (the tags)"}, path)
    pairs = []
    for number, row in enumerate(rows, 1):
        words, tags = row.get(tokens_column), row.get(tags_column)
        for name, value in ((tokens_column, words), (tags_column, tags)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                ids = isinstance(value, list) and value and all(isinstance(v, int) for v in value)
                hint = ("" if not ids else " (tag ids: write each tag's name, e.g. \"B-PER\", so that entities can "
                        "be read)" if name == tags_column else " (token ids: write the words themselves; the "
                        "model's tokenizer splits them)")
                raise ValueError(f"{path}: {where} {number}: {name!r} must be a list of strings, got "
                                 f"{json.dumps(value)[:80]}{hint}")
        if len(words) != len(tags):
            raise ValueError(f"{path}: {where} {number} has {len(words)} words but {len(tags)} tags; give every "
                             "word one tag")
        if not words:
            raise ValueError(f"{path}: {where} {number} has no words; drop it")
        pairs.append((words, tags))
    return pairs


def tag_task(pairs: list[tuple[list[str], list[str]]], path="the training file") -> Task:
    """The tags seen in training, "O" first and the others sorted, so ids do not depend on the file's order.
    Entity tags (B-X, I-X, ...) and plain ones (NN) together are refused: one stray tag would turn entity F1 off."""
    names = sorted({t for _, tags in pairs for t in tags})
    if len(names) < 2:
        raise ValueError(f"{path}: every word is tagged {names[0]!r}; a tagger needs at least two tags to learn")
    entity = [n for n in names if ENTITY_TAG.match(n)]
    plain = [n for n in names if n != OUTSIDE and not ENTITY_TAG.match(n)]
    if entity and plain:
        raise ValueError(f"{path}: the tags {', '.join(plain[:5])} are not entity tags (O, or B-, I-, E-, S- and a "
                         f"type) as {', '.join(entity[:3])} are, so entities could not be scored; write them in one "
                         "scheme (e.g. B-X), or all as plain tags (then word accuracy is the score)")
    logger.info("tags: %s; scored by %s", ", ".join(names), "entity F1 (conlleval's rules)" if entity else
                "word accuracy")
    if OUTSIDE in names:
        names.remove(OUTSIDE)
        names.insert(0, OUTSIDE)
    return Task(TOKEN_CLASSIFICATION, names)


def is_entity_scheme(task: Task) -> bool:
    """Whether the tags mark entities (O, B-X, I-X, ...), so entity F1 can be read; else accuracy alone."""
    return all(n == OUTSIDE or ENTITY_TAG.match(n) for n in task.label_names)


def metric_names(task: Task) -> tuple[str, ...]:
    return ENTITY_METRICS if is_entity_scheme(task) else PLAIN_METRICS


# -- tokens -------------------------------------------------------------------------------------
def encode_words(words: list[str], tokenizer, max_seq_length: int) -> tuple[list[int], list[int], int]:
    """One sentence's input_ids, framed by the tokenizer's special tokens; each word's first-piece position (-1
    for a word the tokenizer makes no piece of, or one cut away by max_seq_length with every word after it);
    and how many words were cut."""
    frame = tokenizer.encode("", add_special_tokens=True)  # [CLS] [SEP], <s> </s>, or nothing (GPT-2's)
    if len(frame) not in (0, 2):
        raise ValueError(f"token classification needs a tokenizer that frames a text in one token each side (BERT's "
                         f"[CLS] ... [SEP], RoBERTa's <s> ... </s>) or adds nothing (GPT-2's); this one adds "
                         f"{len(frame)} tokens")
    opening, closing = frame[:1], frame[1:]
    space = " " if tokenizer.kind == "bytelevel_bpe" else ""  # byte-level BPE reads a word after a space as "Ġword"
    input_ids, starts, cut = list(opening), [], 0
    for pieces in tokenizer.encode_batch([(space if i else "") + w for i, w in enumerate(words)]):
        cut += bool(cut) or len(input_ids) + len(pieces) + len(closing) > max_seq_length
        starts.append(-1 if cut or not pieces else len(input_ids))
        if starts[-1] >= 0:
            input_ids += pieces
    if not input_ids and tokenizer.eos_token_id is not None:
        # a tokenizer that frames nothing (GPT-2's), and a first word longer than max_seq_length: no word is tagged,
        # and the row is the end token alone (a row of no tokens cannot run: the whole batch would fail)
        input_ids = [tokenizer.eos_token_id]
    return input_ids + closing, starts, cut


def tagged_examples(pairs: list[tuple[list[str], list[str]]], tokenizer, max_seq_length: int, task: Task,
                    path="the validation file") -> tuple[list[dict], int]:
    """Tokenised examples and the number of words cut away by max_seq_length. Each example holds input_ids and
    token_type_ids (encode_words), labels (the word's tag id on its first piece, IGNORE_INDEX elsewhere),
    word_starts (encode_words') and tags (every word's gold tag id, kept or not)."""
    ids = {name: i for i, name in enumerate(task.label_names)}
    examples, cut = [], 0
    for number, (words, tags) in enumerate(pairs, 1):
        unknown = sorted({t for t in tags if t not in ids})
        if unknown:
            raise ValueError(f"{path}: sentence {number} has the tag {unknown[0]!r}, which the training file never "
                             f"uses (its tags: {', '.join(task.label_names)}); fix the tag or add examples of it "
                             "to the training file")
        input_ids, starts, cut_here = encode_words(words, tokenizer, max_seq_length)
        labels = [IGNORE_INDEX] * len(input_ids)
        for start, tag in zip(starts, tags, strict=True):
            if start >= 0:
                labels[start] = ids[tag]
        cut += cut_here
        examples.append({"input_ids": input_ids, "token_type_ids": [0] * len(input_ids), "labels": labels,
                         "word_starts": starts, "tags": [ids[t] for t in tags]})
    return examples, cut


# -- entities and scores ------------------------------------------------------------------------
def _split(tag: str) -> tuple[str, str]:
    match = ENTITY_TAG.match(tag)
    if match is None:
        return OUTSIDE, ""
    prefix = {"L": "E", "U": "S"}.get(match.group(1), match.group(1))
    return prefix, match.group(2)


def chunks(tags: list[str]) -> set[tuple[str, int, int]]:
    """The entities (type, first word, last word) a tag sequence marks, by conlleval's rules: an entity
    ends before a B or S, after an E or S, at an O, or where the type changes; one starts at a B or S, at
    an I or E that follows an O, an E or an S, or where the type changes (so IOB1's I-X after O starts one)."""
    found, start = set(), None
    prev_prefix, prev_type = OUTSIDE, ""
    for i, tag in enumerate(list(tags) + [OUTSIDE]):  # a final O closes an entity that runs to the end
        prefix, kind = _split(tag)
        ends = start is not None and (prev_prefix in ("E", "S") or prefix in ("B", "S", OUTSIDE) or kind != prev_type)
        if ends:
            found.add((prev_type, start, i - 1))
            start = None
        begins = prefix != OUTSIDE and (prefix in ("B", "S") or prev_prefix in (OUTSIDE, "E", "S")
                                        or kind != prev_type)
        if begins:
            start = i
        prev_prefix, prev_type = prefix, kind
    return found


def tagging_metrics(gold: list[list[str]], predicted: list[list[str]], entities: bool = True) -> dict:
    """Word accuracy, and (entities=True) entity precision, recall and F1 over all sentences at once."""
    words = sum(len(g) for g in gold)
    right = sum(g == p for gs, ps in zip(gold, predicted, strict=True) for g, p in zip(gs, ps, strict=True))
    metrics = {"accuracy": right / max(words, 1)}
    if not entities:
        return metrics
    true_positives = n_gold = n_predicted = 0
    for gs, ps in zip(gold, predicted, strict=True):
        g, p = chunks(gs), chunks(ps)
        true_positives += len(g & p)
        n_gold += len(g)
        n_predicted += len(p)
    precision = true_positives / n_predicted if n_predicted else 0.0
    recall = true_positives / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall, **metrics}


class TagEvaluator:
    """Called with a model: its loss on the labelled pieces, and the scores of a tag per word. `predictions`
    holds the last call's tags (names), one list per example, for writing out."""

    def __init__(self, examples: list[dict], task: Task, collate, batch_size: int):
        self.examples, self.task, self.collate, self.batch_size = examples, task, collate, batch_size
        self.order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))  # little padding
        self.entities = is_entity_scheme(task)
        self.predictions: list[list[str]] = []

    def __call__(self, model: nn.Module) -> dict:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        names = self.task.label_names
        predicted: list[list[str | None] | None] = [None] * len(self.examples)
        loss_sum, loss_terms = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(self.order), self.batch_size):
                rows = self.order[start : start + self.batch_size]
                batch = self.collate([self.examples[i] for i in rows])
                labels = batch.pop("labels")
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()  # (B, T, C)
                terms = int((labels != IGNORE_INDEX).sum())
                if terms:
                    loss_sum += float(token_classification_loss(logits, labels)) * terms
                    loss_terms += terms
                best = logits.argmax(-1)  # (B, T)
                for row, i in enumerate(rows):
                    predicted[i] = [names[int(best[row, s])] if s >= 0 else None
                                    for s in self.examples[i]["word_starts"]]
        model.train(was_training)
        gold = [[names[t] for t in e["tags"]] for e in self.examples]
        self.predictions = predicted
        missing = OUTSIDE if self.entities else None  # a word without a prediction: outside every entity, or wrong
        metrics = tagging_metrics(gold, [[missing if p is None else p for p in ps] for ps in predicted], self.entities)
        return {"loss": loss_sum / loss_terms if loss_terms else math.nan, **metrics}


def predict_tags(model: nn.Module, tokenizer, sentences: list[list[str]], max_seq_length: int = 128,
                 batch_size: int = 64) -> list[list[str | None]]:
    """A tag for every word of each sentence (a list of words), by a token-classification model, named by its
    config's id2label; None for a word with no prediction (cut by max_seq_length, or of no piece)."""
    if isinstance(sentences, str) or any(isinstance(s, str) for s in sentences):
        raise ValueError("predict_tags takes sentences as lists of words (a string would be tagged letter by "
                         "letter); split them first, e.g. [text.split() for text in texts]")
    # (a tokenizer without a pad token, as Hugging Face's GPT-2's: its end token pads, hidden by the mask)
    collate = PaddingCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    encoded = [encode_words(words, tokenizer, max_seq_length)[:2] for words in sentences]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    tags = []
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            batch = collate([{"input_ids": ids} for ids, _ in chunk])
            best = model(**{k: v.to(device) for k, v in batch.items()}).logits.argmax(-1).cpu()  # (B, T)
            tags += [[model.config.id2label[int(best[row, s])] if s >= 0 else None for s in starts]
                     for row, (_, starts) in enumerate(chunk)]
    model.train(was_training)
    return tags


def write_tag_predictions(path: Path, pairs: list[tuple[list[str], list[str]]], predictions: list[list[str]]) -> None:
    """One JSON line per validation sentence: its words, gold tags and predicted tags (null: no prediction)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for (words, tags), predicted in zip(pairs, predictions, strict=True):
            f.write(json.dumps({"tokens": words, "tags": tags, "predicted": predicted}, ensure_ascii=False) + "\n")

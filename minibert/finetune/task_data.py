"""A task's data: rows from a file, the problem type its labels show, labels as ids, tokenised examples.

    read_rows       CSV / TSV (a header line) or JSON lines / a JSON list -> a list of dicts
    infer_task      --task_type and the training labels -> a Task (problem type, label names in id order)
    encode_label    one label -> a class id, a number (regression) or a 0/1 or score vector (multi-label)
    load_split      one file -> tokenised examples {"input_ids", "token_type_ids", "labels"} and its Task

How `--task_type auto` reads a label column (`_detect_task`), first rule that fits:
    every label a list (JSON, or a string starting with "[")     multi_label_classification
    every label a JSON float (1.0 included)                      regression
    every label parses as a number: any non-integer              regression
                                    all whole numbers             single_label_classification (1, 1.0, "1": one class)
    otherwise                                                    single_label_classification over the text labels
It refuses what could be read two ways: a few words among many numbers (a typo), a text label with "|"
or "," (several labels written as one), some labels lists and others not (a single label written bare in
a multi-label file), an empty or NaN label (a hole, never a class); and a classification with a single
class (nothing to learn). Whatever --task_type says, a label is a list exactly when the task is multi-label
(a forced multi-label task took a text label's characters as its classes), and never a JSON object.
The validation file takes the training file's Task, so a label seen only there is an error, not a new
class. read_rows refuses a column named twice
(a CSV header's or a JSON object's: only the last would be read), a CSV / TSV row with more cells
than the header (an unquoted delimiter inside a cell, which shifts the label), and a cell opening a quote
that never closes (it read the rows after it into itself).
"""

import csv
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from minibert.data.corpus import (
    check_header,
    check_quotes_closed,
    check_row_width,
    check_tsv_row,
    decode_utf8,
    long_csv_fields,
    recording,
)

logger = logging.getLogger(__name__)

GENERATIVE_TASK_TYPES = ("seq2seq", "causal_lm")  # trained by finetune/generative.py
TOKEN_CLASSIFICATION = "token_classification"  # a tag per word: finetune/tagging.py reads its data and scores it
QUESTION_ANSWERING = "question_answering"  # a span of a context: finetune/extractive_qa.py
TASK_TYPES = ("auto", "single_label_classification", "regression", "multi_label_classification",
              TOKEN_CLASSIFICATION, QUESTION_ANSWERING, *GENERATIVE_TASK_TYPES)


@dataclass
class Task:
    problem_type: str
    label_names: list[str] = field(default_factory=list)  # classification labels, in id order

    @property
    def num_labels(self) -> int:
        return 1 if self.problem_type == "regression" else len(self.label_names)


# The flags that name a data file of train.py; a caller with other flags names its own (read_rows's `flag`).
DATA_FILE_FLAGS = "--train_file / --validation_file"


def read_rows(path: str | os.PathLike, flag: str = DATA_FILE_FLAGS,
              row_example: str = '{"text": ..., "label": ...}') -> list[dict]:
    """Rows of a CSV / TSV (header line) or JSON lines / JSON list file. flag: how the command that reads it
    names the file, for the message when it does not exist (evaluate_generation has no --train_file);
    row_example: what a row of the caller's task looks like, for the message when a row is not an object."""
    path = Path(path)
    if path.is_dir():  # (a saved Hugging Face dataset is a directory of Arrow files)
        raise ValueError(f"data file {path} is a directory; pass the file itself (.csv, .tsv, .json or .jsonl)")
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist; pass {flag}")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".json", ".jsonl"):
        raise ValueError(f"{path}: unknown data format {suffix!r}; use .csv, .tsv, .json or .jsonl")
    text = decode_utf8(path.read_bytes(), path)
    if suffix in (".csv", ".tsv"):
        delimiter, other = ("\t", ",") if suffix == ".tsv" else (",", "\t")
        row_lines = []  # the raw lines the reader took for the row being read (check_quotes_closed reads them)
        reader = csv.DictReader(recording(io.StringIO(text, newline=""), row_lines), delimiter=delimiter)
        with long_csv_fields(path, reader):
            header = reader.fieldnames or []  # reads the header line
        if len(header) == 1 and other in header[0]:
            # One column whose name holds the other delimiter: the file was written with that one.
            raise ValueError(f"{path}: the header {header[0]!r} is one column split by {other!r}, not {delimiter!r}; "
                             f"the delimiter is probably wrong: rename the file to "
                             f"{path.with_suffix('.csv' if suffix == '.tsv' else '.tsv').name}")
        if len(header) == 1 and ";" in header[0]:
            # Excel's CSV where the decimal mark is a comma: "Pass --text_column" would not help
            raise ValueError(f"{path}: the header {header[0]!r} is one column split by ';', not {delimiter!r}; "
                             f"{suffix} files are read with {'commas' if delimiter == ',' else 'tabs'}: save it "
                             "with commas (pandas: pd.read_csv(path, sep=';', decimal=',')"
                             ".to_csv('data.csv', index=False)) or tabs (.tsv)")
        check_header(header, path)
        rows = []
        while True:
            first_line = reader.reader.line_num + 1
            row_lines.clear()
            with long_csv_fields(path, reader):  # a cell may be a whole document
                row = next(reader, None)
            if row is None:
                break
            if delimiter == "\t":
                check_tsv_row(row, path, first_line)
            check_quotes_closed(row_lines, first_line, path, delimiter)
            check_row_width(row, len(header), path, first_line, delimiter)
            rows.append(row)
    elif suffix == ".json" and text.lstrip().startswith("{") and (top := _one_object(text)) is not None:
        lists = [k for k, v in top.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        raise ValueError(f"{path} holds one JSON object (keys {sorted(top)[:5]}), not examples: a .json file is a list "
                         "of objects ([{...}, {...}]) or one object per line"
                         + (f"; the examples may be under {lists[0]!r}: write that list alone" if lists else "")
                         + " (pandas: df.to_json(path, orient='records', lines=True))")
    elif text.lstrip().startswith("["):
        try:
            rows = json.loads(text, object_pairs_hook=_object_of_unique_keys)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno} is not valid JSON ({e.msg}, column {e.colno}); "
                             "fix that line, or write one JSON object per line (.jsonl)") from None
        except _RepeatedKeys as e:
            raise ValueError(f"{path}: an example names the key(s) {e.args[0]} more than once; JSON keeps only the "
                             "last value: give each key its own name") from None
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line, object_pairs_hook=_object_of_unique_keys))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n} is not valid JSON ({e.msg}, column {e.colno}); "
                                 "write one JSON object per line") from None
            except _RepeatedKeys as e:
                raise ValueError(f"{path}:{n}: the object names the key(s) {e.args[0]} more than once; JSON keeps "
                                 "only the last value: give each key its own name") from None
    if not rows:
        raise ValueError(f"{path} holds no examples")
    for row, record in enumerate(rows, 1):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: example {row} is {type(record).__name__} {str(record)[:40]!r}, not an object "
                             f"with named columns; write one {row_example} per example")
    return rows


def _one_object(text: str) -> dict | None:
    """The object a whole .json file holds when it is one JSON object that is no example: written over several
    lines (JSON lines cannot be), or holding objects ({"data": [{...}]}; pandas' default to_json, {"text": {"0":
    ...}}). One example on one line is JSON lines of one row."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    nested = any(isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, dict) for x in v))
                 for v in value.values())
    return value if nested or len([line for line in text.splitlines() if line.strip()]) > 1 else None


class _RepeatedKeys(Exception):
    """A JSON object naming a key twice (json.loads would keep the last value silently)."""


def _object_of_unique_keys(pairs: list[tuple]) -> dict:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise _RepeatedKeys(repeated)
    return dict(pairs)


def check_columns(rows: list[dict], columns: dict[str, str], path) -> None:
    """columns: each column the run reads -> the flag that names it (named in the error when it is missing)."""
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        flags = " / ".join(dict.fromkeys(columns[c] for c in missing))
        raise ValueError(f"{path}: no column {missing}; the columns are {sorted(rows[0])}. Name the right "
                         f"{'one' if len(missing) == 1 else 'ones'} with {flags}")


def _check_texts(rows: list[dict], columns: list[str], path, allow_empty: bool = False) -> None:
    """Every example has its texts (a CSV row cut short reads its missing cells as None, a JSON line may
    lack a key, an empty cell or NaN is pandas' hole), and a text is a string (a number is taken as its
    digits): never the text "None", "nan" or a list's Python repr. allow_empty: "" is a text (an empty prompt)."""
    for row, record in enumerate(rows, 1):
        for column in columns:
            value = record.get(column)
            if value is None or (isinstance(value, str) and not value.strip() and not allow_empty) or \
                    (isinstance(value, float) and math.isnan(value)):  # (an empty CSV cell: how pandas writes NaN)
                raise ValueError(f"{path}: example {row} (counting from 1) has no {column!r} ({value!r}); fill it "
                                 "in or drop the example")
            if not isinstance(record[column], (str, int, float)) or isinstance(record[column], bool):
                raise ValueError(f"{path}: example {row} has {type(record[column]).__name__} "
                                 f"{str(record[column])[:40]!r} as its {column!r}, not a text")


def _as_number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_list(value, path="the data file"):
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: the label {value!r} starts with '[' but is not a JSON list ({e.msg}); write "
                             'several labels as ["a", "b"], or a single label without the brackets') from None
    return value


def _label_key(value) -> str:
    """The class a single label names: 1, 1.0 and "1" are one class, not three."""
    number = _as_number(value)
    if number is not None and math.isfinite(number) and number.is_integer():
        return str(int(number))
    return str(value)


def _check_labels_present(values: list, path) -> None:
    """An empty or NaN label is a hole in the data, never a class of its own."""
    for row, value in enumerate(values, 1):
        if value is None or (isinstance(value, float) and math.isnan(value)) or \
                str(value).strip().lower() in ("", "nan", "null"):
            raise ValueError(f"{path}: row {row} (counting examples from 1) has no label ({value!r}); "
                             "fill it in or drop the row (a multi-label example of no class is [] in a file of "
                             "class names, [0, 0, ...] in one of 0/1 scores)")


def _detect_task(labels: list, path) -> tuple[str, str]:
    """The problem type the labels show, and why; refuse what could be read two ways."""
    lists = [isinstance(v, list) for v in labels]
    if all(lists):
        return "multi_label_classification", "every label is a list"
    if any(lists):  # a multi-label file with some single labels written bare: each list would be a class of its own
        row, listed = lists.index(False) + 1, lists.index(True) + 1
        raise ValueError(f"{path}: row {row} has the label {labels[row - 1]!r} and row {listed} the list "
                         f"{labels[listed - 1]!r}; in a multi-label file every label is a JSON list (write "
                         f"[{json.dumps(labels[row - 1])}] for one label, [] for none)")
    if all(isinstance(v, float) for v in labels):
        return "regression", "every label is a JSON float"
    numbers = [_as_number(v) for v in labels]
    words = [(row, v) for row, (v, n) in enumerate(zip(labels, numbers, strict=True), 1) if n is None]
    if words and len(words) < len(labels) / 2:
        row, value = words[0]
        raise ValueError(f"{path}: row {row} has the label {value!r} among {len(labels) - len(words)} numeric labels "
                         f"({len(words)} such rows); fix or drop it, or pass --task_type single_label_classification "
                         "if the labels are class names")
    if not words:
        if any(not n.is_integer() for n in numbers):
            return "regression", "numeric labels, not all integers"
        return "single_label_classification", (f"{len({_label_key(v) for v in labels})} distinct integer labels; "
                                               "pass --task_type regression to predict a number")
    for row, value in enumerate(labels, 1):
        if isinstance(value, str) and ("|" in value or "," in value):
            raise ValueError(f"{path}: row {row} has the label {value!r}, which looks like several labels; for "
                             'multi-label classification write a JSON list (["a", "b"]) and pass --task_type '
                             "multi_label_classification, or pass --task_type single_label_classification if it is "
                             "one label")
    return "single_label_classification", f"{len({str(v) for v in labels})} distinct text labels"


def infer_task(labels: list, task_type: str, num_labels: int | None, path="the training file") -> Task:
    """Decide the problem type and the label names from the training labels."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"--task_type must be one of {TASK_TYPES}, got {task_type!r}")
    labels = [_as_list(v, path) for v in labels]
    if task_type == "auto":
        task_type, reason = _detect_task(labels, path)
        logger.info("task: %s (%s)", task_type, reason)
    for row, value in enumerate(labels, 1):
        _check_label_kind(value, task_type, f"{path}: row {row}")
    if task_type == "regression":
        if num_labels not in (None, 1):
            raise ValueError(f"regression predicts one number, but --num_labels is {num_labels}; if the labels are "
                             "classes (JSON floats such as 0.0 and 1.0 are read as numbers), pass --task_type "
                             "single_label_classification")
        return Task(task_type)
    if task_type == "multi_label_classification":
        names = sorted({str(x) for v in labels for x in v if not isinstance(x, (int, float))})
        if not names:  # lists of 0/1 or soft scores: one per label
            width = {len(v) for v in labels}
            if width == {0}:
                raise ValueError(f"{path}: every label is an empty list, so no example has a class to learn; check "
                                 "--label_column")
            if len(width) != 1:
                # lists of class ids ([3], [0, 27], as GoEmotions writes them) are the usual cause
                raise ValueError(f"{path}: the labels are lists of numbers, read as one 0/1 or soft score per class, "
                                 f"but the lists have different lengths {sorted(width)}; if the numbers are class ids, "
                                 'write them as names (["0", "27"]), else give every example one score per class')
            names = [f"LABEL_{i}" for i in range(width.pop())]
    else:
        values = [_label_key(v) for v in labels]
        spelled = {}  # a name without its surrounding spaces -> its spellings
        for value in dict.fromkeys(values):
            spelled.setdefault(value.strip(), []).append(value)
        twins = next((names for names in spelled.values() if len(names) > 1), None)
        if twins:  # (a CSV written with ", " between cells, say)
            raise ValueError(f"{path}: the labels {twins!r} differ only by spaces around them, so they would be "
                             "different classes; write them alike (a CSV written with \", \" between cells: drop the "
                             "spaces)")
        numeric = all(_as_number(v) is not None for v in values)
        names = sorted(set(values), key=(lambda v: float(v)) if numeric else None)
        if numeric and num_labels is not None:
            bad = [v for v in names if not 0 <= float(v) < num_labels]
            if bad:
                raise ValueError(f"labels {bad} do not fit --num_labels {num_labels} (ids 0..{num_labels - 1})")
            names = [str(i) for i in range(num_labels)]
    if num_labels is not None and len(names) != num_labels:
        raise ValueError(f"the training labels are {names} ({len(names)}), which does not fit --num_labels "
                         f"{num_labels}; fix --num_labels or the label column")
    if task_type == "single_label_classification" and len(names) < 2:
        # One class: its softmax is 1 whatever the input, so the loss is 0 and nothing trains, and
        # every evaluation reports accuracy 1.0.
        raise ValueError(f"{path}: every training label is {names}, a single class; classification needs two or "
                         "more: check --label_column, or pass --num_labels N if the labels are ids 0..N-1 of which "
                         "this file holds only some")
    return Task(task_type, names)


def _check_label_kind(value, problem_type: str, where) -> None:
    """A label is a list exactly when the task is multi-label, and never a JSON object: a string's characters
    (multi-label) or a list's repr (single-label) would otherwise become classes, silently."""
    if isinstance(value, dict):
        raise ValueError(f"{where}: the label {str(value)[:60]} is a JSON object; a label is a class name, a number, "
                         "or (multi-label) a JSON list of class names")
    if problem_type == "multi_label_classification" and isinstance(value, list):
        for item in value:
            if not isinstance(item, str | int | float) or (isinstance(item, str) and not item.strip()) or \
                    (isinstance(item, float) and math.isnan(item)):  # (true / false: scores 1 / 0, as before)
                raise ValueError(f"{where}: the label list {json.dumps(value)[:60]} holds {item!r}; each item is a "
                                 "class name or (lists of scores) a number: drop it or name the class")
    if problem_type == "multi_label_classification" and not isinstance(value, list):
        raise ValueError(f"{where}: the label {value!r} is not a list; a multi-label task writes every label as a "
                         f'JSON list (["a", "b"]; ["a"] for one label, [] for none)')
    if problem_type != "multi_label_classification" and isinstance(value, list):
        raise ValueError(f"{where}: the label {value!r} is a list, and the task is {problem_type}; for several labels "
                         "per example pass --task_type multi_label_classification, else write one label per example")


def encode_label(value, task: Task, path) -> int | float | list[float]:
    _check_label_kind(_as_list(value, path), task.problem_type, path)
    if task.problem_type == "regression":
        number = _as_number(value)
        if number is None or not math.isfinite(number):  # an inf label made the loss inf at the first step
            raise ValueError(f"{path}: regression label {value!r} is not a finite number; fix it or drop the row")
        return number
    if task.problem_type == "multi_label_classification":
        value = _as_list(value, path)
        if value and all(isinstance(x, (int, float)) for x in value):
            if len(value) != task.num_labels or not all(0 <= x <= 1 for x in value):
                raise ValueError(f"{path}: multi-label scores {value} must be {task.num_labels} numbers in [0, 1], one "
                                 'per class (class ids are written as names: ["0", "2"])')
            return [float(x) for x in value]
        unknown = [x for x in value if str(x) not in task.label_names]
        if unknown:
            raise ValueError(f"{path}: labels {unknown} are not among the training labels {task.label_names}")
        return [1.0 if name in {str(x) for x in value} else 0.0 for name in task.label_names]
    name = _label_key(value)
    if name not in task.label_names:
        raise ValueError(f"{path}: label {value!r} is not among the task's {task.num_labels} labels "
                         f"{task.label_names} (the training file's, or 0 .. N-1 with --num_labels N)")
    return task.label_names.index(name)


def load_split(path, tokenizer, max_seq_length: int, text_column: str = "text", label_column: str = "label",
               text_pair_column: str | None = None, task: Task | None = None, task_type: str = "auto",
               num_labels: int | None = None, flag: str = DATA_FILE_FLAGS,
               label_flag: str = "--label_column") -> tuple[list[dict], Task]:
    """Tokenised examples ({"input_ids", "token_type_ids", "labels"}) of one file, and the task (inferred
    from the labels unless given: a validation file takes the training file's). flag: as read_rows's;
    label_flag: what names the label column (--multitask: a field of its spec)."""
    rows = read_rows(path, flag)
    columns = [text_column, label_column] + ([text_pair_column] if text_pair_column else [])
    check_columns(rows, {text_column: "--text_column", **({text_pair_column: "--text_pair_column"}
                                                            if text_pair_column else {}), label_column: label_flag},
                   path)
    _check_labels_present([r.get(label_column) for r in rows], path)
    _check_texts(rows, [c for c in columns if c != label_column], path)
    if task is None:
        task = infer_task([r[label_column] for r in rows], task_type, num_labels, path)
    labels = [encode_label(r[label_column], task, f"{path}: row {n}") for n, r in enumerate(rows, 1)]
    texts = [str(r[text_column]) for r in rows]
    pairs = [str(r[text_pair_column]) for r in rows] if text_pair_column else None
    examples = []
    for start in range(0, len(texts), 256):
        chunk = tokenizer(texts[start : start + 256], pairs[start : start + 256] if pairs else None,
                          max_length=max_seq_length, padding=True, truncation=True, return_token_type_ids=True)
        for ids, mask, types in zip(chunk["input_ids"], chunk["attention_mask"], chunk["token_type_ids"], strict=True):
            n = int(mask.sum())
            examples.append({"input_ids": ids[:n].tolist(), "token_type_ids": types[:n].tolist()})
    for example, label in zip(examples, labels, strict=True):
        example["labels"] = label
    return examples, task

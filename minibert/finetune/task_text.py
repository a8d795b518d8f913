"""Further pretraining on the task's own text: write a fine-tuning file's text column as a corpus.

Gururangan et al. 2020, "Don't Stop Pretraining", https://arxiv.org/abs/2004.10964: continuing
masked-LM pretraining on the task's unlabelled text (task-adaptive, TAPT) or on a large in-domain
corpus (domain-adaptive, DAPT) before fine-tuning helps in every domain they tried, most when the
task's text is far from the pretraining corpus.

Why a file: `pretrain.py --corpus` reads .txt and JSON lines with a `text` field; a fine-tuning
file may be CSV / TSV, or keep its text under another column (and a pair task has two). This
writes one {"text": ...} line per example, the pair's two texts joined by a newline.

    python -m minibert.finetune.task_text train.csv --text_column sentence --output runs/task_text.jsonl
    python pretrain.py --objective sop --init_from runs/pretrain-sop --corpus runs/task_text.jsonl \\
        --max_steps 400 --output_dir runs/pretrain-sop-tapt
    python train.py --model_name_or_path runs/pretrain-sop-tapt --train_file train.csv --text_column sentence
"""

import argparse
import json
import os
from pathlib import Path

# train.py's own reader (one layer up, the only finetune/ module that reaches there): the text
# pretrained on is then exactly the text fine-tuned on, with the same encoding and format checks.
from minibert.finetuning import read_rows


def write_task_text(files: list[str | os.PathLike], text_column: str, output: str | os.PathLike,
                    text_pair_column: str | None = None) -> int:
    """The text of every row of `files` as JSON lines {"text": ...} in `output`; returns the rows written."""
    lines = []
    for path in files:
        rows = read_rows(path)
        columns = [text_column] + ([text_pair_column] if text_pair_column else [])
        missing = [c for c in columns if c not in rows[0]]
        if missing:
            raise ValueError(f"{path}: no column {missing}; the columns are {sorted(rows[0])}. Pass --text_column "
                             "(and --text_pair_column for a pair task)")
        for row in rows:
            text = "\n".join(str(row[c]) for c in columns if str(row[c]).strip())
            if text:
                lines.append(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text("".join(lines), encoding="utf-8")
    return len(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="fine-tuning files (.csv, .tsv, .json, .jsonl); use the training "
                        "split only if you will report validation scores")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--text_pair_column", default=None)
    parser.add_argument("--output", required=True, help="the .jsonl corpus to write")
    args = parser.parse_args(argv)
    written = write_task_text(args.files, args.text_column, args.output, args.text_pair_column)
    print(f"wrote {written} texts to {args.output}")


if __name__ == "__main__":
    main()

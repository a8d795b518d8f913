"""Metrics out of the training loop: one JSON line per logging step, a loss plot at the end, and
an optional tqdm bar (the command lines turn it on).

metrics.jsonl holds one object per line, e.g.
    {"step": 20, "epoch": 0.4, "phase": 0, "loss": 6.1, "mlm_loss": 5.5, "nsp_loss": 0.6, "mlm_accuracy": 0.11,
     "sop_accuracy": 0.52, "learning_rate": 0.0005, "grad_norm": 1.7, "tokens_per_second": 5400.0,
     "data_wait_share": 0.01}
("epoch": epochs done within the phase, with the share of the current one; each measure: its mean over the
steps since the previous line, of the values that are finite) and evaluation lines carry "eval_" keys.
The loss parts keep the model output's names: a SOP run trains BERT's two-way sentence head, Hugging
Face's NSP head, so its loss is "nsp_loss" beside "sop_accuracy".
Any tool that reads JSON lines (pandas.read_json(lines=True), jq) reads it while training runs. A measure
that is undefined (NaN: a Pearson correlation of constant predictions) or infinite is written as null:
Python's json would write a bare NaN, which is not JSON, and jq or JavaScript would stop at that line.
"""

import json
import logging
from pathlib import Path

from minibert.checkpoint import finite_or_null

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


def json_line(record: dict) -> str:
    """One record as a line of strict JSON: non-finite floats become null (the trainer's history keeps them)."""
    return json.dumps(finite_or_null(record), allow_nan=False) + "\n"


class MetricsWriter:
    """Appends JSON lines; rank 0 only (the trainer gives other ranks a writer with no path)."""

    def __init__(self, path: Path | None):
        self.path = path

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json_line(record))


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_losses(metrics_path: str | Path, png_path: str | Path) -> Path | None:
    """Plot every loss-like key of metrics.jsonl against the step. Returns the PNG's path, or None
    (with a message saying how to get it) when matplotlib is not installed."""
    try:
        # A Figure of its own, without pyplot: no display needed, and the process's backend (a notebook's
        # inline one, say) is left as it was.
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning(
            "no loss plot: matplotlib is not installed; `pip install -e '.[plot]'` in the checkout (or matplotlib) "
            "and rerun, or plot %s yourself",
            metrics_path,
        )
        return None
    records = read_metrics(metrics_path)
    keys = sorted({k for r in records for k in r if k.endswith("loss")})
    if not keys:
        return None
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for key in keys:
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]  # null: undefined
        ax.plot(*zip(*points, strict=True), label=key, marker="." if key.startswith("eval_") else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100, format="png")
    return Path(png_path)


class ProgressBar:
    """A tqdm bar over optimizer steps showing loss, learning rate and tokens/s (a callback)."""

    def __init__(self, total: int, initial: int = 0):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, desc="training", unit="step", dynamic_ncols=True)

    def update(self, record: dict | None) -> None:
        self.bar.update(1)
        if record is not None:
            # A window whose every step was skipped (no labelled token, an fp16 overflow) logs no loss: the bar
            # shows the rest rather than stop the run with a KeyError
            shown = {"loss": ("loss", ".3f"), "lr": ("learning_rate", ".2e"), "tok_s": ("tokens_per_second", ".0f")}
            self.bar.set_postfix({name: format(record[key], spec)
                                  for name, (key, spec) in shown.items() if key in record})

    def close(self) -> None:
        self.bar.close()

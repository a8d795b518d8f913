"""A corpus far larger than the shipped one, through pretrain.py: memory, preparation, start-up, data wait.

    python bench/bench_corpus.py                  # 200 MB and 50 MB corpora, about 20 minutes on 2 cores
    python bench/bench_corpus.py --mb 20 --small_mb 5 --steps 5   # a quick look

The corpus: the shipped Shakespeare (minibert/data/corpus) copied until it reaches --mb megabytes,
every sentence made distinct by the copy's number ("To be, or not to be 17?"), one JSON-lines file
per copy, each scene's title naming its copy, so works (and so held-out works) multiply too.

Each run is `pretrain.py --objective sop --max_steps N` in its own process, its data cache
shared between the runs of a corpus. Measured, for the large corpus twice (the second run reuses
the prepared arrays and the trained tokenizer) and the small one once:
- peak resident memory of the whole process tree (pretrain.py and its preparation workers),
  sampled from /proc every 0.1 s;
- seconds to the first training step (the first line of metrics.jsonl), and, within the run, to its
  examples being ready (the data side: tokenizer, prepared corpus, example indexes; after it come
  the model and its evaluation on the held-out works at the start);
- preparation throughput: MB of text tokenised per second (pretraining_summary.json's preparation
  time: reading, splitting into sentences, tokenising and writing the arrays);
- the data-wait share of step time (pretraining_summary.json).
The goals (issue 10): peak memory under 2 GB and not growing with the corpus (50 vs 200 MB); the
second run's first step within 30 s; data wait under 5%; preparation at least 5 MB/s on 2 cores.
"""

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "minibert" / "data" / "corpus" / "shakespeare.jsonl.gz"
_END = re.compile(r"([.!?]+[\"'”’)\]]*)(\s|$)")


def make_corpus(folder: Path, megabytes: float) -> float:
    """Copies of the shipped corpus, each sentence numbered by its copy; returns the MB written."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in gzip.decompress(SHIPPED.read_bytes()).decode("utf-8").splitlines()]
    written, copy = 0, 0
    while written < megabytes * 1e6:
        lines = []
        for row in rows:
            text = _END.sub(lambda m, c=copy: f" {c}{m.group(1)}{m.group(2)}", row["text"])  # "be 17?" per sentence
            lines.append(json.dumps({"title": f"{row['title']} (copy {copy})", "text": text}, ensure_ascii=False))
        data = ("\n".join(lines) + "\n").encode("utf-8")
        (folder / f"copy{copy:04d}.jsonl").write_bytes(data)
        written += len(data)
        copy += 1
    return written / 1e6


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def run(corpus: Path, cache: Path, output: Path, steps: int) -> dict:
    command = [sys.executable, str(ROOT / "pretrain.py"), "--objective", "sop", "--corpus", str(corpus),
               "--output_dir", str(output), "--max_steps", str(steps), "--logging_steps", "1",
               "--save_steps", str(steps), "--eval_steps", str(steps),
               "--data_cache_dir", str(cache), "--overwrite_output_dir", "true"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    peak, first_step = 0, None
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    metrics = output / "metrics.jsonl"
    while process.poll() is None:
        peak = max(peak, tree_rss(process.pid))
        if first_step is None and metrics.is_file() and metrics.stat().st_size > 0:
            first_step = time.perf_counter() - start
        time.sleep(0.1)
    reader.join()
    if process.returncode != 0:
        raise SystemExit(f"pretrain.py failed ({process.returncode}):\n{''.join(lines)[-3000:]}")
    summary = json.loads((output / "pretraining_summary.json").read_text())
    return {"seconds": time.perf_counter() - start, "peak_rss_gb": peak / 2**30, "first_step_s": first_step,
            "data_wait_share": summary["data_wait_share"], "prepared_mb": summary["prepared_mb"],
            "data_ready_s": summary["data_seconds"],
            "preparing_s": summary["preparation_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200, help="size of the large corpus")
    parser.add_argument("--small_mb", type=float, default=50, help="size of the small corpus")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--work_dir", help="where corpora, caches and runs go (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_corpus-"))
    rows = []
    for label, megabytes, runs in (("large", args.mb, 2), ("small", args.small_mb, 1)):
        corpus = work / f"corpus-{label}"
        size = make_corpus(corpus, megabytes)
        for attempt in range(1, runs + 1):
            result = run(corpus, work / f"cache-{label}", work / f"run-{label}-{attempt}", args.steps)
            result.update(corpus=label, mb=size, run=attempt)
            if result["preparing_s"]:
                result["prep_mb_per_s"] = result["prepared_mb"] / result["preparing_s"]
            rows.append(result)
            print(json.dumps(result), flush=True)
    print(f"\n{'corpus':>8} {'MB':>6} {'run':>4} {'total s':>8} {'data ready s':>13} {'first step s':>13} "
          f"{'peak GB':>8} {'prep MB/s':>10} {'data wait':>10}")
    for r in rows:
        prep = f"{r['prep_mb_per_s']:.2f}" if "prep_mb_per_s" in r else "reused"
        print(f"{r['corpus']:>8} {r['mb']:>6.0f} {r['run']:>4} {r['seconds']:>8.0f} {r['data_ready_s']:>13.1f} "
              f"{r['first_step_s']:>13.1f} "
              f"{r['peak_rss_gb']:>8.2f} {prep:>10} {r['data_wait_share']:>10.1%}")
    print(f"(work folder: {work})")


if __name__ == "__main__":
    main()

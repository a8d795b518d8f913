"""run_child: a child command of a bench script, its failure shown (bench_efficient_finetuning.py and
bench_finetune_methods.py). No torch here: a script's --help stays instant."""

import subprocess
import sys
from pathlib import Path


def run_child(command: list[str]) -> str:
    """The command's stdout; on failure, an error naming the command with the last lines of its stderr. The output
    is captured (stdout carries what the script reads back), so without this the child's traceback would be lost
    and only "exit status 1" would show."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:]) or "(nothing on stderr)"
        raise SystemExit(f"{Path(sys.argv[0]).name}: a child run failed (exit status {done.returncode}): "
                         f"{' '.join(map(str, command))}\nits stderr, last lines:\n{tail}")
    return done.stdout

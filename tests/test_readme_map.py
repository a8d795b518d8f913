"""The README's "Where to look for one thing" table names a file and the names to search for in it:
each name must be defined in one of the files its row names, so the map cannot send a reader to a
name that was renamed or moved."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def map_rows() -> list[tuple[str, list[Path], list[str]]]:
    text = (ROOT / "README.md").read_text()
    table = text.split("Where to look for one thing", 1)[1].split("\n\n", 2)[1]
    rows = []
    for line in table.splitlines()[2:]:
        question, files, names = (cell.strip() for cell in line.strip("|").split("|"))
        paths = []
        for ref in re.findall(r"`([^`]+)`", files):
            ref = ref.replace("<objective>", "*").replace("<trick>", "*")
            if ref.startswith("minibert/"):
                paths += sorted(ROOT.glob(ref))
                last = ref
            elif ref.endswith(".py") and paths:  # `nsp.py` after `minibert/data/objectives/nsp.py`
                paths += sorted((ROOT / last).parent.glob(ref))
        rows.append((question, paths, re.findall(r"`([^`]+)`", names)))
    return rows


def test_every_name_in_the_map_is_defined_where_the_map_says():
    rows = map_rows()
    assert len(rows) >= 25
    checked = 0
    for question, paths, names in rows:
        if not names:
            continue
        assert paths, f"row {question!r} names no file that exists"
        source = "\n".join(p.read_text() for p in paths)
        for name in names:
            attribute = name.split(".")[-1]
            definition = rf"^\s*(def|class)\s+{re.escape(attribute)}\b|^\s*{re.escape(attribute)}\s*[:=]"
            assert re.search(definition, source, re.M), f"{name} (row {question!r}) is not defined in {paths}"
            checked += 1
    assert checked >= 40


def test_every_file_line_in_the_traced_sample_is_a_def_line():
    """The tracer prints `@ file:line` of the function that ran: a line moved by an edit above it must
    be moved in the README's sample too."""
    references = re.findall(r"@ (minibert/[\w/]+\.py):(\d+)", (ROOT / "README.md").read_text())
    assert len(references) >= 8
    for path, line in references:
        text = (ROOT / path).read_text().splitlines()[int(line) - 1]
        assert re.match(r"\s*def \w+\(", text), f"README's {path}:{line} is {text.strip()!r}, not a def line"

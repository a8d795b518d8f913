"""Reading a corpus: documents made of sentences.

A corpus file is plain text (a blank line separates documents), JSON lines (one document per
line, its text in the `text` field, other fields kept as metadata by `read_records`) or a CSV / TSV
table with a header (one document per row, its text in the `text` column; --text_column names another
field or column), any of them gzipped (`.gz`). A directory is every such file in it (its subfolders are
not read, but named in a warning: each is a corpus path of its own). Sentences are
split after . ! ? (English, not after common abbreviations) and after 。！？ (Chinese), closing quotes
staying with their sentence.

The shipped corpora (see corpus/SOURCES.md) are named: "shakespeare" (the spoken text of 37
plays, one document per scene, each with its play's title and genre) and "tang_poems" (7,423
Tang poems, Traditional Chinese).

Documents belong to *works* (a play, a book): a record's `title`, else its file. Held-out text
for pretraining is whole works (`split_works`), so the model is evaluated on text it never saw,
not on other scenes of the plays it trained on.
"""

import codecs
import csv
import gzip
import hashlib
import json
import logging
import os
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from minibert.data.chinese import convert_chinese, is_cjk

logger = logging.getLogger(__name__)

CORPUS_DIR = Path(__file__).parent / "corpus"
SHIPPED = {"shakespeare": CORPUS_DIR / "shakespeare.jsonl.gz", "tang_poems": CORPUS_DIR / "tang_poems.jsonl.gz"}
DEFAULT_CORPUS = "shakespeare"
TEXT_SUFFIXES = (".txt", ".text")
JSONL_SUFFIXES = (".jsonl", ".json")
TABLE_SUFFIXES = (".csv", ".tsv")  # a fine-tuning file's text column, for further pretraining on task text
CORPUS_SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES + TABLE_SUFFIXES
# A CSV/TSV cell may be a whole document, far over csv's default limit of 131,072 characters; 2**31 - 1
# is the largest limit every platform takes (a C long is 32 bits on Windows).
CSV_FIELD_LIMIT = 2**31 - 1
# A document of a text file past this size almost surely means a file without blank lines (one document per
# line, as Hugging Face `datasets`' text loader reads a file): all of it one document, held in memory whole
# (a 12 MB file of that kind took 222 MB to prepare, one with blank lines 28 MB). Said once per file.
LARGE_DOCUMENT_BYTES = 16 << 20
_warned_large: set[str] = set()
_warned_shadowed: set[str] = set()  # shipped names that are also a path here (said once)
_warned_subfolders: set[str] = set()  # corpus directories whose subfolders hold corpus files, not read (said once)

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "no", "prof", "mt"}
# A sentence ends at . ! ? (and any closing quotes/brackets) followed by whitespace, or at 。！？
# (and closing quotes) with no space needed. The pattern starts with one character class, which lets
# `re` jump from candidate to candidate (3x faster than two alternatives, each with its own class,
# whose matches are the same); the look-behinds pick the English or the Chinese rule.
_SPLIT = re.compile(r"[.!?。！？](?:(?<=[.!?])[.!?]*[\"'”’)\]]*(?=\s)|(?<=[。！？])[。！？]*[”’」』）]*)")


def default_corpus_path(name: str = DEFAULT_CORPUS) -> Path:
    """The path of a shipped corpus: "shakespeare" (the default, English) or "tang_poems" (Chinese)."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped corpus named {name!r}; choose one of {sorted(SHIPPED)}")
    return SHIPPED[name]


def split_sentences(text: str) -> list[str]:
    """Split a document into sentences (English and Chinese), whitespace inside each collapsed."""
    text = " ".join(text.split())  # str.split's whitespace is exactly re's \s; 4x faster than re.sub
    sentences, start = [], 0
    for match in _SPLIT.finditer(text):
        end = match.end()
        if text[match.start()] in ".!?":  # the English rule
            word = text[start:match.start()].rsplit(" ", 1)[-1].lower()
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha() and match.group() == "."):
                continue  # "Dr. Faustus", "J. Smith": not the end of a sentence
        else:  # a straight quote after 。！？ closes the sentence when one is open (他說："你好。我很好。")
            while end < len(text) and text[end] in "\"'" and text[:end].count(text[end]) % 2 == 1:
                end += 1
        sentence = text[start:end].strip()
        if sentence:
            sentences.append(sentence)
        start = end
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


# Closing quotes and brackets, looked past to find how a sentence ends
_CLOSERS = "\"'”’」』）)]"


def join_sentences(sentences: list[str]) -> str:
    """The inverse of split_sentences: no space after a Chinese sentence (its last character, closing quotes and
    brackets aside, Chinese or 。！？: 他說："你好。"), a space after any other (an English one followed by a Chinese
    one included: "I said hello. 你好。" lost its space, and split again as one sentence)."""
    out = ""
    for s in filter(None, sentences):  # an empty sentence adds nothing
        end = out.rstrip(_CLOSERS)[-1:]
        if out and not (end and (is_cjk(end) or end in "。！？")):
            out += " "
        out += s
    return out


def _suffix(path: Path) -> str:
    """The format suffix, under a .gz, in lower case: "a.jsonl.gz" -> ".jsonl", "B.TXT" -> ".txt". Any case, as
    the fine-tuning files' reader takes it: "B.TXT" in a corpus directory was passed over without a word, and
    "rows.CSV" or "lines.JSONL" named on its own was read as plain text, its header and JSON one document."""
    return Path(path.stem).suffix.lower() if _gzipped(path) else path.suffix.lower()


def has_columns(path: Path) -> bool:
    """Whether a corpus file has fields or columns for --text_column to name (JSON lines, CSV, TSV): a text
    file has none, its blank lines separate the documents."""
    return _suffix(path) in JSONL_SUFFIXES + TABLE_SUFFIXES


def _gzipped(path: Path) -> bool:
    """Whether a file is gzip by its name: "a.txt.gz" or "a.txt.GZ"."""
    return path.suffix.lower() == ".gz"


def _not_utf8(file, data: bytes, error: UnicodeDecodeError, offset: int = 0, line: int = 1,
              sample: bytes | None = None) -> ValueError:
    """The error for a file that is not UTF-8: where the first bad byte is, and how to re-save the file.
    `data` is the part of the file that starts at byte `offset`, on line `line`; `sample`, the file's
    first bytes, tells a UTF-16/UTF-32 byte-order mark or a Chinese encoding (default: `data`)."""
    at = offset + error.start
    line += data[: error.start].count(b"\n")
    sample = data if sample is None else sample
    # UTF-16 is what Windows calls "Unicode" (Notepad, PowerShell 5's `>`): `iconv -f latin1` made of it a
    # copy with a NUL byte after every letter, which loads without an error
    wide = next((name for name, bom in (("utf-32", codecs.BOM_UTF32_LE), ("utf-32", codecs.BOM_UTF32_BE),
                                         ("utf-16", codecs.BOM_UTF16_LE), ("utf-16", codecs.BOM_UTF16_BE))
                 if sample.startswith(bom)), None)
    marked = wide is not None
    if not marked and sample.count(b"\x00") > len(sample) // 8:  # UTF-16 without a byte-order mark
        wide = "utf-16le" if sample[1::2].count(b"\x00") >= sample[::2].count(b"\x00") else "utf-16be"
    chinese = [] if wide else _chinese_encodings(sample)
    if wide:
        how = f"`iconv -f {wide} -t utf-8 {file} > utf8_copy` " + (
            f"(it starts with a {wide.upper()} byte-order mark)" if marked else
            "(a NUL byte beside every other one: UTF-16 without a byte-order mark)")
    elif len(chinese) == 1:
        how = f"`iconv -f {chinese[0]} -t utf-8 {file} > utf8_copy` (its bytes read as {chinese[0]}: Chinese text)"
    elif chinese:  # both read: GBK bytes and Big5 bytes can each pass for the other
        how = (f"`iconv -f gb18030 -t utf-8 {file} > utf8_copy` (its bytes read as Chinese text in GB18030/GBK and "
               "in Big5: if the copy is garbled, use -f big5)")
    else:
        how = f"`iconv -f latin1 -t utf-8 {file} > utf8_copy` (use the file's real encoding in place of latin1)"
    return ValueError(
        f"{file} is not UTF-8: the byte at offset {at} (line {line}) is {data[error.start:error.start + 1]!r} "
        f"({error.reason}); re-save it as UTF-8, e.g. {how}"
    )


def _chinese_encodings(data: bytes) -> list[str]:
    """Which of GB18030 (GBK's superset) and Big5 read `data` (a file's first bytes) as mostly Chinese
    text: `iconv -f latin1` on such a file would make a mojibake that loads without an error."""
    found = []
    for encoding in ("gb18030", "big5"):
        try:  # incremental: a character cut at the sample's end is not an error
            text = codecs.getincrementaldecoder(encoding)(errors="strict").decode(data[:65536], final=False)
        except UnicodeDecodeError:
            continue
        letters = [c for c in text if not c.isascii()]
        chinese = sum(is_cjk(c) and unicodedata.category(c) != "Co" for c in letters)  # not private-use
        if letters and chinese >= 0.8 * len(letters):
            found.append(encoding)
    return found


def decode_utf8(data: bytes, file: str | os.PathLike) -> str:
    """The text of a file's bytes, without a leading byte-order mark (Excel and Notepad write one).
    Anything but UTF-8 is refused at the first bad byte: guessing Latin-1 or cp1252 would turn
    every accented letter into a different token without a word."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(file, data, e) from None
    if "\x00" in text:
        raise _nul_bytes(file, text[: text.index("\x00")].count("\n") + 1)
    return text.removeprefix("\ufeff")


def _nul_bytes(file, line: int) -> ValueError:
    """The error for a file that decodes as UTF-8 but holds a NUL byte: no text file does, and UTF-16 without a
    byte-order mark (what Windows calls "Unicode") puts one beside every English letter, which is valid UTF-8."""
    return ValueError(f"{file} holds a NUL byte (line {line}), which text in UTF-8 never does: UTF-16 without a "
                      f"byte-order mark? Re-save it as UTF-8, e.g. `iconv -f utf-16le -t utf-8 {file} > utf8_copy` "
                      "(-f utf-16be if the copy is garbled)")


LINE_BLOCK = 1 << 20  # bytes read at a time by byte_lines


def byte_lines(f) -> Iterator[bytes]:
    """The lines of a binary file, each with its end: \n, \r\n or a lone \r, as in Python's text mode (and
    bytes.splitlines). Iterating the bytes ends lines at \n alone: a text file saved with lone \r (old Mac OS) was
    one line, so one document. Read in blocks of LINE_BLOCK bytes, so no file is held whole, however long its
    lines."""
    pending = []  # the last line of the blocks read so far: cut short, or ended by a \r that a \n may follow
    while block := f.read(LINE_BLOCK):
        if pending and pending[-1].endswith(b"\r") and block.startswith(b"\n"):
            pending.append(b"\n")  # a \r\n cut between two blocks
            block = block[1:]
        lines = block.splitlines(keepends=True)
        if pending and not pending[-1].endswith((b"\n", b"\r")):  # a line cut short by the last block's end
            if len(lines) == 1:
                pending.append(lines[0])  # and by this block's end too (joined once, when it ends)
                continue
            lines[0] = b"".join([*pending, lines[0]])
        elif pending:
            yield b"".join(pending)
        pending = [lines.pop()] if lines else []
        yield from lines
    if pending:
        yield b"".join(pending)


LONE_CR_PROBE = 1 << 16  # bytes looked at to tell a file of lone \r line ends (old Mac OS)


def ends_lines_with_lone_cr(file: Path) -> bool:
    """Whether a file's lines end at a lone \r: its first LONE_CR_PROBE bytes hold a \r and no \n. Only such a
    file is read with lone \r as a line end: in a file of \n or \r\n ends, a stray \r (\r\r\n, CRLF converted
    twice) ends no line, as before lone \r was read, rather than making every line a document of its own."""
    try:
        with (gzip.open if _gzipped(file) else open)(file, "rb") as f:
            start = f.read(LONE_CR_PROBE)
    except (EOFError, OSError):  # a cut or fake .gz, an unreadable file: the reading itself names it
        return False
    return b"\r" in start and b"\n" not in start


def read_lines(file: Path, lone_cr_ends_lines: bool = False) -> Iterator[tuple[int, str, int]]:
    """(line number, line, its size in bytes) of a file, gzipped or not, read as a stream: a corpus
    larger than memory is never held whole. Lines end at \n (so \r\n too); with `lone_cr_ends_lines`, which a
    text file's reader asks for, at a lone \r too (byte_lines) when the file's own line ends are lone \r
    (ends_lines_with_lone_cr). Not for JSON lines, whose separator is \n (a \r between its tokens is
    whitespace), nor CSV / TSV, where a row's end decides its cells: a lone \r inside a row is refused there, as
    malformed. UTF-8 is checked line by line (decode_utf8's rule)."""
    opener = gzip.open if _gzipped(file) else open
    offset = 0
    lone_cr = lone_cr_ends_lines and ends_lines_with_lone_cr(file)
    with opener(file, "rb") as f:
        try:
            for n, raw in enumerate(byte_lines(f) if lone_cr else f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    with opener(file, "rb") as start:  # the file's first bytes tell a Chinese encoding
                        raise _not_utf8(file, raw, e, offset, n, start.read(65536)) from None
                if "\x00" in line:
                    raise _nul_bytes(file, n)
                yield n, line.removeprefix("\ufeff") if n == 1 else line, len(raw)
                offset += len(raw)
        # Only a gzip stream raises these: a file cut short (EOFError), one that is not gzip at all or
        # fails its CRC (BadGzipFile), a damaged block (zlib.error). Found at the read, not at the open.
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise ValueError(
                f"{file} is not a complete gzip file ({e}); download or copy it again, or drop the .gz from "
                f"its name if it is not compressed (`gunzip -t {file}` checks it)"
            ) from None


def corpus_files(path: str | os.PathLike) -> list[Path]:
    """The corpus files a path names: a shipped corpus, a file, or every corpus file in a directory
    (sorted by name; not those of its subfolders, which a warning names). In a directory, hidden names (".")
    and what is not a file are passed over, as `datasets` does: macOS's `._notes.txt` beside `notes.txt`
    (binary metadata, mostly NUL bytes, that decodes as UTF-8) was read as a work of its own, and an editor's
    lock `.#notes.txt` (a dangling link) or a folder named `old.txt` stopped the run with a traceback. A file
    named on its own is read. A shipped name wins over a file or directory of that name here, with a warning (it
    was read instead without a word): `./shakespeare` names the directory."""
    if str(path) in SHIPPED and Path(path).exists() and str(path) not in _warned_shadowed:
        _warned_shadowed.add(str(path))
        logger.warning("%r names the shipped corpus, which is read; %s here is not: pass ./%s to read it instead",
                       str(path), "the directory" if Path(path).is_dir() else "the file", path)
    path = Path(SHIPPED.get(str(path), path))
    if path.is_dir():
        # Subfolders are named, not read: a folder in a corpus directory is as often a tokenizer, a saved model, a
        # cache or old drafts as more text (their config.json, tokenizer.json and trainer_state.json are .json files,
        # which read as JSON lines: a stop at the first, or worse, text of the wrong kind), and reading them all
        # would turn one forgotten folder into training text unseen. Each subfolder to read is passed as a corpus
        # path of its own. (They were passed over without a word: books/ holding b1/, b2/ and intro.txt trained on
        # intro.txt alone.)
        folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        with_text = [p.name for p in folders if _holds_corpus_files(p)]
        named = sorted(p for p in path.iterdir() if _suffix(p) in CORPUS_SUFFIXES)
        found = [p for p in named if not p.name.startswith(".") and p.is_file()]
        skipped = [p.name for p in named if p not in found]
        paths = [str(p) for p in ([path] if found else []) + [path / name for name in with_text]]
        read_them = (f"pass each as a corpus path of its own (pretrain.py --corpus {' '.join(paths[:4])}"
                     f"{' ...' if len(paths) > 4 else ''})")
        if not found:
            passed = f" (passed over, hidden or not a file: {', '.join(skipped)})" if skipped else ""
            inside = (f"; its subfolders {', '.join(with_text)} hold some, and a directory's subfolders are not read: "
                      f"{read_them}" if with_text else "")
            raise ValueError(f"directory {path} holds no .txt, .jsonl, .csv or .tsv corpus files (optionally .gz)"
                             f"{passed}{inside}")
        if any(not name.startswith(("._", ".#")) for name in skipped):  # (sidecars and locks: nothing to say)
            logger.warning("%s: passing over %s (hidden, or not a file)", path, ", ".join(skipped))
        if with_text and str(path) not in _warned_subfolders:  # (the corpus is listed several times in a run)
            _warned_subfolders.add(str(path))
            logger.warning("%s: its subfolders %s hold corpus files, which are not read (a directory's subfolders "
                           "never are); to read them too, %s", path, ", ".join(with_text), read_them)
        return found
    if not path.is_file():
        raise ValueError(
            f"corpus file {path} does not exist; pass existing .txt/.jsonl paths, or one of the shipped "
            f"corpora {sorted(SHIPPED)}"
        )
    if path.suffix.lower() in COMPRESSED:  # (its bytes were read as text: "not UTF-8, re-save it with iconv")
        raise ValueError(f"corpus file {path} is compressed as {path.suffix}, which is not read (only gzip, .gz, is); "
                         f"decompress it first ({COMPRESSED[path.suffix.lower()]}) or gzip it")
    return [path]


COMPRESSED = {".xz": "xz -dk", ".bz2": "bunzip2 -k", ".zip": "unzip", ".zst": "zstd -d", ".7z": "7z x",
              ".lz4": "lz4 -d", ".tar": "tar xf", ".tgz": "tar xzf"}  # -> how to decompress


NOT_CORPUS_MARKERS = ("config.json", "tokenizer.json", "tokenizer_config.json")  # a checkpoint's or tokenizer's folder
SUBFOLDER_LOOK = 2000  # entries looked at below one subfolder, at most: the warning is a hint, not a crawl


def _holds_corpus_files(folder: Path) -> bool:
    """Whether a corpus file (by its suffix, hidden names passed over) lies in `folder` or below it, looking at
    SUBFOLDER_LOOK entries at most. A folder holding a checkpoint or a tokenizer (NOT_CORPUS_MARKERS) is not
    corpus, though its .json and .txt files have a corpus suffix: naming it would feed tokenizer.json in as text."""
    seen = 0
    for _, folders, files in os.walk(folder):
        if any(name in files for name in NOT_CORPUS_MARKERS):
            folders[:] = []
            continue
        folders[:] = [name for name in folders if not name.startswith(".")]
        if any(not name.startswith(".") and _suffix(Path(name)) in CORPUS_SUFFIXES for name in files):
            return True
        seen += len(files) + len(folders)
        if seen > SUBFOLDER_LOOK:
            return False
    return False


def corpus_file_list(paths) -> list[Path]:
    """Every file that the corpus paths name, each once: a file named twice (`--corpus a.txt a.txt`, or a
    directory and a file in it) is refused, since reading it twice would double its works silently."""
    files, seen = [], {}
    for path in [paths] if isinstance(paths, str | os.PathLike) else paths:
        for file in corpus_files(path):
            key = file.resolve()
            if key in seen:
                raise ValueError(f"corpus file {file} is named twice (by {seen[key]!r} and {str(path)!r}); name "
                                 "each file once")
            seen[key] = str(path)
            files.append(file)
    return files


def iter_records(file: Path, text_column: str = "text") -> Iterator[tuple[dict, int]]:
    """(record, its size in bytes) of one corpus file, streamed: a record is a JSON line or a CSV/TSV
    row (its `text_column` as `text`, plus any metadata) or a block of a text file (blank lines
    separate documents)."""
    suffix = _suffix(file)
    if suffix in TABLE_SUFFIXES:
        yield from _table_records(file, text_column)
        return
    if suffix in JSONL_SUFFIXES:
        for n, line, size in read_lines(file):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{file}:{n} is not valid JSON ({e}); write one JSON object per line") from None
            if not isinstance(row, dict) or not isinstance(row.get(text_column), str):
                fields = f" (its fields: {', '.join(row)})" if isinstance(row, dict) else ""
                if isinstance(row, dict) and text_column != "text":
                    # --text_column was passed: telling the user to pass it would send them round in a circle
                    raise ValueError(f"--text_column {text_column}: {file}:{n} has no string `{text_column}` "
                                     f"field{fields}; "
                                     f"{_text_column_hint([k for k, v in row.items() if isinstance(v, str)])}")
                raise ValueError(f"{file}:{n} has no string `{text_column}` field{fields}; JSON lines need "
                                 f"{{\"{text_column}\": ...}}, or pass --text_column with the field holding the text")
            yield {**row, "text": row[text_column]}, size
        return
    block, size = [], 0
    for _, line, line_size in read_lines(file, lone_cr_ends_lines=True):
        size += line_size
        if line.strip():
            block.append(line)
            if size > LARGE_DOCUMENT_BYTES and str(file) not in _warned_large:
                _warned_large.add(str(file))
                logger.warning(
                    "%s: a document has passed %d MB without a blank line, and reading goes on: in a text file a "
                    "blank line separates documents, and each document is held in memory whole while it is "
                    "prepared (about 20 times its size). If the file holds one document per line, write it as "
                    "JSON lines ({\"text\": ...} per line) or put a blank line between documents",
                    file, LARGE_DOCUMENT_BYTES >> 20)
        elif block:
            yield {"text": "".join(block).strip()}, size
            block, size = [], 0
    if block:
        yield {"text": "".join(block).strip()}, size


@contextmanager
def long_csv_fields(file: Path, reader: csv.DictReader):
    """Lets `reader` read cells of any length (CSV_FIELD_LIMIT) for the time of one read, and turns a
    csv.Error into a ValueError naming the file and line. csv.field_size_limit is global to the
    process, so it is put back at once: between two rows the caller (and any other CSV reading in
    the process) sees its own limit, even when the generator reading is left suspended or closed."""
    previous = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        yield
    except csv.Error as e:
        line = reader.reader.line_num  # the DictReader's own count moves only after a good row
        raise ValueError(f"{file}:{line} is not valid CSV/TSV ({e}); check its quoting and line ends, or write "
                         "it as JSON lines (one object per line)") from None
    finally:
        csv.field_size_limit(previous)


def check_tsv_row(row: dict, file, line: int) -> None:
    """A TSV cell holding a tab: a cell that opened with a quote (") and never closed it has read on,
    rows and tabs included, up to the next quote; the rows it swallowed would be lost silently."""
    for column, value in row.items():
        if isinstance(value, str) and "\t" in value:
            raise ValueError(f"{file}:{line}: the `{column}` cell holds a tab and {value.count(chr(10))} line "
                             "break(s): it starts with a quote (\") that never closes, so the rows after it were read "
                             "into it; remove that quote or double it (\"\"), or write the file as JSON lines")


def check_row_width(row: dict, columns: int, file, line: int, delimiter: str) -> None:
    """A CSV / TSV row with more cells than the header's columns: a cell holds an unquoted delimiter,
    which cut a text short and moved the rest into the next columns (a label among them), silently.
    DictReader keeps the extra cells under the key None; empty ones (trailing delimiters) are harmless
    and dropped here."""
    extra = row.pop(None, None) or []
    if any(cell.strip() for cell in extra):
        raise ValueError(f"{file}:{line}: the row has {columns + len(extra)} cells but the header names {columns} "
                         f"columns: a cell probably holds an unquoted {delimiter!r}, which cut a text short and read "
                         f"its rest into the next columns (quote that cell: \"...\"), or the row has a value past the "
                         "last named column (name that column in the header, or delete the value)")


def recording(lines: Iterable[str], kept: list[str]) -> Iterator[str]:
    """`lines`, each one also appended to `kept`: cleared by the caller before a row, `kept` then holds the raw
    lines the csv reader took for that row (check_quotes_closed reads them), and never the whole file."""
    for line in lines:
        kept.append(line)
        yield line


def check_quotes_closed(row_lines: list[str], first: int, file, delimiter: str) -> None:
    """`row_lines`: the raw lines (from line `first` on, blank lines the reader skipped included) that one
    CSV / TSV row was read from. A row read over several lines holds a cell that opened with a quote ("): a
    text may span lines so, but one whose quote never closes reads on, rows and all, up to the next quote in
    the file or its end, and the rows it swallowed are lost silently. (TSV's tab check catches most of it
    there; a CSV cell may hold commas and line breaks.) Such a cell ends where no cell may: at the end of the
    file, or at a quote followed by something other than a delimiter or a line end. Only a quoted cell that
    spans lines is judged: a text opening with a quoted word ("Hi" she said) is read as the reader reads it,
    on a row of one line or of several."""
    skipped = 0
    while skipped < len(row_lines) and row_lines[skipped] in ("\n", "\r\n", "\r"):
        skipped += 1  # blank lines the reader skipped before the row
    row_lines, first = row_lines[skipped:], first + skipped
    if len(row_lines) < 2 or not _quoted_cell_left_open("".join(row_lines), delimiter):
        return
    last = first + len(row_lines) - 1
    swallowed = f"line {last}" if last == first + 1 else f"lines {first + 1}-{last}"
    raise ValueError(f"{file}:{first}: a cell there starts with a quote (\") that does not close where the cell "
                     f"ends, so it read on over {swallowed}, rows included; remove that quote or "
                     "double it (\"\"), or quote the whole cell and double each quote inside it, or write the "
                     "file as JSON lines")


def _quoted_cell_left_open(text: str, delimiter: str) -> bool:
    """Whether a cell of `text` (one row's raw lines) opens with a quote, reads over a line break, and then never
    closes or closes before something other than a delimiter or a line end. Cells are walked from the start of
    the row: a quote opens a cell only as its first character, and "" inside a quoted cell is a quote."""
    i = 0
    while i < len(text):  # i: where a cell starts
        if text[i] == '"':
            j = i + 1
            while (j := text.find('"', j)) >= 0 and text.startswith('""', j):
                j += 2  # a doubled quote inside the cell
            if j < 0:  # never closes: it read on to the end of the file, swallowing the lines after it, if any
                rest = text[i:].rstrip("\r\n")
                return "\n" in rest or "\r" in rest
            if "\n" in text[i:j] or "\r" in text[i:j]:
                if text[j + 1 : j + 2] not in ("", delimiter, "\n", "\r"):
                    return True
            i = j + 1
        ends = [k for k in (text.find(delimiter, i), text.find("\n", i), text.find("\r", i)) if k >= 0]
        i = min(ends, default=len(text)) + 1
    return False


def check_header(header: list, file) -> None:
    """A CSV / TSV header naming a column twice: csv.DictReader keeps the last column of a name, so the
    others would be dropped silently. (Unnamed columns, such as the empty ones a spreadsheet leaves after
    the last, cannot be asked for.)"""
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        raise ValueError(f"{file}: the header names the column(s) {repeated} more than once (columns {header}); "
                         "give each column its own name")


def _text_column_hint(candidates: list[str]) -> str:
    """What to pass as --text_column instead, given the fields (or columns) holding strings."""
    if "text" in candidates:
        return "pass --text_column text"
    if len(candidates) == 1:
        return f"pass --text_column {candidates[0]}"
    if candidates:
        return f"pass --text_column with the one that holds the text ({', '.join(candidates)} hold strings)"
    return "no field holds a string: each line needs a string field with the text"


def _table_records(file: Path, text_column: str) -> Iterator[tuple[dict, int]]:
    """CSV (comma) or TSV (tab) rows with a header line, streamed."""
    delimiter = "\t" if _suffix(file) == ".tsv" else ","
    row_lines = []  # the raw lines the reader took for the row being read (check_quotes_closed reads them)
    reader = csv.DictReader(recording((line for _, line, _ in read_lines(file)), row_lines), delimiter=delimiter)
    with long_csv_fields(file, reader):
        fieldnames = reader.fieldnames  # reads the header line
    check_header(fieldnames or [], file)
    if fieldnames is None or text_column not in fieldnames:
        found = ", ".join(fieldnames or []) or "no header"
        if fieldnames and text_column != "text":  # --text_column was passed: name it, and a column to pass instead
            raise ValueError(f"--text_column {text_column}: {file} has no `{text_column}` column (its columns: "
                             f"{found}); {_text_column_hint(fieldnames)}")
        raise ValueError(f"{file} has no `{text_column}` column (its columns: {found}); pass --text_column with "
                         "the column that holds the text")
    while True:
        first_line = reader.reader.line_num + 1
        row_lines.clear()
        with long_csv_fields(file, reader):
            row = next(reader, None)
        if row is None:
            return
        if delimiter == "\t":
            check_tsv_row(row, file, first_line)
        check_quotes_closed(row_lines, first_line, file, delimiter)
        check_row_width(row, len(fieldnames), file, first_line, delimiter)
        text = row.get(text_column)
        yield {**row, "text": text if isinstance(text, str) else ""}, len(text or "")


def read_records(path: str | os.PathLike, text_column: str = "text") -> list[dict]:
    """Each document as a dict: `text` plus any metadata (JSON lines keep all their fields, e.g. the
    shipped Shakespeare has title, genre, scene, heading, source)."""
    return [{**row, "source_file": str(file)} for file in corpus_files(path)
            for row, _ in iter_records(file, text_column)]


def work_name(title, file: str, several_files: bool, record: int) -> str:
    """The work a document belongs to: its `title` (a play, a book), else its file's name when the corpus
    has several files holding documents, else the document itself (`record`: its number among all the
    corpus's records). The file's name alone, not its path: `corpora/x`, `./corpora/x` and an absolute
    path hold out the same works (and one run's held-out text is never another's training text).
    A title is any value but null and "": a JSON title 0 or false names a work as "0" or "False" do,
    which the prepared corpus stores as text (`title or ...` made 0 no title here and a title there, so
    the tokenizer and the training run held out different works)."""
    if title is None or title == "":
        return Path(file).name if several_files else f"document {record}"
    return str(title)


def load_corpus(paths: str | os.PathLike | list | None = None, convert: str | None = None,
                text_column: str = "text") -> list[list[str]]:
    """Documents as lists of sentences, from files, directories or shipped names (None: "shakespeare").

    convert: an OpenCC conversion applied to every text first (e.g. "t2s" for Traditional ->
    Simplified; needs the `zh` extra).
    """
    return [sentences for _, sentences in load_works(paths, convert, text_column)]


def load_works(paths: str | os.PathLike | list | None = None, convert: str | None = None,
               text_column: str = "text") -> list[tuple[str, list[str]]]:
    """(work, sentences) of every document: the work is the record's `title` (a play, a book), else
    its file when the corpus has several files, else the document itself."""
    if paths is None:
        paths = [DEFAULT_CORPUS]
    elif isinstance(paths, str | os.PathLike):
        paths = [paths]
    if not paths:
        raise ValueError("no corpus paths given; pass files, directories, or a shipped name such as 'shakespeare'")
    records = [record for file in corpus_file_list(paths) for record in read_records(file, text_column)]
    documents = []  # (record number, record, sentences)
    for n, record in enumerate(records):
        text = convert_chinese(record["text"], convert) if convert else record["text"]
        sentences = split_sentences(text)
        if sentences:
            documents.append((n, record, sentences))
    if not documents:
        raise ValueError(f"the corpus {[str(p) for p in paths]} is empty: it holds no text; check the files")
    several_files = len({record["source_file"] for _, record, _ in documents}) > 1  # an empty file does not count
    return [(work_name(record.get("title"), record["source_file"], several_files, n), sentences)
            for n, record, sentences in documents]


def split_works(works: list[str], share: float) -> set[str]:
    """The works held out: a `share` of them (at least one when share > 0), chosen by a hash of their
    names, so the same corpus always holds out the same works, whatever the seed or the subset."""
    names = sorted(set(works))
    if share <= 0 or len(names) < 2:
        return set()
    ranked = sorted(names, key=lambda w: hashlib.sha1(w.encode("utf-8")).hexdigest())
    return set(ranked[: max(1, round(share * len(names)))])

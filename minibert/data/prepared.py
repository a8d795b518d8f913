"""Prepared corpora: tokenised once into flat arrays on disk, memory-mapped when training.

A corpus larger than memory cannot live as Python objects (a sentence as an object holding an
int64 array costs about 50 times its text). Here each corpus file is tokenised once, per
tokenizer, into six flat arrays, the layout of Megatron-LM's indexed datasets (token ids in one
file, an index of sentence and document offsets beside it) with nanoGPT's memory-mapped token file:

    <cache>/prepared/<tokenizer fingerprint>/<file stem>-<file fingerprint>/
        tokens.bin        (N,) uint16 (a vocabulary of at most 65,536) or uint32: every sentence's
                          ids, back to back, no special tokens
        word_starts.bin   (N,) bool: the token starts a word (for wwm and span)
        sentences.bin     (S + 1,) int64: sentence i is tokens[sentences[i]:sentences[i + 1]]
        documents.bin     (D + 1,) int64: document j is sentences documents[j]:documents[j + 1]
        records.bin       (D,) int64: each document's record number in its file (its work's name)
        titles.bin        (D,) int32: index into meta.json's titles, -1 for none
        meta.json         counts, dtypes, the source file's fingerprint; written last, so a directory
                          without it is an interrupted preparation and is never read (nor one whose
                          arrays are not the sizes it records: prepared again)

Training reads these through np.memmap: the operating system pages in what a batch touches, so
resident memory does not grow with the corpus. Objectives build their examples lazily from the
offsets (minibert.data.objectives.base.Examples).

Fingerprints. A file's is its resolved path, size and modification time (what make and Hugging
Face `datasets` use for local files): an edited file gets a new directory and is prepared again,
a removed file is simply no longer listed, and new files in a corpus directory are prepared alone.
A tokenizer's is a hash of its whole definition (tokenizer.json) and of the word-start rule, so a
cache made with another tokenizer is never read.

Why hand-written and not `datasets`' Arrow files: the format is six flat arrays that numpy maps
directly; reading `Shard` and `TokenizedCorpus` below (about 100 lines) is the lesson, and `datasets` would
add pyarrow (about 100 MB) for it.

The same arrays also live in memory (`tokenize_in_memory`): that is how a list of documents (the
tests, a notebook) goes through the one pipeline.
"""

import errno
import glob
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minibert.data.chinese import has_cjk, segment_words
from minibert.data.corpus import (
    JSONL_SUFFIXES,
    TABLE_SUFFIXES,
    _suffix,
    corpus_file_list,
    ends_lines_with_lone_cr,
    iter_records,
    join_sentences,
    split_sentences,
    work_name,
)
from minibert.data.fast_wordpiece import FastWordPiece

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# The jieba rule's revision, in the fingerprint of jieba-rule caches only: 2 counts a jieba word that
# starts inside a byte-level BPE token (prepared with rule 1, such a cache would be reused as it was)
JIEBA_RULE = 2
CHUNK_CHARS = 1 << 21  # about 2 MB of text per task handed to a worker
# Less text than this is prepared in this process: a pool of workers takes about 3 s to start (each
# imports torch with minibert), the time this process takes for about 15 MB on its own, so two
# workers, each doing half, gain only past about 30 MB (measured on 2 cores).
PARALLEL_MIN_BYTES = 32 << 20
WORD_RULES = ("vocab", "jieba")  # word starts from the vocabulary (## / no Ġ) only, or jieba for Chinese text
ARRAYS = {"tokens": None, "word_starts": np.bool_, "sentences": np.int64, "documents": np.int64,
          "records": np.int64, "titles": np.int32}  # None: the vocabulary's token dtype


def default_cache_dir() -> Path:
    """$MINIBERT_CACHE, else ~/.cache/minibert (the prepared corpora live in its `prepared` folder)."""
    return Path(os.environ.get("MINIBERT_CACHE") or Path.home() / ".cache" / "minibert")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


# -- the arrays, in memory or mapped from disk --------------------------------------------------------
@dataclass
class Shard:
    """One corpus file, tokenised: the arrays above (memory-mapped when `directory` is set)."""

    tokens: np.ndarray
    word_starts: np.ndarray
    sentences: np.ndarray
    documents: np.ndarray
    records: np.ndarray
    titles: np.ndarray
    title_names: list[str]
    file: str  # the source file, for work names
    num_records: int  # records in the file, documents without text included (work names number them)
    directory: Path | None = None

    @classmethod
    def open(cls, directory: Path) -> "Shard":
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        dtypes = {**ARRAYS, "tokens": np.dtype(meta["token_dtype"])}
        arrays = {}
        for name, dtype in dtypes.items():
            count = meta["counts"][name]
            # np.memmap refuses empty files; an empty array needs no mapping
            arrays[name] = (np.memmap(directory / f"{name}.bin", dtype=dtype, mode="r", shape=(count,)) if count
                            else np.zeros(0, dtype=dtype))
        return cls(**arrays, title_names=meta["titles"], file=meta["file"], num_records=meta["num_records"],
                   directory=directory)

    def __getstate__(self):  # DataLoader workers reopen the files instead of copying the arrays
        return {"reopen": self.directory} if self.directory else self.__dict__

    def __setstate__(self, state):
        self.__dict__.update(vars(Shard.open(state["reopen"])) if "reopen" in state else state)

    @property
    def num_documents(self) -> int:
        return len(self.documents) - 1


@dataclass
class TokenizedCorpus:
    """Documents chosen from shards: `selection[k]` holds the ids of shard k's documents in use
    (all of them, or the training or held-out works). What every objective reads."""

    shards: list[Shard]
    selection: list[np.ndarray]
    prepared_bytes: int = 0  # text tokenised by the call that made this corpus (0: all from the cache)
    prepared_seconds: float = 0.0

    @classmethod
    def whole(cls, shards: list[Shard]) -> "TokenizedCorpus":
        return cls(shards, [np.arange(s.num_documents) for s in shards])

    def __len__(self) -> int:
        return sum(len(s) for s in self.selection)

    def documents(self):
        """(shard index, document's sentence offsets (n + 1,) into the shard's tokens), in corpus order."""
        for k, (shard, chosen) in enumerate(zip(self.shards, self.selection, strict=True)):
            for d in chosen.tolist():
                yield k, np.asarray(shard.sentences[shard.documents[d]:shard.documents[d + 1] + 1])

    def tokens(self, shard: int, start: int, end: int) -> np.ndarray:
        return np.asarray(self.shards[shard].tokens[start:end], dtype=np.int64)

    def num_tokens(self) -> int:
        """Tokens of the selected documents' sentences (no special tokens), read from the offsets alone."""
        total = 0
        for shard, chosen in zip(self.shards, self.selection, strict=True):
            documents, sentences = np.asarray(shard.documents), np.asarray(shard.sentences)
            total += int((sentences[documents[chosen + 1]] - sentences[documents[chosen]]).sum())
        return total

    def word_starts(self, shard: int, start: int, end: int) -> np.ndarray:
        return np.asarray(self.shards[shard].word_starts[start:end])

    def work_names(self) -> list[str]:
        """Each selected document's work (corpus.work_name's rule: title, else file, else the document)."""
        several_files = sum(shard.num_documents > 0 for shard in self.shards) > 1  # as corpus.load_works
        names, first_record = [], 0
        for shard, chosen in zip(self.shards, self.selection, strict=True):
            for d in chosen.tolist():
                title = shard.titles[d]
                names.append(work_name(shard.title_names[title] if title >= 0 else None, shard.file, several_files,
                                       first_record + int(shard.records[d])))
            first_record += shard.num_records
        return names

    def subset(self, keep: np.ndarray) -> "TokenizedCorpus":
        """The documents whose positions (in corpus order, 0 .. len - 1) are in `keep`."""
        keep = np.asarray(keep, dtype=np.int64)
        out, start = [], 0
        for chosen in self.selection:
            inside = keep[(keep >= start) & (keep < start + len(chosen))] - start
            out.append(chosen[np.sort(inside)])
            start += len(chosen)
        return TokenizedCorpus(self.shards, out, self.prepared_bytes, self.prepared_seconds)


# -- tokenising documents -----------------------------------------------------------------------------
def continuation_table(tokenizer) -> np.ndarray:
    """(V,) bool: True for tokens that continue a word (WordPiece `##x`; byte-level BPE: no leading Ġ)."""
    table = np.zeros(tokenizer.vocab_size, dtype=bool)
    for token, i in tokenizer.get_vocab().items():
        table[i] = token.startswith("##") if tokenizer.kind == "wordpiece" else not token.startswith("Ġ")
    table[tokenizer.all_special_ids] = False
    return table


class DocumentTokenizer:
    """Turns documents (lists of sentences) into shard arrays. Each sentence gets a leading space, so a
    byte-level BPE sees the word boundary it would see in running text. Word starts come from the
    vocabulary, or, with words="jieba" and Chinese text, from jieba's words (run once per document).

    A BERT tokenizer goes through minibert.data.fast_wordpiece (each distinct word encoded once), which
    gives the backend's very ids; a document it cannot take, and every other tokenizer, goes to the
    backend's encode_batch."""

    def __init__(self, tokenizer, words: str = "vocab"):
        if words not in WORD_RULES:
            raise ValueError(f"unknown word-start rule {words!r}; use one of {WORD_RULES}")
        self.backend, self.words = tokenizer.backend, words
        self.fast = FastWordPiece.for_backend(tokenizer.backend)
        self.continuation = continuation_table(tokenizer)
        self.dtype = token_dtype(tokenizer.vocab_size)

    def __call__(self, documents: list[list[str]]) -> dict[str, np.ndarray]:
        """Arrays for these documents: tokens, word_starts, sentence lengths and sentences per document.
        Sentences that give no token are left out (they hold nothing to learn)."""
        ids: list[int] = []  # every kept sentence's ids, back to back (one array at the end, not one per sentence)
        lengths, per_doc = [], []
        jieba = []  # (where the sentence starts in ids, its word starts) for the jieba rule's documents
        for sentences, jieba_starts in self._encode(documents):
            kept = 0
            for j, sentence_ids in enumerate(sentences):
                if not sentence_ids:
                    continue
                if jieba_starts is not None:
                    jieba.append((len(ids), jieba_starts[j]))
                ids += sentence_ids
                lengths.append(len(sentence_ids))
                kept += 1
            per_doc.append(kept)
        tokens = np.array(ids, dtype=np.int64)
        word_starts = ~self.continuation[tokens]
        for start, starts in jieba:
            word_starts[start:start + len(starts)] = starts
        return {"tokens": tokens.astype(self.dtype), "word_starts": word_starts,
                "lengths": np.asarray(lengths, dtype=np.int64), "per_document": np.asarray(per_doc, dtype=np.int64)}

    def _encode(self, documents: list[list[str]]):
        """Each document's sentences as lists of ids, with jieba's word starts where that rule applies
        (else None). The fast path's documents one by one; the others in one batch to the backend."""
        fast = [self._goes_fast(doc) for doc in documents]
        batch = [" " + s for doc, is_fast in zip(documents, fast, strict=True) if not is_fast for s in doc]
        encodings = iter(self.backend.encode_batch(batch, add_special_tokens=False) if batch else [])
        for doc, is_fast in zip(documents, fast, strict=True):
            if is_fast:
                yield [self.fast.encode(s) for s in doc], None
                continue
            doc_encodings = [next(encodings) for _ in doc]
            jieba_starts = self._jieba_starts(doc, doc_encodings) if self.words == "jieba" else None
            yield [e.ids for e in doc_encodings], jieba_starts

    def _goes_fast(self, doc: list[str]) -> bool:
        """The fast path takes a document unless it holds what it cannot do exactly, or needs the backend's
        character offsets (jieba's word starts, for Chinese text)."""
        if self.fast is None:
            return False
        text = "".join(doc)
        return not (self.words == "jieba" and has_cjk(text)) and self.fast.can_encode(text)

    def texts(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The arrays of raw document texts, split into sentences first."""
        return self([split_sentences(t) for t in texts])

    def _jieba_starts(self, doc: list[str], encodings) -> list[np.ndarray] | None:
        """A token starts a word where a jieba word starts at one of its characters, unless it shares its
        first character with the token before (byte-level BPE can cut one character into several tokens).
        A WordPiece token holds one Chinese character, so it starts a word where a jieba word starts; a
        byte-level BPE token can hold the end of one word and the start of the next, and then starts the
        next (counting only a start at its first character joined the two words, and a run of such tokens
        made a whole line one "word"). None: not Chinese text."""
        text = join_sentences(doc)
        if not has_cjk(text):
            return None
        pos, starts = 0, np.zeros(len(text) + 1, dtype=np.int64)  # starts[c]: jieba words started before c
        for word in segment_words(text):  # once per document
            starts[pos + 1] = 1
            pos += len(word)
        starts = np.cumsum(starts)
        out, cursor = [], 0
        for sentence, enc in zip(doc, encodings, strict=True):
            offset = text.index(sentence, cursor) - 1  # -1: the leading space we added
            cursor = offset + 1 + len(sentence)
            char = [a for a, _ in enc.offsets]
            word_starts = np.array([starts[offset + b] > starts[max(offset + a, 0)]  # a word starts in [a, b)
                                    and (i == 0 or a != char[i - 1]) for i, (a, b) in enumerate(enc.offsets)],
                                   dtype=bool)
            if len(word_starts):
                word_starts[0] = True
            out.append(word_starts)
        return out


def _chunk_arrays(part: dict, records: list[int], title_ids: list[int], tokens_before: int,
                  sentences_before: int) -> dict[str, np.ndarray]:
    """What one tokenised chunk appends to its shard's arrays: offsets continue from the tokens and
    sentences before it (the leading 0 of the offset arrays is the shard's, written once)."""
    keep = part["per_document"] > 0  # a document whose sentences gave no token is no document
    return {"tokens": part["tokens"], "word_starts": part["word_starts"],
            "sentences": tokens_before + np.cumsum(part["lengths"]),
            "documents": sentences_before + np.cumsum(part["per_document"][keep]),
            "records": np.asarray(records, dtype=np.int64)[keep], "titles": np.asarray(title_ids, dtype=np.int32)[keep]}


def tokenize_in_memory(documents: list[list[str]], tokenizer, words: str = "vocab") -> TokenizedCorpus:
    """Documents (lists of sentences) as a one-shard corpus held in memory, no cache involved."""
    part = DocumentTokenizer(tokenizer, words)(documents)
    arrays = _chunk_arrays(part, list(range(len(documents))), [-1] * len(documents), 0, 0)
    for name in ("sentences", "documents"):
        arrays[name] = np.concatenate([[0], arrays[name]]).astype(np.int64)
    shard = Shard(**arrays, title_names=[], file="<memory>", num_records=len(documents))
    return TokenizedCorpus.whole([shard])


# -- preparing a corpus file into the cache -------------------------------------------------------------
def tokenizer_fingerprint(tokenizer, words: str) -> str:
    definition = tokenizer.backend.to_str() + f"\0{tokenizer.kind}\0{words}\0{FORMAT_VERSION}"
    if words == "jieba":
        definition += f"\0jieba rule {JIEBA_RULE}"
    return hashlib.sha1(definition.encode("utf-8")).hexdigest()[:16]


def file_fingerprint(file: Path, text_column: str = "text") -> str:
    stat = file.stat()
    key = f"{file.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    key += "" if text_column == "text" else f"\0{text_column}"  # another column of the same file is other text
    # "rows.CSV" was read as plain text, "a.txt.GZ" unzipped not at all, before suffixes were taken in any case: a
    # cache of such a file is other text. Only names whose reading changed get a new fingerprint ("B.TXT" was,
    # and is, read as text), so every other cache stays valid.
    def reader(suffix: str, gzipped: bool) -> tuple[str, bool]:
        return (suffix if suffix in TABLE_SUFFIXES + JSONL_SUFFIXES else "text", gzipped)

    was_gzipped = file.suffix == ".gz"
    before = reader(Path(file.stem).suffix if was_gzipped else file.suffix, was_gzipped)
    now = reader(_suffix(file), file.suffix.lower() == ".gz")
    key += "" if now == before else f"\0format {now[0]}{' gz' if now[1] else ''}"
    # A text file of lone \r line ends was one document until they were read (2026-11-24): its cache is other text
    key += "\0lone cr" if now[0] == "text" and ends_lines_with_lone_cr(file) else ""
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def _chunks(file: Path, text_column: str):
    """(texts of the records that hold text, their record numbers, their titles, bytes read, records read
    so far) in pieces of about CHUNK_CHARS characters, streamed from the file."""
    texts, records, titles, chars, size, seen = [], [], [], 0, 0, 0
    for row, row_size in iter_records(file, text_column):
        size += row_size
        if row["text"].strip():
            texts.append(row["text"])
            records.append(seen)
            titles.append(row.get("title"))
            chars += len(row["text"])
        seen += 1
        if chars >= CHUNK_CHARS:
            yield texts, records, titles, size, seen
            texts, records, titles, chars, size = [], [], [], 0, 0
    yield texts, records, titles, size, seen


_WORKER: dict = {}


def _init_worker(tokenizer, words: str) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    # Ctrl-C reaches the whole process group: the main process stops the pool and says so; each worker
    # printing its own KeyboardInterrupt traceback buried that message under dozens of lines
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["tokenize"] = DocumentTokenizer(tokenizer, words)


def _tokenize_texts(texts: list[str]) -> dict:
    """In a worker: split into sentences and tokenise (both are CPU work, so both run in parallel)."""
    return _WORKER["tokenize"].texts(texts)


def text_size(file: Path) -> int | None:
    """Bytes of text in a file: its size, or for gzip the size its trailer records. The trailer holds it
    modulo 4 GiB, so it is taken for a file under 1 GiB only (text compresses less than 4 to 1); None for a
    larger one, and for a file too short to hold a gzip header and trailer (18 bytes: an empty or cut file,
    where seeking to the trailer stopped the run with a bare "OSError: [Errno 22] Invalid argument" before
    the reading could name the file)."""
    size = file.stat().st_size
    if file.suffix.lower() != ".gz":
        return size
    if size < 18 or size >= 1 << 30:
        return None
    with open(file, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


def estimate_bytes(files: list[Path], vocab_size: int) -> int:
    """Disk space a preparation needs, at most: a token per 3 bytes of text (English WordPiece makes one
    per 4 to 5) times the token, word-start and offset bytes."""
    per_token = token_dtype(vocab_size).itemsize + 1 + 2  # + word start + about 2 bytes of offsets per token
    text_bytes = sum(text_size(f) or 4 * f.stat().st_size for f in files)
    return text_bytes * per_token // 3 + (1 << 20)


class NotEnoughDiskSpace(OSError):
    """The data cache's disk cannot hold a preparation (raised before any training starts)."""


# A cache that cannot be written: permission denied, operation not permitted, read-only file system
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class CacheNotWritable(ValueError):
    """The data cache cannot be written (raised before any training starts; a ValueError, so pretrain.py
    prints it as a one-line error, not a traceback)."""


def _not_writable(directory: Path, error: OSError) -> str:
    return (f"cannot write the prepared corpus into the data cache {directory} ({error.strerror}); pass "
            "--data_cache_dir with a directory you can write (or set $MINIBERT_CACHE)")


def check_disk_space(directory: Path, needed: int) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in NOT_WRITABLE:
            raise CacheNotWritable(_not_writable(directory, e)) from None
        raise
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise NotEnoughDiskSpace(
            f"not enough disk space to prepare the corpus in {directory}: it needs about {needed / 2**20:,.0f} MB "
            f"and {free / 2**20:,.0f} MB are free; free some space or pass --data_cache_dir on a larger disk"
        )


class _ShardWriter:
    """Appends chunks' arrays to the .bin files of a shard under construction."""

    def __init__(self, directory: Path, dtype: np.dtype):
        self.directory, self.dtype = directory, dtype
        self.files = {name: open(directory / f"{name}.bin", "wb") for name in ARRAYS}  # noqa: SIM115
        self.tokens = self.sentences = 0
        self.counts = dict.fromkeys(ARRAYS, 0)
        self.titles: dict[str, int] = {}
        self._write("sentences", np.zeros(1, np.int64))
        self._write("documents", np.zeros(1, np.int64))

    def _write(self, name: str, array: np.ndarray) -> None:
        self.files[name].write(np.ascontiguousarray(array).tobytes())
        self.counts[name] += len(array)

    def add(self, part: dict, records: list[int], titles: list) -> None:
        ids = [-1 if t is None else self.titles.setdefault(str(t), len(self.titles)) for t in titles]
        for name, array in _chunk_arrays(part, records, ids, self.tokens, self.sentences).items():
            self._write(name, array.astype(self.dtype) if name == "tokens" else array)
        self.tokens += int(part["lengths"].sum())
        self.sentences += len(part["lengths"])

    def close(self, meta: dict) -> None:
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        meta = {**meta, "token_dtype": self.dtype.name, "counts": self.counts, "titles": list(self.titles)}
        (self.directory / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def prepare_files(todo: list[tuple[Path, Path]], tokenizer, words: str, workers: int, progress: bool,
                  text_column: str = "text") -> None:
    """Tokenise each corpus file into its directory. Chunks are read here and tokenised by a pool of
    processes when the work is large enough (at most two chunks per worker in flight, so memory stays
    bounded; results are written in order). Each directory is built under a temporary name and renamed
    once complete, so an interrupted preparation leaves nothing that could be read."""
    total = sum(text_size(f) or f.stat().st_size for f, _ in todo)
    pool = None
    if workers > 1 and total >= PARALLEL_MIN_BYTES:
        context = multiprocessing.get_context("spawn")  # fork after torch's and tokenizers' threads is unsafe
        pool = context.Pool(workers, initializer=_init_worker, initargs=(tokenizer, words))
    tokenize = DocumentTokenizer(tokenizer, words)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"preparing {len(todo)} corpus file(s)",
                   dynamic_ncols=True)
    pending: deque = deque()  # (writer, job or None to close the file, ...) in file order
    temporary = []

    def drain(limit: int) -> None:
        while len(pending) > limit:
            writer, job, *rest = pending.popleft()
            if job is None:  # the file's last chunk was written: complete it
                file, directory, num_records = rest
                writer.close({"format": FORMAT_VERSION, "file": str(file), "text_column": text_column,
                              "fingerprint": file_fingerprint(file, text_column), "words": words,
                              "num_records": num_records})
                _move_into_place(writer.directory, directory)
                continue
            records, titles, size = rest
            writer.add(job.get() if pool is not None else job, records, titles)
            if bar is not None:
                bar.update(size)

    try:
        for file, directory in todo:
            remove_abandoned_temporaries(directory)
            tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            temporary.append(tmp)
            writer = _ShardWriter(tmp, token_dtype(tokenizer.vocab_size))
            num_records = 0
            for texts, records, titles, size, seen in _chunks(file, text_column):
                job = pool.apply_async(_tokenize_texts, (texts,)) if pool is not None else tokenize.texts(texts)
                pending.append((writer, job, records, titles, size))
                num_records = seen
                drain(2 * workers if pool is not None else 0)
            pending.append((writer, None, file, directory, num_records))
        drain(0)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise NotEnoughDiskSpace(f"the disk filled up while preparing the corpus in {todo[0][1].parent}; free "
                                     "some space or pass --data_cache_dir on a larger disk") from None
        cache = todo[0][1].parent
        # the cache's own files only: a corpus file that cannot be read is named by the error as it is
        if e.errno in NOT_WRITABLE and e.filename is not None and Path(e.filename).is_relative_to(cache):
            raise CacheNotWritable(_not_writable(cache, e)) from None
        raise
    finally:
        if pool is not None:
            pool.terminate()
        if bar is not None:
            bar.close()
        for tmp in temporary:
            shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, directory: Path) -> None:
    """Rename a completed shard folder to its final name. A folder already there is kept when it is complete
    (`is_complete`: another process, a second run, finished the same preparation first); one without meta.json,
    or with an array missing or short, is damaged (a copy or clean-up cut short: a folder is only ever renamed
    there whole) and is replaced, since otherwise every later run prepared again and then failed to open it."""
    try:
        os.replace(tmp, directory)
        return
    except OSError:
        if is_complete(directory):
            shutil.rmtree(tmp, ignore_errors=True)
            return
    logger.warning("replacing %s, a prepared folder without its meta.json or with arrays missing or cut short "
                   "(damaged)", directory)
    shutil.rmtree(directory, ignore_errors=True)
    try:
        os.replace(tmp, directory)
    except OSError:  # another process replaced it meanwhile
        if not is_complete(directory):
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def is_complete(directory: Path) -> bool:
    """Whether a prepared folder can be read: its meta.json (written last) and every array at the size meta.json
    records. meta.json alone was trusted, so a folder whose arrays a copy or clean-up cut short (or lost) failed
    at every later run with a bare FileNotFoundError or "mmap length is greater than file size", and was never
    prepared again; so did an empty or cut meta.json (a crash before its bytes reached the disk). Checking costs
    a few stat calls per file of the corpus."""
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        dtypes = {**ARRAYS, "tokens": np.dtype(meta["token_dtype"])}
        return all((directory / f"{name}.bin").stat().st_size == meta["counts"][name] * np.dtype(dtype).itemsize
                   for name, dtype in dtypes.items())
    except (OSError, ValueError, KeyError, TypeError):  # ValueError: not JSON (or not UTF-8)
        return False


ABANDONED_AFTER = 3600  # seconds without a write before another process's temporary folder counts as abandoned


def remove_abandoned_temporaries(final: Path) -> None:
    """Delete `final`'s temporary siblings (`<name>.tmp-<pid>`) that a killed process left behind (kill -9,
    out of memory): its process is gone from this machine and nothing in the folder was written for an
    hour (a process on another machine sharing the cache would still be writing)."""
    # escaped: a corpus file named "notes[draft].txt" made a pattern that never matched its own folders
    for tmp in final.parent.glob(f"{glob.escape(final.name)}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        try:
            last_write = max(p.stat().st_mtime for p in [tmp, *tmp.rglob("*")])
        except OSError:  # removed meanwhile
            continue
        if time.time() - last_write > ABANDONED_AFTER:
            logger.info("removing %s, left by a process that no longer runs", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True


def prepare_corpus(paths, tokenizer, cache_dir: str | os.PathLike | None = None, words: str = "vocab",
                   workers: int | None = None, progress: bool = False, text_column: str = "text") -> TokenizedCorpus:
    """Every file of the corpus (files, directories, shipped names), tokenised with `tokenizer`, from the
    cache when it holds them and prepared into it otherwise. Returns the whole corpus, memory-mapped."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files = corpus_file_list(paths)
    root = Path(cache_dir or default_cache_dir()) / "prepared" / tokenizer_fingerprint(tokenizer, words)
    directories = [root / f"{file.stem}-{file_fingerprint(file, text_column)}" for file in files]
    todo = [(f, d) for f, d in zip(files, directories, strict=True) if not is_complete(d)]
    if todo:
        check_disk_space(root, estimate_bytes([f for f, _ in todo], tokenizer.vocab_size))
        logger.info("preparing %d of %d corpus files into %s", len(todo), len(files), root)
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    started = time.perf_counter()
    if todo:
        prepare_files(todo, tokenizer, words, workers, progress, text_column)
    shards = []
    for file, directory in zip(files, directories, strict=True):
        shard = Shard.open(directory)
        shard.file = str(file)  # its name names its documents' work when they have no title (corpus.work_name)
        shards.append(shard)
    corpus = TokenizedCorpus.whole(shards)
    corpus.prepared_bytes = sum(text_size(f) or f.stat().st_size for f, _ in todo)
    corpus.prepared_seconds = time.perf_counter() - started if todo else 0.0
    if not len(corpus):
        raise ValueError(f"the corpus {[str(p) for p in paths]} is empty: it holds no text; check the files")
    return corpus

"""BERT's tokenizer with a cache per word: the backend's very ids, several times faster on a corpus.

Preparing a corpus (minibert.data.prepared) encodes every sentence once, and Hugging Face `tokenizers`
encodes about 1 MB of text per second per core on a small CPU, most of it spent on words it has
already cut thousands of times. BERT's pipeline lets those be skipped without changing a single id:

- its normaliser (BertNormalizer) treats each character alone: control characters dropped, whitespace
  made a space, a space put on each side of a Chinese ideograph, accents stripped (NFD, then the marks
  dropped), letters lower-cased;
- its pre-tokeniser (BertPreTokenizer) splits at whitespace and stands each punctuation mark alone;
- its model (WordPiece) cuts each of those words on its own.

So the ids of a text are the ids of its whitespace-separated pieces put end to end: "Speak, lord." is
"Speak," then "lord.". (NFD reorders only runs of combining marks, and no whitespace character is one,
so it never reaches across a space.) Each distinct piece is encoded once, by the backend itself, and
remembered; a sentence costs one `str.split` and a dictionary look-up per piece. Chinese text has no
spaces, but the normaliser puts a space on each side of every ideograph, so each ideograph is a piece
of its own (found with one regular expression, the pieces between them with `\\s`, which is exactly
`str.split`'s whitespace).

Nothing of the normaliser is written again here: a piece not yet seen goes to the backend's own
encode. That is on purpose. Classes of punctuation and whitespace written from Python's `unicodedata`
would be wrong on some characters, because the library's Unicode tables are older than Python's:
104 characters that Python 3.11 files under punctuation (U+2E4F, say) stay inside words in tokenizers
0.23, and 2 go the other way. Marks, accents and case inside a piece are the backend's business too.

Where "ids of the text = ids of its pieces" could fail, `can_encode` says no and the caller uses the
backend for that text:
- a text holding an added token ("[MASK]" written in the text is one token, found before normalising);
- a text holding a character that `str.split` splits at but the backend does not: \\x0b, \\x0c,
  \\x1c-\\x1f and \\x85 are control characters to BertNormalizer, so "a\\x0cb" is the one word "ab"
  (found by asking the backend about each of Python's whitespace characters).
`for_backend` gives None (every text to the backend) for any other pipeline: another normaliser or
pre-tokeniser (byte-level BPE keeps the space in its tokens), truncation or padding switched on, or
added tokens that are matched after normalising.
"""

import json
import re
import sys
from functools import cache

# tokenizers' `is_chinese_char` (its BertNormalizer's source): the CJK Unified Ideographs, their
# extensions A to E and the compatibility ideographs. tests/test_fast_tokenize.py checks these ranges
# against the installed library over every code point.
IDEOGRAPHS = ("\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f\U0002b740-\U0002b81f"
              "\U0002b920-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f")
PIECE = re.compile(f"[{IDEOGRAPHS}]|[^\\s{IDEOGRAPHS}]+")  # an ideograph, or a run of other non-space characters
MAX_CACHED_PIECES = 1 << 19  # about 80 MB of pieces and ids; the cache starts over when full


@cache
def python_whitespace() -> str:
    """Every character `str.split()` splits at (29 in Python 3.11)."""
    return "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


class FastWordPiece:
    """`encode(text)` == `backend.encode(text, add_special_tokens=False).ids` for every text that
    `can_encode` accepts. Build it with `FastWordPiece.for_backend(backend)`."""

    def __init__(self, backend, pad_ideographs: bool, added_tokens: list[str]):
        self.backend = backend
        self.pad_ideographs = pad_ideographs
        self.added_tokens = added_tokens
        self.pieces: dict[str, tuple[int, ...]] = {}
        # Python splits at these, the backend does not (it drops them, or keeps them inside the word)
        not_split = [c for c in python_whitespace() if self._words("a" + c + "a") != ["a", "a"]]
        self.unsplittable = re.compile(f"[{re.escape(''.join(not_split))}]") if not_split else None

    @classmethod
    def for_backend(cls, backend) -> "FastWordPiece | None":
        """The fast path for a backend with BERT's normaliser and pre-tokeniser, else None."""
        definition = json.loads(backend.to_str())
        normalizer, pre_tokenizer = definition["normalizer"] or {}, definition["pre_tokenizer"] or {}
        if (normalizer.get("type") != "BertNormalizer" or pre_tokenizer.get("type") != "BertPreTokenizer"
                or definition["truncation"] is not None or definition["padding"] is not None
                or any(token["normalized"] for token in definition["added_tokens"])):
            return None
        return cls(backend, bool(normalizer.get("handle_chinese_chars")),
                   [token["content"] for token in definition["added_tokens"]])

    def _words(self, text: str) -> list[str]:
        """The backend's words of a text (normalised and pre-tokenised), for asking it about characters."""
        normalized = self.backend.normalizer.normalize_str(text)
        return [word for word, _ in self.backend.pre_tokenizer.pre_tokenize_str(normalized)]

    def can_encode(self, text: str) -> bool:
        """Whether `encode` gives the backend's ids for this text (and for any part of it)."""
        if any(token in text for token in self.added_tokens):
            return False
        return self.unsplittable is None or self.unsplittable.search(text) is None

    def encode(self, text: str) -> list[int]:
        """The backend's ids of a text that `can_encode` accepts: its pieces' ids, each piece encoded once."""
        if self.pad_ideographs and not text.isascii():  # isascii reads a flag: free for English text
            text_pieces = PIECE.findall(text)
        else:
            text_pieces = text.split()
        ids: list[int] = []
        pieces = self.pieces
        for piece in text_pieces:
            piece_ids = pieces.get(piece)
            if piece_ids is None:
                piece_ids = self._encode_piece(piece)
            ids += piece_ids
        return ids

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        if len(self.pieces) >= MAX_CACHED_PIECES:  # a corpus with endless distinct pieces keeps memory bounded
            self.pieces.clear()
        piece_ids = tuple(self.backend.encode(piece, add_special_tokens=False).ids)
        self.pieces[piece] = piece_ids
        return piece_ids

"""The fast path of corpus preparation gives exactly what it replaces: FastWordPiece's ids are the
backend's (shipped corpora, hand-written nasty strings, random strings, every normaliser option),
the prepared arrays are those of the backend alone, and the faster sentence splitter splits as before."""

import random
import re
import sys

import numpy as np
import pytest
from tokenizers import normalizers

from minibert.data.corpus import read_records, split_sentences
from minibert.data.fast_wordpiece import IDEOGRAPHS, FastWordPiece
from minibert.data.prepared import DocumentTokenizer
from minibert.tokenizer import train_tokenizer, wordpiece_backend

NASTY = [
    "", " ", " \t\n ",  # nothing to encode
    "Hello, World!", "Speak, lord.  To be, or not to be?",
    "Café déjà vu, naïve résumé, ÀÉÎÕÜ ångström",  # accents: stripped when lower-casing
    "e\u0301 cafe\u0301 \u0301leading mark", "a\u0316\u0301\u0300b",  # combining marks, which NFD reorders
    "İstanbul ΣΊΣΥΦΟΣ straße ﬁne Ǆ",  # lower-casing that changes length or depends on context
    "tab\there\nnew\rline", "no\u00a0break\u2000en\u200aquad\u3000ideo\u2028line",  # Unicode spaces
    "narrow\u202fnbsp\u205fmath\u1680ogham", "zero\u200bwidth\u200djoiner\ufeffbom",  # format characters
    "ctrl\x00\x01\x08\x0e\x7fchars", "vt\x0bff\x0cfs\x1cgs\x1drs\x1eus\x1fnel\x85",  # controls
    "snake_case_word __init__ _", "a" * 100, "b" * 101, "supercalifragilisticexpialidocious" * 4,  # > 100: [UNK]
    "😀 👍🏽 👨‍👩‍👧 🥺 ❤️", "\ufffd replacement \U000e0001 tag",
    "中文English混合123，好！", "Hello世界 世界hello", "ひらがなカタカナ漢字",  # kana are not ideographs
    "豈\uf900\ufa0e\U0002f800 𠀀𪜀 compat and extension ideographs",
    "— ’ “ ” … « » ‹ › ¡ ¿ · • ¶ § † ‡",
    "U+2E4F ⹏ U+166D ᙭ U+111C9 \U000111c9",  # punctuation to Python and not to tokenizers 0.23, or back
    "[MASK] in text, a[SEP]b, [mask] [CLS]",  # added tokens
    "한국어 مرحبا हिन्दी ภาษาไทย Ελληνικά русский", "don't rock'n'roll 3.14 1,000 $5 50% a&b <tag> ~/x @me #1",
    "\u0378 unassigned \U0010ffff last \ue000 private",
]


def _backend_ids(backend, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in backend.encode_batch([" " + t for t in texts], add_special_tokens=False)]


def _assert_same_as_backend(fast: FastWordPiece, texts: list[str]) -> None:
    expected = _backend_ids(fast.backend, texts)
    for text, ids in zip(texts, expected, strict=True):
        if fast.can_encode(text):
            assert fast.encode(text) == ids, f"the fast path differs from the backend on {text!r}"


@pytest.fixture(scope="module")
def english():
    return [split_sentences(r["text"]) for r in read_records("shakespeare")]


@pytest.fixture(scope="module")
def chinese():
    return [split_sentences(r["text"]) for r in read_records("tang_poems")]


@pytest.fixture(scope="module")
def tokenizers(english, chinese):
    """BERT tokenizers as this project trains them: lower-cased and cased English, and Chinese."""
    english_texts = [" ".join(d) for d in english[:300]]
    return {"uncased": train_tokenizer(english_texts, vocab_size=2000),
            "cased": train_tokenizer(english_texts, vocab_size=2000, lowercase=False),
            "chinese": train_tokenizer([" ".join(d) for d in chinese[:3000]], vocab_size=3000)}


def _prepared_both_ways(tokenizer, documents, words="vocab"):
    fast = DocumentTokenizer(tokenizer, words)
    assert fast.fast is not None
    slow = DocumentTokenizer(tokenizer, words)
    slow.fast = None  # the backend alone: what preparation did before the fast path
    return fast(documents), slow(documents)


def _assert_same_arrays(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize("kind", ["uncased", "cased"])
def test_the_shipped_english_corpus_prepares_to_the_backends_arrays(kind, tokenizers, english):
    got, expected = _prepared_both_ways(tokenizers[kind], english)
    _assert_same_arrays(got, expected)
    assert len(got["tokens"]) > 900_000


def test_the_shipped_chinese_corpus_prepares_to_the_backends_arrays(tokenizers, chinese):
    tokenizer = tokenizers["chinese"]
    got, expected = _prepared_both_ways(tokenizer, chinese)
    _assert_same_arrays(got, expected)
    fast = FastWordPiece.for_backend(tokenizer.backend)
    fast.encode(chinese[0][0])
    assert all(len(piece) == 1 for piece in fast.pieces)  # each ideograph and mark a piece: the cache stays small


def test_the_jieba_word_rule_is_unchanged(tokenizers, chinese, english):
    pytest.importorskip("jieba")
    documents = chinese[:200] + english[:20]
    got, expected = _prepared_both_ways(tokenizers["chinese"], documents, words="jieba")
    _assert_same_arrays(got, expected)


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("strip_accents", [None, True, False])
@pytest.mark.parametrize("clean_text", [True, False])
@pytest.mark.parametrize("handle_chinese_chars", [True, False])
def test_nasty_strings_under_every_normaliser_option(tokenizers, lowercase, strip_accents, clean_text,
                                                     handle_chinese_chars):
    vocab = tokenizers["uncased"].get_vocab() | tokenizers["chinese"].get_vocab()
    backend = wordpiece_backend(dict(zip(vocab, range(len(vocab)), strict=True)), lowercase=lowercase)
    backend.normalizer = normalizers.BertNormalizer(clean_text=clean_text, handle_chinese_chars=handle_chinese_chars,
                                                    strip_accents=strip_accents, lowercase=lowercase)
    fast = FastWordPiece.for_backend(backend)
    _assert_same_as_backend(fast, NASTY)
    _assert_same_as_backend(fast, [" ".join(NASTY)])


def test_nasty_strings_through_the_document_tokenizer(tokenizers):
    """Texts the fast path cannot take (an added token written out, \\x0c between letters) go to the
    backend, so the arrays are the backend's in every case, and most texts do go fast."""
    for tokenizer in tokenizers.values():
        got, expected = _prepared_both_ways(tokenizer, [[t] for t in NASTY] + [NASTY])
        _assert_same_arrays(got, expected)
    fast = FastWordPiece.for_backend(tokenizers["uncased"].backend)
    refused = [t for t in NASTY if not fast.can_encode(t)]
    assert refused == ["vt\x0bff\x0cfs\x1cgs\x1drs\x1eus\x1fnel\x85", "[MASK] in text, a[SEP]b, [mask] [CLS]"]


def test_random_strings_of_awkward_characters(tokenizers):
    alphabet = list("aZé_-.,!?'\" \t\n\u00a0\u3000\u200b\u0301\x00\x85中文，。豈😀⹏") + ["##", "[UNK]", "ab" * 60]
    rng = random.Random(0)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    for tokenizer in tokenizers.values():
        _assert_same_as_backend(FastWordPiece.for_backend(tokenizer.backend), texts)


def test_a_full_cache_starts_over_and_stays_exact(tokenizers, english, monkeypatch):
    monkeypatch.setattr("minibert.data.fast_wordpiece.MAX_CACHED_PIECES", 50)
    fast = FastWordPiece.for_backend(tokenizers["uncased"].backend)
    sentences = [s for d in english[:40] for s in d]
    _assert_same_as_backend(fast, sentences)
    assert 0 < len(fast.pieces) <= 50


def test_the_ideograph_ranges_are_the_normalisers(tokenizers):
    """Every code point through BERT's normaliser with only its Chinese rule on: it pads exactly the
    characters that IDEOGRAPHS names (a wrong range would cut a word the backend keeps whole)."""
    pad_only = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False,
                                          lowercase=False)
    every = "".join(chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i <= 0xDFFF)  # no lone surrogates
    assert pad_only.normalize_str(every) == re.sub(f"[{IDEOGRAPHS}]", r" \g<0> ", every)


def test_other_pipelines_are_left_to_the_backend(tokenizers, english):
    bpe = train_tokenizer([" ".join(d) for d in english[:50]], kind="bytelevel_bpe", vocab_size=400)
    assert FastWordPiece.for_backend(bpe.backend) is None
    backend = tokenizers["uncased"].backend
    backend.enable_truncation(8)
    try:
        assert FastWordPiece.for_backend(backend) is None
    finally:
        backend.no_truncation()
    assert FastWordPiece.for_backend(backend) is not None


# -- sentence splitting -----------------------------------------------------------------------------
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "no", "prof", "mt"}
_TWO_ALTERNATIVES = re.compile(r"([.!?]+[\"'”’)\]]*)(?=\s)|([。！？]+[”’」』）]*)")


def _split_sentences_before(text: str) -> list[str]:
    """split_sentences as it was written before it was made faster: the reference (with the rule added
    since: a straight quote after 。！？ closes a sentence that opened one)."""
    text = re.sub(r"\s+", " ", text).strip()
    sentences, start = [], 0
    for match in _TWO_ALTERNATIVES.finditer(text):
        end = match.end()
        if match.group(1):
            word = text[start:match.start()].rsplit(" ", 1)[-1].lower()
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha() and match.group(1) == "."):
                continue
        else:
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


def test_split_sentences_splits_as_before():
    texts = [r["text"] for name in ("shakespeare", "tang_poems") for r in read_records(name)] + NASTY
    alphabet = list("ab .!?。！？”’」』）\"')]\t\n\u00a0\u3000\x1c") + ["Mr.", "e.g.", "No.", "A.", "é.", "J. "]
    rng = random.Random(0)
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(20_000)]
    for text in texts:
        assert split_sentences(text) == _split_sentences_before(text), text


def test_a_bpe_token_holding_the_start_of_a_jieba_word_starts_a_word(monkeypatch):
    """Byte-level BPE can merge the end of one Chinese word with the start of the next ("们喜" in 我们|喜欢):
    only a start at a token's first character counted, so the two words became one (and a run of such
    tokens a whole line)."""
    from types import SimpleNamespace

    from minibert.data import prepared

    monkeypatch.setattr(prepared, "segment_words", lambda text: ["我们", "喜欢", "诗", "好"])
    tokenizer = SimpleNamespace(words="jieba")
    # " 我们喜欢诗" (the leading space is the tokenizer's) as [" 我", "们喜", "欢", "诗"]; then " 好" as a space
    # and 好 cut into two byte tokens, which share its offsets: only the first of them starts the word
    encodings = [SimpleNamespace(offsets=[(0, 2), (2, 4), (4, 5), (5, 6)]),
                 SimpleNamespace(offsets=[(0, 1), (1, 2), (1, 2)])]
    starts = prepared.DocumentTokenizer._jieba_starts(tokenizer, ["我们喜欢诗", "好"], encodings)
    assert [s.tolist() for s in starts] == [[True, True, False, True], [True, True, False]]

"""Chinese text: Traditional/Simplified conversion with OpenCC, word segmentation with jieba.

Both come with the optional extra `zh` (pip install -e ".[zh]"); a missing package is an error
that names the extra. Whole-word masking for Chinese (Cui et al. 2019,
https://arxiv.org/abs/1906.08101) needs the words: a Chinese BERT vocabulary has one token per
character, so the words come from a segmenter, run once per document (see objectives/wwm.py).
"""

import logging
from functools import cache, lru_cache

logger = logging.getLogger(__name__)

# OpenCC's conversions, every configuration the opencc package ships (1.4.2; hk2t, tw2t, t2jp, jp2t, hk2sp and
# s2hkp were refused as unknown): s = Simplified, t = Traditional (OpenCC's standard), tw = Taiwan, hk = Hong Kong,
# jp = Japanese Shinjitai (the kanji of today's Japanese); a trailing p also converts phrases (e.g. 软件 -> 軟體
# for s2twp).
OPENCC_CONVERSIONS = ("hk2s", "hk2sp", "hk2t", "jp2t", "s2hk", "s2hkp", "s2t", "s2tw", "s2twp", "t2hk", "t2jp", "t2s",
                      "t2tw", "tw2s", "tw2sp", "tw2t")
# The CJK Unified Ideographs, their extensions A to E and the compatibility ideographs: BERT's
# `_is_chinese_char`, the characters its normaliser makes words of their own (the tokenizers library's
# copy starts extension E at 0x2B920; fast_wordpiece.IDEOGRAPHS follows it). Extensions C to E were left
# out: a sentence of them was joined to the next with a space, and jieba's word rule never saw them.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
              (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in CJK_RANGES)


def has_cjk(text: str) -> bool:
    return any(is_cjk(c) for c in text)


def _missing(package: str) -> ImportError:
    # minibert is installed from its checkout (a PyPI package of the same name is another project)
    return ImportError(f"{package} is needed for Chinese text; install the extra from the minibert checkout: "
                       f"pip install -e \".[zh]\" (or pip install jieba opencc)")


@cache
def _converter(conversion: str):
    if conversion not in OPENCC_CONVERSIONS:
        raise ValueError(f"unknown OpenCC conversion {conversion!r}; use one of {', '.join(OPENCC_CONVERSIONS)}")
    try:
        import opencc
    except ImportError:
        raise _missing("opencc") from None
    return opencc.OpenCC(f"{conversion}.json")


def convert_chinese(text: str, conversion: str) -> str:
    """Convert between Traditional and Simplified Chinese (and their regional and Japanese forms: OPENCC_CONVERSIONS),
    e.g. convert_chinese("騎馬", "t2s") -> "骑马"."""
    return _converter(conversion).convert(text)


@lru_cache(maxsize=1)
def _jieba():
    try:
        import jieba
    except ImportError:
        raise _missing("jieba") from None
    jieba.setLogLevel(logging.WARNING)
    return jieba


def segment_words(text: str) -> list[str]:
    """jieba's words, in order; their concatenation is the text (spaces are words too)."""
    return _jieba().lcut(text)

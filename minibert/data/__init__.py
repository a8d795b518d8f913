"""Pretraining data: corpora, Chinese text tools, and the objectives that turn text into batches."""

from minibert.data.chinese import OPENCC_CONVERSIONS, convert_chinese, segment_words
from minibert.data.corpus import default_corpus_path, join_sentences, load_corpus, read_records, split_sentences
from minibert.data.objectives import OBJECTIVES, build_objective

__all__ = [
    "OBJECTIVES",
    "OPENCC_CONVERSIONS",
    "build_objective",
    "convert_chinese",
    "default_corpus_path",
    "join_sentences",
    "load_corpus",
    "read_records",
    "segment_words",
    "split_sentences",
]

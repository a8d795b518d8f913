"""wwm: whole-word masking with n-grams (Google's BERT wwm release; Cui et al. 2019,
https://arxiv.org/abs/1906.08101 for Chinese; n-grams of 1-3 words with P(n) proportional to 1/n
as in ALBERT, Lan et al. 2019, https://arxiv.org/abs/1909.11942, section 4.1).

The rule: mask words, never pieces of words. A word is a WordPiece token and its `##`
continuations, a byte-level BPE token starting with `Ġ` and what follows it, or, for Chinese
text, a word found by jieba (run once per document when the corpus is tokenised, and cached with
it: `data/prepared.py`). Words are taken in n-grams of 1 to 3 consecutive words, P(n) proportional
to 1/n, until `mlm_probability` of the tokens are chosen (BERT's 15%; the default pretraining run
from scratch uses 40%); every token of a chosen word is then masked 80/10/10.

Where: each example arrives with `word_starts` (B, T) (`data/prepared.py`, `continuation_table`
marks the tokens that continue a word; Chinese: jieba's words); `masking.word_ids_from_starts` numbers the words (a word
never crosses a special token) and `masking.choose_word_spans` picks the n-grams.
"""

import torch

from minibert.data.objectives.masking import choose_word_spans, ngram_probs, word_ids_from_starts
from minibert.data.objectives.mlm import MaskedLM


class WholeWordMaskedLM(MaskedLM):
    name = "wwm"
    needs_words = True

    def __init__(self, tokenizer, max_seq_length: int, max_ngram: int = 3, **options):
        super().__init__(tokenizer, max_seq_length, **options)
        if max_ngram < 1:
            raise ValueError(f"max_ngram must be at least 1, got {max_ngram}; the default is 3")
        self.length_probs = ngram_probs(max_ngram)

    def choose(self, maskable: torch.Tensor, word_starts: torch.Tensor | None, generator):
        word_ids = word_ids_from_starts(word_starts, maskable)
        return choose_word_spans(word_ids, self.mlm_probability, self.length_probs, generator).chosen, None

"""span: SpanBERT's span masking (Joshi et al. 2019, https://arxiv.org/abs/1907.10529).

The rule: mask contiguous spans of whole words instead of single tokens. Span lengths (in words)
follow a geometric distribution with p = 0.2, clipped at 10 words (mean 3.8 words); spans are
taken until 15% of the tokens are chosen, the span that crosses that budget kept with probability
(budget left) / (its size): 15% on average, a row over or under by up to one span (masking.py).
Each span gets one 80/10/10 decision: all of its tokens become [MASK], or all become random
tokens, or all are kept (why: a span half-masked would leak its own answer).
"""

import torch

from minibert.data.objectives.masking import choose_word_spans, geometric_probs, word_ids_from_starts
from minibert.data.objectives.mlm import MaskedLM


class SpanMaskedLM(MaskedLM):
    name = "span"
    needs_words = True

    def __init__(self, tokenizer, max_seq_length: int, geometric_p: float = 0.2, max_span_length: int = 10,
                 **options):
        super().__init__(tokenizer, max_seq_length, **options)
        if not 0.0 < geometric_p <= 1.0 or max_span_length < 1:
            raise ValueError(f"need 0 < geometric_p <= 1 and max_span_length >= 1, got {geometric_p}, "
                             f"{max_span_length}; SpanBERT uses 0.2 and 10")
        self.length_probs = geometric_probs(geometric_p, max_span_length)

    def choose(self, maskable: torch.Tensor, word_starts: torch.Tensor | None, generator):
        word_ids = word_ids_from_starts(word_starts, maskable)
        spans = choose_word_spans(word_ids, self.mlm_probability, self.length_probs, generator)
        return spans.chosen, spans.span_of_token

"""Masking, vectorised over the batch: the shared machinery of mlm, wwm, span, nsp, sop and electra.

Every function takes whole (B, T) tensors and a `torch.Generator`, and loops over nothing but
the few span lengths: this is what makes a batch of 32 x 512 cost milliseconds.

Token selection comes in two shapes:
- per token (BERT, https://arxiv.org/abs/1810.04805): each maskable token is chosen with
  probability p, independently (`choose_tokens`);
- per span of whole words (whole-word n-grams, SpanBERT https://arxiv.org/abs/1907.10529):
  `choose_word_spans` cuts each row's words into consecutive spans whose lengths (in words) are
  drawn from a given distribution, then takes spans in random order until p x (maskable tokens)
  are chosen. The span that crosses that budget is kept with probability (what is left of the
  budget) / (its length), so the expected masked fraction is exactly p.

Then `replace_80_10_10` turns chosen positions into the model's input: 80% [MASK], 10% a random
token, 10% unchanged (why: the model must also represent tokens it sees, since [MASK] never
appears at fine-tuning time). `unit_ids` makes that one decision per span instead of per token.
"""

from dataclasses import dataclass

import torch

from minibert.nn.losses import IGNORE_INDEX  # the label of positions that have no loss


def maskable_positions(input_ids: torch.Tensor, special_table: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: True where a token may be masked (not [CLS]/[SEP]/[PAD]/...).

    special_table (V,) bool: True for special token ids (one lookup per token, cheaper than isin).
    """
    return ~special_table.index_select(0, input_ids.reshape(-1)).view_as(input_ids)  # (faster than table[ids])


def choose_tokens(maskable: torch.Tensor, probability: float, generator: torch.Generator | None) -> torch.Tensor:
    """(B, T) bool: each maskable token chosen with `probability`, independently."""
    draw = torch.rand(maskable.shape, generator=generator, device=maskable.device)
    return maskable & (draw < probability)


def word_ids_from_starts(word_starts: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
    """(B, T) long: the index of each token's word within its row, -1 on special tokens.

    A word starts where `word_starts` says so, and also at the first maskable token after a
    special one (the start of segment B, say), so no word crosses [SEP].
    """
    after_special = torch.ones_like(maskable)
    after_special[:, 1:] = ~maskable[:, :-1]
    starts = maskable & (word_starts | after_special)
    return torch.cumsum(starts, dim=1) * maskable - 1  # (B, T): words started so far - 1, and -1 where not maskable


@dataclass
class SpanChoice:
    """What choose_word_spans decided; the spans themselves are kept for tests and inspection."""

    chosen: torch.Tensor  # (B, T) bool: tokens to mask
    span_of_token: torch.Tensor  # (B, T) long: the span each token belongs to (0 on special tokens)
    span_selected: torch.Tensor  # (B, S) bool
    lengths: torch.Tensor  # (B, S) long: the drawn length of each span, in words
    word_ids: torch.Tensor  # (B, T) long: the input

    @property
    def span_words(self) -> torch.Tensor:
        """(B, S) long: words in each span (0 for spans past the row's end)."""
        row_words = self.word_ids.max(dim=1, keepdim=True).values + 1  # (B, 1)
        ends = torch.cumsum(self.lengths, dim=1).clamp(max=row_words)  # (B, S): spans cut at the row's end
        return torch.diff(ends, dim=1, prepend=torch.zeros_like(ends[:, :1]))

    @property
    def span_cut(self) -> torch.Tensor:
        """(B, S) bool: the span was cut short by the end of the row."""
        words = self.span_words
        return (words > 0) & (words < self.lengths)


def choose_word_spans(word_ids: torch.Tensor, probability: float, length_probs: torch.Tensor,
                      generator: torch.Generator | None) -> SpanChoice:
    """Choose whole-word spans covering `probability` of each row's maskable tokens (in expectation).

    word_ids (B, T): from word_ids_from_starts; length_probs (K,): P(span has n words), n = 1..K.
    """
    B, T = word_ids.shape
    device = word_ids.device
    maskable = word_ids >= 0
    W = max(int(word_ids.max()) + 1, 1)  # words in the longest row

    # Cut each row's words into consecutive spans: span s covers words [ends[s-1], ends[s]).
    probs = length_probs.to(device).expand(B, -1)  # (B, K): one row of length probabilities per row
    mean = sum(n * p for n, p in enumerate(length_probs.tolist(), 1))
    S = min(W, int(W / mean * 1.25) + 8)  # enough spans to cover W words, almost always
    lengths = torch.multinomial(probs, S, replacement=True, generator=generator) + 1  # (B, S)
    ends = torch.cumsum(lengths, dim=1)  # (B, S): where each span ends
    if S < W and int(ends[:, -1].min()) < W:  # rare: draw one span per word
        S = W
        lengths = torch.multinomial(probs, S, replacement=True, generator=generator) + 1
        ends = torch.cumsum(lengths, dim=1)
    # A word's span is the number of spans that end at or before it (special tokens, -1: span 0).
    span_of_token = torch.searchsorted(ends, word_ids, right=True)  # (B, T)
    span_tokens = torch.zeros(B, S, dtype=torch.long, device=device).scatter_add_(1, span_of_token, maskable.long())

    # Take spans in a random order until the budget is spent; the span that crosses the budget is
    # kept with probability (budget left) / (its size): `before + u * size < budget` says both.
    priority = torch.rand(B, S, generator=generator, device=device).masked_fill_(span_tokens == 0, 2.0)
    # Only the first k spans of that order can be taken: each holds a token or more, so k of them
    # spend any budget below k (probability x T < k). topk finds them faster than a full sort.
    k = min(S, int(probability * T) + 1)
    order = torch.topk(priority, k, dim=1, largest=False, sorted=True).indices  # (B, k): span numbers, in order
    size = torch.gather(span_tokens, 1, order)  # (B, k) in the random order
    before = torch.cumsum(size, dim=1) - size
    budget = probability * maskable.sum(dim=1, keepdim=True)  # (B, 1) float
    # Only one span per row crosses the budget, so one coin per row decides it.
    take = (size > 0) & (before + torch.rand(B, 1, generator=generator, device=device) * size < budget)
    span_selected = torch.zeros(B, S, dtype=torch.bool, device=device).scatter_(1, order, take)  # (B, S), in span order

    chosen = maskable & torch.gather(span_selected, 1, span_of_token)  # (B, T): each token takes its span's choice
    return SpanChoice(chosen, span_of_token, span_selected, lengths, word_ids)


def replace_80_10_10(input_ids: torch.Tensor, chosen: torch.Tensor, mask_token_id: int, random_pool: torch.Tensor,
                     generator: torch.Generator | None, mask_prob: float = 0.8, random_prob: float = 0.1,
                     unit_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt chosen positions (mask_prob [MASK], random_prob a random ordinary token, else kept).

    Returns (inputs, labels): labels hold the original token where chosen, IGNORE_INDEX elsewhere.
    unit_ids (B, T): positions with the same id share one decision (one per span, SpanBERT).
    """
    labels = torch.where(chosen, input_ids, IGNORE_INDEX)
    # Random numbers only where they are needed (the chosen ~15%): drawing them is most of the cost.
    B, T = input_ids.shape
    flat = chosen.reshape(-1).nonzero().squeeze(1)  # (n,) positions in the flattened batch
    if unit_ids is None:
        draw = torch.rand(len(flat), generator=generator, device=input_ids.device)
    else:
        units = int(unit_ids.max()) + 1
        per_unit = torch.rand(B * units, generator=generator, device=input_ids.device)  # (B, units) flattened
        # (n,): each chosen position reads its unit's draw, at (row, unit) = (flat // T, unit_ids) of (B, units)
        draw = per_unit.index_select(0, torch.div(flat, T, rounding_mode="floor") * units
                                     + unit_ids.reshape(-1).index_select(0, flat))
    # The new value of each chosen position, (n,): [MASK], a random ordinary token, or the token itself.
    new = input_ids.reshape(-1).index_select(0, flat).masked_fill_(draw < mask_prob, mask_token_id)
    is_random = (draw >= mask_prob) & (draw < mask_prob + random_prob)
    pick = torch.randint(len(random_pool), (int(is_random.sum()),), generator=generator, device=input_ids.device)
    new.masked_scatter_(is_random, random_pool.to(input_ids.device).index_select(0, pick))  # in order of position
    inputs = input_ids.clone()
    inputs.view(-1).index_copy_(0, flat, new)  # (B * T,) view: written through to inputs
    return inputs, labels


def ngram_probs(max_n: int) -> torch.Tensor:
    """P(n) proportional to 1/n for n = 1..max_n: whole-word n-grams (ALBERT's n-gram masking,
    https://arxiv.org/abs/1909.11942, section 4.1: 6/11, 3/11, 2/11 for max_n = 3)."""
    weights = 1.0 / torch.arange(1, max_n + 1, dtype=torch.float)
    return weights / weights.sum()


def geometric_probs(p: float, max_n: int) -> torch.Tensor:
    """P(n) proportional to p (1 - p)^(n - 1) for n = 1..max_n: SpanBERT's span lengths, renormalised
    after clipping at max_n (p = 0.2, max 10 gives a mean of 3.8 words, as in the paper)."""
    n = torch.arange(1, max_n + 1, dtype=torch.float)
    weights = p * (1 - p) ** (n - 1)
    return weights / weights.sum()

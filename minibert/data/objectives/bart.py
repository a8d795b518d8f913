"""bart: BART's denoising autoencoder (Lewis et al. 2019, https://arxiv.org/abs/1910.13461).

The rule: corrupt a document, and train an encoder-decoder to write the original back. The
encoder reads the corrupted text; the decoder is fed the original shifted right by one
(`decoder_input_ids`, starting with </s> as in BART) and predicts the original (`labels`).
Five noises, each with its own switch (0 turns it off), applied in this order:

1. sentence permutation (`permute_sentence_ratio`, default 1.0): that share of the sentences is
   shuffled among themselves;
2. token masking / text infilling (`mask_ratio`, default 0.3 of the tokens): spans are chosen,
   with lengths from Poisson(`poisson_lambda` = 3.5; the paper says 3, the released recipe,
   fairseq issue #1899, passes 3.5) (`mask_length="span-poisson"`, text infilling) or of one
   token (`mask_length="subword"`, token masking), until their lengths add up to mask_ratio of
   the tokens. Lengths count subword tokens here; fairseq's denoising task counts whole words for
   span-poisson (`get_whole_word_mask`), which is not built. Each span is replaced by one <mask>
   (`replace_length=1`), by one <mask> per token (-1) or removed (0); a span of length 0 inserts a
   <mask>. As in fairseq, a span that starts inside another merges into it (one <mask>), while a
   span that starts right where another ends keeps its own (<mask> <mask>); overlaps make about
   27% of the tokens masked, not 30%. `random_ratio` (0.1) of the spans get a random token
   instead of <mask>;
3. token deletion (`delete_ratio`, default 0.0): tokens are removed, and the model must find where;
4. insertion (`insert_ratio`, default 0.0): <mask>s inserted at random positions (random
   tokens for random_ratio of them);
5. document rotation (`rotate_ratio`, default 0.0): with this probability the document is turned
   to start at a random token, and the model must find the true start.

The defaults are those of the BART pretraining recipe (fairseq's denoising task).
"""

import math

import numpy as np
import torch

from minibert.data.objectives.base import Objective, masked_accuracy
from minibert.models.bart import shift_tokens_right
from minibert.nn.losses import IGNORE_INDEX

MASK_LENGTHS = ("span-poisson", "subword")


class BartDenoising(Objective):
    name = "bart"
    model_family = "bart"

    def __init__(self, tokenizer, max_seq_length: int, mask_ratio: float = 0.3, random_ratio: float = 0.1,
                 poisson_lambda: float = 3.5, mask_length: str = "span-poisson", replace_length: int = 1,
                 delete_ratio: float = 0.0, permute_sentence_ratio: float = 1.0, rotate_ratio: float = 0.0,
                 insert_ratio: float = 0.0, **options):
        super().__init__(tokenizer, max_seq_length, **options)
        for name, value in (("mask_ratio", mask_ratio), ("random_ratio", random_ratio), ("delete_ratio", delete_ratio),
                            ("permute_sentence_ratio", permute_sentence_ratio), ("rotate_ratio", rotate_ratio),
                            ("insert_ratio", insert_ratio)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if mask_length not in MASK_LENGTHS:
            raise ValueError(f"mask_length must be one of {MASK_LENGTHS}, got {mask_length!r}")
        if replace_length not in (-1, 0, 1):
            raise ValueError(f"replace_length must be -1 (a mask per token), 0 (delete) or 1 (one mask per span), "
                             f"got {replace_length}")
        if poisson_lambda <= 0:
            raise ValueError(f"poisson_lambda must be positive, got {poisson_lambda}; BART uses 3.5")
        self.mask_ratio, self.random_ratio, self.poisson_lambda = mask_ratio, random_ratio, poisson_lambda
        self.mask_length, self.replace_length = mask_length, replace_length
        self.delete_ratio, self.permute_sentence_ratio = delete_ratio, permute_sentence_ratio
        self.rotate_ratio, self.insert_ratio = rotate_ratio, insert_ratio
        tok = tokenizer
        self.bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
        self.eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        if self.bos is None or self.eos is None:
            raise ValueError("bart needs begin and end tokens (<s> and </s>, or [CLS] and [SEP]); "
                             "use a byte-level BPE tokenizer from train_tokenizer(kind='bytelevel_bpe')")

    def model_class(self) -> type:
        from minibert.models.bart import BartForConditionalGeneration

        return BartForConditionalGeneration

    def config_class(self) -> type:
        from minibert.models.bart import BartConfig

        return BartConfig

    def default_config(self) -> dict:
        import dataclasses

        tok = self.tokenizer
        # forced_eos_token_id too: BartConfig's default is 2 (fairseq's </s>), which under another vocabulary (a
        # WordPiece --tokenizer: [CLS]) made generate end each text cut at max_length with that token
        wanted = {"vocab_size": tok.vocab_size, "pad_token_id": tok.pad_token_id, "bos_token_id": self.bos,
                  "eos_token_id": self.eos, "decoder_start_token_id": self.eos, "forced_eos_token_id": self.eos,
                  "max_position_embeddings": max(self.max_seq_length, 512)}
        names = {f.name for f in dataclasses.fields(self.config_class())}
        return {k: v for k, v in wanted.items() if k in names}

    # -- examples: packed runs of sentences, kept as sentences for permutation -------------------------
    def example_index(self, corpus) -> np.ndarray:
        return self.pack_index(corpus, self.max_seq_length - 2)  # (N, 3): shard, first token, end token

    def build_example(self, corpus, row: np.ndarray) -> dict:
        """The chunk's tokens cut at the sentence boundaries that fall inside it."""
        shard, start, end = row.tolist()
        bounds = corpus.shards[shard].sentences
        inside = bounds[np.searchsorted(bounds, start, side="right"):np.searchsorted(bounds, end, side="left")]
        cuts = [start, *np.asarray(inside).tolist(), end]
        return {"sentences": [corpus.tokens(shard, a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]}

    # -- the five noises, on one document (1-D tensors without <s> and </s>) ---------------------------
    def permute_sentences(self, sentences: list[torch.Tensor], generator) -> list[torch.Tensor]:
        n = len(sentences)
        count = math.ceil(n * self.permute_sentence_ratio)
        if n < 2 or count < 2:
            return sentences
        chosen = torch.randperm(n, generator=generator)[:count]
        order = torch.arange(n)
        order[chosen] = chosen[torch.randperm(count, generator=generator)]
        return [sentences[i] for i in order.tolist()]

    def span_lengths(self, count: int, generator) -> torch.Tensor:
        """Span lengths covering `count` tokens: Poisson draws until their sum reaches it, the last cut."""
        if self.mask_length == "subword":
            return torch.ones(count, dtype=torch.long)
        lengths = torch.zeros(0, dtype=torch.long)
        while int(lengths.sum()) < count:
            # float(): an int lambda (3, the paper's) made torch.full a Long tensor, which torch.poisson refuses
            draw = torch.poisson(torch.full((count,), float(self.poisson_lambda)), generator=generator).long()
            lengths = torch.cat([lengths, draw])
        total = torch.cumsum(lengths, 0)
        last = int(torch.searchsorted(total, torch.tensor(count)))
        lengths = lengths[: last + 1].clone()
        lengths[-1] -= int(total[last]) - count
        return lengths

    def mask_spans(self, tokens: torch.Tensor, generator) -> tuple[torch.Tensor, int]:
        """Token masking / text infilling. Returns (noised tokens, number of masks or random tokens put in)."""
        n = len(tokens)
        count = math.ceil(n * self.mask_ratio)
        if count == 0 or n == 0:
            return tokens, 0
        lengths = self.span_lengths(count, generator)
        starts = torch.randperm(n, generator=generator)[: len(lengths)]
        return self.replace_spans(tokens, starts, lengths[: len(starts)], generator)

    def replace_spans(self, tokens: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor,
                      generator) -> tuple[torch.Tensor, int]:
        """The spans [starts, starts + lengths) of `tokens` replaced as replace_length says (distinct starts)."""
        n = len(tokens)
        # fairseq's rule (add_whole_word_mask): each span's first token becomes the mask and the rest of the span
        # is deleted, so a span starting inside another (in its interior: after its first token) is swallowed by
        # it, while one starting just after another ends keeps its own mask (merging those too dropped masks
        # fairseq keeps). Interior: start + 1 .. start + length - 1, clipped at the end.
        real = (lengths > 0).long()
        delta = torch.zeros(n + 1, dtype=torch.long)
        delta.index_add_(0, starts + 1, real)
        delta.index_add_(0, (starts + lengths).clamp(max=n), -real)
        interior = torch.cumsum(delta, 0)[:n] > 0
        is_start = torch.zeros(n, dtype=torch.bool)
        is_start[starts[lengths > 0]] = True
        covered = is_start | interior
        if self.replace_length == 1:
            replaced, keep = is_start & ~interior, ~interior
        elif self.replace_length == -1:
            replaced, keep = covered, torch.ones(n, dtype=torch.bool)
        else:
            replaced, keep = torch.zeros(n, dtype=torch.bool), ~covered
        noised = self.fill(tokens, replaced, generator)[keep]
        # Zero-length spans insert a mask before their start (positions in the kept sequence).
        inserted_at = torch.cumsum(keep.long(), 0)[starts[lengths == 0]] - keep[starts[lengths == 0]].long()
        noised = self.insert_at(noised, inserted_at, generator)
        return noised, int(replaced.sum()) + len(inserted_at)

    def fill(self, tokens: torch.Tensor, where: torch.Tensor, generator) -> torch.Tensor:
        """<mask> at `where`, or a random token there for random_ratio of them."""
        rand = torch.rand(len(tokens), generator=generator) < self.random_ratio
        random_tokens = self.random_pool[torch.randint(len(self.random_pool), (len(tokens),), generator=generator)]
        filled = torch.where(rand, random_tokens, torch.full_like(tokens, self.tokenizer.mask_token_id))
        return torch.where(where, filled, tokens)

    def insert_at(self, tokens: torch.Tensor, positions: torch.Tensor, generator) -> torch.Tensor:
        """Insert one <mask> (or random token) before each of `positions` (indices into tokens, or len)."""
        if len(positions) == 0:
            return tokens
        new = self.fill(torch.zeros(len(positions), dtype=torch.long), torch.ones(len(positions), dtype=torch.bool),
                        generator)
        # a stable sort by these keys interleaves: token i sorts at 2i + 1, a new token before position p at 2p
        keys = torch.cat([2 * torch.arange(len(tokens)) + 1, 2 * positions])
        return torch.cat([tokens, new])[torch.argsort(keys, stable=True)]

    def delete_tokens(self, tokens: torch.Tensor, generator) -> torch.Tensor:
        if self.delete_ratio == 0:
            return tokens
        return tokens[torch.rand(len(tokens), generator=generator) >= self.delete_ratio]

    def insert_tokens(self, tokens: torch.Tensor, generator) -> torch.Tensor:
        count = math.ceil(len(tokens) * self.insert_ratio)
        if count == 0:
            return tokens
        positions = torch.randperm(len(tokens) + 1, generator=generator)[:count]
        return self.insert_at(tokens, positions, generator)

    def rotate(self, tokens: torch.Tensor, generator) -> torch.Tensor:
        if len(tokens) < 2 or float(torch.rand(1, generator=generator)) >= self.rotate_ratio:
            return tokens
        offset = int(torch.randint(1, len(tokens), (1,), generator=generator))
        return torch.cat([tokens[offset:], tokens[:offset]])

    def noise(self, sentences: list[torch.Tensor], generator) -> torch.Tensor:
        tokens = torch.cat(self.permute_sentences(sentences, generator))
        tokens, _ = self.mask_spans(tokens, generator)
        tokens = self.delete_tokens(tokens, generator)
        tokens = self.insert_tokens(tokens, generator)
        tokens = self.rotate(tokens, generator)
        return tokens[: self.max_seq_length - 2]

    # -- batches ---------------------------------------------------------------------------------------
    def collate(self, examples: list[dict], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        pad = self.tokenizer.pad_token_id
        sources, targets = [], []
        for e in examples:
            sentences = [torch.from_numpy(np.asarray(s)) for s in e["sentences"]]
            targets.append(np.concatenate([[self.bos], *e["sentences"], [self.eos]]))
            sources.append(np.concatenate([[self.bos], self.noise(sentences, generator).numpy(), [self.eos]]))
        input_ids = self.pad(sources, pad)
        labels = self.pad(targets, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": (input_ids != pad).long(),
                "decoder_input_ids": shift_tokens_right(labels, pad, self.eos), "labels": labels}

    def metrics(self, batch: dict[str, torch.Tensor], outputs) -> dict[str, float]:
        return {"token_accuracy": masked_accuracy(outputs.logits, batch["labels"])}

"""What every pretraining objective shares: checks, tokenised corpora, lazy examples, padding, accuracy.

An objective turns a tokenised corpus (minibert.data.prepared: token ids and sentence and document
offsets, memory-mapped from a prepared cache or held in memory) into examples, and examples into
batches:

    examples(corpus)  -> Examples: one row of offsets per example (`example_index`), computed once;
                         the example itself (token ids, word starts) is built from the arrays only
                         when a batch asks for it (`build_example`), so memory does not grow with
                         the corpus
    collate(examples, generator) -> a batch: padding and all random corruption, drawn from the
                         generator it is given, so a run that restores the generator's state
                         replays the same batches

`examples` also takes documents as lists of sentences (from minibert.data.load_corpus): they are
tokenised in memory into the same arrays, so there is one pipeline.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch

from minibert.data.prepared import TokenizedCorpus, tokenize_in_memory
from minibert.nn.losses import IGNORE_INDEX
from minibert.tokenizer import Tokenizer


@dataclass
class Sentence:
    """One tokenised sentence: ids (no special tokens) and where words start."""

    ids: np.ndarray  # (n,) int64
    word_starts: np.ndarray | None = None  # (n,) bool


class Examples(Sequence):
    """Examples built on demand: row i of `index` (offsets into the corpus's arrays) becomes example i
    through `build(row)`. Slicing, or indexing with an array (or list, or tensor) of positions, gives
    another lazy view; nothing is materialised until read."""

    def __init__(self, build, index: np.ndarray):
        self.build, self.index = build, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        if isinstance(i, list | torch.Tensor) and np.ndim(i) == 1:  # positions as a list or tensor, as an array
            i = np.asarray(i) if len(i) else np.zeros(0, dtype=np.int64)  # (a list gave "not enough values to unpack")
        if isinstance(i, slice) or isinstance(i, np.ndarray) and i.ndim == 1:
            return Examples(self.build, self.index[i])
        return self.build(self.index[i])


class Objective:
    """Base class. Subclasses set `name`, `model_family` and implement example_index and build_example (or
    examples itself, as clm), collate and metrics."""

    name: ClassVar[str] = ""
    model_family: ClassVar[str] = "bert"  # "bert" | "bart" | "gpt": which model a trainer builds
    needs_mask_token: ClassVar[bool] = True
    needs_pad_token: ClassVar[bool] = True
    needs_words: ClassVar[bool] = False  # whether examples carry word starts (whole-word objectives)
    min_seq_length: ClassVar[int] = 8

    def __init__(self, tokenizer: Tokenizer, max_seq_length: int, seed: int = 0, chinese_words: bool | None = None):
        if max_seq_length < self.min_seq_length:
            raise ValueError(f"max_seq_length {max_seq_length} is too short for {self.name}; use at least "
                             f"{self.min_seq_length}")
        if self.needs_pad_token and tokenizer.pad_token_id is None:
            raise ValueError(f"the tokenizer has no pad token, which {self.name} needs to pad batches; "
                             "use a tokenizer trained with minibert.tokenizer.train_tokenizer")
        if self.needs_mask_token and tokenizer.mask_token_id is None:
            raise ValueError(
                f"the {self.name} objective masks tokens but this tokenizer has no mask token "
                f"([MASK] / <mask>); use a BERT/RoBERTa vocabulary, or train one with train_tokenizer"
            )
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.seed = seed
        self.chinese_words = chinese_words  # None/True: jieba words for text with Chinese characters; False: never
        self.special_ids = torch.tensor(tokenizer.all_special_ids, dtype=torch.long)
        self.special_table = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
        self.special_table[self.special_ids] = True
        special = set(tokenizer.all_special_ids)
        self.random_pool = torch.tensor([i for i in range(tokenizer.vocab_size) if i not in special])
        self.skipped_documents = 0

    # -- what the trainer calls -----------------------------------------------------------------
    def collate(self, examples: list[dict[str, Any]], generator: torch.Generator | None = None) -> dict:
        raise NotImplementedError

    def metrics(self, batch: dict[str, torch.Tensor], outputs: Any) -> dict[str, float]:
        raise NotImplementedError

    def model_class(self) -> type:
        raise NotImplementedError

    def config_class(self) -> type:
        from minibert.models.bert import BertConfig

        return BertConfig

    def position_limit(self, config) -> int:
        """The longest sequence a model of this config accepts (a RoBERTa's positions start past its padding id)."""
        if getattr(config, "model_type", None) == "roberta":
            from minibert.models.bert import RobertaEmbeddings

            return RobertaEmbeddings.max_tokens(config)
        return config.max_position_embeddings

    def default_config(self) -> dict[str, Any]:
        tok = self.tokenizer
        return {"vocab_size": tok.vocab_size, "pad_token_id": tok.pad_token_id,
                "max_position_embeddings": max(self.max_seq_length, 512)}

    def build_model(self, config_kwargs: dict[str, Any] | None = None):
        """A freshly initialised model for this objective: tokenizer-derived fields are filled in,
        `config_kwargs` (hidden_size, num_hidden_layers, ...) override the rest."""
        config = self.config_class()(**{**self.default_config(), **(config_kwargs or {})})
        model = self.model_class()(config, **self.model_options())
        self.check_model(model)
        return model

    def model_options(self) -> dict[str, Any]:
        """Keyword arguments of the model class beyond its config (ELECTRA's generator size, ...)."""
        return {}

    def check_model(self, model, flag: str = "max_seq_length") -> None:
        """Raise if the model cannot take this objective's batches (too short, too small a vocabulary);
        `flag` names the setting that gave the length (pretrain.py's second phase has its own)."""
        config = model.config
        limit = self.position_limit(config)
        if self.max_seq_length > limit:
            raise ValueError(
                f"{flag} {self.max_seq_length} is larger than the model allows ({limit} positions); "
                f"pass {flag} <= {limit}, or a config with a larger max_position_embeddings"
            )
        if config.vocab_size < self.tokenizer.vocab_size:
            raise ValueError(
                f"the tokenizer has {self.tokenizer.vocab_size} tokens but the model's vocab_size is "
                f"{config.vocab_size}; build the model with vocab_size={self.tokenizer.vocab_size}"
            )

    # -- examples, from a tokenised corpus -------------------------------------------------------------
    @property
    def word_rule(self) -> str:
        """How the corpus's word starts are made: from the vocabulary, or with jieba for Chinese text
        (whole-word objectives, unless chinese_words=False)."""
        return "jieba" if self.needs_words and self.chinese_words is not False else "vocab"

    def tokenized(self, documents) -> TokenizedCorpus:
        """A TokenizedCorpus as it is, or documents (lists of sentences) tokenised in memory."""
        if isinstance(documents, TokenizedCorpus):
            return documents
        return tokenize_in_memory(documents, self.tokenizer, self.word_rule)

    def examples(self, documents) -> Examples:
        """The objective's examples over a corpus (a TokenizedCorpus, or documents as lists of sentences)."""
        corpus = self.tokenized(documents)
        return Examples(partial(self.build_example, corpus), self.example_index(corpus))

    def example_index(self, corpus: TokenizedCorpus) -> np.ndarray:
        """(N, k) int64: one row of offsets per example."""
        raise NotImplementedError

    def build_example(self, corpus: TokenizedCorpus, row: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def tokenize_documents(self, documents: list[list[str]]) -> list[list[Sentence]]:
        """Each document's sentences as token ids (what the examples are made of; for inspection)."""
        corpus = self.tokenized(documents)
        return [[Sentence(corpus.tokens(k, a, b), corpus.word_starts(k, a, b))
                 for a, b in zip(o[:-1].tolist(), o[1:].tolist(), strict=True)]
                for k, o in corpus.documents()]

    def pack_index(self, corpus: TokenizedCorpus, room: int) -> np.ndarray:
        """(N, 3) rows (shard, first token, end token): consecutive sentences of one document packed into
        chunks of at most `room` tokens (RoBERTa's DOC-SENTENCES, https://arxiv.org/abs/1907.11692, section
        4.2; why: examples full of whole sentences, and never two documents' text in one); a sentence longer
        than `room` is cut into pieces. A document's sentences are contiguous in the token array, so a chunk
        is a range."""
        rows = []
        for k, offsets in corpus.documents():
            start, used = None, 0
            for first, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
                for piece in range(first, end, room):
                    n = min(room, end - piece)
                    if used + n > room and used:
                        rows.append((k, start, start + used))
                        start, used = None, 0
                    start = piece if start is None else start
                    used += n
            if used:
                rows.append((k, start, start + used))
        if not rows:
            raise ValueError("the corpus produced no tokens; check that the documents hold text")
        return np.asarray(rows, dtype=np.int64)

    # -- batching helpers ----------------------------------------------------------------------------
    def pad(self, rows: list[np.ndarray], value: int, dtype=torch.long) -> torch.Tensor:
        """Stack rows into (B, T), T the longest row."""
        length = max(len(r) for r in rows)
        out = np.full((len(rows), length), value, dtype=np.int64 if dtype == torch.long else bool)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return torch.from_numpy(out)


def masked_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of labelled positions (label != -100) whose argmax prediction is right."""
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return float("nan")
    return (logits.argmax(dim=-1)[keep] == labels[keep]).float().mean().item()


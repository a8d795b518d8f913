"""What every pretraining objective shares: checks, tokenisation once, padding, accuracy.

An objective turns documents (lists of sentences, from minibert.data.load_corpus) into examples
once (`examples`: tokenised, cached, with word boundaries where the objective needs them), and
examples into batches (`collate`: padding and all random corruption, drawn from the generator
it is given, so a run that restores the generator's state replays the same batches).
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from minibert.data.chinese import has_cjk, segment_words
from minibert.data.corpus import join_sentences
from minibert.data.objectives.masking import IGNORE_INDEX
from minibert.tokenizer import Tokenizer


@dataclass
class Sentence:
    """One tokenised sentence: ids (no special tokens) and, if asked for, where words start."""

    ids: np.ndarray  # (n,) int64
    word_starts: np.ndarray | None = None  # (n,) bool


class Objective:
    """Base class. Subclasses set `name`, `model_family` and implement examples / collate / metrics."""

    name: ClassVar[str] = ""
    model_family: ClassVar[str] = "bert"  # "bert" | "bart" | "gpt": which model a trainer builds
    needs_mask_token: ClassVar[bool] = True
    needs_pad_token: ClassVar[bool] = True
    needs_words: ClassVar[bool] = False  # whether examples carry word starts (whole-word objectives)
    min_seq_length: ClassVar[int] = 8

    def __init__(self, tokenizer: Tokenizer, max_seq_length: int, seed: int = 0, chinese_words: bool | None = None,
                 pad_to_multiple_of: int | None = None):
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
        self.chinese_words = chinese_words  # None: jieba words for text with Chinese characters
        self.pad_to_multiple_of = pad_to_multiple_of
        self.special_ids = torch.tensor(tokenizer.all_special_ids, dtype=torch.long)
        self.special_table = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
        self.special_table[self.special_ids] = True
        special = set(tokenizer.all_special_ids)
        self.random_pool = torch.tensor([i for i in range(tokenizer.vocab_size) if i not in special])
        self.skipped_documents = 0
        self._sentence_cache: dict[str, Sentence] = {}
        self._continuation = self._continuation_table() if self.needs_words else None

    # -- what the trainer calls -----------------------------------------------------------------
    def examples(self, documents: list[list[str]]) -> list[dict[str, Any]]:
        raise NotImplementedError

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
        """The longest sequence a model of this config accepts."""
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

    def check_model(self, model) -> None:
        """Raise if the model cannot take this objective's batches (too short, too small a vocabulary)."""
        config = model.config
        limit = self.position_limit(config)
        if self.max_seq_length > limit:
            raise ValueError(
                f"max_seq_length {self.max_seq_length} is larger than the model allows ({limit} positions); "
                f"pass max_seq_length <= {limit}, or a config with a larger max_position_embeddings"
            )
        if config.vocab_size < self.tokenizer.vocab_size:
            raise ValueError(
                f"the tokenizer has {self.tokenizer.vocab_size} tokens but the model's vocab_size is "
                f"{config.vocab_size}; build the model with vocab_size={self.tokenizer.vocab_size}"
            )

    # -- tokenisation, once ------------------------------------------------------------------------
    def _continuation_table(self) -> np.ndarray:
        """(V,) bool: True for tokens that continue a word (WordPiece `##x`; byte-level BPE: no leading Ġ)."""
        vocab = self.tokenizer.get_vocab()
        table = np.zeros(self.tokenizer.vocab_size, dtype=bool)
        for token, i in vocab.items():
            if self.tokenizer.kind == "wordpiece":
                table[i] = token.startswith("##")
            else:
                table[i] = not token.startswith("Ġ")
        table[self.tokenizer.all_special_ids] = False
        return table

    def _use_jieba(self, text: str) -> bool:
        return self.chinese_words if self.chinese_words is not None else has_cjk(text)

    def tokenize_documents(self, documents: list[list[str]]) -> list[list[Sentence]]:
        """Each document's sentences as token ids, in one batched call; cached across calls.

        Sentences after the first get a leading space, so a byte-level BPE sees the word boundary it
        would see in running text. With `needs_words`, word starts come from the vocabulary (## / Ġ),
        or, for Chinese text, from jieba, run once per document.
        """
        todo = sorted({s for doc in documents for s in doc if s not in self._sentence_cache})
        if todo:
            if not self.needs_words:
                for text, ids in zip(todo, self.tokenizer.encode_batch([" " + s for s in todo]), strict=True):
                    self._sentence_cache[text] = Sentence(np.asarray(ids, dtype=np.int64))
            else:
                self._tokenize_with_words(documents, set(todo))
        return [[self._sentence_cache[s] for s in doc] for doc in documents]

    def _tokenize_with_words(self, documents: list[list[str]], todo: set[str]) -> None:
        backend = self.tokenizer.backend
        for doc in documents:
            doc = [s for s in doc if s in todo]
            if not doc:
                continue
            encodings = backend.encode_batch([" " + s for s in doc], add_special_tokens=False)
            jieba_doc = self._use_jieba("".join(doc))
            if jieba_doc:
                text = join_sentences(doc)
                starts, pos = set(), 0
                for word in segment_words(text):  # once per document
                    starts.add(pos)
                    pos += len(word)
                cursor = 0
            for sentence, enc in zip(doc, encodings, strict=True):
                ids = np.asarray(enc.ids, dtype=np.int64)
                if jieba_doc:
                    offset = text.index(sentence, cursor) - 1  # -1: the leading space we added
                    cursor = offset + 1 + len(sentence)
                    # A token starts a word where jieba's word starts, unless it shares that character with
                    # the token before (byte-level BPE can cut one character into several tokens).
                    char = [a for a, _ in enc.offsets]
                    word_starts = np.array([offset + a in starts and (i == 0 or a != char[i - 1])
                                            for i, a in enumerate(char)], dtype=bool)
                    if len(word_starts):
                        word_starts[0] = True
                else:
                    word_starts = ~self._continuation[ids] if len(ids) else np.zeros(0, dtype=bool)
                self._sentence_cache[sentence] = Sentence(ids, word_starts)
                todo.discard(sentence)

    # -- batching helpers ----------------------------------------------------------------------------
    def pad(self, rows: list[np.ndarray], value: int, dtype=torch.long) -> torch.Tensor:
        """Stack rows into (B, T), T the longest row (rounded up to pad_to_multiple_of)."""
        length = max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        out = np.full((len(rows), length), value, dtype=np.int64 if dtype == torch.long else bool)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return torch.from_numpy(out)

    def pack_documents(self, documents: list[list[str]], room: int) -> list[list[Sentence]]:
        """Consecutive sentences of one document packed into chunks of at most `room` tokens
        (RoBERTa's DOC-SENTENCES); a sentence longer than `room` is cut into pieces."""
        chunks = []
        for doc in self.tokenize_documents(documents):
            current, used = [], 0
            for sentence in doc:
                for start in range(0, max(len(sentence.ids), 1), room):
                    piece = Sentence(sentence.ids[start:start + room],
                                     None if sentence.word_starts is None else sentence.word_starts[start:start + room])
                    if len(piece.ids) == 0:
                        continue
                    if used + len(piece.ids) > room and current:
                        chunks.append(current)
                        current, used = [], 0
                    current.append(piece)
                    used += len(piece.ids)
            if current:
                chunks.append(current)
        if not chunks:
            raise ValueError("the corpus produced no tokens; check that the documents hold text")
        return chunks


def concat(sentences: list[Sentence]) -> Sentence:
    ids = np.concatenate([s.ids for s in sentences])
    starts = None if sentences[0].word_starts is None else np.concatenate([s.word_starts for s in sentences])
    return Sentence(ids, starts)


def masked_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of labelled positions (label != -100) whose argmax prediction is right."""
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return float("nan")
    return (logits.argmax(dim=-1)[keep] == labels[keep]).float().mean().item()


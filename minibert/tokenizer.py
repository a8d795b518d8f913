"""Tokenizers: load, train and save them with the `tokenizers` library, in Hugging Face's format.

Two kinds, as the model families use them:

- WordPiece (BERT; Wu et al. 2016, https://arxiv.org/abs/1609.08144): text is normalised
  (lower-cased, accents stripped, spaces put around CJK characters), split on whitespace and
  punctuation, and each word greedily cut into the longest pieces in the vocabulary; a piece
  inside a word is written `##piece`. Special tokens: [PAD] [UNK] [CLS] [SEP] [MASK].
- Byte-level BPE (GPT-2, RoBERTa, BART; Radford et al. 2019; BPE itself: Sennrich et al. 2016,
  https://arxiv.org/abs/1508.07909): text is taken as bytes, so there is no unknown token; merges
  learnt from pair counts build the vocabulary, and a piece that starts a word carries the space
  before it, written `Ġ`. Special tokens: <s> <pad> </s> <unk> <mask>.

`load_tokenizer(path)` reads tokenizer.json, or vocab.txt, or vocab.json + merges.txt;
`train_tokenizer(texts, kind, vocab_size)` learns one from a corpus; `Tokenizer.save_pretrained`
writes what both this module and `transformers.AutoTokenizer` read back.
"""

import codecs
import json
import logging
import numbers
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as Backend

from minibert.checkpoint import read_json_object

logger = logging.getLogger(__name__)

KINDS = ("wordpiece", "bytelevel_bpe")
# The special tokens of each kind, under Hugging Face's attribute names.
WORDPIECE_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                      "mask_token": "[MASK]"}
BYTELEVEL_SPECIALS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                      "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}
GPT2_SPECIALS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")  # any one of them makes a directory hold a tokenizer


def _byte_of_character() -> dict[str, int]:
    """Byte-level BPE's table (GPT-2's bytes_to_unicode, Radford et al. 2019), read backwards: each of the 256
    characters its tokens are written in -> the byte it stands for. Printable bytes stand for themselves; the others
    (control bytes, the space: "Ġ" is 32) take the characters from 256 up, in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + n): b for n, b in enumerate(b for b in range(256) if b not in printable)})
    return table


BYTE_OF_CHARACTER = _byte_of_character()


def _bytes_as_tokens(error: UnicodeDecodeError) -> tuple[str, int]:
    """A decoding error handler: bytes that are not a whole UTF-8 character, as <0xE5> each."""
    return "".join(f"<0x{b:02X}>" for b in error.object[error.start:error.end]), error.end


_BYTE_TOKENS = "minibert.byte_tokens"
codecs.register_error(_BYTE_TOKENS, _bytes_as_tokens)


def _special_token(name: str) -> property:
    """A special token by its name ("cls_token"), as Hugging Face's attribute: None where the tokenizer has none;
    setting it renames that token (Tokenizer._set_special)."""
    return property(lambda self: self.special_tokens.get(name), lambda self, token: self._set_special(name, token))


class Tokenizer:
    """A `tokenizers.Tokenizer` plus the names of its special tokens, called like Hugging Face's.

    `tok(texts, text_pairs=None, max_length=None, padding=True, truncation=True)` returns padded
    tensors input_ids, attention_mask and (WordPiece: BERT's segments) token_type_ids (B, T).
    `kind` is "wordpiece" or "bytelevel_bpe"; it decides how words are found for whole-word masking.
    Unlike Hugging Face's, `encode(text)` adds no special tokens and `decode(ids)` leaves them out unless
    asked (add_special_tokens=True, skip_special_tokens=False).
    `clean_up_tokenization_spaces` (tokenizer_config.json's setting): a WordPiece tokenizer's decoded text
    loses the spaces before punctuation and contractions ("it ' s" -> "it's"), as in transformers.
    """

    def __init__(self, backend: Backend, special_tokens: dict[str, str], kind: str,
                 model_max_length: int | None = None, do_lower_case: bool | None = None,
                 clean_up_tokenization_spaces: bool = False):
        if kind not in KINDS:
            raise ValueError(f"unknown tokenizer kind {kind!r}; use one of {KINDS}")
        self.backend = backend
        self.kind = kind
        self.model_max_length = model_max_length
        self.do_lower_case = do_lower_case
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        vocab = backend.get_vocab(with_added_tokens=True)
        self.special_tokens = {k: v for k, v in special_tokens.items() if k in SPECIAL_KEYS and v in vocab}
        for token in set(self.special_tokens.values()) - {str(t) for t in backend.get_added_tokens_decoder().values()}:
            backend.add_special_tokens([AddedToken(token, special=True, normalized=False)])

    # -- special tokens -------------------------------------------------------------------
    def _id(self, key: str) -> int | None:
        token = self.special_tokens.get(key)
        return None if token is None else self.backend.token_to_id(token)

    def _set_special(self, key: str, token: str | None) -> None:
        """`tok.pad_token = tok.eos_token`, as with Hugging Face's tokenizers (GPT-2's vocabulary has no pad
        token: a batch of prompts of different lengths needs one). The token must be in the vocabulary.
        As there, it renames only: the tokens tok() puts around a text (BERT's [CLS] ... [SEP], RoBERTa's <s> ...
        </s>) and the one WordPiece gives an unknown word stay the backend's, whatever cls_token, sep_token,
        bos_token, eos_token or unk_token then name."""
        if token is None:
            self.special_tokens.pop(key, None)
            return
        if token not in self.get_vocab():
            eos = self.special_tokens.get("eos_token")
            raise ValueError(f"{token!r} is not in this tokenizer's vocabulary, so it cannot be its {key}; pass one "
                             f"of its tokens{f' (e.g. its eos token {eos!r})' if eos else ''}")
        # the name only, as Hugging Face's setter: making an ordinary token special here would change how texts
        # are cut ("er" a word of its own) and decoded (skipped)
        self.special_tokens[key] = token

    pad_token_id = property(lambda self: self._id("pad_token"))
    mask_token_id = property(lambda self: self._id("mask_token"))
    cls_token_id = property(lambda self: self._id("cls_token"))
    sep_token_id = property(lambda self: self._id("sep_token"))
    bos_token_id = property(lambda self: self._id("bos_token"))
    eos_token_id = property(lambda self: self._id("eos_token"))
    unk_token_id = property(lambda self: self._id("unk_token"))
    # the tokens by name, as Hugging Face's attributes (None where the tokenizer has none); setting one renames it.
    # Without a property, `tok.cls_token` raised AttributeError and `tok.cls_token = "x"` made a plain attribute
    # that cls_token_id ignored.
    mask_token = _special_token("mask_token")
    pad_token = _special_token("pad_token")
    eos_token = _special_token("eos_token")
    bos_token = _special_token("bos_token")
    cls_token = _special_token("cls_token")
    sep_token = _special_token("sep_token")
    unk_token = _special_token("unk_token")

    @property
    def all_special_ids(self) -> list[int]:
        return sorted({self.backend.token_to_id(t) for t in self.special_tokens.values()})

    @property
    def vocab_size(self) -> int:
        """Every token, the added ones too: len(tok), the rows a model's embeddings need (Hugging Face's vocab_size
        leaves the added tokens out, its len(tok) counts them)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    # -- encoding ----------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if isinstance(add_special_tokens, str):  # Hugging Face's encode(text, text_pair): the backend's TypeError
            raise ValueError("encode takes one text (its second argument is add_special_tokens); encode a pair "
                             "with tok(text, text_pair)")
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Many texts at once: the Rust backend runs them in parallel."""
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)]

    def decode(self, ids: int | Sequence[int] | torch.Tensor, skip_special_tokens: bool = True,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        """Token ids (or one id, as a generation loop's next token) -> text. Special tokens are dropped by default
        (Hugging Face keeps them by default). clean_up_tokenization_spaces: None follows the tokenizer's setting."""
        if hasattr(ids, "tolist"):  # a tensor or NumPy array, or one of their scalars
            ids = ids.tolist()
        if isinstance(ids, int):  # one id, as Hugging Face's decode takes (it raised "'int' object is not iterable")
            ids = [ids]
        text = self.backend.decode([i for i in ids if i >= 0], skip_special_tokens=skip_special_tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        # transformers cleans up after WordPiece only: after byte-level BPE, whose text comes back exact, the
        # same replacements would take away real spaces ("a , b" -> "a, b")
        return clean_up_tokenization(text) if clean_up_tokenization_spaces and self.kind == "wordpiece" else text

    def batch_decode(self, sequences: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = True,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        """One text per row: generate's (B, L) output, say; padding and other special tokens dropped by default.
        One flat sequence of ids is one text, as in Hugging Face's (its ids are not texts of one token each)."""
        sequences = sequences.tolist() if hasattr(sequences, "tolist") else list(sequences)
        if sequences and (isinstance(sequences[0], numbers.Integral) or getattr(sequences[0], "ndim", None) == 0):
            # one flat sequence (ints, NumPy ints or 0-d tensors: list(array)): each id was decoded as a text
            sequences = [sequences]
        return [self.decode(ids, skip_special_tokens, clean_up_tokenization_spaces) for ids in sequences]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(int(i)) for i in ids]

    def tokenize(self, text: str) -> list[str]:
        """The tokens of one text, as strings, without special tokens (Hugging Face's tokenize)."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Tokens back to text by the tokenizer's decoder: "##" pieces joined, byte-level bytes decoded (Hugging
        Face's convert_tokens_to_string, which transformers 5 runs through the same decoder)."""
        return self.backend.decoder.decode(list(tokens)) if self.backend.decoder is not None else " ".join(tokens)

    def token_texts(self, ids: Sequence[int]) -> list[str]:
        """Each token as a reader can read it, one per id: WordPiece's as they are ("##ing"), byte-level BPE's with
        their bytes decoded ("Ġking" -> " king", "åºĬ" -> "床"), a byte that is only part of a character as <0xE5>
        (as SentencePiece writes its byte tokens); added tokens (special ones too) as they were added. (Hugging
        Face's convert_ids_to_tokens gives the byte-level alphabet, unreadable beyond ASCII.)"""
        ids = [int(i) for i in ids]
        tokens = self.convert_ids_to_tokens(ids)
        if self.kind != "bytelevel_bpe":
            return tokens
        added = self.backend.get_added_tokens_decoder()  # written as text, not in the byte alphabet ("café")
        return [t if i in added or any(c not in BYTE_OF_CHARACTER for c in t)
                else bytes(BYTE_OF_CHARACTER[c] for c in t).decode("utf-8", errors=_BYTE_TOKENS) for i, t in
                zip(ids, tokens, strict=True)]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """A token outside the vocabulary is the unknown token's id, as in Hugging Face's (None went into the list)."""
        if isinstance(tokens, str):
            return self._token_id(tokens)
        return [self._token_id(t) for t in tokens]

    def _token_id(self, token: str) -> int | None:
        i = self.backend.token_to_id(token)
        return self.unk_token_id if i is None else i

    def __call__(self, texts: str | Sequence[str], text_pairs: str | Sequence[str] | None = None,
                 max_length: int | None = None, padding: bool | str = True,
                 truncation: bool | str = True, padding_side: str = "right",
                 add_special_tokens: bool = True,
                 return_token_type_ids: bool | None = None, *, text_pair: str | Sequence[str] | None = None,
                 return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        """Encode a batch (with special tokens, unless add_special_tokens=False) into padded tensors (B, T).

        Hugging Face's names are taken too: text_pair= for text_pairs=, and return_tensors="pt" (what is
        always returned here: torch tensors). Unlike Hugging Face's, padding and truncation are on by default.

        padding=True pads to the longest in the batch, "max_length" to max_length (a tokenizer with no
        pad token, as GPT-2's, takes texts of one length only); truncation=True cuts the longer of a
        pair first, as Hugging Face's "longest_first" does, and "only_first" / "only_second" cut that
        text alone (a question kept whole, its context cut). padding_side="left"
        puts the padding first: what a decoder-only model's batched prompts need, so that every
        row's new tokens follow its own last token. token_type_ids (BERT's segments) come with a
        WordPiece tokenizer, as Hugging Face's BERT tokenizer returns them and its RoBERTa, GPT-2 and
        BART tokenizers do not (GPT-2 would look the zeros up as token 0 and add it everywhere);
        return_token_type_ids=True / False asks for them or not whatever the kind. The backend's own
        truncation and padding settings (from tokenizer.json) are put back afterwards.
        """
        if text_pair is not None:
            if text_pairs is not None:
                raise ValueError("text_pair and text_pairs are one argument (Hugging Face's name and minibert's); "
                                 "pass one of them")
            text_pairs = text_pair
        if return_tensors != "pt":
            raise ValueError(f"return_tensors={return_tensors!r}: minibert's tokenizer returns torch tensors only "
                             "(return_tensors=\"pt\", its default); convert them with .numpy() or .tolist()")
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if not texts:  # no rows: the tensors came back 1-D (0,), not (B, T), for the model to fail on later
            raise ValueError("no texts to encode (an empty list); pass at least one text")
        if text_pairs is not None:
            text_pairs = [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
            if len(text_pairs) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(text_pairs)} text_pairs; pass one pair per text")
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
        padding = False if padding == "do_not_pad" else padding  # a non-empty string is true: it padded
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}; pass None for the tokenizer's own limit")
        max_length = max_length or self.model_max_length
        if truncation not in (True, False, "longest_first", "only_first", "only_second", "do_not_truncate"):
            raise ValueError(f"truncation must be True, False, 'longest_first', 'only_first' or 'only_second', "
                             f"got {truncation!r}")
        strategy = "longest_first" if truncation is True else truncation
        truncation = truncation not in (False, "do_not_truncate")
        processor = self.backend.post_processor if add_special_tokens else None
        specials = processor.num_special_tokens_to_add(text_pairs is not None) if processor else 0
        if truncation and max_length and max_length <= specials:
            # The backend would silently not truncate at all.
            raise ValueError(f"max_length {max_length} leaves no room for text: the special tokens alone take "
                             f"{specials}; pass max_length > {specials}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length; pass max_length=...")
        if self.pad_token_id is None and padding == "max_length":
            raise ValueError("this tokenizer has no pad token, so it cannot pad to max_length; set one "
                             "(tok.pad_token = tok.eos_token) or pass padding=True")
        if self.pad_token_id is None and padding:
            padding = False  # nothing to pad with: fine while every text has the same length (checked below)
        backend = self.backend
        saved_truncation, saved_padding = backend.truncation, backend.padding
        try:
            if truncation and max_length:
                backend.enable_truncation(max_length, strategy=strategy)
            else:
                backend.no_truncation()
            if padding:
                backend.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token, direction=padding_side,
                                       length=max_length if padding == "max_length" else None)
            else:
                backend.no_padding()
            inputs = texts if text_pairs is None else list(zip(texts, text_pairs, strict=True))
            encodings = backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        except Exception as error:  # the tokenizers library raises a bare Exception, which no command line catches
            if "Truncation error" not in str(error):
                raise
            if text_pairs is None:
                raise ValueError(f"truncation={strategy!r} cuts the second text of a pair and these texts have "
                                 "none; pass truncation=True (or text_pairs)") from None
            kept = "first" if strategy == "only_second" else "second"
            raise ValueError(f"truncation={strategy!r} cannot fit a pair in max_length={max_length}: its {kept} "
                             "text, which it does not cut, takes all the room alone; pass a larger max_length or "
                             "truncation=True") from None
        finally:
            backend.no_truncation()
            backend.no_padding()
            if saved_truncation is not None:
                backend.enable_truncation(**saved_truncation)
            if saved_padding is not None:
                backend.enable_padding(**saved_padding)
        if self.pad_token_id is None and len({len(e.ids) for e in encodings}) > 1:
            raise ValueError("this tokenizer has no pad token, so texts of different lengths cannot be padded; "
                             "set one (tok.pad_token = tok.eos_token) or pass one text at a time")
        if len({len(e.ids) for e in encodings}) > 1:
            raise ValueError("texts of different lengths cannot be stacked without padding; pass padding=True"
                             if not padding else
                             f"padding to max_length={max_length} leaves texts longer than it; pass truncation=True "
                             "or a larger max_length")
        batch = {
            "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
            "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
        }
        segments = self.kind == "wordpiece" if return_token_type_ids is None else return_token_type_ids
        if segments:
            batch["token_type_ids"] = torch.tensor([e.type_ids for e in encodings], dtype=torch.long)
        return batch

    # -- saving --------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json and the model's
        own files (vocab.txt, or vocab.json + merges.txt): Hugging Face's layout."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(path / "tokenizer.json"))
        if self.kind == "wordpiece":
            vocab = self.backend.get_vocab(with_added_tokens=True)
            lines = [token for token, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
            (path / "vocab.txt").write_text("".join(t + "\n" for t in lines), encoding="utf-8")
            tokenizer_class = "BertTokenizer"
        else:
            self.backend.model.save(str(path))
            # RoBERTa's class has a mask token and frames each text in <s> ... </s>; GPT-2's adds nothing
            adds_nothing = type(self.backend.post_processor).__name__ in ("ByteLevel", "NoneType")
            framed = "mask_token" in self.special_tokens and not adds_nothing
            tokenizer_class = "RobertaTokenizer" if framed else "GPT2Tokenizer"
        config = {"tokenizer_class": tokenizer_class, **self.special_tokens,
                  "model_max_length": self.model_max_length or 1_000_000_000_000_000_019_884_624_838_656,
                  "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces}
        if self.do_lower_case is not None:
            config["do_lower_case"] = self.do_lower_case
        normalizer = json.loads(self.backend.to_str()).get("normalizer") or {}
        if self.kind == "wordpiece" and normalizer.get("type") == "BertNormalizer":
            # transformers' BertTokenizer rebuilds its normaliser from these keys, not from tokenizer.json
            config.update(do_lower_case=normalizer["lowercase"], strip_accents=normalizer["strip_accents"],
                          tokenize_chinese_chars=normalizer["handle_chinese_chars"])
        if self.kind == "bytelevel_bpe":
            # what the pre-tokeniser does: transformers applies this key over tokenizer.json's
            config["add_prefix_space"] = bool(getattr(self.backend.pre_tokenizer, "add_prefix_space", False))
        # UTF-8 whatever the locale: tokens may be Chinese (an ASCII locale failed mid-save)
        (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                    encoding="utf-8")
        (path / "special_tokens_map.json").write_text(json.dumps(self.special_tokens, indent=2, ensure_ascii=False)
                                                      + "\n", encoding="utf-8")


def clean_up_tokenization(text: str) -> str:
    """transformers' clean-up of decoded text (`clean_up_tokenization`): no space before . ? ! , and in
    contractions, where WordPiece's decoder puts one between every two words."""
    return (text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",").replace(" ' ", "'")
            .replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s").replace(" 've", "'ve")
            .replace(" 're", "'re"))


# -- loading ---------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    return read_json_object(path) if path.is_file() else {}


def _read_backend(file: Path) -> Backend:
    try:
        return Backend.from_file(str(file))
    except Exception as error:  # the tokenizers library raises a bare Exception for any unreadable file
        raise ValueError(
            f"{file} is not a readable tokenizer ({error}); restore it from where the model came from, "
            "or write it again with Tokenizer.save_pretrained"
        ) from None


def _read_lines(file: Path) -> list[str]:
    """A text file's lines (ends kept), or a ValueError naming the file when it is not UTF-8."""
    try:
        with open(file, encoding="utf-8") as f:
            return list(f)
    except UnicodeDecodeError as error:
        raise ValueError(f"{file} is not UTF-8 text ({error}); it is damaged or not what its name says: restore it "
                         "from where the model came from, or write it again with Tokenizer.save_pretrained") from None


def _read_bytelevel(folder: Path, frame: bool) -> Backend:
    """vocab.json + merges.txt, or a ValueError naming the file at fault (the tokenizers library raised a
    bare Exception or TypeError, which the command lines do not catch)."""
    vocab = _read_json(folder / "vocab.json")
    merges = []
    for n, line in enumerate(_read_lines(folder / "merges.txt"), start=1):
        line = line.rstrip("\r\n")
        if not line or n == 1 and line.startswith("#version"):
            continue
        pair = tuple(line.split(" "))
        if len(pair) != 2:
            raise ValueError(f"{folder / 'merges.txt'} line {n} is {line!r}, not two tokens and a space between; "
                             "restore the file from where the model came from")
        merges.append(pair)
    try:
        return bytelevel_backend(vocab, merges, frame=frame)
    except Exception as error:  # a merge of tokens vocab.json lacks, an id that is not a number ...
        raise ValueError(f"{folder / 'vocab.json'} and {folder / 'merges.txt'} do not make a BPE vocabulary "
                         f"({error}); they are damaged or not from the same model: restore them") from None


def _check_unknown_token(backend: Backend, folder: Path) -> None:
    """A WordPiece vocabulary without its unknown token fails at the first word it lacks, deep in a run."""
    unk = getattr(backend.model, "unk_token", None)
    if isinstance(backend.model, models.WordPiece) and unk not in backend.get_vocab(with_added_tokens=True):
        raise ValueError(f"the WordPiece vocabulary in {folder} has no unknown token {unk!r}, which every word "
                         "outside it needs; it is damaged or not a BERT vocabulary (if its unknown token has "
                         "another name, name it as unk_token in tokenizer_config.json)")


# tokenizer_class values under which transformers reads tokenizer.json as it is, applying no setting of
# tokenizer_config.json over it (its generic classes, not a family's)
GENERIC_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def _apply_config(backend: Backend, kind: str, config: dict, lowercase: bool | None) -> bool | None:
    """The settings of tokenizer_config.json that transformers' family classes apply over tokenizer.json:
    BERT's normaliser (do_lower_case, strip_accents, tokenize_chinese_chars) and a byte-level tokenizer's
    add_prefix_space. When the config names one of BERT's three, the others take BertTokenizer's defaults
    (True, None, True), as in transformers; when it names none, tokenizer.json's normaliser stays (where
    transformers would lower-case a cased one). Under a generic tokenizer_class nothing applies, as
    there. Returns do_lower_case."""
    if config.get("tokenizer_class") in GENERIC_TOKENIZER_CLASSES:
        return getattr(backend.normalizer, "lowercase", lowercase)
    normalizer = backend.normalizer
    named = [key for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars") if key in config]
    if kind == "wordpiece" and named and isinstance(normalizer, normalizers.BertNormalizer):
        lowercase = _config_flag(config, "do_lower_case", True)
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=normalizer.clean_text, lowercase=lowercase, strip_accents=_config_flag(config, "strip_accents"),
            handle_chinese_chars=_config_flag(config, "tokenize_chinese_chars", True))
    pre_tokenizer, add_prefix_space = backend.pre_tokenizer, _config_flag(config, "add_prefix_space")
    if kind == "bytelevel_bpe" and add_prefix_space is not None and isinstance(pre_tokenizer, pre_tokenizers.ByteLevel):
        pre_tokenizer.add_prefix_space = add_prefix_space
        backend.pre_tokenizer = pre_tokenizer
    return lowercase


def _config_flag(config: dict, key: str, default: bool | None = None) -> bool | None:
    """A true / false setting of tokenizer_config.json (null or absent: the default)."""
    value = config.get(key)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"tokenizer_config.json: {key} must be true, false or null, got {value!r}; correct the file")
    return default if value is None else value


def _add_saved_token_settings(backend: Backend, folder: Path, config: dict, special_tokens_map: dict) -> None:
    """The added tokens of a directory without tokenizer.json, and how the special tokens match text, as
    transformers reads them. Added tokens: tokenizer_config.json's added_tokens_decoder, or (older saves)
    added_tokens.json (_saved_added_tokens); a fine-tuned model's resized embeddings have a row for each, so without
    them "<ent>" was cut into pieces and every id past the vocabulary missing. Settings: where tokenizer_config.json's
    tokens and special_tokens_map.json give them as transformers 4 saved them ({"content": "<mask>", "lstrip": true,
    ...}): RoBERTa's and BART's <mask> takes the space before it ("hello <mask>" is hello <mask>, not hello Ġ <mask>:
    the Ġ was one token more than the checkpoint's fill-mask was trained with)."""
    added = _saved_added_tokens(folder, config, special_tokens_map)
    for i, entry in sorted(added.items()):
        special = entry["special"]
        token = AddedToken(entry["content"], single_word=bool(entry.get("single_word")),
                           lstrip=bool(entry.get("lstrip")), rstrip=bool(entry.get("rstrip")),
                           normalized=bool(entry.get("normalized", not special)), special=special)
        # in order of id, as transformers adds them: one the vocabulary has keeps its id (matched whole now, as
        # there), a new one takes the next
        (backend.add_special_tokens if special else backend.add_tokens)([token])
        got = backend.token_to_id(entry["content"])
        if got != i:  # transformers renumbers it the same way, silently
            logger.warning("the added token %r is saved with id %d but takes id %d (the vocabulary's, or the next "
                           "free one), as in transformers; the files in %s are not as transformers saved them",
                           entry["content"], i, got, folder)
    vocab = backend.get_vocab(with_added_tokens=False)
    decided = {entry["content"] for entry in added.values()}  # added_tokens_decoder's settings win, as there
    for entry in [*(config.get(key) for key in SPECIAL_KEYS), *special_tokens_map.values()]:
        # where two name one token, the later wins: special_tokens_map.json's over tokenizer_config.json's own
        # tokens, as transformers reads them
        if (isinstance(entry, dict) and entry.get("content") in vocab and entry.get("special", True)
                and entry["content"] not in decided):
            backend.add_special_tokens([AddedToken(
                entry["content"], single_word=bool(entry.get("single_word")), lstrip=bool(entry.get("lstrip")),
                rstrip=bool(entry.get("rstrip")), normalized=bool(entry.get("normalized")), special=True)])
    # a special token named but in neither the vocabulary nor the added tokens: transformers adds it at the next id
    # (in transformers' order, so the ids are its ids; not a WordPiece vocabulary's unknown token, which
    # _check_unknown_token refuses by name when the vocabulary lacks it)
    unknown = {_token_text(source.get("unk_token")) for source in (config, special_tokens_map)}
    missing = [token for token in _named_special_tokens(config, special_tokens_map)
               if backend.token_to_id(token) is None
               and not (token in unknown and isinstance(backend.model, models.WordPiece))]
    backend.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in missing])


def _saved_added_tokens(folder: Path, config: dict, special_tokens_map: dict) -> dict[int, dict]:
    """{id: {"content": ..., "special": ..., ...}} as transformers reads them from a directory without tokenizer.json:
    tokenizer_config.json's added_tokens_decoder (transformers >= 4.34 saved every added token there, special or
    not, with its settings) or, where the config has none, added_tokens.json ({token: id}, what older versions
    saved for tok.add_tokens): a token of it is special when a special-token setting names it (as
    add_special_tokens({"additional_special_tokens": [...]}) saved), and then matched before normalisation.
    That is transformers 4's reading; transformers 5 reads a token named only in special_tokens_map.json (not in
    tokenizer_config.json) as a plain added token."""
    named = _named_special_tokens(config, special_tokens_map)
    decoder = config.get("added_tokens_decoder")
    if decoder is not None:
        if not isinstance(decoder, dict):
            raise ValueError(f"{folder / 'tokenizer_config.json'}: added_tokens_decoder must map ids to tokens, got "
                             f"{decoder!r}; correct the file")
        saved = {}
        for i, entry in decoder.items():
            if not (str(i).isdigit() and isinstance(entry, dict) and isinstance(entry.get("content"), str)):
                raise ValueError(f"{folder / 'tokenizer_config.json'}: added_tokens_decoder maps {i!r} to {entry!r}, "
                                 'not an id to {"content": ...}; correct the file')
            # transformers writes "special" always; a hand-written entry without it is special when named so
            # (else [CLS], [PAD] ... lost their special flag, and decode kept them)
            saved[int(i)] = {**entry, "special": bool(entry.get("special", entry["content"] in named))}
        return saved
    added = _read_json(folder / "added_tokens.json")
    for token, i in added.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise ValueError(f"{folder / 'added_tokens.json'}: {token!r} has id {i!r}, not a token id; correct the "
                             "file")
    return {i: {"content": token, "special": token in named, "normalized": token not in named}
            for token, i in added.items()}


def _named_special_tokens(config: dict, special_tokens_map: dict) -> list[str]:
    """The tokens a special-token setting names, in transformers' order (bos, eos, unk, sep, pad, cls, mask, then
    additional_special_tokens): the order in which it adds those the files lack, so their ids are its ids."""
    named = [_token_text(source[key]) for key in SPECIAL_KEYS for source in (special_tokens_map, config)
             if key in source]
    for source in (special_tokens_map, config):
        for key in ("additional_special_tokens", "extra_special_tokens"):
            value = source.get(key)
            if isinstance(value, list | dict):
                named.extend(_token_text(v) for v in (value.values() if isinstance(value, dict) else value))
    return [token for token in dict.fromkeys(named) if isinstance(token, str)]


def _token_text(value) -> str | None:
    """special_tokens_map.json stores a token as a string or as {"content": ...}."""
    return value.get("content") if isinstance(value, dict) else value


def _guess_specials(vocab: dict[str, int]) -> dict[str, str]:
    for candidate in (WORDPIECE_SPECIALS, BYTELEVEL_SPECIALS, GPT2_SPECIALS):
        found = {k: v for k, v in candidate.items() if v in vocab}
        if "unk_token" in found or "pad_token" in found:
            return found
    return {}


def _guess_kind(backend: Backend) -> str:
    if isinstance(backend.model, models.WordPiece):
        return "wordpiece"
    pre_tokenizer = json.dumps(json.loads(backend.to_str())["pre_tokenizer"])
    if isinstance(backend.model, models.BPE) and "ByteLevel" in pre_tokenizer:
        return "bytelevel_bpe"
    raise ValueError(
        f"tokenizer model {type(backend.model).__name__} is neither WordPiece nor byte-level BPE; minibert supports "
        "those two (BERT and GPT-2/RoBERTa/BART vocabularies)"
    )


def wordpiece_backend(vocab: dict[str, int], lowercase: bool = True, unk_token: str = "[UNK]",
                      strip_accents: bool | None = None, tokenize_chinese_chars: bool = True) -> Backend:
    """BERT's pipeline around a WordPiece vocabulary (what BertTokenizerFast builds from vocab.txt and the
    settings of tokenizer_config.json: strip_accents None follows lowercase, as BERT's uncased models)."""
    backend = Backend(models.WordPiece(vocab, unk_token=unk_token, max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
                                                    strip_accents=strip_accents, lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    if "[CLS]" in vocab and "[SEP]" in vocab:
        backend.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    return backend


def bytelevel_backend(vocab: dict[str, int], merges: list[tuple[str, str]], frame: bool = True) -> Backend:
    """RoBERTa's pipeline around a byte-level BPE (what RobertaTokenizerFast builds from vocab.json + merges.txt);
    frame=False, or a vocabulary without <s> and </s>: GPT-2's, which adds nothing around a text."""
    backend = Backend(models.BPE(vocab, merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    if frame and "<s>" in vocab and "</s>" in vocab:
        backend.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]),
                                                              trim_offsets=True, add_prefix_space=False)
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return backend


def check_tokenizer_fits(tokenizer: Tokenizer, config: dict, tokenizer_flag: str, model_source,
                         weights_dir: str | os.PathLike | None = None) -> None:
    """A tokenizer given apart from its model (--tokenizer, --tokenizer_name) must be the model's: one
    with other ids would pad with what the model reads as a word, or index past its embedding table.
    weights_dir: the checkpoint whose trained weights are loaded; where it holds a tokenizer of its own,
    no id may name another token in the two (a smaller one with the same pad id passed the other checks,
    and every id then meant another piece to the embeddings)."""
    vocab = config.get("vocab_size")
    if vocab is not None and tokenizer.vocab_size > vocab:
        raise ValueError(f"{tokenizer_flag} has {tokenizer.vocab_size} tokens but {model_source} embeds {vocab}; "
                         f"it is not this model's tokenizer: drop {tokenizer_flag} to use the checkpoint's own")
    pad = config.get("pad_token_id")
    if pad is not None and tokenizer.pad_token_id is not None and tokenizer.pad_token_id != pad:
        raise ValueError(f"{tokenizer_flag} pads with id {tokenizer.pad_token_id} ({tokenizer.pad_token!r}) but "
                         f"{model_source} was trained with pad_token_id {pad}; it is not this model's tokenizer: "
                         f"drop {tokenizer_flag} to use the checkpoint's own")
    if weights_dir is None or not any((Path(weights_dir) / f).is_file() for f in TOKENIZER_FILES):
        return
    try:
        own = load_tokenizer(weights_dir)
    except ValueError as error:  # unreadable: the reason one may pass --tokenizer_name at all
        logger.warning("%s: the tokenizer saved with %s cannot be read (%s); the vocabularies are not compared",
                       tokenizer_flag, model_source, error)
        return
    # An id that names another token in each: the embedding row trained for one piece would read another. New
    # tokens in place of BERT's [unusedN] rows (its README's way to add words), and tokens one of them lacks, are
    # no such clash.
    theirs = {i: t for t, i in own.backend.get_vocab(with_added_tokens=True).items()}
    ours = {i: t for t, i in tokenizer.backend.get_vocab(with_added_tokens=True).items()}
    clash = sorted(i for i, t in ours.items() if i in theirs and theirs[i] != t
                   and not re.fullmatch(r"\[unused\d+\]", theirs[i]))
    if clash:
        i = clash[0]
        raise ValueError(f"{tokenizer_flag} is not the tokenizer saved with {model_source}: {len(clash)} of its "
                         f"{len(ours)} ids name other tokens (id {i} is {ours[i]!r} in it, {theirs[i]!r} in the "
                         f"checkpoint's), and the embeddings are read by id; drop {tokenizer_flag} to use the "
                         "checkpoint's own")


def check_unknown_tokens(tokenizer: Tokenizer, items: Sequence, what: str, fix: str,
                         token_ids: Callable = lambda item: item, text_of: Callable[[int], str] | None = None,
                         reader: str = "the tokenizer", refuse_above: float = 0.5, warn_above: float = 0.05,
                         sample: int = 200) -> float | None:
    """Whether the tokenizer can read a run's training text: the share of its unknown token among the text tokens
    (special tokens left out) of up to `sample` of `items`, evenly spaced (`token_ids(item)`: an item's ids). Above
    `refuse_above` a ValueError (a model trained on [UNK] learns nothing: an English WordPiece on Chinese text gave
    all [UNK], and the run an accuracy of chance without a word), above `warn_above` a warning (a Simplified
    Chinese vocabulary on Traditional text: 22% [UNK]). Each names `what` was measured, `reader`, the item with
    the most unknown tokens (its text, `text_of(i)`, and what the tokenizer made of it) and `fix`; where it read
    Chinese characters, also the conversion between the two scripts. Pretraining and fine-tuning (train.py) both
    check with this. Returns the share, or None where the tokenizer cannot tell: no unknown token, or one shared
    with another special token (GPT-2's <|endoftext|>: a byte-level vocabulary never needs an unknown token, and
    its share is 0)."""
    unk = tokenizer.unk_token_id
    specials = {tokenizer.backend.token_to_id(t) for k, t in tokenizer.special_tokens.items() if k != "unk_token"}
    if unk is None or unk in specials or not len(items):
        return None
    worst, worst_count, unknown, total = 0, -1, 0, 0
    for i in range(0, len(items), max(1, len(items) // sample))[:sample]:
        text = [int(t) for t in token_ids(items[i]) if int(t) not in specials]  # [CLS]/[SEP] would hide it
        count = text.count(unk)
        unknown, total = unknown + count, total + len(text)
        if count > worst_count:
            worst, worst_count = i, count
    share = unknown / total if total else 0.0
    if share <= warn_above:
        return share
    ids = [int(t) for t in token_ids(items[worst]) if int(t) not in specials]
    read = " ".join(tokenizer.convert_ids_to_tokens(ids[:16])) + (" ..." if len(ids) > 16 else "")
    example = text_of(worst) if text_of is not None else None
    shown = (f"{example[:60] + ('...' if len(example) > 60 else '')!r} is read as {read!r}" if example is not None
             else f"a text is read as {read!r}")
    # Chinese characters among those it did read (unicodedata: "CJK UNIFIED IDEOGRAPH-...", "CJK COMPATIBILITY
    # IDEOGRAPH-..."): a Chinese vocabulary, which lacks many characters of the other script (Traditional, Simplified)
    if any("CJK" in unicodedata.name(c, "") and "IDEOGRAPH" in unicodedata.name(c, "") for c in read):
        fix += ("; or, for a Chinese tokenizer of the other script (Traditional or Simplified), convert the text "
                "first: minibert.data.convert_chinese(text, \"t2s\") (or \"s2t\") on each text (the zh extra)")
    percent = f"{share:.0%}" if share >= 0.1 else f"{share:.1%}"
    unk_name = tokenizer.convert_ids_to_tokens(unk)
    if share > refuse_above:
        raise ValueError(f"{percent} of {what} are unknown to {reader} ({unk_name}): it cannot read this text (another "
                         f"language or script, or characters its vocabulary lacks?), e.g. {shown}; {fix}")
    logger.warning("%s of %s are unknown to %s (%s): each is read as that one token, whatever it was (another "
                   "language or script in part of the text, or characters its vocabulary lacks: digits, symbols, "
                   "typographic quotes?), e.g. %s; %s", percent, what, reader, unk_name, shown, fix)
    return share


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Read a tokenizer from a directory (tokenizer.json, or vocab.txt, or vocab.json + merges.txt,
    with tokenizer_config.json / special_tokens_map.json / added_tokens.json when present) or from one of those
    files."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"tokenizer path {path} does not exist; pass a directory with tokenizer.json or vocab.txt")
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.name not in ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt"):
        # config.json or tokenizer_config.json given: "no tokenizer found" beside a tokenizer.json misled
        raise ValueError(f"{path} is not a tokenizer file (tokenizer.json, vocab.txt, vocab.json or merges.txt); "
                         f"pass one of those files, or the directory that holds them")
    config = _read_json(folder / "tokenizer_config.json")
    special_tokens_map = _read_json(folder / "special_tokens_map.json")
    specials = {k: _token_text(v) for k, v in special_tokens_map.items()}
    specials.update({k: _token_text(config[k]) for k in SPECIAL_KEYS if config.get(k) is not None})
    lowercase = config.get("do_lower_case")
    from_tokenizer_json = (path.is_file() and path.name == "tokenizer.json"
                           or path.is_dir() and (folder / "tokenizer.json").is_file())
    if from_tokenizer_json:
        backend = _read_backend(folder / "tokenizer.json")
    elif path.name == "vocab.txt" or path.is_dir() and (folder / "vocab.txt").is_file():
        # one token per line ending (\n, \r\n or \r), as Hugging Face's load_vocab reads it: splitlines()
        # would also split at U+2028, U+0085 ... inside a token and shift every later id
        lines = [line.rstrip("\n") for line in _read_lines(folder / "vocab.txt")]
        vocab = {token: i for i, token in enumerate(lines)}
        # BertTokenizer's defaults; the settings tokenizer_config.json names apply below (_apply_config)
        lowercase = True
        backend = wordpiece_backend(vocab, lowercase=True, unk_token=specials.get("unk_token", "[UNK]"))
    elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        # GPT-2's tokenizer adds no <s> ... </s>: its class says so, or (no class named: AutoTokenizer goes
        # by the model) config.json's model_type
        family = str(config.get("tokenizer_class") or _read_json(folder / "config.json").get("model_type") or "")
        backend = _read_bytelevel(folder, frame=not family.lower().startswith("gpt2"))
    else:
        raise ValueError(
            f"no tokenizer found in {folder}: expected tokenizer.json, vocab.txt, or vocab.json + merges.txt; "
            "train one with minibert.tokenizer.train_tokenizer(texts) and save_pretrained it there"
        )
    if not from_tokenizer_json:  # tokenizer.json's added tokens are the settings, where there is one
        _add_saved_token_settings(backend, folder, config, special_tokens_map)
    kind = _guess_kind(backend)
    _check_unknown_token(backend, folder)
    lowercase = _apply_config(backend, kind, config, lowercase)
    # transformers pads and truncates as each call asks, never as tokenizer.json was saved (sentence-
    # transformers' checkpoints save BatchLongest padding and truncation at 128): kept, they padded the
    # rows of encode_batch, cut encode's ids short and put [PAD] and cut sentences into a prepared corpus
    backend.no_truncation()
    backend.no_padding()
    # the family's usual names fill in what the files leave out, as transformers' classes default them
    specials = {**_guess_specials(backend.get_vocab(with_added_tokens=True)), **specials}
    max_len = config.get("model_max_length")
    # transformers' "no limit" is a huge number; 0 or less is no limit either (it was refused at every call)
    max_len = max_len if isinstance(max_len, int) and 0 < max_len < 1_000_000 else None
    # read, it was left out: a BERT tokenizer whose config says true (what transformers 4 saved by default)
    # decoded "it ' s" where transformers gives "it's"
    clean_up = _config_flag(config, "clean_up_tokenization_spaces", False)
    return Tokenizer(backend, specials, kind, model_max_length=max_len, do_lower_case=lowercase,
                     clean_up_tokenization_spaces=clean_up)


# -- training --------------------------------------------------------------------------------
def train_tokenizer(texts: Iterable[str], kind: str = "wordpiece", vocab_size: int = 8000, min_frequency: int = 2,
                    lowercase: bool = True, model_max_length: int | None = 512, frame: bool = True) -> Tokenizer:
    """Learn a WordPiece (BERT family) or byte-level BPE (GPT-2 / RoBERTa / BART) vocabulary from texts.

    `frame`: a byte-level tokenizer wraps each text in <s> ... </s> as RoBERTa's and BART's do; with
    frame=False it adds nothing, as GPT-2's does, so that a prompt ends where its text ends instead of
    with the end-of-document token a decoder was trained to start a new document after."""
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; use one of {KINDS}")
    if vocab_size < 50:
        raise ValueError(f"vocab_size {vocab_size} is too small to be useful; use a few thousand")
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise ValueError("cannot train a tokenizer on an empty corpus; pass some text")
    if kind == "wordpiece":
        specials = WORDPIECE_SPECIALS
        backend = wordpiece_backend({"[UNK]": 0}, lowercase=lowercase)
        # Reproducibility: the trainer gives "##c" tokens their ids in the order it meets them in a
        # hash map, so ties between merges break differently from run to run
        # (huggingface/tokenizers#1794). Listing every "##c" up front, sorted, fixes their ids; they
        # are listed as special tokens only for training, and the vocabulary is rebuilt without that.
        # Not listed: the characters the normaliser isolates (it puts spaces around each CJK
        # character), which can never continue a word: for Chinese text "##的" and its like were half
        # of the vocabulary, and more tokens than vocab_size asked for. Punctuation stays listed
        # although the pre-tokenizer splits it off too, so "##:" is never used either (18 of the
        # default run's 2,000 tokens): leaving it out would change the default vocabulary, and every
        # number measured with it, for less than 1% of it.
        seen = set().union(*(set(backend.normalizer.normalize_str(t)) for t in texts))  # set() per text: C speed
        isolated = {c for c in seen if backend.normalizer.normalize_str(c) != c}  # " 的 ": a word of its own
        continuing = seen - isolated - {c for c in seen if c.isspace()}
        reserved = list(dict.fromkeys(specials.values())) + ["##" + c for c in sorted(continuing)]
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                            special_tokens=reserved, continuing_subword_prefix="##")
        backend.train_from_iterator(texts, trainer=trainer)
        backend = wordpiece_backend(backend.get_vocab(with_added_tokens=False), lowercase=lowercase)
    else:
        specials = BYTELEVEL_SPECIALS
        backend = bytelevel_backend({}, [])
        ordered = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                      special_tokens=ordered, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        backend.train_from_iterator(texts, trainer=trainer)
        vocab = backend.get_vocab()
        if frame:
            backend.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]),
                                                                  trim_offsets=True, add_prefix_space=False)
    logger.info("trained a %s tokenizer with %d tokens", kind, backend.get_vocab_size())
    return Tokenizer(backend, dict(specials), kind, model_max_length=model_max_length,
                     do_lower_case=lowercase if kind == "wordpiece" else None)

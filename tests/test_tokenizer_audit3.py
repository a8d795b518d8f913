"""Tokenizer gaps a third audit closed, each checked against transformers' tokenizer read from the same files:
the added tokens of a directory without tokenizer.json (added_tokens.json, or tokenizer_config.json's
added_tokens_decoder), the special tokens' string attributes, an empty batch, and OpenCC's conversions."""

import importlib.resources
import json
import logging
import shutil

import pytest
import torch
import transformers
from test_tokenizer_audit2 import save_two_tokenizers

import minibert
from minibert.data.chinese import OPENCC_CONVERSIONS, convert_chinese
from minibert.tokenizer import SPECIAL_KEYS, check_tokenizer_fits, load_tokenizer

TEXTS = ["the <ent> king newword [E1] end", "hello<ent>x  [E1]  b", "NewWord kingdom [e1] <x>"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A WordPiece and a RoBERTa-style tokenizer as transformers 3/4 saved a slow one: no tokenizer.json."""
    root = save_two_tokenizers(tmp_path_factory.mktemp("saved"))
    for kind in ("wordpiece", "bytelevel_bpe"):
        (root / kind / "tokenizer.json").unlink()
    return root


def _vocab(folder):
    if (folder / "vocab.txt").is_file():
        return (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return list(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))


def _directory(saved, tmp_path, kind, added=None, **config):
    """A copy of the saved directory with added_tokens.json and tokenizer_config.json settings."""
    folder = tmp_path / kind
    shutil.copytree(saved / kind, folder)
    if added is not None:
        (folder / "added_tokens.json").write_text(json.dumps(added))
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, **config}))
    return folder


def _layouts(n, word):
    """Added tokens past a vocabulary of n, as each transformers version saved them (word: a token of the vocabulary,
    added again as transformers 4.34+ could save one, which is then matched whole)."""
    return {
        # tok.add_tokens(["<ent>", "newword", "[E1]"]) before transformers 4.34
        "added_tokens.json": ({"<ent>": n, "newword": n + 1, "[E1]": n + 2}, {}),
        # tok.add_special_tokens({"additional_special_tokens": ["[E1]"]}): special, matched before lower-casing
        "additional_special_tokens": ({"[E1]": n, "<ent>": n + 1}, {"additional_special_tokens": ["[E1]"]}),
        # transformers >= 4.34: every added token with its settings, special or not, in the vocabulary or not
        "added_tokens_decoder": (None, {"added_tokens_decoder": {
            str(n): {"content": "<ent>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                     "special": True},
            str(n + 1): {"content": "newword", "special": False},
            str(n + 2): {"content": "[E1]", "lstrip": True, "normalized": False, "rstrip": True, "single_word": False,
                         "special": False},
            str(n - 1): {"content": word, "normalized": False, "special": False}}}),
    }


@pytest.mark.parametrize("layout", ["added_tokens.json", "additional_special_tokens", "added_tokens_decoder"])
@pytest.mark.parametrize("kind", ["wordpiece", "bytelevel_bpe"])
def test_the_added_tokens_of_a_directory_without_tokenizer_json_load_as_in_transformers(saved, tmp_path, kind,
                                                                                        layout):
    """They were left out: "<ent>" was cut into pieces (< ent >) where transformers gives its id past the
    vocabulary, so a model whose embeddings were resized for them read other rows, and len(tok) was the
    vocabulary's alone."""
    vocab = _vocab(saved / kind)
    word = vocab[-1]  # id len(vocab) - 1
    added, config = _layouts(len(vocab), word)[layout]
    folder = _directory(saved, tmp_path, kind, added, **config)
    ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    assert len(ours) == ours.vocab_size == len(theirs) > len(vocab)
    for text in [*TEXTS, f"a{word}b {word}"]:
        ids = theirs.encode(text, add_special_tokens=False)
        assert ours.encode(text) == ids, text
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True), text
        assert ours.decode(ids, skip_special_tokens=False) == theirs.decode(ids), text
    for i in range(len(vocab), len(theirs)):
        assert ours.convert_ids_to_tokens(i) == theirs.convert_ids_to_tokens(i)
    assert ours.encode("<ent>") == [theirs.convert_tokens_to_ids("<ent>")] != [ours.unk_token_id]
    assert ours(TEXTS)["input_ids"].tolist() == theirs(TEXTS, padding=True, return_tensors="pt")["input_ids"].tolist()
    ours.save_pretrained(tmp_path / "again")  # kept in tokenizer.json
    assert load_tokenizer(tmp_path / "again").encode(TEXTS[0]) == ours.encode(TEXTS[0])


def test_a_bert_resized_for_added_tokens_gives_hugging_faces_numbers(saved, tmp_path):
    """A fine-tuned model saved by transformers 3/4 (embeddings resized to len(tokenizer), the tokenizer's added
    tokens in added_tokens.json): the ids, and so the logits, were not transformers'."""
    folder = _directory(saved, tmp_path, "wordpiece", {"<ent>": 600, "[E1]": 601})
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=600, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=37, max_position_embeddings=64)
    hf_model = transformers.BertForMaskedLM(config).eval()
    hf_model.resize_token_embeddings(len(theirs))
    hf_model.save_pretrained(folder)
    model, ours = minibert.load_pretrained(folder).eval(), load_tokenizer(folder)
    assert len(ours) == model.config.vocab_size == len(theirs) == 602
    check_tokenizer_fits(ours, json.loads((folder / "config.json").read_text()), "--tokenizer_name", folder, folder)
    text = "the <ent> king [E1] is dead"
    batch = ours([text])
    expected = theirs([text], return_tensors="pt")
    assert batch["input_ids"].tolist() == expected["input_ids"].tolist()
    with torch.no_grad():
        logits = model(**batch).logits
        hf_logits = hf_model(**expected).logits
    torch.testing.assert_close(logits, hf_logits, rtol=1e-4, atol=1e-4)


def test_added_token_ids_that_do_not_follow_the_vocabulary_are_renumbered_as_in_transformers(saved, tmp_path, caplog):
    """A gap after the vocabulary, or an id inside it: transformers gives each the next free id, in order of id,
    silently; minibert does the same and says so."""
    folder = _directory(saved, tmp_path, "wordpiece", {"<ent>": 605, "zz": 603, "<in>": 10})
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    with caplog.at_level(logging.WARNING, logger="minibert.tokenizer"):
        ours = load_tokenizer(folder)
    assert {t: ours.convert_tokens_to_ids(t) for t in ("<in>", "zz", "<ent>")} == \
        {t: theirs.convert_tokens_to_ids(t) for t in ("<in>", "zz", "<ent>")} == {"<in>": 600, "zz": 601, "<ent>": 602}
    assert "'<ent>' is saved with id 605 but takes id 602" in caplog.text


def test_damaged_added_token_files_are_refused_by_name(saved, tmp_path):
    """An id that is not a number, or an added_tokens_decoder that is not a mapping, was passed over in silence
    (every added token then missing)."""
    folder = _directory(saved, tmp_path, "wordpiece", {"<ent>": "600"})
    with pytest.raises(ValueError, match=r"added_tokens.json: '<ent>' has id '600', not a token id"):
        load_tokenizer(folder)
    (folder / "added_tokens.json").unlink()
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "added_tokens_decoder": ["<ent>"]}))
    with pytest.raises(ValueError, match="added_tokens_decoder must map ids to tokens"):
        load_tokenizer(folder)


@pytest.mark.parametrize("kind", ["wordpiece", "bytelevel_bpe"])
def test_every_special_token_has_its_string_attribute_as_in_transformers(saved, tmp_path, kind):
    """cls_token, sep_token, bos_token and unk_token raised AttributeError (only their _id forms existed), and
    `tok.cls_token = ...` made a plain attribute that cls_token_id ignored. As transformers: None where the
    tokenizer has none, and setting one renames it, leaving what tok() puts around a text as it was."""
    ours, theirs = load_tokenizer(saved / kind), transformers.AutoTokenizer.from_pretrained(saved / kind)
    for key in SPECIAL_KEYS:
        assert getattr(ours, key) == getattr(theirs, key), key
        assert getattr(ours, f"{key}_id") == getattr(theirs, f"{key}_id"), key
    before = ours(["a b"])["input_ids"].tolist()
    word = "the" if kind == "wordpiece" else "Ġthe"
    for key in ("cls_token", "sep_token", "bos_token", "unk_token"):
        setattr(ours, key, word)
        setattr(theirs, key, word)
        assert getattr(ours, key) == word and getattr(ours, f"{key}_id") == getattr(theirs, f"{key}_id"), key
    assert ours(["a b"])["input_ids"].tolist() == before == theirs(["a b"])["input_ids"]
    assert ours.convert_tokens_to_ids("zzqqxx") == theirs.convert_tokens_to_ids("zzqqxx")  # the renamed unk's id
    with pytest.raises(ValueError, match="is not in this tokenizer's vocabulary, so it cannot be its cls_token"):
        ours.cls_token = "zzqqxx"
    ours.bos_token = None
    assert ours.bos_token is None and ours.bos_token_id is None


def test_an_empty_batch_is_refused_by_name(saved):
    """tok([]) returned 1-D (0,) tensors, not (B, T), for a model to fail on later (transformers raises an
    IndexError); the empty lists that need no tokenizer call stay empty."""
    ours = load_tokenizer(saved / "wordpiece")
    for call in (lambda: ours([]), lambda: ours([], []), lambda: ours(()), lambda: ours([], text_pair=[])):
        with pytest.raises(ValueError, match=r"no texts to encode \(an empty list\); pass at least one text"):
            call()
    assert ours.encode_batch([]) == [] and ours.batch_decode([]) == []
    assert ours(["a"])["input_ids"].shape == (1, 3)


def test_every_opencc_conversion_the_package_ships_is_offered():
    """hk2t, tw2t, t2jp, jp2t, hk2sp and s2hkp were refused as unknown although OpenCC ships them, under a
    comment saying the list was OpenCC's conversions."""
    shipped = {f.name.removesuffix(".json") for f in (importlib.resources.files("opencc") / "clib/share/opencc")
               .iterdir() if f.name.endswith(".json")}
    assert set(OPENCC_CONVERSIONS) == shipped
    assert convert_chinese("头发", "s2hkp") == "頭髮"
    assert convert_chinese("藝術", "t2jp") == "芸術" and convert_chinese("芸術", "jp2t") == "藝術"
    assert convert_chinese("软件", "s2twp") == "軟體" and convert_chinese("軟體", "tw2sp") == "软件"
    for conversion in ("hk2t", "tw2t", "hk2sp"):
        assert convert_chinese("漢字", conversion)


def _mask(lstrip: bool) -> dict:
    return {"content": "<mask>", "lstrip": lstrip, "normalized": False, "rstrip": False, "single_word": False}


@pytest.mark.parametrize("config_mask, decoder_lstrip, map_mask", [
    ("<mask>", True, _mask(False)),  # added_tokens_decoder wins over special_tokens_map.json
    ("<mask>", False, _mask(True)),
    ({"__type": "AddedToken", **_mask(True)}, False, "<mask>"),  # ... and over tokenizer_config.json's own token
    ({"__type": "AddedToken", **_mask(True)}, None, _mask(False)),  # special_tokens_map.json wins over that one
    ({"__type": "AddedToken", **_mask(False)}, None, _mask(True)),
])
def test_where_the_saved_mask_settings_disagree_the_same_one_wins_as_in_transformers(saved, tmp_path, config_mask,
                                                                                   decoder_lstrip, map_mask):
    """Read in the reverse order, <mask> took the space before it where transformers does not (and the reverse)."""
    folder = tmp_path / "tok"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(saved / "bytelevel_bpe" / name, folder)
    vocab = json.loads((folder / "vocab.json").read_text())
    names = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "pad_token": "<pad>",
             "cls_token": "<s>"}
    config = {"tokenizer_class": "RobertaTokenizer", **names, "mask_token": config_mask}
    if decoder_lstrip is not None:
        config["added_tokens_decoder"] = {
            str(vocab[t]): {**_mask(decoder_lstrip and t == "<mask>"), "content": t, "special": True}
            for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "special_tokens_map.json").write_text(json.dumps({**names, "mask_token": map_mask}))
    theirs = transformers.AutoTokenizer.from_pretrained(folder).encode("hello <mask>", add_special_tokens=False)
    assert load_tokenizer(folder).encode("hello <mask>") == theirs


def test_batch_decode_of_a_flat_list_of_numpy_ids_is_one_text(saved):
    """list(np_array) is a list of NumPy ints (and list(tensor) of 0-d tensors): each was decoded as a text."""
    ours = load_tokenizer(saved / "wordpiece")
    theirs = transformers.AutoTokenizer.from_pretrained(saved / "wordpiece")
    ids = ours.encode("to be or not")
    for flat in (list(torch.tensor(ids).numpy()), list(torch.tensor(ids))):
        assert ours.batch_decode(flat) == theirs.batch_decode(flat, skip_special_tokens=True) == ["to be or not"]


def test_a_special_token_named_but_never_added_is_added_as_in_transformers(saved, tmp_path):
    """additional_special_tokens naming "[E9]", which neither the vocabulary nor added_tokens.json holds: transformers
    adds it at the next id, and len(tok) counts it (minibert dropped it: one row fewer than the model's)."""
    folder = _directory(saved, tmp_path, "wordpiece", additional_special_tokens=["[E9]"])
    ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    assert len(ours) == len(theirs) == len(_vocab(folder)) + 1
    text = "the king [E9] end"
    assert ours.encode(text) == theirs.encode(text, add_special_tokens=False)


def test_an_added_tokens_decoder_entry_without_special_is_special_when_named_so(saved, tmp_path):
    """A hand-written added_tokens_decoder without "special" keys made [CLS], [PAD], [MASK] ... plain tokens, so
    decode kept them; transformers takes a token a special-token setting names as special."""
    vocab = _vocab(saved / "wordpiece")
    decoder = {str(vocab.index(t)): {"content": t} for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    folder = _directory(saved, tmp_path, "wordpiece", added_tokens_decoder=decoder)
    ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    ids = ours.convert_tokens_to_ids(["[CLS]", "king", "[MASK]", "[UNK]", "[PAD]", "[SEP]"])
    assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)


def test_named_special_tokens_the_files_lack_take_transformers_ids(saved, tmp_path):
    """Added in the order the files named them, <mask> and <pad> took each other's ids (transformers adds bos, eos,
    unk, sep, pad, cls, mask, then the additional ones): a model resized in transformers read other rows."""
    folder = tmp_path / "gpt2"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(saved / "bytelevel_bpe" / name, folder)
    (folder / "special_tokens_map.json").write_text(json.dumps({"mask_token": "<x-mask>", "pad_token": "<x-pad>"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({  # (bos, eos, unk named: GPT2Tokenizer's defaults
        "tokenizer_class": "GPT2Tokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",  # differ)
        "additional_special_tokens": ["<x>", "<y>"]}))
    ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    tokens = ["<x-mask>", "<x-pad>", "<x>", "<y>"]
    assert len(ours) == len(theirs)
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)

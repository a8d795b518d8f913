"""Tokenizer loading found wanting by an audit: a tokenizer.json saved with padding and truncation on,
damaged or mismatched vocabulary files, tokenizer_config.json settings that transformers applies over
tokenizer.json, a GPT-2-class directory without tokenizer.json, and a model_max_length of 0 or less."""

import json
import shutil

import pytest
from tokenizers import Tokenizer as Backend

from minibert.data import load_corpus
from minibert.data.prepared import DocumentTokenizer
from minibert.tokenizer import load_tokenizer, train_tokenizer

LONG = "to be or not to be that is the question whether tis nobler in the mind to suffer the slings and arrows"
TEXTS = ["Once upon a time", "Hello Café", "北京 hello world", "don't stop, it's 3.14!", LONG]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Directories of a WordPiece, a RoBERTa-style and a GPT-2-style (frame=False) tokenizer, as saved."""
    texts = [" ".join(doc) for doc in load_corpus()[:30]] + ["北京 café résumé"] * 3
    root = tmp_path_factory.mktemp("saved")
    for name, kwargs in (("wordpiece", {"kind": "wordpiece"}), ("roberta", {"kind": "bytelevel_bpe"}),
                         ("gpt2", {"kind": "bytelevel_bpe", "frame": False})):
        train_tokenizer(texts, vocab_size=600, **kwargs).save_pretrained(root / name)
    return root


def _copy(saved, name, tmp_path, drop=()):
    folder = tmp_path / name
    shutil.copytree(saved / name, folder)
    for file in drop:
        (folder / file).unlink()
    return folder


def _edit_config(folder, **settings):
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, **settings}))


def test_a_tokenizer_json_saved_with_padding_and_truncation_neither_pads_nor_cuts(saved, tmp_path):
    """sentence-transformers' checkpoints save BatchLongest padding and truncation in tokenizer.json; the
    backend kept them, so encode cut a text short, encode_batch padded its rows and a prepared corpus got
    [PAD] tokens between its sentences (transformers pads and truncates only as a call asks)."""
    transformers = pytest.importorskip("transformers")
    folder = _copy(saved, "wordpiece", tmp_path)
    backend = Backend.from_file(str(folder / "tokenizer.json"))
    backend.enable_truncation(8)
    backend.enable_padding(pad_id=0, pad_token="[PAD]")
    backend.save(str(folder / "tokenizer.json"))
    ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    assert ours.encode(LONG) == theirs(LONG, add_special_tokens=False)["input_ids"] and len(ours.encode(LONG)) > 8
    assert ours.encode_batch(["a", LONG]) == theirs(["a", LONG], add_special_tokens=False)["input_ids"]
    arrays = DocumentTokenizer(ours)([["a b.", LONG]])
    assert ours.pad_token_id not in arrays["tokens"].tolist()
    assert arrays["lengths"].tolist() == [len(ours.encode(" a b.")), len(ours.encode(LONG))]


@pytest.mark.parametrize("damage, match", [
    ("vocab.txt without [UNK]", "vocabulary in .* has no unknown token '\\[UNK\\]'"),
    ("vocab.txt in Latin-1", "vocab.txt is not UTF-8 text"),
    ("merges.txt in Latin-1", "merges.txt is not UTF-8 text"),
    ("merges.txt line of three tokens", "merges.txt line 3 is 'a b c', not two tokens"),
    ("merges.txt merging tokens vocab.json lacks", "do not make a BPE vocabulary .*out of vocabulary"),
    ("vocab.json ids that are not numbers", "do not make a BPE vocabulary"),
    ("do_lower_case a string", "do_lower_case must be true, false or null, got 'false'"),
])
def test_damaged_vocabulary_files_are_refused_naming_the_file(saved, tmp_path, damage, match):
    """These loaded, then failed at the first encode (a bare Exception: WordPiece error: Missing [UNK]), or
    failed with the tokenizers library's TypeError or bare Exception, or a UnicodeDecodeError naming no
    file: pretrain.py printed a traceback instead of its one-line error."""
    if damage.startswith(("vocab.txt", "do_lower_case")):
        folder = _copy(saved, "wordpiece", tmp_path, drop=["tokenizer.json"])
    else:
        folder = _copy(saved, "roberta", tmp_path, drop=["tokenizer.json"])
    if damage == "vocab.txt without [UNK]":
        (folder / "vocab.txt").write_text("[PAD]\n[CLS]\n[SEP]\n[MASK]\nhello\n", encoding="utf-8")
    elif damage == "vocab.txt in Latin-1":
        (folder / "vocab.txt").write_bytes("[PAD]\n[UNK]\ncafé\n".encode("latin-1"))
    elif damage == "merges.txt in Latin-1":
        (folder / "merges.txt").write_bytes("#version: 0.2\né a\n".encode("latin-1"))
    elif damage == "merges.txt line of three tokens":
        (folder / "merges.txt").write_text("#version: 0.2\nĠ t\na b c\n", encoding="utf-8")
    elif damage == "merges.txt merging tokens vocab.json lacks":
        (folder / "merges.txt").write_text("#version: 0.2\nzzqq yyxx\n", encoding="utf-8")
    elif damage == "vocab.json ids that are not numbers":
        (folder / "vocab.json").write_text(json.dumps({"a": "x"}))
    else:
        _edit_config(folder, do_lower_case="false")
    with pytest.raises(ValueError, match=match):
        load_tokenizer(folder)


@pytest.mark.parametrize("settings", [{"do_lower_case": False}, {"strip_accents": False},
                                      {"tokenize_chinese_chars": False}])
def test_bert_settings_of_tokenizer_config_apply_over_tokenizer_json_as_in_transformers(saved, tmp_path, settings):
    """transformers rebuilds BERT's normaliser from tokenizer_config.json; we followed tokenizer.json alone,
    so the same files gave other ids than AutoTokenizer's when the two disagreed."""
    transformers = pytest.importorskip("transformers")
    folder = _copy(saved, "wordpiece", tmp_path)
    _edit_config(folder, **settings)
    ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"], text
    assert ours.do_lower_case == settings.get("do_lower_case", True)


def _config_without(folder, *keys, **settings):
    config = {k: v for k, v in json.loads((folder / "tokenizer_config.json").read_text()).items() if k not in keys}
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, **settings}))


def test_a_config_naming_one_bert_setting_gives_the_others_berts_defaults_as_in_transformers(saved, tmp_path):
    """The settings the config leaves out kept tokenizer.json's values (strip_accents false: "café" kept its
    accent); transformers takes BertTokenizer's defaults for them (strip_accents None: with lower-casing, off)."""
    transformers = pytest.importorskip("transformers")
    folder = _copy(saved, "wordpiece", tmp_path)
    backend = Backend.from_file(str(folder / "tokenizer.json"))
    backend.normalizer = __import__("tokenizers").normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    backend.save(str(folder / "tokenizer.json"))
    _config_without(folder, "do_lower_case", "strip_accents", "tokenize_chinese_chars", do_lower_case=True)
    ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    for text in [*TEXTS, "Café résumé NAÏVE"]:
        assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"], text


@pytest.mark.parametrize(("name", "settings"), [("wordpiece", {"do_lower_case": False}),
                                                ("roberta", {"add_prefix_space": True})])
@pytest.mark.parametrize("generic", ["PreTrainedTokenizerFast", "TokenizersBackend"])
def test_under_a_generic_tokenizer_class_tokenizer_json_is_read_as_it_is(saved, tmp_path, name, settings, generic):
    """transformers' generic classes apply no setting of tokenizer_config.json over tokenizer.json; we did
    (all [UNK] for a lower-case vocabulary read cased, a leading Ġ token for add_prefix_space)."""
    transformers = pytest.importorskip("transformers")
    folder = _copy(saved, name, tmp_path)
    _edit_config(folder, tokenizer_class=generic, **settings)
    ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"], text
    assert ours.encode("Once upon") == load_tokenizer(saved / name).encode("Once upon")


@pytest.mark.parametrize("name", ["roberta", "gpt2"])
@pytest.mark.parametrize("keep_tokenizer_json", [True, False])
def test_add_prefix_space_of_tokenizer_config_applies_and_saves(saved, tmp_path, name, keep_tokenizer_json):
    """transformers applies add_prefix_space=true (what token-classification RoBERTa checkpoints save) over
    tokenizer.json; we ignored it, and save_pretrained wrote false whatever the pre-tokeniser did."""
    transformers = pytest.importorskip("transformers")
    folder = _copy(saved, name, tmp_path, drop=[] if keep_tokenizer_json else ["tokenizer.json"])
    _edit_config(folder, add_prefix_space=True)
    ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"], text
    assert ours.encode("Once") == ours.encode(" Once")
    ours.save_pretrained(tmp_path / "again")
    for again in (load_tokenizer(tmp_path / "again"), transformers.AutoTokenizer.from_pretrained(tmp_path / "again")):
        assert again.encode("Once", add_special_tokens=False) == ours.encode("Once")


def test_a_gpt2_class_vocab_json_without_tokenizer_json_adds_nothing(saved, tmp_path):
    """A GPT-2-style vocabulary holding <s> and </s> (as frame=False tokenizers do) was framed in <s> ... </s>
    when its directory had vocab.json + merges.txt only, although tokenizer_config.json says GPT2Tokenizer."""
    transformers = pytest.importorskip("transformers")
    folder = _copy(saved, "gpt2", tmp_path, drop=["tokenizer.json"])
    ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    assert ours(TEXTS[0])["input_ids"][0].tolist() == theirs(TEXTS[0])["input_ids"] == ours.encode(TEXTS[0])
    assert ours(TEXTS[0])["input_ids"].tolist() == load_tokenizer(saved / "gpt2")(TEXTS[0])["input_ids"].tolist()
    roberta = load_tokenizer(_copy(saved, "roberta", tmp_path, drop=["tokenizer.json"]))
    assert roberta(TEXTS[0])["input_ids"][0, 0] == roberta.cls_token_id  # a RoBERTa one is still framed
    # no tokenizer_class: AutoTokenizer goes by the model's config.json, GPT-2's here (it was framed)
    folder = _copy(saved, "gpt2", tmp_path / "no_class", drop=["tokenizer.json"])
    _config_without(folder, "tokenizer_class")
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert load_tokenizer(folder)(TEXTS[0])["input_ids"][0].tolist() == ours.encode(TEXTS[0])


@pytest.mark.parametrize("limit", [0, -5])
def test_a_model_max_length_of_zero_or_less_is_no_limit(saved, tmp_path, limit):
    """-5 made every call fail with "max_length -5 leaves no room for text", a length the caller never gave."""
    folder = _copy(saved, "wordpiece", tmp_path)
    _edit_config(folder, model_max_length=limit)
    tokenizer = load_tokenizer(folder)
    assert tokenizer.model_max_length is None
    assert tokenizer(LONG)["input_ids"].shape[1] == len(tokenizer.encode(LONG)) + 2


def test_a_pair_that_only_first_or_only_second_cannot_fit_is_a_value_error(saved):
    """The tokenizers library raised a bare Exception ("Truncation error: ..."), which no command line catches."""
    tokenizer = load_tokenizer(saved / "wordpiece")
    question, context = "a long question of many many words", "short context"
    with pytest.raises(ValueError, match="its first text, which it does not cut, takes all the room alone"):
        tokenizer([question], [context], max_length=6, truncation="only_second")
    with pytest.raises(ValueError, match="its second text, which it does not cut, takes all the room alone"):
        tokenizer([context], [question], max_length=6, truncation="only_first")
    with pytest.raises(ValueError, match="cuts the second text of a pair and these texts have none"):
        tokenizer([question], max_length=4, truncation="only_second")
    assert tokenizer([question], [context], max_length=20, truncation="only_second")["input_ids"].shape == (1, 20)


def test_cjk_extensions_c_to_e_are_chinese_as_for_bert():
    """chinese.is_cjk left out extensions C to E, which BERT's normaliser makes words of their own: a sentence
    of them was joined to the next with a space, and has_cjk kept jieba's word rule away from them."""
    from minibert.data.chinese import has_cjk, is_cjk
    from minibert.data.corpus import join_sentences

    for char in ("\U0002a700", "\U0002b740", "\U0002b820", "\U0002ceaf"):
        assert is_cjk(char) and has_cjk(f"a{char}"), hex(ord(char))
    assert join_sentences(["\U0002a700\U0002a701", "\U0002a702"]) == "\U0002a700\U0002a701\U0002a702"
    assert not is_cjk("\U0002a6e0") and not is_cjk("\U0002ceb0") and not is_cjk("a")


def test_a_file_that_is_no_tokenizer_file_is_named_as_such(saved, tmp_path):
    """tokenizer_config.json (or config.json) given as the path said "no tokenizer found" in a directory that
    holds a tokenizer.json; the tokenizer's own files still load as before."""
    folder = _copy(saved, "wordpiece", tmp_path)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        with pytest.raises(ValueError, match=f"{name} is not a tokenizer file .*or the directory that holds them"):
            load_tokenizer(folder / name)
    assert load_tokenizer(folder / "tokenizer.json").encode(LONG) == load_tokenizer(folder / "vocab.txt").encode(LONG)

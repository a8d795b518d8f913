"""Tokenizers: training, saving in Hugging Face's format, loading each layout, parity with
transformers' BertTokenizerFast / RobertaTokenizerFast built from the same vocabulary files."""

import shutil

import pytest
import torch

from minibert.data import load_corpus
from minibert.tokenizer import Tokenizer, load_tokenizer, train_tokenizer

TEXTS = ["Fair is foul, and foul is fair: hover through the fog and filthy air.",
         "When shall we three meet again? In thunder, lightning, or in rain?",
         "Naïve café owners said: it's 12.5% (roughly) — über-cool!", "騎馬出皇都，聞說埋冤在路隅。"]
PAIRS = ["Upon the heath.", "There to meet with Macbeth, unmatched-wordpieces xylophonic.", "x", "思君猶似掌中珠。"]


@pytest.fixture(scope="module")
def corpus_texts():
    return [" ".join(doc) for doc in load_corpus()[::12]]  # every 12th scene, about 300 KB


@pytest.fixture(scope="module")
def wordpiece(corpus_texts):
    return train_tokenizer(corpus_texts, kind="wordpiece", vocab_size=1500)


@pytest.fixture(scope="module")
def bpe(corpus_texts):
    return train_tokenizer(corpus_texts, kind="bytelevel_bpe", vocab_size=1500)


def test_wordpiece_specials_and_words(wordpiece):
    tok = wordpiece
    assert tok.kind == "wordpiece" and tok.vocab_size == 1500
    assert tok.convert_ids_to_tokens([tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
                                      tok.mask_token_id]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    batch = tok(TEXTS[:2], PAIRS[:2])
    ids, types = batch["input_ids"], batch["token_type_ids"]
    assert ids[0, 0] == tok.cls_token_id and (ids == tok.sep_token_id).sum() == 4
    first_sep = (ids[0] == tok.sep_token_id).nonzero()[0, 0]
    real = batch["attention_mask"][0] == 1
    assert types[0, : first_sep + 1].eq(0).all() and types[0, first_sep + 1 :][real[first_sep + 1 :]].eq(1).all()
    assert tok.decode(tok.encode("fair is foul")) == "fair is foul"


def test_padding_and_truncation(wordpiece):
    batch = wordpiece(TEXTS, max_length=12, padding="max_length")
    assert batch["input_ids"].shape == (4, 12)
    assert (batch["attention_mask"].sum(1) <= 12).all()
    short = wordpiece(["a", "a b c d e f"])
    assert short["input_ids"].shape[1] == short["attention_mask"].sum(1).max()
    assert (short["input_ids"][short["attention_mask"] == 0] == wordpiece.pad_token_id).all()
    pair = wordpiece([TEXTS[0]], [TEXTS[1]], max_length=16)
    assert pair["input_ids"].shape == (1, 16) and (pair["input_ids"] == wordpiece.sep_token_id).sum() == 2


@pytest.mark.parametrize("kind", ["wordpiece", "bytelevel_bpe"])
def test_save_load_round_trip_and_autotokenizer(kind, wordpiece, bpe, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = wordpiece if kind == "wordpiece" else bpe
    tok.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= names
    assert ("vocab.txt" in names) if kind == "wordpiece" else {"vocab.json", "merges.txt"} <= names
    ours = load_tokenizer(tmp_path)
    assert ours.special_tokens == tok.special_tokens and ours.kind == kind
    expected = tok(TEXTS, PAIRS)
    for key, value in ours(TEXTS, PAIRS).items():
        torch.testing.assert_close(value, expected[key])
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    theirs = hf(TEXTS, PAIRS, padding=True, return_tensors="pt")
    torch.testing.assert_close(theirs["input_ids"], expected["input_ids"])
    torch.testing.assert_close(theirs["attention_mask"], expected["attention_mask"])
    assert hf.mask_token_id == tok.mask_token_id and hf.pad_token_id == tok.pad_token_id
    # texts back, as the README's generation example decodes them: Hugging Face's with skip_special_tokens=True
    assert ours.batch_decode(expected["input_ids"]) == hf.batch_decode(expected["input_ids"], skip_special_tokens=True)


def test_vocab_txt_parity_with_bert_tokenizer_fast(wordpiece, tmp_path):
    transformers = pytest.importorskip("transformers")
    wordpiece.save_pretrained(tmp_path / "full")
    (tmp_path / "vocab").mkdir()
    shutil.copy(tmp_path / "full" / "vocab.txt", tmp_path / "vocab" / "vocab.txt")
    ours = load_tokenizer(tmp_path / "vocab" / "vocab.txt")  # a bare vocab.txt: BERT's defaults
    hf = transformers.BertTokenizerFast.from_pretrained(tmp_path / "vocab")
    for max_length in (None, 20):
        mine = ours(TEXTS, PAIRS, max_length=max_length)
        theirs = hf(TEXTS, PAIRS, padding=True, truncation=max_length is not None, max_length=max_length,
                    return_tensors="pt")
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            torch.testing.assert_close(mine[key], theirs[key])
    for text in TEXTS:
        assert ours.encode(text) == hf.encode(text, add_special_tokens=False)
    hf.save_pretrained(tmp_path / "saved_by_hf")  # and what Hugging Face writes, we read
    again = load_tokenizer(tmp_path / "saved_by_hf")
    assert again.mask_token_id == hf.mask_token_id and again.kind == "wordpiece"
    torch.testing.assert_close(again(TEXTS, PAIRS)["input_ids"], ours(TEXTS, PAIRS)["input_ids"])


def test_vocab_json_merges_parity_with_roberta_tokenizer_fast(bpe, tmp_path):
    transformers = pytest.importorskip("transformers")
    bpe.backend.model.save(str(tmp_path))  # only vocab.json + merges.txt
    ours = load_tokenizer(tmp_path)
    assert ours.kind == "bytelevel_bpe" and ours.mask_token_id == bpe.mask_token_id
    hf = transformers.RobertaTokenizerFast.from_pretrained(tmp_path)
    mine = ours(TEXTS, PAIRS)
    theirs = hf(TEXTS, PAIRS, padding=True, return_tensors="pt")
    torch.testing.assert_close(mine["input_ids"], theirs["input_ids"])
    torch.testing.assert_close(mine["attention_mask"], theirs["attention_mask"])
    assert ours.decode(ours.encode(TEXTS[2])) == TEXTS[2]  # bytes: nothing is unknown


def test_gpt_style_tokenizer_adds_nothing_and_saves_as_gpt2(corpus_texts, tmp_path):
    """frame=False, what pretrain.py trains for GPT-2: a prompt ends where its text ends, not with the </s>
    that separates training documents (a decoder continues after it with a new document)."""
    transformers = pytest.importorskip("transformers")
    gpt = train_tokenizer(corpus_texts, kind="bytelevel_bpe", vocab_size=1500, frame=False)
    assert gpt(TEXTS[0])["input_ids"][0].tolist() == gpt.encode(TEXTS[0])
    gpt.save_pretrained(tmp_path)
    ours = load_tokenizer(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(hf).__name__.startswith("GPT2Tokenizer")
    expected = ours(TEXTS)
    assert gpt.eos_token_id not in expected["input_ids"][expected["attention_mask"].bool()].tolist()
    theirs = hf(TEXTS, padding=True, return_tensors="pt")
    torch.testing.assert_close(theirs["input_ids"], expected["input_ids"])
    torch.testing.assert_close(theirs["attention_mask"], expected["attention_mask"])


def test_bad_input(wordpiece, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no tokenizer found"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        train_tokenizer(["a b c"], kind="sentencepiece")
    with pytest.raises(ValueError, match="empty corpus"):
        train_tokenizer(["", "  "])
    with pytest.raises(ValueError, match="one pair per text"):
        wordpiece(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="padding must be"):
        wordpiece(["a"], padding="longest_first")


def test_wordpiece_training_is_reproducible():
    """The same texts give the same vocabulary and ids every time (tokenizers' own trainer gives
    the "##x" tokens hash-map order ids, huggingface/tokenizers#1794)."""
    texts = [" ".join(d) for d in load_corpus()[:60]]
    vocabs = [train_tokenizer(texts, vocab_size=1500).get_vocab() for _ in range(3)]
    assert vocabs[0] == vocabs[1] == vocabs[2] and len(vocabs[0]) == 1500


def test_wordpiece_on_chinese_reserves_no_continuation_a_cjk_character_cannot_have():
    """The normaliser makes each CJK character a word of its own, so a "##的" can never be used; the
    reproducibility reservation once listed one per character, and half of a Chinese vocabulary was
    such dead entries, more tokens than vocab_size asked for."""
    texts = [" ".join(d) for d in load_corpus("tang_poems")[:400]]
    tokenizer = train_tokenizer(texts, vocab_size=3000)
    vocab = tokenizer.get_vocab()
    cjk = [t for t in vocab if t.startswith("##") and "\u4e00" <= t[2:3] <= "\u9fff"]
    assert cjk == [] and len(vocab) <= 3000
    ids = tokenizer("床前明月光，疑是地上霜。")["input_ids"][0].tolist()
    assert tokenizer.unk_token_id not in ids and len(ids) == 2 + 12  # [CLS], one id per character, [SEP]


def test_segment_ids_come_with_wordpiece_only_as_in_hugging_face(wordpiece, bpe):
    """BERT's tokenizer returns token_type_ids; RoBERTa's, GPT-2's and BART's do not (GPT-2 would look
    the zeros up as token 0 and add it at every position), unless asked for."""
    assert "token_type_ids" in wordpiece(TEXTS[:2])
    assert set(bpe(TEXTS[:2])) == {"input_ids", "attention_mask"}
    assert "token_type_ids" in bpe(TEXTS[:2], return_token_type_ids=True)
    assert "token_type_ids" not in wordpiece(TEXTS[:2], return_token_type_ids=False)


def test_a_batch_call_puts_back_the_backends_own_truncation_and_padding(wordpiece):
    """A tokenizer.json saved with truncation (many on the hub are) keeps it after a batch call."""
    wordpiece.backend.enable_truncation(8)
    try:
        before = wordpiece.backend.truncation
        long_text = " ".join(TEXTS)
        assert len(wordpiece.backend.encode(long_text).ids) == 8
        wordpiece(TEXTS[:2], max_length=32)
        assert wordpiece.backend.truncation == before and wordpiece.backend.padding is None
        assert len(wordpiece.backend.encode(long_text).ids) == 8
    finally:
        wordpiece.backend.no_truncation()


def test_max_length_below_one_or_below_the_special_tokens_is_refused(wordpiece):
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_length must be >= 1"):
            wordpiece(TEXTS[:1], max_length=bad)
    # [CLS] a [SEP] b [SEP]: 3 specials; at max_length 3 the backend would not truncate at all
    with pytest.raises(ValueError, match="the special tokens alone take 3; pass max_length > 3"):
        wordpiece(TEXTS[:1], PAIRS[:1], max_length=3)
    assert wordpiece(TEXTS[:1], PAIRS[:1], max_length=4)["input_ids"].shape == (1, 4)


def test_vocab_txt_alone_follows_tokenizer_config_and_reads_lines_as_hugging_face(tmp_path):
    """strip_accents and tokenize_chinese_chars in tokenizer_config.json were ignored (other ids than
    BertTokenizerFast's), and a token holding U+2028 or U+0085 shifted every later id (splitlines)."""
    import json

    transformers = pytest.importorskip("transformers")
    base = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "café", "résumé", "cafe", "resume", "北", "京", "北京",
            "hello", "a\u2028b", "world", "x\x85y", "last"]
    for n, settings in enumerate(({"strip_accents": False}, {"tokenize_chinese_chars": False}, {})):
        folder = tmp_path / str(n)
        folder.mkdir()
        (folder / "vocab.txt").write_text("".join(t + "\n" for t in base), encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                                  "do_lower_case": True, **settings}))
        ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
        assert ours.vocab_size == len(theirs) == len(base)
        for text in ("Café résumé", "北京 hello", "hello world last"):
            assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"], (settings, text)


def test_padding_to_a_max_length_a_text_passes_says_to_truncate(wordpiece):
    with pytest.raises(ValueError, match="leaves texts longer than it; pass truncation=True"):
        wordpiece(["a long text of many words indeed", "short"], padding="max_length", max_length=4, truncation=False)


def test_a_saved_tokenizer_keeps_its_normaliser_for_hugging_face(tmp_path):
    """save_pretrained wrote do_lower_case only, and only when the source named it; transformers
    rebuilds BERT's normaliser from these keys (not from tokenizer.json), so a re-saved tokenizer with
    strip_accents False / tokenize_chinese_chars False, or a cased one, read other ids there."""
    import json

    transformers = pytest.importorskip("transformers")
    base = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "café", "cafe", "北", "京", "北京", "hello", "Hello"]
    for n, settings in enumerate(({"do_lower_case": True, "strip_accents": False, "tokenize_chinese_chars": False},
                                  {"do_lower_case": False})):
        source, saved = tmp_path / f"source{n}", tmp_path / f"saved{n}"
        source.mkdir()
        (source / "vocab.txt").write_text("".join(t + "\n" for t in base), encoding="utf-8")
        (source / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", **settings}))
        load_tokenizer(source).save_pretrained(saved)
        (saved / "tokenizer_config.json").write_text(  # as a tokenizer.json-only source would leave it: no
            json.dumps({k: v for k, v in json.loads((saved / "tokenizer_config.json").read_text()).items()  # BERT keys
                        if n == 0 or k not in ("do_lower_case", "strip_accents", "tokenize_chinese_chars")}))
        load_tokenizer(saved).save_pretrained(saved)
        ours, theirs = load_tokenizer(saved), transformers.AutoTokenizer.from_pretrained(saved)
        for text in ("Café 北京", "Hello hello"):
            assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"], (settings, text)
        assert ours.encode("Café 北京" if n == 0 else "Hello") == load_tokenizer(source).encode(
            "Café 北京" if n == 0 else "Hello")


def test_truncation_strategies_are_honoured_or_refused(wordpiece):
    """Any string was taken as True and cut by longest_first: only_second cut the question."""
    question, context = "who is the king of scotland and of england", "the king of scotland is a man of words"
    q, c = wordpiece.encode(question), wordpiece.encode(context)
    room = len(q) + 3 + len(c) // 2  # [CLS] q [SEP] c [SEP] with half the context
    second = wordpiece([question], [context], max_length=room, truncation="only_second")["input_ids"][0].tolist()
    assert second == [wordpiece.cls_token_id, *q, wordpiece.sep_token_id, *c[:len(c) // 2], wordpiece.sep_token_id]
    longest = wordpiece([question], [context], max_length=room, truncation=True)["input_ids"][0].tolist()
    assert longest[1:1 + len(q)] != q  # longest_first cuts the question too
    with pytest.raises(ValueError, match="truncation must be True, False, 'longest_first'"):
        wordpiece(["a"], truncation="only_third")
    # "do_not_truncate" is False: no "leaves no room for text" refusal (it raised where False returns)
    assert wordpiece(["a b"], max_length=2, truncation="do_not_truncate")["input_ids"].tolist() == \
        wordpiece(["a b"], max_length=2, truncation=False)["input_ids"].tolist()


def test_hugging_faces_argument_names_are_taken(corpus_texts):
    """tok(text, return_tensors="pt") and text_pair= (what a Hugging Face user types) raised a TypeError."""
    tok = train_tokenizer(corpus_texts[:50], kind="wordpiece", vocab_size=200)
    plain = tok(["a king"], ["a queen"])
    for name, value in tok(["a king"], text_pair=["a queen"], return_tensors="pt").items():
        assert torch.equal(value, plain[name]), name
    with pytest.raises(ValueError, match="text_pair and text_pairs are one argument"):
        tok(["a"], ["b"], text_pair=["c"])
    with pytest.raises(ValueError, match=r"return_tensors='np': minibert's tokenizer returns torch tensors only"):
        tok(["a"], return_tensors="np")


def test_no_pad_token_is_needed_while_nothing_is_padded(corpus_texts, tmp_path):
    """GPT-2 has no pad token: the README's one-text call raised "a batch cannot be padded"."""
    import json

    trained = train_tokenizer(corpus_texts[:50], kind="bytelevel_bpe", vocab_size=400, frame=False)
    gpt = Tokenizer(trained.backend, {k: v for k, v in trained.special_tokens.items() if k != "pad_token"},
                    trained.kind)  # GPT-2's own files name no pad token
    assert gpt.pad_token_id is None
    assert gpt(["Once upon a time"])["input_ids"].tolist() == [gpt.encode("Once upon a time")]
    with pytest.raises(ValueError, match="no pad token, so texts of different lengths cannot be padded"):
        gpt(["Once upon a time", "Once"])
    with pytest.raises(ValueError, match="no pad token, so it cannot pad to max_length"):  # short rows came back
        gpt(["Once"], padding="max_length", max_length=8)
    # the fix the messages name, as with Hugging Face's tokenizers (the property had no setter)
    with pytest.raises(ValueError, match="'nope' is not in this tokenizer's vocabulary, so it cannot be its pad_token"):
        gpt.pad_token = "nope"
    gpt.pad_token = gpt.eos_token
    batch = gpt(["Once upon a time", "Once"], padding_side="left")
    assert gpt.pad_token_id == gpt.eos_token_id and batch["input_ids"][1, 0] == gpt.eos_token_id
    long, short = len(gpt.encode("Once upon a time")), len(gpt.encode("Once"))
    assert batch["attention_mask"].tolist() == [[1] * long, [0] * (long - short) + [1] * short]
    # an ordinary token as the pad: named only, as Hugging Face's setter does (made special, it became a word
    # of its own and decode skipped it: "nothing interesting" read "noth interest" with "ing")
    word = next(t for t in ("ing", "er", "th") if t in gpt.get_vocab())
    text = "there was nothing interesting in the garden"
    before = gpt.encode(text)
    gpt.pad_token = word
    assert gpt.pad_token_id == gpt.get_vocab()[word]
    assert gpt.encode(text) == before and gpt.decode(before) == gpt.decode(before, skip_special_tokens=False)
    # a config naming only some special tokens: the others keep their family's names (they were lost)
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]))
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "unk_token": "[UNK]"}))
    partial = load_tokenizer(folder)
    assert (partial.pad_token_id, partial.cls_token_id, partial.sep_token_id, partial.mask_token_id) == (0, 2, 3, 4)


def test_a_tokenizer_is_compared_with_the_checkpoints_own_id_by_id(tmp_path):
    """Refused: an id naming another token in the two (the embeddings read by id). Accepted: a word put in
    place of BERT's [unusedN] (its README's way to add words), a vocabulary the checkpoint's extends."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import models

    from minibert.tokenizer import check_tokenizer_fits

    def wordpiece(tokens):
        vocab = {t: i for i, t in enumerate(tokens)}
        return Tokenizer(Backend(models.WordPiece(vocab, unk_token="[UNK]")), {"pad_token": "[PAD]",
                                                                                "unk_token": "[UNK]"}, "wordpiece")

    base = ["[PAD]", "[UNK]", "[unused0]", "king", "queen", "fool"]
    wordpiece(base).save_pretrained(tmp_path / "ckpt")
    config = {"vocab_size": len(base), "pad_token_id": 0}
    for fits in (base, ["[PAD]", "[UNK]", "jester", "king", "queen", "fool"], base[:4]):
        check_tokenizer_fits(wordpiece(fits), config, "--tokenizer_name T", "CKPT", tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"--tokenizer_name T is not the tokenizer saved with CKPT: 2 of its 6 ids "
                                         r"name other tokens \(id 3 is 'queen' in it, 'king' in the checkpoint's\)"):
        check_tokenizer_fits(wordpiece(["[PAD]", "[UNK]", "[unused0]", "queen", "king", "fool"]), config,
                             "--tokenizer_name T", "CKPT", tmp_path / "ckpt")

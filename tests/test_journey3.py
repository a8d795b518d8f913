"""What a third newcomer walk met on the generation, tracer and Chinese paths: evaluate_generation's error named a
--text_column it did not have, train.py --task_type seq2seq without --train_file read the shipped classification
task, the tracer printed byte-level tokens (Chinese above all) as the byte alphabet and drew Chinese labels as empty
boxes, a GPT-2 prompt cut to all its positions left none for --generate, spaces alone were traced as no text, and
the tokenizer lacked Hugging Face's tokenize / convert_tokens_to_string. Each test fails without its fix."""

import ast
import json
import logging
import re
import warnings

import pytest
import torch
import transformers
from test_train_seq2seq import checkpoints, pairs, run, write_jsonl  # noqa: F401 (checkpoints is a fixture)

import minibert
from minibert import inspect as inspect_cli
from minibert import tracing
from minibert.finetune import evaluate_generation
from minibert.finetune.evaluate_generation import evaluate_saved
from minibert.finetuning import FinetuneArguments, check_generation_flags
from minibert.tokenizer import train_tokenizer
from minibert.tracing import plot_attention, plot_hidden_states, trace_generation

CHINESE = ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。", "春眠不覺曉，處處聞啼鳥。"] * 10


# -- evaluate_generation: the columns of another file -----------------------------------------------------------
def test_evaluate_generation_reads_a_file_whose_columns_are_named_otherwise(checkpoints, tmp_path):  # noqa: F811
    """The run's columns were source / target; a file of q / a was refused with "Pass --text_column (the source)",
    a flag evaluate_generation did not have. It has it now, and --target_column, and reads the same examples."""
    run(checkpoints["bart"], tmp_path)
    out = tmp_path / "out"
    renamed = write_jsonl(tmp_path / "qa.jsonl", [{"q": r["source"], "a": r["target"]} for r in pairs(6, seed=1)])
    with pytest.raises(ValueError, match=r"no column 'source'.*Pass --text_column"):
        evaluate_saved(out, validation_file=renamed)
    assert evaluate_generation.main([str(out), "--validation_file", renamed, "--text_column", "q",
                                     "--target_column", "a", "--predictions_file", str(tmp_path / "p.jsonl")]) == 0
    same = evaluate_saved(out, validation_file=str(tmp_path / "dev.jsonl"))
    renamed_metrics = evaluate_saved(out, validation_file=renamed, text_column="q", target_column="a")
    assert {k: renamed_metrics[k] for k in ("loss", "chrf", "exact_match")} == \
        {k: same[k] for k in ("loss", "chrf", "exact_match")}
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == [r["source"] for r in pairs(6, seed=1)]


# -- train.py: a generation task needs its own file ------------------------------------------------------------
@pytest.mark.parametrize("task_type", ["seq2seq", "causal_lm"])
def test_a_generation_task_without_a_train_file_or_with_a_label_column_is_refused(task_type):
    """Without --train_file, a seq2seq run read the shipped genre classification file and failed on its columns
    ("no column 'source'; the columns are ['label', 'play', 'text']"); --label_column was ignored, unsaid."""
    with pytest.raises(ValueError, match=rf"--task_type {task_type} needs --train_file: the default one is the "
                                         r"shipped Shakespeare genre classification task"):
        check_generation_flags(FinetuneArguments(task_type=task_type, target_column="target"))
    with pytest.raises(ValueError, match=r"--label_column names a classification label.*drop --label_column"):
        check_generation_flags(FinetuneArguments(task_type=task_type, target_column="target", train_file="t.jsonl",
                                                 label_column="target"))
    check_generation_flags(FinetuneArguments(task_type=task_type, target_column="target", train_file="t.jsonl"))


# -- the tokenizer: Hugging Face's tokenize and convert_tokens_to_string; readable tokens ------------------------
@pytest.mark.parametrize("kind", ["wordpiece", "bytelevel_bpe"])
def test_tokenize_and_convert_tokens_to_string_are_hugging_faces(kind, tmp_path):
    texts = ["The king sat on his throne.", "A fool, a jest!"] * 10 + CHINESE
    ours = train_tokenizer(texts, kind, vocab_size=300, min_frequency=1)
    ours.save_pretrained(tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text in ["The kings sat, on thrones.", "床前明月光", "a jester's song"]:
        assert ours.tokenize(text) == theirs.tokenize(text)
        assert ours.convert_tokens_to_string(ours.tokenize(text)) == theirs.convert_tokens_to_string(
            theirs.tokenize(text))


def as_bytes(texts: list[str]) -> bytes:
    """token_texts' inverse: each <0xNN> back to its byte."""
    return b"".join(re.sub(rb"<0x([0-9A-F]{2})>", lambda m: bytes.fromhex(m.group(1).decode()), t.encode())
                    for t in texts)


def test_token_texts_decode_byte_level_tokens_and_leave_wordpiece_as_it_is():
    bpe = train_tokenizer(CHINESE + ["the king"] * 10, "bytelevel_bpe", vocab_size=600, min_frequency=1)
    text = "床前明月光 king 霜𠀀"  # (the last character, never seen, stays four byte tokens)
    ids = bpe.encode(text)
    texts = bpe.token_texts(ids)
    assert as_bytes(texts) == text.encode()
    assert "床" in "".join(texts) and " king" in texts  # the alphabet gave 'åºĬ' and 'Ġking'
    assert texts[-4:] == ["<0xF0>", "<0xA0>", "<0x80>", "<0x80>"]  # a piece of a character: its byte
    # added tokens, special or not, are written as text, not in the byte alphabet: shown as added ("café" is in
    # the alphabet, but as the bytes of another text: 'caf\xe9' once read through it; "<new tok>" is not in it)
    bpe.backend.add_tokens(["café", "<new tok>"])
    added = [bpe.convert_tokens_to_ids(t) for t in ("café", "<new tok>", "<s>")]
    assert bpe.token_texts(added) == ["café", "<new tok>", "<s>"]
    wordpiece = train_tokenizer(["the kings sat"] * 10, "wordpiece", vocab_size=60, min_frequency=1)
    ids = wordpiece.encode("the kingss")
    assert wordpiece.token_texts(ids) == wordpiece.convert_ids_to_tokens(ids)


# -- the tracer ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chinese_gpt2(tmp_path_factory):
    """A tiny GPT-2 of 24 positions with a byte-level tokenizer trained on Chinese."""
    path = tmp_path_factory.mktemp("journey3") / "gpt2"
    tokenizer = train_tokenizer(CHINESE, "bytelevel_bpe", vocab_size=600, min_frequency=1)
    torch.manual_seed(0)
    minibert.GPT2LMHeadModel(minibert.GPT2Config(vocab_size=tokenizer.vocab_size, n_embd=16, n_layer=1, n_head=2,
                                                 n_positions=24)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_the_tracer_prints_byte_level_tokens_as_text(chinese_gpt2, capsys):
    """'row 0 tokens' and each generated token were the byte alphabet ('åºĬåīį'); now the characters."""
    assert inspect_cli.main([str(chinese_gpt2), "--text", "床前明月光", "--generate", "1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "row 0 tokens:" in line)
    assert "".join(ast.literal_eval(row.split("row 0 tokens: ", 1)[1])) == "床前明月光"
    assert re.search(r"^step 1 \(one new token, on the cache\) -> token \d+ '", out, re.M)  # shown as its text
    assert "å" not in out and "Ġ" not in out  # the byte alphabet, in the tokens' list or a generated token's text


def test_a_gpt2_prompt_is_cut_to_leave_room_for_generate(chinese_gpt2, capsys):
    """A prompt over the 24 positions was cut to 24, and --generate 3 then refused it ("shorten the prompt")."""
    long = "床前明月光，疑是地上霜。" * 6
    assert inspect_cli.main([str(chinese_gpt2), "--text", long, "--generate", "3"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "cut to 21" in out and "the 21 of the model's 24 positions that --generate 3 leaves" in out
    assert "self-attention cache length after each step: 21, 22, 23, 24" in out


def test_a_generate_of_all_the_positions_is_refused_before_the_prompt_is_cut(chinese_gpt2, capsys):
    """--generate 24 on 24 positions printed "cut to 1" and then refused the prompt; now one error, with the most."""
    assert inspect_cli.main([str(chinese_gpt2), "--text", "床前明月光", "--generate", "24"]) == 1
    out, err = capsys.readouterr()
    assert "cut to" not in out
    assert "--generate 24 steps fill the model's 24 positions and leave none for the prompt; use --generate 23" in err


def test_a_bart_source_keeps_all_its_positions_under_generate(tmp_path, capsys):
    """BART's steps are its decoder's: its source is cut to the encoder's positions, not to fewer."""
    tokenizer = train_tokenizer(CHINESE, "bytelevel_bpe", vocab_size=600, min_frequency=1)
    torch.manual_seed(0)
    minibert.BartForConditionalGeneration(minibert.BartConfig(
        vocab_size=tokenizer.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=24,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert inspect_cli.main([str(tmp_path), "--text", "床前明月光，疑是地上霜。" * 6, "--generate", "3"]) == 0
    out = capsys.readouterr().out
    assert "cut to 24 " in out and "--generate 3 leaves" not in out


def test_spaces_alone_are_refused_as_no_text(capsys, tmp_path):
    """To BERT, "   " is [CLS] [SEP]: a trace of no text ("" was refused already)."""
    wordpiece = train_tokenizer(["the king sat"] * 10, "wordpiece", vocab_size=60, min_frequency=1)
    minibert.BertForMaskedLM(minibert.BertConfig(vocab_size=wordpiece.vocab_size, hidden_size=16, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=24)).save_pretrained(tmp_path)
    wordpiece.save_pretrained(tmp_path)
    assert inspect_cli.main([str(tmp_path), "--text", "   "]) == 1
    assert "--text '   ' gives no token to this tokenizer (spaces alone?)" in capsys.readouterr().err


def test_a_generation_trace_without_a_tokenizer_shows_the_ids_alone():
    """print(trace_generation(...)) wrote "token 16 '16'", as if the token's text were "16"."""
    torch.manual_seed(0)
    model = minibert.GPT2LMHeadModel(minibert.GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2,
                                                         n_positions=16))
    steps = trace_generation(model, torch.tensor([[3, 4, 5]]), max_new_tokens=2)
    token = steps.steps[0].token
    assert f"-> token {token}; cache length" in str(steps)
    assert f"-> token {token} 'x'; cache length" in steps.format(token_text=lambda i: "x")


# -- the pictures: characters the default font lacks -----------------------------------------------------------
def test_labels_the_installed_fonts_lack_are_written_as_code_points_once(monkeypatch, caplog, tmp_path):
    """matplotlib's DejaVu Sans has no Chinese: each label was an empty box and a warning per character. With no
    installed font that has them (this machine's case, forced here), they are labelled U+XXXX, said once."""
    monkeypatch.setattr(tracing, "_PREFERRED_FONTS", ())
    from matplotlib import font_manager
    monkeypatch.setattr(font_manager.fontManager, "ttflist",
                        [f for f in font_manager.fontManager.ttflist if f.name.startswith(("DejaVu", "Last Resort"))])
    tracing._say_no_font.cache_clear()
    with caplog.at_level(logging.WARNING, logger="minibert.tracing"):
        labels, font = tracing._tick_labels(["[CLS]", "床", "##前", "king"])
        tracing._tick_labels(["[CLS]", "床", "##前", "king"])  # the second picture of the same command
    assert labels == ["[CLS]", "U+5E8A", "##U+524D", "king"] and font == {}
    assert caplog.text.count("no installed font has") == 1 and "fontlist-*.json" in caplog.text
    torch.manual_seed(0)
    model = minibert.BertForMaskedLM(minibert.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                                         num_attention_heads=2, intermediate_size=24)).eval()
    inputs = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" was one UserWarning per character
        plot_attention(model, inputs, ["[CLS]", "床", "##前", "[SEP]"], tmp_path / "a.png")
        plot_hidden_states(model, inputs, ["[CLS]", "床", "##前", "[SEP]"], tmp_path / "h.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_installed_font_with_the_characters_is_put_behind_the_default(monkeypatch):
    """Where fonts have them (CJK fonts; here two pretended to), the labels stay the characters, drawn in the first
    of the preferred fonts, in the order preferred (they were tried in alphabetical order)."""
    from matplotlib import font_manager
    default = font_manager.findfont(font_manager.FontProperties())
    covering = {f.fname for f in font_manager.fontManager.ttflist if f.name in ("DejaVu Serif", "DejaVu Sans Mono")}
    real = tracing._font_characters
    monkeypatch.setattr(tracing, "_font_characters",
                        lambda path: frozenset(range(0x30000)) if path in covering else real(path))
    monkeypatch.setattr(tracing, "_PREFERRED_FONTS", ("DejaVu Serif", "DejaVu Sans Mono"))
    labels, font = tracing._tick_labels(["[CLS]", "床", "king"])
    assert labels == ["[CLS]", "床", "king"]
    assert font == {"fontfamily": [font_manager.FontProperties(fname=default).get_name(), "DejaVu Serif"]}

"""What the tracer says about generation and about padding, from a newcomer test (set 12): each --generate step
shows what the token and position embeddings receive and return and the logits it produces (a method, no module)
with the cache length after it; the hidden-states picture names whose states it draws and says the generated
tokens are not in it; a mask's padding count (the batch's) is told from row 0's ids, whose padding is counted
apart; --layer says it counts from 0 and is refused from config.json before the weights load. Tiny random
models, no downloads."""

import re

import pytest
import torch

import minibert
from minibert import inspect as inspect_cli
from minibert.tokenizer import train_tokenizer
from minibert.tracing import plot_hidden_states, trace, trace_generation

TEXTS = ["the cat sat on the mat .", "a dog ran in the park and the cat watched ."] * 10


def gpt2(n_layer: int = 2, vocab_size: int = 61) -> minibert.GPT2LMHeadModel:
    torch.manual_seed(0)
    return minibert.GPT2LMHeadModel(minibert.GPT2Config(vocab_size=vocab_size, n_embd=16, n_layer=n_layer, n_head=2,
                                                        n_positions=40, pad_token_id=0)).eval()


def bart(vocab_size: int = 61) -> minibert.BartForConditionalGeneration:
    """Two encoder layers and one decoder layer: --layer counts the decoder's."""
    torch.manual_seed(0)
    return minibert.BartForConditionalGeneration(minibert.BartConfig(
        vocab_size=vocab_size, d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=40)).eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A GPT-2 (2 layers) and a BART (1 decoder layer), each saved with a byte-level BPE tokenizer."""
    root = tmp_path_factory.mktemp("generate")
    bpe = train_tokenizer(TEXTS, kind="bytelevel_bpe", vocab_size=300, min_frequency=1)
    for name, model in (("gpt2", gpt2(vocab_size=bpe.vocab_size)), ("bart", bart(vocab_size=bpe.vocab_size))):
        model.save_pretrained(root / name)
        bpe.save_pretrained(root / name)
    return root


@pytest.fixture
def titles(monkeypatch):
    """The suptitle of every picture saved (and saved: the title is laid out as drawn)."""
    from matplotlib.figure import Figure
    saved = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *args, **kwargs: (saved.append(fig), save(fig, *args, **kwargs)))
    return saved


# --------------------------------------------------------------------------------------------
# 1. each step: the embeddings' calls, the logits, the cache length after it
# --------------------------------------------------------------------------------------------
def test_each_gpt2_step_shows_wte_wpe_and_the_logits_of_the_last_position():
    """The --generate trace kept only the decoder's call and one layer's attention: wte and wpe were not shown,
    nor the logits (lm_logits is a method, no hook saw it), so whether step 0's logits cover every prompt
    position could not be read."""
    model = gpt2()
    ids = torch.randint(3, 61, (1, 7), generator=torch.Generator().manual_seed(0))
    steps = trace_generation(model, ids, max_new_tokens=3, layer=1)
    for step in steps.steps:
        T = 7 if step.step == 0 else 1
        assert [(c.name, c.input("input").shape, c.outputs[0].shape) for c in step.embeddings] == [
            ("transformer.wte", (1, T), (1, T, 16)), ("transformer.wpe", (1, T), (1, T, 16))]
        position = "0..6" if step.step == 0 else str(6 + step.step)
        assert step.embeddings[1].input("input").note == f"row 0: {position}"
        assert step.logits.kind == "method of GPT2LMHeadModel"
        assert (step.logits.input("h").letters, step.logits.output("logits").letters) == ("(B, E)", "(B, V)")
        assert step.logits.output("logits").shape == (1, 61) and step.logits.output("logits").dtype == torch.float32
    assert steps.steps[0].logits.output("logits").note == "the last of the 7 positions only"
    assert steps.steps[1].logits.output("logits").note == ""  # one position: nothing left out
    lines = str(steps).splitlines()
    step0 = lines[lines.index(next(line for line in lines if line.startswith("step 0 "))):]
    assert step0[0].endswith("; cache length after it: 7")
    assert step0[1].startswith("  transformer (GPT2Model): ")
    assert step0[2].startswith("    transformer.wte (Embedding): input (B, 7) i64 -> (B, 7, E) f32  @ ")
    assert step0[3].startswith("    transformer.wpe (Embedding): input (B, 7) i64 [row 0: 0..6] -> (B, 7, E) f32  @ ")
    assert step0[6].startswith("  lm_logits (method of GPT2LMHeadModel): h (B, E) f32 -> logits (B, V) f32 "
                               "[the last of the 7 positions only]  @ minibert/models/gpt.py:")
    assert step0[7].startswith("step 1 ") and step0[7].endswith("; cache length after it: 8")
    assert "lm_logits" not in vars(model)  # the class's method again once the recording ends


def test_each_bart_step_shows_the_decoders_embeddings_its_position_and_the_logits():
    model = bart()
    source = torch.randint(3, 61, (1, 9), generator=torch.Generator().manual_seed(0))
    steps = trace_generation(model, source, max_new_tokens=4)
    step = steps.steps[3]
    assert [c.name for c in step.embeddings] == [
        "model.decoder.embeddings", "model.shared", "model.decoder.embeddings.embed_positions",
        "model.decoder.embeddings.layernorm_embedding"]  # dropout left out: a few lines per step
    assert "past=3" in step.embeddings[0].inputs
    positions = step.embeddings[2]
    assert positions.input("input").letters == "(1)" and positions.output("").letters == "(1, E)"  # no batch dim
    assert positions.input("input").note == "5: position 3 + the table's offset 2"
    assert step.logits.kind == "method of BartForConditionalGeneration"
    assert step.logits.output("logits").letters == "(B, V)" and steps.steps[0].logits.output("logits").note == ""
    text = str(steps)
    assert re.search(r"^step 3 \(one new token, on the cache\) -> token \d+; cache length after it: self 4, "
                     r"cross 9$", text, re.M)
    assert "      model.decoder.embeddings.embed_positions (Embedding): input (1) i64 [5: position 3 + the table's " \
           "offset 2] -> (1, E) f32" in text
    assert re.search(r"^  lm_logits \(method of BartForConditionalGeneration\): h \(B, E\) f32 -> logits \(B, V\) f32"
                     r"  @ minibert/models/bart.py:\d+$", text, re.M)
    # the encoder's positions, in a plain trace: every row reads the same rows of the table
    tr = trace(model, input_ids=source.expand(2, -1), decoder_input_ids=source[:, :3].expand(2, -1))
    assert tr.find(r"model\.encoder\.embeddings\.embed_positions")[0].input("input").note == \
        "2..10: positions 0..8 + the table's offset 2, for every row"


# --------------------------------------------------------------------------------------------
# 2. whose hidden states the picture draws
# --------------------------------------------------------------------------------------------
def test_the_hidden_states_picture_names_whose_states_and_leaves_out_the_generated_tokens(checkpoints, tmp_path,
                                                                                          titles, capsys):
    """The picture had no title: BART's (the encoder's) could not be told from the decoder's, and after
    --generate nothing said the generated tokens were not in it."""
    for name in ("bart", "gpt2"):
        assert inspect_cli.main([str(checkpoints / name), "--text", "the cat sat", "--generate", "2",
                                 "--hidden_states_png", str(tmp_path / f"{name}.png")]) == 0
    bart_title, gpt2_title = (fig.get_suptitle() for fig in titles)
    assert bart_title.startswith("the encoder's hidden states (over the source text; the decoder's are not drawn), "
                                 "batch row 0")
    assert bart_title.endswith("the 3 generated tokens are not in it")
    assert gpt2_title == "hidden states, batch row 0; one forward pass over the prompt: the 3 generated tokens are " \
                         "not in it"
    for fig in titles:  # the title is inside the picture
        title = next(text for text in fig.texts if text.get_text() == fig.get_suptitle())
        extent = title.get_window_extent()
        assert 0 <= extent.x0 and extent.x1 <= fig.bbox.width
    plot_hidden_states(bart(), {"input_ids": torch.tensor([[0, 5, 6, 2]])}, list("abcd"), tmp_path / "plain.png")
    assert titles[-1].get_suptitle() == "the encoder's hidden states (over the source text; the decoder's are not " \
                                        "drawn), batch row 0"  # without --generate: nothing more
    capsys.readouterr()
    with pytest.raises(SystemExit):
        inspect_cli.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(BART: the encoder's hidden states over the source; the decoder's are not drawn). With --generate: " \
           "one forward pass over the text, without the generated tokens" in help_text


def test_the_attention_picture_after_generate_says_the_generated_tokens_are_not_in_it(checkpoints, tmp_path, titles):
    assert inspect_cli.main([str(checkpoints / "gpt2"), "--text", "the cat sat", "--generate", "1",
                             "--attention_png", str(tmp_path / "a.png")]) == 0
    assert titles[0].get_suptitle().endswith("; one forward pass over the prompt: the 2 generated tokens are not in it")


# --------------------------------------------------------------------------------------------
# 3. padding: the mask's count is the batch's, row 0's ids count its own apart
# --------------------------------------------------------------------------------------------
def test_row_0s_padding_is_counted_apart_and_the_mask_count_is_said_to_be_the_batchs():
    """A padded BERT pair read "[row 0: 5 x 0, 4 x 1, 11 x 0]": its padding (segment 0 from the tokenizer) looked
    like more of segment A, and "[11 padding]" on the mask counted the whole batch without saying so."""
    torch.manual_seed(0)
    model = minibert.BertForPreTraining(minibert.BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
        max_position_embeddings=32)).eval()
    ids = torch.randint(5, 60, (2, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    types = torch.tensor([[0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 1]])
    tr = trace(model, input_ids=ids * mask, attention_mask=mask, token_type_ids=types)
    bert = tr.find("bert")[0]
    assert bert.input("attention_mask").note == "2 padding"  # the batch's: row 1 has none
    assert bert.input("token_type_ids").note == "row 0: 3 x 0, 2 x 1, then 2 padding positions holding 0"
    assert tr.find(r"bert\.embeddings\.position_embeddings")[0].input("input").note == \
        "row 0: 0..4, then 2 padding positions holding 5..6"
    assert tr.notes[1:] == ["a mask's [N padding] counts the whole batch (per row: 2, 0); [row 0: ...] shows row 0 "
                            "alone, its padding positions apart"]
    # one row: its count is row 0's, nothing to tell apart
    assert trace(model, input_ids=ids[:1], attention_mask=mask[:1], token_type_ids=types[:1]).notes[1:] == []


def test_a_left_padded_gpt2_prompt_shows_row_0s_padding_apart_from_its_positions():
    model = gpt2()
    ids = torch.randint(3, 61, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # row 0: 4 real tokens on the right, as inspect pads prompts for generate
    steps = trace_generation(model, ids, mask, max_new_tokens=2)
    step0 = steps.steps[0]
    assert step0.decoder.input("position_ids").note == "row 0: 2 padding positions holding 0, then 0..3"
    assert step0.embeddings[1].input("input").note == "row 0: 2 padding positions holding 0, then 0..3"
    assert steps.steps[1].decoder.input("position_ids").note == "row 0: 4"  # the cached step's one new position
    assert str(steps).endswith("note: a mask's [N padding] counts the whole batch (per row: 2, 0); [row 0: ...] "
                               "shows row 0 alone, its padding positions apart")


# --------------------------------------------------------------------------------------------
# 4. --layer: counted from 0, refused from config.json
# --------------------------------------------------------------------------------------------
def test_layers_help_says_it_counts_from_0_and_up_to_which(capsys):
    with pytest.raises(SystemExit):
        inspect_cli.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--layer LAYER the decoder layer whose cache --generate shows, counted from 0: 0 (the first, the " \
           "default) to the number of decoder layers - 1 (config.json's n_layer for GPT-2, decoder_layers for BART)" \
           in help_text


@pytest.mark.parametrize(("name", "layer", "last"), [("bart", 1, 0), ("gpt2", 2, 1), ("gpt2", -1, 1)])
def test_an_out_of_range_layer_is_refused_before_the_weights_load(checkpoints, capsys, monkeypatch, name, layer, last):
    """config.json gives the decoder's layer count (BART: decoder_layers, not the encoder's 2): the refusal came
    only after the model had loaded."""
    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the layer was refused")
    monkeypatch.setattr(inspect_cli, "load_pretrained", load)
    assert inspect_cli.main([str(checkpoints / name), "--text", "the cat", "--generate", "1",
                             "--layer", str(layer)]) == 1
    assert capsys.readouterr().err == \
        f"python -m minibert.inspect: error: layer {layer} does not exist: the decoder has layers 0 to {last}\n"


def test_the_last_layer_is_accepted(checkpoints, capsys):
    assert inspect_cli.main([str(checkpoints / "bart"), "--text", "the cat", "--generate", "1", "--layer", "0"]) == 0
    assert "model.decoder.layers.0.self_attn (MultiHeadAttention)" in capsys.readouterr().out

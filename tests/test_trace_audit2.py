"""A second audit of the tracer (minibert/tracing.py, python -m minibert.inspect): a module held in two places
(ELECTRA's shared embeddings) is named by the place it ran from, the attention picture of a big grid over a long
text stays a drawable size, a picture path that cannot be written is refused before the model runs, and a text
cut to the model's positions is said to be cut. Tiny random models, no downloads."""

import pytest
import torch
from matplotlib.figure import Figure

import minibert
from minibert import inspect as inspect_cli
from minibert.models.electra import ElectraForPreTraining
from minibert.tokenizer import train_tokenizer
from minibert.tracing import plot_attention, trace

TEXTS = ["the cat sat on the mat .", "a dog ran in the park and the cat watched ."] * 10


def bert_config(**kw) -> minibert.BertConfig:
    return minibert.BertConfig(**{"vocab_size": 60, "hidden_size": 16, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "intermediate_size": 24, "max_position_embeddings": 40,
                                  **kw})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A BERT MLM of 16 positions, saved by minibert with a WordPiece tokenizer."""
    path = tmp_path_factory.mktemp("audit2") / "bert"
    wordpiece = train_tokenizer(TEXTS, kind="wordpiece", vocab_size=100, min_frequency=1)
    torch.manual_seed(0)
    minibert.BertForMaskedLM(bert_config(vocab_size=wordpiece.vocab_size, max_position_embeddings=16)).save_pretrained(
        path)
    wordpiece.save_pretrained(path)
    return path


def module_calls(tr):
    """The calls of modules (not the functions and methods the tracer wraps), in order."""
    return [c for c in tr.calls if not (c.kind == "function" or c.kind.startswith(("function ", "method ")))]


# --------------------------------------------------------------------------------------------
# 1. a module held in two places is named by the place it ran from
# --------------------------------------------------------------------------------------------
def test_electras_shared_embeddings_are_named_by_the_place_they_ran_from():
    """ELECTRA's generator and discriminator share one embeddings module. Its names were read off a dict whose last
    entry won, so the discriminator's own embeddings were listed, under `discriminator`, as
    `generator.embeddings.shared`, and their word embeddings under yet another alias (generator.embeddings.word_
    embeddings) beside `generator.embeddings.shared.token_type_embeddings`: a learner reading the nesting would think
    the discriminator called into the generator."""
    torch.manual_seed(0)
    model = ElectraForPreTraining(bert_config()).eval()
    ids = torch.randint(3, 60, (2, 7), generator=torch.Generator().manual_seed(0))
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]  # one masked position per row: the generator's loss, then the discriminator's pass
    tr = trace(model, input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    stack = []
    for call in module_calls(tr):
        del stack[call.depth:]
        if stack:  # each call is named below the call it ran inside
            assert call.name.startswith(f"{stack[-1].name}." if stack[-1].name else ""), (call.name, stack[-1].name)
        stack.append(call)
    names = [c.name for c in module_calls(tr)]
    assert "discriminator.embeddings" in names and "discriminator.embeddings.word_embeddings" in names
    assert "generator.embeddings.shared" in names and "generator.embeddings.shared.word_embeddings" in names
    assert names.count("generator.embeddings.shared") == 1  # the generator's pass only
    # the same module, so the same records as before: one call each time it ran
    assert len(tr.find(r"(generator\.embeddings\.shared|discriminator\.embeddings)")) == 2


# --------------------------------------------------------------------------------------------
# 2. the attention picture of a big grid over a long text
# --------------------------------------------------------------------------------------------
def test_the_attention_picture_of_many_heads_over_a_long_text_stays_a_drawable_size(monkeypatch, tmp_path):
    """At 0.22 inch a token for every head, bert-base's 12 x 12 heads over 128 tokens asked for a picture of
    33,892 x 33,892 pixels (4.6 GB to draw) and took 48 s to lay out before drawing began. Here 12 heads over
    80 tokens asked for 21,220 pixels across; the grid is now at most 8,100 pixels a side, every k-th token
    labelled where the squares are too small for all of them."""
    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *args, **kwargs: drawn.append(fig))  # laid out, not drawn
    torch.manual_seed(0)
    model = minibert.BertModel(bert_config(hidden_size=24, num_attention_heads=12, num_hidden_layers=2,
                                           max_position_embeddings=80)).eval()
    ids = torch.randint(3, 60, (1, 80), generator=torch.Generator().manual_seed(0))
    tokens = [f"t{i}" for i in range(80)]
    plot_attention(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, tokens, tmp_path / "a.png")
    (fig,) = drawn
    width, height = fig.get_size_inches() * 100  # pixels at the dpi plot_attention saves with
    assert width <= 8100 and height <= 8100, (width, height)
    axes = [ax for ax in fig.axes if ax.get_title().startswith("layer")]
    assert len(axes) == 2 * 12  # layers x heads, as before
    bottom_left = next(ax for ax in axes if ax.get_title() == "layer 1 head 0")
    labels = [t.get_text() for t in bottom_left.get_xticklabels()]
    every = int(labels[1][1:])  # t0, t2, t4, ...: every k-th token, in order, from the first
    assert every > 1 and labels == tokens[::every]
    assert [t.get_text() for t in bottom_left.get_yticklabels()] == labels


def test_a_small_attention_picture_keeps_its_size_and_every_label(monkeypatch, tmp_path):
    """The cap leaves the pictures it need not touch as they were: 0.22 inch a token, every token labelled."""
    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *args, **kwargs: drawn.append(fig))
    torch.manual_seed(0)
    model = minibert.BertModel(bert_config(num_hidden_layers=2)).eval()
    ids = torch.randint(3, 60, (1, 15), generator=torch.Generator().manual_seed(0))
    tokens = [f"t{i}" for i in range(15)]
    plot_attention(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, tokens, tmp_path / "a.png")
    (fig,) = drawn
    torch.testing.assert_close(torch.tensor(fig.get_size_inches().tolist(), dtype=torch.float64),
                               torch.tensor([0.22 * 15 * 2 + 1, 0.22 * 15 * 2 + 1], dtype=torch.float64),
                               rtol=0, atol=1e-9)
    bottom_left = next(ax for ax in fig.axes if ax.get_title() == "layer 1 head 0")
    assert [t.get_text() for t in bottom_left.get_xticklabels()] == tokens


# --------------------------------------------------------------------------------------------
# 3. picture paths that cannot be written: refused before the model runs
# --------------------------------------------------------------------------------------------
def test_a_picture_path_ending_in_a_slash_is_refused_before_the_model_runs(checkpoint, tmp_path, capsys):
    """`--attention_png pics/` (a directory not yet made) passed the checks, since Path() drops the slash; the
    whole trace was printed and then "[Errno 21] Is a directory: 'pics/'" came, about a directory that does not
    exist."""
    folder = f"{tmp_path / 'pics'}/"
    assert inspect_cli.main([str(checkpoint), "--text", "the cat", "--attention_png", folder]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # nothing traced
    assert "--attention_png" in err and "names a directory, which does not exist" in err
    assert f"{tmp_path / 'pics' / 'attention.png'}" in err
    assert not (tmp_path / "pics").exists()


def test_an_unwritable_picture_path_is_refused_before_the_model_runs(checkpoint, tmp_path, capsys):
    """A path in a directory that takes no new file (/proc refuses one even to root, as a read-only directory
    refuses a user) passed the checks; the error came only after the model had loaded and the trace was printed.
    The other picture's path, written to find out, is not left behind as an empty file."""
    fine = tmp_path / "attention.png"
    argv = [str(checkpoint), "--text", "the cat", "--attention_png", str(fine), "--hidden_states_png", "/proc/x.png"]
    assert inspect_cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "--hidden_states_png /proc/x.png cannot be written" in err and "elsewhere" in err
    assert not fine.exists()


def test_an_earlier_picture_is_kept_as_it_is_until_it_is_replaced(checkpoint, tmp_path, capsys):
    """Checking that a path can be written does not change the picture already there; the run then replaces it."""
    earlier = tmp_path / "attention.png"
    earlier.write_bytes(b"\x89PNG\r\n\x1a\n" + b"earlier")
    assert inspect_cli.main([str(checkpoint), "--text", "the cat", "--attention_png", str(earlier),
                             "--hidden_states_png", "/proc/x.png"]) == 1
    assert earlier.read_bytes() == b"\x89PNG\r\n\x1a\n" + b"earlier"
    assert inspect_cli.main([str(checkpoint), "--text", "the cat", "--max_depth", "0",
                             "--attention_png", str(earlier)]) == 0
    assert earlier.read_bytes() != b"\x89PNG\r\n\x1a\n" + b"earlier"
    capsys.readouterr()


# --------------------------------------------------------------------------------------------
# 4. a text longer than the positions
# --------------------------------------------------------------------------------------------
def test_a_text_cut_to_the_positions_is_said_to_be_cut(checkpoint, capsys):
    """A text longer than the model's positions was cut without a word: the trace and the pictures showed its first
    16 tokens as if they were the whole text."""
    long = " ".join(["the cat sat on the mat ."] * 4)  # 28 words: 30 tokens with [CLS] and [SEP]
    assert inspect_cli.main([str(checkpoint), "--text", "a dog", "--text", long, "--max_depth", "0"]) == 0
    out = capsys.readouterr().out
    assert ("note: --text number 2 is 30 tokens, more than the model's 16 positions: cut to 16 (the rest is not "
            "traced); shorten it to trace all of it") in out
    assert "number 1" not in out  # the short one is whole
    assert "shapes: B=2 batch, T=16 tokens" in out
    assert inspect_cli.main([str(checkpoint), "--text", "a dog", "--text_pair", long, "--max_depth", "0"]) == 0
    assert "note: --text and its --text_pair are 33 tokens" in capsys.readouterr().out
    assert inspect_cli.main([str(checkpoint), "--text", "a dog", "--max_depth", "0"]) == 0
    assert "note: --text" not in capsys.readouterr().out


@pytest.mark.parametrize("generate", [[], ["--generate", "1"]])
def test_several_texts_on_a_gpt2_tokenizer_without_a_pad_token_are_padded_with_its_end_of_text(
        tmp_path, capsys, generate):
    """GPT-2's own tokenizer has no pad token: two --text failed with the tokenizer's Python advice
    (`tok.pad_token = tok.eos_token`), which a command-line user cannot follow. The batch is now padded with
    the end-of-text token, hidden by the mask, and a note says so."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    eos = "<|endoftext|>"
    tokenizer = transformers.GPT2TokenizerFast(tokenizer_object=bpe, bos_token=eos, eos_token=eos, unk_token=eos)
    tokenizer.save_pretrained(tmp_path)
    torch.manual_seed(0)
    minibert.GPT2LMHeadModel(minibert.GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2,
                                                 n_positions=40)).save_pretrained(tmp_path)
    code = inspect_cli.main([str(tmp_path), "--text", "the cat", "--text", "a dog ran in the park", *generate])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "note: this tokenizer has no pad token: the texts are padded with its end-of-text token" in out
    assert "[4 padding]" in out  # the mask hides the end-of-text tokens that pad row 0

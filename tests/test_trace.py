"""The tracer (minibert/tracing.py, python -m minibert.inspect): traced shapes are the real ones,
attention rows sum to 1 over real tokens, the pictures are PNG files, and every family works,
including checkpoints saved by Hugging Face. Tiny random models, no downloads."""

import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

import minibert
from minibert import inspect as inspect_cli
from minibert.nn import attention
from minibert.nn.feed_forward import ACTIVATIONS
from minibert.tokenizer import train_tokenizer
from minibert.tracing import attention_maps, plot_attention, plot_hidden_states, trace_generation

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLAIN_ATTEND_CODE = attention.attend.__code__  # before any trace
TEXTS = ["the cat sat on the mat .", "a dog ran in the park and the cat watched .",
         "the quick brown fox jumps over the lazy dog"] * 10


def bert_config(**kw):
    return minibert.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=24, max_position_embeddings=32, **kw)


MODELS = {
    "bert_mlm": lambda: minibert.BertForMaskedLM(bert_config()),
    "bert_pretraining": lambda: minibert.BertForPreTraining(bert_config()),
    "roberta_cls": lambda: minibert.RobertaForSequenceClassification(minibert.RobertaConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
        max_position_embeddings=40, num_labels=3)),
    "gpt2": lambda: minibert.GPT2LMHeadModel(minibert.GPT2Config(vocab_size=60, n_embd=16, n_layer=2, n_head=2,
                                                                 n_positions=32, pad_token_id=0)),
    "bart": lambda: minibert.BartForConditionalGeneration(minibert.BartConfig(
        vocab_size=60, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=32)),
}


def batch(name: str) -> dict:
    """Two rows, the second padded, so masks have work to do (BART and RoBERTa pad with id 1)."""
    pad = 1 if name in ("bart", "roberta_cls") else 0
    ids = torch.randint(3, 60, (2, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    ids[1, 4:] = pad
    if name == "bart":
        ids[:, 3] = 2  # BART's eos, once per row
    return {"input_ids": ids, "attention_mask": mask}


def expand(letters: str, legend: dict[str, int]) -> tuple[int, ...]:
    """"(B, T, E)" back to numbers with the legend."""
    def size(x: str) -> int:  # "3E": a multiple of a letter's size (GPT-2's fused c_attn)
        return int(x) if x.isdigit() else int(x[:-1]) * legend[x[-1]] if x[:-1].isdigit() else legend[x]

    return tuple(size(x) for x in re.findall(r"\w+", letters))


def all_infos(tr):
    for call in tr.calls:
        for info in call.inputs + call.outputs:
            if not isinstance(info, str):
                yield call, info


@pytest.mark.parametrize("name", list(MODELS))
def test_traced_shapes_are_the_real_shapes(name):
    model = MODELS[name]().eval()
    inputs = batch(name)
    tr = minibert.trace(model, keep_tensors=True, output_hidden_states=True, output_attentions=True, **inputs)
    out = tr.output
    # Every traced shape is the shape of the tensor that went through, and its letters spell it.
    for call, info in all_infos(tr):
        assert info.shape == tuple(info.value.shape), (call.name, info.name)
        assert expand(info.letters, tr.legend) == info.shape, (call.name, info.name, info.letters)
    # Against what the model returns: the whole model, each layer, each attention map.
    root = tr.calls[0]
    assert root.depth == 0 and root.name == "" and root.kind == type(model).__name__
    for field in ("logits", "prediction_logits"):
        if getattr(out, field, None) is not None:
            assert root.output(field).shape == tuple(getattr(out, field).shape)
    hidden = getattr(out, "hidden_states", None) or out.encoder_hidden_states
    attentions = getattr(out, "attentions", None) or out.encoder_attentions
    layers = [c for c in tr.calls if re.fullmatch(r"(\w+\.)?(layers|h|encoder\.layers)\.\d+", c.name)]
    assert len(layers) == len(attentions) == len(hidden) - 1 == 2
    for call, h, probs in zip(layers, hidden[1:], attentions, strict=True):
        assert call.outputs[0].shape == tuple(h.shape)
        assert any(info.shape == tuple(probs.shape) for _, info in all_infos(tr) if info.name == "probs"
                   or info.letters.startswith("(B, H")), call.name
    # attend() is a function, not a module: recorded under the attention module that called it, once per
    # attention call, with the queries, keys and values split into heads (their shapes checked above).
    attends = [c for c in tr.calls if c.kind == "function" and not c.name.endswith(".act")]
    callers = [c for c in tr.calls if c.kind.endswith("Attention")]
    assert len(attends) == len(callers) > 0 and all(c.name.endswith(".attend") for c in attends)
    assert all(c.input("q").letters in ("(B, H, T, D)", "(B, H, S, D)") for c in attends)
    # Nesting: a call's depth is one more than the call that encloses it; hooks and the wrapper are gone.
    assert all(b.depth <= a.depth + 1 for a, b in zip(tr.calls, tr.calls[1:], strict=False))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    # (nn/attention.py itself is one of the modules whose `attend` is wrapped: it must get the function
    # back too, or every later call in the process runs through a stale recorder)
    assert attention.attend.__qualname__ == "attend" and attention.attend.__code__ is PLAIN_ATTEND_CODE
    assert all(getattr(m, "attend", attention.attend) is attention.attend
               for n, m in list(sys.modules.items()) if n.startswith("minibert."))
    # The feed-forward's activation (a function too) has its line between the two linear layers, on the
    # (.., F) intermediate; afterwards every module holds its plain function again.
    for ffn in [c for c in tr.calls if c.kind == "FeedForward"]:
        inside = [c.name.rsplit(".", 1)[-1] for c in tr.calls if c.name.startswith(ffn.name + ".")]
        assert inside[:2] == ["up", "act"] and "down" in inside[2:], inside
        act = tr.find(re.escape(ffn.name) + r"\.act")[0]
        assert act.kind in ("function gelu", "function gelu_new") and act.inputs[0].letters.endswith("F)")
    assert all(m.act in ACTIVATIONS.values() for m in model.modules() if hasattr(m, "act"))


def test_lines_show_letters_mask_tied_decoder_pooler_and_source():
    model = MODELS["bert_pretraining"]().eval()
    tr = minibert.trace(model, **batch("bert_pretraining"))
    text = str(tr)
    assert text.splitlines()[0].startswith("shapes: B=2 batch, T=7 tokens, E=16 hidden size, H=2 heads, D=8 head dim")
    # The mask attention receives: its shape and what masked keys get added.
    attention = tr.find(r"bert\.layers\.0\.attention")[0]
    keep = attention.input("keep")
    assert keep.letters == "(B, 1, 1, T)" and keep.dtype == torch.bool
    assert f"{torch.finfo(torch.float32).min:.4g}" in keep.note and "3 of 14 masked" in keep.note
    assert "causal" not in keep.note and "every row" not in keep.note  # padding only, one row per text
    # The tied decoder: the MLM head reads the word embedding matrix itself.
    head = tr.find("mlm_head")[0]
    assert head.input("word_embeddings.weight").letters == "(V, E)"
    assert "bert.embeddings.word_embeddings" in head.input("word_embeddings.weight").note
    assert "tied" in text
    # The pooler: [CLS] state (B, T, E) -> (B, E).
    pooler = tr.find(r"bert\.pooler")[0]
    assert pooler.input("hidden_states").letters == "(B, T, E)" and pooler.outputs[0].letters == "(B, E)"
    # ... and its tanh, a function with no Python source (it had no line: the pooler seemed to be a Linear alone)
    assert "bert.pooler.act (function tanh): x (B, E) f32 -> (B, E) f32  @ torch.tanh (built in" in text
    # file:line points at the forward that ran; nesting shows as indentation.
    path, line = attention.source.split(":")
    assert path == "minibert/nn/attention.py"
    assert "def forward" in Path(minibert.__file__).parent.parent.joinpath(path).read_text().splitlines()[int(line) - 1]
    assert tr.find(r"bert\.layers\.0\.attention\.q_proj")[0].source.startswith("torch/nn/modules/linear.py:")
    assert re.search(r"^      bert\.layers\.0\.attention \(MultiHeadAttention\): hidden_states \(B, T, E\) f32",
                     text, re.M)
    # A block returns (h, None): one tensor, written as itself, not as a list of one
    assert re.search(r"^    bert\.layers\.0 \(BertLayer\): .* -> \(B, T, E\) f32  @", text, re.M)
    # A dropout's p, which its class name does not say (BERT's activation dropout is there, and never drops).
    assert "bert.layers.0.ffn.dropout (Dropout p=0.1): input (B, T, E)" in text
    assert "bert.layers.0.ffn.activation_dropout (Dropout p=0.0): input (B, T, F)" in text


def test_the_tied_output_note_names_the_bias_each_family_has():
    """BERT's LM head adds its own bias, BART a final_logits_bias buffer, GPT-2 nothing."""
    notes = {name: minibert.trace(MODELS[name]().eval(), **batch(name)).notes for name in ("bert_pretraining",
                                                                                           "gpt2", "bart")}
    assert "@ bert.embeddings.word_embeddings.weight^T (V, E) + mlm_head.bias (V) f32," in notes["bert_pretraining"][0]
    assert "@ transformer.wte.weight^T (V, E) (no bias), so" in notes["gpt2"][0]
    # BART's bias is a (1, V) buffer: it had been written "(V)", as if it were a parameter like BERT's
    assert "@ model.shared.weight^T (V, E) + final_logits_bias (1, V) f32 buffer," in notes["bart"][0]


def test_attend_shows_the_dropout_on_the_probabilities_and_whether_it_is_on():
    """The dropout on attention probabilities happens inside attend, so no Dropout line showed it: a
    learner listing a block's dropouts from the trace missed it."""
    model = MODELS["bert_mlm"]()  # BERT's default attention_probs_dropout_prob, 0.1
    line = next(c.line() for c in minibert.trace(model.eval(), **batch("bert_mlm")).calls if c.name.endswith("attend"))
    assert "implementation=sdpa, probs dropout p=0.1 (off: eval mode) ->" in line
    line = next(c.line() for c in minibert.trace(model.train(), **batch("bert_mlm")).calls if c.name.endswith("attend"))
    assert "probs dropout p=0.1 ->" in line


def test_gpt2_upcast_attention_still_goes_through_attend():
    """reorder_and_upcast_attn had its own path in gpt.py, which the tracer's attend wrapper never saw: no q/k/v,
    mask or dropout line in any block (and none per generation step)."""
    model = minibert.GPT2LMHeadModel(minibert.GPT2Config(vocab_size=60, n_embd=16, n_layer=2, n_head=2, n_positions=32,
                                                         pad_token_id=0, reorder_and_upcast_attn=True,
                                                         attn_implementation="eager")).eval()
    tr = minibert.trace(model, **batch("gpt2"))
    assert len(tr.find(r"transformer\.h\.\d\.attn\.attend")) == 2
    steps = trace_generation(model, batch("gpt2")["input_ids"][:1], max_new_tokens=2, layer=1)
    assert all(any(call.name.endswith("attend") for call in step.attention) for step in steps.steps)


def test_bart_decoder_source_mask_says_how_much_padding():
    text = str(minibert.trace(MODELS["bart"]().eval(), **batch("bart")))
    assert re.search(r"model\.decoder \(BartDecoder\): .*memory_attention_mask \(B, S\) i64 \[3 padding\]", text)


def test_bart_letters_tell_source_from_target():
    model = MODELS["bart"]().eval()
    inputs = batch("bart")
    tr = minibert.trace(model, decoder_input_ids=inputs["input_ids"][:, :5], **inputs)
    assert tr.legend["S"] == 7 and tr.legend["T"] == 5
    assert tr.find(r"model\.encoder")[0].outputs[0].letters == "(B, S, E)"
    assert tr.find(r"model\.decoder")[0].outputs[0].letters == "(B, T, E)"
    cross = tr.find(r"model\.decoder\.layers\.0\.encoder_attn")[0]
    assert cross.input("key_value_states").letters == "(B, S, E)"
    assert cross.input("keep").letters == "(B, 1, 1, S)"
    # the decoder's own mask is causal (T = 5: 10 of 25 masked) and, with no decoder padding, one (T, T)
    # mask serves every row of the batch
    own = tr.find(r"model\.decoder\.layers\.0\.self_attn")[0].input("keep")
    assert own.letters == "(1, 1, T, T)"
    assert own.note.startswith("causal: 10 of 25 masked, the same for every row of the batch: ")
    projections = {n: tr.find(rf"model\.decoder\.layers\.0\.encoder_attn\.{n}")[0] for n in ("q_proj", "k_proj")}
    assert projections["q_proj"].input("input").letters == "(B, T, E)"
    assert projections["k_proj"].input("input").letters == "(B, S, E)"  # the encoder's output, projected
    # inside it, attend(): target queries over source keys and values, split into heads
    attend = tr.find(r"model\.decoder\.layers\.0\.encoder_attn\.attend")[0]
    assert [attend.input(n).letters for n in ("q", "k", "v")] == ["(B, H, T, D)", "(B, H, S, D)", "(B, H, S, D)"]
    assert attend.output("output").letters == "(B, H, T, D)" and attend.depth == cross.depth + 1


def test_overlapping_recordings_leave_the_plain_attend_behind():
    """Two traces at once (two threads): whichever ends first, attend is the plain function afterwards."""
    from minibert.tracing import recording, shape_legend

    model = MODELS["bert_mlm"]().eval()
    first, second = recording(model, shape_legend(model)), recording(model, shape_legend(model))
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert attention.attend.__code__ is PLAIN_ATTEND_CODE
    assert all(getattr(m, "attend", attention.attend) is attention.attend
               for n, m in list(sys.modules.items()) if n.startswith("minibert."))


def test_with_one_row_a_causal_mask_still_shows_its_broadcast_batch_dimension():
    """With B = 1 every size-1 dimension could be B; a causal mask is built once, so it shows 1."""
    for name, pattern in (("bart", r"model\.decoder\.layers\.0\.self_attn"), ("gpt2", r"transformer\.h\.0\.attn")):
        inputs = {k: v[:1] for k, v in batch(name).items()}
        tr = minibert.trace(MODELS[name]().eval(), **inputs)
        assert tr.legend["B"] == 1
        keep = tr.find(pattern)[0].input("keep")
        assert keep.letters == "(1, 1, T, T)" and "the same for every row of the batch" in keep.note
        assert tr.find(pattern)[0].input("x" if name == "gpt2" else "hidden_states").letters == "(B, T, E)"


@pytest.mark.parametrize("name", list(MODELS))
def test_attention_rows_sum_to_one_over_real_tokens(name):
    model = MODELS[name]().eval()
    inputs = batch(name)
    probs = attention_maps(model, **inputs)  # (L, B, H, T, T)
    real = inputs["attention_mask"].bool()
    for row in range(2):
        keys = probs[:, row][..., real[row]]  # (L, H, T, T_real)
        sums = keys.sum(-1)[:, :, real[row]]  # rows of the real queries
        torch.testing.assert_close(sums, torch.ones_like(sums))
        assert probs[:, row][..., ~real[row]][:, :, real[row]].abs().sum() == 0  # padding gets nothing


def _is_png(path: Path) -> bool:
    matplotlib_image = pytest.importorskip("matplotlib.image")
    image = matplotlib_image.imread(path)
    return path.read_bytes()[:8] == PNG_SIGNATURE and image.ndim == 3 and min(image.shape[:2]) > 50


@pytest.mark.parametrize("name", ["bert_mlm", "gpt2", "bart"])
def test_pictures_are_png_files(tmp_path, name):
    pytest.importorskip("matplotlib")
    model = MODELS[name]().eval()
    inputs = batch(name)
    tokens = [f"t{i}" for i in inputs["input_ids"][1].tolist()]
    plot_attention(model, inputs, tokens, tmp_path / "attention.png", row=1)
    plot_hidden_states(model, inputs, tokens, tmp_path / "hidden.png", row=1)
    assert _is_png(tmp_path / "attention.png") and _is_png(tmp_path / "hidden.png")


def test_the_attention_picture_names_its_attention_and_has_a_colour_scale(monkeypatch, tmp_path):
    """BART's picture (the encoder's self-attention) could not be told from the cross-attention, and no
    picture showed the scale its colours stand for."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *args, **kwargs: saved.append(fig))
    for name in ("bert_mlm", "gpt2", "bart"):
        inputs = batch(name)
        plot_attention(MODELS[name]().eval(), inputs, ["t"] * inputs["input_ids"].size(1), tmp_path / "a.png", row=0)
    titles = [fig.get_suptitle() for fig in saved]
    assert [title.split(" probabilities")[0] for title in titles] == [
        "self-attention", "causal self-attention", "the encoder's self-attention"]
    for fig in saved:  # one colour bar (an axis of its own, labelled) beside the layers x heads
        assert [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"] == ["probability"]


def test_generation_cache_grows_by_one_per_step():
    model = MODELS["gpt2"]().eval()
    ids = batch("gpt2")["input_ids"][:1]
    steps = trace_generation(model, ids, max_new_tokens=4, layer=1)
    assert steps.cache_lengths("self") == [7, 8, 9, 10]
    assert [s.decoder.inputs[0].shape for s in steps.steps] == [(1, 7), (1, 1), (1, 1), (1, 1)]
    # each step: the layer's attention module, then its `attend` with the queries of the new tokens
    # against every cached key
    assert [[call.name for call in s.attention] for s in steps.steps] == \
        [["transformer.h.1.attn", "transformer.h.1.attn.attend"]] * 4
    attends = [s.attention[1] for s in steps.steps]
    assert [(c.inputs[0].shape, c.inputs[1].shape) for c in attends] == \
        [((1, 2, t, 8), (1, 2, n, 8)) for t, n in [(7, 7), (1, 8), (1, 9), (1, 10)]]
    assert steps.sequences.shape == (1, 11)
    assert [s.token for s in steps.steps] == steps.sequences[0, 7:].tolist()
    assert "self-attention cache length after each step: 7, 8, 9, 10" in str(steps)
    # the positions each step's tokens get: the prompt's 0..6, then one new position per step
    assert [s.decoder.input("position_ids").note for s in steps.steps] == \
        ["row 0: 0..6", "row 0: 7", "row 0: 8", "row 0: 9"]


def test_a_static_cache_keeps_its_length_and_says_why():
    model = MODELS["gpt2"]().eval()
    ids = batch("gpt2")["input_ids"][:1]
    steps = trace_generation(model, ids, max_new_tokens=4, cache_implementation="static")
    assert steps.cache_lengths("self") == [11, 11, 11, 11]  # 7 prompt tokens + 4 new, allocated at once
    assert "11, 11, 11, 11 (a static cache: every slot allocated before step 0" in str(steps)
    assert "a static cache" not in str(trace_generation(model, ids, max_new_tokens=4))


def test_under_autocast_the_mask_note_gives_the_value_added_in_bf16():
    model = MODELS["bert_mlm"]().eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tr = minibert.trace(model, **batch("bert_mlm"))
    note = tr.find(r"bert\.layers\.0\.attention\.attend")[0].input("keep").note
    assert note.endswith(f"{torch.finfo(torch.bfloat16).min:.4g} added to their scores"), note


def test_segment_ids_are_shown_as_runs():
    """A sentence pair's token_type_ids: row 0's segments, as the embeddings receive them."""
    inputs = batch("bert_pretraining")
    inputs["token_type_ids"] = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0]])
    tr = minibert.trace(MODELS["bert_pretraining"]().eval(), **inputs)
    assert tr.find(r"bert\.embeddings")[0].input("token_type_ids").note == "row 0: 3 x 0, 4 x 1"


def test_bart_generation_cross_attention_cache_stays_fixed():
    model = MODELS["bart"]().eval()
    inputs = batch("bart")
    steps = trace_generation(model, inputs["input_ids"], inputs["attention_mask"], max_new_tokens=3)
    assert steps.cache_lengths("self") == [1, 2, 3]
    assert steps.cache_lengths("cross") == [7, 7, 7]
    assert steps.encoder is not None and steps.encoder.outputs[0].letters == "(B, S, E)"
    assert "step 0 (the decoder's start token, which fills the cache)" in str(steps)  # the source is not a prompt
    with pytest.raises(ValueError, match="layers 0 to 1"):
        trace_generation(model, inputs["input_ids"], max_new_tokens=1, layer=5)


def test_generation_trace_is_greedy_whatever_the_checkpoint_asks_and_shows_a_one_layer_cache_level():
    """A checkpoint's beams made the rows B * K and its forced eos was shown as the model's choice; a cache
    of one layer was written without its layer level ("[2 x .., 2 x ..]" read as two entries)."""
    config = MODELS["bart"]().config
    config.decoder_layers = 1
    model = minibert.BartForConditionalGeneration(config).eval()
    inputs = batch("bart")
    plain = trace_generation(model, inputs["input_ids"], inputs["attention_mask"], max_new_tokens=3)
    model.generation_config = {"num_beams": 4, "num_return_sequences": 4, "forced_bos_token_id": 0,
                               "forced_eos_token_id": 2, "repetition_penalty": 5.0, "no_repeat_ngram_size": 1,
                               "decoder_start_token_id": config.decoder_start_token_id,
                               "pad_token_id": config.pad_token_id}
    asked = trace_generation(model, inputs["input_ids"], inputs["attention_mask"], max_new_tokens=3)
    torch.testing.assert_close(asked.sequences, plain.sequences, rtol=0, atol=0)
    assert [s.token for s in asked.steps] == [s.token for s in plain.steps]
    assert asked.steps[-1].decoder.outputs[0].shape[0] == 2  # the batch's 2 rows, not 2 x 4 beams
    assert "past_key_values 1 x [2 x (B, H, 3, D) f32, 2 x (B, H, 7, D) f32]" in str(asked)


# --------------------------------------------------------------------------------------------
# The command line, on checkpoints saved by Hugging Face
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_checkpoints(tmp_path_factory):
    """Tiny random Hugging Face models saved by transformers itself, each with a tokenizer:
    BERT with Hugging Face's BertTokenizerFast, GPT-2 and BART with a byte-level BPE."""
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    wordpiece = train_tokenizer(TEXTS, kind="wordpiece", vocab_size=200, min_frequency=1)
    (root / "vocab").mkdir()
    (root / "vocab" / "vocab.txt").write_text("".join(t + "\n" for t in sorted(wordpiece.get_vocab(),
                                                                               key=wordpiece.get_vocab().get)))
    hf_tokenizer = transformers.BertTokenizerFast.from_pretrained(root / "vocab")  # a bare vocab.txt
    bpe = train_tokenizer(TEXTS, kind="bytelevel_bpe", vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    models = {
        "bert": (transformers.BertForPreTraining(transformers.BertConfig(
            vocab_size=len(hf_tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=24, max_position_embeddings=32)), hf_tokenizer),
        "gpt2": (transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=bpe.vocab_size, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=0,
            eos_token_id=2)), bpe),
        "bart": (transformers.BartForConditionalGeneration(transformers.BartConfig(
            vocab_size=bpe.vocab_size, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=32)), bpe),
    }
    for name, (model, tokenizer) in models.items():
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root


def test_command_line_on_a_hugging_face_bert(hf_checkpoints, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    attention, hidden = tmp_path / "attention.png", tmp_path / "hidden.png"
    assert inspect_cli.main([str(hf_checkpoints / "bert"), "--text", "the cat sat on the mat .", "--text", "a dog",
                             "--text_pair", "the dog", "--text_pair", "a cat", "--attention_png", str(attention),
                             "--hidden_states_png", str(hidden)]) == 0
    out = capsys.readouterr().out
    assert "BertForPreTraining from" in out and "'[CLS]', 'the', 'cat'" in out
    assert re.search(r"^  bert \(BertModel\): input_ids \(B, T\) i64, attention_mask \(B, T\) i64 \[\d+ padding\], "
                     r"token_type_ids \(B, T\) i64 \[row 0: \d+ x 0, \d+ x 1\] "
                     r"-> last_hidden_state \(B, T, E\) f32, pooler_output \(B, E\) f32  "
                     r"@ minibert/models/bert.py:\d+$", out, re.M)
    assert "masked: -3.403e+38 added to their scores" in out
    assert _is_png(attention) and _is_png(hidden)


@pytest.mark.parametrize("name", ["gpt2", "bart"])
def test_command_line_generate_on_hugging_face_decoders(hf_checkpoints, capsys, name):
    assert inspect_cli.main([str(hf_checkpoints / name), "--text", "the cat sat", "--generate", "3"]) == 0
    out = capsys.readouterr().out
    lengths = re.search(r"self-attention cache length after each step: (.*)", out).group(1).split(", ")
    assert [int(n) - int(lengths[0]) for n in lengths] == [0, 1, 2, 3]  # the prompt's pass, then 3 cached steps
    assert re.search(r"^step 3 \(one new token, on the cache\)", out, re.M)
    assert re.search(r"^      \S+\.attend \(function\): q \(B, H, 1, D\) f32, k \(B, H, \d+, D\)", out, re.M)
    if name == "bart":
        assert re.search(r"cross-attention cache length after each step: (\d+), \1, \1, \1 ", out)


def test_command_line_refuses_generate_on_an_encoder(hf_checkpoints, capsys):
    assert inspect_cli.main([str(hf_checkpoints / "bert"), "--text", "the cat", "--generate", "2"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("python -m minibert.inspect: error: BertForPreTraining does not generate")
    assert captured.out == ""  # refused from config.json, before the model loaded or ran


def test_gpt2_prompts_are_the_text_alone_and_padded_on_the_left_for_generate(hf_checkpoints, capsys):
    """A decoder-only prompt carries no special tokens (one ending in eos asks what follows the end of
    the text), and a batch of prompts is padded on the left, so each row continues its own last token."""
    from minibert.auto import load_pretrained
    from minibert.tokenizer import load_tokenizer

    path = hf_checkpoints / "gpt2"
    model, tokenizer = load_pretrained(path), load_tokenizer(path)
    texts = ["the cat sat on the mat", "a dog"]
    inputs = inspect_cli.model_inputs(model, tokenizer, texts, generate=True)
    alone = tokenizer.encode_batch(texts)
    T = inputs["input_ids"].size(1)
    assert T == len(alone[0]) and len(alone[1]) < T
    for row, ids in enumerate(alone):  # the text's own tokens at the right end, padding before them
        assert inputs["input_ids"][row, T - len(ids):].tolist() == ids
        assert inputs["attention_mask"][row].tolist() == [0] * (T - len(ids)) + [1] * len(ids)
    assert "token_type_ids" not in inputs
    assert inspect_cli.main([str(path), "--text", texts[0], "--text", texts[1], "--generate", "2"]) == 0
    out = capsys.readouterr().out
    lengths = re.search(r"self-attention cache length after each step: (.*)", out).group(1).split(", ")
    assert int(lengths[0]) == T  # the prompt's pass read the text's tokens, nothing added
    assert "right-padded" not in out


def test_queries_keys_and_values_keep_their_letters_when_the_tokens_equal_the_head_dim():
    """D = 8 and T = 8: q/k/v printed as (B, H, T, T), like scores; the role decides now, not the size."""
    torch.manual_seed(0)
    for model in (minibert.BertForMaskedLM(bert_config()), MODELS["gpt2"]()):
        tr = minibert.trace(model.eval(), input_ids=torch.randint(3, 60, (1, 8)), output_attentions=True)
        attend = next(c for c in tr.calls if c.name.endswith("attend"))
        assert [attend.input(n).letters for n in ("q", "k", "v")] == ["(B, H, T, D)"] * 3
        assert attend.output("output").letters == "(B, H, T, D)"
        assert attend.output("probs").letters == "(B, H, T, T)"


def test_a_bart_whose_decoder_has_other_heads_traces_its_generation():
    """The cache was found by the legend's head dim, the encoder's: an IndexError after generating."""
    torch.manual_seed(0)
    model = minibert.BartForConditionalGeneration(minibert.BartConfig(
        vocab_size=60, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=4, encoder_ffn_dim=24, decoder_ffn_dim=40, max_position_embeddings=32)).eval()
    steps = trace_generation(model, batch("bart")["input_ids"][:1, :4], max_new_tokens=3)
    assert steps.cache_lengths() == [1, 2, 3] and steps.cache_lengths("cross") == [4, 4, 4]
    assert "cross-attention cache length" in str(steps)


def test_pictures_never_replace_a_file_that_is_not_a_picture(hf_checkpoints, tmp_path, capsys):
    """--attention_png CKPT/model.safetensors turned the checkpoint into a PNG; one path for both pictures
    lost the first."""
    weights = hf_checkpoints / "bert" / "model.safetensors"
    before = weights.read_bytes()
    assert inspect_cli.main([str(hf_checkpoints / "bert"), "--text", "the cat", "--attention_png", str(weights)]) == 1
    assert "exists and is not a PNG picture" in capsys.readouterr().err and weights.read_bytes() == before
    same = str(tmp_path / "both.png")
    assert inspect_cli.main([str(hf_checkpoints / "bert"), "--text", "the cat", "--attention_png", same,
                             "--hidden_states_png", same]) == 1
    assert "both name" in capsys.readouterr().err


def test_a_long_text_is_cut_to_the_positions_and_generate_is_bounded_in_its_own_terms(hf_checkpoints, capsys):
    """The BERT checkpoint's tokenizer (a bare vocab.txt) sets no length: a long text could not be traced
    (the error named a flag inspect lacks); --generate's bound was given as max_new_tokens, off by one."""
    long = " ".join(["the cat sat on the mat ."] * 10)
    assert inspect_cli.main([str(hf_checkpoints / "bert"), "--text", long, "--max_depth", "1"]) == 0
    assert re.search(r"input_ids \(B, T\) i64", capsys.readouterr().out)
    prompt = "the cat sat on the mat"
    assert inspect_cli.main([str(hf_checkpoints / "gpt2"), "--text", prompt, "--generate", "40"]) == 1
    most = int(re.search(r"use --generate (\d+) or fewer", capsys.readouterr().err).group(1))
    assert inspect_cli.main([str(hf_checkpoints / "gpt2"), "--text", prompt, "--generate", str(most)]) == 0


def test_embed_refuses_a_pooler_the_checkpoint_does_not_have(tmp_path):
    """An ELECTRA discriminator (or any model saved without a pooler) loads one at random: pooling='pooler'
    gave other vectors on every call."""
    from minibert.sentence_embeddings import embed

    minibert.BertModel(bert_config(), add_pooling_layer=False).save_pretrained(tmp_path)  # as ELECTRA saves it
    train_tokenizer(TEXTS, kind="wordpiece", vocab_size=60, min_frequency=1).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="pooling='pooler' reads the pooler, and this checkpoint has none"):
        embed(tmp_path, ["the cat"], pooling="pooler")
    assert embed(tmp_path, ["the cat"], pooling="cls").shape == (1, 16)


def test_a_left_padded_gpt2_row_is_drawn_as_it_was_generated_from():
    """inspect --generate pads GPT-2 prompts on the left; the pictures ran them with positions counted from
    the padding, not over the real tokens as generate does."""
    torch.manual_seed(0)
    model = MODELS["gpt2"]().eval()
    ids = torch.randint(3, 60, (2, 6))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # row 0: 4 real tokens, on the right
    padded = attention_maps(model, input_ids=ids.masked_fill(mask == 0, 0), attention_mask=mask)
    alone = attention_maps(model, input_ids=ids[:1, 2:])
    torch.testing.assert_close(padded[:, 0, :, 2:, 2:], alone[:, 0], atol=1e-5, rtol=1e-5)


def test_bart_called_with_labels_alone_shows_the_decoders_length_as_t():
    """Without decoder_input_ids BART's decoder reads the labels shifted right: T is theirs, not the source's."""
    torch.manual_seed(0)
    model = MODELS["bart"]().eval()
    tr = minibert.trace(model, input_ids=torch.randint(3, 60, (2, 7)), labels=torch.randint(3, 60, (2, 4)))
    assert tr.legend["T"] == 4 and tr.legend["S"] == 7
    decoder = next(c for c in tr.calls if c.name == "model.decoder")
    assert decoder.output("last_hidden_state").letters == "(B, T, E)"


@pytest.mark.parametrize("name, head", [("gpt2", "GPT2Model"), ("gpt2", "GPT2ForSequenceClassification"),
                                        ("bart", "BartModel"), ("bart", "BartForSequenceClassification")])
def test_command_line_on_the_other_gpt2_and_bart_classes(hf_checkpoints, tmp_path, capsys, name, head):
    """The token limit came from the generators' method or BERT's embeddings: these four crashed with an
    AttributeError before tracing anything."""
    pytest.importorskip("matplotlib")
    transformers = pytest.importorskip("transformers")
    source = transformers.AutoConfig.from_pretrained(hf_checkpoints / name)
    source.pad_token_id = 1
    torch.manual_seed(0)
    getattr(transformers, head)(source).save_pretrained(tmp_path / head)
    for file in (hf_checkpoints / name).iterdir():  # the tokenizer's files
        if "token" in file.name or file.suffix == ".txt" or file.name == "vocab.json":
            shutil.copy(file, tmp_path / head)
    picture = tmp_path / "attention.png"
    assert inspect_cli.main([str(tmp_path / head), "--text", "the cat sat", "--text", "a dog",
                             "--attention_png", str(picture)]) == 0
    assert f"{head} from" in capsys.readouterr().out and _is_png(picture)


def test_a_text_pair_for_gpt2s_lm_is_refused(hf_checkpoints, capsys):
    assert inspect_cli.main([str(hf_checkpoints / "gpt2"), "--text", "the cat", "--text_pair", "sat"]) == 1
    assert "GPT-2's LM reads one text" in capsys.readouterr().err


def test_a_text_pair_for_a_gpt2_tagger_is_refused_as_train_py_refuses_one(tmp_path, capsys):
    from minibert.models.gpt import GPT2Config, GPT2ForTokenClassification

    train_tokenizer(TEXTS, kind="bytelevel_bpe", vocab_size=300, min_frequency=1).save_pretrained(tmp_path)
    GPT2ForTokenClassification(GPT2Config(vocab_size=300, n_embd=16, n_layer=1, n_head=2, n_positions=32,
                                          num_labels=3)).save_pretrained(tmp_path)
    assert inspect_cli.main([str(tmp_path), "--text", "the cat", "--text_pair", "sat"]) == 1
    assert "GPT-2's tagger reads one text" in capsys.readouterr().err


QUESTIONS = ["who loves the king?", "who?"]
CONTEXTS = ["the fool loves the king and the queen", "a dog"]


def test_a_gpt2_reader_is_traced_on_the_window_train_py_reads(tmp_path, capsys):
    """A GPT-2 reader (train.py --task_type question_answering) reads question, context, then its end-of-text
    token, the no-answer slot: --text_pair gives the tracer that same window (qa_features'), each row's end token
    right after its own context and before the padding."""
    from test_decoder_classification import save_hugging_face_style_gpt2_tokenizer

    from minibert.finetune.extractive_qa import Question, qa_features
    from minibert.models.gpt import GPT2Config, GPT2ForQuestionAnswering

    tok = save_hugging_face_style_gpt2_tokenizer(tmp_path)  # no pad token, nothing between a pair's texts
    torch.manual_seed(0)
    GPT2ForQuestionAnswering(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=2, n_head=2, n_positions=64,
                                        bos_token_id=0, eos_token_id=0)).save_pretrained(tmp_path)
    assert inspect_cli.main([str(tmp_path), "--text", QUESTIONS[0], "--text_pair", CONTEXTS[0]]) == 0
    out = capsys.readouterr().out
    assert "reads them run together" in out and "'<|endoftext|>', where a GPT-2 reader says \"no answer\"" in out
    assert re.search(r"row 0 tokens: \[.*'<\|endoftext\|>'\]", out)
    model = minibert.load_pretrained(tmp_path)
    tok.pad_token = tok.eos_token  # as the tracer pads several texts
    inputs = inspect_cli.model_inputs(model, tok, QUESTIONS, CONTEXTS)
    for row, (question, context) in enumerate(zip(QUESTIONS, CONTEXTS, strict=True)):
        window = qa_features([Question("q", question, context)], tok, 64, 8, at_end=True)[0]["input_ids"]
        assert inputs["input_ids"][row, : len(window)].tolist() == window
        assert inputs["attention_mask"][row].tolist() == [1] * len(window) + [0] * (inputs["input_ids"].size(1)
                                                                                     - len(window))
    pieces = len(tok.encode("a")) + len(tok.encode("b " * 70))
    assert inspect_cli.cut_notes(model, tok, ["a"], ["b " * 70]) == [
        f"--text and its --text_pair are {pieces} tokens, more than the 63 of the model's 64 positions that the "
        "window's end-of-text token leaves: cut to 63 (the rest is not traced); shorten them to trace all of it"]
    assert inspect_cli.model_inputs(model, tok, ["a"], ["b " * 70])["input_ids"].size(1) == 64
    assert inspect_cli.cut_notes(model, tok, ["  a"], ["b " * 70]) == inspect_cli.cut_notes(model, tok, ["a"],
                                                                                          ["b " * 70])
    # as qa_features reads a question: without its leading spaces, and whole, only the context cut
    for question, context in ((" " + QUESTIONS[0], CONTEXTS[0]), ("who loves " * 3 + "?", "the king " * 30)):
        window = qa_features([Question("q", question, context)], tok, 64, 8, at_end=True)[0]["input_ids"]
        assert inspect_cli.model_inputs(model, tok, [question], [context])["input_ids"][0].tolist() == window
    with pytest.raises(ValueError, match=r"a question \(--text\) fills the 63 positions .* shorten it"):
        inspect_cli.model_inputs(model, tok, ["who loves " * 40], ["the king"])


def test_a_gpt2_classifier_reads_a_pair_run_together_as_train_py_does(tmp_path, capsys):
    from test_decoder_classification import save_hugging_face_style_gpt2_tokenizer

    from minibert.models.gpt import GPT2Config, GPT2ForSequenceClassification

    tok = save_hugging_face_style_gpt2_tokenizer(tmp_path)
    torch.manual_seed(0)
    GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=64,
                                             num_labels=2, bos_token_id=0, eos_token_id=0)).save_pretrained(tmp_path)
    assert inspect_cli.main([str(tmp_path), "--text", QUESTIONS[0], "--text_pair", CONTEXTS[0]]) == 0
    out = capsys.readouterr().out
    assert "reads them run together, as train.py does\n" in out and "no answer" not in out
    expected = tok.token_texts(tok.encode(QUESTIONS[0]) + tok.encode(CONTEXTS[0]))
    assert f"row 0 tokens: {expected}" in out

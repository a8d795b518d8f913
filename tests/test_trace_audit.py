"""An audit of the tracer (minibert/tracing.py, python -m minibert.inspect): a dimension's letter says what it
is even when two sizes coincide (F = E, V = E, C = E, B = T, T = E, one head, one token), the letters of a
whole trace stay the same whatever sizes coincide, inputs the model refuses reach the model's own message,
and flags a mode would ignore are refused. Tiny random models, no downloads."""

import importlib.util
import re
import sys

import pytest
import torch

import minibert
from minibert import inspect as inspect_cli
from minibert.finetune.classifier import PooledClassifier
from minibert.tracing import _source_of_function, trace, trace_generation

# Every size distinct: the letters of this trace are the reference.
DISTINCT = {"B": 3, "T": 7, "S": 9, "E": 24, "H": 2, "F": 40, "V": 61, "C": 5}


def build(kind: str, E: int, H: int, F: int, V: int, C: int, **_) -> torch.nn.Module:
    bert = dict(vocab_size=V, hidden_size=E, num_hidden_layers=1, num_attention_heads=H, intermediate_size=F,
                max_position_embeddings=80)
    torch.manual_seed(0)
    if kind == "bert_mlm":
        model = minibert.BertForMaskedLM(minibert.BertConfig(**bert))
    elif kind == "bert_cls":
        model = minibert.BertForSequenceClassification(minibert.BertConfig(**bert, num_labels=C))
    elif kind == "bert_tok":
        model = minibert.BertForTokenClassification(minibert.BertConfig(**bert, num_labels=C))
    elif kind == "bert_qa":
        model = minibert.BertForQuestionAnswering(minibert.BertConfig(**bert))
    elif kind == "gpt2":
        model = minibert.GPT2LMHeadModel(minibert.GPT2Config(vocab_size=V, n_embd=E, n_layer=1, n_head=H, n_inner=F,
                                                             n_positions=80, pad_token_id=0))
    else:
        model = minibert.BartForConditionalGeneration(minibert.BartConfig(
            vocab_size=V, d_model=E, encoder_layers=1, decoder_layers=1, encoder_attention_heads=H,
            decoder_attention_heads=H, encoder_ffn_dim=F, decoder_ffn_dim=F, max_position_embeddings=80))
    return model.eval()


def inputs(kind: str, B: int, T: int, S: int, V: int, **_) -> dict:
    """The last row padded by one token (when there are two rows and two tokens), so masks are there."""
    generator = torch.Generator().manual_seed(0)
    n = S if kind == "bart" else T
    ids = torch.randint(3, V, (B, n), generator=generator)
    mask = torch.ones_like(ids)
    if B > 1 and n >= 2:
        mask[-1, -1] = 0
        ids[-1, -1] = 1 if kind == "bart" else 0
    batch = {"input_ids": ids, "attention_mask": mask, "output_attentions": True, "output_hidden_states": True}
    if kind == "bart":
        batch["decoder_input_ids"] = torch.randint(3, V, (B, T), generator=generator)
    return batch


def expand(letters: str, legend: dict[str, int]) -> tuple[int, ...]:
    """"(B, T, 4E)" back to numbers with the legend."""
    def size(x: str) -> int:
        return int(x) if x.isdigit() else int(x[:-1]) * legend[x[-1]] if x[:-1].isdigit() else legend[x]

    return tuple(size(x) for x in re.findall(r"\w+", letters))


def letters_of(kind: str, sizes: dict) -> dict:
    tr = trace(build(kind, **sizes), keep_tensors=True, **inputs(kind, **sizes))
    out = {}
    for call in tr.calls:
        for side, infos in (("in", call.inputs), ("out", call.outputs)):
            for i, info in enumerate(infos):
                if isinstance(info, str):
                    continue
                assert info.shape == tuple(info.value.shape) == expand(info.letters, tr.legend), (call.name, info)
                out[(call.name, side, i, info.name)] = info.letters
    return out


# (model, the sizes made equal): every one a label that was false or ambiguous before
COINCIDENCES = [
    ("bert_mlm", "F = E", {"F": 24}),  # the feed-forward's inside read (B, T, E)
    ("gpt2", "F = E", {"F": 24}),
    ("bart", "F = E", {"F": 24}),
    ("bert_mlm", "V = E", {"V": 24}),  # the logits, and the LM head that made them, read (B, T, E)
    ("bert_mlm", "V = F", {"V": 40}),  # ... (B, T, F)
    ("gpt2", "V = F", {"V": 40}),
    ("bert_cls", "C = E", {"C": 24}),  # a classifier's logits read (B, E)
    ("bert_tok", "C = V", {"C": 61}),  # per-token logits read (B, T, V)
    ("bert_qa", "T = E", {"T": 24}),  # the start and end logits read (B, E)
    ("bert_mlm", "H = 1", {"H": 1}),  # a padding mask read (B, H, 1, T): it has no head dimension
    ("gpt2", "H = 1", {"H": 1}),
    ("gpt2", "T = 1", {"T": 1}),  # the (1, 1) position ids read (T, T)
    ("bart", "B = T", {"B": 7}),  # a position table's rows read (B, E)
    ("bart", "B = S", {"B": 9}),
    ("bart", "S = T", {"S": 7}),  # the cross-attention probabilities read (B, H, T, T): the source as T
    ("bart", "S = E", {"S": 24}),  # ... (B, H, T, 24): a number, where S is the letter
]


@pytest.mark.parametrize("kind, what, change", COINCIDENCES, ids=[f"{k}: {w}" for k, w, _ in COINCIDENCES])
def test_letters_do_not_change_when_two_sizes_coincide(kind, what, change):
    """Traced with every size distinct and with two sizes equal, each tensor of the trace reads the same
    letters: the role of a dimension decides its letter, not its size."""
    reference = letters_of(kind, DISTINCT)
    coinciding = letters_of(kind, {**DISTINCT, **change})
    common = reference.keys() & coinciding.keys()
    assert len(common) >= 0.9 * len(reference)  # (one token pads nothing: no mask there)
    wrong = {key: (reference[key], coinciding[key]) for key in common if reference[key] != coinciding[key]}
    assert not wrong, f"{what}: {wrong}"


def test_the_reference_letters_name_each_role():
    """What the coincidences are compared against: the reference trace itself spells each role."""
    def read(letters: dict, call: str, side: str, name: str) -> str:
        return next(v for (c, s, _, n), v in letters.items() if (c, s, n) == (call, side, name))

    bert, bart = letters_of("bert_mlm", DISTINCT), letters_of("bart", DISTINCT)
    assert read(bert, "bert.layers.0.ffn.up", "out", "") == "(B, T, F)"
    assert read(bert, "mlm_head", "out", "") == read(bert, "", "out", "logits") == "(B, T, V)"
    assert read(bert, "bert.layers.0", "in", "keep") == "(B, 1, 1, T)"
    assert read(bart, "model.decoder.embeddings.embed_positions", "out", "") == "(T, E)"
    # the source length had no letter in the cross-attention probabilities the decoder returns
    assert read(bart, "", "out", "cross_attentions[0]") == "(B, H, T, S)"
    assert read(bart, "model.decoder.layers.0", "out", "[2]") == "(B, H, T, S)"


def test_a_pooled_vector_of_four_hidden_sizes_is_not_the_feed_forward_width():
    """--pooling concat_last4 concatenates four [CLS] states: (B, 4E). With the usual F = 4E it read (B, F),
    as if it were the feed-forward's inside."""
    torch.manual_seed(0)
    config = minibert.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=32)
    model = PooledClassifier(minibert.BertModel(config), "concat_last4", 3).eval()
    tr = trace(model, input_ids=torch.randint(3, 60, (2, 5)))
    assert tr.find("pooling")[0].outputs[0].letters == "(B, 4E)"
    assert tr.find("classifier")[0].input("input").letters == "(B, 4E)"
    assert tr.find(r"encoder\.layers\.0\.ffn\.up")[0].outputs[0].letters == "(B, T, F)"  # F where it is F


@pytest.mark.parametrize("ids", [[[5, 6, 7]], torch.tensor([5, 6, 7])], ids=["a list", "one dimension"])
def test_input_ids_the_model_refuses_reach_the_models_own_message(ids):
    """The tracer read B and T off input_ids first: a list or a 1-D tensor failed there, with "'list' object
    has no attribute 'size'" or an IndexError, before the model could say what to pass."""
    gpt2 = build("gpt2", **DISTINCT)
    bart = build("bart", **DISTINCT)
    message = "input_ids must be"  # the models' own: "... a torch.Tensor of shape (batch, sequence), got a list"
    for model in (build("bert_mlm", **DISTINCT), gpt2, bart):
        with pytest.raises((TypeError, ValueError), match=message):
            trace(model, input_ids=ids)
    for model in (gpt2, bart):
        with pytest.raises((TypeError, ValueError), match=message):
            trace_generation(model, ids, max_new_tokens=2)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in (*gpt2.modules(), *bart.modules()))


@pytest.mark.parametrize("argv, message", [
    (["--layer", "1"], "--layer chooses the decoder layer whose cache --generate shows; add --generate N"),
    (["--generate", "2", "--max_depth", "1"], "--max_depth hides the inner calls of one forward pass; --generate"),
    (["--max_depth", "-1"], "--max_depth must be >= 0 (0: the model's own line), got -1"),
])
def test_inspect_refuses_a_flag_its_mode_would_ignore(capsys, argv, message):
    """--layer without --generate and --max_depth with it were ignored without a word; --max_depth -1 printed
    the legend alone."""
    with pytest.raises(SystemExit) as stop:
        inspect_cli.parse_args(["ckpt", "--text", "the cat", *argv])
    assert stop.value.code == 2 and f"error: {message}" in capsys.readouterr().err
    assert inspect_cli.parse_args(["ckpt", "--text", "the cat", "--generate", "2", "--layer", "1"]).layer == 1
    assert inspect_cli.parse_args(["ckpt", "--text", "the cat", "--max_depth", "0"]).max_depth == 0


def test_generation_with_several_prompts_says_whose_token_each_step_shows():
    """Each step shows the token of row 0 only; with several prompts the line did not say so."""
    model = build("gpt2", **DISTINCT)
    ids = torch.randint(3, 61, (2, 4), generator=torch.Generator().manual_seed(0))
    several = str(trace_generation(model, ids, max_new_tokens=2))
    assert re.search(r"^step 0 \(the prompt, which fills the cache\) -> row 0's token \d+;", several, re.M)
    one = str(trace_generation(model, ids[:1], max_new_tokens=2))
    assert re.search(r"^step 1 \(one new token, on the cache\) -> token \d+;", one, re.M)


def test_a_file_under_dist_packages_is_named_from_its_package(tmp_path, monkeypatch):
    """Debian's Python and Colab install torch under dist-packages: its file:line was a whole absolute path,
    where site-packages gives torch/nn/modules/linear.py:130."""
    package = tmp_path / "lib" / "python3" / "dist-packages" / "somepkg"
    package.mkdir(parents=True)
    (package / "layers.py").write_text("import torch\n\n\ndef forward(x):\n    return x\n")
    spec = importlib.util.spec_from_file_location("somepkg_layers", package / "layers.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "somepkg_layers", module)
    spec.loader.exec_module(module)
    assert _source_of_function(module.forward) == "somepkg/layers.py:4"
    assert _source_of_function(torch.nn.Linear.forward).startswith("torch/nn/modules/linear.py:")


def test_the_attention_pictures_title_stays_inside_a_small_picture(tmp_path, monkeypatch):
    """A picture of few heads and a short text is narrow: its one-line title ran past both edges, and the cut
    took the words that say which attention is drawn ("the encoder's" of BART's)."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from minibert.tracing import plot_attention

    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *args, **kwargs: (drawn.append(fig), save(fig, *args, **kwargs)))
    bart = minibert.BartForConditionalGeneration(minibert.BartConfig(
        vocab_size=60, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=1,
        decoder_attention_heads=1, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=32)).eval()
    for model in (bart, build("bert_mlm", **DISTINCT)):
        plot_attention(model, {"input_ids": torch.tensor([[0, 5, 6, 2]])}, ["<s>", "a", "b", "</s>"],
                       tmp_path / "attention.png")
        fig = drawn[-1]
        title = next(text for text in fig.texts if text.get_text() == fig.get_suptitle())
        extent = title.get_window_extent()  # as drawn by savefig
        assert 0 <= extent.x0 and extent.x1 <= fig.bbox.width, (fig.get_suptitle(), extent, fig.bbox.width)
    assert drawn[0].get_suptitle().startswith("the encoder's self-attention probabilities")


@pytest.mark.parametrize("num_labels", [3, 16, 60])  # 16 = E, 60 = V
def test_train_pys_own_heads_logits_read_c(num_labels):
    """PooledClassifier and LadderSideClassifier keep num_labels in their settings, and their names lack
    "Classification": their logits read (B, 3), (B, E) or (B, V) where the family head's read (B, C)."""
    from minibert.finetune.classifier import PooledClassifier
    from minibert.finetune.ladder import LadderSideClassifier

    def encoder():
        torch.manual_seed(0)
        return minibert.BertModel(minibert.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2,
                                                      num_attention_heads=2, intermediate_size=40,
                                                      max_position_embeddings=32))

    ids = torch.randint(3, 60, (2, 5))
    for model in (PooledClassifier(encoder(), "mean", num_labels), LadderSideClassifier(encoder(), 4, num_labels)):
        records = minibert.trace(model.eval(), input_ids=ids)
        assert records.legend["C"] == num_labels
        logits = next(o for o in records.calls[0].outputs if not isinstance(o, str) and o.name == "logits")
        assert logits.letters == "(B, C)", (type(model).__name__, logits.letters)

"""Bad input is refused with a message that names the problem and the fix, before the work starts:
python -m minibert.inspect (no tracebacks; the pictures written where asked), cls_layer's layer
index, and load_pretrained on what it cannot load whole (a Hugging Face head minibert lacks, or
what train.py saved with parts of its own). Tiny random models, no downloads."""

import json
import shutil

import pytest
import torch

import minibert
from minibert import inspect as inspect_cli
from minibert.finetune.beside_base import save_beside_base
from minibert.finetune.classifier import PooledClassifier
from minibert.finetune.multitask import MultiTaskClassifier
from minibert.finetune.new_encoder import BartWithNewEncoder
from minibert.finetune.pooling import build_pooling
from minibert.finetuning import load_finetuned
from minibert.inspect import _is_png
from minibert.tokenizer import train_tokenizer

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PREFIX = "python -m minibert.inspect: error: "
TEXTS = ["the cat sat on the mat .", "a dog ran in the park and the cat watched ."] * 10


def bert_config(vocab_size: int = 60) -> minibert.BertConfig:
    return minibert.BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=24, max_position_embeddings=32)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A BERT and a GPT-2, each saved with its tokenizer, and a BERT saved without one."""
    root = tmp_path_factory.mktemp("cli")
    wordpiece = train_tokenizer(TEXTS, kind="wordpiece", vocab_size=60, min_frequency=1)
    bpe = train_tokenizer(TEXTS, kind="bytelevel_bpe", vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    minibert.BertForMaskedLM(bert_config(vocab_size=wordpiece.vocab_size)).save_pretrained(root / "bert")
    wordpiece.save_pretrained(root / "bert")
    minibert.GPT2LMHeadModel(minibert.GPT2Config(vocab_size=bpe.vocab_size, n_embd=16, n_layer=2, n_head=2,
                                                 n_positions=32)).save_pretrained(root / "gpt2")
    bpe.save_pretrained(root / "gpt2")
    minibert.BertModel(bert_config()).save_pretrained(root / "no_tokenizer")
    return root


@pytest.fixture
def no_model_load(monkeypatch):
    """The refusals come from the arguments and config.json: loading the weights fails the test."""
    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad argument was refused")
    monkeypatch.setattr(inspect_cli, "load_pretrained", load)
    monkeypatch.setattr(inspect_cli, "load_finetuned", load)


# --------------------------------------------------------------------------------------------
# python -m minibert.inspect: one "error:" line on stderr and a nonzero code, not a traceback
# --------------------------------------------------------------------------------------------
def refused(capsys, argv: list[str]) -> str:
    assert inspect_cli.main([str(a) for a in argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing traced: refused before the model ran
    assert captured.err.startswith(PREFIX) and captured.err.count("\n") == 1
    return captured.err[len(PREFIX):]


def test_inspect_names_a_missing_checkpoint(tmp_path, capsys, no_model_load):
    assert "is not a directory; pass the folder that holds config.json" in refused(
        capsys, [tmp_path / "nope", "--text", "hi"])


def test_inspect_names_a_directory_without_a_tokenizer_before_loading_the_model(checkpoints, capsys,
                                                                               no_model_load):
    assert "no tokenizer" in refused(capsys, [checkpoints / "no_tokenizer", "--text", "hi"])


def test_inspect_refuses_generate_on_an_encoder_before_loading_it(checkpoints, capsys, no_model_load):
    message = refused(capsys, [checkpoints / "bert", "--text", "the cat", "--generate", "2"])
    assert message.startswith("BertForMaskedLM does not generate; --generate needs a GPT2LMHeadModel")


def test_inspect_refuses_an_empty_text(checkpoints, capsys, no_model_load):
    with pytest.raises(SystemExit) as stop:
        inspect_cli.main([str(checkpoints / "gpt2"), "--text", ""])
    assert stop.value.code == 2
    assert "python -m minibert.inspect: error: --text is empty; give the text to trace" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        inspect_cli.main([str(checkpoints / "gpt2"), "--text", "a dog", "--text", ""])
    assert "error: --text number 2 is empty" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--attention_png", "--hidden_states_png"])
def test_inspect_checks_a_picture_path_before_the_model_runs(checkpoints, tmp_path, capsys, no_model_load, flag):
    pytest.importorskip("matplotlib")
    bert = checkpoints / "bert"
    message = refused(capsys, [bert, "--text", "a cat", flag, tmp_path / "nodir" / "x.png"])
    assert message == f"{flag} {tmp_path / 'nodir' / 'x.png'}: {tmp_path / 'nodir'} does not exist; " \
                      "create the directory first, or write elsewhere\n"
    (tmp_path / "a_file").write_text("")
    assert "a_file is not a directory" in refused(capsys, [bert, "--text", "a cat", flag, tmp_path / "a_file" / "x"])
    (tmp_path / "pictures").mkdir()
    message = refused(capsys, [bert, "--text", "a cat", flag, tmp_path / "pictures"])
    assert message.startswith(f"{flag} {tmp_path / 'pictures'} is a directory; name the file to write in it")
    assert not (tmp_path / "pictures.png").exists()  # nothing written beside the directory


def test_inspect_writes_the_pictures_at_exactly_the_paths_given(checkpoints, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    attention, hidden = tmp_path / "attention", tmp_path / "hidden.picture"  # no .png: still PNG, same name
    assert inspect_cli.main([str(checkpoints / "bert"), "--text", "the cat sat", "--attention_png", str(attention),
                             "--hidden_states_png", str(hidden)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {attention}\n" in out and f"wrote {hidden}\n" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attention", "hidden.picture"]
    assert attention.read_bytes().startswith(PNG_SIGNATURE) and hidden.read_bytes().startswith(PNG_SIGNATURE)


def test_inspect_turns_an_error_after_loading_into_a_message(checkpoints, capsys):
    """--layer is checked against the loaded decoder: still one line, not a traceback."""
    assert inspect_cli.main([str(checkpoints / "gpt2"), "--text", "the cat", "--generate", "1", "--layer", "9"]) == 1
    assert capsys.readouterr().err == f"{PREFIX}layer 9 does not exist: the decoder has layers 0 to 1\n"


# --------------------------------------------------------------------------------------------
# cls_layer: a hidden-state index outside the model is refused when the pooling is built
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [5, 99, -6])
def test_cls_layer_refuses_an_index_outside_the_hidden_states(layer):
    with pytest.raises(ValueError, match=rf"--pooling_layer \(embed's layer=\) {layer} is out of range for "
                                         r"--pooling cls_layer: the model has 4 layers, so the hidden states "
                                         r"are indexed -5\.\.4"):
        build_pooling("cls_layer", 8, 4, layer=layer)


@pytest.mark.parametrize("layer", [-5, 0, 4, -1])
def test_cls_layer_accepts_every_hidden_state(layer):
    states = tuple(torch.randn(2, 3, 8) for _ in range(5))  # the embeddings and 4 layers
    pooling = build_pooling("cls_layer", 8, 4, layer=layer)
    torch.testing.assert_close(pooling(states, torch.ones(2, 3)), states[layer][:, 0])


def test_embed_and_the_classifier_refuse_an_out_of_range_layer(checkpoints):
    with pytest.raises(ValueError, match="--pooling_layer .* 99 is out of range .* -3..2"):
        minibert.embed(checkpoints / "bert", ["a cat"], pooling="cls_layer", layer=99)
    with pytest.raises(ValueError, match="-3..2"):
        PooledClassifier(minibert.BertModel(bert_config()), "cls_layer", num_labels=2, layer=3)


# --------------------------------------------------------------------------------------------
# load_pretrained: refuse what it cannot load whole, instead of dropping the trained parts
# --------------------------------------------------------------------------------------------
HF_UNSUPPORTED = [
    ("BertConfig", "BertForNextSentencePrediction", "BertModel", "BertForMaskedLM"),
    ("BertConfig", "BertForMultipleChoice", "BertModel", "BertForQuestionAnswering"),
    ("RobertaConfig", "RobertaForMultipleChoice", "RobertaModel", "RobertaForTokenClassification"),
]


@pytest.mark.parametrize("config_name,class_name,base,one_of_ours", HF_UNSUPPORTED)
def test_an_architecture_minibert_lacks_is_refused_not_loaded_headless(tmp_path, config_name, class_name, base,
                                                                       one_of_ours):
    transformers = pytest.importorskip("transformers")
    config = getattr(transformers, config_name)(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=32)
    getattr(transformers, class_name)(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError) as error:
        minibert.load_pretrained(tmp_path)
    message = str(error.value)
    assert f"names architecture {class_name}, which minibert does not have" in message
    assert one_of_ours in message and f"minibert.{base}.from_pretrained(path)" in message
    assert "or use minibert.load_pretrained" not in message


def test_the_encoder_alone_loads_when_asked_for(tmp_path):
    """The fix the refusal names works: the base class, asked for by name, drops the head."""
    transformers = pytest.importorskip("transformers")
    transformers.BertForNextSentencePrediction(transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32)).save_pretrained(tmp_path)
    model = minibert.BertModel.from_pretrained(tmp_path)
    assert model.loading_info["ignored"] == ["cls.seq_relationship.bias", "cls.seq_relationship.weight"]
    # a head no weight table names (RoBERTa token classification) is another head's too, not a misfit
    transformers.RobertaForTokenClassification(transformers.RobertaConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        pad_token_id=1, type_vocab_size=1)).save_pretrained(tmp_path / "roberta")
    model = minibert.RobertaModel.from_pretrained(tmp_path / "roberta")
    assert sorted(model.loading_info["ignored"]) == ["classifier.bias", "classifier.weight"]


def test_no_architecture_named_loads_the_base_class(tmp_path):
    minibert.BertForMaskedLM(bert_config()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for architectures in (None, []):
        if architectures is None:
            config.pop("architectures")
        else:
            config["architectures"] = architectures
        (tmp_path / "config.json").write_text(json.dumps(config))
        assert type(minibert.load_pretrained(tmp_path)) is minibert.BertModel


def _pooled(path):
    PooledClassifier(minibert.BertModel(bert_config()), "mean", num_labels=3).save(path)


def _multitask(path):
    MultiTaskClassifier(minibert.BertModel(bert_config()), {"a": {"num_labels": 2}, "b": {"num_labels": 3}},
                        "cls").save(path)


def _beside_base(path):
    base = path.parent / "base"
    model = minibert.BertModel(bert_config())
    model.save_pretrained(base)
    save_beside_base(model, path, base, settings={})


def _new_encoder(path):
    bart = minibert.BartForConditionalGeneration(minibert.BartConfig(
        vocab_size=60, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=32))
    BartWithNewEncoder(bart, vocab_size=40, pad_token_id=1).save(path)


@pytest.mark.parametrize("save,what", [
    (_pooled, "a classifier saved by train.py --pooling"),
    (_multitask, "a multi-task classifier saved by train.py --multitask"),
    (_beside_base, "the parameters an --adapter_size / --ladder_side_tuning run trained"),
    (_new_encoder, "a BART with a new encoder front"),
])
def test_what_train_py_saved_with_parts_of_its_own_points_to_load_finetuned(tmp_path, save, what):
    path = tmp_path / "run"
    save(path)
    with pytest.raises(ValueError) as error:
        minibert.load_pretrained(path)
    assert str(error.value).startswith(f"{path} holds {what}")
    assert str(error.value).endswith(f"load it with minibert.finetuning.load_finetuned({str(path)!r})")
    if save in (_pooled, _multitask, _new_encoder):  # (a beside-base run needs its training settings)
        assert not isinstance(load_finetuned(path), minibert.BertModel)  # the pointer is right


def test_inspect_traces_what_train_py_saved_and_draws_its_encoder(checkpoints, tmp_path, capsys):
    """train.py's --pooling and --multitask outputs were refused ("use load_finetuned", which a command-line
    user cannot); they load as load_finetuned loads them, and the pictures show their encoder."""
    pytest.importorskip("matplotlib")
    for save in (_pooled, _multitask):
        path = tmp_path / save.__name__
        save(path)
        for file in (checkpoints / "bert").iterdir():
            if "token" in file.name or file.name == "vocab.txt":
                shutil.copy(file, path)
        pictures = [tmp_path / f"{save.__name__}_{kind}.png" for kind in ("attention", "hidden")]
        task = ["--task", "b"] if save is _multitask else []
        assert inspect_cli.main([str(path), "--text", "the cat sat", "--text", "a dog", *task, "--attention_png",
                                 str(pictures[0]), "--hidden_states_png", str(pictures[1])]) == 0
        out = capsys.readouterr().out
        assert ("PooledClassifier from" if save is _pooled else "MultiTaskClassifier from") in out
        assert all(_is_png(p) for p in pictures)
        if save is _multitask:
            assert "tracing task 'b''s head (tasks: a, b" in out and "task (B) i64" in out
    assert "this model's tasks are a, b" in refused(capsys, [tmp_path / "_multitask", "--text", "hi", "--task", "c"])


def test_inspect_refuses_what_it_cannot_trace_of_train_py_outputs(checkpoints, tmp_path, capsys, no_model_load):
    _pooled(tmp_path / "pooled")
    assert "a classifier, which does not generate; drop --generate" in refused(
        capsys, [tmp_path / "pooled", "--text", "hi", "--generate", "2"])
    assert "--task names a task of a train.py --multitask output" in refused(
        capsys, [checkpoints / "bert", "--text", "hi", "--task", "a"])
    _new_encoder(tmp_path / "front")
    assert "the tracer does not follow the new front" in refused(capsys, [tmp_path / "front", "--text", "hi"])


def test_inspect_on_a_train_py_checkpoint_points_to_the_run_directory(tmp_path, capsys, no_model_load):
    checkpoint = tmp_path / "run" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    torch.save({}, checkpoint / "model_state.pt")
    assert f"it is a training checkpoint, train.py's checkpoint-N (for --resume_from_checkpoint): pass the run's " \
           f"output directory, {tmp_path / 'run'}, once the run has finished" in refused(
               capsys, [checkpoint, "--text", "hi"])

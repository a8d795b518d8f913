"""What a newcomer met following the README with their own data (tests/test_journey_lead.py holds the lead's
share): a Chinese file trained on through an English tokenizer with no word, sop's error on one-sentence
documents, --init_from continuing another objective, a corpus directory's subfolders passed over, restored weights
reported as new by load_finetuned, and an adapter run called "not a checkpoint". Each test fails without its fix."""

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_pretrain import cli as pretrain_cli  # pretrain.py's main() in this process: (exit code, stderr)
from test_train import WORDS, tiny_checkpoint

import train
from minibert.data import build_objective
from minibert.data.corpus import corpus_files
from minibert.engine import TrainingArguments
from minibert.finetuning import load_finetuned
from minibert.models.bart import BartConfig, BartForConditionalGeneration
from minibert.models.bert import BertConfig, BertForMaskedLM
from minibert.pretraining import PretrainingOptions, recorded_objective, run_pretraining
from minibert.tokenizer import check_unknown_tokens, train_tokenizer

CHINESE = ["今天天气很好。", "春天来了，花都开了。", "他每天早上读书。", "老师在教室里讲课。", "河水慢慢地流向大海。"]
TINY_BERT = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny BERT whose WordPiece tokenizer knows the English WORDS alone."""
    return tiny_checkpoint(tmp_path_factory.mktemp("english"))


def write_csv(path, texts, labels=("good", "bad")):
    lines = ["text,label"] + [f"{t},{labels[n % len(labels)]}" for n, t in enumerate(texts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def english(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[j] for j in torch.randint(0, len(WORDS), (5,), generator=g).tolist()) for _ in range(n)]


def train_main(*argv) -> int:
    """train.py's main() in this process, on the tiny models' positions."""
    return train.main([str(a) for a in (*argv, "--max_seq_length", 32)])


# -- 1. text the tokenizer cannot read --------------------------------------------------------------
def test_train_refuses_a_training_file_its_tokenizer_cannot_read(checkpoint, tmp_path, capsys):
    """A Chinese CSV through an English WordPiece is all [UNK]: the run trained, said nothing and exited 0 with an
    accuracy of chance. Now refused before any training, naming the file, the share, a text and the fix."""
    data = write_csv(tmp_path / "zh_train.csv", CHINESE * 4)
    code = train_main("--model_name_or_path", checkpoint, "--train_file", data, "--validation_file", data,
                      "--output_dir", tmp_path / "out", "--max_steps", "2", "--device", "cpu", "--disable_tqdm")
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"100% of the tokens of {data} are unknown to the tokenizer of {checkpoint} ([UNK])" in err
    assert "e.g. '" in err and any(f"'{text}' is read as '[UNK]" in err for text in CHINESE)
    assert "fine-tune a checkpoint whose tokenizer covers this language and these characters" in err
    assert not (tmp_path / "out").exists()  # nothing trained, nothing saved


def test_train_warns_of_a_training_file_it_reads_only_in_part(checkpoint, tmp_path, caplog):
    """A quarter of the rows in a script the tokenizer lacks: trained on, with a warning naming the share."""
    texts = english(24)
    texts[::4] = CHINESE + CHINESE[:1]  # 6 rows of 24
    data = write_csv(tmp_path / "mixed.csv", texts)
    with caplog.at_level(logging.WARNING):
        code = train_main("--model_name_or_path", checkpoint, "--train_file", data, "--output_dir", tmp_path / "out",
                          "--max_steps", "1", "--device", "cpu", "--disable_tqdm", "--plot_loss", "false")
    assert code == 0
    said = [r.getMessage() for r in caplog.records if "unknown to the tokenizer" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("29% of the tokens of") and data in said[0], said
    # the same checkpoint on English text alone says nothing
    caplog.clear()
    english_file = write_csv(tmp_path / "english.csv", english(24))
    with caplog.at_level(logging.WARNING):
        assert train_main("--model_name_or_path", checkpoint, "--train_file", english_file, "--output_dir",
                          tmp_path / "out2", "--max_steps", "1", "--device", "cpu", "--disable_tqdm",
                          "--plot_loss", "false") == 0
    assert not any("unknown to" in r.getMessage() for r in caplog.records)


def test_a_multitask_run_refuses_a_task_file_its_tokenizer_cannot_read(checkpoint, tmp_path, capsys):
    english_file = write_csv(tmp_path / "en.csv", english(16))
    chinese_file = write_csv(tmp_path / "zh.csv", CHINESE * 3)
    code = train_main("--model_name_or_path", checkpoint, "--multitask", f"en={english_file}", f"zh={chinese_file}",
                      "--output_dir", tmp_path / "out", "--max_steps", "1", "--device", "cpu", "--disable_tqdm")
    err = capsys.readouterr().err
    assert code == 2 and f"--multitask zh=...: 100% of the tokens of {chinese_file} are unknown" in err, err


@pytest.fixture(scope="module")
def wordpiece_bart(tmp_path_factory):
    """A tiny BART on an English WordPiece vocabulary (as Chinese BARTs use BERT's), and that vocabulary."""
    path = tmp_path_factory.mktemp("bart")
    tokenizer = train_tokenizer(english(40), "wordpiece", vocab_size=80, min_frequency=1)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    BartForConditionalGeneration(BartConfig(
        vocab_size=tokenizer.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.sep_token_id)).save_pretrained(path)
    return path


@pytest.mark.parametrize("side", ["targets", "sources through --new_encoder_vocab"])
def test_a_generation_run_refuses_sources_or_targets_its_tokenizer_cannot_read(wordpiece_bart, tmp_path, capsys,
                                                                               side):
    rows = [{"source": s, "target": t} for s, t in zip(english(10), english(10, seed=1), strict=True)]
    column = "target" if side == "targets" else "source"
    for row, text in zip(rows, CHINESE * 2, strict=True):
        row[column] = text
    data = tmp_path / "gen.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    extra = [] if side == "targets" else ["--new_encoder_vocab", wordpiece_bart]
    code = train_main("--model_name_or_path", wordpiece_bart, "--task_type", "seq2seq", "--text_column", "source",
                      "--target_column", "target", "--train_file", data, "--output_dir", tmp_path / "out",
                      "--max_steps", "1", "--device", "cpu", "--disable_tqdm", *extra)
    err = capsys.readouterr().err
    assert code == 2, err
    reader = (f"the tokenizer of {wordpiece_bart}" if side == "targets"
              else f"--new_encoder_vocab {wordpiece_bart}")
    assert f"100% of the tokens of {data} (--{'target' if side == 'targets' else 'text'}_column {column}, the " \
           f"{side.split()[0]}) are unknown to {reader} ([UNK])" in err, err


def test_byte_level_tokenizers_have_no_unknown_tokens_and_say_nothing(caplog):
    """Byte-level BPE reads any text: RoBERTa/BART's <unk> is never produced (share 0), GPT-2's shares its id with
    <|endoftext|> (cannot tell): neither warns on Chinese text."""
    bart_style = train_tokenizer(english(40), "bytelevel_bpe", vocab_size=300, min_frequency=1)
    ids = [bart_style.encode(t) for t in CHINESE]
    with caplog.at_level(logging.WARNING):
        assert check_unknown_tokens(bart_style, ids, "zh", "-") == 0.0
        bart_style.unk_token = bart_style.eos_token  # GPT-2's specials: <|endoftext|> is bos, eos and unk
        assert check_unknown_tokens(bart_style, ids, "zh", "-") is None
    assert not caplog.records


def test_pretraining_warns_of_a_corpus_its_tokenizer_reads_only_in_part(tmp_path, caplog):
    """A Simplified Chinese model's tokenizer on Traditional text left 22% of the tokens [UNK], without a word
    (only more than half was refused)."""
    known = train_tokenizer(CHINESE * 3 + english(20), "wordpiece", vocab_size=200, min_frequency=1)
    known.save_pretrained(tmp_path / "tokenizer")
    corpus = tmp_path / "corpus.txt"
    # every document: Simplified sentences it knows, and one in Traditional characters it lacks in part
    traditional = "這座城市很大，人很多。"
    corpus.write_text("\n\n".join(" ".join(CHINESE) + traditional for _ in range(12)) + "\n", encoding="utf-8")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_BERT))
    options = PretrainingOptions(objective="mlm", corpus=[str(corpus)], tokenizer=str(tmp_path / "tokenizer"),
                                 config_file=str(config), max_seq_length=32, validation_share=0.0,
                                 data_cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING):
        run_pretraining(options, TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1, device="cpu",
                                                   per_device_train_batch_size=4, plot_loss=False, disable_tqdm=True))
    said = [r.getMessage() for r in caplog.records if "of the training tokens are unknown" in r.getMessage()]
    assert len(said) == 1 and "convert_chinese" in said[0], said  # the fix for the other script


# -- 2. sop on one-sentence documents; --init_from of another objective ------------------------------
@pytest.mark.parametrize("objective", ["sop", "nsp"])
def test_sentence_pair_objectives_on_one_sentence_documents_name_the_objectives_that_work(objective):
    tokenizer = train_tokenizer(english(20), "wordpiece", vocab_size=80, min_frequency=1)
    documents = [[text + "."] for text in english(6)]  # a CSV of one sentence per row
    with pytest.raises(ValueError, match=f"no document is long enough for {objective}.*or an objective without "
                                         "sentence pairs.*--objective mlm, wwm or span"):
        build_objective(objective, tokenizer, 32).examples(documents)
    assert len(build_objective("mlm", tokenizer, 32).examples(documents)) == 6  # (what the message offers works)


def masked_lm_checkpoint(path, record: dict | None = None, record_file: str = "pretraining_summary.json"):
    tokenizer = train_tokenizer(english(40), "wordpiece", vocab_size=80, min_frequency=1)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=64, **TINY_BERT)
                    ).save_pretrained(path)
    if record is not None:
        (path / record_file).write_text(json.dumps(record))
    return path


def test_recorded_objective_reads_a_runs_summary_or_its_checkpoints_recipe(tmp_path):
    run = masked_lm_checkpoint(tmp_path / "run", {"objective": "wwm"})
    step = masked_lm_checkpoint(tmp_path / "checkpoint-3", {"run_settings": {"recipe": {"--objective": "span"}}},
                                "trainer_state.json")
    assert (recorded_objective(run), recorded_objective(step)) == ("wwm", "span")
    assert recorded_objective(masked_lm_checkpoint(tmp_path / "hf")) is None  # (Hugging Face's checkpoints)


@pytest.mark.parametrize("recorded", [True, False])
def test_init_from_a_masked_lm_checkpoint_without_objective_says_sop_starts_a_new_head(tmp_path, caplog, recorded):
    """pretrain.py --init_from an MLM run without --objective trained SOP (the default) with a new random head,
    and said only what the loader says of any new weight."""
    checkpoint = masked_lm_checkpoint(tmp_path / "mlm", {"objective": "mlm"} if recorded else None)
    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n\n".join(". ".join(english(4, seed=s)) + "." for s in range(12)) + "\n")
    with caplog.at_level(logging.WARNING):
        code, err = pretrain_cli("--init_from", checkpoint, "--corpus", corpus, "--max_seq_length", "32",
                                 "--max_steps", "1", "--output_dir", tmp_path / "run", "--data_cache_dir",
                                 tmp_path / "cache", "--plot_loss", "false", "--disable_tqdm", "true")
    assert code == 0, err
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "minibert.pretraining")
    if recorded:
        assert (f"--init_from {checkpoint} was pretrained with --objective mlm, and this run trains --objective sop "
                "(pretrain.py's default, when --objective is left out)") in said, said
        assert "pass --objective mlm to continue" in said
    else:
        assert f"--init_from {checkpoint} has no sentence-pair head" in said and "--objective mlm" in said, said


# -- 3. a corpus directory's subfolders ----------------------------------------------------------------
def test_a_corpus_directorys_subfolders_are_named_not_passed_over_silently(tmp_path, caplog):
    books = tmp_path / "books"
    for name in ("b1/story0.txt", "b2/deeper/story2.txt", "images/cover.png", "tokenizer/tokenizer.json",
                 "tokenizer/vocab.txt"):  # (a tokenizer's folder is no corpus, though .json and .txt are)
        (books / name).parent.mkdir(parents=True, exist_ok=True)
        (books / name).write_text("The king walked. The queen sang.\n")
    (books / "intro.txt").write_text("An introduction. In two sentences.\n")
    with caplog.at_level(logging.WARNING):
        assert corpus_files(books) == [books / "intro.txt"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "its subfolders b1, b2 hold corpus files, which are not read" in said[0], said
    assert f"--corpus {books} {books / 'b1'} {books / 'b2'}" in said[0] and "images" not in said[0]
    assert "tokenizer" not in said[0]
    (books / "intro.txt").unlink()  # subfolders alone: the error says why the directory is empty
    with pytest.raises(ValueError, match=r"holds no \.txt.*; its subfolders b1, b2 hold some, and a directory's "
                                         r"subfolders are not read"):
        corpus_files(books)


# -- 4. and 5. an adapter run: load_finetuned's report; train.py and pretrain.py on its directory ------
@pytest.fixture(scope="module")
def adapter_run(checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    data = write_csv(root / "train.csv", english(16))
    assert train_main("--model_name_or_path", checkpoint, "--train_file", data, "--adapter_size", "4",
                      "--output_dir", root / "run", "--max_steps", "1", "--device", "cpu", "--disable_tqdm",
                      "--plot_loss", "false") == 0
    return root / "run"


def test_load_finetuned_reports_as_new_only_the_weights_the_saved_file_lacks(adapter_run, tmp_path, caplog):
    """The base holds no classifier, so rebuilding it said "newly initialised (...; train before use):
    [... 'classifier.weight' ...]", weights that trained.safetensors then restored."""
    with caplog.at_level(logging.WARNING):
        load_finetuned(adapter_run)
    assert not [r.getMessage() for r in caplog.records if "newly initialised" in r.getMessage()]
    # a saved file without the classifier: still said, as lacking from both
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in adapter_run.iterdir():
        if file.is_file():
            (copy / file.name).write_bytes(file.read_bytes())
    saved = load_file(str(adapter_run / "trained.safetensors"))
    save_file({k: v for k, v in saved.items() if not k.startswith("classifier.")}, str(copy / "trained.safetensors"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_finetuned(copy)
    said = [r.getMessage() for r in caplog.records if "newly initialised" in r.getMessage()]
    assert len(said) == 1 and "'classifier.weight', 'classifier.bias'" in said[0], said
    assert "pooler" not in said[0] and "trained.safetensors" in said[0]


def test_train_and_pretrain_on_an_adapter_run_say_what_it_is_and_what_to_do(adapter_run, checkpoint, tmp_path,
                                                                            capsys):
    """Both said only "is not a checkpoint directory (no config.json)"."""
    base = str(checkpoint.resolve())
    code = train_main("--model_name_or_path", adapter_run, "--train_file", write_csv(tmp_path / "t.csv", english(8)),
                      "--output_dir", tmp_path / "out")
    train_err = capsys.readouterr().err
    pretrain_code, pretrain_err = pretrain_cli("--init_from", adapter_run, "--objective", "mlm", "--output_dir",
                                               tmp_path / "out2")
    assert (code, pretrain_code) == (2, 1), (train_err, pretrain_err)
    assert f"train.py: error: --model_name_or_path {adapter_run} holds only the parameters" in train_err
    assert f"pretrain.py: error: {adapter_run} holds only the parameters" in pretrain_err
    for err in (train_err, pretrain_err):
        assert f"saved beside their base checkpoint {base}, which beside_base.json names" in err, err
        assert "start from that base" in err and f"load_finetuned('{adapter_run}')" in err

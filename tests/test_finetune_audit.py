"""Fine-tuning paths off the default one, each test written against a bug it found: user data files
(a CSV header or a JSON object naming a column twice, a row with more cells than the header, one
class), causal-LM empty prompts, BART's --generation_max_length past its positions,
evaluate_generation on a multi-task run, and chrF beside sacreBLEU's."""

import json

import pytest
import torch

from minibert.finetune.evaluate_generation import evaluate_saved
from minibert.finetune.generative import (
    GenerationEvaluator,
    causal_lm_examples,
    chrf,
    seq2seq_examples,
)
from minibert.finetune.task_data import infer_task, load_split, read_rows
from minibert.models.bart import BartConfig, BartForConditionalGeneration
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel
from minibert.tokenizer import train_tokenizer

WORDS = "king queen fool love war crown sword jest night song".split()


@pytest.fixture(scope="module")
def tokenizer():
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (6,), generator=g).tolist()) for _ in range(40)]
    return train_tokenizer(texts, "bytelevel_bpe", vocab_size=300, min_frequency=1)


def ids_of(tokenizer) -> dict:
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}


# -- user data files ------------------------------------------------------------------------------
def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    """csv.DictReader keeps the last column of a name: the text read was the third column's."""
    path = tmp_path / "train.csv"
    path.write_text("text,label,text\nking war,a,notes\nqueen,b,more notes\n")
    with pytest.raises(ValueError, match=r"train.csv: the header names the column\(s\) \['text'\] more than once"):
        read_rows(path)
    path.write_text("text,label,,\nking,a,,\nqueen,b,,\n")  # unnamed trailing columns (a spreadsheet's) are fine
    assert [r["text"] for r in read_rows(path)] == ["king", "queen"]


def test_a_json_example_naming_a_key_twice_is_refused(tmp_path):
    """json.loads keeps the last value of a repeated key: the text read was "notes"."""
    lines = tmp_path / "train.jsonl"
    lines.write_text('{"text": "king", "label": "a"}\n{"text": "king", "label": "a", "text": "notes"}\n')
    with pytest.raises(ValueError, match=r"train.jsonl:2: the object names the key\(s\) \['text'\] more than once"):
        read_rows(lines)
    listed = tmp_path / "train.json"
    listed.write_text('[{"text": "king", "label": 1, "label": 2}]')
    with pytest.raises(ValueError, match=r"train.json: an example names the key\(s\) \['label'\] more than once"):
        read_rows(listed)


def test_a_row_with_more_cells_than_the_header_is_refused(tmp_path):
    """An unquoted comma in a text shifted the row: the text was cut at it and the rest became the label
    (here ' world', a class of its own), silently."""
    path = tmp_path / "train.csv"
    path.write_text("text,label\nqueen,b\nhello, world,a\n")
    with pytest.raises(ValueError, match=r"train.csv:3: the row has 3 cells but the header names 2 columns.*"
                                         r"unquoted ','.*\(quote that cell"):
        read_rows(path)
    tsv = tmp_path / "train.tsv"
    tsv.write_text("text\tlabel\nking\ta\textra\n")
    with pytest.raises(ValueError, match=r"train.tsv:2: the row has 3 cells.*unquoted '\\t'"):
        read_rows(tsv)
    path.write_text("text,label\nking,a,\nqueen,b\n")  # an empty cell past the last column: a trailing comma
    assert read_rows(path) == [{"text": "king", "label": "a"}, {"text": "queen", "label": "b"}]


def test_a_training_file_of_one_class_is_refused(tmp_path, tokenizer):
    """One class: softmax over one logit is 1, the loss 0 and every gradient 0; the run trained nothing
    and reported accuracy 1.0 (and in a multi-task run, lifted the combined score)."""
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": "comedy"}) + "\n" for t in ("king", "queen war")))
    with pytest.raises(ValueError, match=r"every training label is \['comedy'\], a single class; classification "
                                         r"needs two or more"):
        load_split(path, tokenizer, 16)
    with pytest.raises(ValueError, match="a single class"):
        infer_task([1, 1, 1], "single_label_classification", None)
    assert infer_task([1, 1], "single_label_classification", 3).label_names == ["0", "1", "2"]  # ids 0..2
    assert infer_task([1.5, 1.5], "auto", None).problem_type == "regression"  # not classification: untouched
    assert infer_task([["a"], ["a"]], "auto", None).label_names == ["a"]  # one multi-label label: a yes/no


# -- generation -----------------------------------------------------------------------------------
def test_empty_prompts_start_from_end_of_text_and_evaluate(tokenizer):
    """An empty prompt is documented as valid (text_pairs keeps ""), but it gave no token to learn the
    completion's first token from, and a batch of empty prompts crashed the evaluation (input_ids (B, 0))
    after training had run."""
    eos = tokenizer.eos_token_id
    completion = tokenizer.encode(" war king")
    [example] = causal_lm_examples([""], [" war king"], tokenizer, 24, "f")
    assert example["input_ids"] == [eos, *completion, eos]
    assert example["labels"] == [-100, *completion, eos] and example["prompt_length"] == 1
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=32, n_embd=16, n_layer=1,
                                       n_head=2, **ids_of(tokenizer))).eval()
    examples = causal_lm_examples(["", ""], [" war", " love"], tokenizer, 24, "f")
    metrics = GenerationEvaluator(examples, "causal_lm", tokenizer, 2, max_new_tokens=4)(model)
    assert set(metrics) == {"loss", "exact_match", "chrf"}


def test_a_generation_max_length_past_barts_positions_is_capped_not_fatal(tokenizer, caplog):
    """generate refused max_new_tokens past max_position_embeddings: the run died at its first evaluation,
    after --eval_steps steps of training (GPT-2's evaluations were capped already)."""
    torch.manual_seed(0)
    config = BartConfig(vocab_size=tokenizer.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        max_position_embeddings=16, decoder_start_token_id=tokenizer.eos_token_id,
                        **ids_of(tokenizer))
    model = BartForConditionalGeneration(config).eval()
    examples = seq2seq_examples(["king war"], ["war king"], tokenizer, 16)
    evaluator = GenerationEvaluator(examples, "seq2seq", tokenizer, 2, num_beams=2, max_new_tokens=40)
    with caplog.at_level("WARNING"):
        evaluator(model)
        evaluator(model)
    said = [r.getMessage() for r in caplog.records if "generation_max_length" in r.getMessage()]
    assert said == ["--generation_max_length 40 is past the decoder's 16 positions; generating at most 16 new "
                    "tokens"]  # once per run, not once per evaluation


def test_evaluate_generation_names_a_multi_task_run(tmp_path):
    """A multi-task run's eval_results.json has "tasks", not "task": the command died with KeyError 'task'."""
    (tmp_path / "eval_results.json").write_text(json.dumps({"metrics": {}, "tasks": {"genre": {}}}))
    with pytest.raises(ValueError, match="holds a multi-task model, not a generation run"):
        evaluate_saved(tmp_path)


# -- chrF -----------------------------------------------------------------------------------------
def test_chrf_equals_sacrebleu_where_its_docstring_says_and_empty_is_empty():
    # sacrebleu 2.6.0, CHRF() defaults: corpus_score(hypotheses, [references]).score
    assert chrf(["the cat sat on the mat", "a dog barked loudly"],
                ["the cat is on the mat", "the dog barked"]) == pytest.approx(63.37249906922069)
    assert chrf(["掌绵不称吾应笑，典郡无能我自知。", "欲奠忆魂魂更问"],
                ["掌纶不称吾应笑，典郡无能我自知。", "欲奠忠魂何处问"]) == pytest.approx(68.83942921767662)
    assert chrf(["abcabcabc"], ["abcabc"]) == pytest.approx(83.4542337114218)  # repeated n-grams, clipped
    # Spaces do not count, so a blank output against an empty reference is as right as "" against "".
    assert chrf([" "], [""]) == chrf([""], [""]) == 100.0
    assert chrf([" ", "x"], ["", ""]) == 0.0


def test_a_failed_save_of_a_new_encoder_bart_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    """save removed new_encoder/front.json before save_pretrained; when that failed (disk full), the earlier
    model's files stayed but it loaded, with no error, as a plain BART."""
    from pathlib import Path

    from minibert.finetune.new_encoder import BartWithNewEncoder
    from minibert.finetuning import load_finetuned

    config = BartConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32)
    torch.manual_seed(0)
    BartWithNewEncoder(BartForConditionalGeneration(config), vocab_size=30, pad_token_id=1).save(tmp_path)
    write_text = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name.endswith(".tmp"):  # save_pretrained's files, written aside first
            raise OSError(28, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        BartWithNewEncoder(BartForConditionalGeneration(config), vocab_size=30, pad_token_id=1).save(tmp_path)
    monkeypatch.setattr(Path, "write_text", write_text)
    assert type(load_finetuned(tmp_path)).__name__ == "BartWithNewEncoder"

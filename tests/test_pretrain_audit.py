"""An audit of pretraining as a user runs it on their own corpus and settings: each test fails without its fix."""

import json
import logging
import math
from contextlib import nullcontext

import torch

from minibert.data import build_objective
from minibert.pretraining import PretrainingOptions, build_model, make_eval_fn
from minibert.tokenizer import train_tokenizer

BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
GPT = {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_inner": 64}
BART = {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
        "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64}
# short one-sentence documents: at 15% masking most examples have no masked token
SHORT = [["To be or not."], ["Yes."], ["No way."], ["Go home now."]] * 8


class CpuTrainer:
    """What make_eval_fn asks of the trainer: its device and autocast."""

    device = torch.device("cpu")

    def autocast(self):
        return nullcontext()


def test_held_out_measures_are_averaged_over_the_batches_that_define_them():
    """A held-out batch with no masked token has no MLM loss or accuracy (NaN): its examples were left out of
    the sum but not of the denominator, which pulled the held-out loss and accuracy towards 0 (with batch 1 on
    short texts, the loss read 1.5 where it was 3.9)."""
    tok = train_tokenizer([" ".join(d) for d in SHORT], kind="wordpiece", vocab_size=200)
    objective = build_objective("mlm", tok, 32, seed=42)
    examples = objective.examples(SHORT)
    torch.manual_seed(0)
    model = objective.build_model(BERT).eval()
    with torch.no_grad():
        measured = make_eval_fn(objective, examples, 1, CpuTrainer())(model)
        losses = []
        for start in range(len(examples)):  # the same batches and masks as the evaluation's
            batch = objective.collate(examples[start:start + 1], torch.Generator().manual_seed(start))
            losses.append(float(model(**batch).loss))
    defined = [v for v in losses if not math.isnan(v)]
    assert 0 < len(defined) < len(losses)  # the case: some batches have no masked token
    assert measured["loss"] == sum(defined) / len(defined)


def test_a_config_files_special_token_ids_give_way_to_the_tokenizers(tmp_path, caplog):
    """--config_file is "a config.json of the family": Hugging Face's gpt2 config says eos 50256, a BERT config
    may name another pad id. The file's ids were kept, so the saved GPT-2's generate never stopped at the </s>
    its documents end with, and a pad_token_id on a real token froze that token's input embedding at zero."""
    docs = [["The king is gone.", "Where art thou, my lord?"], ["Good night, sweet prince.", "Go home now."]]
    texts = [" ".join(d) for d in docs]
    cases = [("mlm", train_tokenizer(texts, kind="wordpiece", vocab_size=200), {**BERT, "pad_token_id": 5}),
             ("clm", train_tokenizer(texts, kind="bytelevel_bpe", vocab_size=300, frame=False),
              {**GPT, "vocab_size": 50257, "bos_token_id": 50256, "eos_token_id": 50256})]
    for objective_name, tok, config in cases:
        path = tmp_path / f"{objective_name}.json"
        path.write_text(json.dumps(config))
        objective = build_objective(objective_name, tok, 16)
        options = PretrainingOptions(objective=objective_name, config_file=str(path), max_seq_length=16)
        with caplog.at_level(logging.WARNING, logger="minibert.pretraining"):
            model, _ = build_model(options, objective)
        if objective_name == "mlm":
            assert model.config.pad_token_id == tok.pad_token_id
            embedding = model.bert.embeddings.word_embeddings
            assert embedding.padding_idx == tok.pad_token_id  # not token 5, a word piece of the corpus
        else:
            eos = tok.eos_token_id
            assert (model.config.bos_token_id, model.config.eos_token_id) == (eos, eos)
            assert model.config.vocab_size == 50257  # the rest of the file is kept
    assert "pad_token_id 5 -> 0" in caplog.text and "eos_token_id 50256 -> " in caplog.text


def test_bart_forces_the_tokenizers_eos_not_fairseqs():
    """BartConfig's forced_eos_token_id defaults to 2 (fairseq's </s>); BART pretrained with another vocabulary
    (a WordPiece --tokenizer: 2 is [CLS], [SEP] is the eos) ended every generation cut at max_length with
    [CLS]."""
    tok = train_tokenizer(["The king is gone. Where art thou, my lord?"], kind="wordpiece", vocab_size=100)
    objective = build_objective("bart", tok, 16)
    model = objective.build_model(BART).eval()
    assert tok.sep_token_id != 2 and model.config.eos_token_id == tok.sep_token_id
    assert model.config.forced_eos_token_id == tok.sep_token_id
    source = torch.tensor([[tok.cls_token_id, 7, 8, 9, tok.sep_token_id]])
    out = model.generate(source, max_length=2, min_length=2, num_beams=1, do_sample=False)
    assert out[0, -1].item() == tok.sep_token_id


def test_the_passes_of_a_two_phase_run_count_the_second_phases_examples(tmp_path):
    """The second phase's steps go over its own (longer, so fewer) examples: counting all the steps against the
    first phase's examples printed 0.2 passes for a run that made 0.45, and kept the memorisation warning silent."""
    from minibert.data import read_records
    from minibert.engine import TrainingArguments
    from minibert.pretraining import run_pretraining

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": r["text"][:1500]}) + "\n" for r in read_records("shakespeare")[:6]))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(BERT))
    options = PretrainingOptions(objective="mlm", corpus=[str(corpus)], config_file=str(config), vocab_size=300,
                                 max_seq_length=16, max_seq_length_phase2=64, validation_share=0.0,
                                 data_cache_dir=str(tmp_path / "cache"))
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=8, phase2_ratio=0.5,
                             per_device_train_batch_size=4, logging_steps=1, save_steps=100, device="cpu",
                             plot_loss=False)
    result = run_pretraining(options, args)
    # the engine's epochs made in each phase (counted in batches, the last one short: within 5% here)
    last_epoch = {r["phase"]: r["epoch"] for r in result.train.history if "loss" in r}
    assert set(last_epoch) == {0, 1}
    assert math.isclose(result.passes, last_epoch[0] + last_epoch[1], rel_tol=0.05)
    summary = json.loads((tmp_path / "run" / "pretraining_summary.json").read_text())
    assert summary["passes_over_corpus"] == result.passes

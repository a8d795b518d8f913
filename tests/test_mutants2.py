"""Tests written from a second mutation pass: each pins a rule that a single-point change to the code (a
flipped comparison, an off-by-one, a dropped check) broke without any other test noticing. Each test names
the rule and its reference (Hugging Face's generate and tokenizers, a hand computation, the docstring).

Modules covered: generation, checkpoint, engine/checkpointing, data/{prepared, corpus}, tokenizer,
engine/trainer, finetune/pooling, sentence_embeddings.
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers.generation import logits_process as lp

from minibert.checkpoint import _template
from minibert.data.corpus import corpus_files, join_sentences, load_works, read_records, split_sentences, split_works
from minibert.data.prepared import (
    continuation_table,
    file_fingerprint,
    prepare_corpus,
    token_dtype,
    tokenize_in_memory,
)
from minibert.engine import Trainer, TrainingArguments, checkpointing
from minibert.engine.distributed import DistributedContext
from minibert.finetune.pooling import WeightedLayerPooling, check_pooling
from minibert.generation import _apply, ban_repeated_ngrams, build_processors, top_p_filter
from minibert.models.bart import BartPreTrainedModel
from minibert.models.bert import BertPreTrainedModel
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel
from minibert.sentence_embeddings import chance_scores, retrieval_scores
from minibert.tokenizer import check_unknown_tokens, clean_up_tokenization, load_tokenizer, train_tokenizer

NEG_INF = float("-inf")
TEXT = ["the quick brown fox jumps over the lazy dog. a stitch in time saves nine! every cloud has a silver "
        "lining."] * 4


# the two kinds, trained on TEXT once for the module
wordpiece = pytest.fixture(scope="module", name="wordpiece")(lambda: train_tokenizer(TEXT, vocab_size=300))
bpe = pytest.fixture(scope="module", name="bpe")(lambda: train_tokenizer(TEXT, kind="bytelevel_bpe", vocab_size=300))


@pytest.fixture(scope="module")
def gpt_pair():
    """A tiny GPT-2, Hugging Face's and minibert's with the same weights; eos (7) is made likely (its embedding,
    tied to the output layer, scaled up), so beams end early and often."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=32, bos_token_id=7,
                                     eos_token_id=7, pad_token_id=1)
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        hf.transformer.wte.weight[7] *= 4
    ours = GPT2LMHeadModel(GPT2Config.from_dict(config.to_dict()))
    ours.load_hf_state_dict(hf.state_dict())
    return hf, ours.eval()


# -- generation ---------------------------------------------------------------------------------------------
def test_score_filters_match_hugging_face_at_their_edges():
    # No-repeat n-grams with a row of exactly n tokens: its one window is the whole row, whose first n - 1
    # tokens may equal its last n - 1 ([5, 5] then 5 would repeat the 2-gram "5 5"). Random rows of the other
    # tests are longer. Top-p at an exact tie: four equal scores are 1/4 each, and the mass at or below the
    # second worst is 0.5 = 1 - p, so it goes (Hugging Face's `<=`): two tokens stay, not three.
    scores = torch.zeros(2, 6)
    rows = torch.tensor([[5, 5], [2, 3]])
    for n in (2, 3):
        theirs = lp.NoRepeatNGramLogitsProcessor(n)(rows, scores)
        torch.testing.assert_close(ban_repeated_ngrams(scores, rows, n), theirs, atol=0, rtol=0)
    assert ban_repeated_ngrams(scores, rows, 2)[0, 5] == NEG_INF
    tie = torch.zeros(1, 4)
    mine = top_p_filter(tie, 0.5)
    torch.testing.assert_close(mine, lp.TopPLogitsWarper(0.5)(None, tie), atol=0, rtol=0)
    assert int((mine > NEG_INF).sum()) == 2


def test_eos_is_banned_only_while_the_row_is_shorter_than_min_length():
    # Hugging Face's MinLengthLogitsProcessor: eos is impossible while len(row) < min_length, and possible
    # from a row of exactly min_length tokens on (the token that comes then is the (min_length + 1)-th).
    procs = build_processors(repetition=1.0, ignore_before=None, no_repeat_ngram_size=0, eos=[3], min_length=4,
                             forced_bos=None, forced_eos=None, max_length=10, do_sample=False, temperature=1.0,
                             top_k=0, top_p=1.0, min_keep=1)
    scores = torch.randn(2, 8)
    for length in (3, 4, 5):
        rows = torch.ones(2, length, dtype=torch.long)
        theirs = lp.MinLengthLogitsProcessor(4, [3])(rows, scores.clone())
        torch.testing.assert_close(_apply(procs, rows, scores), theirs, atol=0, rtol=0)
        assert bool((_apply(procs, rows, scores)[:, 3] == NEG_INF).all()) == (length < 4)


def test_beam_sampling_keeps_one_token_more_than_there_are_eos_ids(gpt_pair):
    # Hugging Face's generate builds its top-k / top-p warpers for beam sampling with min_tokens_to_keep =
    # len(eos ids) + 1, so a beam can go on even when every eos id is drawn: top_k=1 still keeps 2 tokens.
    hf, ours = gpt_pair
    ids = torch.tensor([[3, 9, 4], [12, 5, 6]])
    kwargs = dict(do_sample=True, num_beams=2, top_k=1, max_new_tokens=6, num_return_sequences=2)
    torch.manual_seed(5)
    theirs = hf.generate(ids, **kwargs)
    torch.manual_seed(5)
    assert torch.equal(ours.generate(ids, **kwargs), theirs)


def _generate_counting_steps(hf, ours, ids, kwargs):
    """(output, decoding steps) of Hugging Face's generate and of minibert's: one forward pass per step."""
    theirs_calls, mine_calls = [], []
    hook = hf.register_forward_hook(lambda *_: theirs_calls.append(1))
    try:
        theirs = hf.generate(ids, **kwargs)
    finally:
        hook.remove()
    forward = ours._generation_forward
    ours._generation_forward = lambda *a: mine_calls.append(1) or forward(*a)
    try:
        mine = ours.generate(ids, **kwargs)
    finally:
        del ours._generation_forward
    return (theirs, len(theirs_calls)), (mine, len(mine_calls))


def test_beam_search_with_early_stopping_stops_at_the_step_hugging_face_stops(gpt_pair):
    # early_stopping=True: an input is done once it holds num_beams finished hypotheses; when every input is,
    # decoding stops (the same tokens would come out if it went on, but every further step is wasted work).
    # length_penalty 2 keeps the heuristic of early_stopping=False going here (10 steps, not 25).
    hf, ours = gpt_pair
    ids = torch.tensor([[3, 9, 4], [12, 5, 6]])
    kwargs = dict(num_beams=3, early_stopping=True, length_penalty=2.0, max_new_tokens=25)
    (theirs, theirs_steps), (mine, mine_steps) = _generate_counting_steps(hf, ours, ids, kwargs)
    assert torch.equal(mine, theirs)
    assert mine_steps == theirs_steps < 25


def test_an_input_done_under_early_stopping_takes_no_more_hypotheses(gpt_pair):
    # early_stopping=True: an input holding num_beams finished hypotheses is done while the batch's other inputs
    # decode on; a better hypothesis of it found later must not replace one (Hugging Face bars them), or the
    # tokens returned would depend on the other inputs of the batch.
    hf, ours = gpt_pair
    ids = torch.tensor([[11, 25, 36], [21, 5, 21], [35, 8, 25], [27, 2, 8]])
    kwargs = dict(num_beams=2, early_stopping=True, length_penalty=2.0, max_new_tokens=15, num_return_sequences=2)
    assert torch.equal(ours.generate(ids, **kwargs), hf.generate(ids, **kwargs))


def test_beam_search_that_never_stops_early_bounds_a_beam_by_the_longest_output(gpt_pair):
    # early_stopping="never" with a positive length penalty: a running beam could still win at the longest
    # length it can reach, max_length - prompt, so that is the length its score is judged at, as Hugging Face's.
    hf, ours = gpt_pair
    ids = torch.tensor([[3, 9, 4], [12, 5, 6]])
    for penalty in (0.5, 2.0):
        kwargs = dict(num_beams=3, early_stopping="never", length_penalty=penalty, max_new_tokens=12)
        (theirs, theirs_steps), (mine, mine_steps) = _generate_counting_steps(hf, ours, ids, kwargs)
        assert torch.equal(mine, theirs) and mine_steps == theirs_steps


def test_a_prompt_holding_eos_is_not_masked_when_pad_is_eos(gpt_pair):
    # Hugging Face infers a mask from pad tokens only when pad differs from every eos id: when they are one
    # token (GPT-2 without a pad token), an eos in the prompt is a real token, attended to.
    hf, ours = gpt_pair
    ids = torch.tensor([[3, 7, 4, 9]])
    theirs = hf.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=7, max_new_tokens=5)
    assert torch.equal(ours.generate(ids, pad_token_id=7, max_new_tokens=5), theirs)


def test_left_padding_is_not_penalised_as_a_repetition(gpt_pair):
    # Hugging Face passes each row's padding length to its repetition penalty (prompt_ignore_length): pad tokens
    # are not "already in the row". Here the pad is the likely eos, so penalising it changes what comes out.
    hf, ours = gpt_pair
    ids = torch.tensor([[7, 7, 3, 9], [4, 5, 6, 2]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    kwargs = dict(attention_mask=mask, pad_token_id=7, repetition_penalty=3.0, max_new_tokens=6)
    assert torch.equal(ours.generate(ids, **kwargs), hf.generate(ids, **kwargs))


# -- checkpoint (weight names) ------------------------------------------------------------------------------
def test_layer_numbers_of_two_digits_are_renamed_both_ways():
    # BERT-base has 12 layers: "encoder.layer.11..." must map to "layers.11..." and back (a one-digit
    # pattern found no layer index in it, and the key was left unmatched).
    assert _template("h.11.attn.c_attn.weight") == ("h.{}.attn.c_attn.weight", "11")
    table = BertPreTrainedModel.weight_map
    ours, part = table.to_ours("encoder.layer.11.attention.self.query.weight")
    assert part == "base" and ".11." in ours
    assert table.to_theirs(ours) == ("encoder.layer.11.attention.self.query.weight", "base")


def test_two_aliases_of_one_tensor_that_differ_are_refused():
    # BART's encoder and decoder embed_tokens are both read as `shared`: a checkpoint holding them apart (untied)
    # cannot be held by one tensor, and loading one silently would lose the other's training.
    table = BartPreTrainedModel.weight_map
    same = torch.ones(3, 2)
    state = table.resolve_aliases({"model.encoder.embed_tokens.weight": same,
                                   "model.decoder.embed_tokens.weight": same})
    assert torch.equal(state["model.shared.weight"], same)
    with pytest.raises(ValueError, match="differ"):
        table.resolve_aliases({"model.encoder.embed_tokens.weight": same,
                               "model.decoder.embed_tokens.weight": torch.zeros(3, 2)})



# -- engine/checkpointing -----------------------------------------------------------------------------------
def _save(output_dir, step, model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return checkpointing.save_checkpoint(output_dir, step, model=model, optimizer=optimizer, scheduler=scheduler,
                                         scaler=torch.amp.GradScaler("cpu", enabled=False),
                                         trainer_state={"global_step": step}, context=DistributedContext())


def test_a_checkpoint_is_complete_only_with_its_model_and_a_resaved_step_leaves_no_copy(tmp_path):
    # "last" must never pick a checkpoint whose model_state.pt is gone (a copy cut short): it could not be
    # resumed. Saving a step again sets the old copy aside only until the new one is in place.
    model = nn.Linear(2, 2)
    for step in (1, 2, 2):
        _save(tmp_path, step, model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-2"]
    (tmp_path / "checkpoint-2" / checkpointing.MODEL_FILE).unlink()
    assert checkpointing.list_checkpoints(tmp_path) == [tmp_path / "checkpoint-1"]
    assert checkpointing.resolve_checkpoint("last", tmp_path) == tmp_path / "checkpoint-1"


def test_a_resume_on_a_rank_the_checkpoint_has_no_generators_for_takes_rank_0s(tmp_path, caplog):
    # A run resumed with more processes than saved it: rank 1 finds no rng_state_1.pt and takes rank 0's, with a
    # warning, rather than failing to open the missing file.
    model = nn.Linear(2, 2)
    directory = _save(tmp_path, 3, model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    state = checkpointing.load_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler,
                                          scaler=torch.amp.GradScaler("cpu", enabled=False),
                                          context=DistributedContext(rank=1, world_size=2))
    assert state == {"global_step": 3} and "rng_state_1.pt missing" in caplog.text



# -- data/prepared ------------------------------------------------------------------------------------------
def test_token_ids_are_stored_in_the_smallest_type_that_holds_them():
    # uint16 holds ids 0..65535: a vocabulary of 65,536 fits, one more token needs uint32 (else ids wrap).
    assert token_dtype(1 << 16) == np.uint16 and token_dtype((1 << 16) + 1) == np.uint32


def test_another_text_column_of_a_file_is_another_prepared_corpus(tmp_path):
    # --text_column picks other text from the same file: its cache must not be the first column's.
    file = tmp_path / "rows.jsonl"
    file.write_text(json.dumps({"text": "a b", "body": "c d"}) + "\n")
    assert file_fingerprint(file) == file_fingerprint(file, "text") != file_fingerprint(file, "body")


def test_prepared_tokens_are_the_tokenizers_with_a_leading_space_and_specials_start_words(bpe):
    # Each sentence is encoded as " " + sentence, so a byte-level BPE sees the word boundary it sees in running
    # text (its first word as "Ġquick", not "quick"). A special token is never the continuation of a word.
    sentences = ["quick brown fox.", "lazy dog saves nine!"]
    corpus = tokenize_in_memory([sentences], bpe)
    expected = [i for s in sentences for i in bpe.encode(" " + s)]
    assert corpus.tokens(0, 0, len(expected) + 1).tolist() == expected
    assert not continuation_table(bpe)[bpe.all_special_ids].any()


def test_a_sentence_or_document_that_gives_no_token_is_left_out(wordpiece):
    # "\x00\x01" is all control characters, which BERT's normaliser removes: no token, so no sentence (an empty
    # one would be drawn as a segment of nothing by the sentence-pair objectives); a document of such sentences
    # alone is no document.
    corpus = tokenize_in_memory([["quick fox.", "\x00\x01", "lazy dog."], ["\x00"], ["lazy fox."]], wordpiece)
    assert corpus.shards[0].sentences.tolist() == [0, 3, 6, 9]
    assert corpus.shards[0].documents.tolist() == [0, 2, 3] and corpus.work_names() == ["document 0", "document 2"]


def test_with_jiebas_words_every_sentence_starts_a_word():
    # A byte-level BPE cuts " 今天" into "Ġ" and the bytes of each character; the sentence's first token must start
    # a word (whole-word masking would otherwise join it to the previous sentence's last word).
    pytest.importorskip("jieba")
    zh = ["我們今天去公園散步。天氣很好，大家都很開心！明天還要去學校上課。"] * 20
    tokenizer = train_tokenizer(zh, kind="bytelevel_bpe", vocab_size=300)
    shard = tokenize_in_memory([["今天天氣很好。", "大家都很開心！"]], tokenizer, words="jieba").shards[0]
    assert shard.word_starts[shard.sentences[:-1]].all()


def test_prepared_work_names_number_documents_as_the_corpus_reader_does(tmp_path, wordpiece):
    # A document without a title is its own work, "document <n>" with n its record number among all the corpus's
    # records: a first file holding only an empty record still counts it, as load_works does, or the tokenizer and
    # the training run would hold out different works.
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": " "}) + "\n")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXT[:2]))
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    corpus = prepare_corpus(files, wordpiece, cache_dir=tmp_path / "cache")
    assert corpus.work_names() == [name for name, _ in load_works(files)] == ["document 1", "document 2"]




# -- data/corpus --------------------------------------------------------------------------------------------
def test_chinese_sentences_after_a_closing_straight_quote_join_without_a_space():
    # split_sentences closes a sentence after 。" (the quote it opened); joined back, no space comes between it and
    # the next Chinese sentence, though '"' is not a Chinese character: the text is as it was.
    text = '他說："你好。"我很好。'
    assert join_sentences(split_sentences(text)) == text


def test_any_share_of_held_out_works_holds_out_at_least_one():
    # 10% of 3 works rounds to none; the docstring's rule (and the held-out loss) needs at least one.
    assert len(split_works(["a", "b", "c"], 0.1)) == 1 and split_works(["a", "b", "c"], 0.0) == set()


def test_a_doubled_quote_in_a_cell_spanning_lines_is_a_quote_not_its_end(tmp_path):
    # "" inside a quoted CSV cell is one quote character: the cell below spans two lines and closes only at its
    # last quote, so it is well formed (a single step past "" took its second quote for the cell's end, and
    # refused the file as an unclosed cell).
    file = tmp_path / "rows.csv"
    file.write_text('text,label\n"line one\nsays ""hi"" there",1\n', encoding="utf-8")
    assert [r["text"] for r in read_records(file)] == ['line one\nsays "hi" there']


def test_a_corpus_directorys_subfolder_of_text_is_named_not_read(tmp_path, caplog):
    # Subfolders are not read: one holding corpus files is named in a warning, so that text is not left out unsaid.
    (tmp_path / "a.txt").write_text("one.\n")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "b.txt").write_text("two.\n")
    assert corpus_files(tmp_path) == [tmp_path / "a.txt"]
    assert "its subfolders more hold corpus files" in caplog.text


# -- tokenizer ----------------------------------------------------------------------------------------------
def test_decode_drops_negative_ids_and_cleans_up_as_transformers(wordpiece):
    # Beam search without an eos fills ended rows with -1, as Hugging Face's: decode skips them (the backend
    # cannot take a negative id). The clean-up is transformers' own, replacement for replacement.
    ids = wordpiece.encode("quick fox")
    assert wordpiece.decode([*ids, -1, -1]) == wordpiece.decode(ids) == "quick fox"
    text = "a , b . c ? d ! i do n't know , i 'm sure it 's we 've they 're ' x ' y"
    theirs = transformers.PreTrainedTokenizerBase.clean_up_tokenization(None, text)  # (it uses no `self`)
    assert clean_up_tokenization(text) == theirs



def test_a_vocab_txt_is_read_line_for_line_as_transformers_reads_it(tmp_path):
    # transformers' load_vocab strips only the line end: a token with spaces around it keeps them (stripped, it
    # became another token, or "" for an all-space one). With tokenizer_config naming one of BERT's normaliser
    # settings, the others take BertTokenizer's defaults: do_lower_case true.
    from transformers.models.bert.tokenization_bert import load_vocab

    lines = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", " x ", "  "]
    (tmp_path / "vocab.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"strip_accents": False}))
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.get_vocab() == dict(load_vocab(tmp_path / "vocab.txt"))
    assert tokenizer.do_lower_case is True and tokenizer.encode("HELLO") == [5]


def test_the_unknown_token_warning_starts_above_its_share_and_names_the_first_worst_text(wordpiece, caplog):
    # "above warn_above a warning": exactly 1 in 20 (5%) is not above 0.05. Of two texts with as many unknown
    # tokens, the first is named.
    unk, word = wordpiece.unk_token_id, wordpiece.encode("fox")[0]
    texts = ["first text", "second text"]
    share = check_unknown_tokens(wordpiece, [[unk] + [word] * 9, [unk] + [word] * 9], "the texts", "fix",
                                 text_of=lambda i: texts[i])
    assert share == pytest.approx(0.1) and "first text" in caplog.text and "second text" not in caplog.text
    caplog.clear()
    assert check_unknown_tokens(wordpiece, [[unk] + [word] * 19], "the texts", "fix") == pytest.approx(0.05)
    assert not caplog.records



def test_a_blank_line_in_merges_txt_is_skipped(tmp_path, bpe):
    # merges.txt as transformers writes it ("#version" then one merge per line) may end with a blank line (a
    # hand-edited or concatenated file): it is no merge, not a malformed one.
    bpe.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with open(tmp_path / "merges.txt", "a", encoding="utf-8") as f:
        f.write("\n\n")
    assert load_tokenizer(tmp_path).encode(" quick brown fox") == bpe.encode(" quick brown fox")



def test_a_renamed_special_token_survives_a_save_and_load(tmp_path):
    # tok.pad_token = tok.eos_token (as for GPT-2's batches) is saved in tokenizer_config.json; reading it back,
    # the file's names win over the family's usual ones (<pad> here), which only fill in what the files leave out.
    tokenizer = train_tokenizer(TEXT, kind="bytelevel_bpe", vocab_size=300)
    tokenizer.pad_token = "</s>"
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.pad_token == "</s>" and loaded.pad_token_id == tokenizer.eos_token_id



# -- engine/trainer -----------------------------------------------------------------------------------------
class _Regression(nn.Module):
    """y = x @ w: a loss to train, a dropout so that evaluation mode shows."""

    def __init__(self):
        super().__init__()
        self.linear, self.drop = nn.Linear(3, 1), nn.Dropout(0.5)

    def forward(self, x, y):
        return SimpleNamespace(loss=F.mse_loss(self.linear(self.drop(x)).squeeze(-1), y))


def _trainer(tmp_path, eval_fn=None, **overrides) -> Trainer:
    torch.manual_seed(0)
    data = [{"x": torch.randn(3), "y": torch.randn(())} for _ in range(16)]
    options = dict(output_dir=str(tmp_path / "run"), learning_rate=1e-2, per_device_train_batch_size=4, max_steps=5,
                   logging_steps=4, save_steps=100, device="cpu", seed=1, plot_loss=False, disable_tqdm=True)
    collate = lambda rows: {k: torch.stack([r[k] for r in rows]) for k in ("x", "y")}  # noqa: E731
    return Trainer(_Regression(), TrainingArguments(**{**options, **overrides}), data, collate, eval_fn=eval_fn)


def test_logging_first_step_logs_step_one_alone_and_records_hold_no_raw_sums(tmp_path):
    # Hugging Face's logging_first_step: a record at step 1 (the untrained model's loss), then every logging_steps.
    # A record holds means and rates, not the window's raw sums (tokens, data wait, step time).
    history = _trainer(tmp_path, logging_first_step=True).train().history
    assert [r["step"] for r in history] == [1, 4, 5]
    assert all("loss" in r and "tokens_per_second" in r and not {"tokens", "wait", "time"} & set(r) for r in history)



def test_an_undefined_metric_is_never_the_best_not_even_the_first(tmp_path):
    # A NaN metric (a Pearson correlation of constant predictions) never becomes the best, even with no best yet:
    # its checkpoint would be kept as the best and reloaded by load_best_model_at_end.
    trainer = _trainer(tmp_path)
    assert not trainer._is_better(float("nan")) and trainer._is_better(0.5)


def test_evaluation_runs_in_eval_mode_without_gradients_and_keeps_an_eval_prefix_once(tmp_path):
    # eval_fn runs on the model in eval mode (dropout off) under no_grad (no graph kept for metrics); a metric
    # eval_fn already names eval_loss is logged under that name, not eval_eval_loss.
    seen = []

    def eval_fn(model):
        seen.append((model.training, torch.is_grad_enabled()))
        return {"eval_loss": 1.0, "score": 2.0}

    history = _trainer(tmp_path, eval_fn=eval_fn).train().history
    assert seen == [(False, False)]
    assert {"step": 5, "eval_loss": 1.0, "eval_score": 2.0} in history


def test_metric_for_best_model_takes_hugging_faces_eval_prefix(tmp_path):
    # --metric_for_best_model eval_loss (Hugging Face's spelling) names eval_fn's "loss".
    trainer = _trainer(tmp_path, eval_fn=lambda model: {"loss": 0.25}, eval_steps=2, metric_for_best_model="eval_loss")
    assert trainer.train().best_metric == 0.25


def test_an_epoch_whose_batches_do_not_fill_the_last_accumulated_step_still_ends_with_a_step(tmp_path):
    # 16 examples, 4 per batch, 3 batches per step: one epoch is 2 steps (the second of one batch), as Hugging
    # Face's Trainer counts them (ceil), not 1 with the fourth batch left out.
    assert _trainer(tmp_path, max_steps=-1, num_train_epochs=1, gradient_accumulation_steps=3).total_steps == 2


# -- finetune/pooling ---------------------------------------------------------------------------------------
def test_pooling_layer_ranges_count_the_embeddings_as_hidden_state_0():
    # cls_layer may read any of the num_layers + 1 hidden states, the embeddings too (-(num_layers + 1) or 0);
    # weighted_layer's default starts at layer 1 at least, leaving the embeddings out.
    check_pooling("cls_layer", 2, layer=-3)
    with pytest.raises(ValueError, match="out of range"):
        check_pooling("cls_layer", 2, layer=-4)
    assert WeightedLayerPooling(8, num_layers=2).layer_start == 1


# -- sentence_embeddings ------------------------------------------------------------------------------------
def test_retrieval_ranks_the_most_similar_candidate_first():
    # Each query equals a candidate of its own label (cosine 1): recall@1 and MRR are 1; the candidate pointing
    # the other way (cosine -1) ranks last.
    queries = np.array([[1.0, 0.0], [0.0, 2.0]])
    candidates = np.array([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    scores = retrieval_scores(queries, candidates, ["a", "b"], ["a", "b", "b"], ks=(1, 2))
    assert scores == {"recall@1": 1.0, "recall@2": 1.0, "mrr": 1.0, "mrr_se": 0.0}



def test_chance_scores_cover_every_rank_the_first_relevant_can_take():
    # One relevant among 3: it is first, second or third with probability 1/3 each, so recall@3 is 1 and the
    # MRR (1 + 1/2 + 1/3) / 3; two relevant among 3: the first of them is at rank 1 (2/3) or 2 (1/3).
    assert chance_scores(3, 1, ks=(1, 3)) == pytest.approx({"recall@1": 1 / 3, "recall@3": 1.0, "mrr": 11 / 18})
    assert chance_scores(3, 2, ks=(1, 2)) == pytest.approx({"recall@1": 2 / 3, "recall@2": 1.0, "mrr": 5 / 6})

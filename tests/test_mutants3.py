"""Tests written from a third mutation pass: each pins a rule that a single-point change to the code (a
flipped comparison, an off-by-one, a dropped check, a changed default) broke without any other test noticing.
Each test names the rule and its reference (PyTorch, Hugging Face transformers, a paper, a hand computation,
the docstring).

Modules covered: engine/{trainer, schedules, optim, arguments}, data/{corpus, fast_wordpiece},
data/objectives/{sop, nsp, span, wwm, electra}, finetune/{unfreezing, ladder, multitask, task_data, beside_base}.
(Also mutated, each change caught by the suite already, of no effect, or with no reference to pin: data/chinese,
finetune/{adapters, adversarial, mixout, freeze}.)
"""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn

from minibert.engine import Trainer, TrainingArguments
from minibert.engine.distributed import DistributedContext
from minibert.engine.schedules import check_scheduler_kwargs, get_scheduler


# -- engine/schedules ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs", [
    # num_cycles 0 is a constant rate (cos 0 = 1), infinity no schedule at all
    ("cosine", {"num_cycles": 0}), ("cosine", {"num_cycles": math.inf}),
    # a restart count is a whole number >= 1: 0 never decays, True is no count
    ("cosine_with_restarts", {"num_cycles": 0}), ("cosine_with_restarts", {"num_cycles": True}),
    # power 0 never decays
    ("polynomial", {"power": 0.0}),
])
def test_schedule_kwargs_out_of_their_documented_range_are_refused(name, kwargs):
    # SCHEDULER_KWARGS' ranges: cosine num_cycles a finite number > 0, restarts a whole number >= 1, power > 0.
    with pytest.raises(ValueError, match="does not fit --lr_scheduler_type"):
        check_scheduler_kwargs(name, kwargs)


def test_a_polynomial_schedule_may_end_at_a_learning_rate_of_zero():
    # lr_end is "a number >= 0": 0 is Hugging Face's end of a linear decay; the multiplier at the last step is 0.
    check_scheduler_kwargs("polynomial", {"lr_end": 0.0})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = get_scheduler("polynomial", optimizer, 0, 4, lr_end=0.0)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr() == [0.0]


def test_schedule_kwargs_that_are_not_a_json_object_are_refused_by_name():
    # A list (a JSON array from the command line) is refused with the message, not an AttributeError mid-setup.
    with pytest.raises(ValueError, match="must be a JSON object"):
        check_scheduler_kwargs("linear", [])


def test_a_polynomial_lr_end_equal_to_the_learning_rate_is_a_constant_schedule():
    # get_scheduler's rule: lr_end "must not exceed the learning rate". Equal to it, the multiplier is
    # ((peak - lr_end) * remaining + lr_end) / peak = 1 at every step (a hand computation): a constant rate.
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = get_scheduler("polynomial", optimizer, 0, 3, lr_end=0.1)
    rates = []
    for _ in range(3):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.1] * 3)


# -- engine/trainer -----------------------------------------------------------------------------------------
class _Regression(nn.Module):
    """y = x @ w, a loss to train."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, x, y):
        return SimpleNamespace(loss=F.mse_loss(self.linear(x).squeeze(-1), y))


def _collate(rows):
    return {k: torch.stack([r[k] for r in rows]) for k in ("x", "y")}


def _trainer(tmp_path, n=16, **overrides) -> Trainer:
    torch.manual_seed(0)
    data = [{"x": torch.randn(3), "y": torch.randn(())} for _ in range(n)]
    options = dict(output_dir=str(tmp_path / "run"), learning_rate=1e-2, per_device_train_batch_size=4, max_steps=4,
                   logging_steps=4, save_steps=100, device="cpu", seed=1, plot_loss=False, disable_tqdm=True)
    return Trainer(_Regression(), TrainingArguments(**{**options, **overrides}), data, _collate)


def test_the_last_global_batch_under_ddp_is_completed_with_the_epochs_first_examples(tmp_path):
    # PyTorch's DistributedSampler pads an epoch to a multiple of the global batch with its first indices
    # (indices += indices[:padding_size]). 2 ranks of 4: 18 examples make 3 global batches of 8, the last
    # holding 2 examples and the epoch's first 6; 22 make 3, the last holding 6 and the first 2. Read in global
    # order (rank 0's batch, then rank 1's), the 24 indices are a permutation followed by its own first ones.
    for n in (18, 22):
        trainer = _trainer(tmp_path, n=n)
        shares = []
        for rank in (0, 1):
            trainer.context = DistributedContext(rank=rank, world_size=2)
            shares.append(trainer._epoch_batches(0, 0))
        assert all(len(b) == 4 for share in shares for b in share)
        flat = [i for g in range(len(shares[0])) for rank in (0, 1) for i in shares[rank][g]]
        assert len(flat) == 24 and sorted(flat[:n]) == list(range(n))
        assert flat[n:] == flat[: 24 - n]
    # one process keeps a short last batch, as DataLoader(drop_last=False) does: 22 = 5 x 4 + 2
    trainer.context = DistributedContext()
    assert [len(b) for b in trainer._epoch_batches(0, 0)] == [4, 4, 4, 4, 4, 2]


def test_a_samplers_batches_are_dealt_out_as_pytorchs_samplers_deal_them(tmp_path):
    # A sampler of batches under 3 processes: 4 batches are completed to 6 with the epoch's first 2
    # (DistributedSampler's padding with its first items), rank r taking batches r and r + 3. A sampler of indices
    # is cut into batches, and drop_last drops only an incomplete last one (DataLoader's drop_last): 16 indices
    # in batches of 4 lose none.
    base = _trainer(tmp_path)
    trainer = Trainer(_Regression(), base.args, base.datasets[0], _collate, sampler=[[0, 1], [2, 3], [4, 5], [6, 7]])
    shares = []
    for rank in range(3):
        trainer.context = DistributedContext(rank=rank, world_size=3)
        shares.append(trainer._epoch_batches(0, 0))
    assert shares == [[[0, 1], [6, 7]], [[2, 3], [0, 1]], [[4, 5], [2, 3]]]
    args = dataclasses.replace(trainer.args, dataloader_drop_last=True)
    for n, expected in ((16, 4), (18, 4)):
        trainer = Trainer(_Regression(), args, _trainer(tmp_path, n=n).datasets[0], _collate, sampler=list(range(n)))
        assert [len(b) for b in trainer._epoch_batches(0, 0)] == [4] * expected


def test_examples_seen_counts_every_example_read_not_batches_or_padded_batches(tmp_path):
    # One epoch of 10 examples in batches of 4 reads 4 + 4 + 2 = 10 examples (a hand count), whatever the
    # accumulation; 3 steps of 2 micro-batches of 4 read 24.
    trainer = _trainer(tmp_path / "a", n=10, max_steps=-1, num_train_epochs=1)
    assert trainer.train().global_step == 3 and trainer.state.examples_seen == 10
    trainer = _trainer(tmp_path / "b", n=40, max_steps=3, gradient_accumulation_steps=2)
    trainer.train()
    assert trainer.state.examples_seen == 24


def test_the_logged_gradient_norm_is_the_mean_over_the_logging_window(tmp_path):
    # Every measurement of a record is the mean over the steps since the last record (TrainerState's window), the
    # gradient norm as the loss: the same run logged every 2 steps gives the means of its per-step norms.
    each = [r["grad_norm"] for r in _trainer(tmp_path / "a", logging_steps=1, max_grad_norm=0.0).train().history]
    pairs = [r["grad_norm"] for r in _trainer(tmp_path / "b", logging_steps=2, max_grad_norm=0.0).train().history]
    assert len(each) == 4 and pairs == pytest.approx([(each[0] + each[1]) / 2, (each[2] + each[3]) / 2])


class _Classifier(nn.Module):
    """Three classes from x; labels of -100 are ignored, so a batch of only those has a loss of 0 / 0 (NaN)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x, labels):
        return SimpleNamespace(loss=F.cross_entropy(self.linear(x), labels, ignore_index=-100))


def test_an_unlabelled_steps_undefined_loss_stays_out_of_the_logged_mean(tmp_path):
    # A step whose batch has no labelled token is skipped, its loss undefined (a mean over nothing); only finite
    # values join a record's means (the trainer's rule for the loss parts and metrics, and for the loss): the
    # record of 4 steps, the second unlabelled, is the mean of the other three, not NaN.
    calls = []

    def collate(rows):
        calls.append(1)
        labels = torch.tensor([r["labels"] for r in rows])
        return {"x": torch.stack([r["x"] for r in rows]), "labels": labels * 0 - 100 if len(calls) == 2 else labels}

    torch.manual_seed(0)
    data = [{"x": torch.randn(3), "labels": i % 3} for i in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=4, logging_steps=4, device="cpu",
                             per_device_train_batch_size=4, plot_loss=False)
    history = Trainer(_Classifier(), args, data, collate).train().history
    assert len(history) == 1 and math.isfinite(history[0]["loss"]) and history[0]["skipped_steps"] == 1


def test_the_logged_epoch_holds_the_share_of_the_epoch_done(tmp_path):
    # Hugging Face's Trainer logs epoch + (steps done in it) / (steps in an epoch): 16 examples in batches of 4 are
    # 4 steps an epoch, so steps 2, 4 and 6 log 0.5, 1.0 and 1.5.
    history = _trainer(tmp_path, max_steps=6, logging_steps=2).train().history
    assert [r["epoch"] for r in history] == [0.5, 1.0, 1.5]


def test_a_metric_that_only_equals_the_best_does_not_replace_it(tmp_path):
    # Hugging Face's Trainer keeps the first of equal metrics (operator.greater / operator.less, strict), so a
    # plateau does not move the best checkpoint to a later one.
    for metric, better, worse in (("accuracy", 0.75, 0.25), ("loss", 0.25, 0.75)):
        trainer = _trainer(tmp_path, metric_for_best_model=metric)
        trainer.state.best_metric = 0.5
        assert trainer._is_better(better) and not trainer._is_better(0.5) and not trainer._is_better(worse)


def test_steps_per_epoch_divides_the_batches_by_the_accumulation(tmp_path):
    # 16 examples in batches of 4 are 4 batches, 2 optimizer steps of 2 micro-batches (gradual unfreezing's
    # default stage is one epoch of steps).
    assert _trainer(tmp_path, gradient_accumulation_steps=2).steps_per_epoch() == 2


# -- engine/arguments ---------------------------------------------------------------------------------------
# Fields minibert gives another default than Hugging Face's, each for a reason its comment gives
OWN_DEFAULTS = {"output_dir", "lr_scheduler_kwargs", "ddp_find_unused_parameters", "gradient_checkpointing",
                "logging_steps", "save_total_limit", "disable_tqdm"}


def test_training_arguments_default_as_hugging_faces_for_every_shared_name():
    # The module's promise: a flag a user knows from transformers means the same thing here, its default included
    # (AdamW's 5e-5, 0.9, 0.999, 1e-8; clipping at 1.0; 3 epochs; seed 42 ...).
    theirs = {f.name: f.default for f in dataclasses.fields(transformers.TrainingArguments)}
    ours = TrainingArguments()
    shared = [f.name for f in dataclasses.fields(TrainingArguments) if f.name in theirs and f.name not in OWN_DEFAULTS]
    assert len(shared) >= 20
    assert {name: getattr(ours, name) for name in shared} == {name: theirs[name] for name in shared}


# -- data/corpus --------------------------------------------------------------------------------------------
def test_a_single_letter_before_a_question_or_exclamation_mark_ends_the_sentence():
    # Only a period after one letter is an initial ("J. Smith"); "I?" and "O!" end their sentences.
    from minibert.data.corpus import split_sentences

    assert split_sentences("Was it I? Yes. Speak, J. Smith! O! Go.") == ["Was it I?", "Yes.", "Speak, J. Smith!",
                                                                         "O!", "Go."]


def test_only_a_file_without_newlines_ends_its_lines_at_a_lone_cr(tmp_path):
    # ends_lines_with_lone_cr's docstring: a file of lone \r ends (old Mac OS) is read so, but in a file of \r\n
    # ends a stray \r (\r\r\n, CRLF converted twice) ends no line.
    from minibert.data.corpus import ends_lines_with_lone_cr

    (tmp_path / "mac.txt").write_bytes(b"one.\rtwo.\r\rthree.\r")
    (tmp_path / "twice.txt").write_bytes(b"one.\r\r\ntwo.\r\n")
    assert ends_lines_with_lone_cr(tmp_path / "mac.txt") and not ends_lines_with_lone_cr(tmp_path / "twice.txt")


def test_extra_cells_of_only_spaces_past_the_header_are_harmless():
    # check_row_width: cells past the header's columns that hold nothing (trailing delimiters, here with a space)
    # are dropped; a cell holding a value is refused.
    from minibert.data.corpus import check_row_width

    row = {"text": "hello", "label": "1", None: [" ", ""]}
    check_row_width(row, 2, "f.csv", 2, ",")
    assert None not in row
    with pytest.raises(ValueError, match="3 cells but the header names 2"):
        check_row_width({"text": "hello", "label": "1", None: ["x"]}, 2, "f.csv", 2, ",")


def test_an_unclosed_quote_after_a_blank_crlf_line_is_named_at_its_own_line(tmp_path):
    # The row with the unclosed quote starts on line 3 (line 2 is blank, ended by \r\n as every line of the file):
    # the error names line 3, where the quote is, and the line it swallowed, 4.
    from minibert.data.corpus import read_records

    (tmp_path / "t.csv").write_bytes(b'text,label\r\n\r\n"open,1\r\nnext,2\r\n')
    with pytest.raises(ValueError, match=r"t\.csv:3: a cell there starts with a quote .* over line 4,"):
        read_records(tmp_path / "t.csv")


def test_an_unclosed_quote_in_a_file_of_lone_cr_line_ends_is_refused(tmp_path):
    # check_quotes_closed: a quote that never closes reads the rows after it into its cell; a file whose lines
    # end at a lone \r (old Mac OS; a task file is read with universal newlines) loses them so too.
    from minibert.finetune.task_data import read_rows

    (tmp_path / "t.csv").write_bytes(b'text,label\r"open,1\rnext,2\r')
    with pytest.raises(ValueError, match=r"t\.csv:2: a cell there starts with a quote"):
        read_rows(tmp_path / "t.csv")


def test_unnamed_columns_may_repeat_and_a_passed_text_column_is_named(tmp_path):
    # check_header: only a named column given twice is refused (the empty names a spreadsheet leaves after the
    # last column cannot be asked for); a missing --text_column is named with the columns that could be passed.
    from minibert.data.corpus import check_header, read_records

    check_header(["text", "", ""], "t.csv")
    with pytest.raises(ValueError, match="more than once"):
        check_header(["text", "text"], "t.csv")
    (tmp_path / "t.csv").write_text("title,content\nHamlet,to be\n")
    with pytest.raises(ValueError, match=r"^--text_column body: .*pass --text_column with the one that holds"):
        read_records(tmp_path / "t.csv", "body")


def test_a_json_title_of_0_or_false_names_a_work():
    # work_name's docstring: a title is any value but null and "" (0 and false name the works "0" and "False", as
    # the prepared corpus stores them); without one, the file's name (several files) or the document itself.
    from minibert.data.corpus import work_name

    assert [work_name(t, "dir/a.jsonl", False, 3) for t in (0, False, None, "")] == ["0", "False", "document 3",
                                                                                    "document 3"]
    assert work_name(None, "dir/a.jsonl", True, 3) == "a.jsonl"


# -- data/objectives ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wordpiece():
    from minibert.tokenizer import train_tokenizer

    return train_tokenizer(["the quick brown fox jumps over the lazy dog. a stitch in time saves nine!"] * 4,
                           vocab_size=200)


def test_span_wwm_and_electra_default_to_their_papers(wordpiece):
    from minibert.data.objectives.electra import ReplacedTokenDetection
    from minibert.data.objectives.span import SpanMaskedLM
    from minibert.data.objectives.wwm import WholeWordMaskedLM

    # SpanBERT: lengths ~ Geometric(0.2) clipped at 10 words, a mean of 3.8 words (section 3.1)
    lengths = SpanMaskedLM(wordpiece, 32).length_probs
    n = torch.arange(1, 11, dtype=torch.float)
    assert len(lengths) == 10 and float((n * lengths).sum()) == pytest.approx(3.8, abs=0.03)
    # ALBERT's n-grams: n = 1..3 with P(n) = (1/n) / (1 + 1/2 + 1/3) = 6/11, 3/11, 2/11 (section 4.1)
    torch.testing.assert_close(WholeWordMaskedLM(wordpiece, 32).length_probs, torch.tensor([6 / 11, 3 / 11, 2 / 11]))
    # ELECTRA: a generator 1/4 of the discriminator, the discriminator's loss weighed by lambda = 50; its data code
    # masks 85% of the chosen tokens and keeps the rest, no random tokens (the module's docstring)
    electra = ReplacedTokenDetection(wordpiece, 32)
    assert (electra.generator_size, electra.discriminator_weight, electra.temperature) == (0.25, 50.0, 1.0)
    assert (electra.mask_replace_prob, electra.random_replace_prob) == (0.85, 0.0)


@pytest.mark.parametrize("options", [
    {"adam_beta1": 1.0}, {"adam_beta2": 1.0},  # torch.optim.AdamW: betas in [0, 1)
    {"phase2_ratio": 0.0},  # a second phase of no step
    {"warmup_ratio": 1.0},  # a warmup as long as the run: no update at the peak rate ([0, 1), its message)
    {"bf16": True, "fp16": True},
    {"per_device_train_batch_size": 0}, {"gradient_accumulation_steps": 0}, {"logging_steps": 0},
    {"save_steps": 0}, {"eval_steps": 0}, {"save_total_limit": 0}, {"phase2_batch_size": 0},
])
def test_training_arguments_refuse_what_cannot_train(options):
    with pytest.raises(ValueError):
        TrainingArguments(**options)


def test_training_arguments_take_the_edges_pytorch_and_hugging_face_take():
    # AdamW takes eps = 0 (torch.optim checks 0 <= eps); max_steps > 0 wins over num_train_epochs, which may then
    # be 0 (Hugging Face); naming a compile mode or backend asks for compilation (Hugging Face); an error metric
    # such as rmse is better when lower, as a loss is.
    torch.optim.AdamW([nn.Parameter(torch.zeros(1))], eps=0.0)
    TrainingArguments(adam_epsilon=0.0)
    assert TrainingArguments(max_steps=5, num_train_epochs=0).max_steps == 5
    assert TrainingArguments(torch_compile_mode="reduce-overhead").torch_compile
    assert TrainingArguments(torch_compile_backend="aot_eager").torch_compile
    assert TrainingArguments(metric_for_best_model="eval_rmse").greater_is_better is False
    assert TrainingArguments(metric_for_best_model="accuracy").greater_is_better is True
    with pytest.raises(ValueError, match="Invalid beta"):  # the reason for [0, 1)
        torch.optim.AdamW([nn.Parameter(torch.zeros(1))], betas=(1.0, 0.999))


@pytest.mark.parametrize("kind, options", [("span", {"max_span_length": 0}), ("span", {"geometric_p": 0.0}),
                                           ("wwm", {"max_ngram": 0})])
def test_span_and_ngram_lengths_of_no_word_are_refused(wordpiece, kind, options):
    # A span of at most 0 words, or lengths drawn with p = 0, or n-grams of at most 0 words mask nothing:
    # refused, with the papers' values in the message (SpanBERT 0.2 and 10; ALBERT n-grams up to 3).
    from minibert.data.objectives.span import SpanMaskedLM
    from minibert.data.objectives.wwm import WholeWordMaskedLM

    with pytest.raises(ValueError, match="SpanBERT uses 0.2 and 10" if kind == "span" else "the default is 3"):
        (SpanMaskedLM if kind == "span" else WholeWordMaskedLM)(wordpiece, 32, **options)


def test_sop_takes_a_swap_probability_of_0_or_1(wordpiece):
    # SentenceOrderPrediction's range is [0, 1] (its error message): 0 never swaps (every label 0, in order), 1
    # always does (label 1); 1.5 is refused.
    from minibert.data.objectives.sop import SentenceOrderPrediction

    docs = [["the quick brown fox jumps.", "a stitch in time saves nine.", "the lazy dog."]] * 4
    for p in (0.0, 1.0):
        sop = SentenceOrderPrediction(wordpiece, 32, swap_probability=p)
        batch = sop.collate(sop.examples(docs), torch.Generator().manual_seed(0))
        assert batch["next_sentence_label"].tolist() == [int(p)] * 4
    with pytest.raises(ValueError, match="swap_probability must be in"):
        SentenceOrderPrediction(wordpiece, 32, swap_probability=1.5)


def test_sentences_that_exactly_fill_the_room_make_one_run(wordpiece):
    # nsp's runs: a run closes before the sentence that would overflow the room (max_seq_length - 3 for [CLS] A
    # [SEP] B [SEP]); sentences that fill it exactly stay together, so the pair holds all their tokens, uncut.
    from minibert.data.objectives.sop import SentenceOrderPrediction

    doc = ["the quick brown fox jumps.", "a stitch in time saves nine.", "the lazy dog."]
    lengths = [len(wordpiece.encode(s, add_special_tokens=False)) for s in doc]
    sop = SentenceOrderPrediction(wordpiece, sum(lengths) + 3)
    examples = sop.examples([doc] * 4)
    assert [len(e["a"]) + len(e["b"]) for e in examples] == [sum(lengths)] * 4


def test_a_random_next_segment_comes_from_another_document(wordpiece):
    # BERT's NSP: B is, half of the time, a segment of another document (label 1), never of A's own; a corpus of
    # one document has no other, and is refused.
    from minibert.data.objectives.nsp import NextSentencePrediction

    fox = ["the quick brown fox.", "the lazy dog jumps over.", "the fox jumps.", "over the lazy fox."] * 3
    stitch = ["a stitch in time saves nine!", "time saves a stitch!", "nine in time!", "a stitch saves nine!"] * 3
    nsp = NextSentencePrediction(wordpiece, 16)
    examples = nsp.examples([fox, stitch])
    words = [{t for s in doc for t in wordpiece.encode(s, add_special_tokens=False)} for doc in (fox, stitch)]
    own = [words[0] - words[1], words[1] - words[0]]  # the tokens only one document holds
    document = lambda ids: [bool(set(ids.tolist()) & own[k]) for k in (0, 1)].index(True)  # noqa: E731
    randoms = [e for e in examples if e["next_sentence_label"] == 1]
    assert len(randoms) >= 2 and all(document(e["a"]) != document(e["b"]) for e in randoms)
    with pytest.raises(ValueError, match="needs at least 2 documents"):
        nsp.examples([fox])


# -- data/fast_wordpiece ------------------------------------------------------------------------------------
def test_an_added_token_matched_after_normalising_sends_every_text_to_the_backend(wordpiece):
    # The module's docstring: for_backend gives None for added tokens that are matched after normalising (such a
    # token, "Zebra" here, is found in "zebra" too: a text's pieces are no longer encoded on their own).
    from tokenizers import AddedToken, Tokenizer

    from minibert.data.fast_wordpiece import FastWordPiece

    backend = Tokenizer.from_str(wordpiece.backend.to_str())
    assert FastWordPiece.for_backend(backend) is not None
    backend.add_tokens([AddedToken("Zebra", normalized=True)])
    assert FastWordPiece.for_backend(backend) is None


# -- finetune -----------------------------------------------------------------------------------------------
def _encoder(layers: int = 2) -> nn.Module:
    encoder = nn.Module()
    encoder.embeddings, encoder.layers = nn.Linear(2, 2), nn.ModuleList(nn.Linear(2, 2) for _ in range(layers))
    return encoder


def test_gradual_unfreezing_warns_of_a_run_that_ends_as_its_first_group_would_thaw(caplog):
    # The first group thaws after steps_per_stage steps, so a run of exactly that many trains the head alone. The
    # stage length proposed instead thaws all G groups (2 blocks and the embeddings: G = 3) and then trains them all
    # for a stage: (G + 1) stages in the run, 12 // 4 = 3 steps each (a hand computation).
    from minibert.finetune.unfreezing import GradualUnfreezing

    for total, warned in ((12, True), (13, False)):
        caplog.clear()
        trainer = SimpleNamespace(state=SimpleNamespace(global_step=0), total_steps=total, optimizer=None)
        with caplog.at_level("WARNING", logger="minibert.finetune.unfreezing"):
            GradualUnfreezing(_encoder(), steps_per_stage=12).on_train_begin(trainer)
        assert ("pass --unfreeze_stage_steps 3 to thaw all 3 groups" in caplog.text) is warned


def test_ladder_side_network_is_the_encoder_narrowed_by_r_with_a_sharp_gate_and_a_masked_mean():
    # LST (Sung et al. 2022): the side blocks are the encoder's reduced by r in every width, the feed-forward's
    # too (32 / 4 = 8); the gate is mu = sigmoid(alpha / T) with T = 0.1; the side network is read by a mean over
    # the real tokens, so padding a row changes nothing.
    from minibert.finetune.ladder import LadderSideClassifier
    from minibert.models.bert import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = LadderSideClassifier(BertModel(config), reduction=4, num_labels=3).eval()
    assert [layer.ffn.up.out_features for layer in model.side_layers] == [8, 8]
    ids = torch.tensor([[2, 7, 9, 11, 3]])
    inputs = []
    model.side_layers[0].register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    with torch.no_grad():
        model.gate_logits[0] = 0.1  # mu = sigmoid(0.1 / 0.1) = sigmoid(1)
        logits = model(ids).logits
        padded = model(torch.tensor([[2, 7, 9, 11, 3, 0, 0]]), attention_mask=torch.tensor([[1] * 5 + [0] * 2])).logits
        frozen = model.encoder(ids, output_hidden_states=True).hidden_states
        mu = torch.sigmoid(torch.tensor(1.0))
        torch.testing.assert_close(inputs[0], mu * model.down[0](frozen[0]) + (1 - mu) * model.down[1](frozen[1]))
    torch.testing.assert_close(padded, logits)


def test_the_mixture_gives_every_process_as_many_batches_and_a_small_task_no_repeat():
    # MixtureSampler's docstring: a task per global batch, world_size batches of it in a row (so the epoch's length
    # is a multiple of world_size: 10 examples in global batches of 2 x 4 are 2 rounds, 4 batches), and a task
    # smaller than the batch gives batches of all its examples, each once.
    from minibert.finetune.multitask import MixtureSampler

    sampler = MixtureSampler([6, 4], [0.5, 0.5], 4, torch.Generator().manual_seed(0), world_size=2)
    assert len(sampler) == len(list(sampler)) == 4
    small = list(MixtureSampler([2, 10], [1.0, 0.0], 4, torch.Generator().manual_seed(0), world_size=1))
    assert all(sorted(batch) == [0, 1] for batch in small)


def test_a_fractional_class_label_is_its_own_class():
    # _label_key: 1, 1.0 and "1" are one class; 0.5 and 1.5 stay themselves (not 0 and 1).
    from minibert.finetune.task_data import infer_task

    assert infer_task(["1", 1.0, 0], "single_label_classification", None).label_names == ["0", "1"]
    assert infer_task(["0.5", "1.5", "0.5"], "single_label_classification", None).label_names == ["0.5", "1.5"]


@pytest.mark.parametrize("hole", ["", " ", "NaN", "nan", "null", None, float("nan")])
def test_an_empty_nan_or_null_label_is_a_hole_not_a_class(hole):
    # task_data's docstring: an empty or NaN label is refused, a hole in the data and never a class (pandas writes
    # NaN into a CSV, JSON tools null).
    from minibert.finetune.task_data import _check_labels_present

    with pytest.raises(ValueError, match="row 2 .* has no label"):
        _check_labels_present(["good", hole, "bad"], "t.csv")


def test_labels_half_words_half_numbers_are_text_classes_not_a_typo():
    # _detect_task refuses "a few words among many numbers (a typo)": fewer words than half the labels. Half and
    # half is no typo: a classification over the labels as they are written.
    from minibert.finetune.task_data import infer_task

    task = infer_task(["1", "2", "yes", "no"], "auto", None)
    assert task.problem_type == "single_label_classification" and task.label_names == ["1", "2", "no", "yes"]
    with pytest.raises(ValueError, match="among 3 numeric labels"):
        infer_task(["1", "2", "3", "yes"], "auto", None)


@pytest.mark.parametrize("joined", ["sports|politics", "sports,politics"])
def test_a_text_label_holding_a_bar_or_comma_is_refused_as_several_labels(joined):
    # _detect_task: a text label with "|" or "," could be several labels written as one; it is refused, pointing to
    # multi-label classification (or --task_type single_label_classification if it is one label).
    from minibert.finetune.task_data import infer_task

    with pytest.raises(ValueError, match="looks like several labels"):
        infer_task(["sports", joined, "politics"], "auto", None)
    assert joined in infer_task(["sports", joined], "single_label_classification", None).label_names


def test_numeric_class_labels_take_their_numbers_order_and_ids_below_num_labels():
    # Class ids follow the labels' numbers (2 before 10, as a number sorts), and with --num_labels N the labels are
    # the ids 0 .. N-1: a label N is refused. A regression label must be a finite number (inf made the loss inf).
    from minibert.finetune.task_data import Task, encode_label, infer_task

    assert infer_task(["10", "2", "1"], "auto", None).label_names == ["1", "2", "10"]
    assert infer_task(["0", "2"], "auto", 3).label_names == ["0", "1", "2"]
    with pytest.raises(ValueError, match=r"labels \['3'\] do not fit --num_labels 3"):
        infer_task(["0", "3"], "auto", 3)
    assert encode_label("2.5", Task("regression"), "t.csv") == 2.5
    with pytest.raises(ValueError, match="not a finite number"):
        encode_label("inf", Task("regression"), "t.csv")


def test_multi_label_scores_are_probabilities():
    # A multi-label example written as scores gives one number in [0, 1] per class (BCE's targets); 2 is refused.
    from minibert.finetune.task_data import Task, encode_label

    task = Task("multi_label_classification", ["LABEL_0", "LABEL_1"])
    assert encode_label([0, 0.5], task, "t.jsonl") == [0.0, 0.5]
    with pytest.raises(ValueError, match=r"must be 2 numbers in \[0, 1\]"):
        encode_label([0, 2], task, "t.jsonl")


def test_a_key_added_to_the_bases_config_since_is_a_change(tmp_path):
    # beside_base's docstring: a base whose config changed since is refused (the same weights under another
    # setting are another model); a key the base's config.json gained counts as much as one changed.
    import json

    from safetensors.torch import save_file

    from minibert.finetune.beside_base import read_beside_base, save_beside_base

    base = tmp_path / "base"
    base.mkdir()
    save_file({"w": torch.zeros(2)}, str(base / "model.safetensors"))
    (base / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 16}))
    save_beside_base(nn.Linear(2, 2), tmp_path / "task", base, {"adapter_size": 4})
    assert read_beside_base(tmp_path / "task")[1] == {"adapter_size": 4}
    (base / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 16, "hidden_act": "relu"}))
    with pytest.raises(ValueError, match=r"config.json has changed since \(hidden_act: None -> 'relu'\)"):
        read_beside_base(tmp_path / "task")


# -- engine/optim -------------------------------------------------------------------------------------------
def test_build_optimizer_is_adamw_with_the_arguments_hyperparameters():
    # Hugging Face's Trainer builds AdamW(lr=learning_rate, betas=(adam_beta1, adam_beta2), eps=adam_epsilon) with
    # weight_decay; a group that names no rate or decay of its own takes those (torch.optim's defaults).
    from minibert.engine.optim import build_optimizer

    model = nn.Linear(3, 2)
    args = TrainingArguments(learning_rate=3e-4, adam_beta1=0.8, adam_beta2=0.95, adam_epsilon=1e-6,
                             weight_decay=0.05)
    groups = [{"params": [model.weight]}, {"params": []}, {"params": [model.bias], "weight_decay": 0.0}]
    optimizer = build_optimizer(model, args, groups)
    assert isinstance(optimizer, torch.optim.AdamW)
    expected = {"lr": 3e-4, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.05}
    assert {k: optimizer.defaults[k] for k in expected} == expected
    assert {k: optimizer.param_groups[0][k] for k in expected} == expected
    assert optimizer.param_groups[2]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="param_groups must be a list of groups"):
        build_optimizer(model, args, [{"lr": 1e-3}])


def test_a_flags_prefix_is_not_taken_for_the_flag(capsys):
    # CommandLineParser: flags by their whole name only (argparse's allow_abbrev took --max_step for --max_steps).
    from minibert.engine.arguments import CommandLineParser, add_arguments, from_namespace

    parser = CommandLineParser(prog="train.py")
    add_arguments(parser)
    assert from_namespace(parser.parse_args(["--max_steps", "5"])).max_steps == 5
    with pytest.raises(SystemExit):
        parser.parse_args(["--max_step", "5"])
    assert "--max_step: did you mean --max_steps?" in capsys.readouterr().err

"""Tests written from a mutation pass: each pins a rule that a single-point change to the code (a flipped
comparison, a dropped factor, a default changed from the paper's) broke without any other test noticing.
Each test names the rule and its reference (a paper, PyTorch, a hand computation, the module's own docstring).

Modules covered: engine/metrics, finetune/{swa, reinit, prior_wd, param_groups, smart_batching, losses,
optimizers, classifier}, data/objectives/{masking, mlm, clm, bart, base}, nn/{losses, feed_forward}.
"""

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minibert.data import build_objective
from minibert.data.objectives.base import Examples, masked_accuracy
from minibert.data.objectives.masking import choose_word_spans, ngram_probs, replace_80_10_10, word_ids_from_starts
from minibert.engine.metrics import ProgressBar, json_line, plot_losses
from minibert.finetune.classifier import PooledClassifier
from minibert.finetune.losses import task_loss, zlpr_loss
from minibert.finetune.optimizers import BertAdam, build_finetune_optimizer
from minibert.finetune.param_groups import grouped_lr_groups
from minibert.finetune.prior_wd import PriorWD
from minibert.finetune.reinit import reinit_pooler, reinit_top_layers
from minibert.finetune.smart_batching import PaddingCollator, UniformLengthSampler
from minibert.finetune.swa import SWA
from minibert.models.bert import BertConfig, BertForSequenceClassification, BertModel
from minibert.tokenizer import train_tokenizer

TEXT = ["the quick brown fox jumps over the lazy dog while a stitch in time saves nine and every cloud "
        "has a silver lining"] * 4


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer(TEXT, vocab_size=300)


@pytest.fixture(scope="module")
def bpe():
    return train_tokenizer(TEXT, kind="bytelevel_bpe", vocab_size=300)


def bert_config(**overrides) -> BertConfig:
    options = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertConfig(**{**options, **overrides})


# -- engine/metrics ---------------------------------------------------------------------------------------
def test_the_loss_plot_draws_every_loss_key_and_skips_its_null_points(tmp_path, monkeypatch):
    # "Plot every loss-like key": loss, mlm_loss and eval_loss, not the learning rate; a null (an undefined
    # measure) is left out of its line, so the line joins the points around it.
    import matplotlib.axes  # the dev extra's (here, not above: its import alone takes a second)

    drawn = {}
    real_plot = matplotlib.axes.Axes.plot

    def recording_plot(self, *args, **kwargs):
        drawn[kwargs["label"]] = (list(args[0]), list(args[1]))
        return real_plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording_plot)
    records = [{"step": 1, "loss": 3.0, "mlm_loss": 2.0, "learning_rate": 1e-3},
               {"step": 2, "eval_loss": float("nan")},
               {"step": 3, "loss": 2.0, "mlm_loss": 1.5},
               {"step": 4, "eval_loss": 1.0}]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json_line(r) for r in records))
    assert plot_losses(metrics, tmp_path / "loss.png") == tmp_path / "loss.png"
    assert drawn == {"loss": ([1, 3], [3.0, 2.0]), "mlm_loss": ([1, 3], [2.0, 1.5]), "eval_loss": ([4], [1.0])}


def test_the_progress_bar_advances_one_step_per_update():
    bar = ProgressBar(total=5)
    bar.update(None)
    bar.update({"loss": 1.5, "learning_rate": 1e-3})
    bar.update({"tokens_per_second": 10.0})
    assert bar.bar.n == 3
    assert "tok_s=10" in bar.bar.postfix
    bar.close()


# -- finetune/swa -------------------------------------------------------------------------------------------
def test_swa_evaluates_its_average_in_eval_mode():
    # The averaged model is a copy of the training model (in training mode): evaluated as it is, its dropout
    # would make every SWA score random. The trainer's own evaluation switches to eval mode; so must SWA's.
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    optimizer = torch.optim.SGD([{"params": model.parameters(), "lr": 0.1, "initial_lr": 0.1}], lr=0.1)
    seen = []
    trainer = SimpleNamespace(model=model, optimizer=optimizer, scheduler=None, total_steps=2,
                              state=SimpleNamespace(global_step=1), args=SimpleNamespace(learning_rate=0.1),
                              eval_fn=lambda m: seen.append(m.training) or {"score": 1.0})
    swa = SWA(start=0.0, anneal_steps=1)
    swa.on_step_end(trainer)
    swa.on_train_end(trainer)
    assert seen == [False] and swa.metrics == {"score": 1.0}


# -- finetune/reinit ----------------------------------------------------------------------------------------
def test_reinit_without_a_family_initialiser_draws_berts_rule_with_the_configs_range():
    # A PooledClassifier has no _init_weights of its own: reinit falls back to BERT's rule, Linear weights
    # ~ N(0, initializer_range), biases 0, LayerNorm weight 1 and bias 0 (https://arxiv.org/abs/2006.05987).
    torch.manual_seed(0)
    model = PooledClassifier(BertModel(bert_config(initializer_range=0.5)), "cls", num_labels=2)
    assert getattr(model, "_init_weights", None) is None
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert reinit_top_layers(model, 2) == [0, 1]  # every block may be re-initialised
    assert reinit_pooler(model)
    for layer in model.encoder.layers:
        for norm in (layer.attention_norm, layer.ffn_norm):
            assert torch.equal(norm.weight, torch.ones(32)) and torch.equal(norm.bias, torch.zeros(32))
        for linear in (layer.ffn.up, layer.ffn.down):
            assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
            assert linear.weight.mean().abs() < 0.05
            assert linear.weight.std().item() == pytest.approx(0.5, rel=0.1)
    assert torch.equal(model.encoder.pooler.dense.bias, torch.zeros(32))


# -- finetune/prior_wd --------------------------------------------------------------------------------------
def test_prior_wd_from_zero_start_weights_is_adamw_and_skips_parameters_without_a_gradient():
    # w <- w - lr * lambda * (w - w0) with w0 = 0 is AdamW's decoupled decay; AdamW leaves a parameter with
    # no gradient this step alone (no update, no decay), so PriorWD must too.
    torch.manual_seed(0)
    ours = [nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(3))]
    theirs = [nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(3))]
    prior_wd = PriorWD(torch.optim.AdamW(ours, lr=0.1, weight_decay=0.5))
    adamw = torch.optim.AdamW(theirs, lr=0.1, weight_decay=0.5)
    for step in range(4):
        grads = [torch.randn(4, 3), torch.randn(3)]
        for params in (ours, theirs):
            for p, g in zip(params, grads, strict=True):
                p.grad = None if (step == 2 and p.dim() == 1) else g.clone()
        prior_wd.step()
        adamw.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# -- finetune/param_groups ----------------------------------------------------------------------------------
def test_grouped_rates_warn_only_when_there_are_fewer_blocks_than_groups(caplog):
    model = BertForSequenceClassification(bert_config(num_hidden_layers=3, num_labels=2))
    with caplog.at_level(logging.WARNING, logger="minibert.finetune.param_groups"):
        groups = grouped_lr_groups(model, 1.0, 0.0, num_groups=3, factor=2.0)
    assert not caplog.records
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates == {"embeddings": 0.25, "layer_0": 0.25, "layer_1": 0.5, "layer_2": 1.0, "head": 1.0}


# -- finetune/smart_batching --------------------------------------------------------------------------------
def test_padding_collator_keeps_token_types_and_pads_to_max_length_when_asked():
    examples = [{"input_ids": [5, 6, 7], "token_type_ids": [0, 1, 1], "labels": 1},
                {"input_ids": [8, 9], "token_type_ids": [0, 1], "labels": 0}]
    batch = PaddingCollator(pad_token_id=0, max_length=6, padding="max_length")(examples)
    assert torch.equal(batch["input_ids"], torch.tensor([[5, 6, 7, 0, 0, 0], [8, 9, 0, 0, 0, 0]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]))
    assert torch.equal(batch["token_type_ids"], torch.tensor([[0, 1, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0]]))
    longest = PaddingCollator(pad_token_id=0)(examples)
    assert longest["input_ids"].shape == (2, 3) and torch.equal(longest["token_type_ids"][1], torch.tensor([0, 1, 0]))


def test_the_last_global_batch_under_ddp_is_completed_with_the_shortest_examples():
    # 5 examples, 2 processes x 2: the sorted order is [1, 3, 4, 2, 0] (lengths 1..5); the second global batch
    # holds example 0 alone and takes the three shortest (1, 3, 4) to fill up.
    sampler = UniformLengthSampler([5, 1, 4, 2, 3], batch_size=2, shuffle=False, world_size=2)
    assert sampler.batches() == [[1, 3], [4, 2], [0, 1], [3, 4]]


# -- finetune/losses ----------------------------------------------------------------------------------------
def test_task_loss_applies_the_multi_label_choice_only_to_multi_label_tasks():
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    classes = torch.tensor([0, 2, 1, 2])
    torch.testing.assert_close(task_loss(logits, classes, "single_label_classification", "zlpr"),
                               F.cross_entropy(logits, classes))
    scores, targets = torch.randn(4, 1), torch.randn(4)
    torch.testing.assert_close(task_loss(scores, targets, "regression", "zlpr"), F.mse_loss(scores.squeeze(), targets))
    multi_hot = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(task_loss(logits, multi_hot, "multi_label_classification", "zlpr"),
                               zlpr_loss(logits, multi_hot))
    with pytest.raises(ValueError, match="unknown multi-label loss"):
        task_loss(logits, multi_hot, "multi_label_classification", "focal")


# -- finetune/optimizers ------------------------------------------------------------------------------------
def test_bertadam_with_bias_correction_is_torch_adamw_even_with_a_large_epsilon():
    # AdamW divides by sqrt(v / (1 - beta2^t)) + eps; BertAdam's corrected step folds the sqrt(1 - beta2^t)
    # into the step size, so its eps must carry that factor too. eps = 0.1 makes any mismatch visible.
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(5, 3))
    b.data.copy_(a.data)
    ours = BertAdam([a], lr=0.05, betas=(0.8, 0.95), eps=0.1, weight_decay=0.1, correct_bias=True)
    theirs = torch.optim.AdamW([b], lr=0.05, betas=(0.8, 0.95), eps=0.1, weight_decay=0.1)
    for _ in range(5):
        g = torch.randn(5, 3)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_the_adamw_of_build_finetune_optimizer_takes_the_adam_flags():
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(4)), nn.Parameter(torch.randn(4))
    b.data.copy_(a.data)
    ours = build_finetune_optimizer("adamw", [{"params": [a]}], lr=0.1, weight_decay=0.01, betas=(0.5, 0.9), eps=1e-3)
    theirs = torch.optim.AdamW([b], lr=0.1, weight_decay=0.01, betas=(0.5, 0.9), eps=1e-3)
    for _ in range(3):
        g = torch.randn(4)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- finetune/classifier ------------------------------------------------------------------------------------
def test_pooled_classifier_head_initialisation_dropout_and_outputs():
    torch.manual_seed(0)
    encoder = BertModel(bert_config(initializer_range=0.3))
    model = PooledClassifier(encoder, "cls", num_labels=64, dropout=0.5)
    # the head is drawn as BERT's: N(0, initializer_range) weights, zero bias (not nn.Linear's uniform default)
    assert model.classifier.weight.std().item() == pytest.approx(0.3, rel=0.1)
    assert torch.equal(model.classifier.bias, torch.zeros(64))
    ids = torch.tensor([[2, 7, 0, 9, 3], [2, 5, 6, 0, 3]])  # 0 (a pad id) inside: no mask given means no padding
    model.train()
    first, second = model(ids).logits, model(ids).logits
    assert not torch.equal(first, second)  # the head's dropout is on in training (the encoder has none here)
    model.eval()
    out = model(ids)
    torch.testing.assert_close(out.logits, model(ids, attention_mask=torch.ones_like(ids)).logits)
    assert out.hidden_states is None  # returned only when asked, as the family heads do
    asked = model(ids, output_hidden_states=True).hidden_states
    assert len(asked) == 3
    torch.testing.assert_close(asked[-1], encoder(ids).last_hidden_state)


def test_pooled_classifier_trains_with_the_multi_label_loss_it_was_built_with():
    torch.manual_seed(0)
    model = PooledClassifier(BertModel(bert_config()), "mean", num_labels=3,
                             problem_type="multi_label_classification", multi_label_loss="zlpr").eval()
    ids, labels = torch.randint(1, 40, (2, 5)), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = model(ids, labels=labels)
    torch.testing.assert_close(out.loss, zlpr_loss(out.logits, labels))


# -- data/objectives/masking --------------------------------------------------------------------------------
def test_word_ids_count_from_zero_and_a_word_starts_after_every_special_token():
    # [CLS] a ##b [SEP] ##c d [SEP]: segment B opens on a continuation piece (a sentence cut by the packing);
    # it still starts a new word, so no word crosses [SEP]. Words are numbered 0, 1, 2 within the row.
    maskable = torch.tensor([[False, True, True, False, True, True, False]])
    word_starts = torch.tensor([[False, True, False, False, False, True, False]])
    assert word_ids_from_starts(word_starts, maskable).tolist() == [[-1, 0, 0, -1, 1, 2, -1]]


def test_drawn_span_lengths_follow_the_length_distribution():
    # ALBERT's n-grams: P(n) = 6/11, 3/11, 2/11 for n = 1, 2, 3 words, a mean of 18/11; a span is never empty
    # (short rows take their spans from the first draw, long ones may need the second: both are checked)
    g = torch.Generator().manual_seed(0)
    for words, rows in ((20, 512), (200, 64)):
        word_ids = torch.arange(words).repeat(rows, 1)  # rows of one-token words
        lengths = choose_word_spans(word_ids, 0.15, ngram_probs(3), g).lengths
        assert int(lengths.min()) == 1 and int(lengths.max()) == 3
        assert lengths.float().mean().item() == pytest.approx(18 / 11, abs=0.03)


def test_the_80_10_10_decision_of_a_span_is_drawn_for_its_own_row():
    # unit_ids number the spans within each row; rows draw independently, so the decision (masked or not) of
    # row 1's span u agrees with row 0's span u, u - 1 or u + 1 only by chance: 0.8^2 + 0.2^2 = 0.68 of the time
    g = torch.Generator().manual_seed(0)
    T = 3000
    ids = torch.full((2, T), 7)
    units = torch.arange(T).repeat(2, 1)
    inputs, _ = replace_80_10_10(ids, torch.ones(2, T, dtype=torch.bool), 1, torch.tensor([5, 6]), g, unit_ids=units)
    masked = inputs == 1
    for shift in (-1, 0, 1):
        a, b = masked[0, max(shift, 0): T + min(shift, 0)], masked[1, max(-shift, 0): T - max(shift, 0)]
        assert (a == b).float().mean().item() == pytest.approx(0.68, abs=0.04)


# -- data/objectives/mlm and base ---------------------------------------------------------------------------
DOCS = [["the quick brown fox jumps over the lazy dog.", "a stitch in time saves nine."],
        ["every cloud has a silver lining.", "the lazy dog"], ["nine"]]


def test_mlm_batches_do_not_attend_to_padding_and_replace_only_with_ordinary_tokens(wordpiece):
    # every chosen token replaced at random ("a random ordinary token": the pool leaves special ids out)
    obj = build_objective("mlm", wordpiece, 16, mlm_probability=0.5, mask_replace_prob=0.0, random_replace_prob=1.0)
    examples = obj.examples(DOCS)
    lengths = [len(e["input_ids"]) for e in examples]
    assert len(set(lengths)) > 1
    special = torch.tensor(wordpiece.all_special_ids)
    g = torch.Generator().manual_seed(0)
    replaced = 0
    for _ in range(40):
        batch = obj.collate(list(examples), g)
        assert batch["attention_mask"].tolist() == [[1] * n + [0] * (max(lengths) - n) for n in lengths]
        picked = batch["labels"] != -100
        assert not torch.isin(batch["input_ids"][picked], special).any()
        replaced += int(picked.sum())
    assert replaced > 400  # 5 of the 115 ids are special: a pool with them would draw some


def test_masked_accuracy_counts_only_the_labelled_positions():
    logits = F.one_hot(torch.tensor([[3, 1, 2, 0]]), 4).float()  # predicts 3, 1, 2, 0
    labels = torch.tensor([[3, -100, 1, -100]])  # right, ignored, wrong, ignored
    assert masked_accuracy(logits, labels) == 0.5


class _Offsets:
    """The one thing pack_index reads from a corpus: each document's sentence offsets."""

    def __init__(self, *documents):
        self.offsets = documents

    def documents(self):
        return [(0, np.asarray(o)) for o in self.offsets]


def test_pack_index_fills_chunks_exactly_and_keeps_a_one_token_document(wordpiece):
    obj = build_objective("mlm", wordpiece, 8)  # room for 6 tokens between [CLS] and [SEP]
    # two sentences of 3 fill one chunk of 6 exactly; a document of one token is a chunk of its own
    rows = obj.pack_index(_Offsets([0, 3, 6], [6, 7]), 6)
    assert rows.tolist() == [[0, 0, 6], [0, 6, 7]]
    # a sentence of 10 is cut into 6 + 4; the next sentence (2) joins the piece of 4
    assert obj.pack_index(_Offsets([0, 10, 12]), 6).tolist() == [[0, 0, 6], [0, 6, 12]]


def test_objectives_accept_their_limits_exactly(wordpiece):
    obj = build_objective("mlm", wordpiece, 8)  # the shortest max_seq_length an objective takes
    obj.build_model({"max_position_embeddings": 8, "vocab_size": wordpiece.vocab_size + 5, "hidden_size": 16,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32})
    examples = obj.examples(DOCS)
    part = examples[1:3]
    assert isinstance(part, Examples) and len(part) == 2  # a lazy view, built only when read
    assert [e["input_ids"].tolist() for e in part] == [examples[1]["input_ids"].tolist(),
                                                        examples[2]["input_ids"].tolist()]


# -- data/objectives/clm ------------------------------------------------------------------------------------
def test_clm_models_keep_gpt2s_1024_positions(bpe):
    # GPT-2's n_positions: a model pretrained on short blocks still reads (and generates) up to 1024 tokens
    assert build_objective("clm", bpe, 32).default_config()["n_positions"] == 1024
    assert build_objective("clm", bpe, 2048).default_config()["n_positions"] == 2048


# -- data/objectives/bart -----------------------------------------------------------------------------------
def test_bart_defaults_are_the_released_recipe(bpe):
    # fairseq's BART recipe: 30% of the tokens in spans of Poisson(3.5) lengths (replace_length 1: one <mask> a
    # span), 10% of the spans a random token; overlapping spans cover about 27% of the tokens (module docstring)
    obj = build_objective("bart", bpe, 64)
    g = torch.Generator().manual_seed(0)
    lengths = obj.span_lengths(30000, g)
    assert int(lengths.sum()) == 30000  # the last span is cut to the budget
    assert lengths[:-1].float().mean().item() == pytest.approx(3.5, abs=0.08)
    tokens = 10_000 + torch.arange(1000)  # ids no <mask> or random token can take
    covered = mask = random = 0
    for _ in range(20):
        noised, n_spans = obj.mask_spans(tokens, g)
        new = noised < 10_000
        covered += 1000 - int((~new).sum())
        mask += int((noised == bpe.mask_token_id).sum())
        random += int(new.sum()) - int((noised == bpe.mask_token_id).sum())
    assert covered / 20_000 == pytest.approx(0.27, abs=0.02)
    assert random / (mask + random) == pytest.approx(0.1, abs=0.03)


def test_bart_permutes_a_ceiling_share_of_the_sentences(bpe):
    # fairseq: num_to_permute = ceil(sentences * p); half of 3 sentences is 2, which then swap (or not)
    obj = build_objective("bart", bpe, 64, permute_sentence_ratio=0.5)
    sentences = [torch.tensor([1]), torch.tensor([2]), torch.tensor([3])]
    g = torch.Generator().manual_seed(0)
    moved = [sum(a.item() != b.item() for a, b in zip(obj.permute_sentences(sentences, g), sentences, strict=True))
             for _ in range(30)]
    assert set(moved) == {0, 2}


def test_bart_insertions_land_before_their_position(bpe):
    obj = build_objective("bart", bpe, 64, random_ratio=0.0)
    m = bpe.mask_token_id
    tokens = torch.tensor([10, 11, 12])
    assert obj.insert_at(tokens, torch.tensor([0, 3]), None).tolist() == [m, 10, 11, 12, m]
    # a zero-length span inserts its <mask> before its start, in a sequence another span has shortened
    noised, count = obj.replace_spans(torch.tensor([10, 11, 12, 13, 14]), torch.tensor([0, 3]),
                                      torch.tensor([2, 0]), None)
    assert noised.tolist() == [m, 12, m, 13, 14] and count == 2


def test_bart_insertion_noise_can_land_at_the_end_and_rotation_always_moves(bpe):
    g = torch.Generator().manual_seed(0)
    # fairseq's add_insertion_noise may insert right before </s>; its add_rolling_noise draws offset >= 1
    inserting = build_objective("bart", bpe, 64, insert_ratio=1.0, random_ratio=0.0)
    one = torch.tensor([10])
    assert {tuple(inserting.insert_tokens(one, g).tolist()) for _ in range(30)} == {(bpe.mask_token_id, 10),
                                                                                   (10, bpe.mask_token_id)}
    rotating = build_objective("bart", bpe, 64, rotate_ratio=1.0)
    tokens = torch.tensor([10, 11, 12])
    turned = {tuple(rotating.rotate(tokens, g).tolist()) for _ in range(30)}
    assert turned == {(11, 12, 10), (12, 10, 11)}  # rotated by 1 or 2, never by 0


def test_bart_batches_permute_truncate_and_end_the_labels_with_eos(bpe):
    obj = build_objective("bart", bpe, 16, mask_ratio=0.0, insert_ratio=1.0, random_ratio=0.0)
    sentences = [np.arange(10, 14), np.arange(20, 24), np.arange(30, 34)]  # 12 tokens: fits 16 with <s> </s>
    g = torch.Generator().manual_seed(0)
    orders = set()
    for _ in range(10):
        batch = obj.collate([{"sentences": sentences}], g)
        assert batch["input_ids"].shape[1] <= 16  # insertions doubled the text; the source is cut to fit
        assert batch["labels"][0].tolist() == [bpe.bos_token_id, *np.concatenate(sentences).tolist(), bpe.eos_token_id]
        body = [t for t in batch["input_ids"][0, 1:-1].tolist() if t != bpe.mask_token_id]
        orders.add(tuple(t // 10 for t in body[::4]))
    assert len(orders) > 1  # permute_sentence_ratio 1.0 (the default) reorders the sentences of a batch


# -- nn/losses ----------------------------------------------------------------------------------------------
def test_causal_lm_count_is_the_number_of_terms_of_causal_lm_loss():
    # the engine weighs accumulated micro-batches by this count: loss * count must be the summed loss
    from minibert.nn.losses import causal_lm_count, causal_lm_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[1, 2, -100, 4, 5], [-100, 3, 3, -100, -100]])
    assert causal_lm_count(labels) == 5  # the first position is never predicted
    total = F.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1), reduction="sum")
    torch.testing.assert_close(causal_lm_loss(logits, labels) * causal_lm_count(labels), total)


# -- nn/feed_forward ----------------------------------------------------------------------------------------
def test_every_activation_is_hugging_faces_of_the_same_name():
    from transformers.activations import ACT2FN

    from minibert.nn.feed_forward import ACTIVATIONS

    x = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    for name, fn in ACTIVATIONS.items():
        torch.testing.assert_close(fn(x), ACT2FN[name](x), rtol=1e-9, atol=1e-9, msg=name)


def test_feed_forward_drops_out_after_the_activation_and_after_the_output():
    # x -> up -> activation -> activation dropout -> down -> dropout (module docstring), with one call's masks
    from minibert.nn.feed_forward import FeedForward

    ff = FeedForward(8, 32, "relu", dropout=0.3, activation_dropout=0.5).train()
    x = torch.randn(2, 3, 8)
    torch.manual_seed(1)
    out = ff(x)
    torch.manual_seed(1)
    expected = F.dropout(ff.down(F.dropout(F.relu(ff.up(x)), 0.5, training=True)), 0.3, training=True)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)

"""An audit of the building blocks (attention and its masks, feed-forward activations, packing) and of the
classification losses, against hand-written formulas, PyTorch's fused kernel, Hugging Face and the ZLPR paper.
The tests under "fixed" each failed before their fix; the others keep what already matched, matched."""

import math

import pytest
import torch
import torch.nn.functional as F
import transformers
from transformers.activations import ACT2FN

from minibert.finetune.classifier import PooledClassifier
from minibert.finetune.losses import task_loss, zlpr_loss
from minibert.models.bert import BertConfig, BertForSequenceClassification, BertModel
from minibert.models.gpt import GPT2Config, GPT2LMHeadModel
from minibert.nn import (
    ACTIVATIONS,
    MultiHeadAttention,
    Packing,
    causal_mask,
    combine,
    eager_attention,
    padding_mask,
    sdpa_attention,
)
from minibert.nn.losses import sequence_classification_loss, span_extraction_loss, token_classification_loss


def bert_config(**overrides) -> BertConfig:
    kwargs = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                  max_position_embeddings=32)
    return BertConfig(**{**kwargs, **overrides})


# -- fixed: attention -------------------------------------------------------------------------------------
def test_eager_attention_in_fp16_gives_a_row_without_visible_key_no_nan():
    """scores + finfo(fp16).min overflowed to -inf for a score below about -16: a row with no visible key whose
    every score did (a left pad) came out NaN, where the module promises a uniform row."""
    torch.manual_seed(0)
    q = torch.full((1, 1, 3, 4), 3.0)
    k = torch.full((1, 1, 3, 4), -3.0)  # every score 4 * -9 / 2 = -18
    v = torch.randn(1, 1, 3, 4)
    keep = padding_mask(torch.tensor([[0, 0, 0]]))
    out, probs = eager_attention(q.half(), k.half(), v.half(), keep)
    torch.testing.assert_close(probs.float(), torch.full((1, 1, 3, 3), 1 / 3), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.float(), v.half().float().mean(-2, keepdim=True).expand(1, 1, 3, 4),
                               atol=2e-3, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_eager_attention_keeps_one_score_sized_tensor_for_backward_outside_fp16(dtype):
    """The fp16 clamp, applied in every dtype, kept its input for backward: one more (B, H, T, T) tensor per
    layer (a 2-layer eager GPT-2 at 4 x 256 kept 48.2 MiB for 40.2) where it changes nothing."""
    q, k, v = (torch.randn(2, 2, 8, 4, dtype=dtype, requires_grad=True) for _ in range(3))
    keep = padding_mask(torch.tensor([[1] * 8, [1] * 5 + [0] * 3]))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        eager_attention(q, k, v, keep)
    score_sized = {t.untyped_storage().data_ptr() for t in saved if t.shape == (2, 2, 8, 8) and t.is_floating_point()}
    assert len(score_sized) == 1  # the probabilities, for the softmax's and the matmul's backward


def test_a_left_padded_fp16_gpt2_keeps_its_real_tokens_finite():
    """The NaN of a left pad's row reached every real token of the row through v (0 * NaN)."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=2, attn_implementation="eager",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for block in model.transformer.h:  # q and k biases pointing apart: scores about -36, as large trained heads
            block.attn.c_attn.bias[:32] = 3.0
            block.attn.c_attn.bias[32:64] = -3.0
    ids = torch.randint(0, 50, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0
    with torch.no_grad():
        reference = model(ids, attention_mask=mask).logits
        half = model.half()(ids, attention_mask=mask).logits.float()
    assert torch.isfinite(half[mask.bool()]).all()
    torch.testing.assert_close(half[mask.bool()], reference[mask.bool()], atol=0.05, rtol=0.05)


# -- fixed: losses --------------------------------------------------------------------------------------------
def test_regression_and_multi_label_targets_keep_their_precision_under_bf16_autocast():
    """The targets were cast to the bf16 logits: 3.8 became 3.796875, the MSE 0.35% off Hugging Face's."""
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    for num_labels, labels in ((1, torch.tensor([3.8, 1.3, 0.1, 4.7])), (3, torch.tensor([[0.1, 0.9, 0.3]] * 4))):
        head = torch.nn.Linear(8, num_labels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = head(x)
            ours = sequence_classification_loss(logits, labels, num_labels)
        assert logits.dtype == torch.bfloat16
        exact = (F.mse_loss(logits.float().squeeze(), labels) if num_labels == 1
                 else F.binary_cross_entropy_with_logits(logits.float(), labels))
        torch.testing.assert_close(ours, exact, atol=0, rtol=1e-6)


def test_int32_class_ids_are_taken_by_every_cross_entropy():
    """The problem-type rule reads int32 labels as class ids, then cross_entropy refused them (numpy's ints)."""
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    ids = torch.tensor([0, 2, 1, 1])
    torch.testing.assert_close(sequence_classification_loss(logits, ids.int(), 3), F.cross_entropy(logits, ids))
    tokens, labels = torch.randn(2, 4, 3), torch.tensor([[0, 2, 1, -100], [1, -100, 0, 2]])
    torch.testing.assert_close(token_classification_loss(tokens, labels.int()),
                               token_classification_loss(tokens, labels))
    start, end = torch.randn(2, 5), torch.randn(2, 5)
    positions = torch.tensor([1, 7]), torch.tensor([3, 4])
    torch.testing.assert_close(span_extraction_loss(start, end, *(p.int() for p in positions)),
                               span_extraction_loss(start, end, *positions))


def test_integer_multi_hot_labels_without_a_problem_type_get_an_error_that_says_so():
    """They read as class ids (Hugging Face's rule) and cross_entropy said only 'Expected input batch_size (4)
    to match target batch_size (12)'."""
    multi_hot = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="multi-hot labels pass them as float"):
        sequence_classification_loss(torch.randn(4, 3), multi_hot, 3)
    logits = torch.randn(4, 3)
    expected = F.binary_cross_entropy_with_logits(logits, multi_hot.float())
    torch.testing.assert_close(sequence_classification_loss(logits, multi_hot, 3, "multi_label_classification"),
                               expected)
    torch.testing.assert_close(sequence_classification_loss(logits, multi_hot.bool(), 3), expected)


def test_single_label_classification_with_one_output_is_refused():
    """A softmax over one class: the loss was 0 whatever the logits, and nothing learned."""
    with pytest.raises(ValueError, match="problem_type='regression'"):
        sequence_classification_loss(torch.randn(4, 1), torch.zeros(4, dtype=torch.long), 1,
                                     "single_label_classification")


@pytest.mark.parametrize("problem_type", ["multi_label", "regresion", "classification"])
def test_task_loss_refuses_an_unknown_problem_type(problem_type):
    """Any other string fell through to BCE, on regression targets too."""
    with pytest.raises(ValueError, match="unknown problem_type"):
        task_loss(torch.randn(4, 1), torch.rand(4, 1), problem_type)
    with pytest.raises(ValueError, match="unknown problem_type"):  # the building block the heads call, too
        sequence_classification_loss(torch.randn(4, 2), torch.rand(4, 2), 2, problem_type)


def test_pooled_classifier_takes_the_configs_classifier_dropout_as_hugging_face_does():
    """It read hidden_dropout_prob alone: `--pooling pooler` dropped at 0.1 where the family head (the same
    pooler -> dropout -> linear) and Hugging Face's dropped at the config's classifier_dropout."""
    config = dict(hidden_dropout_prob=0.1, classifier_dropout=0.3, num_labels=2)
    hf = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, **config))
    family = BertForSequenceClassification(bert_config(**config))
    pooled = PooledClassifier(BertModel(bert_config(**config)), "pooler", 2)
    assert pooled.dropout.p == family.dropout.p == hf.dropout.p == 0.3
    assert PooledClassifier(BertModel(bert_config(hidden_dropout_prob=0.2)), "cls", 2).dropout.p == 0.2
    assert PooledClassifier(BertModel(bert_config(**config)), "cls", 2, dropout=0.0).dropout.p == 0.0


def test_the_ladder_and_multi_task_heads_take_the_configs_classifier_dropout_too():
    """The same rule for the two other task heads, which also read hidden_dropout_prob alone."""
    from minibert.finetune.ladder import LadderSideClassifier
    from minibert.finetune.multitask import MultiTaskClassifier

    config = dict(hidden_dropout_prob=0.1, classifier_dropout=0.3)
    assert LadderSideClassifier(BertModel(bert_config(**config)), 2, 2).dropout.p == 0.3
    assert MultiTaskClassifier(BertModel(bert_config(**config)), {"a": {"num_labels": 2}}, "mean").dropout.p == 0.3
    assert MultiTaskClassifier(BertModel(bert_config(**config)), {"a": {"num_labels": 2}}, "mean",
                               dropout=0.0).dropout.p == 0.0


# -- kept: attention against a formula and the fused kernel ---------------------------------------------------
def _reference(q, k, v, keep, scale):
    scores = q.double() @ k.double().transpose(-1, -2) * scale
    if keep is not None:
        scores = scores.masked_fill(~keep, -1e300)  # a row of -1e300 only: uniform, as promised
    probs = scores.softmax(-1)
    return probs @ v.double(), probs


def _masks(B=3, T_q=5, T_k=5):
    attention_mask = torch.ones(B, T_k, dtype=torch.long)
    attention_mask[1, 3:] = 0
    attention_mask[2, :2] = 0
    everything = torch.rand(B, 1, T_q, T_k, generator=torch.Generator().manual_seed(0)) > 0.4
    everything[..., 0] = True
    return {
        "none": None,
        "padding (B, 1, 1, T)": padding_mask(attention_mask),
        "causal": causal_mask(T_q, T_k),
        "per query (B, 1, T, T)": everything,
        "causal + left padding": combine(causal_mask(T_q, T_k), padding_mask(attention_mask)),
        "an all-padding row": padding_mask(torch.tensor([[1, 1, 0, 0, 0], [1] * 5, [0] * 5])),
    }


@pytest.mark.parametrize("kind", list(_masks()))
@pytest.mark.parametrize("scale", [None, 0.3])
@pytest.mark.parametrize("T_q", [5, 2])  # 2: decoding with a cache, the queries the last 2 of 5 positions
def test_eager_and_sdpa_attention_equal_the_formula_for_every_mask(kind, scale, T_q):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, T_q, 8), torch.randn(3, 2, 5, 8), torch.randn(3, 2, 5, 8)
    keep = _masks(T_q=T_q)[kind]
    keep = keep[..., -T_q:, :] if keep is not None and keep.size(-2) > 1 else keep
    out, probs = _reference(q, k, v, keep, scale if scale is not None else 8**-0.5)
    eager, eager_probs = eager_attention(q, k, v, keep, scale=scale)
    torch.testing.assert_close(eager.double(), out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(eager_probs.double(), probs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sdpa_attention(q, k, v, keep, scale=scale).double(), out, atol=1e-6, rtol=1e-5)


def test_dropout_on_the_probabilities_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, dropout=0.5, implementation="eager")
    x = torch.randn(2, 6, 16)
    mha.eval()
    torch.testing.assert_close(mha(x).output, mha(x).output)
    mha.train()
    trained = mha(x, output_attentions=True)
    assert not torch.equal(mha(x).output, trained.output)
    torch.testing.assert_close(trained.probs.sum(-1), torch.ones(2, 4, 6))  # the maps returned before dropout


@pytest.mark.parametrize("name", ["mixed", "no padding", "all padding"])
def test_packing_is_the_identity_on_real_tokens_and_zero_on_padding(name):
    attention_mask = {"mixed": torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]),
                      "no padding": torch.ones(2, 4, dtype=torch.long),
                      "all padding": torch.zeros(2, 4, dtype=torch.long)}[name]
    packing = Packing.from_mask(attention_mask)
    x = torch.randn(*attention_mask.shape, 5)
    packed = packing.pack(x)
    real = attention_mask.bool()
    assert packed.shape == (int(real.sum()), 5)
    back = packing.unpack(packed)
    assert torch.equal(back[real], x[real]) and bool((back[~real] == 0).all())
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, implementation="eager").eval()
    h = torch.randn(*attention_mask.shape, 16)
    keep = padding_mask(attention_mask)
    padded = mha(h, keep).output
    unpadded = packing.unpack(mha(packing.pack(h), keep, packing=packing).output)
    torch.testing.assert_close(unpadded[real], padded[real], atol=1e-6, rtol=1e-5)


# -- kept: activations, losses and the ZLPR paper ---------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_activations_equal_hugging_faces(name, dtype):
    x = torch.linspace(-12, 12, 2001).to(dtype)
    torch.testing.assert_close(ACTIVATIONS[name](x), ACT2FN[name](x), atol=0, rtol=0)


@pytest.mark.parametrize(("num_labels", "labels"), [
    (1, torch.tensor([0.5, -1.0, 2.0, 3.5])),  # regression
    (1, torch.tensor([[0.5]])),  # regression, one example: squeezed to scalars as in Hugging Face
    (3, torch.tensor([0, 2, -100, 1])),  # single-label, -100 ignored as by CrossEntropyLoss
    (3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.2, 0.7], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])),  # multi-label
])
def test_sequence_classification_loss_equals_hugging_faces_rule(num_labels, labels):
    torch.manual_seed(0)
    logits = torch.randn(labels.size(0), num_labels)
    if num_labels == 1:
        expected = torch.nn.MSELoss()(logits.squeeze(), labels.squeeze())
    elif labels.dtype == torch.long:
        expected = torch.nn.CrossEntropyLoss()(logits.view(-1, num_labels), labels.view(-1))
    else:
        expected = torch.nn.BCEWithLogitsLoss()(logits, labels)
    torch.testing.assert_close(sequence_classification_loss(logits, labels, num_labels), expected)


def test_zlpr_is_the_papers_loss_and_its_soft_version_has_its_minimum_at_sigmoid_2s():
    """Su et al. 2022 (https://arxiv.org/abs/2208.02955): log(1 + sum_neg e^s) + log(1 + sum_pos e^-s); the soft
    version's single-class minimum is at sigmoid(2 s) = t."""
    torch.manual_seed(0)
    s = torch.randn(5, 7, dtype=torch.float64) * 3
    hard = (torch.rand(5, 7) < 0.3).double()
    paper = torch.stack([torch.log1p(s[b][hard[b] == 0].exp().sum()) + torch.log1p((-s[b][hard[b] == 1]).exp().sum())
                         for b in range(5)])
    torch.testing.assert_close(zlpr_loss(s, hard, reduction="none"), paper)
    for t in (0.1, 0.8):
        score = 0.5 * math.log(t / (1 - t))  # sigmoid(2 score) = t
        x = torch.tensor([[score]], dtype=torch.float64, requires_grad=True)
        zlpr_loss(x, torch.tensor([[t]], dtype=torch.float64)).backward()
        assert abs(x.grad.item()) < 1e-12
    torch.testing.assert_close(zlpr_loss(torch.tensor([[1000.0, -1000.0]]), torch.tensor([[1.0, 0.0]])),
                               torch.tensor(0.0))

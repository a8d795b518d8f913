"""A second audit of the pretraining objectives' data side and of ELECTRA: each test fails without its fix
(BART's spans as fairseq lays them, an int Poisson lambda, clear errors for a tokenizer without [CLS]/[SEP]
and for a swap probability outside [0, 1], Examples indexed by a list), and ELECTRA's two networks against
Hugging Face's with the same weights."""

import numpy as np
import pytest
import torch

from minibert.data import build_objective, load_corpus
from minibert.models.bert import BertModel
from minibert.tokenizer import Tokenizer, train_tokenizer

TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


@pytest.fixture(scope="module")
def docs():
    return load_corpus()[:6]


@pytest.fixture(scope="module")
def wordpiece(docs):
    return train_tokenizer([" ".join(d) for d in docs], vocab_size=400)


@pytest.fixture(scope="module")
def bpe(docs):
    return train_tokenizer([" ".join(d) for d in docs], kind="bytelevel_bpe", vocab_size=400)


def fairseq_spans(tokens: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor, replace_length: int,
                  mask: int) -> torch.Tensor:
    """fairseq's DenoisingDataset.add_whole_word_mask (fairseq/data/denoising_dataset.py) once its span starts and
    lengths are drawn, with every token a word start (minibert counts subword tokens) and no random tokens."""
    n = len(tokens)
    source = torch.cat([tokens, torch.tensor([-1])])  # -1: the </s> that stops spans at the end of the document
    is_word_start = torch.ones(n + 1, dtype=torch.long)
    is_word_start[-1] = 255  # "acts as a long length, so spans don't go over the end of doc"
    to_keep = torch.ones(n + 1, dtype=torch.bool)
    indices, lengths = starts.clone(), lengths.clone()
    if replace_length == 0:
        to_keep[indices] = 0
    else:
        source[indices] = mask
    lengths -= 1
    while indices.size(0) > 0:
        lengths -= is_word_start[indices + 1]
        uncompleted = lengths >= 0
        indices, lengths = indices[uncompleted] + 1, lengths[uncompleted]
        if replace_length != -1:
            to_keep[indices] = 0
        else:
            source[indices] = mask
    return source[to_keep][:-1]


@pytest.mark.parametrize("replace_length", [1, 0, -1])
def test_bart_spans_are_laid_as_fairseq_lays_them(bpe, replace_length):
    """A span starting inside another merges into it; one starting right where another ends keeps its own <mask>
    (they were merged into one, dropping about 1 mask in 10 that fairseq puts in)."""
    obj = build_objective("bart", bpe, 64, random_ratio=0.0, replace_length=replace_length)
    tokens = torch.arange(100, 130)
    g = torch.Generator().manual_seed(0)
    touching = 0
    for _ in range(300):
        lengths = torch.randint(1, 6, (int(torch.randint(1, 8, (1,), generator=g)),), generator=g)
        obj.span_lengths = lambda count, generator, lengths=lengths: lengths
        copy = torch.Generator().set_state(g.get_state())
        starts = torch.randperm(len(tokens), generator=copy)[: len(lengths)]  # what mask_spans draws next
        noised, _ = obj.mask_spans(tokens, g)
        expected = fairseq_spans(tokens, starts, lengths, replace_length, bpe.mask_token_id)
        assert noised.tolist() == expected.tolist(), (starts.tolist(), lengths.tolist())
        touching += len(set(starts.tolist()) & set((starts + lengths).tolist()))
    assert touching > 20  # the case that differed was drawn


def test_bart_takes_an_integer_poisson_lambda(bpe, docs):
    """poisson_lambda=3 (the paper's, as an int) made torch.poisson refuse a Long tensor."""
    obj = build_objective("bart", bpe, 64, poisson_lambda=3)
    batch = obj.collate(list(obj.examples(docs)[:4]), torch.Generator().manual_seed(0))
    assert (batch["input_ids"] == bpe.mask_token_id).any()
    lengths = obj.span_lengths(20000, torch.Generator().manual_seed(0))
    assert lengths.float().mean().item() == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize("name", ["mlm", "wwm", "span", "nsp", "sop", "electra"])
def test_a_tokenizer_without_cls_or_sep_is_refused_clearly(bpe, name):
    """These objectives frame examples as [CLS] ... [SEP]; without those tokens they failed at the first batch
    with "int() argument must be ... not 'NoneType'"."""
    no_cls = Tokenizer(bpe.backend, {k: v for k, v in bpe.special_tokens.items() if k != "cls_token"}, "bytelevel_bpe")
    with pytest.raises(ValueError, match=f"the {name} objective frames each example .* no cls_token"):
        build_objective(name, no_cls, 64)
    no_sep = Tokenizer(bpe.backend, {k: v for k, v in bpe.special_tokens.items() if k != "sep_token"}, "bytelevel_bpe")
    with pytest.raises(ValueError, match="no sep_token"):
        build_objective(name, no_sep, 64)


@pytest.mark.parametrize("swap_probability", [1.5, -0.1])
def test_sop_refuses_a_swap_probability_outside_0_1(wordpiece, swap_probability):
    """1.5 silently made every pair "swapped" (a label the model learns in one step)."""
    with pytest.raises(ValueError, match="swap_probability must be in"):
        build_objective("sop", wordpiece, 64, swap_probability=swap_probability)


def test_examples_take_a_list_or_tensor_of_positions(wordpiece, docs):
    """The docstring's "array of positions" as a list or a tensor: [0, 1] gave "not enough values to unpack"."""
    examples = build_objective("mlm", wordpiece, 64).examples(docs)
    for positions in ([0, 5, 2], torch.tensor([0, 5, 2]), [0, 1]):
        view = examples[positions]
        assert len(view) == len(positions)
        for got, k in zip(view, list(np.asarray(positions)), strict=True):
            assert np.array_equal(got["input_ids"], examples[int(k)]["input_ids"])
    assert len(examples[[]]) == 0 and len(examples[2:5]) == 3
    assert np.array_equal(examples[np.int64(3)]["input_ids"], examples[3]["input_ids"])


def test_electra_generator_and_discriminator_are_hugging_faces(wordpiece, docs):
    """The discriminator (shared embeddings, encoder, head) is ElectraForPreTraining and the generator (shared
    embeddings projected down, small encoder, head tied to the word embeddings) ElectraForMaskedLM with
    embedding_size = the discriminator's width: same logits and losses from the same weights."""
    import transformers

    objective = build_objective("electra", wordpiece, 64)
    model = objective.build_model(TINY_BERT).eval()
    batch = objective.collate(list(objective.examples(docs)[:4]), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    ours = model(**batch)
    inputs = {"attention_mask": batch["attention_mask"], "token_type_ids": batch["token_type_ids"]}
    discriminator_weights = model.discriminator.hf_state_dict()
    embeddings = {f"electra.{k}": v for k, v in discriminator_weights.items() if k.startswith("embeddings")}

    def config(hidden, heads, intermediate):
        return transformers.ElectraConfig(
            vocab_size=wordpiece.vocab_size, embedding_size=32, hidden_size=hidden, num_hidden_layers=2,
            num_attention_heads=heads, intermediate_size=intermediate, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, max_position_embeddings=model.config.max_position_embeddings,
            pad_token_id=wordpiece.pad_token_id)

    head = model.discriminator_head
    discriminator = transformers.ElectraForPreTraining(config(32, 2, 64)).eval()
    missing, unexpected = discriminator.load_state_dict({
        **{f"electra.{k}": v for k, v in discriminator_weights.items()},
        "discriminator_predictions.dense.weight": head.dense.weight,
        "discriminator_predictions.dense.bias": head.dense.bias,
        "discriminator_predictions.dense_prediction.weight": head.out.weight,
        "discriminator_predictions.dense_prediction.bias": head.out.bias}, strict=False)
    assert not missing and not unexpected
    theirs = discriminator(input_ids=ours.corrupted_input_ids, labels=ours.discriminator_labels.long(), **inputs)
    torch.testing.assert_close(theirs.logits, ours.discriminator_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(theirs.loss, ours.discriminator_loss, atol=1e-5, rtol=1e-5)

    small = model.generator.config
    encoder = BertModel(small, add_pooling_layer=False)  # the generator's layers under Hugging Face's names
    encoder.layers.load_state_dict(model.generator.layers.state_dict())
    gen_head = model.generator_head
    generator = transformers.ElectraForMaskedLM(config(small.hidden_size, small.num_attention_heads,
                                                       small.intermediate_size)).eval()
    missing, unexpected = generator.load_state_dict({
        **{f"electra.{k}": v for k, v in encoder.hf_state_dict().items() if not k.startswith("embeddings")},
        **embeddings,
        "electra.embeddings_project.weight": model.generator.embeddings.project.weight,
        "electra.embeddings_project.bias": model.generator.embeddings.project.bias,
        "generator_predictions.dense.weight": gen_head.dense.weight,
        "generator_predictions.dense.bias": gen_head.dense.bias,
        "generator_predictions.LayerNorm.weight": gen_head.layer_norm.weight,
        "generator_predictions.LayerNorm.bias": gen_head.layer_norm.bias,
        "generator_lm_head.weight": model.get_input_embeddings().weight, "generator_lm_head.bias": gen_head.bias},
        strict=False)
    assert not missing and not unexpected
    theirs = generator(input_ids=batch["input_ids"], labels=batch["labels"], **inputs)
    torch.testing.assert_close(theirs.logits, ours.generator_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(theirs.loss, ours.generator_loss, atol=1e-5, rtol=1e-5)

"""The second audit of the models' forward passes and heads against Hugging Face: its findings (each test failing
without its fix), then what it checked and found matching, kept so. Tiny random Hugging Face models saved and loaded
offline with minibert's loader, fp32."""

import pytest
import torch

import minibert

transformers = pytest.importorskip("transformers")

ATOL, RTOL = 1e-5, 1e-5
VOCAB = 99


def configs():
    """Hugging Face configs of every family, tiny."""
    common = dict(vocab_size=VOCAB, num_labels=3)
    encoder = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                   max_position_embeddings=64, **common)
    return {
        "bert": transformers.BertConfig(**encoder),
        "roberta": transformers.RobertaConfig(type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                              **encoder),
        "gpt2": transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=24, bos_token_id=VOCAB - 1,
                                        eos_token_id=VOCAB - 1, pad_token_id=0, **common),
        "bart": transformers.BartConfig(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                        decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37,
                                        max_position_embeddings=20, **common),
    }


def saved(tmp_path, hf_class: str, family: str, attn: str = "sdpa", **config_fields):
    """A random Hugging Face model (eager attention, the reference) and minibert's load of its save."""
    config = configs()[family]
    for key, value in config_fields.items():
        setattr(config, key, value)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = getattr(transformers, hf_class)(config).eval()
    hf.save_pretrained(tmp_path)
    return hf, minibert.load_pretrained(tmp_path, attn_implementation=attn)


def token_ids(*shape, seed=1):
    return torch.randint(3, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


# -- fixed ------------------------------------------------------------------------------------------------
def test_bart_masks_of_another_shape_are_refused_by_name(tmp_path):
    """BART checked input_ids' mask only. A decoder_attention_mask of one row (1, T) for a batch of 2 was broadcast:
    every row got row 0's mask, silently (Hugging Face fails). A cached step's mask over its new token only (B, 1),
    not the (B, P + 1) that covers the cached positions too, hid them all where it held a 0. And a source mask (1, S)
    beside encoder_outputs of 2 rows was broadcast the same way."""
    hf, ours = saved(tmp_path, "BartForConditionalGeneration", "bart")
    source, target = token_ids(2, 7), token_ids(2, 5, seed=2)
    with pytest.raises(ValueError, match=r"decoder_attention_mask has shape \(1, 5\) but should be \(2, 5\)"):
        ours(source, decoder_input_ids=target, decoder_attention_mask=torch.tensor([[1, 1, 1, 0, 0]]))
    with pytest.raises(ValueError, match=r"decoder_attention_mask has shape \(2, 7\) but should be \(2, 5\)"):
        ours(source, decoder_input_ids=target, decoder_attention_mask=torch.ones(2, 7))  # was a bare RuntimeError
    first = ours(source, decoder_input_ids=target[:, :4], use_cache=True)
    memory = (first.encoder_last_hidden_state,)
    with pytest.raises(ValueError, match=r"shape \(2, 1\) but should be \(2, 5\): it covers the 4 cached target"):
        ours(encoder_outputs=memory, decoder_input_ids=target[:, 4:], past_key_values=first.past_key_values,
             decoder_attention_mask=torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 7\) but the source has \(2, 7\)"):
        ours(encoder_outputs=memory, attention_mask=torch.ones(1, 7, dtype=torch.long), decoder_input_ids=target)

    # The right shapes run as before, as Hugging Face's: a cached step with a padded (B, P + 1) mask, a source mask
    # beside encoder_outputs.
    source_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    target_mask = torch.tensor([[1] * 5, [1, 1, 1, 0, 1]])  # (a query that sees no key at all depends on the key count)
    memory = (hf.model.encoder(source, attention_mask=source_mask).last_hidden_state,)
    a = hf(encoder_outputs=memory, attention_mask=source_mask, decoder_input_ids=target,
           decoder_attention_mask=target_mask, use_cache=False)
    first = ours(encoder_outputs=memory, attention_mask=source_mask, decoder_input_ids=target[:, :4],
                 decoder_attention_mask=target_mask[:, :4], use_cache=True)
    step = ours(encoder_outputs=memory, attention_mask=source_mask, decoder_input_ids=target[:, 4:],
                decoder_attention_mask=target_mask, past_key_values=first.past_key_values, use_cache=True)
    torch.testing.assert_close(torch.cat([first.logits, step.logits], dim=1), a.logits, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_position_and_segment_ids_must_fit_the_input(tmp_path, family):
    """position_ids (and GPT-2's token_type_ids, looked up in the token table) of another shape than input_ids were
    broadcast in the embedding sum: (2, T) for one sequence returned two outputs, silently; (B, T - 1) failed with
    "The size of tensor a (5) must match the size of tensor b (4)". One row (1, T) for the whole batch stays allowed,
    as in Hugging Face."""
    hf, ours = saved(tmp_path, "BertForMaskedLM" if family == "bert" else "GPT2LMHeadModel", family)
    names = ["position_ids"] + (["token_type_ids"] if family == "gpt2" else [])
    for name in names:
        with pytest.raises(ValueError, match=rf"{name} has shape \(2, 5\) but input_ids has \(1, 5\)"):
            ours(token_ids(1, 5), **{name: torch.arange(5).expand(2, 5)})
        with pytest.raises(ValueError, match=rf"{name} has shape \(2, 4\) but input_ids has \(2, 5\)"):
            ours(token_ids(2, 5), **{name: torch.arange(4).expand(2, 4)})
        one_row = {name: torch.tensor([[3, 4, 5, 6, 7]])}
        torch.testing.assert_close(ours(token_ids(2, 5), **one_row).logits,
                                   hf(input_ids=token_ids(2, 5), **one_row).logits, atol=ATOL, rtol=RTOL)


# -- checked, and matching: kept so ------------------------------------------------------------------------
def our_to_hf_name(model, our_name: str) -> tuple[str, bool]:
    """Hugging Face's name of one of our parameters, and whether it is stored transposed there (GPT-2's Conv1D)."""
    body = model._split_prefix(our_name)[0] if model.is_head_model else our_name
    theirs, part = model.weight_map.to_theirs(body)
    name = f"{model.base_model_prefix}.{theirs}" if part == "base" and model.is_head_model else theirs
    return name, model.weight_map.is_transposed(body)


HEADS = [  # (Hugging Face class, family, the labels' kind)
    ("BertForMaskedLM", "bert", "tokens"),
    ("RobertaForSequenceClassification", "roberta", "classes"),
    ("RobertaForQuestionAnswering", "roberta", "spans"),
    ("GPT2LMHeadModel", "gpt2", "tokens"),
    ("GPT2ForSequenceClassification", "gpt2", "classes"),
    ("BartForConditionalGeneration", "bart", "target"),
    ("BartForSequenceClassification", "bart", "classes"),
]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize(("hf_class", "family", "labels"), HEADS, ids=[h[0] for h in HEADS])
def test_losses_and_every_gradient_match_on_both_attention_paths(tmp_path, hf_class, family, labels, attn):
    """Without attention maps asked for (which take the eager path): the sdpa path's backward too, on a right-padded
    batch, -100 ignored where there is padding; every parameter's gradient (GPT-2's Conv1D ones transposed)."""
    hf, ours = saved(tmp_path, hf_class, family, attn, **({"num_labels": 2} if labels == "spans" else {}))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids = token_ids(3, 9)
    if family == "bart":  # the classification head reads each row's last </s>
        ids[0, 8], ids[1, 5], ids[2, 2] = 2, 2, 2
    ids = ids.masked_fill(mask == 0, hf.config.pad_token_id)
    kwargs = {"tokens": {"labels": ids.masked_fill(mask == 0, -100)},
              "classes": {"labels": torch.tensor([0, 2, 1])},
              "spans": {"start_positions": torch.tensor([1, 2, 30]), "end_positions": torch.tensor([3, 2, 5])},
              "target": {"labels": token_ids(3, 5, seed=2).masked_fill(torch.tensor([False] * 3 + [True] * 2), -100)},
              }[labels]
    a = hf(input_ids=ids, attention_mask=mask, **kwargs, **({"use_cache": False} if family == "bart" else {}))
    b = ours(ids, mask, **kwargs)
    torch.testing.assert_close(b.loss, a.loss, atol=ATOL, rtol=RTOL)
    a.loss.backward()
    b.loss.backward()
    theirs = dict(hf.named_parameters())
    checked = 0
    for name, p in ours.named_parameters():
        hf_name, transposed = our_to_hf_name(ours, name)
        ref = theirs[hf_name].grad
        if ref is None:
            assert p.grad is None or not p.grad.any(), name
            continue
        torch.testing.assert_close(p.grad, ref.t() if transposed else ref, atol=ATOL, rtol=1e-4, msg=name)
        checked += 1
    assert checked >= len(list(ours.parameters())) - 2  # (an unused pooler)


LIMITS = [  # (Hugging Face class, family, the longest input, the name of the limit)
    ("BertModel", "bert", 64, "max_position_embeddings 64"),
    ("RobertaModel", "roberta", 62, "at most 62"),  # positions start after the padding index: 64 - 1 - 1
    ("GPT2LMHeadModel", "gpt2", 24, "n_positions is 24"),
    ("BartForConditionalGeneration", "bart", 20, "max_position_embeddings is 20"),
]


@pytest.mark.parametrize(("hf_class", "family", "longest", "named"), LIMITS, ids=[x[1] for x in LIMITS])
def test_the_longest_input_matches_and_one_more_token_is_refused_by_name(tmp_path, hf_class, family, longest, named):
    hf, ours = saved(tmp_path, hf_class, family)
    ids = token_ids(2, longest)
    field = "last_hidden_state" if hf_class.endswith("Model") and family != "gpt2" else "logits"
    torch.testing.assert_close(getattr(ours(ids), field), getattr(hf(input_ids=ids), field), atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match=named):
        ours(token_ids(2, longest + 1))
    if family == "bart":  # the decoder's positions have the same limit
        target = token_ids(2, longest, seed=2)
        torch.testing.assert_close(ours(ids[:, :5], decoder_input_ids=target).logits,
                                   hf(input_ids=ids[:, :5], decoder_input_ids=target).logits, atol=ATOL, rtol=RTOL)
        with pytest.raises(ValueError, match="decoder_input_ids reach position 21"):
            ours(ids[:, :5], decoder_input_ids=token_ids(2, longest + 1))


@pytest.mark.parametrize("problem", ["regression", "multi_label_classification"])
@pytest.mark.parametrize("hf_class", ["RobertaForSequenceClassification", "BartForSequenceClassification"])
def test_regression_and_multi_label_losses_match(tmp_path, hf_class, problem):
    """The problem type as Hugging Face infers it: one label is regression (MSE), float labels over several are
    multi-label (BCE). (BERT's and GPT-2's are in test_bert_parity.py and test_gpt.py.)"""
    family = "roberta" if hf_class.startswith("Roberta") else "bart"
    num_labels = 1 if problem == "regression" else 3
    hf, ours = saved(tmp_path, hf_class, family, num_labels=num_labels, id2label={i: str(i) for i in range(num_labels)})
    assert ours.config.num_labels == num_labels
    ids = token_ids(3, 6)
    ids[:, -1] = 2  # </s>, which BART's head reads
    labels = (torch.tensor([0.5, -1.0, 2.0]) if problem == "regression"
              else torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    a, b = hf(input_ids=ids, labels=labels), ours(ids, labels=labels)
    torch.testing.assert_close(b.logits, a.logits, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(b.loss, a.loss, atol=ATOL, rtol=RTOL)

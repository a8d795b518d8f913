"""Statistical tests of every objective's batches: each can fail if the rule is broken."""

import numpy as np
import pytest
import torch

from minibert.data import build_objective, load_corpus
from minibert.data.objectives.masking import (
    choose_word_spans,
    geometric_probs,
    maskable_positions,
    ngram_probs,
    replace_80_10_10,
    word_ids_from_starts,
)
from minibert.data.objectives.nsp import truncate_pair
from minibert.tokenizer import Tokenizer, train_tokenizer

MSL = 128


@pytest.fixture(scope="module")
def docs():
    return load_corpus()[::12]  # every 12th scene: about 300 KB from every play, as fast as it needs to be


@pytest.fixture(scope="module")
def wordpiece(docs):
    return train_tokenizer([" ".join(d) for d in docs], vocab_size=2000)


@pytest.fixture(scope="module")
def bpe(docs):
    return train_tokenizer([" ".join(d) for d in docs], kind="bytelevel_bpe", vocab_size=2000)


def batches(objective, examples, n, batch_size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        start = (i * batch_size) % max(len(examples) - batch_size, 1)
        yield objective.collate(examples[start:start + batch_size], g)


def original_ids(batch):
    return torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])


@pytest.mark.parametrize("name", ["mlm", "wwm", "span"])
def test_masking_rate_split_and_specials(name, wordpiece, docs):
    obj = build_objective(name, wordpiece, MSL)
    examples = obj.examples(docs[:40])
    special = torch.tensor(wordpiece.all_special_ids)
    chosen = maskable = as_mask = as_same = 0
    for batch in batches(obj, examples, 14):  # examples come round again, with fresh masks
        orig = original_ids(batch)
        is_special = torch.isin(orig, special)
        picked = batch["labels"] != -100
        assert not (picked & is_special).any(), "a special or pad token was chosen"
        assert torch.equal(batch["input_ids"][is_special], orig[is_special]), "a special token was changed"
        assert (batch["input_ids"][batch["attention_mask"] == 0] == wordpiece.pad_token_id).all()
        chosen += int(picked.sum())
        maskable += int((~is_special).sum())
        as_mask += int((batch["input_ids"][picked] == wordpiece.mask_token_id).sum())
        as_same += int((batch["input_ids"][picked] == orig[picked]).sum())
    assert chosen / maskable == pytest.approx(0.15, abs=0.006)
    if name == "span":  # one decision per span: fewer, larger draws, so a wider tolerance
        assert as_mask / chosen == pytest.approx(0.8, abs=0.04)
        assert as_same / chosen == pytest.approx(0.1, abs=0.03)
    else:
        assert as_mask / chosen == pytest.approx(0.8, abs=0.015)
        assert as_same / chosen == pytest.approx(0.1, abs=0.012)
    assert (chosen - as_mask - as_same) / chosen == pytest.approx(0.1, abs=0.03)  # random tokens


def test_same_generator_same_batch(wordpiece, docs):
    obj = build_objective("wwm", wordpiece, MSL)
    examples = obj.examples(docs[:10])
    a = obj.collate(examples[:8], torch.Generator().manual_seed(3))
    b = obj.collate(examples[:8], torch.Generator().manual_seed(3))
    c = obj.collate(examples[:8], torch.Generator().manual_seed(4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["labels"], c["labels"])


def _words(batch, examples, special):
    starts = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    for i, e in enumerate(examples):
        starts[i, : len(e["word_starts"])] = torch.from_numpy(e["word_starts"])
    return word_ids_from_starts(starts, ~torch.isin(original_ids(batch), special))


def _partly_masked_words(words: torch.Tensor, picked: torch.Tensor) -> tuple[int, int]:
    """(words masked in part, masked words of more than one token)."""
    size = words.max() + 2
    index = words + 1  # special tokens -> 0
    total = torch.zeros(words.shape[0], size, dtype=torch.long).scatter_add_(1, index, torch.ones_like(words))
    hit = torch.zeros_like(total).scatter_add_(1, index, picked.long())
    total, hit = total[:, 1:], hit[:, 1:]
    return int(((hit > 0) & (hit < total)).sum()), int(((hit > 1) & (hit == total)).sum())


@pytest.mark.parametrize("name,kind", [("wwm", "wordpiece"), ("wwm", "bytelevel_bpe"), ("span", "wordpiece")])
def test_whole_words_never_split(name, kind, wordpiece, bpe, docs):
    tok = wordpiece if kind == "wordpiece" else bpe
    obj = build_objective(name, tok, MSL)
    examples = obj.examples(docs[:25])
    special = torch.tensor(tok.all_special_ids)
    g = torch.Generator().manual_seed(0)
    multi_piece_words_masked = 0
    for start in range(0, len(examples) - 16, 16):
        chunk = examples[start:start + 16]
        batch = obj.collate(chunk, g)
        partial, multi = _partly_masked_words(_words(batch, chunk, special), batch["labels"] != -100)
        assert partial == 0, "a word was masked in part"
        multi_piece_words_masked += multi
    assert multi_piece_words_masked > 20  # the test saw words of several pieces


def test_chinese_whole_words_come_from_jieba(docs):
    jieba = pytest.importorskip("jieba")
    pytest.importorskip("opencc")
    poems = load_corpus("tang_poems", convert="t2s")[:80]
    tok = train_tokenizer([" ".join(p) for p in poems], vocab_size=1500)
    obj = build_objective("wwm", tok, 64)
    examples = obj.examples(poems)
    text = "".join(poems[0])
    chars = [t for t in tok.convert_ids_to_tokens(examples[0]["input_ids"].tolist()) if t not in ("[CLS]", "[SEP]")]
    assert "".join(chars) == text[: len(chars)]  # one token per character
    boundaries = np.cumsum([0] + [len(w) for w in jieba.lcut(text)])[:-1]
    expected = np.zeros(len(chars), dtype=bool)
    expected[boundaries[boundaries < len(chars)]] = True
    assert np.array_equal(examples[0]["word_starts"][1:1 + len(chars)], expected)
    assert expected.sum() < len(chars)  # some words have several characters
    special = torch.tensor(tok.all_special_ids)
    batch = obj.collate(examples, torch.Generator().manual_seed(0))
    partial, multi = _partly_masked_words(_words(batch, examples, special), batch["labels"] != -100)
    assert partial == 0 and multi > 5
    # Byte-level BPE may cut a character into several tokens: they stay in one word.
    bpe = train_tokenizer(["".join(p) for p in poems], kind="bytelevel_bpe", vocab_size=600)
    example = build_objective("wwm", bpe, 64).examples(poems[:1])[0]
    encoding = bpe.backend.encode(" " + poems[0][0], add_special_tokens=False)
    chars = [a for a, _ in encoding.offsets]
    shared = [i for i in range(1, len(chars)) if chars[i] == chars[i - 1]]
    assert shared and not example["word_starts"][1:][shared].any()


def test_length_distributions_are_the_papers():
    """The histogram test below samples from these same tables, so they are pinned here by the papers'
    own numbers: ALBERT's p(n) = (1/n) / (1 + 1/2 + 1/3), SpanBERT's Geo(0.2) clipped at 10, mean 3.8."""
    torch.testing.assert_close(ngram_probs(3), torch.tensor([6 / 11, 3 / 11, 2 / 11]))
    geometric = torch.tensor([0.2 * 0.8 ** k for k in range(10)])
    torch.testing.assert_close(geometric_probs(0.2, 10), geometric / geometric.sum())
    assert (geometric_probs(0.2, 10) * torch.arange(1, 11)).sum().item() == pytest.approx(3.8, abs=0.05)


@pytest.mark.parametrize("probs", [geometric_probs(0.2, 10), ngram_probs(3)], ids=["span", "ngram"])
def test_span_length_histogram(probs):
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(len(probs))
    for _ in range(10):  # rows of 512 tokens: the budget's edge effects stay small
        starts = torch.rand(64, 512, generator=g) < 0.7  # words of one to a few pieces
        starts[:, 0] = True
        word_ids = word_ids_from_starts(starts, torch.ones(64, 512, dtype=torch.bool))
        spans = choose_word_spans(word_ids, 0.15, probs, g)
        lengths = spans.span_words[spans.span_selected & ~spans.span_cut]
        counts += torch.bincount(lengths - 1, minlength=len(probs)).float()
        assert spans.chosen.float().mean() == pytest.approx(0.15, abs=0.01)
    observed = counts / counts.sum()
    assert 0.5 * (observed - probs).abs().sum() < 0.02, f"span lengths {observed} vs {probs}"
    mean = (observed * torch.arange(1, len(probs) + 1)).sum().item()
    assert mean == pytest.approx((probs * torch.arange(1, len(probs) + 1)).sum().item(), abs=0.1)


@pytest.mark.parametrize("probability", [0.15, 0.4, 0.9])
def test_spans_spend_the_budget_of_every_row(probability):
    """Each row ends within one span of probability x its maskable tokens, however high the budget (the default
    from-scratch run masks 40%): choose_word_spans looks only at the first spans of the random order, and with
    one-token spans (the tightest case) it needs all of them: the budget's floor, or its ceiling as often as the
    budget's fraction says (the span that crosses the budget is kept with that probability)."""
    g = torch.Generator().manual_seed(0)
    maskable = torch.ones(64, 128, dtype=torch.bool)
    maskable[:32, 0] = maskable[:32, -1] = False  # [CLS] ... [SEP]; the other rows all maskable, the tightest budget
    budget = probability * maskable.sum(dim=1).float()  # (64,)
    for probs, starts in ((torch.tensor([1.0]), torch.ones(64, 128, dtype=torch.bool)),
                          (ngram_probs(3), torch.rand(64, 128, generator=g) < 0.7)):
        word_ids = word_ids_from_starts(starts, maskable)
        rounded_up = torch.zeros(64)
        for _ in range(10):
            spans = choose_word_spans(word_ids, probability, probs, g)
            chosen = spans.chosen.sum(dim=1).float()
            span_tokens = torch.zeros_like(spans.lengths).scatter_add_(1, spans.span_of_token, maskable.long())
            assert ((chosen - budget).abs() <= span_tokens.max(dim=1).values).all()
            assert chosen.sum().item() / maskable.sum().item() == pytest.approx(probability, abs=0.01)
            if len(probs) == 1:  # one-token spans: the budget's floor or its ceiling, exactly
                assert ((chosen == budget.floor()) | (chosen == budget.ceil())).all()
                rounded_up += chosen == budget.ceil()
        if len(probs) == 1:
            for rows in (slice(0, 32), slice(32, 64)):  # each kind of row as often as its budget's fraction
                fraction = (budget[rows] - budget[rows].floor()).mean().item()
                assert rounded_up[rows].mean().item() / 10 == pytest.approx(fraction, abs=0.08)


def test_span_gets_one_decision(wordpiece, docs):
    obj = build_objective("span", wordpiece, MSL)
    examples = obj.examples(docs[:30])[:32]
    g = torch.Generator().manual_seed(1)
    input_ids = obj.pad([e["input_ids"] for e in examples], wordpiece.pad_token_id)
    word_starts = obj.pad([e["word_starts"] for e in examples], False, torch.bool)
    maskable = maskable_positions(input_ids, obj.special_table)
    chosen, units = obj.choose(maskable, word_starts, g)
    inputs, labels = replace_80_10_10(input_ids, chosen, wordpiece.mask_token_id, obj.random_pool, g, unit_ids=units)
    outcomes = {"mask": 0, "kept": 0, "random": 0}
    for row in range(len(examples)):
        for span in torch.unique(units[row][chosen[row]]).tolist():
            where = chosen[row] & (units[row] == span)
            is_mask = inputs[row][where] == wordpiece.mask_token_id
            kept = inputs[row][where] == input_ids[row][where]
            assert is_mask.all() or not is_mask.any(), "a span was masked in part"
            assert not (kept.all() and not kept.any())
            outcome = "mask" if is_mask.all() else "kept" if kept.all() else "random"
            if outcome == "random":
                assert (~kept).float().mean() > 0.5  # (a random token can equal the original by chance)
            outcomes[outcome] += 1
    assert outcomes["mask"] > 0 and outcomes["kept"] + outcomes["random"] > 0
    assert torch.equal(labels[chosen], input_ids[chosen])


def _subarray(needle: np.ndarray, haystack: np.ndarray) -> bool:
    n = len(needle)
    return any(np.array_equal(haystack[i:i + n], needle) for i in np.flatnonzero(haystack[: len(haystack) - n + 1]
                                                                                 == needle[0]))


def test_nsp_pairs(wordpiece, docs):
    obj = build_objective("nsp", wordpiece, MSL)
    examples = obj.examples(docs)
    labels = np.array([e["next_sentence_label"] for e in examples])
    assert labels.mean() == pytest.approx(0.5, abs=0.06)
    streams = [np.concatenate([s.ids for s in d]) for d in obj.tokenize_documents(docs)]
    examples = [e for e in examples if len(e["b"]) >= 8][:50]
    for e in examples:  # (a b of fewer than 8 tokens could come from anywhere)
        assert len(e["a"]) + len(e["b"]) <= MSL - 3
        docs_a = {i for i, s in enumerate(streams) if _subarray(e["a"], s)}
        docs_b = {i for i, s in enumerate(streams) if _subarray(e["b"], s)}
        assert docs_a and docs_b
        assert bool(docs_a & docs_b) == (e["next_sentence_label"] == 0)
    batch = obj.collate(examples[:8], torch.Generator().manual_seed(0))
    assert torch.equal(batch["next_sentence_label"], torch.tensor([e["next_sentence_label"] for e in examples[:8]]))


def test_sop_balance_swap_and_skips(wordpiece, docs):
    obj = build_objective("sop", wordpiece, MSL)
    examples = obj.examples(docs)
    g = torch.Generator().manual_seed(0)
    swapped_total = seen = 0
    for start in range(0, 320, 32):
        chunk = examples[start:start + 32]
        batch = obj.collate(chunk, g)
        orig, types = original_ids(batch), batch["token_type_ids"]
        for row, e in enumerate(chunk):
            real = batch["attention_mask"][row] == 1
            ids = orig[row][real]
            first = ids[1: int((types[row][real] == 0).sum()) - 1].numpy()
            swapped = bool(batch["next_sentence_label"][row])
            assert np.array_equal(first, e["b"] if swapped else e["a"])
            swapped_total += swapped
            seen += 1
    assert swapped_total / seen == pytest.approx(0.5, abs=0.06)
    few = [["Only one sentence here."], ["First of two.", "Second of two."], ["Alone again."]]
    assert len(obj.examples(few)) == 1 and obj.skipped_documents == 2
    with pytest.raises(ValueError, match="no document is long enough for sop"):
        obj.examples([["One."], ["Two."]])


def _bart(bpe, **noises):
    off = dict(mask_ratio=0.0, permute_sentence_ratio=0.0, delete_ratio=0.0, insert_ratio=0.0, rotate_ratio=0.0,
               random_ratio=0.0)
    return build_objective("bart", bpe, MSL, **{**off, **noises})


def test_bart_permutation_keeps_the_sentences(bpe, docs):
    obj = _bart(bpe, permute_sentence_ratio=1.0)
    examples = [e for e in obj.examples(docs[:20]) if len(e["sentences"]) >= 3][:20]
    g = torch.Generator().manual_seed(0)
    changed = 0
    for e in examples:
        sentences = [torch.from_numpy(s) for s in e["sentences"]]
        permuted = obj.permute_sentences(sentences, g)
        assert sorted(map(tuple, map(torch.Tensor.tolist, permuted))) == sorted(map(tuple, e["sentences"]))
        changed += [p.tolist() for p in permuted] != [s.tolist() for s in sentences]
    assert changed >= len(examples) // 2
    batch = obj.collate(examples[:4], g)
    assert torch.equal(batch["decoder_input_ids"][:, 0], torch.full((4,), bpe.eos_token_id))
    assert torch.equal(batch["decoder_input_ids"][:, 1:][batch["labels"][:, :-1] != -100],
                       batch["labels"][:, :-1][batch["labels"][:, :-1] != -100])
    assert (batch["labels"][:, 0] == bpe.bos_token_id).all()


def _is_subsequence(small: list, big: list) -> bool:
    it = iter(big)
    return all(x in it for x in small)


def test_bart_text_infilling_one_mask_per_span(bpe, docs):
    obj = _bart(bpe, mask_ratio=0.3)
    g = torch.Generator().manual_seed(0)
    tokens = torch.from_numpy(np.concatenate(obj.examples(docs[:2])[0]["sentences"]))
    n_masks = removed = 0
    for _ in range(50):
        noised, n_spans = obj.mask_spans(tokens, g)
        is_mask = noised == bpe.mask_token_id
        assert int(is_mask.sum()) == n_spans
        assert _is_subsequence(noised[~is_mask].tolist(), tokens.tolist())
        removed += len(tokens) - int((~is_mask).sum())
        n_masks += n_spans
    assert removed / (50 * len(tokens)) <= 0.3 + 1e-6  # spans overlap, so at most the ratio is covered
    assert removed / (50 * len(tokens)) > 0.2
    assert removed / n_masks > 2.0  # each mask stands for a span (mean 3.5), not one token


def test_bart_token_masking_deletion_insertion_rotation(bpe, docs):
    g = torch.Generator().manual_seed(0)
    tokens = torch.from_numpy(np.concatenate(_bart(bpe).examples(docs[:2])[0]["sentences"]))
    n = len(tokens)
    masking = _bart(bpe, mask_ratio=0.3, mask_length="subword", replace_length=-1)
    noised, _ = masking.mask_spans(tokens, g)
    assert len(noised) == n and int((noised == bpe.mask_token_id).sum()) == int(np.ceil(0.3 * n))
    kept = noised != bpe.mask_token_id
    assert torch.equal(noised[kept], tokens[kept])
    deleted = _bart(bpe, delete_ratio=0.2).delete_tokens(tokens, g)
    assert _is_subsequence(deleted.tolist(), tokens.tolist()) and 0.6 * n < len(deleted) < 0.95 * n
    inserted = _bart(bpe, insert_ratio=0.1).insert_tokens(tokens, g)
    is_mask = inserted == bpe.mask_token_id
    assert int(is_mask.sum()) == int(np.ceil(0.1 * n)) and torch.equal(inserted[~is_mask], tokens)
    rotated = _bart(bpe, rotate_ratio=1.0).rotate(tokens, g)
    offset = next(k for k in range(1, n) if torch.equal(torch.cat([tokens[k:], tokens[:k]]), rotated))
    assert 0 < offset < n
    assert torch.equal(_bart(bpe).noise([tokens], g), tokens)  # every noise off: the input is the output


def test_clm_blocks_full_and_documents_separated(bpe, docs):
    obj = build_objective("clm", bpe, 64)
    examples = obj.examples(docs[:5])
    stream = np.concatenate([e["input_ids"] for e in examples])
    # every sentence is tokenised with a leading space (as for every objective), so a document reads as " " + text
    expected = np.concatenate([np.append(bpe.encode(" " + " ".join(d)), bpe.eos_token_id) for d in docs[:5]])
    assert all(len(e["input_ids"]) == 64 for e in examples)
    assert np.array_equal(stream, expected[: len(stream)]) and len(expected) - len(stream) < 64
    batch = obj.collate(examples[:4])
    assert torch.equal(batch["labels"], batch["input_ids"]) and batch["attention_mask"].all()
    vocab = bpe.vocab_size
    perfect = torch.nn.functional.one_hot(torch.roll(batch["input_ids"], -1, dims=1), vocab).float()
    assert obj.metrics(batch, type("Out", (), {"logits": perfect})())["token_accuracy"] == 1.0
    copy = torch.nn.functional.one_hot(batch["input_ids"], vocab).float()
    assert obj.metrics(batch, type("Out", (), {"logits": copy})())["token_accuracy"] < 0.2


def test_bad_input(wordpiece, bpe, docs):
    with pytest.raises(ValueError, match="unknown objective 'xlnet'"):
        build_objective("xlnet", wordpiece, MSL)
    no_mask = Tokenizer(bpe.backend, {k: v for k, v in bpe.special_tokens.items() if k != "mask_token"},
                        "bytelevel_bpe")
    for name in ("mlm", "wwm", "span", "nsp", "sop", "electra", "bart"):
        with pytest.raises(ValueError, match="no mask token"):
            build_objective(name, no_mask, MSL)
    build_objective("clm", no_mask, MSL)  # next-token prediction masks nothing
    eos_only = Tokenizer(bpe.backend, {"eos_token": "</s>", "bos_token": "</s>"}, "bytelevel_bpe")  # GPT-2 style
    assert len(build_objective("clm", eos_only, 32).examples(docs[:2])) > 2
    with pytest.raises(ValueError, match="no pad token"):
        build_objective("mlm", eos_only, MSL)
    with pytest.raises(ValueError, match="larger than the model allows"):
        build_objective("mlm", wordpiece, MSL).build_model({"max_position_embeddings": 64, "hidden_size": 16,
                                                            "num_hidden_layers": 1, "num_attention_heads": 2,
                                                            "intermediate_size": 32})
    with pytest.raises(ValueError, match="no document is long enough for nsp"):
        build_objective("nsp", wordpiece, MSL).examples([["One."], ["Two."]])
    with pytest.raises(ValueError, match="mlm_probability"):
        build_objective("mlm", wordpiece, MSL, mlm_probability=1.5)
    with pytest.raises(ValueError, match="replace_length"):
        build_objective("bart", bpe, MSL, replace_length=2)
    with pytest.raises(ValueError, match="fewer than one block"):
        build_objective("clm", bpe, 512).examples([["Too short."]])


def _sentence_lengths(ends: set[int], segment: np.ndarray) -> list[int]:
    cuts = [i + 1 for i, t in enumerate(segment.tolist()) if t in ends]
    if not cuts or cuts[-1] < len(segment):
        cuts.append(len(segment))
    return np.diff([0, *cuts]).tolist()


@pytest.mark.parametrize("name", ["sop", "nsp"])
def test_segment_shapes_do_not_give_the_label_away(wordpiece, docs, name):
    """A pair's shape (where each segment ends, how long it is) must not tell its label, or the model learns
    the shape. Each rule here once did: at 64 tokens most pairs are cut, and cutting a segment's end left
    "the first segment stops mid-sentence" meaning "swapped" (0.58 on held-out plays: sop's overflowing last
    sentence sat in B); runs laid from a document's start, and odd tokens always cut from B, made A the longer
    segment (0.65: "the middle [SEP] sits past the middle -> in order"); nsp's random B, filling the room,
    held more sentences than a real B. Here every rule must do no better than a coin."""
    obj = build_objective(name, wordpiece, 64)
    examples = obj.examples(docs)
    ends = set(wordpiece.convert_tokens_to_ids([t for t in (".", "!", "?") if t in wordpiece.get_vocab()]))
    assert len(examples) > 1000 and np.mean([int(e["a"][-1]) in ends for e in examples]) > 0.5  # most end a sentence
    if name == "sop":  # each pair counted in both orders; a rule says "in order" (True) or "swapped"
        rules = {"first ends a sentence": lambda f, s: int(f[-1]) in ends,
                 "first is longer": lambda f, s: len(f) > len(s),
                 "first's first sentence longer than second's last":
                     lambda f, s: _sentence_lengths(ends, f)[0] > _sentence_lengths(ends, s)[-1]}
        for rule_name, rule in rules.items():
            right = sum(rule(e["a"], e["b"]) + (not rule(e["b"], e["a"])) for e in examples) / (2 * len(examples))
            assert right == pytest.approx(0.5, abs=0.03), rule_name
    else:  # each rule says "random next" (True) or "real next" from the pair
        label = np.array([e["next_sentence_label"] == 1 for e in examples])
        assert label.mean() == pytest.approx(0.5, abs=0.03)
        rules = {"B stops mid-sentence": lambda a, b: int(b[-1]) not in ends,
                 "B shorter than A": lambda a, b: len(b) < len(a),
                 "B holds more than one sentence": lambda a, b: len(_sentence_lengths(ends, b)) > 1}
        for rule_name, rule in rules.items():
            right = np.mean([rule(e["a"], e["b"]) == y for e, y in zip(examples, label, strict=True)])
            assert right == pytest.approx(0.5, abs=0.04), rule_name


def test_truncate_pair_cuts_the_longer_then_both_and_draws_the_odd_token():
    """truncate_pair's closed form against the loop it replaced (cut one token from the longer, until it fits),
    with the odd token of an equal cut taken from A or from B as asked."""
    for len_a in range(1, 90, 3):
        for len_b in range(1, 90, 4):
            for tie_cuts_a in (True, False):
                cut_a, cut_b = truncate_pair(len_a, len_b, 61, tie_cuts_a)
                la, lb = len_a, len_b
                while la + lb > 61:  # the reference: longer first; when equal, the side asked for
                    if la > lb or (la == lb and tie_cuts_a):
                        la -= 1
                    else:
                        lb -= 1
                assert (len_a - cut_a, len_b - cut_b) == (la, lb), (len_a, len_b, tie_cuts_a)

"""Fine-tuning the generators: sequence-to-sequence (BART) and causal-LM (GPT-2) tasks.

What one example becomes (Shapes: B examples, S source tokens, T target / sequence tokens):

    seq2seq (BART, --task_type seq2seq):
        input_ids   <s> source </s>                       (B, S) read by the encoder
        labels      <s> target </s>                       (B, T) -100 on padding, so padding costs nothing
        the decoder reads the labels shifted right: </s> <s> target (BartForConditionalGeneration does it)
    causal_lm (GPT-2, --task_type causal_lm): prompt and completion are one sequence
        input_ids   prompt completion <eos>               (B, T)
        labels      -100 ... -100 completion <eos>        (B, T) the loss falls on the completion only;
                                                          the model shifts by one itself

Evaluation generates from the source (or prompt) alone, greedily or with beam search
(--num_beams; T5 found beam search helps most on tasks with long outputs: Raffel et al. 2020,
https://arxiv.org/abs/1910.10683), and compares the text with the target: exact match and chrF
(below), beside the teacher-forced loss on the same examples.
"""

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from minibert.checkpoint import read_config_dict
from minibert.finetune.task_data import _check_texts
from minibert.models.bart import BartForConditionalGeneration
from minibert.models.gpt import GPT2LMHeadModel
from minibert.nn.losses import IGNORE_INDEX

logger = logging.getLogger(__name__)

# task type -> (the config.json model_type it needs, the head that fine-tunes it)
HEADS = {"seq2seq": ("bart", BartForConditionalGeneration), "causal_lm": ("gpt2", GPT2LMHeadModel)}
PRETRAIN_HINT = {"seq2seq": "pretrain.py --objective bart", "causal_lm": "pretrain.py --objective clm"}


# -- the metric -----------------------------------------------------------------------------------
def chrf(hypotheses: Sequence[str], references: Sequence[str], char_order: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF in [0, 100] (Popović 2015, https://aclanthology.org/W15-3049/): the F-score of
    character n-grams, n = 1..char_order, recall weighted beta times as much as precision.

    Why characters: a string that is right but for one character keeps most of its n-grams, where
    exact match scores it 0; and it needs no word segmentation (Chinese has no spaces).
    Spaces are removed first. Counts are summed over the corpus per order n; precision
    P_n = matched / hypothesis n-grams and recall R_n = matched / reference n-grams (an n-gram
    matches at most as often as the reference holds it); P and R are the means of P_n and R_n over
    the orders that both sides have n-grams of; chrF = (1 + beta^2) P R / (beta^2 P + R).

    Equal to sacreBLEU's CHRF() (2.x defaults) on one sentence and on a corpus whose references all
    have 6 characters or more; otherwise the two differ: sacreBLEU does not count a sentence's
    hypothesis n-grams of an order its reference has none of, here they count against precision.
    A corpus with no n-gram on either side scores 100 if every text is empty on both (spaces aside;
    sacreBLEU: 0), else 0."""
    if len(hypotheses) != len(references):
        raise ValueError(f"chrf got {len(hypotheses)} hypotheses but {len(references)} references; pass one each")
    matched, hyp_total, ref_total = [0] * char_order, [0] * char_order, [0] * char_order
    for hyp, ref in zip(hypotheses, references, strict=True):
        hyp, ref = "".join(hyp.split()), "".join(ref.split())
        for n in range(1, char_order + 1):
            h = Counter(hyp[i : i + n] for i in range(len(hyp) - n + 1))
            r = Counter(ref[i : i + n] for i in range(len(ref) - n + 1))
            matched[n - 1] += sum((h & r).values())  # & keeps the smaller count: matches are clipped
            hyp_total[n - 1] += sum(h.values())
            ref_total[n - 1] += sum(r.values())
    orders = [n for n in range(char_order) if hyp_total[n] and ref_total[n]]
    if not orders:  # nothing to count: right only if every text is empty on both sides (spaces do not count)
        return 100.0 if not any(h.split() or r.split() for h, r in zip(hypotheses, references, strict=True)) else 0.0
    precision = sum(matched[n] / hyp_total[n] for n in orders) / len(orders)
    recall = sum(matched[n] / ref_total[n] for n in orders) / len(orders)
    if precision + recall == 0:
        return 0.0
    b2 = beta * beta
    return 100.0 * (1 + b2) * precision * recall / (b2 * precision + recall)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """The share of outputs equal to their reference (surrounding whitespace aside)."""
    return sum(h.strip() == r.strip() for h, r in zip(hypotheses, references, strict=True)) / max(len(references), 1)


# -- data -----------------------------------------------------------------------------------------
def text_pairs(rows: list[dict], source_column: str, target_column: str, task_type: str,
               path) -> tuple[list[str], list[str]]:
    """(sources or prompts, targets or completions) of one file's rows; a missing or empty target
    column is an error that names the fix."""
    names = {"seq2seq": ("--text_column (the source)", "--target_column (the target)"),
             "causal_lm": ("--text_column (the prompt)", "--target_column (the completion)")}[task_type]
    if not rows:
        raise ValueError(f"{path} holds no rows; a {task_type} task needs examples")
    for column, flag in ((source_column, names[0]), (target_column, names[1])):
        if column not in rows[0]:
            raise ValueError(f"{path}: no column {column!r}; the columns are {sorted(rows[0])}. Pass {flag}")
    empty = [n for n, r in enumerate(rows, 1) if r.get(target_column) is None or not str(r[target_column]).strip()]
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (" ..." if len(empty) > 5 else "")
        raise ValueError(f"{path}: the target column {target_column!r} is empty in {len(empty)} of {len(rows)} rows "
                         f"(rows {shown}); every example needs a text to learn to generate: fill those rows or "
                         "drop them")
    missing = [n for n, r in enumerate(rows, 1) if r.get(source_column) is None]
    if missing:  # a hole in the data, never the text "" (a row may give "" itself: an empty prompt)
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{path}: the source column {source_column!r} is missing in {len(missing)} of {len(rows)} "
                         f"rows (rows {shown}); fill those rows (\"\" for an empty one) or drop them")
    _check_texts(rows, [source_column, target_column], path, allow_empty=True)  # a list, a dict or NaN is not a text
    return [str(r[source_column]) for r in rows], [str(r[target_column]) for r in rows]


def _ends(tokenizer) -> tuple[int, int]:
    """The tokens around a BART sequence: <s> and </s> (a WordPiece's [CLS] and [SEP])."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if bos is None or eos is None:
        raise ValueError("this tokenizer has no <s>/</s> (or [CLS]/[SEP]) to frame a sequence; use the "
                         "checkpoint's own tokenizer (--tokenizer_name)")
    return bos, eos


def seq2seq_examples(sources: list[str], targets: list[str], tokenizer, max_seq_length: int,
                     source_tokenizer=None) -> list[dict]:
    """{"input_ids": <s> source </s>, "labels": <s> target </s>, "source", "target": the texts}; each side cut to
    max_seq_length tokens (keeping </s>). source_tokenizer: the new encoder's (--new_encoder_vocab)."""
    source_tokenizer = source_tokenizer or tokenizer
    framed, cut = [], []
    for tok, texts in ((source_tokenizer, sources), (tokenizer, targets)):
        bos, eos = _ends(tok)
        encoded = tok.encode_batch(texts)
        framed.append([[bos, *ids[: max_seq_length - 2], eos] for ids in encoded])
        cut.append(sum(len(ids) > max_seq_length - 2 for ids in encoded))
    if cut[0]:
        logger.warning("%d of %d sources are longer than --max_seq_length %d and were cut; the model reads only "
                       "their first %d tokens: raise --max_seq_length", cut[0], len(sources), max_seq_length,
                       max_seq_length - 2)
    if cut[1]:
        logger.warning("%d of %d targets are longer than --max_seq_length %d and were cut; they cannot be matched "
                       "exactly: raise --max_seq_length", cut[1], len(targets), max_seq_length)
    return [{"input_ids": s, "labels": t, "source": source, "target": text}
            for s, t, source, text in zip(*framed, sources, targets, strict=True)]


def _end_of_text(tokenizer) -> int:
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if eos is None:
        raise ValueError("the tokenizer has no end-of-text token to end a completion with; use the checkpoint's own")
    return eos


def causal_lm_examples(prompts: list[str], completions: list[str], tokenizer, max_seq_length: int,
                       path) -> list[dict]:
    """{"input_ids": prompt completion <eos>, "labels": -100 over the prompt, "prompt_length", "source" (the
    prompt's text), "target"}.
    A completion that does not fit is cut; a prompt that fills the sequence alone is an error. An empty
    prompt becomes <eos> alone: the token every text follows in `pretrain.py --objective clm` (GPT-2's
    <|endoftext|>, from which Hugging Face starts unconditional generation), so the completion's first
    token is learnt and generated from it (from no token at all, it was neither, and a batch of empty
    prompts had nothing to generate from)."""
    eos = _end_of_text(tokenizer)
    examples, cut = [], 0
    for n, (prompt, completion) in enumerate(zip(tokenizer.encode_batch(prompts), tokenizer.encode_batch(completions),
                                                 strict=True), 1):
        prompt = prompt or [eos]
        if len(prompt) >= max_seq_length:
            raise ValueError(f"{path} row {n}: the prompt alone has {len(prompt)} tokens, but GPT-2 reads prompt and "
                             f"completion as one sequence of at most --max_seq_length {max_seq_length} tokens, which "
                             f"leaves no room for the completion; shorten the prompt or pass --max_seq_length "
                             f"{len(prompt) + 1 + len(completion)} (at most the model's n_positions)")
        completion = [*completion, eos]
        room = max_seq_length - len(prompt)
        cut += len(completion) > room
        ids = prompt + completion[:room]
        examples.append({"input_ids": ids, "labels": [IGNORE_INDEX] * len(prompt) + completion[:room],
                         "prompt_length": len(prompt), "source": prompts[n - 1], "target": completions[n - 1]})
    if cut:
        logger.warning("%d of %d completions did not fit after their prompts in --max_seq_length %d and were cut",
                       cut, len(examples), max_seq_length)
    return examples


def pad(rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    """Lists of ids -> (B, T), filled with `value` on the right (or the left)."""
    T = max(len(r) for r in rows)
    out = torch.full((len(rows), T), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            out[i, slice(T - len(r), T) if left else slice(0, len(r))] = torch.tensor(r, dtype=torch.long)
    return out


def input_pad_token_id(tokenizer) -> int:
    """The id that pads input rows: the pad token, or (GPT-2's tokenizer has none) the end-of-text
    token; the attention mask and the -100 labels keep it out of every result either way."""
    for token in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.sep_token_id):
        if token is not None:
            return token
    raise ValueError("the tokenizer has neither a pad nor an end-of-text token to pad batches with; "
                     "use the checkpoint's own tokenizer")


class GenerativeCollator:
    """Examples -> input_ids (pad_token_id) and attention_mask (B, S), labels (B, T) with -100 on padding."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        ids = [e["input_ids"] for e in examples]
        input_ids = pad(ids, self.pad_token_id)
        attention_mask = pad([[1] * len(x) for x in ids], 0)
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "labels": pad([e["labels"] for e in examples], IGNORE_INDEX)}


# -- model ----------------------------------------------------------------------------------------
def check_generative_checkpoint(task_type: str, config: dict, max_seq_length: int, source,
                                generation_max_length: int | None = None) -> None:
    """The checkpoint's family fits the task type, --max_seq_length its positions, and BART's decoder
    positions the --generation_max_length new tokens (GPT-2's are shared with each prompt: the evaluator
    fits them row by row)."""
    family = config.get("model_type")
    wanted, _ = HEADS[task_type]
    if family != wanted:
        other = [t for t, (f, _) in HEADS.items() if f == family]
        fix = f"use --task_type {other[0]} with it, or " if other else ""
        raise ValueError(f"{source}: model_type {family!r} cannot be fine-tuned with --task_type {task_type}, which "
                         f"needs a {wanted} checkpoint; {fix}make one with `{PRETRAIN_HINT[task_type]}`")
    limit = config.get("max_position_embeddings" if family == "bart" else "n_positions")
    if limit is not None and max_seq_length > limit:
        raise ValueError(f"--max_seq_length {max_seq_length} is longer than {source} can take ({limit} positions); "
                         f"pass --max_seq_length {limit} or less")
    if family == "bart" and limit is not None and (generation_max_length or 0) > limit:
        raise ValueError(f"--generation_max_length {generation_max_length} is past the {limit} decoder positions of "
                         f"{source}; pass --generation_max_length {limit} or less")


def build_generative_model(task_type: str, source: str, random_init: bool) -> nn.Module:
    _, head = HEADS[task_type]
    if random_init:
        return head(head.config_class.from_dict(read_config_dict(source))).train()
    return head.from_pretrained(source).train()


# -- evaluation -----------------------------------------------------------------------------------
def write_predictions(path, examples: list[dict], predictions: list[str]) -> None:
    """One JSON line per example: {"source", "target", "prediction"} (train.py's generated_predictions.jsonl,
    evaluate_generation's --predictions_file)."""
    lines = [json.dumps({"source": e["source"], "target": e["target"], "prediction": p}, ensure_ascii=False)
             for e, p in zip(examples, predictions, strict=True)]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


GENERATION_METRICS = ("loss", "exact_match", "chrf")  # what GenerationEvaluator returns, in this order


class GenerationEvaluator:
    """eval_fn for the engine: the teacher-forced loss, then generation (greedy, or beam search with
    num_beams) from each source or prompt, scored against the target text. `predictions` holds the
    last evaluation's texts, in the examples' order."""

    def __init__(self, examples: list[dict], task_type: str, tokenizer, batch_size: int, num_beams: int = 1,
                 max_new_tokens: int = 128, pad_token_id: int | None = None):
        """tokenizer: the one that decodes outputs; pad_token_id: the inputs' (default: that tokenizer's)."""
        self.examples, self.task_type, self.tokenizer = examples, task_type, tokenizer
        self.batch_size, self.num_beams, self.max_new_tokens = batch_size, num_beams, max_new_tokens
        self.pad_token_id = pad_token_id if pad_token_id is not None else input_pad_token_id(tokenizer)
        self.collate = GenerativeCollator(self.pad_token_id)
        self.order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))  # little padding
        self.predictions: list[str] = []
        self.capped = False  # whether BART's positions have cut max_new_tokens (said once)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        loss_sum, tokens, predictions = 0.0, 0, [""] * len(self.examples)
        for start in range(0, len(self.order), self.batch_size):
            index = self.order[start : start + self.batch_size]
            chunk = [self.examples[i] for i in index]
            batch = {k: v.to(device) for k, v in self.collate(chunk).items()}
            count = int((batch["labels"] != IGNORE_INDEX).sum())
            loss_sum += float(model(**batch).loss) * count
            tokens += count
            for i, text in zip(index, self._generate(model, chunk, batch, device), strict=True):
                predictions[i] = text
        model.train(was_training)
        self.predictions = predictions
        references = [e["target"] for e in self.examples]
        return dict(zip(GENERATION_METRICS, (loss_sum / max(tokens, 1), exact_match(predictions, references),
                                             chrf(predictions, references)), strict=True))

    def _generate(self, model: nn.Module, chunk: list[dict], batch: dict, device) -> list[str]:
        if self.task_type == "seq2seq":
            inputs, mask = batch["input_ids"], batch["attention_mask"]
        else:  # the prompts alone, padded on the left so every row's new tokens follow its own prompt
            prompts = [e["input_ids"][: e["prompt_length"]] for e in chunk]
            inputs = pad(prompts, self.pad_token_id, left=True).to(device)
            mask = pad([[1] * len(p) for p in prompts], 0, left=True).to(device)
        new_tokens = self.max_new_tokens
        if self.task_type == "causal_lm":  # prompt and new tokens share GPT-2's positions (the last is never fed)
            new_tokens = max(1, min(new_tokens, model._position_limit() + 1 - inputs.size(1)))
        elif new_tokens > model._position_limit():
            # BART's decoder reads the start token and every new token but the last: one position each. Past
            # them generate refused, at the first evaluation, after --eval_steps steps of training.
            new_tokens = model._position_limit()
            if not self.capped:
                self.capped = True  # said once: a run evaluates many times
                logger.warning("--generation_max_length %d is past the decoder's %d positions; generating at most "
                               "%d new tokens", self.max_new_tokens, new_tokens, new_tokens)
        out = model.generate(inputs, attention_mask=mask, num_beams=self.num_beams, max_new_tokens=new_tokens)
        new = out[:, 1:] if self.task_type == "seq2seq" else out[:, inputs.size(1) :]  # after the start / prompt
        bos, eos = _ends(self.tokenizer) if self.task_type == "seq2seq" else (None, _end_of_text(self.tokenizer))
        texts = []
        for row in new.tolist():
            if row and row[0] == bos:
                row = row[1:]  # the <s> every BART target starts with
            texts.append(self.tokenizer.decode(row[: row.index(eos)] if eos in row else row))
        return texts

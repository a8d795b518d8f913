"""Pretraining objectives: one small module each, all built by name.

    objective = build_objective("wwm", tokenizer, max_seq_length=128)
    examples = objective.examples(load_corpus())          # tokenised once
    batch = objective.collate(examples[:32], generator)    # masking redrawn, from the generator
    model = objective.build_model({"hidden_size": 128, ...})
    loss = model(**batch).loss

| name    | model family | model class                  | paper |
|---------|--------------|------------------------------|-------|
| mlm     | bert         | BertForMaskedLM              | BERT |
| wwm     | bert         | BertForMaskedLM              | BERT wwm / Cui et al. 2019 |
| span    | bert         | BertForMaskedLM              | SpanBERT |
| nsp     | bert         | BertForPreTraining           | BERT |
| sop     | bert         | BertForPreTraining           | ALBERT |
| bart    | bart         | BartForConditionalGeneration | BART |
| clm     | gpt          | GPT2LMHeadModel              | GPT-2 |
| electra | bert         | ElectraForPreTraining        | ELECTRA |
"""

from minibert.data.objectives.bart import BartDenoising
from minibert.data.objectives.base import Objective
from minibert.data.objectives.clm import CausalLM
from minibert.data.objectives.electra import ReplacedTokenDetection
from minibert.data.objectives.mlm import MaskedLM
from minibert.data.objectives.nsp import NextSentencePrediction
from minibert.data.objectives.sop import SentenceOrderPrediction
from minibert.data.objectives.span import SpanMaskedLM
from minibert.data.objectives.wwm import WholeWordMaskedLM

OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls
    for cls in (MaskedLM, WholeWordMaskedLM, SpanMaskedLM, NextSentencePrediction, SentenceOrderPrediction,
                BartDenoising, CausalLM, ReplacedTokenDetection)
}


def build_objective(name: str, tokenizer, max_seq_length: int, **options) -> Objective:
    """The objective called `name` (mlm, wwm, span, nsp, sop, bart, clm, electra), with its options."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name](tokenizer, max_seq_length, **options)


__all__ = ["OBJECTIVES", "Objective", "build_objective"]

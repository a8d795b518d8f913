"""mlm: BERT's masked language model (Devlin et al. 2018, https://arxiv.org/abs/1810.04805).

The rule: of the tokens that are not special, choose each with probability 15%; the model must
predict the chosen ones. Of those, 80% are replaced by [MASK], 10% by a random token and 10%
kept, so the model cannot rely on seeing [MASK] (it never appears when fine-tuning). The masking
is redrawn every time a batch is built (RoBERTa's dynamic masking, https://arxiv.org/abs/1907.11692).

Examples are consecutive sentences of one document, packed up to max_seq_length:
`[CLS] sentences ... [SEP]` (built from the corpus's arrays when a batch asks for them).
"""

import numpy as np
import torch

from minibert.data.objectives.base import Objective, masked_accuracy
from minibert.data.objectives.masking import choose_tokens, maskable_positions, replace_80_10_10


class MaskedLM(Objective):
    name = "mlm"

    def __init__(self, tokenizer, max_seq_length: int, mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                 random_replace_prob: float = 0.1, **options):
        super().__init__(tokenizer, max_seq_length, **options)
        if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:  # (else a TypeError about None, later)
            raise ValueError(
                f"the {self.name} objective frames each example as [CLS] ... [SEP] but this tokenizer has no "
                f"{'cls_token' if tokenizer.cls_token_id is None else 'sep_token'}; use a BERT/RoBERTa vocabulary "
                "([CLS]/[SEP] or <s>/</s>), or train one with train_tokenizer"
            )
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}; BERT uses 0.15")
        if mask_replace_prob < 0 or random_replace_prob < 0 or mask_replace_prob + random_replace_prob > 1:
            raise ValueError(
                f"mask_replace_prob {mask_replace_prob} + random_replace_prob {random_replace_prob} must lie in "
                "[0, 1] (the rest of the chosen tokens are kept); BERT uses 0.8 and 0.1"
            )
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob

    def model_class(self) -> type:
        from minibert.models.bert import BertForMaskedLM

        return BertForMaskedLM

    def example_index(self, corpus) -> np.ndarray:
        return self.pack_index(corpus, self.max_seq_length - 2)  # (N, 3): shard, first token, end token

    def build_example(self, corpus, row: np.ndarray) -> dict:
        shard, start, end = row.tolist()
        example = {"input_ids": np.concatenate([[self.tokenizer.cls_token_id], corpus.tokens(shard, start, end),
                                                [self.tokenizer.sep_token_id]])}
        if self.needs_words:
            example["word_starts"] = np.concatenate([[False], corpus.word_starts(shard, start, end), [False]])
        return example

    def choose(self, maskable: torch.Tensor, word_starts: torch.Tensor | None, generator):
        """(chosen (B, T) bool, unit_ids or None): which tokens to predict. Overridden by wwm and span."""
        return choose_tokens(maskable, self.mlm_probability, generator), None

    def mask(self, batch: dict[str, torch.Tensor], generator) -> dict[str, torch.Tensor]:
        """Replace batch["input_ids"] by its corrupted copy and add labels (-100 where not chosen)."""
        word_starts = batch.pop("word_starts", None)
        input_ids = batch["input_ids"]
        maskable = maskable_positions(input_ids, self.special_table)
        chosen, units = self.choose(maskable, word_starts, generator)
        batch["input_ids"], batch["labels"] = replace_80_10_10(
            input_ids, chosen, self.tokenizer.mask_token_id, self.random_pool, generator,
            self.mask_replace_prob, self.random_replace_prob, unit_ids=units)
        return batch

    def collate(self, examples: list[dict], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        input_ids = self.pad([e["input_ids"] for e in examples], self.tokenizer.pad_token_id)
        batch = {"input_ids": input_ids,
                 "attention_mask": (input_ids != self.tokenizer.pad_token_id).long(),
                 "token_type_ids": torch.zeros_like(input_ids)}
        if "word_starts" in examples[0]:
            batch["word_starts"] = self.pad([e["word_starts"] for e in examples], False, dtype=torch.bool)
        return self.mask(batch, generator)

    def metrics(self, batch: dict[str, torch.Tensor], outputs) -> dict[str, float]:
        logits = getattr(outputs, "prediction_logits", None)
        logits = outputs.logits if logits is None else logits
        return {"mlm_accuracy": masked_accuracy(logits, batch["labels"])}

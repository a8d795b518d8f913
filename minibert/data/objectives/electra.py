"""electra: replaced-token detection (Clark et al. 2020, https://arxiv.org/abs/2003.10555).

The data side is masked LM (15% of the tokens chosen; ELECTRA's code puts [MASK] on 85% of them
and keeps the rest, no random tokens); the model (minibert.models.electra) has a small generator
fill the masks with samples and a discriminator tell replaced tokens from original ones.
"""

from minibert.data.objectives.base import masked_accuracy
from minibert.data.objectives.mlm import MaskedLM


class ReplacedTokenDetection(MaskedLM):
    name = "electra"

    def __init__(self, tokenizer, max_seq_length: int, mask_replace_prob: float = 0.85,
                 random_replace_prob: float = 0.0, generator_size: float = 0.25, discriminator_weight: float = 50.0,
                 temperature: float = 1.0, **options):
        super().__init__(tokenizer, max_seq_length, mask_replace_prob=mask_replace_prob,
                         random_replace_prob=random_replace_prob, **options)
        self.generator_size = generator_size
        self.discriminator_weight = discriminator_weight
        self.temperature = temperature

    def model_class(self) -> type:
        from minibert.models.electra import ElectraForPreTraining

        return ElectraForPreTraining

    def model_options(self) -> dict:
        return {"generator_size": self.generator_size, "discriminator_weight": self.discriminator_weight,
                "temperature": self.temperature}

    def metrics(self, batch, outputs) -> dict[str, float]:
        real = batch["attention_mask"].bool()
        predicted = outputs.discriminator_logits > 0
        labels = outputs.discriminator_labels.bool()
        out = {"mlm_accuracy": masked_accuracy(outputs.generator_logits, batch["labels"]),
               "discriminator_accuracy": (predicted == labels)[real].float().mean().item(),
               "replaced_fraction": labels[real].float().mean().item()}
        if labels[real].any():
            out["replaced_recall"] = predicted[labels & real].float().mean().item()
        return out

"""clm: causal language modelling, next-token prediction (GPT-2, Radford et al. 2019).

The rule: predict each token from the ones before it. Documents are joined into one stream, each
followed by an end-of-text token (so the model learns where a text ends), and the stream is cut
into full blocks of max_seq_length tokens (the remainder is dropped): no padding, no wasted
compute. Batches carry `labels` equal to `input_ids`: the model shifts them itself (logits at t
are scored against the token at t + 1), as Hugging Face's GPT2LMHeadModel does.
"""

import numpy as np
import torch

from minibert.data.corpus import join_sentences
from minibert.data.objectives.base import Objective


class CausalLM(Objective):
    name = "clm"
    model_family = "gpt"
    needs_mask_token = False
    needs_pad_token = False  # blocks are full: nothing is padded

    def __init__(self, tokenizer, max_seq_length: int, **options):
        super().__init__(tokenizer, max_seq_length, **options)
        self.eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        if self.eos is None:
            raise ValueError("clm needs an end-of-text token (</s>, <|endoftext|> or [SEP]) to separate documents; "
                             "use a byte-level BPE tokenizer from train_tokenizer(kind='bytelevel_bpe')")

    def model_class(self) -> type:
        from minibert.models.gpt import GPT2LMHeadModel

        return GPT2LMHeadModel

    def config_class(self) -> type:
        from minibert.models.gpt import GPT2Config

        return GPT2Config

    def position_limit(self, config) -> int:
        return config.n_positions

    def default_config(self) -> dict:
        import dataclasses

        wanted = {"vocab_size": self.tokenizer.vocab_size, "n_positions": max(self.max_seq_length, 1024),
                  "bos_token_id": self.eos, "eos_token_id": self.eos, "pad_token_id": self.tokenizer.pad_token_id}
        names = {f.name for f in dataclasses.fields(self.config_class())}
        return {k: v for k, v in wanted.items() if k in names and v is not None}

    def examples(self, documents: list[list[str]]) -> list[dict]:
        texts = [join_sentences(doc) for doc in documents]
        stream = np.concatenate([np.append(np.asarray(ids, dtype=np.int64), self.eos)
                                 for ids in self.tokenizer.encode_batch(texts)])
        blocks = len(stream) // self.max_seq_length
        if blocks == 0:
            raise ValueError(f"the corpus has {len(stream)} tokens, fewer than one block of max_seq_length "
                             f"{self.max_seq_length}; use more text or a smaller max_seq_length")
        stream = stream[: blocks * self.max_seq_length].reshape(blocks, self.max_seq_length)
        return [{"input_ids": row} for row in stream]

    def collate(self, examples: list[dict], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        input_ids = torch.from_numpy(np.stack([e["input_ids"] for e in examples]))
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids.clone()}

    def metrics(self, batch: dict[str, torch.Tensor], outputs) -> dict[str, float]:
        predicted = outputs.logits[:, :-1].argmax(dim=-1)  # the prediction at t is for token t + 1
        target = batch["labels"][:, 1:]
        keep = target != -100
        return {"token_accuracy": (predicted[keep] == target[keep]).float().mean().item()}

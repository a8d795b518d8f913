"""clm: causal language modelling, next-token prediction (GPT-2, Radford et al. 2019).

The rule: predict each token from the ones before it. Documents (their sentences tokenised as
every objective tokenises them: each with a leading space) are joined into one stream, each
followed by an end-of-text token (so the model learns where a text ends), and the stream is cut
into full blocks of max_seq_length tokens (the remainder is dropped): no padding, no wasted
compute. Batches carry `labels` equal to `input_ids`: the model shifts them itself (logits at t
are scored against the token at t + 1), as Hugging Face's GPT2LMHeadModel does.
"""

from functools import partial

import numpy as np
import torch

from minibert.data.objectives.base import Examples, Objective


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

    def examples(self, documents) -> Examples:
        """Block i is tokens [i * L, (i + 1) * L) of the stream; `blocks` says where each document sits in
        it, so a block is assembled from the arrays when a batch asks for it."""
        corpus = self.tokenized(documents)
        rows = [(k, int(offsets[0]), int(offsets[-1])) for k, offsets in corpus.documents()]
        documents_at = np.asarray(rows, dtype=np.int64).reshape(-1, 3)  # (D, 3): shard, first token, end token
        stream_ends = np.cumsum(documents_at[:, 2] - documents_at[:, 1] + 1)  # + 1: the end-of-text token
        total = int(stream_ends[-1]) if len(stream_ends) else 0
        blocks = total // self.max_seq_length
        if blocks == 0:
            raise ValueError(f"the corpus has {total} tokens, fewer than one block of max_seq_length "
                             f"{self.max_seq_length}; use more text or a smaller max_seq_length")
        build = partial(self.build_block, corpus, documents_at, stream_ends)
        return Examples(build, np.arange(blocks, dtype=np.int64)[:, None])  # (N, 1): row i holds block number i

    def build_block(self, corpus, documents_at: np.ndarray, stream_ends: np.ndarray, row: np.ndarray) -> dict:
        start = int(row[0]) * self.max_seq_length
        end = start + self.max_seq_length
        pieces = []
        d = int(np.searchsorted(stream_ends, start, side="right"))  # the document holding stream position start
        while start < end:
            shard, first, last = documents_at[d].tolist()
            doc_start = int(stream_ends[d]) - (last - first + 1)  # where document d begins in the stream
            ids = np.append(corpus.tokens(shard, first, last), self.eos)[start - doc_start:end - doc_start]
            pieces.append(ids)
            start += len(ids)
            d += 1
        return {"input_ids": np.concatenate(pieces)}

    def collate(self, examples: list[dict], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        input_ids = torch.from_numpy(np.stack([e["input_ids"] for e in examples]))
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids.clone()}

    def metrics(self, batch: dict[str, torch.Tensor], outputs) -> dict[str, float]:
        predicted = outputs.logits[:, :-1].argmax(dim=-1)  # the prediction at t is for token t + 1
        target = batch["labels"][:, 1:]
        keep = target != -100
        return {"token_accuracy": (predicted[keep] == target[keep]).float().mean().item()}

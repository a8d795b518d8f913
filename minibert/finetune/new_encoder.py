"""BART's recipe for translating from another language: a new encoder front with its own vocabulary.

Lewis et al. 2019, https://arxiv.org/abs/1910.13461 (section 3.4): BART's encoder embedding layer
is replaced by a new, randomly initialised encoder, which learns to map the foreign words into an
input that BART can de-noise into its own language; the new encoder has its own vocabulary.

    source ids (new vocabulary) ─► new embedding (V_src, E) ─► new encoder layers ─┐  (the front)
        ┌──────────────────────────────────────────────────────────────────────────┘
        └─► + BART's positions ─► LayerNorm ─► BART's encoder layers ─► memory ─► BART's decoder ─► target

Two stages, as in the paper. Stage one freezes most of BART and trains only the new front, BART's
positional embeddings (encoder and decoder: the paper says "the BART positional embeddings") and
the self-attention input projections (query, key, value) of BART's first encoder layer: the first
projections to read the front's output (once BART's positions are added and its embedding LayerNorm,
which stays frozen as the paper says nothing of it, has normalised the sum), so they adapt to it while
the pretrained rest is protected from the random front's early gradients. Stage two trains every
parameter for a few steps.

The front sits where BART's encoder looks its tokens up (`embeddings.embed_tokens`, the list that
already hides the shared embedding from the module tree), so BART's encoder, decoder and
`generate` run unchanged; the front itself is a module of BartWithNewEncoder, saved once.
"""

import dataclasses
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from minibert.checkpoint import NEW_ENCODER_DIR, NEW_ENCODER_SETTINGS
from minibert.finetune.unfreezing import check_optimizer_holds
from minibert.generation import GenerationMixin
from minibert.models.bart import BartConfig, BartEncoderLayer, BartForConditionalGeneration
from minibert.nn import padding_mask
from minibert.outputs import Seq2SeqLMOutput

logger = logging.getLogger(__name__)

FRONT_WEIGHTS = "front.safetensors"
FRONT_SETTINGS = NEW_ENCODER_SETTINGS  # in NEW_ENCODER_DIR, beside the fine-tuned BART (checkpoint.py)


class NewEncoderFront(nn.Module):
    """Source ids of a new vocabulary (B, S) -> vectors (B, S, E) in place of BART's token embeddings:
    an embedding and `num_layers` encoder layers of BART's shape, randomly initialised."""

    def __init__(self, config: BartConfig, vocab_size: int, pad_token_id: int, num_layers: int):
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"--new_encoder_layers must be >= 0, got {num_layers}")
        self.pad_token_id = pad_token_id
        self.embed_tokens = nn.Embedding(vocab_size, config.d_model, padding_idx=pad_token_id)
        self.layers = nn.ModuleList(BartEncoderLayer(config) for _ in range(num_layers))
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=config.init_std)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.embed_tokens.weight[pad_token_id].zero_()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # BART's encoder hands over only the ids (it looks tokens up): the padding is where they are pad
        keep = padding_mask(input_ids.ne(self.pad_token_id))
        x = self.embed_tokens(input_ids)  # (B, S, E)
        for layer in self.layers:
            x, _ = layer(x, keep)
        return x


class BartWithNewEncoder(nn.Module, GenerationMixin):
    """A pretrained BartForConditionalGeneration reading its source through a NewEncoderFront.
    Called like BART (input_ids of the new vocabulary, attention_mask, labels); `generate` works."""

    is_encoder_decoder = True

    def __init__(self, bart: BartForConditionalGeneration, vocab_size: int, pad_token_id: int, num_layers: int = 1):
        super().__init__()
        self.bart = bart
        self.front = NewEncoderFront(bart.config, vocab_size, pad_token_id, num_layers)
        bart.model.encoder.embeddings.embed_tokens = [self.front]  # the decoder keeps the shared embedding
        # generate checks the source ids against config.vocab_size: here the new vocabulary's size. The
        # decoder's, and every other setting generate reads (eos, decoder start ...), stay BART's.
        self.config = dataclasses.replace(bart.config, vocab_size=vocab_size)
        self.settings = {"vocab_size": vocab_size, "pad_token_id": pad_token_id, "num_layers": num_layers}

    @property
    def generation_config(self) -> dict | None:
        return self.bart.generation_config

    def forward(self, input_ids, attention_mask=None, labels=None, decoder_input_ids=None) -> Seq2SeqLMOutput:
        memory = self.bart.model.encoder(input_ids, attention_mask)  # (B, S, E), through the front
        return self.bart(attention_mask=attention_mask, decoder_input_ids=decoder_input_ids, labels=labels,
                         encoder_outputs=memory)

    def loss_items(self, batch: dict) -> int:
        """BART's loss, so BART's count: the engine weighs accumulated micro-batches by it."""
        return self.bart.loss_items(batch)

    # -- the generation protocol (minibert/generation.py): BART's, but the source goes through the front
    def _position_limit(self) -> int:
        return self.bart._position_limit()

    def _check_generation_length(self, input_ids, attention_mask, max_new_tokens: int) -> None:
        self.bart._check_generation_length(input_ids, attention_mask, max_new_tokens)

    def _decoder_vocab_size(self) -> int:  # config.vocab_size is the source's here
        return self.bart.config.vocab_size

    def _generation_setup(self, input_ids, attention_mask, max_new_tokens, decoder_start):
        memory = self.bart.model.encoder(input_ids, attention_mask).last_hidden_state  # (B, S, E)
        start = input_ids.new_full((input_ids.size(0), 1), decoder_start)
        padded = attention_mask is not None and not bool(attention_mask.all())
        return start, {"memory": memory, "memory_attention_mask": attention_mask if padded else None}

    def _static_cache(self, rows: int, max_length: int, state):
        return self.bart._static_cache(rows, max_length, state)

    def _generation_forward(self, tokens, state, past_key_values, cached: int):
        return self.bart._generation_forward(tokens, state, past_key_values, cached)

    def _reorder_cache(self, past_key_values, beam_idx: torch.Tensor):
        return self.bart._reorder_cache(past_key_values, beam_idx)

    # -- saving: BART as a checkpoint of its own, the front beside it ------------------------------
    def save(self, path: str | Path, source_tokenizer=None) -> None:
        path = Path(path)
        # save_pretrained removes (with a warning) a front.json it finds, which is right for a plain model
        # saved over this one; saved again here, the front is written again just below. Put back if the
        # save fails: without it the earlier model would load as a plain BART
        settings = path / NEW_ENCODER_DIR / FRONT_SETTINGS
        earlier = settings.read_bytes() if settings.is_file() else None
        settings.unlink(missing_ok=True)
        try:
            self.bart.save_pretrained(path)
        except BaseException:
            if earlier is not None:
                settings.write_bytes(earlier)
            raise
        front_dir = path / NEW_ENCODER_DIR
        front_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.front.state_dict().items()}, front_dir / FRONT_WEIGHTS)
        (front_dir / FRONT_SETTINGS).write_text(json.dumps(self.settings, indent=2) + "\n")
        if source_tokenizer is not None:
            source_tokenizer.save_pretrained(front_dir)

    @classmethod
    def load(cls, path: str | Path) -> "BartWithNewEncoder":
        path = Path(path)
        settings = json.loads((path / NEW_ENCODER_DIR / FRONT_SETTINGS).read_text())
        model = cls(BartForConditionalGeneration.from_pretrained(path), **settings)
        model.front.load_state_dict(load_file(path / NEW_ENCODER_DIR / FRONT_WEIGHTS))
        return model.eval()


def has_new_encoder(path: str | Path) -> bool:
    return (Path(path) / NEW_ENCODER_DIR / FRONT_SETTINGS).is_file()


def stage_one_parameters(model: BartWithNewEncoder) -> list[str]:
    """The names that train in stage one: the front, BART's positional embeddings, and the query,
    key and value projections of BART's first encoder layer."""
    first_attention = "bart.model.encoder.layers.0.self_attn."
    return [name for name, _ in model.named_parameters()
            if name.startswith("front.") or "embed_positions" in name
            or any(name.startswith(first_attention + proj) for proj in ("q_proj.", "k_proj.", "v_proj."))]


class TwoStageTraining:
    """A training callback (build it after the optimizer, whose groups need every parameter, and after
    the Trainer, whose DDP wrapper synchronises only what requires a gradient when it is built): stage
    one trains stage_one_parameters only (a frozen parameter has no gradient, which AdamW skips: no
    update, no decay, no moment) for `stage_one_steps` optimizer steps; then every parameter trains."""

    def __init__(self, model: BartWithNewEncoder, stage_one_steps: int):
        if stage_one_steps < 1:
            raise ValueError(f"stage one needs at least 1 step, got {stage_one_steps}; lower "
                             "--new_encoder_stage_two_steps or raise --max_steps")
        self.model, self.stage_one_steps = model, stage_one_steps
        trained = set(stage_one_parameters(model))
        for name, p in model.named_parameters():
            p.requires_grad_(name in trained)
        self.stage = 1
        logger.info("new encoder, stage one: %d of %d parameters train for %d steps",
                    sum(p.numel() for p in model.parameters() if p.requires_grad),
                    sum(p.numel() for p in model.parameters()), stage_one_steps)

    def on_step_end(self, trainer) -> None:
        if self.stage == 1 and trainer.state.global_step >= self.stage_one_steps:
            for p in self.model.parameters():
                p.requires_grad_(True)
            self.stage = 2
            logger.info("new encoder, stage two from step %d: every parameter trains", trainer.state.global_step)

    def on_train_begin(self, trainer) -> None:
        if getattr(trainer, "optimizer", None) is not None:  # stage two thaws every parameter
            check_optimizer_holds(trainer.optimizer, dict(self.model.named_parameters()), "TwoStageTraining")
        self.on_step_end(trainer)  # a run resumed in stage two trains every parameter from its first step

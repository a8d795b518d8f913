"""How much the vector BART's classification head reads depends on the text: pretrained against random weights.

    python bench/bart_sentence_vector.py [BART_DIR]     # default: runs/pretrain-bart (about 20 s)

Measured 2026-11-25 on the default `pretrain.py --objective bart` checkpoint, the first 256 validation speeches of
the genre task: the mean cosine between two texts' vectors is 0.696 pretrained and 0.266 from random weights (the
encoder's mean state: 0.621 and 0.446).

BartForSequenceClassification scores the decoder's state at the last </s> (Lewis et al. 2019, section 3.1). That is
the state whose input is the text's last token and whose pretraining target was </s>, the same token after every
text: denoising trains it to say "the text ends here", not what the text was. Texts that look alike to the head
leave it less to tell genres apart by, which is one reading of why the default BART starts fine-tuning below its
random weights (README: "GPT-2 and BART as classifiers").
"""

import json
import sys
from pathlib import Path

import torch

from minibert.finetuning import DEFAULT_VALIDATION_FILE
from minibert.models.bart import BartConfig, BartForSequenceClassification
from minibert.tokenizer import load_tokenizer

TEXTS = 256


def vectors(model: BartForSequenceClassification, tok, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, E) the head's input (the decoder's state at each row's last </s>), (N, E) the encoder's mean state."""
    heads, encoder_means = [], []
    with torch.no_grad():
        for start in range(0, len(texts), 32):
            batch = tok(texts[start : start + 32], max_length=min(128, model.config.max_position_embeddings))
            ids, mask = batch["input_ids"], batch["attention_mask"]
            h = model.model(ids, mask).last_hidden_state  # (B, T, E)
            eos = ids.eq(model.config.eos_token_id)
            heads.append(h[eos].view(h.size(0), -1, h.size(-1))[:, -1])  # (B, n_eos, E) -> the last: (B, E)
            encoded = model.model.encoder(ids, mask).last_hidden_state  # (B, T, E)
            keep = mask.unsqueeze(-1)  # (B, T, 1)
            encoder_means.append((encoded * keep).sum(1) / keep.sum(1))
    return torch.cat(heads), torch.cat(encoder_means)


def mean_cosine(v: torch.Tensor) -> float:
    """The mean cosine similarity over every pair of different rows."""
    unit = torch.nn.functional.normalize(v, dim=-1)
    cos = unit @ unit.T  # (N, N)
    return float(cos[~torch.eye(len(v), dtype=torch.bool)].mean())


def main(path: str = "runs/pretrain-bart") -> None:
    if not (Path(path) / "config.json").is_file():
        sys.exit(f"{path} is not a checkpoint; run `python pretrain.py --objective bart` first, or pass a BART dir")
    torch.manual_seed(0)
    tok = load_tokenizer(path)
    lines = DEFAULT_VALIDATION_FILE.read_text(encoding="utf-8").splitlines()[:TEXTS]
    texts = [json.loads(line)["text"] for line in lines]
    config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    for name in ("pretrained", "random"):
        model = (BartForSequenceClassification.from_pretrained(path, num_labels=3) if name == "pretrained" else
                 BartForSequenceClassification(BartConfig.from_dict(config, num_labels=3))).eval()
        head, encoder = vectors(model, tok, texts)
        print(f"{name:10s} mean cosine between two texts: head's input {mean_cosine(head):.3f}, "
              f"encoder mean {mean_cosine(encoder):.3f}  ({len(texts)} validation speeches)")


if __name__ == "__main__":
    main(*sys.argv[1:])

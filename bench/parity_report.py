"""Largest absolute differences between minibert and Hugging Face, for the README's parity table.

Tiny random Hugging Face models (built from configs, offline) are saved, loaded with minibert's
loader and run on the same padded batch in fp32; for each class this prints the largest
|minibert - Hugging Face| over every output tensor (hidden states, attentions, logits, loss)
and over the gradients of every parameter after one backward pass.

    python bench/parity_report.py
"""

import sys
import tempfile

import torch
import transformers

from minibert.models import bert as mb

CLASSES = [
    ("BertModel", mb.BertModel, {}),
    ("BertForPreTraining", mb.BertForPreTraining, {}),
    ("BertForMaskedLM", mb.BertForMaskedLM, {}),
    ("BertForSequenceClassification", mb.BertForSequenceClassification, {}),
    ("BertForTokenClassification", mb.BertForTokenClassification, {}),
    ("BertForQuestionAnswering", mb.BertForQuestionAnswering, {"num_labels": 2}),  # start + end
    ("RobertaModel", mb.RobertaModel, {}),
    ("RobertaForMaskedLM", mb.RobertaForMaskedLM, {}),
    ("RobertaForSequenceClassification", mb.RobertaForSequenceClassification, {}),
    ("RobertaForTokenClassification", mb.RobertaForTokenClassification, {}),
    ("RobertaForQuestionAnswering", mb.RobertaForQuestionAnswering, {"num_labels": 2}),
]
VOCAB = 99


def inputs_and_labels(name: str, roberta: bool):
    g = torch.Generator().manual_seed(1)
    B, T = 4, 16
    mask = (torch.arange(T)[None] < torch.tensor([16, 11, 6, 13])[:, None]).long()
    ids = torch.randint(3, VOCAB, (B, T), generator=g).masked_fill(mask == 0, 1 if roberta else 0)
    batch = {"input_ids": ids, "attention_mask": mask}
    if name.endswith("ForPreTraining") or name.endswith("ForMaskedLM"):
        batch["labels"] = ids.masked_fill(torch.rand(B, T, generator=g) > 0.3, -100)
    if name.endswith("ForPreTraining"):
        batch["next_sentence_label"] = torch.tensor([0, 1, 1, 0])
    if name.endswith("ForSequenceClassification"):
        batch["labels"] = torch.tensor([0, 2, 1, 1])
    if name.endswith("ForTokenClassification"):
        batch["labels"] = torch.randint(0, 3, (B, T), generator=g).masked_fill(mask == 0, -100)
    if name.endswith("ForQuestionAnswering"):
        batch |= {"start_positions": torch.tensor([1, 3, 2, 0]), "end_positions": torch.tensor([2, 5, 4, 1])}
    return batch


def scalar(out) -> torch.Tensor:
    loss = getattr(out, "loss", None)
    return loss if loss is not None else out.last_hidden_state.sum()


def max_diff(a, b) -> float:
    diffs = []
    for field in ("last_hidden_state", "pooler_output", "logits", "prediction_logits", "seq_relationship_logits",
                  "start_logits", "end_logits", "loss"):
        x, y = getattr(a, field, None), getattr(b, field, None)
        if x is not None:
            diffs.append((x - y).abs().max().item())
    diffs += [(x - y).abs().max().item() for x, y in zip(a.hidden_states, b.hidden_states, strict=True)]
    if b.attentions is not None:
        diffs += [(x - y).abs().max().item() for x, y in zip(a.attentions, b.attentions, strict=True)]
    return max(diffs)


def main() -> None:
    print(f"{'class':34s} {'attn':5s} {'outputs':>10s} {'gradients':>10s}")
    worst = 0.0
    for name, ours_cls, extra in CLASSES:
        roberta = name.startswith("Roberta")
        kwargs = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=64, **{"num_labels": 3, **extra})
        config = (transformers.RobertaConfig(pad_token_id=1, type_vocab_size=1, **kwargs) if roberta
                  else transformers.BertConfig(**kwargs))
        config._attn_implementation = "eager"
        torch.manual_seed(0)
        hf = getattr(transformers, name)(config).eval()
        with tempfile.TemporaryDirectory() as tmp:
            hf.save_pretrained(tmp)
            for attn in ("eager", "sdpa"):
                ours = ours_cls.from_pretrained(tmp, attn_implementation=attn)
                batch = inputs_and_labels(name, roberta)
                hf.zero_grad()
                a = hf(**batch, output_hidden_states=True, output_attentions=True)
                # Attention maps come from the eager path only; the sdpa row compares everything else.
                b = ours(**batch, output_hidden_states=True, output_attentions=attn == "eager")
                out_diff = max_diff(a, b)
                scalar(a).backward()
                scalar(b).backward()
                hf_grads = {k: p.grad for k, p in hf.named_parameters()}
                grad_diff = 0.0
                for key, p in ours.named_parameters():
                    body = ours._split_prefix(key)[0] if ours.is_head_model else key
                    theirs, part = ours.weight_map.to_theirs(body)
                    theirs = f"{ours.base_model_prefix}.{theirs}" if part == "base" and ours.is_head_model else theirs
                    if hf_grads[theirs] is not None and p.grad is not None:
                        grad_diff = max(grad_diff, (hf_grads[theirs] - p.grad).abs().max().item())
                worst = max(worst, out_diff, grad_diff)
                print(f"{name:34s} {attn:5s} {out_diff:10.2e} {grad_diff:10.2e}")
    print(f"largest difference: {worst:.2e}")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the docstring is the usage
        print(__doc__)
        raise SystemExit(0)
    main()

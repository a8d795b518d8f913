"""What a reader must follow to understand one forward pass: project files and functions it runs (issue 12).

    python bench/reading_cost.py

For each family, a tiny random Hugging Face model is saved and loaded into minibert (the same weights),
and one training forward (a padded batch of two, with labels, so the loss runs too) is run by each under
`sys.settrace`. Counted, by the same rule for both: every Python function call whose code lives in the
project's own package (`minibert/` or `transformers/`), grouped by file and by (file, function). Calls
into torch are not counted for either: they are the shared building material, not the project's code.
Printed side by side, with Hugging Face's count over minibert's.

A count is what a reader who follows every call with a debugger walks through; it is not a line count.
Hugging Face's includes its plumbing (output decorators, attention-interface dispatch, mask helpers),
which is part of what its reader must step over.
"""

import collections
import sys
import tempfile
from pathlib import Path

import torch

import minibert

VOCAB, B, T = 99, 2, 12


def touched(model, batch: dict) -> dict[str, set[str]]:
    """{project file: functions called in it} while `model(**batch)` runs, for minibert and transformers."""
    calls: dict[str, set[str]] = collections.defaultdict(set)

    def tracer(frame, event, arg):
        if event == "call":
            path = Path(frame.f_code.co_filename).as_posix()
            for package in ("/minibert/", "/transformers/"):
                if package in path:
                    relative = package.strip("/") + "/" + path.split(package, 1)[1]
                    calls[relative].add(frame.f_code.co_qualname)
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        model(**batch)
    finally:
        sys.settrace(previous)
    return dict(calls)


def hf_models():
    """(name, Hugging Face model, batch with labels) for each family, tiny and random."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    sizes = dict(vocab_size=VOCAB, max_position_embeddings=64)
    encoder = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, **sizes)
    ids = torch.randint(3, VOCAB, (B, T), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 8:] = 0
    labels = torch.full((B, T), -100)
    labels[:, 2] = ids[:, 2]
    mlm = dict(input_ids=ids, attention_mask=mask, labels=labels)
    lm = dict(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
    seq2seq = dict(input_ids=ids, attention_mask=mask, labels=ids[:, :7].clone())
    return [
        ("BERT-MLM", transformers.BertForMaskedLM(transformers.BertConfig(**encoder)), mlm),
        ("RoBERTa-MLM", transformers.RobertaForMaskedLM(transformers.RobertaConfig(
            pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1, **encoder)), mlm),
        ("GPT-2 LM", transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64)), lm),
        ("BART seq2seq", transformers.BartForConditionalGeneration(transformers.BartConfig(
            d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=37, decoder_ffn_dim=37, pad_token_id=1, bos_token_id=0, eos_token_id=2,
            decoder_start_token_id=2, forced_eos_token_id=None, **sizes)), seq2seq),
    ]


def measure() -> list[tuple[str, dict, dict]]:
    """(family, minibert's {file: functions}, Hugging Face's {file: functions}) per family."""
    rows = []
    for name, hf, batch in hf_models():
        hf.eval()
        with tempfile.TemporaryDirectory() as directory:
            hf.save_pretrained(directory)
            ours = minibert.load_pretrained(directory).eval()
        for model in (ours, hf):  # one untraced call each: first-call caches stay out of the count
            model(**batch)
        rows.append((name, touched(ours, batch), touched(hf, batch)))
    return rows


def main() -> int:
    import transformers

    torch.manual_seed(0)
    print(f"one training forward (batch {B} x {T}, padded, with labels); project files / functions called "
          f"(transformers {transformers.__version__})\n")
    print(f"{'family':<14}{'minibert':>16}{'Hugging Face':>16}{'HF / ours':>16}")
    rows = measure()
    for name, ours, hf in rows:
        ours_functions = sum(len(f) for f in ours.values())
        hf_functions = sum(len(f) for f in hf.values())
        print(f"{name:<14}{len(ours):>8} / {ours_functions:<5}{len(hf):>8} / {hf_functions:<5}"
              f"{len(hf) / len(ours):>9.1f}x /{hf_functions / ours_functions:>4.1f}x")
    print("\nminibert's files, BERT-MLM:")
    name, ours, _ = rows[0]
    for path, functions in sorted(ours.items()):
        print(f"  {path}: {', '.join(sorted(functions))}")
    return 0


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the docstring is the usage
        print(__doc__)
        raise SystemExit(0)
    sys.exit(main())

"""Watch a forward pass from the command line (the library side is minibert/tracing.py).

    python -m minibert.inspect PATH --text "The cat sat on the mat."
    python -m minibert.inspect PATH --text "The cat sat." --text "A dog." --attention_png attention.png
    python -m minibert.inspect PATH --text "The cat" --generate 4        # GPT-2 and BART: the KV cache

PATH is any checkpoint directory minibert loads (config.json + weights) with its tokenizer, train.py's
outputs included (--pooling heads, adapters and ladders beside their base, --multitask: its first task's
head, or the one --task names). Several --text make a padded batch, so the attention mask has something
to hide.
"""

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import torch

from minibert.auto import FINETUNED_OUTPUTS, checkpoint_class, finetuned_output, load_pretrained
from minibert.checkpoint import MULTITASK_KEY, read_config_dict
from minibert.engine.arguments import CommandLineParser
from minibert.finetune.extractive_qa import pair_frame
from minibert.finetuning import load_finetuned
from minibert.models.gpt import GPT2ForQuestionAnswering, GPT2ForSequenceClassification
from minibert.tokenizer import load_tokenizer
from minibert.tracing import check_layer, plot_attention, plot_hidden_states, trace, trace_generation


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandLineParser(prog="python -m minibert.inspect", description=__doc__.split("\n\n")[0],
                               epilog=__doc__)
    parser.add_argument("path", help="checkpoint directory with config.json, weights and a tokenizer")
    parser.add_argument("--text", action="append", required=True, help="input text; repeat for a padded batch")
    parser.add_argument("--text_pair", action="append",
                        help="second text for each --text: BERT's segment B, a reader's context (framed as "
                             "train.py frames a pair; GPT-2 reads the two run together)")
    parser.add_argument("--generate", type=int, default=0, metavar="N",
                        help="GPT-2 / BART: trace greedy decoding, the prompt's pass and then N steps on the "
                             "key/value cache (N + 1 new tokens), showing one layer's cache")
    parser.add_argument("--layer", type=int,
                        help="the decoder layer whose cache --generate shows, counted from 0: 0 (the first, the "
                             "default) to the number of decoder layers - 1 (config.json's n_layer for GPT-2, "
                             "decoder_layers for BART)")
    parser.add_argument("--task", help="a train.py --multitask output: the task whose head to trace (default: the "
                                       "first)")
    parser.add_argument("--max_depth", type=int, default=None, help="hide calls nested deeper than this")
    parser.add_argument("--attention_png",
                        help="write the attention probabilities (layers x heads, tokens on both axes) here, for the "
                             "first text (BART: the encoder's self-attention). With --generate: one forward pass "
                             "over the text, without the generated tokens")
    parser.add_argument("--hidden_states_png",
                        help="write each token's hidden-state norms and changes here, for the first text (BART: the "
                             "encoder's hidden states over the source; the decoder's are not drawn). With "
                             "--generate: one forward pass over the text, without the generated tokens")
    args = parser.parse_args(argv)
    for i, text in enumerate(args.text):
        if not text:  # a decoder-only model would get no tokens at all, and fail deep in its forward
            which = f"--text number {i + 1}" if len(args.text) > 1 else "--text"
            parser.error(f"{which} is empty; give the text to trace")
    if args.text_pair is not None and len(args.text_pair) != len(args.text):
        parser.error(f"got {len(args.text)} --text but {len(args.text_pair)} --text_pair; give one pair per text")
    if args.generate < 0:
        parser.error(f"--generate must be >= 0, got {args.generate}")
    # flags that one mode reads and the other would ignore without a word
    if args.layer is not None and not args.generate:
        parser.error("--layer chooses the decoder layer whose cache --generate shows; add --generate N "
                     "(one forward pass shows every layer)")
    if args.max_depth is not None and args.generate:
        parser.error("--max_depth hides the inner calls of one forward pass; --generate shows the decoder's call "
                     "and one layer's attention at each step (--layer chooses it): drop --max_depth")
    if args.max_depth is not None and args.max_depth < 0:
        parser.error(f"--max_depth must be >= 0 (0: the model's own line), got {args.max_depth}")
    return args


def _is_decoder_only_lm(model) -> bool:
    """GPT-2's LM (GPT2LMHeadModel): it reads a prompt as it is, with no special tokens around it."""
    return hasattr(model, "generate") and not getattr(model, "is_encoder_decoder", False)


def end_of_window(model, tokenizer, text_pairs=None) -> int | None:
    """The token a GPT-2 reader's window ends with, or None: train.py reads a question and its context as
    question, context, end-of-text token, whose state (the only one that has read the whole window) is the
    no-answer slot (extractive_qa.no_answer_at_end); a tokenizer whose pair frame already ends with a token
    gets none, as in qa_features."""
    if text_pairs is None or model.config.model_type != "gpt2" or not hasattr(model, "qa_outputs"):
        return None
    return tokenizer.eos_token_id if not pair_frame(tokenizer)["suffix"] else None


def model_inputs(model, tokenizer, texts, text_pairs=None, generate: int = 0) -> dict:
    """The tokenizer's batch, keeping only what the model reads: token_type_ids are BERT's segments
    (GPT-2 would look them up as tokens, BART takes none). GPT-2's LM reads the text as it is, with no
    special tokens around it (a prompt ending in the end-of-text token would ask for what follows the end),
    and its prompts for --generate are padded on the left, so that every row's new tokens follow its own last
    token; a GPT-2 classifier (a Hugging Face GPT2ForSequenceClassification checkpoint) gets the special tokens its
    tokenizer adds. A pair is read as train.py reads it: a reader's question without its leading spaces and
    whole (only the context is cut); GPT-2's tokenizer joins the two texts with nothing between them, and a
    GPT-2 reader's window then ends with the end-of-text token (end_of_window). A text longer
    than the model's positions is cut to them (cut_notes says which); for GPT-2's --generate N, to the positions
    that leave N for the steps (the text was cut to all of them, and --generate then refused the prompt)."""
    decoder_only = _is_decoder_only_lm(model)
    if text_pairs is not None and model.config.model_type == "gpt2" and \
            not isinstance(model, GPT2ForSequenceClassification | GPT2ForQuestionAnswering):
        raise ValueError(f"--text_pair: GPT-2's {'LM' if decoder_only else 'tagger'} reads one text (a pair would be "
                         "glued together with no separator); write both in one --text (train.py reads pairs into a "
                         "GPT-2 classifier or reader, which take --text_pair)")
    end = end_of_window(model, tokenizer, text_pairs)
    reader = text_pairs is not None and hasattr(model, "qa_outputs")
    if reader:  # as qa_features reads a question: without leading spaces, and whole (only the context is cut)
        texts = [text.lstrip() for text in texts]
    limit = text_limit(model, tokenizer, text_pairs, generate)
    try:
        batch = tokenizer(texts, text_pairs, padding=len(texts) > 1, add_special_tokens=not decoder_only,
                          padding_side="left" if decoder_only and generate else "right",
                          truncation="only_second" if reader else True, max_length=limit)
    except ValueError as error:
        if not reader or "cannot fit a pair" not in str(error):
            raise
        raise ValueError(f"a question (--text) fills the {limit} positions this reader's window has for text, with "
                         "no room for its context: shorten it (train.py keeps a question whole too, and refuses "
                         "one that leaves no room)") from None
    if end is not None:  # after each row's last token, (B, T) -> (B, T + 1): the padding (right) moves on by one
        lengths = batch["attention_mask"].sum(dim=1, keepdim=True)  # (B, 1)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
        for key, value in (("input_ids", end), ("attention_mask", 1)):
            grown = torch.nn.functional.pad(batch[key], (0, 1), value=pad if key == "input_ids" else 0)
            batch[key] = grown.scatter(1, lengths, value)
    if not hasattr(model.config, "type_vocab_size"):
        batch.pop("token_type_ids", None)  # a byte-level tokenizer may not return them at all
    return batch


def cut_notes(model, tokenizer, texts, text_pairs=None, generate: int = 0) -> list[str]:
    """What model_inputs cut: each text (with its pair) longer than the model's positions, in tokens."""
    limit, notes = text_limit(model, tokenizer, text_pairs, generate), []
    for i, text in enumerate(texts):
        pair = [text_pairs[i]] if text_pairs is not None else None
        if pair and hasattr(model, "qa_outputs"):
            text = text.lstrip()  # as model_inputs reads a reader's question
        length = tokenizer([text], pair, padding=False, truncation=False,
                           add_special_tokens=not _is_decoder_only_lm(model))["input_ids"].size(1)
        if length > limit:
            which = f"--text number {i + 1}" if len(texts) > 1 else "--text"
            which += " and its --text_pair are" if pair else " is"
            taken = f"--generate {generate}" if generate else "the window's end-of-text token"
            room = (f"the {limit} of the model's {position_limit(model)} positions that {taken} leaves"
                    if limit < position_limit(model) else f"the model's {limit} positions")
            notes.append(f"{which} {length} tokens, more than {room}: cut to {limit} "
                         f"(the rest is not traced); shorten {'them' if pair else 'it'} to trace all of it")
    return notes


def pair_note(model, tokenizer, text_pairs=None) -> str | None:
    """Said when a GPT-2 reads a pair: its tokenizer puts nothing between the two texts (train.py warns of it)."""
    if text_pairs is None or model.config.model_type != "gpt2" or pair_frame(tokenizer)["middle"]:
        return None
    end = end_of_window(model, tokenizer, text_pairs)
    return ("this tokenizer puts nothing between a pair's two texts: the model reads them run together, as train.py "
            "does" + (f", then the end-of-text token {tokenizer.convert_ids_to_tokens(end)!r}, where a GPT-2 reader "
                      "says \"no answer\"" if end is not None else ""))


def text_limit(model, tokenizer, text_pairs=None, generate: int = 0) -> int:
    """The most tokens the tokenizer may give: the prompt's limit, less one for a GPT-2 reader's end token."""
    return max(1, prompt_limit(model, generate) - (end_of_window(model, tokenizer, text_pairs) is not None))


def prompt_limit(model, generate: int = 0) -> int:
    """The most tokens of text: the model's positions, less the --generate steps that GPT-2 feeds back into them
    (BART's steps are its decoder's, whose positions are its own)."""
    # (at least 1: run refuses a --generate that fills every position before it cuts, but model_inputs is public)
    return max(1, position_limit(model) - (generate if _is_decoder_only_lm(model) else 0))


def position_limit(model) -> int:
    """How many tokens the model's positions hold: BERT's and RoBERTa's embeddings say (RoBERTa's start after
    the padding index); GPT-2 (n_positions) and BART (max_position_embeddings), whatever their head, from the
    config."""
    embeddings = getattr(model.base_model, "embeddings", None)
    if hasattr(embeddings, "max_tokens"):
        return embeddings.max_tokens(model.config)
    return getattr(model.config, "n_positions", None) or model.config.max_position_embeddings


def check_picture_path(flag: str, path: str) -> None:
    """Before the model runs: a picture that cannot be written would otherwise fail only after the
    whole trace was printed."""
    target = Path(path)
    example = target / f"{flag[2:].removesuffix('_png')}.png"
    if target.is_dir():
        raise ValueError(f"{flag} {path} is a directory; name the file to write in it, e.g. {example}")
    if path.endswith(("/", os.sep)):  # Path() drops the slash: "pics/" would pass as a file named pics
        raise ValueError(f"{flag} {path} names a directory, which does not exist; create it and name the file to "
                         f"write in it, e.g. {example}")
    if not target.parent.is_dir():
        problem = "is not a directory" if target.parent.exists() else "does not exist"
        raise ValueError(f"{flag} {path}: {target.parent} {problem}; create the directory first, or write elsewhere")
    if target.exists() and not _is_png(target):  # an earlier picture may be replaced, nothing else
        raise ValueError(f"{flag} {path} exists and is not a PNG picture (a checkpoint's file?); writing the "
                         "picture there would destroy it: name another file")
    existed = target.exists()
    try:  # a read-only directory, or a file not ours to replace: found now, not after the trace
        with open(target, "ab"):  # appends nothing: an earlier picture stays as it is until it is replaced
            pass
    except OSError as error:
        raise ValueError(f"{flag} {path} cannot be written ({error.strerror}); write the picture elsewhere") from None
    if not existed:
        target.unlink()
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError(f"{flag} needs matplotlib: pip install -e '.[plot]'")


def _is_png(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def train_py_output(path: str) -> str | None:
    """What a train.py output directory holds beyond a plain checkpoint (None for a plain one)."""
    has_config = (Path(path) / "config.json").is_file()
    return finetuned_output(path, read_config_dict(path) if has_config else None)


def check_arguments(args: argparse.Namespace) -> str | None:
    """What can be refused from the arguments and config.json alone, before any weights load; returns which
    train.py output the directory holds (a key of auto.FINETUNED_OUTPUTS), None for a plain checkpoint."""
    held = train_py_output(args.path)
    if held == "new_encoder":
        raise ValueError(f"{args.path} holds {FINETUNED_OUTPUTS[held]}; the tracer does not follow the new front: "
                         "trace the BART it started from")
    if held and args.generate:
        raise ValueError(f"{args.path} holds {FINETUNED_OUTPUTS[held]}, a classifier, which does not generate; "
                         "drop --generate")
    if args.task is not None and held != MULTITASK_KEY:
        raise ValueError("--task names a task of a train.py --multitask output; drop it for this checkpoint")
    model_class = None if held else checkpoint_class(args.path)
    if args.generate and not hasattr(model_class, "generate"):
        raise ValueError(f"{model_class.__name__} does not generate; --generate needs a GPT2LMHeadModel or "
                         "BartForConditionalGeneration checkpoint (drop --generate to trace one forward pass)")
    if args.generate and args.layer is not None:  # config.json says how many decoder layers: before the weights load
        config = read_config_dict(args.path)
        count = next((config[k] for k in ("n_layer", "decoder_layers") if isinstance(config.get(k), int)), None)
        if count is not None:
            check_layer(args.layer, count)
    for flag, path in (("--attention_png", args.attention_png), ("--hidden_states_png", args.hidden_states_png)):
        if path:
            check_picture_path(flag, path)
    if args.attention_png and args.hidden_states_png and \
            Path(args.attention_png).resolve() == Path(args.hidden_states_png).resolve():
        raise ValueError(f"--attention_png and --hidden_states_png both name {args.attention_png}: the second picture "
                         "would replace the first; give each its own file")
    return held


def check_generate_fits(model, attention_mask, steps: int) -> None:
    """--generate N runs the prompt and N cached steps (N + 1 new tokens); said in the flag's terms."""
    limit = model._position_limit()
    if getattr(model, "is_encoder_decoder", False):
        most = limit - 1  # the decoder's start token and N new tokens fed back
    else:
        most = limit - int(attention_mask.sum(1).max())  # the prompt's positions, then one per step
    if steps > most:
        raise ValueError(f"--generate {steps} runs past the model's {limit} positions with this prompt; "
                         + (f"use --generate {most} or fewer" if most >= 1 else "shorten the prompt"))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BrokenPipeError:  # the reader stopped early (`| head`): what it wanted was printed
        # Python's documented recipe: the flush at exit then writes nowhere, instead of a second error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as error:  # a bad path or checkpoint: the message says what to do
        print(f"python -m minibert.inspect: error: {error}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    held = check_arguments(args)
    tokenizer = load_tokenizer(args.path)  # before the model: a missing tokenizer is found without loading it
    for i, text in enumerate(args.text):
        if not tokenizer.encode(text):  # spaces alone, to BERT: [CLS] [SEP], a trace of no text ("" is refused above)
            which = f"--text number {i + 1}" if len(args.text) > 1 else "--text"
            raise ValueError(f"{which} {text!r} gives no token to this tokenizer (spaces alone?); give the text to "
                             "trace")
    model = load_finetuned(args.path) if held else load_pretrained(args.path)
    if args.generate and _is_decoder_only_lm(model) and args.generate >= position_limit(model):
        # before the prompt is cut to the room the steps leave (none): "cut to 1", then this error, said no better
        raise ValueError(f"--generate {args.generate} steps fill the model's {position_limit(model)} positions and "
                         f"leave none for the prompt; use --generate {position_limit(model) - 1} or fewer")
    pad_note = None
    if len(args.text) > 1 and tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # GPT-2's vocabulary has no pad token (its tokenizer's advice, `tok.pad_token = tok.eos_token`, is
        # Python's, not a flag): the batch is padded with the end-of-text token, which the mask hides, as
        # Hugging Face's text-generation pipeline pads GPT-2
        tokenizer.pad_token = tokenizer.eos_token
        pad_note = (f"this tokenizer has no pad token: the texts are padded with its end-of-text token "
                    f"{tokenizer.eos_token!r}, which the attention mask hides")
    inputs = model_inputs(model, tokenizer, args.text, args.text_pair, generate=args.generate or 0)
    if hasattr(model, "names"):  # a multi-task classifier: one task's head per batch
        task = args.task if args.task is not None else model.names[0]
        if task not in model.names:
            raise ValueError(f"--task {task}: this model's tasks are {', '.join(model.names)}")
        print(f"tracing task {task!r}'s head (tasks: {', '.join(model.names)}; --task chooses)")
        inputs["task"] = torch.full((inputs["input_ids"].size(0),), model.names.index(task))
    tokens = tokenizer.token_texts(inputs["input_ids"][0].tolist())  # byte-level tokens decoded ("Ġking": " king")
    print(f"{type(model).__name__} from {args.path}; row 0 tokens: {tokens}")
    notes = [pad_note, pair_note(model, tokenizer, args.text_pair)]
    for note in [n for n in notes if n is not None] + cut_notes(model, tokenizer, args.text, args.text_pair,
                                                                args.generate or 0):
        print(f"note: {note}")
    new_tokens = args.generate + 1 if args.generate else 0  # the prompt's pass makes one too
    if args.generate:
        check_generate_fits(model, inputs["attention_mask"], args.generate)
        steps = trace_generation(model, inputs["input_ids"], inputs["attention_mask"],
                                 max_new_tokens=new_tokens,
                                 layer=args.layer if args.layer is not None else 0)
        print(steps.format(token_text=lambda i: tokenizer.token_texts([i])[0]))
    else:
        print(trace(model, **inputs).format(args.max_depth))
    if args.attention_png:
        plot_attention(model, inputs, tokens, args.attention_png, generated=new_tokens)
        print(f"wrote {args.attention_png}")
    if args.hidden_states_png:
        plot_hidden_states(model, inputs, tokens, args.hidden_states_png, generated=new_tokens)
        print(f"wrote {args.hidden_states_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Why the default pretraining run stops at 0.14 MLM accuracy (issue 9).

    python bench/plateau.py diagnose runs/pretrain-sop
    python bench/plateau.py train position=alibi slopes=1,0 save=runs/alibi   # about 3 minutes on one core
    python bench/plateau.py finetune runs/alibi seed=1 position=alibi slopes=1,0 pooling=mean

`diagnose` splits a checkpoint's held-out MLM accuracy by what the input held at the predicted
position: [MASK] (80% of the predictions), the token kept unchanged (10%: the answer is in the input)
or a random token (10%). Beside the [MASK] accuracy stand two baselines counted on the training plays:
the most frequent token everywhere (unigram), and the most frequent follower of the token on the left
(bigram). A model at the unigram baseline has learned no context at all, whatever its overall accuracy:
its 0.14 is the kept tokens copied plus the most frequent token guessed. It also prints how much of each
head's attention goes to the neighbouring tokens (a "previous-token head" puts most of it there).

`train` runs the default recipe of its time (SOP on the shipped Shakespeare, the tiny BERT, vocabulary
2,000, 1,300 steps (pretrain.py now takes 1,600) of 16 x 64 tokens, AdamW at 2e-3 with 6% warmup then linear
decay, clipping at 1.0: the engine's rule) in a plain loop and reports the held-out [MASK] accuracy at each
quarter, with one change to the architecture, applied from outside the model files by replacing the attention function
(an experiment, not a minibert feature):
- position=absolute: BERT's learned absolute positions, as shipped (the control);
- position=alibi slopes=a,b: a fixed bias -slope * |i - j| added to head h's scores (ALiBi, Press et
  al. 2021, https://arxiv.org/abs/2108.12409, symmetric as in MosaicBERT); slopes=1,0 makes head 0
  local and leaves head 1 free; the learned absolute positions stay;
- position=relative: a learned bias per head and distance bucket, shared by the layers (T5 / MPNet's,
  https://arxiv.org/abs/1910.10683), initialised at N(0, 0.02); absolute positions stay;
- position=rope: rotary positions on queries and keys (RoFormer, https://arxiv.org/abs/2104.09864),
  absolute positions removed;
- preln=1: LayerNorm before each sub-layer instead of after (Xiong et al. 2020,
  https://arxiv.org/abs/2002.04745);
- untie=1: the MLM decoder gets its own V x E matrix instead of the word embeddings;
- position=neighbours: no patch at all, plain BERT weights initialised with a previous-token and a
  next-token head in the first block (minibert/neighbour_heads.py, which pretrain.py now uses by default);
  with freeze=1 those heads' queries and keys and the position embeddings are not trained. spacing=even
  (the first version, amplitude 0.057 then, 0.0566 now) or geometric (pretrain.py's), strength= (1.0),
  cls_free=1 (no sinusoids at position 0). The model stays a Hugging Face BERT: fine-tune it with
  `finetune` and no position setting.
- lr= (2e-3) and masking= (0.15: the share of tokens masked in training; held out it is always 0.15).
`save=DIR` keeps the model (its architecture change is not saved: load it under the same patch).
Held out: the default run's 20% of the plays, the first 1,500 SOP examples (`diagnose`: 2,500;
pretrain.py evaluates them all). Prints one JSON line per quarter. Run one experiment per core: two threads on a shared
core run ten times slower than one.

`finetune CHECKPOINT|random` runs `train.py`'s default recipe (the shipped genre task, best validation
accuracy) under the same patch, from that checkpoint or from random weights of the shape of `config=`
(default runs/pretrain-sop), with `seed=`, `pooling=` (train.py's --pooling), `learning_rate=`, `epochs=`,
`train_file=`, and `reset=qk` (the pretrained query and key projections drawn again: the attention pattern
forgotten, the rest kept) or `reset=blocks` (only the embeddings kept).

    python bench/plateau.py few_labels 10 few.jsonl    # the training file cut to 10 speeches per play
    python bench/plateau.py bag_of_words                # naive Bayes on word counts, the lexical baseline
    python bench/plateau.py nearest_words runs/pretrain-sop [king,lord,...]   # what the word table learned
    python bench/plateau.py linear_probe runs/pretrain-sop      # genre from frozen features ("random:CKPT")
"""

import collections
import json
import math
import sys
import time

import numpy as np
import torch

import minibert.nn.attention as attention
from minibert.data import build_objective
from minibert.data.corpus import load_works
from minibert.models.bert import BertForPreTraining, LMHead
from minibert.neighbour_heads import angular_frequencies, keep_fixed, write_neighbour_heads
from minibert.pretraining import select_documents, size_config
from minibert.tokenizer import load_tokenizer, train_tokenizer

KINDS = ("mask", "kept", "random")  # what the input holds at a predicted position


def documents(share: float = 0.2):
    """The default run's split: training plays and held-out plays (lists of sentence lists)."""
    works = load_works()
    train, held, _ = select_documents([w for w, _ in works], share, 1.0)
    return [works[i][1] for i in train], [works[i][1] for i in held]


def prediction_kinds(batch: dict, mask_id: int) -> torch.Tensor:
    """(B, T) long: 0 where the input holds [MASK], 1 the original token, 2 a random one."""
    inputs, labels = batch["input_ids"], batch["labels"]
    return torch.where(inputs == mask_id, 0, torch.where(inputs == labels, 1, 2))


def held_out_accuracy(model, evaluation, examples, mask_id: int, bigram: dict | None = None) -> dict:
    """MLM accuracy split by prediction kind, SOP accuracy, and with `bigram` (token -> its most frequent
    follower; -1 -> the most frequent token) the bigram and unigram baselines' accuracy at [MASK]."""
    model.eval()
    right, total = collections.Counter(), collections.Counter()
    with torch.no_grad():
        for start in range(0, len(examples), 64):
            batch = evaluation.collate(examples[start:start + 64], torch.Generator().manual_seed(start))
            out = model(**batch)
            labels = batch["labels"]
            predicted = labels != -100
            guess = out.prediction_logits.argmax(-1)  # (B, T)
            kinds = prediction_kinds(batch, mask_id)
            for k, kind in enumerate(KINDS):
                where = predicted & (kinds == k)
                total[kind] += where.sum().item()
                right[kind] += (guess[where] == labels[where]).sum().item()
            right["all"] += (guess[predicted] == labels[predicted]).sum().item()
            total["all"] += predicted.sum().item()
            right["sop"] += (out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).sum().item()
            total["sop"] += len(labels)
            if bigram is not None:
                where = predicted & (kinds == 0)
                left = torch.cat([batch["input_ids"][:, :1], batch["input_ids"][:, :-1]], dim=1)  # (B, T)
                follower = left.clone().apply_(lambda t: bigram.get(t, bigram[-1]))
                right["bigram"] += (follower[where] == labels[where]).sum().item()
                right["unigram"] += (labels[where] == bigram[-1]).sum().item()  # the most frequent token
                total["bigram"] += where.sum().item()
                total["unigram"] += where.sum().item()
    model.train()
    return {kind: round(right[kind] / total[kind], 4) for kind in total}


def diagnose(checkpoint: str) -> None:
    tokenizer = load_tokenizer(checkpoint)
    model = BertForPreTraining.from_pretrained(checkpoint)
    evaluation = build_objective("sop", tokenizer, 64)  # the default run's length
    train_docs, held_docs = documents()
    train_examples, held = evaluation.examples(train_docs), evaluation.examples(held_docs)[:2500]
    unigram = np.zeros(len(tokenizer), dtype=np.int64)
    followers = collections.defaultdict(collections.Counter)
    special = set(tokenizer.all_special_ids)
    for i in range(len(train_examples)):
        ids = np.concatenate([train_examples[i]["a"], train_examples[i]["b"]]).tolist()
        np.add.at(unigram, ids, 1)
        for a, b in zip(ids[:-1], ids[1:], strict=True):
            followers[a][b] += 1
    unigram[list(special)] = 0
    top = int(unigram.argmax())
    bigram = {a: c.most_common(1)[0][0] for a, c in followers.items()}
    bigram[-1] = top  # a left token never seen in training: guess the most frequent
    result = held_out_accuracy(model, evaluation, held, tokenizer.mask_token_id, bigram)
    print(json.dumps({"checkpoint": checkpoint, "held_out_accuracy": result,
                      "most_frequent_token": tokenizer.convert_ids_to_tokens([top])[0]}))
    batch = evaluation.collate(held[:64], torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(**{k: v for k, v in batch.items() if k not in ("labels", "next_sentence_label")},
                    output_attentions=True)
    for layer, probs in enumerate(out.attentions):  # (B, H, T, T)
        neighbours = (probs.diagonal(offset=1, dim1=-2, dim2=-1).mean((0, 2))
                      + probs.diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, 2)))  # (H,)
        print(json.dumps({"layer": layer, "attention_to_the_two_neighbours_per_head":
                          [round(x, 3) for x in neighbours.tolist()],
                          "uniform_would_give": round(2 / probs.shape[-1], 3)}))


# -- the architecture experiments: the attention function replaced from outside ---------------------
def biased_attend(bias_fn):
    """`attention.attend` with `bias_fn(T) -> (H, T, T)` added to the scores (the eager path)."""

    def attend(q, k, v, keep, *, implementation, dropout_p=0.0, scale=None, need_probs=False):
        bias = bias_fn(q.shape[2]).to(q.dtype)  # (H, T, T)
        mask = attention.to_additive(keep, q.dtype)
        return _scores_attend(q, k, v, bias if mask is None else mask + bias, need_probs)

    return attend


def _scores_attend(q, k, v, additive, need_probs):
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.size(-1) ** -0.5 + additive  # (B, H, T, T)
    probs = scores.softmax(dim=-1)
    return torch.matmul(probs, v), probs if need_probs else None


def distances(T: int) -> torch.Tensor:
    positions = torch.arange(T)
    return positions[None, :] - positions[:, None]  # (T, T): j - i


def rotate(x: torch.Tensor) -> torch.Tensor:
    """Rotary positions on (B, H, T, D) queries or keys, the halves convention."""
    T, D = x.shape[2], x.shape[3]
    angle = torch.arange(T).float()[:, None] * 10000 ** (-torch.arange(0, D, 2).float() / D)  # (T, D/2)
    cos, sin = angle.cos().repeat(1, 2), angle.sin().repeat(1, 2)  # (T, D)
    first, second = x[..., : D // 2], x[..., D // 2:]
    return x * cos + torch.cat([-second, first], dim=-1) * sin


def evenly_spaced(frequencies: int) -> torch.Tensor:
    """The first version's frequencies, pi * f / F for f = 1 .. F: their common period of 2F positions makes
    each head look as hard at the token 2F + 1 away as at its neighbour (minibert/neighbour_heads.py)."""
    return math.pi * torch.arange(1, frequencies + 1, dtype=torch.float64) / frequencies


def patch(model, cfg: dict) -> None:
    """Apply cfg's architecture change (model: the model to add weights to; None when none are added)."""
    if cfg["position"] == "alibi":
        slopes = torch.tensor([float(s) for s in cfg["slopes"].split(",")]).view(-1, 1, 1)  # (H, 1, 1)
        attention.attend = biased_attend(lambda T: -slopes * distances(T).abs().float())
    elif cfg["position"] == "relative":
        from transformers.models.mpnet.modeling_mpnet import MPNetEncoder  # its bucket rule, T5's

        model.relative_bias = torch.nn.Embedding(32, model.config.num_attention_heads)
        torch.nn.init.normal_(model.relative_bias.weight, std=0.02)
        attention.attend = biased_attend(lambda T: model.relative_bias(
            MPNetEncoder.relative_position_bucket(distances(T), num_buckets=32)).permute(2, 0, 1))
    elif cfg["position"] == "rope":
        plain = attention.attend
        attention.attend = lambda q, k, v, keep, **kw: plain(rotate(q), rotate(k), v, keep, **kw)
        positions = model.bert.embeddings.position_embeddings.weight
        with torch.no_grad():
            positions.zero_()
        positions.requires_grad_(False)
    elif cfg["position"] == "neighbours":
        spacing = {"even": evenly_spaced, "geometric": angular_frequencies}[cfg["spacing"]]
        written = write_neighbour_heads(model.bert, strength=cfg["strength"], spacing=spacing)
        if cfg["cls_free"]:  # position 0 ([CLS]) without sinusoids: its queries go by content alone
            with torch.no_grad():
                model.bert.embeddings.position_embeddings.weight[0] = 0.0
        if cfg["freeze"]:  # as pretraining.build_model: the tiny model's 2 heads fill block 0, so whole tensors
            assert keep_fixed(written) is None
    elif cfg["position"] != "absolute":
        raise ValueError(f"position must be absolute, alibi, relative, rope or neighbours, got {cfg['position']!r}")
    if cfg["preln"]:
        from minibert.models import bert

        def pre_ln_forward(self, x, keep, output_attentions=False, packing=None):
            attn = self.attention(self.attention_norm(x), keep=keep, output_attentions=output_attentions,
                                  packing=packing)
            h = x + attn.output
            return h + self.ffn(self.ffn_norm(h)), attn.probs

        bert.BertLayer.forward = pre_ln_forward
    if cfg["untie"]:
        head = next(m for m in model.modules() if isinstance(m, LMHead))
        head.decoder = torch.nn.Embedding(*model.bert.embeddings.word_embeddings.weight.shape)
        torch.nn.init.normal_(head.decoder.weight, std=0.02)
        plain_forward = LMHead.forward
        LMHead.forward = lambda self, h, word_embeddings: plain_forward(self, h, self.decoder)


def train(cfg: dict) -> None:
    torch.manual_seed(0)
    train_docs, held_docs = documents()
    tokenizer = train_tokenizer([" ".join(d) for d in train_docs], vocab_size=2000)
    objective = build_objective("sop", tokenizer, 64, mlm_probability=cfg["masking"])
    evaluation = build_objective("sop", tokenizer, 64)  # held out: always BERT's 15% masking
    examples, held = objective.examples(train_docs), evaluation.examples(held_docs)[:1500]
    model = objective.build_model({**size_config("bert", "tiny"), "sparse_mlm": True, "hidden_dropout_prob": 0.0,
                                   "attention_probs_dropout_prob": 0.0, "attn_implementation": "eager"})
    patch(model, cfg)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": [p for p in trained if p.dim() >= 2], "weight_decay": 0.01},
                                   {"params": [p for p in trained if p.dim() < 2], "weight_decay": 0.0}], lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0)).tolist()
    steps, batch_size = cfg["steps"], 16
    warmup, start = max(1, int(0.06 * steps)), time.perf_counter()
    for step in range(steps):
        batch = objective.collate([examples[order[(step * batch_size + i) % len(order)]] for i in range(batch_size)],
                                  generator)
        scale = step / warmup if step < warmup else (steps - step) / (steps - warmup)
        for group in optimizer.param_groups:
            group["lr"] = cfg["lr"] * scale
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if (step + 1) % math.ceil(steps / 4) == 0 or step + 1 == steps:
            result = held_out_accuracy(model, evaluation, held, tokenizer.mask_token_id)
            print(json.dumps({**cfg, "step": step + 1, "seconds": round(time.perf_counter() - start),
                              "held_out_accuracy": result}), flush=True)
    if cfg["save"]:
        model.save_pretrained(cfg["save"])
        tokenizer.save_pretrained(cfg["save"])


def reset(checkpoint: str, parts: str, directory: str) -> str:
    """A copy of the checkpoint with some weights drawn again from BERT's initialisation: "qk", the
    query and key projections of every block (the attention pattern), or "blocks", every block
    (only the embeddings stay pretrained). Returns the copy's directory."""
    from minibert.tokenizer import load_tokenizer as load

    torch.manual_seed(0)
    model = BertForPreTraining.from_pretrained(checkpoint)
    if parts == "embscale":  # the embeddings shrunk to their initial scale: their LayerNorm makes it the same function
        embeddings = model.bert.embeddings
        scale = model.config.initializer_range / embeddings.word_embeddings.weight.std().item()
        with torch.no_grad():
            for table in (embeddings.word_embeddings, embeddings.position_embeddings, embeddings.token_type_embeddings):
                table.weight.mul_(scale)
    for layer in model.bert.layers if parts != "embscale" else []:
        modules = {"qk": [layer.attention.q_proj, layer.attention.k_proj], "blocks": [layer]}[parts]
        for module in modules:
            module.apply(model._init_weights)
    model.save_pretrained(directory)
    load(checkpoint).save_pretrained(directory)
    return directory


def finetune(checkpoint: str, cfg: dict) -> None:
    import tempfile

    from minibert.engine import TrainingArguments
    from minibert.finetuning import DEFAULT_TRAINING, DEFAULT_VALIDATION_FILE, FinetuneArguments
    from minibert.finetuning import finetune as run_finetuning

    if cfg["preln"] or cfg["untie"] or cfg["position"] in ("relative", "rope", "neighbours"):
        sys.exit("finetune: only position=absolute or alibi (patches that need no new weights; a neighbours "
                 "model is a plain BERT: leave position out)")
    patch(None, cfg)
    start = reset(checkpoint, cfg["reset"], tempfile.mkdtemp()) if cfg["reset"] else checkpoint
    shape = {"config_name": cfg["config"], "tokenizer_name": cfg["config"]} if checkpoint == "random" else {}
    # a training file of its own (few_labels' cut) is still scored on the task's validation speeches: train.py
    # evaluates another training file only on a --validation_file given with it
    data = {"train_file": cfg["train_file"], "validation_file": str(DEFAULT_VALIDATION_FILE)} if (
        cfg["train_file"]) else {}
    args = FinetuneArguments(model_name_or_path=start, pooling=cfg["pooling"], **shape, **data)
    training = TrainingArguments(**{**DEFAULT_TRAINING, "output_dir": tempfile.mkdtemp(), "seed": cfg["seed"],
                                    "learning_rate": cfg["learning_rate"], "num_train_epochs": cfg["epochs"],
                                    "disable_tqdm": True})
    accuracies = [r["eval_accuracy"] for r in run_finetuning(args, training).history if "eval_accuracy" in r]
    print(json.dumps({"checkpoint": checkpoint, **cfg, "best_validation_accuracy": round(max(accuracies), 4)}))


def few_labels(per_play: int, path: str) -> None:
    """The genre task's training file cut to the first `per_play` speeches of each play."""
    from minibert.finetuning import DEFAULT_TRAIN_FILE

    kept, rows = collections.Counter(), []
    for line in open(DEFAULT_TRAIN_FILE, encoding="utf-8"):
        row = json.loads(line)
        if kept[row["play"]] < per_play:
            kept[row["play"]] += 1
            rows.append(line)
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(rows)
    print(f"{len(rows)} speeches -> {path}")


def nearest_words(checkpoint: str, words: str = "king,lord,she,go,good,death,night,sword") -> None:
    """For each word, the five words whose input embeddings are nearest to it (cosine, after removing the
    table's mean vector, which every trained embedding shares): what pretraining put into the word table."""
    model = BertForPreTraining.from_pretrained(checkpoint)
    vocab = load_tokenizer(checkpoint).get_vocab()
    inverse = {i: w for w, i in vocab.items()}
    table = model.bert.embeddings.word_embeddings.weight.detach()  # (V, E)
    table = torch.nn.functional.normalize(table - table.mean(0), dim=-1)
    for word in words.split(","):
        if word not in vocab:
            print(json.dumps({"word": word, "nearest": "not in the vocabulary"}))
            continue
        nearest = (table @ table[vocab[word]]).topk(6).indices.tolist()[1:]  # [0] is the word itself
        print(json.dumps({"word": word, "nearest": [inverse[i] for i in nearest]}))


def linear_probe(checkpoint: str) -> None:
    """Logistic regression on frozen features of the genre task's speeches (the mean over tokens of the last
    layer's hidden states), from a checkpoint or, for "random:CKPT", from random weights of its shape: how
    much of the genre the encoder's features hold before any fine-tuning. One line per weight decay."""
    from minibert.finetune.task_data import read_rows
    from minibert.finetuning import DEFAULT_TRAIN_FILE, DEFAULT_VALIDATION_FILE
    from minibert.models.bert import BertConfig, BertModel

    torch.manual_seed(0)
    if checkpoint.startswith("random:"):
        shape = checkpoint.removeprefix("random:")
        config = BertConfig.from_dict(json.loads(open(f"{shape}/config.json").read()))
        model, tokenizer = BertModel(config), load_tokenizer(shape)
    else:
        model, tokenizer = BertModel.from_pretrained(checkpoint), load_tokenizer(checkpoint)
    model.eval()

    def features(path) -> tuple[torch.Tensor, list[str]]:
        rows = read_rows(path)
        with torch.no_grad():
            pooled = [model(**tokenizer(r["text"], max_length=128)).last_hidden_state[0].mean(0) for r in rows]
        return torch.stack(pooled), [r["label"] for r in rows]  # (N, E)

    (x, train_labels), (x_val, val_labels) = features(DEFAULT_TRAIN_FILE), features(DEFAULT_VALIDATION_FILE)
    classes = sorted(set(train_labels))
    y, y_val = (torch.tensor([classes.index(label) for label in labels]) for labels in (train_labels, val_labels))
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, x_val = (x - mean) / std, (x_val - mean) / std
    for decay in (1e-3, 1e-2, 1e-1):
        w = torch.zeros(x.shape[1], len(classes), requires_grad=True)  # (E, classes)
        b = torch.zeros(len(classes), requires_grad=True)
        optimizer = torch.optim.LBFGS([w, b], max_iter=500)

        def loss(w=w, b=b, decay=decay, optimizer=optimizer):
            optimizer.zero_grad()
            value = torch.nn.functional.cross_entropy(x @ w + b, y) + decay * (w ** 2).sum()
            value.backward()
            return value

        optimizer.step(loss)
        accuracy = ((x_val @ w + b).argmax(-1) == y_val).float().mean().item()
        print(json.dumps({"checkpoint": checkpoint, "weight_decay": decay, "validation_accuracy": round(accuracy, 4)}))


def bag_of_words() -> None:
    """Multinomial naive Bayes on lower-cased words (add-one smoothing): what the genre task gives a
    model that knows nothing but word counts."""
    import re

    from minibert.finetuning import DEFAULT_TRAIN_FILE, DEFAULT_VALIDATION_FILE

    def rows(path):
        return [json.loads(line) for line in open(path, encoding="utf-8")]

    def words(text):
        return re.findall(r"[a-z']+", text.lower())

    train_rows, validation = rows(DEFAULT_TRAIN_FILE), rows(DEFAULT_VALIDATION_FILE)
    labels = sorted({r["label"] for r in train_rows})
    counts = {label: collections.Counter() for label in labels}
    examples = collections.Counter(r["label"] for r in train_rows)
    for r in train_rows:
        counts[r["label"]].update(words(r["text"]))
    vocabulary = set().union(*counts.values())
    totals = {label: sum(c.values()) + len(vocabulary) for label, c in counts.items()}

    def score(text, label):
        return math.log(examples[label]) + sum(math.log((counts[label][w] + 1) / totals[label])
                                               for w in words(text) if w in vocabulary)

    right = sum(max(labels, key=lambda label: score(r["text"], label)) == r["label"] for r in validation)
    print(json.dumps({"naive_bayes_validation_accuracy": round(right / len(validation), 4)}))


def main(argv: list[str]) -> None:
    if argv[:1] == ["diagnose"] and len(argv) == 2:
        return diagnose(argv[1])
    if argv[:1] == ["few_labels"] and len(argv) == 3:
        return few_labels(int(argv[1]), argv[2])
    if argv == ["bag_of_words"]:
        return bag_of_words()
    if argv[:1] == ["linear_probe"] and len(argv) == 2:
        return linear_probe(argv[1])
    if argv[:1] == ["nearest_words"] and len(argv) in (2, 3):
        return nearest_words(*argv[1:])
    if argv[:1] not in (["train"], ["finetune"]) or (argv[0] == "finetune" and len(argv) < 2):
        sys.exit(__doc__)
    cfg = {"position": "absolute", "slopes": "1,0.25", "preln": 0, "untie": 0, "freeze": 0, "strength": 1.0,
           "cls_free": 0, "spacing": "even", "lr": 2e-3, "masking": 0.15, "steps": 1300,
           "save": ""}
    if argv[0] == "finetune":
        cfg.update(seed=1, pooling="default", learning_rate=5e-4, epochs=5.0, config="runs/pretrain-sop", reset="",
                   train_file="")
    for item in argv[1 + (argv[0] == "finetune"):]:
        key, value = item.split("=")
        if key not in cfg:
            sys.exit(f"unknown setting {key!r}; settings: {', '.join(cfg)}")
        cfg[key] = type(cfg[key])(value)
    return finetune(argv[1], cfg) if argv[0] == "finetune" else train(cfg)


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the docstring is the usage
        print(__doc__)
        raise SystemExit(0)
    main(sys.argv[1:])

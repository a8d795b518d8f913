"""The training engine on a tiny stand-in model: steps, accumulation, precision, callbacks,
evaluation, logging and bad input. (Checkpoints: test_checkpointing.py; DDP: test_ddp.py.)"""

import json
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minibert.engine import NonFiniteLossError, Trainer, TrainingArguments, build_optimizer
from minibert.engine.checkpointing import list_checkpoints, load_model_weights

VOCAB, LENGTH = 16, 6


@dataclass
class ToyOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor
    token_loss: torch.Tensor | None = None


class ToyModel(nn.Module):
    """Predicts (token + 1) % VOCAB for each token: learnable in a few steps, with a LayerNorm
    (a no-decay vector) and dropout (so exact resume must restore the RNG)."""

    def __init__(self, dropout: float = 0.1, dim: int = 16):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(dim, VOCAB)

    def forward(self, input_ids, labels=None, attention_mask=None):
        logits = self.out(self.drop(self.norm(self.embed(input_ids))))  # (B, T, V)
        loss = None if labels is None else F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1))
        return ToyOutput(loss=loss, logits=logits, token_loss=loss)


def toy_dataset(n: int = 64, length: int = LENGTH, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(1, VOCAB, (length,), generator=g)} for _ in range(n)]


def collate(examples: list[dict]) -> dict:
    ids = torch.stack([e["input_ids"] for e in examples])
    return {"input_ids": ids, "labels": (ids + 1) % VOCAB}


def masking_collate(examples: list[dict], generator: torch.Generator) -> dict:
    """Like collate, but hides a random 20% of the inputs (token 0), drawing from the engine's generator."""
    batch = collate(examples)
    hide = torch.rand(batch["input_ids"].shape, generator=generator) < 0.2
    batch["input_ids"] = batch["input_ids"].masked_fill(hide, 0)
    return batch


def accuracy(batch, outputs) -> dict:
    return {"accuracy": (outputs.logits.argmax(-1) == batch["labels"]).float().mean().item()}


def make_args(tmp_path, **overrides) -> TrainingArguments:
    defaults = dict(
        output_dir=str(tmp_path / "run"),
        learning_rate=3e-2,
        per_device_train_batch_size=8,
        max_steps=12,
        logging_steps=4,
        save_steps=100,
        device="cpu",
        seed=1,
        plot_loss=False,
    )
    return TrainingArguments(**{**defaults, **overrides})


def weights(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_trains_logs_json_lines_and_plots(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    torch.manual_seed(0)
    backend = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend of the user's choosing (a notebook's inline one, say)
    try:
        args = make_args(tmp_path, max_steps=24, warmup_ratio=0.1, weight_decay=0.01, plot_loss=True)
        result = Trainer(ToyModel(), args, toy_dataset(), masking_collate, metrics_fn=accuracy).train()
        assert matplotlib.get_backend() == "svg"  # the loss plot left it alone
    finally:
        matplotlib.use(backend)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [4, 8, 12, 16, 20, 24]
    for key in ("loss", "token_loss", "accuracy", "learning_rate", "grad_norm", "tokens_per_second", "data_wait_share"):
        assert key in lines[0], key
    assert lines[-1]["loss"] < 0.6 * lines[0]["loss"]
    assert lines[-1]["accuracy"] > lines[0]["accuracy"]
    assert result.global_step == 24 and result.history == lines
    assert lines[0]["tokens_per_second"] > 0 and 0 <= result.data_wait_share < 1
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["checkpoint-24"]


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    """SGD with clipping off, so that a gradient twice too large shows (Adam's normalisation hid a lost
    1 / accumulation weight), and the logged losses compared too."""
    torch.manual_seed(0)
    init = ToyModel(dropout=0.0)
    big, small = ToyModel(dropout=0.0), ToyModel(dropout=0.0)
    big.load_state_dict(init.state_dict())
    small.load_state_dict(init.state_dict())
    common = {"max_steps": 3, "max_grad_norm": 0.0, "logging_steps": 1}
    one = Trainer(big, make_args(tmp_path / "a", per_device_train_batch_size=8, **common), toy_dataset(), collate,
                  optimizer=torch.optim.SGD(big.parameters(), lr=0.5)).train()
    accumulated = make_args(tmp_path / "b", per_device_train_batch_size=4, gradient_accumulation_steps=2, **common)
    two = Trainer(small, accumulated, toy_dataset(), collate,
                  optimizer=torch.optim.SGD(small.parameters(), lr=0.5)).train()
    for key, value in big.state_dict().items():
        torch.testing.assert_close(small.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    assert [round(r["loss"], 5) for r in one.history] == [round(r["loss"], 5) for r in two.history]
    assert not torch.equal(big.out.weight, init.out.weight)


def uneven_token_dataset(n: int = 16, length: int = 10, seed: int = 0, first: int = 0) -> list[dict]:
    """Fixed labels with very different counts of labelled tokens per example (1 to `length` - first),
    so micro-batches of an accumulated step hold unequal shares of the step's tokens."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for i in range(n):
        ids = torch.randint(5, 60, (length,), generator=g)
        labels = ids.clone()
        labels[first + 1 + i % (length - first - 1):] = -100  # the first `first` tokens: a prompt
        labels[:first] = -100
        data.append({"input_ids": ids, "labels": labels})
    return data


def tiny_lm():
    """A one-block GPT-2 without dropout, the same weights at every call (seeded)."""
    from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=60, n_embd=16, n_layer=1, n_head=2, n_positions=16,
                                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))


def one_labelled_of_four() -> list[dict]:
    """Four examples, only the first with labelled tokens: split over two ranks, one holds none."""
    data = uneven_token_dataset(n=4, first=2)
    for example in data[1:]:
        example["labels"][:] = -100
    return data


def stack(examples: list[dict]) -> dict:
    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}


@pytest.mark.parametrize("family, first, unlabelled", [
    ("bert_mlm", 0, False), ("bert_mlm", 0, True), ("gpt2", 2, False), ("gpt2", 2, True),
    ("gpt2", 0, False),  # the first token labelled, as clm pretraining labels it: never predicted, never counted
])
def test_accumulation_weighs_token_losses_by_their_tokens(tmp_path, family, first, unlabelled, monkeypatch):
    """A masked-LM or causal-LM loss is a mean over labelled tokens: micro-batches with unequal counts
    must be weighed by them (Hugging Face's num_items_in_batch), or 2 x 4 is not one batch of 8. Fails
    with the plain 1 / accumulation-steps scaling, and for GPT-2 with a labelled first token when the count
    includes it (a prompt of 2 unlabelled tokens hid that). `unlabelled`: most examples have no labelled
    token, so some micro-batches have none (mean 0/0 = nan, weight 0): the step must go on, exactly as the
    big batch's (it stopped with a false "loss is nan")."""
    from minibert.models.bert import BertConfig, BertForMaskedLM
    from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

    def build():
        torch.manual_seed(0)
        if family == "gpt2":
            return GPT2LMHeadModel(GPT2Config(vocab_size=60, n_embd=16, n_layer=1, n_head=2, n_positions=16,
                                              resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
        return BertForMaskedLM(BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0))

    data = uneven_token_dataset(first=first)
    weights = []
    if unlabelled:
        for i, example in enumerate(data):
            if i % 8:  # two labelled examples of 16
                example["labels"][:] = -100
        plain_weights = Trainer.loss_weights

        def recorded_weights(self, batches):
            weights.extend(plain_weights(self, batches))
            return weights[-len(batches):]

        monkeypatch.setattr(Trainer, "loss_weights", recorded_weights)
    big, small = build(), build()
    common = dict(max_steps=3, max_grad_norm=0.0, learning_rate=1e-2, logging_steps=1)
    # plain SGD: the weights move by the gradients themselves (Adam would blow a key bias's zero gradient,
    # rounding noise, up to full steps)
    big_run = Trainer(big, make_args(tmp_path / "a", per_device_train_batch_size=8, **common), data, stack,
                      optimizer=torch.optim.SGD(big.parameters(), lr=0.5)).train()
    accumulated = make_args(tmp_path / "b", per_device_train_batch_size=4, gradient_accumulation_steps=2, **common)
    small_run = Trainer(small, accumulated, data, stack, optimizer=torch.optim.SGD(small.parameters(), lr=0.5)).train()
    for key, value in big.state_dict().items():
        torch.testing.assert_close(small.state_dict()[key], value, rtol=1e-5, atol=1e-6, msg=key)
    # the logged loss is the big batch's mean too
    for ours, theirs in zip(small_run.history, big_run.history, strict=True):
        assert abs(ours["loss"] - theirs["loss"]) < 1e-5
    assert not unlabelled or 0.0 in weights  # the case was met


def test_optimizer_groups_follow_the_one_no_decay_rule(tmp_path):
    optimizer = build_optimizer(ToyModel(), make_args(tmp_path, weight_decay=0.1))
    decays = {g["weight_decay"]: sorted(p.dim() for p in g["params"]) for g in optimizer.param_groups}
    assert decays == {0.1: [2, 2], 0.0: [1, 1, 1]}  # embedding + linear weight | LayerNorm w, b and linear bias


def test_bf16_autocast_on_cpu_trains_and_keeps_fp32_weights(tmp_path):
    model = ToyModel()
    seen = []

    class Spy:
        def on_backward_end(self, trainer, batch):
            seen.append(trainer.compute_loss(batch)[1].logits.dtype)

    result = Trainer(
        model, make_args(tmp_path, bf16=True, max_steps=8), toy_dataset(), collate, callbacks=[Spy()]
    ).train()
    assert seen[0] == torch.bfloat16 and model.out.weight.dtype == torch.float32
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_fp16_scaler_skips_an_overflowing_step(tmp_path):
    model = ToyModel(dropout=0.0)
    snapshots = []

    class Overflow:
        def on_backward_end(self, trainer, batch):
            if trainer.state.global_step == 2:  # the third step: poison one gradient
                snapshots.append(weights(trainer.model))
                model.out.weight.grad[0, 0] = float("inf")

        def on_step_end(self, trainer):
            if trainer.state.global_step == 3:
                snapshots.append((weights(trainer.model), trainer.scaler.get_scale()))

    rates = []

    class Rates:
        def on_step_end(self, trainer):
            rates.append(trainer.scheduler.get_last_lr()[0])  # the rate of the next update

    args = make_args(tmp_path, fp16=True, max_steps=6, logging_steps=3)
    trainer = Trainer(model, args, toy_dataset(), collate, callbacks=[Overflow(), Rates()])
    scale_before = trainer.scaler.get_scale()
    result = trainer.train()
    # the skipped step 3 spent none of the linear schedule (as Hugging Face's Trainer): step 4 updates at
    # step 3's rate, and the schedule ends one step short of zero
    peak = args.learning_rate
    assert rates == pytest.approx([peak * (1 - k / 6) for k in (1, 2, 2, 3, 4, 5)])
    before, (after, scale_after) = snapshots
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)  # step 3 changed nothing
    assert scale_after == scale_before / 2
    assert result.history[0]["skipped_steps"] == 1 and result.history[1]["skipped_steps"] == 0
    # the skipped step's infinite norm stays out of its window's mean, as its loss would
    assert all(math.isfinite(record["grad_norm"]) for record in result.history)
    assert result.global_step == 6


def test_fp16_clips_the_unscaled_gradient_of_every_parameter_group(tmp_path):
    """Clipping reads the true gradient of all groups: under fp16 without GradScaler.unscale_ first it saw
    gradients 65,536 times too large (grad_norm logged 65,536x, every update clipped to a sliver), and over
    the first group only it left the others unclipped. Plain SGD with a norm far below the gradient's: one
    update moves all the weights by exactly lr * max_grad_norm, in fp32 and in fp16."""
    norms = []
    for fp16 in (False, True):
        torch.manual_seed(0)
        model = ToyModel(dropout=0.0)
        start = weights(model)
        groups = [{"params": list(model.embed.parameters())},
                  {"params": [p for n, p in model.named_parameters() if not n.startswith("embed")]}]
        args = make_args(tmp_path / str(fp16), fp16=fp16, max_steps=1, logging_steps=1, max_grad_norm=0.01,
                         lr_scheduler_type="constant")
        result = Trainer(model, args, toy_dataset(), collate, optimizer=torch.optim.SGD(groups, lr=1.0)).train()
        moved = math.sqrt(sum(float((p.detach() - start[n]).pow(2).sum()) for n, p in model.named_parameters()))
        assert moved == pytest.approx(1.0 * 0.01, rel=1e-3), f"fp16={fp16}: the update is {moved:.3g} long"
        norms.append(result.history[0]["grad_norm"])
    assert norms[0] > 0.1 and norms[1] == pytest.approx(norms[0], rel=1e-2)  # clipped, and the same norm logged


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    class Diverging(ToyModel):
        diverged = False

        def forward(self, input_ids, labels=None, attention_mask=None):
            out = super().forward(input_ids, labels)
            out.loss = out.loss * float("nan") if self.diverged else out.loss
            return out

    model = Diverging(dropout=0.0)
    captured = {}

    class Diverge:
        def on_step_end(self, trainer):
            if trainer.state.global_step == 4:
                captured["weights"] = weights(trainer.model)
                trainer.model.diverged = True

    trainer = Trainer(model, make_args(tmp_path, save_steps=4), toy_dataset(), collate, callbacks=[Diverge()])
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 5.*checkpoint-4"):
        trainer.train()
    for name, value in weights(model).items():  # the failed step did not update anything
        torch.testing.assert_close(value, captured["weights"][name], rtol=0, atol=0)
    fresh = ToyModel(dropout=0.0)
    load_model_weights(fresh, tmp_path / "run" / "checkpoint-4")
    for name, value in weights(fresh).items():
        torch.testing.assert_close(value, captured["weights"][name], rtol=0, atol=0)


def test_a_non_finite_gradient_under_a_finite_loss_stops_before_the_update(tmp_path):
    """sqrt at 0 has a finite value and an infinite slope: the loss was finite, the gradient NaN, and the
    update (no fp16 scaler to skip it) made every weight NaN, found only at the next step."""
    model = ToyModel(dropout=0.0)
    captured = {}

    def loss_fn(wrapped, batch):
        out = wrapped(**batch)
        if captured:  # from step 3 on
            out.loss = out.loss + torch.sqrt(wrapped.out.weight.sum() * 0.0)  # + 0, with a gradient of inf * 0
        return out.loss, out

    class Watch:
        def on_step_end(self, trainer):
            if trainer.state.global_step == 2:
                captured.update(weights(trainer.model))

    trainer = Trainer(model, make_args(tmp_path, save_steps=2), toy_dataset(), collate, callbacks=[Watch()],
                      loss_fn=loss_fn)
    with pytest.raises(NonFiniteLossError, match=r"gradient norm is nan at step 3 \(the loss is [0-9.]+\).*"
                                                 r"checkpoint-2.*sqrt or log at 0"):
        trainer.train()
    for name, value in weights(model).items():  # the failed step did not update anything
        torch.testing.assert_close(value, captured[name], rtol=0, atol=0)


def test_callbacks_can_add_a_second_backward(tmp_path):
    """The FGM/PGD pattern: an extra compute_loss + backward in on_backward_end adds its gradient."""

    class Twice:
        def on_backward_end(self, trainer, batch):
            loss, _ = trainer.compute_loss(batch)
            trainer.backward(loss)

    norms = []
    for callbacks in ((), (Twice(),)):
        torch.manual_seed(0)
        args = make_args(tmp_path / str(len(callbacks)), max_steps=1, max_grad_norm=0.0, gradient_accumulation_steps=2)
        result = Trainer(ToyModel(dropout=0.0), args, toy_dataset(), collate, callbacks=callbacks).train()
        norms.append(result.history[0]["grad_norm"])
    assert norms[1] == pytest.approx(2 * norms[0], rel=1e-5)


def test_callback_hooks_order_and_counts(tmp_path):
    calls = []

    class Recorder:
        def on_train_begin(self, trainer):
            calls.append("begin")

        def on_backward_end(self, trainer, batch):
            calls.append("backward")

        def on_step_end(self, trainer):
            calls.append("step")

        def on_evaluate(self, trainer, metrics):
            calls.append("evaluate")

        def on_save(self, trainer, directory):
            (directory / "extra.txt").write_text("tokenizer files go here")
            calls.append("save")

        def on_train_end(self, trainer):
            calls.append("end")

    args = make_args(tmp_path, max_steps=4, gradient_accumulation_steps=2, eval_steps=2, save_steps=4)
    Trainer(ToyModel(), args, toy_dataset(), collate, eval_fn=lambda m: {"loss": 1.0}, callbacks=[Recorder()]).train()
    step = ["backward", "backward", "step"]
    assert calls == ["begin"] + step * 2 + ["evaluate"] + step * 2 + ["evaluate", "save", "end"]
    assert (tmp_path / "run" / "checkpoint-4" / "extra.txt").exists()


def test_best_checkpoint_is_kept_and_reloaded(tmp_path):
    scores = iter([0.5, 0.9, 0.7, 0.6])  # best at the second evaluation (step 4)

    def eval_fn(model):
        assert not model.training
        return {"accuracy": next(scores)}

    args = make_args(
        tmp_path,
        max_steps=8,
        eval_steps=2,
        save_steps=2,
        save_total_limit=1,
        metric_for_best_model="accuracy",
        load_best_model_at_end=True,
    )
    model = ToyModel()
    result = Trainer(model, args, toy_dataset(), collate, eval_fn=eval_fn).train()
    assert result.best_metric == 0.9 and result.best_checkpoint.endswith("checkpoint-4")
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["checkpoint-4", "checkpoint-8"]
    best = ToyModel()
    load_model_weights(best, tmp_path / "run" / "checkpoint-4")
    torch.testing.assert_close(model.out.weight, best.out.weight, rtol=0, atol=0)
    assert [r["eval_accuracy"] for r in result.history if "eval_accuracy" in r] == [0.5, 0.9, 0.7, 0.6]


def test_an_error_metric_is_lower_is_better_and_an_undefined_one_is_never_best(tmp_path, caplog):
    """--metric_for_best_model rmse kept the checkpoint of the *highest* error (only "loss" was taken as
    lower-is-better), and a first NaN (a Pearson of constant predictions) stayed "best" for ever."""
    assert make_args(tmp_path, metric_for_best_model="rmse").greater_is_better is False
    assert make_args(tmp_path, metric_for_best_model="eval_len_rmse").greater_is_better is False
    assert make_args(tmp_path, metric_for_best_model="pearson").greater_is_better is True
    rmse = iter([5.6, 5.2, 4.9, 4.8])
    args = make_args(tmp_path / "rmse", max_steps=8, eval_steps=2, save_steps=2, metric_for_best_model="rmse")
    result = Trainer(ToyModel(), args, toy_dataset(), collate, eval_fn=lambda m: {"rmse": next(rmse)}).train()
    assert result.best_metric == 4.8 and result.best_checkpoint.endswith("checkpoint-8")
    pearson = iter([float("nan"), 0.2, 0.5, 0.3])
    args = make_args(tmp_path / "nan", max_steps=8, eval_steps=2, save_steps=2, metric_for_best_model="pearson")
    with caplog.at_level("WARNING"):
        result = Trainer(ToyModel(), args, toy_dataset(), collate, eval_fn=lambda m: {"pearson": next(pearson)}).train()
    assert result.best_metric == 0.5 and result.best_checkpoint.endswith("checkpoint-6")
    assert "pearson is undefined (NaN) at step 2" in caplog.text


@pytest.mark.parametrize("smart", [False, True])
def test_under_ddp_every_rank_takes_a_full_share_and_no_example_is_lost(tmp_path, smart):
    """Two ranks of batches of 4 over 42 examples: the last global batch (or the last round of smart
    batches) was dropped, so 2 to 4 examples an epoch were never read (a different few each epoch)."""
    from minibert.engine.distributed import DistributedContext
    from minibert.finetune.smart_batching import UniformLengthSampler

    data = toy_dataset(n=42)
    sampler = UniformLengthSampler([1 + i % 7 for i in range(42)], 4) if smart else None
    trainer = Trainer(ToyModel(), make_args(tmp_path, max_steps=1, per_device_train_batch_size=4), data, collate,
                      sampler=sampler)
    for epoch in (0, 1):
        shares = []
        for rank in (0, 1):
            trainer.context = DistributedContext(rank=rank, world_size=2)
            shares.append(trainer._epoch_batches(0, epoch))
        assert len(shares[0]) == len(shares[1])  # the same number of steps on both ranks (or DDP hangs)
        seen = [i for share in shares for batch in share for i in batch]
        assert set(seen) == set(range(42))  # every example, some of the first twice to fill the last round
        assert len(seen) - 42 < 8
    trainer.args.dataloader_drop_last = True  # asked for: the incomplete last round goes
    trainer.context = DistributedContext(rank=0, world_size=2)
    assert len({i for batch in trainer._epoch_batches(0, 0) for i in batch}) < 21


def test_custom_sampler_of_batches_is_followed(tmp_path):
    seen = []

    def spy_collate(examples):
        seen.append([int(e["input_ids"][0]) for e in examples])
        return collate(examples)

    data = [{"input_ids": torch.full((LENGTH,), i % VOCAB)} for i in range(12)]
    sampler = [[0, 1, 2], [5, 4], [11, 10, 9, 8]]  # uneven batches, as smart batching makes
    args = make_args(tmp_path, max_steps=4, per_device_train_batch_size=99)
    Trainer(ToyModel(), args, data, spy_collate, sampler=sampler).train()
    assert seen == [[0, 1, 2], [5, 4], [11, 10, 9, 8], [0, 1, 2]]


def test_dataloader_workers_give_the_batches_and_losses_of_the_main_process(tmp_path):
    """--dataloader_num_workers 2: the batches (random masking included, each from its own generator) are
    built in worker processes, and training is the same as without workers (it once failed at the first
    batch: the workers' init function did not take the worker id)."""
    runs = {}
    for workers in (0, 2):
        torch.manual_seed(0)
        args = make_args(tmp_path / str(workers), max_steps=10, logging_steps=1, dataloader_num_workers=workers)
        runs[workers] = Trainer(ToyModel(), args, toy_dataset(), masking_collate).train()
    assert [r["loss"] for r in runs[2].history] == [r["loss"] for r in runs[0].history]


def test_random_sampler_is_reproducible(tmp_path):
    orders = []
    for run in ("a", "b"):
        seen = []

        def spy_collate(examples, seen=seen):
            seen.append([int(e["input_ids"][0]) for e in examples])
            return collate(examples)

        data = [{"input_ids": torch.full((LENGTH,), i)} for i in range(VOCAB)]
        sampler = torch.utils.data.RandomSampler(data)  # draws from the global RNG
        torch.manual_seed(123 if run == "a" else 456)
        Trainer(
            ToyModel(),
            make_args(tmp_path / run, max_steps=4, per_device_train_batch_size=8),
            data,
            spy_collate,
            sampler=sampler,
        ).train()
        orders.append(seen)
    assert orders[0] == orders[1]
    assert orders[0][0] != orders[0][2]  # a new order each epoch


def test_two_phase_switches_dataset_for_the_last_share_of_steps(tmp_path):
    lengths = []

    class Spy:
        def on_backward_end(self, trainer, batch):
            lengths.append((trainer.state.global_step, batch["input_ids"].shape[1]))

    args = make_args(tmp_path, max_steps=10, phase2_ratio=0.2, phase2_batch_size=4)
    long = toy_dataset(n=16, length=3 * LENGTH, seed=1)
    Trainer(ToyModel(), args, toy_dataset(), collate, phase2_dataset=long, callbacks=[Spy()]).train()
    assert lengths == [(s, LENGTH) for s in range(8)] + [(8, 3 * LENGTH), (9, 3 * LENGTH)]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"bf16": True, "fp16": True}, "not both"),
        ({"lr_scheduler_type": "cosine_annealing"}, "lr_scheduler_type must be one of"),
        ({"warmup_ratio": 1.5}, "warmup_ratio"),
        ({"device": "tpu"}, "device must be one of"),
        ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps"),
    ],
)
def test_bad_arguments_are_named(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_args(tmp_path, **overrides)


def test_bad_trainer_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="train_dataset is empty"):
        Trainer(ToyModel(), make_args(tmp_path), [], collate)
    with pytest.raises(ValueError, match="gradient_checkpointing_enable"):
        Trainer(ToyModel(), make_args(tmp_path, gradient_checkpointing=True), toy_dataset(), collate)
    with pytest.raises(ValueError, match="metric_for_best_model 'f1' is not among"):
        args = make_args(tmp_path, max_steps=2, metric_for_best_model="f1")
        Trainer(ToyModel(), args, toy_dataset(), collate, eval_fn=lambda m: {"accuracy": 1.0}).train()


def test_a_run_stopped_before_its_first_checkpoint_is_told_how_to_start_again(tmp_path):
    """Killed before its first checkpoint, a run leaves metrics.jsonl alone: the two refusals sent the user
    round in a circle (resume it; then, resuming: drop the flag), neither naming --overwrite_output_dir."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    with pytest.raises(ValueError, match=r"stopped before its first checkpoint .*pass --overwrite_output_dir"):
        Trainer(ToyModel(), make_args(tmp_path, max_steps=2), toy_dataset(), collate).train()
    with pytest.raises(ValueError, match=r"holds no complete checkpoint.*--overwrite_output_dir"):
        Trainer(ToyModel(), make_args(tmp_path, max_steps=2, resume_from_checkpoint="last"), toy_dataset(),
                collate).train()
    Trainer(ToyModel(), make_args(tmp_path, max_steps=2, overwrite_output_dir=True), toy_dataset(), collate).train()


def test_refuses_an_existing_run_unless_overwrite(tmp_path):
    Trainer(ToyModel(), make_args(tmp_path, max_steps=2), toy_dataset(), collate).train()
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="already holds a training run.*--overwrite_output_dir"):
        Trainer(ToyModel(), make_args(tmp_path, max_steps=3), toy_dataset(), collate).train()
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
    Trainer(ToyModel(), make_args(tmp_path, max_steps=3, overwrite_output_dir=True), toy_dataset(), collate).train()
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["checkpoint-3"]


def test_gradient_checkpointing_gives_the_same_training_on_a_tiny_bert(tmp_path):
    from minibert.models.bert import BertConfig, BertForMaskedLM

    config = dict(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    histories = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = BertForMaskedLM(BertConfig(**config))
        args = make_args(
            tmp_path / str(checkpointing), max_steps=3, logging_steps=1, gradient_checkpointing=checkpointing
        )
        result = Trainer(model, args, toy_dataset(), collate).train()
        histories.append([(r["loss"], r["grad_norm"]) for r in result.history])
    assert model.base_model.gradient_checkpointing
    for (loss_a, norm_a), (loss_b, norm_b) in zip(*histories, strict=True):
        assert loss_a == pytest.approx(loss_b, rel=1e-5) and norm_a == pytest.approx(norm_b, rel=1e-4)


def tiny_bert_and_gpt2():
    from minibert.models.bert import BertConfig, BertForMaskedLM
    from minibert.models.gpt import GPT2Config, GPT2LMHeadModel

    bert = BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=32))
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, n_positions=LENGTH))
    return {"bert": bert, "gpt2": gpt}


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_torch_compile_gives_the_losses_of_the_eager_model(tmp_path, family):
    """--torch_compile compiles the model, dropout included (its random draws are the eager ones), and
    trains to the same losses and gradient norms. The backend is aot_eager (Dynamo's graph capture
    and AOTAutograd's joint forward/backward graph, run by PyTorch's kernels): inductor would generate
    and compile C++ for every graph, about a minute on 2 CPU cores; its numerics are checked by PyTorch."""
    histories = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = tiny_bert_and_gpt2()[family]
        args = make_args(tmp_path / str(compiled), max_steps=3, logging_steps=1, learning_rate=1e-2,
                         **({"torch_compile_backend": "aot_eager"} if compiled else {}))
        assert args.torch_compile == compiled
        trainer = Trainer(model, args, toy_dataset(n=24), collate)
        result = trainer.train()
        histories.append([(r["loss"], r["grad_norm"]) for r in result.history])
    assert type(trainer.wrapped).__name__ == "OptimizedModule" and trainer.model is model
    assert all("_orig_mod" not in name for name in model.state_dict())  # checkpoints keep the model's names
    for (loss_a, norm_a), (loss_b, norm_b) in zip(*histories, strict=True):
        assert loss_a == pytest.approx(loss_b, rel=1e-5) and norm_a == pytest.approx(norm_b, rel=1e-4)


def test_the_logged_learning_rate_is_the_highest_groups(tmp_path):
    """With layer-wise rates the first group is the embeddings' (--llrd 0.5: a quarter of the rate), which
    was what the log called the learning rate."""
    model = ToyModel()
    groups = [{"params": list(model.embed.parameters()), "lr": 1e-3},
              {"params": [p for n, p in model.named_parameters() if not n.startswith("embed")], "lr": 1e-2}]
    args = make_args(tmp_path, max_steps=2, logging_steps=1, lr_scheduler_type="constant")
    result = Trainer(model, args, toy_dataset(), collate, optimizer=torch.optim.AdamW(groups)).train()
    assert [r["learning_rate"] for r in result.history if "loss" in r] == [1e-2, 1e-2]

"""Fine-tuning tricks: each test would fail if its trick were broken."""

import logging
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from minibert.finetune.adversarial import FGM, PGD
from minibert.finetune.freeze import freeze_embeddings
from minibert.finetune.losses import zlpr_loss
from minibert.finetune.mixout import MixLinear, MixoutFunction, apply_mixout, mixout
from minibert.finetune.optimizers import BertAdam, Lookahead, build_finetune_optimizer, radam_lookahead
from minibert.finetune.param_groups import (
    decays,
    grouped_lr_groups,
    layer_wise_lr_decay_groups,
    param_groups,
)
from minibert.finetune.prior_wd import PriorWD
from minibert.finetune.reinit import reinit_pooler, reinit_top_layers
from minibert.finetune.swa import SWA
from minibert.models.bert import BertConfig, BertForSequenceClassification


def tiny_model(layers: int = 4, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config)


def batch(seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(1, 50, (4, 7), generator=g), "labels": torch.randint(0, 3, (4,), generator=g)}


def grads(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


class FakeTrainer:
    def __init__(self, model, accumulation: int = 1):
        self.model = model
        self.args = SimpleNamespace(gradient_accumulation_steps=accumulation)

    def compute_loss(self, b):
        out = self.model(**b)
        return out.loss, out

    def backward(self, loss):
        loss.backward()


# -- adversarial ----------------------------------------------------------------------------------
def test_fgm_adds_adversarial_gradient_and_restores_embedding_exactly():
    model, b = tiny_model(), batch()
    emb = model.bert.embeddings.word_embeddings.weight
    clean_weights = emb.detach().clone()
    model(**b).loss.backward()
    clean = grads(model)
    # the adversarial gradient, by hand
    r = 0.5 * emb.grad / emb.grad.norm()
    reference = tiny_model()
    reference.bert.embeddings.word_embeddings.weight.data.add_(r)
    reference(**b).loss.backward()
    adversarial = grads(reference)

    fgm = FGM(model, epsilon=0.5)
    fgm.on_backward_end(FakeTrainer(model), b)
    assert torch.equal(emb.detach(), clean_weights)
    for n, g in grads(model).items():
        torch.testing.assert_close(g, clean[n] + adversarial[n], rtol=1e-5, atol=1e-6)


def test_fgm_under_accumulation_attacks_each_micro_batch_along_its_own_gradient():
    """Two micro-batches of one optimizer step: the second attack follows the second batch's clean
    gradient, not the sum left by the first batch (its clean and adversarial gradients)."""
    model, first, second = tiny_model(), batch(1), batch(2)
    emb = model.bert.embeddings.word_embeddings.weight

    def adversarial_grads(b, r):  # gradients of the batch's loss with the embeddings moved by r, by hand
        reference = tiny_model()
        reference.bert.embeddings.word_embeddings.weight.data.add_(r)
        reference(**b).loss.backward()
        return grads(reference)

    clean = {}
    for b in (first, second):
        reference = tiny_model()
        reference(**b).loss.backward()
        clean[id(b)] = grads(reference)
    expected = {}
    for b in (first, second):
        g = clean[id(b)]["bert.embeddings.word_embeddings.weight"]
        adversarial = adversarial_grads(b, 0.5 * g / g.norm())
        for n in adversarial:
            expected[n] = expected.get(n, 0) + clean[id(b)][n] + adversarial[n]

    trainer, fgm = FakeTrainer(model, accumulation=2), FGM(model, epsilon=0.5)
    for b in (first, second):
        model(**b).loss.backward()
        fgm.on_backward_end(trainer, b)
    for n, g in grads(model).items():
        torch.testing.assert_close(g, expected[n], rtol=1e-5, atol=1e-6)
    fgm.on_step_end(trainer)
    assert fgm.earlier == {} and emb.grad is not None


@pytest.mark.parametrize("attack, flag", [(FGM, "--fgm"), (PGD, "--pgd_steps")])
def test_adversarial_training_refuses_accumulation_under_ddp(attack, flag):
    """On the last micro-batch DDP has averaged the gradient over the processes before the attack reads
    it: the direction would not be this micro-batch's own gradient."""
    def trainer(world, accumulation):
        return SimpleNamespace(context=SimpleNamespace(world_size=world),
                               args=SimpleNamespace(gradient_accumulation_steps=accumulation))

    adversary = attack(tiny_model())
    with pytest.raises(ValueError, match=f"{flag} with --gradient_accumulation_steps 2 on 2 processes: .* drop "
                                         "--gradient_accumulation_steps"):
        adversary.on_train_begin(trainer(2, 2))
    for world, accumulation in ((1, 2), (2, 1)):  # accumulation on one process, DDP without it: fine
        adversary.on_train_begin(trainer(world, accumulation))


@pytest.mark.parametrize("bad", [0.0, float("nan")])
def test_fgm_skips_zero_or_nonfinite_norm(bad):
    model = tiny_model()
    emb = model.bert.embeddings.word_embeddings.weight
    emb.grad = torch.full_like(emb, bad)
    before = emb.detach().clone()
    fgm = FGM(model)
    calls = []
    assert not fgm.step(lambda: calls.append(1), lambda loss: None)
    assert calls == [] and fgm.skipped == 1 and torch.equal(emb.detach(), before)


@pytest.mark.parametrize("attack", [FGM, PGD])
def test_skipped_attacks_are_said_at_the_end_of_training(attack, caplog):
    model = tiny_model()
    emb = model.bert.embeddings.word_embeddings.weight
    adversary = attack(model)
    trainer = SimpleNamespace(args=SimpleNamespace(gradient_accumulation_steps=1), backward=lambda loss: None,
                              compute_loss=lambda batch: (None,))
    emb.grad = torch.zeros_like(emb)
    adversary.on_backward_end(trainer, {})
    emb.grad = None
    adversary.on_backward_end(trainer, {})
    with caplog.at_level(logging.WARNING, logger="minibert.finetune.adversarial"):
        adversary.on_train_end(trainer)
    assert f"{adversary.flag}: 2 of 2 micro-batches had no usable embedding gradient" in caplog.text
    caplog.clear()
    attack(model).on_train_end(trainer)  # nothing skipped: nothing said
    assert caplog.text == ""


def test_pgd_stays_in_epsilon_ball_and_restores():
    model = tiny_model()
    emb = model.bert.embeddings.word_embeddings.weight
    clean_weights = emb.detach().clone()
    pgd = PGD(model, epsilon=0.3, alpha=0.2, steps=5)
    norms = []
    for t in range(6):
        emb.grad = torch.randn_like(emb)
        assert pgd.attack(first=t == 0)
        norms.append(float((emb.detach() - clean_weights).norm()))
    assert max(norms) <= 0.3 + 1e-5 and norms[0] == pytest.approx(0.2, rel=1e-4)
    assert norms[-1] == pytest.approx(0.3, rel=1e-4)  # random directions push it to the boundary
    pgd.restore()
    assert torch.equal(emb.detach(), clean_weights)


def test_pgd_gradient_is_clean_plus_last_adversarial():
    model, b = tiny_model(), batch()
    emb = model.bert.embeddings.word_embeddings.weight
    model(**b).loss.backward()
    clean = grads(model)
    pgd = PGD(model, epsilon=1.0, alpha=0.4, steps=2)
    seen = []

    def loss_fn():
        seen.append(emb.detach().clone())
        return model(**b).loss

    assert pgd.step(loss_fn, lambda loss: loss.backward())
    assert len(seen) == 2
    reference = tiny_model()
    reference.bert.embeddings.word_embeddings.weight.data.copy_(seen[-1])
    reference(**b).loss.backward()
    for n, g in grads(model).items():
        torch.testing.assert_close(g, clean[n] + reference.get_parameter(n).grad, rtol=1e-5, atol=1e-6)
    assert torch.equal(emb.detach(), tiny_model().bert.embeddings.word_embeddings.weight.detach())


def test_adversarial_bad_embedding_name_lists_embeddings():
    with pytest.raises(ValueError, match="word_embeddings"):
        FGM(tiny_model(), emb_name="emb_nope")
    model = tiny_model()
    freeze_embeddings(model)
    with pytest.raises(ValueError, match="frozen"):
        FGM(model)


# -- mixout ---------------------------------------------------------------------------------------
def test_mixout_mixes_toward_target_not_zero_and_is_unbiased():
    w, u = torch.randn(6, 200), torch.randn(6, 200)
    g = torch.Generator().manual_seed(0)
    out = mixout(w, u, p=0.5, generator=g)
    # each column is either (w - 0.5 u) / 0.5 + ... i.e. one of two known values, never 0
    kept = torch.isclose(out, (w - 0.5 * u) / 0.5)
    mixed = torch.isclose(out, (u - 0.5 * u) / 0.5)
    assert bool((kept | mixed).all()) and kept.all(0).sum() > 50 and mixed.all(0).sum() > 50
    mean = torch.stack([mixout(w, u, p=0.3) for _ in range(3000)]).mean(0)
    torch.testing.assert_close(mean, w, atol=0.15, rtol=0)
    assert torch.equal(mixout(w, u, p=1.0), u)
    assert mixout(w, u, p=0.5, training=False) is w


def test_mixout_gradient_matches_finite_differences():
    w = torch.randn(3, 4, dtype=torch.double, requires_grad=True)
    u = torch.randn(3, 4, dtype=torch.double)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.double).expand(3, 4)
    assert torch.autograd.gradcheck(lambda x: MixoutFunction.apply(x, u, 0.3, mask), (w,))


def test_apply_mixout_swaps_linears_and_turns_dropout_off():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3)
    model = BertForSequenceClassification(config)
    keys = set(model.state_dict())
    linears = sum(type(m) is nn.Linear for m in model.modules())
    head_start = model.classifier.weight.detach().clone()
    assert apply_mixout(model, 0.7) == linears
    assert torch.equal(model.classifier.target, head_start)  # the new head mixes toward its random start
    assert sum(isinstance(m, MixLinear) for m in model.modules()) == linears
    assert set(model.state_dict()) == keys  # checkpoints unchanged
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, nn.Dropout))
    assert all(m.dropout == 0.0 for m in model.modules() if isinstance(getattr(m, "dropout", None), float))
    model.eval()
    b = batch()
    first = model(**b).logits
    model.train()
    model(**b).loss.backward()  # gradients flow through MixLinear
    assert model.classifier.weight.grad is not None
    model.eval()
    torch.testing.assert_close(model(**b).logits, first)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            apply_mixout(tiny_model(), p)


# -- prior weight decay ---------------------------------------------------------------------------
def test_prior_wd_decays_toward_pretrained_not_zero():
    layer = nn.Linear(4, 4)
    start = layer.weight.detach().clone()
    optimizer = PriorWD(torch.optim.SGD(param_groups(layer, lr=0.1, weight_decay=0.5), lr=0.1))
    with torch.no_grad():
        layer.weight.add_(1.0)
    bias_before = layer.bias.detach().clone()
    for p in layer.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    # w <- w - lr * wd * (w - w0): the distance to the start shrinks by 1 - 0.05, the bias is untouched
    torch.testing.assert_close(layer.weight.detach() - start, torch.full_like(start, 0.95))
    torch.testing.assert_close(layer.bias.detach(), bias_before)
    assert optimizer.distance_to_prior() == pytest.approx(0.95 * 4, rel=1e-5)
    assert all(g["weight_decay"] == 0.0 for g in optimizer.param_groups)  # not applied twice
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5)
    sched.step()
    assert optimizer.param_groups[0]["lr"] == 0.05
    state = optimizer.state_dict()
    fresh = PriorWD(torch.optim.SGD(param_groups(layer, lr=0.1, weight_decay=0.5), lr=0.1))
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.wrapper_state[layer.weight]["prior"], start)


# -- learning rates by depth -------------------------------------------------------------------------
def _lr_by_name(model, groups):
    where = {id(p): g for g in groups for p in g["params"]}
    return {n: where[id(p)] for n, p in model.named_parameters() if id(p) in where}


def test_llrd_decays_from_the_top_with_embeddings_lowest_and_keeps_no_decay_rule():
    model = tiny_model(layers=4)
    groups = layer_wise_lr_decay_groups(model, lr=1.0, weight_decay=0.01, decay=0.5, head_lr=3.0)
    by_name = _lr_by_name(model, groups)
    assert len(by_name) == len(list(model.parameters()))
    for i in range(4):
        assert by_name[f"bert.layers.{i}.ffn.up.weight"]["lr"] == 0.5 ** (3 - i)
    assert by_name["bert.embeddings.word_embeddings.weight"]["lr"] == 0.5**4
    assert by_name["classifier.weight"]["lr"] == 3.0 and by_name["bert.pooler.dense.weight"]["lr"] == 3.0
    for n, p in model.named_parameters():
        assert by_name[n]["weight_decay"] == (0.01 if decays(n, p) else 0.0)
    for bad in (0.0, 1.2):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            layer_wise_lr_decay_groups(model, 1.0, 0.0, bad)


def test_grouped_lr_three_groups_factor():
    model = tiny_model(layers=6)
    by_name = _lr_by_name(model, grouped_lr_groups(model, lr=2.6, weight_decay=0.0, num_groups=3, factor=2.6))
    rates = [by_name[f"bert.layers.{i}.ffn.up.weight"]["lr"] for i in range(6)]
    assert rates == pytest.approx([2.6 / 2.6**2] * 2 + [1.0] * 2 + [2.6] * 2)
    assert by_name["bert.embeddings.word_embeddings.weight"]["lr"] == pytest.approx(rates[0])
    assert by_name["classifier.weight"]["lr"] == 2.6


def test_grouped_lr_with_fewer_blocks_than_groups_keeps_the_top_block_at_lr():
    # ULMFiT's discriminative fine-tuning gives the top layer the base rate: with 2 blocks and 3 groups
    # each block is a group of its own, counted from the top (the bottom group is left empty).
    model = tiny_model(layers=2)
    by_name = _lr_by_name(model, grouped_lr_groups(model, lr=2.6, weight_decay=0.0, num_groups=3, factor=2.6))
    for name in by_name:
        expected = 1.0 if name.startswith(("bert.embeddings.", "bert.layers.0.")) else 2.6  # top block, head: lr
        assert by_name[name]["lr"] == pytest.approx(expected, rel=1e-12), name
    for layers in range(1, 13):
        model = tiny_model(layers=layers)
        for num_groups in range(1, 5):
            by_name = _lr_by_name(model, grouped_lr_groups(model, 1.0, 0.0, num_groups, 2.6))
            assert by_name[f"bert.layers.{layers - 1}.ffn.up.weight"]["lr"] == 1.0, (layers, num_groups)
            lowest = 2.6 ** -min(num_groups - 1, layers - 1)
            assert by_name["bert.layers.0.ffn.up.weight"]["lr"] == pytest.approx(lowest), (layers, num_groups)


def test_frozen_parameters_are_left_out():
    model = tiny_model()
    frozen = freeze_embeddings(model)
    assert frozen == sum(p.numel() for p in model.bert.embeddings.parameters())
    names = set(_lr_by_name(model, layer_wise_lr_decay_groups(model, 1.0, 0.0, 0.9)))
    assert not any(n.startswith("bert.embeddings") for n in names)


# -- re-initialisation ----------------------------------------------------------------------------------
def test_reinit_top_layers_and_pooler():
    model = tiny_model(layers=4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # a "pretrained" state far from the initialisation
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert reinit_top_layers(model, 2) == [2, 3]
    assert reinit_pooler(model)
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (n.startswith(("bert.layers.2.", "bert.layers.3.", "bert.pooler."))), n
    assert torch.equal(model.bert.layers[3].ffn_norm.weight, torch.ones(16))
    assert model.bert.layers[3].ffn.up.weight.std().item() == pytest.approx(0.02, rel=0.3)
    with pytest.raises(ValueError, match="0..4"):
        reinit_top_layers(model, 5)


# -- optimizers -----------------------------------------------------------------------------------------
def test_bertadam_with_bias_correction_is_adamw_and_without_takes_bigger_early_steps():
    torch.manual_seed(0)
    a, b, c = (nn.Parameter(torch.randn(5, 3)) for _ in range(3))
    b.data.copy_(a.data)
    c.data.copy_(a.data)
    ours = BertAdam([a], lr=1e-2, weight_decay=0.1, correct_bias=True, eps=1e-8)
    theirs = torch.optim.AdamW([b], lr=1e-2, weight_decay=0.1, eps=1e-8)
    bert = BertAdam([c], lr=1e-2, weight_decay=0.0, correct_bias=False, eps=1e-8)
    start = c.detach().clone()
    for step in range(5):
        g = torch.randn(5, 3)
        for p in (a, b, c):
            p.grad = g.clone()
        ours.step()
        theirs.step()
        bert.step()
        if step == 0:  # first step: Adam moves lr per coordinate, BertAdam (1 - b1) / sqrt(1 - b2) ~ 3.16x that
            torch.testing.assert_close((c - start).abs(), torch.full_like(c, 1e-2 * 0.1 / math.sqrt(0.001)))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_lookahead_pulls_slow_weights_every_k_steps():
    w = nn.Parameter(torch.zeros(3))
    opt = Lookahead(torch.optim.SGD([w], lr=1.0), k=2, alpha=0.5)
    for _ in range(2):
        w.grad = -torch.ones(3)
        opt.step()
    # fast weights went 0 -> 1 -> 2; slow = 0 + 0.5 * (2 - 0) = 1 and fast is reset to it
    torch.testing.assert_close(w.detach(), torch.ones(3))
    w.grad = -torch.ones(3)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((3,), 2.0))
    model = tiny_model()
    opt = radam_lookahead(param_groups(model, 1e-3, 0.01))
    model(**batch()).loss.backward()
    opt.step()
    assert isinstance(opt.optimizer, torch.optim.RAdam)
    with pytest.raises(ValueError, match="choose one of"):
        build_finetune_optimizer("sgdx", param_groups(model, 1e-3, 0.0), 1e-3)


def test_wrapper_copies_follow_their_parameter_to_its_device():
    """PriorWD's start weights and Lookahead's slow weights are copied when the optimizer is built,
    which is before the Trainer moves the model to its device (a GPU). Here the parameter lives on the
    meta device while the copy stays on the CPU, as a CUDA run would have it: the first step used to
    fail with "Tensor on device cpu is not on the expected device"."""
    for wrap, name in ((PriorWD, "prior"), (lambda opt: Lookahead(opt, k=1), "slow")):
        w = nn.Parameter(torch.zeros(3, 3, device="meta"))
        opt = wrap(torch.optim.SGD([{"params": [w], "weight_decay": 0.1}], lr=0.1))
        opt.wrapper_state[w][name] = torch.zeros(3, 3)  # taken on the CPU, before the move
        w.grad = torch.ones_like(w)
        opt.step()
        assert opt.wrapper_state[w][name].device == w.device


def test_madgrad_is_an_optional_extra():
    model = tiny_model()
    try:
        import madgrad  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="pip install madgrad"):
            build_finetune_optimizer("madgrad", param_groups(model, 1e-3, 0.0), 1e-3)
    else:
        optimizer = build_finetune_optimizer("madgrad", param_groups(model, 1e-3, 0.0), 1e-3)
        model(**batch()).loss.backward()
        optimizer.step()


# -- ZLPR -----------------------------------------------------------------------------------------
def test_zlpr_hard_labels_match_the_original_formula():
    s = torch.randn(4, 6)
    t = (torch.rand(4, 6) > 0.6).float()
    expected = torch.stack([
        torch.log(1 + torch.exp(s[i][t[i] == 0]).sum()) + torch.log(1 + torch.exp(-s[i][t[i] == 1]).sum())
        for i in range(4)
    ]).mean()
    torch.testing.assert_close(zlpr_loss(s, t), expected)
    assert torch.isfinite(zlpr_loss(s * 1000, t))  # logsumexp: no overflow


@pytest.mark.parametrize("target", [0.1, 0.5, 0.8])
def test_zlpr_soft_label_minimum_is_at_sigmoid_2s_equal_t(target):
    s = torch.zeros(1, 1, requires_grad=True)
    opt = torch.optim.LBFGS([s], max_iter=100)

    def closure():
        opt.zero_grad()
        loss = zlpr_loss(s, torch.tensor([[target]]))
        loss.backward()
        return loss

    opt.step(closure)
    assert torch.sigmoid(2 * s).item() == pytest.approx(target, abs=1e-3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        zlpr_loss(torch.zeros(2, 2), torch.full((2, 2), 1.5))


# -- SWA ---------------------------------------------------------------------------------------------
def test_swa_averages_from_the_start_fraction_and_takes_over_the_learning_rate():
    model = nn.Linear(2, 1, bias=False)
    opt = torch.optim.SGD([{"params": model.parameters(), "lr": 0.1, "initial_lr": 0.1}], lr=0.1)

    class Trainer:
        total_steps, eval_fn = 10, staticmethod(lambda m: {"w": float(m.weight.sum())})
        state = type("S", (), {"global_step": 0})()
        args = type("A", (), {"learning_rate": 0.1})()

    trainer = Trainer()
    trainer.model, trainer.optimizer, trainer.scheduler = model, opt, None
    swa = SWA(start=0.5, swa_lr=0.01, anneal_steps=1)
    visited = []
    for step in range(1, 11):
        with torch.no_grad():
            model.weight.fill_(float(step))
        trainer.state.global_step = step
        swa.on_step_end(trainer)
        if step >= 5:
            visited.append(float(step))
    assert swa.averaged.n_averaged.item() == 6
    torch.testing.assert_close(swa.averaged_module().weight, torch.full((1, 2), sum(visited) / len(visited)))
    trainer.scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    swa.on_train_end(trainer)
    assert swa.metrics["w"] == pytest.approx(2 * sum(visited) / len(visited))
    with pytest.raises(ValueError, match="fraction"):
        SWA(start=1.5)


@pytest.mark.parametrize("swa_lr", [None, 1e-4])
def test_swa_lr_is_the_rate_of_the_learning_rate_groups_and_others_keep_their_ratio(swa_lr):
    # --head_lr 4x --learning_rate and LLRD 0.5: swa_lr (default lr / 2) is the top block's rate in the
    # averaging phase, the head gets 4x it and the embeddings 0.5^2 of it (2 blocks), as before SWA.
    lr, decay = 5e-4, 0.5
    model = tiny_model(layers=2)
    opt = torch.optim.AdamW(layer_wise_lr_decay_groups(model, lr, 0.0, decay, head_lr=4 * lr))
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]  # what the engine's schedule sets
    trainer = SimpleNamespace(model=model, optimizer=opt, scheduler=None, total_steps=4,
                              state=SimpleNamespace(global_step=2), args=SimpleNamespace(learning_rate=lr))
    SWA(start=0.5, swa_lr=swa_lr, anneal_steps=1).on_step_end(trainer)
    trainer.scheduler.step()
    target = swa_lr if swa_lr is not None else lr / 2
    expected = {"head": 4 * target, "layer_1": target, "layer_0": target * decay, "embeddings": target * decay**2}
    assert {g["name"]: g["lr"] for g in opt.param_groups} == pytest.approx(expected, rel=1e-9)

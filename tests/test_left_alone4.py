"""Behaviours earlier sessions noticed and left alone (fourth set): every torchrun process printed the stop message;
a resume with no step left warned of a stretched schedule; SWA under Lookahead averaged the fast weights; GPT-2 and
BART returned no cache unless asked; join_sentences lost the space before a Chinese sentence. Seconds each."""

import logging
import signal
from types import SimpleNamespace

import pytest
import torch
from test_engine import ToyModel, collate, make_args, toy_dataset
from torch import nn

import pretrain
import train
from minibert.data.corpus import join_sentences, split_sentences
from minibert.engine import StoppedBySignal, Trainer, TrainingInterrupted
from minibert.finetune.optimizers import Lookahead
from minibert.finetune.swa import SWA


# -- 1. Under torchrun, the stop message once, by the process that knows -------------------------------------------
@pytest.mark.parametrize("command", [pretrain, train])
@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_stop_the_processes_agree_on_is_said_once_and_a_signal_by_each_process_it_reached(command, rank,
                                                                                           monkeypatch, capsys):
    """A SIGTERM reaches every torchrun process and each stopped with the same message, printed by all: the stop
    after a step (TrainingInterrupted), which every process raises at the same step, is now said by rank 0 alone. A
    signal outside the steps (StoppedBySignal) is the signalled process's own (a scheduler may signal only some, and
    the others wait): each says it, with its rank. Every process exits with the signal's code."""
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    target = "run_pretraining" if command is pretrain else "finetune"
    for stop, said in ((TrainingInterrupted(signal.SIGTERM, 3, "run/checkpoint-3"), rank == "0"),
                       (StoppedBySignal(signal.SIGTERM), True)):
        def stopped(*args, stop=stop, **kwargs):
            raise stop

        monkeypatch.setattr(command, target, stopped)
        assert command.main([]) == 128 + signal.SIGTERM
        err = capsys.readouterr().err
        assert ("SIGTERM" in err) == said, err
        if isinstance(stop, StoppedBySignal):
            assert f"rank {rank}: SIGTERM received outside the training steps" in err
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: no rank named
    assert command.main([]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "SIGTERM received outside the training steps" in err and "rank 0" not in err


# -- 2. A resume with no step left warns of no schedule ---------------------------------------------------------
def test_a_resume_past_the_runs_end_warns_of_no_stretched_schedule(tmp_path, caplog):
    """A cosine run of 6 steps resumed from step 6 with --max_steps 4 runs no step, yet was warned that "the next step
    runs at 0.0015" (the cosine read past its end): no step left, nothing followed, nothing said. A longer run still
    hears it."""
    common = dict(logging_steps=1, learning_rate=1e-2, save_steps=3, lr_scheduler_type="cosine")
    Trainer(ToyModel(), make_args(tmp_path / "a", max_steps=6, **common), toy_dataset(), collate).train()
    with caplog.at_level(logging.WARNING, logger="minibert.engine.checkpointing"):
        Trainer(ToyModel(), make_args(tmp_path / "a", max_steps=4, resume_from_checkpoint="last", **common),
                toy_dataset(), collate).train()
    assert "another length of the run" not in caplog.text
    # a checkpoint exactly at the new end: step 6 of a 9-step run, resumed with --max_steps 6
    Trainer(ToyModel(), make_args(tmp_path / "b", max_steps=9, **common), toy_dataset(), collate).train()
    with caplog.at_level(logging.WARNING, logger="minibert.engine.checkpointing"):
        Trainer(ToyModel(), make_args(tmp_path / "b", max_steps=6, **common,
                                      resume_from_checkpoint=str(tmp_path / "b" / "run" / "checkpoint-6")),
                toy_dataset(), collate).train()
    assert "another length of the run" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="minibert.engine.checkpointing"):
        Trainer(ToyModel(), make_args(tmp_path / "a", max_steps=8, resume_from_checkpoint="last", **common),
                toy_dataset(), collate).train()
    assert "another length of the run" in caplog.text


# -- 3. SWA under Lookahead averages the slow weights -----------------------------------------------------------
def test_swa_under_lookahead_averages_the_slow_weights_and_leaves_the_fast_ones():
    """Under --optim radam_lookahead the model of a step is its slow weights (evaluated, returned at the end); SWA
    averaged the fast weights, up to k - 1 steps ahead of them. Now its average is the mean of the slow weights
    each step would return, and training goes on from the fast weights, bit for bit."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=3, alpha=0.5)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    trainer = SimpleNamespace(model=model, optimizer=optimizer, scheduler=None, total_steps=7,
                              state=SimpleNamespace(global_step=0), args=SimpleNamespace(learning_rate=0.1))
    swa, slow = SWA(start=0.0, anneal_steps=1), []
    for step in range(1, 8):
        model.weight.grad, model.bias.grad = torch.randn(2, 3), torch.randn(2)
        optimizer.step()
        trainer.state.global_step = step
        with optimizer.slow_weights():
            slow.append(model.weight.detach().clone())
        fast = model.weight.detach().clone()
        swa.on_step_end(trainer)
        assert torch.equal(model.weight, fast)
    assert not torch.equal(slow[-1], fast)  # (the case: step 7 is inside a cycle of 3, where they differ)
    torch.testing.assert_close(swa.averaged_module().weight, torch.stack(slow).mean(0), atol=1e-6, rtol=0)


# -- 4. GPT-2 and BART give their cache back by default, as Hugging Face's do -------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "bart"])
def test_a_decoding_loop_written_for_hugging_face_gets_the_cache_and_its_logits(family, tmp_path):
    """`out = model(ids); model(next, past_key_values=out.past_key_values)`, Hugging Face's loop: minibert returned no
    cache without use_cache=True (its configs said use_cache=True), so the next call read the new token as position 0
    of a new text, silently. Now the cache comes back as from transformers, and the loop's logits are theirs."""
    import test_bart
    import test_gpt

    from minibert.models.bart import BartForConditionalGeneration
    from minibert.models.gpt import GPT2LMHeadModel

    if family == "gpt2":
        hf, ours = test_gpt.hf_and_ours(tmp_path, "GPT2LMHeadModel", GPT2LMHeadModel, "sdpa")
        ids = torch.randint(1, test_gpt.VOCAB, (2, 6), generator=torch.Generator().manual_seed(0))
        call = {}
    else:
        hf, ours = test_bart.hf_and_ours(tmp_path, "BartForConditionalGeneration", BartForConditionalGeneration)
        source = torch.randint(3, test_bart.VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))
        ids = torch.randint(3, test_bart.VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
        call = {"input_ids": source}
    with torch.no_grad():
        first = {"decoder_input_ids": ids[:, :5]} if family == "bart" else {"input_ids": ids[:, :5]}
        theirs, mine = hf(**call, **first), ours(**call, **first)
        assert theirs.past_key_values is not None and mine.past_key_values is not None
        nxt = {"decoder_input_ids": ids[:, 5:]} if family == "bart" else {"input_ids": ids[:, 5:]}
        theirs = hf(**call, **nxt, past_key_values=theirs.past_key_values)
        mine = ours(**call, **nxt, past_key_values=mine.past_key_values)
    torch.testing.assert_close(mine.logits, theirs.logits, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert ours(**call, **first, use_cache=False).past_key_values is None
    if family == "bart":  # given labels (training), no cache, as Hugging Face's BART
        assert ours(input_ids=source, labels=ids).past_key_values is None
    else:  # nor under gradient checkpointing in training, whose recomputed blocks would make it twice
        ours.gradient_checkpointing_enable()
        ours.train()
        assert ours(ids).past_key_values is None


# -- 5. join_sentences is split_sentences' inverse at an English -> Chinese boundary ---------------------------
@pytest.mark.parametrize("text", ["I said hello. 你好。我很好！", '他說："你好。"我很好。', "One. Two! Three?",
                                  "床前明月光，疑是地上霜。舉頭望明月。", "他說「好。」然後 He left. 再見。"])
def test_joined_sentences_split_again_into_the_same_sentences(text):
    """An English sentence followed by a Chinese one lost the space between them ("I said hello.你好。"), which
    split_sentences then read as one sentence (found by the second mutation pass)."""
    sentences = split_sentences(text)
    assert join_sentences(sentences) == text
    assert split_sentences(join_sentences(sentences)) == sentences


def test_no_space_is_put_after_a_chinese_sentence_that_ends_in_a_closing_quote():
    assert join_sentences(["他說「你好」", "我走了。"]) == "他說「你好」我走了。"  # (found by the review)
    assert join_sentences(['He said "hi."', "Then he left."]) == 'He said "hi." Then he left.'

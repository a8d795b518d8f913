"""What a newcomer met resuming and setting up runs from the README: a resume with another learning rate trained at the
old one, an extended run took a step at learning rate 0, a missing checkpoint was called incomplete, a resume refusal
named a flag never changed, phase-2 flags were ignored, every torchrun process printed the same lines, the Python
Trainer's advice named only the flag, and a changed corpus re-prepared every file unsaid. Each test fails without
its fix."""

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_ddp import free_port
from test_engine import ToyModel, collate, make_args, toy_dataset
from test_pretrain import cli as pretrain_cli  # pretrain.py's main() in this process: (exit code, stderr)

import train
from minibert.data.prepared import prepare_corpus
from minibert.engine import Trainer
from minibert.engine.checkpointing import STATE_FILE, list_checkpoints, resolve_checkpoint
from minibert.pretraining import PretrainingOptions, trained_tokenizer
from minibert.tokenizer import load_tokenizer

ROOT = Path(__file__).parent.parent


def rates(history: list[dict]) -> list[tuple[int, float]]:
    return [(r["step"], r["learning_rate"]) for r in history if "learning_rate" in r]


@pytest.fixture
def run(tmp_path):
    """A finished 4-step run with checkpoints 2 and 4 (learning rate 3e-2, weight decay 0.01)."""
    Trainer(ToyModel(), make_args(tmp_path, max_steps=4, save_steps=2, weight_decay=0.01), toy_dataset(),
            collate).train()
    return tmp_path / "run"


def test_a_resume_with_another_learning_rate_or_optimizer_setting_is_refused_naming_the_flag(run, tmp_path):
    """The checkpoint's optimizer and scheduler state brought back the run's learning rate (its scheduler's base
    rates), weight decay, betas and epsilon: a resume with --learning_rate 5e-2 trained at 3e-2, unsaid."""
    cases = [(dict(learning_rate=5e-2), "--learning_rate: 0.03 then, 0.05 now"),
             (dict(weight_decay=0.3), "--weight_decay: 0.01 then, 0.3 now"),
             (dict(adam_beta2=0.98), "--adam_beta2: 0.999 then, 0.98 now"),
             (dict(lr_scheduler_type="cosine"), "--lr_scheduler_type: linear then, cosine now"),
             (dict(warmup_steps=2), "--warmup_steps: 0 then, 2 now")]
    for overrides, message in cases:
        args = make_args(tmp_path / "b", max_steps=6, resume_from_checkpoint=str(run / "checkpoint-2"),
                         **{"weight_decay": 0.01, **overrides})
        with pytest.raises(ValueError, match=rf"another optimizer or learning-rate schedule \({message}\); .*"
                                             r"Resume with the values of that run \(only --max_steps"):
            Trainer(ToyModel(), args, toy_dataset(), collate).train()
    # a parameter group's own rate (--head_lr, --llrd), with --learning_rate unchanged
    model = ToyModel()
    groups = [{"params": [*model.embed.parameters(), *model.norm.parameters()]},
              {"params": list(model.out.parameters()), "lr": 0.1}]
    args = make_args(tmp_path / "b", max_steps=6, weight_decay=0.01, resume_from_checkpoint=str(run / "checkpoint-2"))
    with pytest.raises(ValueError, match=r"the peak learning rates of the parameter groups .*: \[0.03, 0.03\] then, "
                                         r"\[0.03, 0.1\] now"):
        Trainer(model, args, toy_dataset(), collate, param_groups=groups).train()
    # a pretraining checkpoint is also a model: a new run can start from its weights
    (run / "checkpoint-2" / "config.json").write_text("{}")
    args = make_args(tmp_path / "b", max_steps=6, weight_decay=0.01, learning_rate=5e-2,
                     resume_from_checkpoint=str(run / "checkpoint-2"))
    with pytest.raises(ValueError, match=re.escape(f"its weights: pretrain.py --init_from {run / 'checkpoint-2'}")):
        Trainer(ToyModel(), args, toy_dataset(), collate).train()
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2", "checkpoint-4"]  # a refused resume moved nothing


def test_extending_a_finished_run_follows_the_longer_schedule_from_its_first_new_step(tmp_path, caplog):
    """--max_steps 10 -> 20 on a finished run: the saved optimizer held the old schedule's last rate, 0.0, and the
    scheduler changed it only after step 11, which trained at 0. Extended, the run now steps at the rates of a run
    started with 20 steps."""
    common = dict(logging_steps=1, learning_rate=1e-2, save_steps=10)
    Trainer(ToyModel(), make_args(tmp_path / "a", max_steps=10, **common), toy_dataset(), collate).train()
    straight = Trainer(ToyModel(), make_args(tmp_path / "s", max_steps=20, **common), toy_dataset(), collate).train()
    with caplog.at_level(logging.WARNING, logger="minibert.engine.checkpointing"):
        extended = Trainer(ToyModel(), make_args(tmp_path / "a", max_steps=20, resume_from_checkpoint="last", **common),
                           toy_dataset(), collate).train()
    assert rates(extended.history)[10:] == rates(straight.history)[10:]
    assert rates(extended.history)[10] == (11, pytest.approx(5e-3, rel=1e-12))
    assert "the next step runs at 0.005, where the checkpoint's schedule had 0" in caplog.text


def test_a_missing_checkpoint_is_said_not_to_exist_with_the_runs_checkpoints(tmp_path):
    """A checkpoint --save_total_limit rotated away (or a typo) was "not a complete training checkpoint (it needs
    model_state.pt, ...)", as if it were damaged."""
    Trainer(ToyModel(), make_args(tmp_path, max_steps=6, save_steps=2, save_total_limit=2), toy_dataset(),
            collate).train()
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=rf"--resume_from_checkpoint {re.escape(str(run / 'checkpoint-2'))} does not "
                                         rf"exist \({re.escape(str(run))} "
                                         r"holds checkpoint-4, checkpoint-6\); pass the path of one of those, or "
                                         r"'last'"):
        resolve_checkpoint(str(run / "checkpoint-2"), run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"does not exist \(.* holds no complete checkpoint\); pass the path of a "
                                         r"checkpoint-<step> directory, or drop the flag"):
        resolve_checkpoint(str(tmp_path / "empty" / "checkpoint-9"), tmp_path / "empty")
    # a checkpoint of another run, resumed into an --output_dir of none: 'last' there would find nothing
    with pytest.raises(ValueError) as refused:
        resolve_checkpoint(str(run / "checkpoint-2"), tmp_path / "empty")
    assert "holds checkpoint-4, checkpoint-6); pass the path of one of those" in str(refused.value)
    assert "'last'" not in str(refused.value)


def test_a_resume_with_another_batch_size_names_no_phase2_flag_without_a_second_phase(run, tmp_path):
    """Without a second phase its batch was recorded as phase 1's, and the refusal said "--phase2_batch_size: 8 then,
    4 now" to a user who never passed it. A checkpoint that recorded it still resumes."""
    args = make_args(tmp_path, max_steps=6, weight_decay=0.01, per_device_train_batch_size=4,
                     resume_from_checkpoint=str(run / "checkpoint-2"))
    with pytest.raises(ValueError) as refused:
        Trainer(ToyModel(), args, toy_dataset(), collate).train()
    assert "(--per_device_train_batch_size: 8 then, 4 now)" in str(refused.value)
    assert "phase2" not in str(refused.value)
    # a checkpoint written before: phase2_batch_size recorded, and none of the optimizer's settings
    state_file = run / "checkpoint-2" / STATE_FILE
    state = torch.load(state_file, weights_only=True)
    settings = state["trainer"]["run_settings"]
    state["trainer"]["run_settings"] = {**{k: settings[k] for k in ("per_device_train_batch_size",
                                                                    "gradient_accumulation_steps", "world_size", "seed",
                                                                    "train_examples", "optimizer", "recipe")},
                                        "phase2_batch_size": 8}
    torch.save(state, state_file)
    args = make_args(tmp_path, max_steps=6, weight_decay=0.01, resume_from_checkpoint=str(run / "checkpoint-2"))
    assert Trainer(ToyModel(), args, toy_dataset(), collate).train().global_step == 6


def test_phase2_flags_without_a_second_phase_are_refused(tmp_path, capsys):
    """train.py took --phase2_ratio and --phase2_batch_size (fine-tuning has no second phase), pretrain.py took
    --phase2_ratio without --max_seq_length_phase2, and the engine both: ignored, unsaid."""
    with pytest.raises(ValueError, match=r"--phase2_ratio and --phase2_batch_size set the second phase .* there is "
                                         r"none .* drop --phase2_ratio and --phase2_batch_size"):
        Trainer(ToyModel(), make_args(tmp_path, phase2_ratio=0.5, phase2_batch_size=4), toy_dataset(), collate)
    with pytest.raises(SystemExit):
        train.parse(["--phase2_ratio", "0.5"])
    assert "--phase2_ratio is for pretrain.py's two-phase training (--max_seq_length_phase2); fine-tuning has no " \
           "second phase, so it would be ignored; drop --phase2_ratio" in capsys.readouterr().err
    assert train.parse([])[1].phase2_ratio == 0.1  # the defaults are not "given"
    code, err = pretrain_cli("--phase2_ratio", "0.5", "--output_dir", tmp_path / "pre")
    assert code == 1 and "--phase2_ratio is the share of the steps in the second phase, which " \
                          "--max_seq_length_phase2 turns on; pass that too, or drop --phase2_ratio" in err
    assert not (tmp_path / "pre").exists()  # refused before any work


def test_the_python_trainers_advice_names_the_argument_as_well_as_the_flag(tmp_path):
    """From Python, a metric_for_best_model that eval_fn does not return was to be fixed "with
    --metric_for_best_model", a flag the caller has not got."""
    args = make_args(tmp_path, max_steps=2, metric_for_best_model="accuracy")
    with pytest.raises(ValueError, match=r"with metric_for_best_model \(the flag --metric_for_best_model\) set to one "
                                         r"of them"):
        Trainer(ToyModel(), args, toy_dataset(), collate, eval_fn=lambda model: {"loss": 1.0}).train()


LOGGING_WORKER = """
import logging, os, sys
sys.stderr = open(os.path.join({tmp!r}, "rank" + os.environ["RANK"] + ".log"), "w", buffering=1)
sys.path.insert(0, {root!r})
import pretrain, train

def runs_and_logs(*args, **kwargs):  # what finetune / run_pretraining log, without their work
    log = logging.getLogger("minibert.finetuning")
    log.info("the task line")
    log.warning("a new-weights warning")
    log.error("an error line")
    raise ValueError("stopped")

train.finetune = pretrain.run_pretraining = runs_and_logs
train.main([])
logging.root.handlers.clear()  # each command line sets up logging once per process
pretrain.main(["--output_dir", os.path.join({tmp!r}, "pre")])
"""


def test_under_torchrun_only_the_main_process_logs_below_errors(tmp_path):
    """Every process printed the task line, each new-weights warning and "loaded the best checkpoint": the command
    lines now set the other ranks' logging to errors alone (errors still print everywhere)."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(LOGGING_WORKER.format(tmp=str(tmp_path), root=str(ROOT))))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script)]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    main, other = ((tmp_path / f"rank{rank}.log").read_text() for rank in (0, 1))
    assert main.count("the task line") == 1 and main.count("a new-weights warning") == 2  # train.py's, pretrain.py's
    assert "the task line" not in other and "a new-weights warning" not in other
    assert other.count("an error line") == 2 and "train.py: error: stopped" in other


def test_a_changed_corpus_says_its_tokenizer_is_trained_again_and_how_to_keep_it(tmp_path, caplog):
    """The trained tokenizer is cached under a hash of every file's size and time: one edited file trained another
    tokenizer and prepared every file again for it, unsaid. The advice given, --tokenizer the earlier one,
    prepares the changed file alone."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"work{i}.txt").write_text(f"the king said {i}. the queen answered him.\n\n" * 20)
    options = PretrainingOptions(objective="mlm", corpus=[str(corpus)], vocab_size=120, validation_share=0.0,
                                 data_cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="minibert.pretraining"):
        first = trained_tokenizer(options)
        prepare_corpus([corpus], first, cache_dir=tmp_path / "cache", workers=1)  # the first run's preparation
        trained_tokenizer(options)  # unchanged: the cached one
        (corpus / "work1.txt").write_text("a new scene of the play. the fool speaks.\n\n" * 20)
        assert caplog.text == ""
        trained_tokenizer(options)
    (earlier,) = [d for d in (tmp_path / "cache" / "tokenizers").iterdir() if load_tokenizer(d).vocab_size ==
                  first.vocab_size and load_tokenizer(d).get_vocab() == first.get_vocab()]
    assert (f"the corpus changed since the tokenizer cached in {earlier} was trained on it (changed: work1.txt): a new "
            f"tokenizer is trained, and every file is prepared again for it. To prepare only the changed files, keep "
            f"the earlier tokenizer: pass --tokenizer {earlier}") in caplog.text
    again = prepare_corpus([corpus], load_tokenizer(earlier), cache_dir=tmp_path / "cache", workers=1)
    assert again.prepared_bytes == (corpus / "work1.txt").stat().st_size  # the changed file alone
    caplog.clear()
    other = PretrainingOptions(**{**vars(options), "corpus": [str(corpus / "work0.txt")]})
    with caplog.at_level(logging.WARNING, logger="minibert.pretraining"):
        trained_tokenizer(other)  # another --corpus: nothing to say
    assert caplog.text == ""
    json.loads(next(earlier.glob("minibert_corpus.json")).read_text())  # the record it is told by


def test_a_checkpoint_saved_inside_swa_resumed_without_it_is_refused_by_name(tmp_path):
    """Its scheduler state is SWALR's, and the resumed run's LambdaLR failed inside torch with a bare
    KeyError: 'lr_lambdas'."""
    from test_checkpointing import Crash

    from minibert.finetune.swa import SWA

    args = dict(max_steps=11, save_steps=4, warmup_steps=3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(ToyModel(), make_args(tmp_path, **args), toy_dataset(), collate,
                callbacks=[SWA(0.3, 0.05, 2), Crash(9)]).train()
    with pytest.raises(ValueError, match=r"saved under another learning-rate scheduler than this run's LambdaLR .*"
                                         r"--swa_start\)\. Resume with the flags of the run that saved it"):
        Trainer(ToyModel(), make_args(tmp_path, resume_from_checkpoint="last", **args), toy_dataset(),
                collate).train()

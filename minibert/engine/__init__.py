"""The training engine shared by pretraining (pretrain.py) and fine-tuning (train.py)."""

from minibert.engine.arguments import TrainingArguments
from minibert.engine.optim import build_optimizer
from minibert.engine.schedules import get_scheduler
from minibert.engine.trainer import (
    NonFiniteLossError,
    StoppedBySignal,
    Trainer,
    TrainerState,
    TrainingInterrupted,
    TrainResult,
    stop_message,
    stop_on_signals,
)

__all__ = [
    "NonFiniteLossError",
    "StoppedBySignal",
    "Trainer",
    "TrainResult",
    "TrainerState",
    "TrainingInterrupted",
    "TrainingArguments",
    "build_optimizer",
    "get_scheduler",
    "stop_message",
    "stop_on_signals",
]

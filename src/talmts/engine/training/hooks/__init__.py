"""The parts of training around the step loop, each readable and testable alone (see base.Hook for when they run)."""

from talmts.engine.training.hooks.base import Hook
from talmts.engine.training.hooks.checkpointer import Checkpointer
from talmts.engine.training.hooks.ema import EMAHook
from talmts.engine.training.hooks.logs import LossLog, ProgressBar
from talmts.engine.training.hooks.nan_guard import NaNGuard, NonFiniteLossError
from talmts.engine.training.hooks.preemption import EXIT_STOPPED, STOP_SIGNALS, TrainingStopped
from talmts.engine.training.hooks.validation import Validation
from talmts.engine.training.resume import CheckpointFallbackWarning
from talmts.processes import StopSignals

__all__ = [
    "EXIT_STOPPED",
    "STOP_SIGNALS",
    "CheckpointFallbackWarning",
    "Checkpointer",
    "EMAHook",
    "Hook",
    "LossLog",
    "NaNGuard",
    "NonFiniteLossError",
    "ProgressBar",
    "StopSignals",
    "TrainingStopped",
    "Validation",
]

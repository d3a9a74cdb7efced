"""The parts of training around the step loop, each readable and testable alone (see base.Hook for when they run)."""

from talmts.engine.hooks.base import Hook
from talmts.engine.hooks.checkpoints import Checkpointer, CheckpointFallbackWarning
from talmts.engine.hooks.ema import EMAHook
from talmts.engine.hooks.logs import LossLog, ProgressBar
from talmts.engine.hooks.nan_guard import NaNGuard, NonFiniteLossError
from talmts.engine.hooks.preemption import EXIT_STOPPED, StopSignals, TrainingStopped
from talmts.engine.hooks.validation import Validation

__all__ = [
    "EXIT_STOPPED",
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

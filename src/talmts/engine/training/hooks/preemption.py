"""Stop signals: SIGTERM or SIGUSR1 (what cluster schedulers send before they stop a job) ask training to stop.

The handler only records the request; the checkpoint hook acts on it at the next step boundary, writes a
checkpoint and raises :class:`TrainingStopped`, which ``talmts train`` turns into exit code :data:`EXIT_STOPPED`.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from talmts.errors import TalmtsError

# EX_TEMPFAIL of sysexits.h: "a temporary failure; the user is invited to retry" (here: with --resume)
EXIT_STOPPED = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingStopped(TalmtsError):
    """Training stopped on a signal after writing a checkpoint it resumes from exactly."""

    def __init__(self, signal_name: str, step: int, epoch: int, checkpoint: Path):
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        super().__init__(
            f"stopped by {signal_name} after step {step} (epoch {epoch + 1}); checkpoint {checkpoint} written. "
            f"Continue with the same command and --resume {checkpoint.parent} (or --resume auto)"
        )


class StopSignals:
    """Records SIGTERM/SIGUSR1 while installed; the previous handlers come back on :meth:`restore`."""

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS):
        self.signals = signals
        self.received: str | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # python delivers signals to the main thread only; a training thread cannot be told to stop
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


def ignore_stop_signals() -> None:
    """In DataLoader workers: the stop is the main process's job (a worker killed by SIGTERM would break it)."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)

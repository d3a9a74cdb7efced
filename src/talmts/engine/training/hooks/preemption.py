"""Stop signals: SIGTERM or SIGUSR1 (what cluster schedulers send before they stop a job) ask training to stop.

The handler (talmts.processes.StopSignals on :data:`STOP_SIGNALS`) only records the request; the checkpoint hook
acts on it at the next step boundary, writes a checkpoint and raises :class:`TrainingStopped`, which ``talmts train``
turns into exit code :data:`EXIT_STOPPED`.
"""

from __future__ import annotations

import signal
from pathlib import Path

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


def ignore_stop_signals() -> None:
    """In DataLoader workers: the stop is the main process's job (a worker killed by SIGTERM would break it)."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)

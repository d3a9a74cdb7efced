"""When the run folder's checkpoints are written (which one a run resumes from: training/resume.py).

Written by process 0:
  checkpoint-<epoch>.pt  at every epoch end (after validation); only the newest ``train.keep_checkpoints`` are kept
  step-<step>.pt         every ``train.checkpoint_every_steps`` steps and when a stop signal arrives; only the
                         two newest are kept (the one just written, and one to fall back on)
  last.pt                when the run is done (the step files are then removed)
A run owns its folder from the point it starts at: when it starts (fresh or resumed), step files beyond that point
are removed and later epoch checkpoints, last.pt and best.pt are moved aside (resume.supersede_newer), so the two
step files kept are always this run's newest and ``--resume auto`` never takes a file of an abandoned run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from talmts.engine.checkpoint import save_checkpoint
from talmts.engine.training.hooks.base import Hook, TrainingLoop
from talmts.engine.training.hooks.preemption import TrainingStopped
from talmts.engine.training.resume import epoch_files, step_files, supersede_newer
from talmts.processes import StopSignals

logger = logging.getLogger(__name__)

KEEP_STEP_FILES = 2


class Checkpointer(Hook):
    def __init__(
        self, every_steps: int | None = None, signals: StopSignals | None = None, keep_epochs: int | None = None
    ):
        self.every_steps, self.signals, self.keep_epochs = every_steps, signals, keep_epochs
        self.last: Path | None = None

    def start(self, loop: TrainingLoop) -> None:
        if self.signals is not None:
            self.signals.install()
        loop.ctx.barrier()  # every process has read its checkpoint before process 0 clears what lies beyond it
        if loop.ctx.is_main:
            done = supersede_newer(loop.out, loop.step, loop.epoch, loop.resumed_from)
            if done:
                logger.warning(
                    "%s: this run starts at step %d, so what was written beyond it belongs to another run: %s",
                    loop.out,
                    loop.step,
                    ", ".join(done),
                )

    def after_step(self, loop: TrainingLoop, row: dict[str, float]) -> None:
        stop = self.signals is not None and loop.ctx.any_true(self.signals.received is not None)
        periodic = (
            self.every_steps is not None
            and loop.step % self.every_steps == 0
            and loop.step < loop.total_steps  # last.pt follows
            and loop.epoch_step < loop.steps_per_epoch  # checkpoint-<epoch>.pt follows
        )
        if stop or periodic:
            path = self._save_step(loop)
            if stop:
                loop.ctx.barrier()  # the file is complete before any process exits
                name = (self.signals.received if self.signals else None) or "a signal on another process"
                raise TrainingStopped(name, loop.step, loop.epoch, path)

    def after_epoch(self, loop: TrainingLoop) -> None:
        self.last = self._save(loop, f"checkpoint-{loop.epoch}.pt")
        if loop.ctx.is_main and self.keep_epochs is not None:
            for old in epoch_files(loop.out)[self.keep_epochs :]:  # the new file is whole before older ones go
                old.unlink(missing_ok=True)

    def after_run(self, loop: TrainingLoop) -> None:
        self.last = self._save(loop, "last.pt")
        if loop.ctx.is_main:
            for path, _ in step_files(loop.out):
                path.unlink(missing_ok=True)

    def close(self, loop: TrainingLoop) -> None:
        if self.signals is not None:
            self.signals.restore()

    def _save(self, loop: TrainingLoop, name: str) -> Path:
        path = loop.out / name
        if loop.ctx.is_main:
            save_checkpoint(loop.state(), path)
        return path

    def _save_step(self, loop: TrainingLoop) -> Path:
        path = self._save(loop, f"step-{loop.step}.pt")
        if loop.ctx.is_main:
            older = [p for p, _ in step_files(loop.out) if p != path]
            for old in older[KEEP_STEP_FILES - 1 :]:
                old.unlink(missing_ok=True)
        return path

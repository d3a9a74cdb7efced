"""The run folder's checkpoints: when they are written, and which one a run resumes from.

Written by process 0:
  checkpoint-<epoch>.pt  at every epoch end (after validation)
  step-<step>.pt         every ``train.checkpoint_every_steps`` steps and when a stop signal arrives; only the
                         two newest are kept (the newest, and one to fall back on)
  last.pt                when the run is done (the step files are then removed)
Resuming from a folder takes the newest of checkpoint-<E>.pt (written at step E * steps_per_epoch) and
step-<S>.pt whose checksum holds; a newer one that fails is named in a warning beside the one used.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talmts.engine.checkpoint import CheckpointError, CheckpointMissing, load_checkpoint, save_checkpoint
from talmts.engine.hooks.base import Hook
from talmts.engine.hooks.preemption import StopSignals, TrainingStopped

if TYPE_CHECKING:
    from talmts.engine.train import TrainLoop

KEEP_STEP_FILES = 2


class CheckpointFallbackWarning(UserWarning):
    """The newest checkpoint of a run folder is unusable; an earlier one is used."""


class Checkpointer(Hook):
    def __init__(self, every_steps: int | None = None, signals: StopSignals | None = None):
        self.every_steps, self.signals = every_steps, signals
        self.last: Path | None = None

    def start(self, loop: TrainLoop) -> None:
        if self.signals is not None:
            self.signals.install()

    def after_step(self, loop: TrainLoop, row: dict[str, float]) -> None:
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

    def after_epoch(self, loop: TrainLoop) -> None:
        self.last = self._save(loop, f"checkpoint-{loop.epoch}.pt")

    def after_run(self, loop: TrainLoop) -> None:
        self.last = self._save(loop, "last.pt")
        if loop.ctx.is_main:
            for path, _ in _step_files(loop.out):
                path.unlink(missing_ok=True)

    def close(self, loop: TrainLoop) -> None:
        if self.signals is not None:
            self.signals.restore()

    def _save(self, loop: TrainLoop, name: str) -> Path:
        path = loop.out / name
        if loop.ctx.is_main:
            save_checkpoint(loop.state(), path)
        return path

    def _save_step(self, loop: TrainLoop) -> Path:
        path = self._save(loop, f"step-{loop.step}.pt")
        if loop.ctx.is_main:
            for old, _ in _step_files(loop.out)[KEEP_STEP_FILES:]:
                old.unlink(missing_ok=True)
        return path


def _step_files(out_dir: Path) -> list[tuple[Path, int]]:
    """step-<S>.pt files, newest first."""
    found = []
    for p in Path(out_dir).glob("step-*.pt"):
        tail = p.stem.removeprefix("step-")
        if tail.isdigit():
            found.append((p, int(tail)))
    return sorted(found, key=lambda f: -f[1])


def resume_candidates(out_dir: str | Path, steps_per_epoch: int) -> list[Path]:
    """Resumable checkpoints of a run folder, newest first (by the step each was written at); at one step an
    epoch's checkpoint (written after its validation) comes before a step file."""
    keyed = [(step, 0, p) for p, step in _step_files(Path(out_dir))]
    for p in Path(out_dir).glob("checkpoint-*.pt"):
        tail = p.stem.removeprefix("checkpoint-")
        if tail.isdigit():
            keyed.append((int(tail) * steps_per_epoch, 1, p))
    return [p for *_, p in sorted(keyed, key=lambda k: (-k[0], -k[1]))]


def newest_checkpoint(out_dir: str | Path, steps_per_epoch: int) -> Path | None:
    found = resume_candidates(out_dir, steps_per_epoch)
    return found[0] if found else None


def resume_target(resume: str | Path | None) -> str | Path | None:
    """``resume`` as given, or "auto" when torchrun restarts the workers (TORCHELASTIC_RESTART_COUNT > 0)."""
    if resume is None and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0:
        return "auto"
    return resume


def open_resume(resume: str | Path, out_dir: Path, steps_per_epoch: int) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume from and its contents.

    ``resume``: a checkpoint file; a run folder (its newest good checkpoint); or "auto" (the newest good one in
    ``out_dir``, or None to start afresh when it has none).
    """
    if str(resume) == "auto":
        folder, required = out_dir, False
    elif Path(resume).is_dir():
        folder, required = Path(resume), True
    else:
        return Path(resume), load_checkpoint(resume)
    candidates = resume_candidates(folder, steps_per_epoch)
    failed: list[tuple[Path, CheckpointError]] = []
    for path in candidates:
        try:
            state = load_checkpoint(path)
        except CheckpointError as e:
            failed.append((path, e))
            continue
        if failed:
            bad = ", ".join(str(p) for p, _ in failed)
            warnings.warn(
                CheckpointFallbackWarning(
                    f"newest checkpoint {bad} is unusable ({failed[0][1]}); resuming from the previous good one, {path}"
                ),
                stacklevel=2,
            )
        return path, state
    if failed:
        raise CheckpointError(f"--resume {folder}: no usable checkpoint; the newest: {failed[0][1]}")
    if required:
        raise CheckpointMissing(f"--resume {folder}: no checkpoint-<epoch>.pt or step-<step>.pt in that folder")
    return None

"""Which checkpoint a run resumes from: a named file, the newest good one of a run folder, or "auto".

A run folder holds checkpoint-<epoch>.pt (written at step epoch * steps_per_epoch) and step-<step>.pt files (see
hooks/checkpointer.py). Resuming from a folder takes the newest whose checksum holds; a newer one that fails is
named in a warning beside the one used.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from talmts.engine.checkpoint import CheckpointError, CheckpointMissing, load_checkpoint


class CheckpointFallbackWarning(UserWarning):
    """The newest checkpoint of a run folder is unusable; an earlier one is used."""


def step_files(out_dir: Path) -> list[tuple[Path, int]]:
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
    keyed = [(step, 0, p) for p, step in step_files(Path(out_dir))]
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

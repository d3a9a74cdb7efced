"""Which checkpoint a run resumes from: a named file, the newest good one of a run folder, or "auto"; what a run
owns in its folder once it starts; and which optimisation settings changed since the checkpoint was written.

A run folder holds checkpoint-<epoch>.pt (written at step epoch * steps_per_epoch) and step-<step>.pt files (see
hooks/checkpointer.py). Resuming from a folder takes the newest whose checksum holds; a newer one that fails is
named in a warning beside the one used.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from talmts.engine.checkpoint import CheckpointError, CheckpointMissing, load_checkpoint, read_record

# The train.* settings that shape the update a resumed run makes (with the number of processes, through the lr rule).
OPTIMISATION_KEYS = ("lr", "lr_batch", "lr_scaling", "batch_size", "weight_decay", "backbone_lr_mult", "schedule")
SCHEDULE_KEYS = ("warmup_steps", "epochs", "max_steps")  # where the schedule's shape depends on them


class CheckpointFallbackWarning(UserWarning):
    """The newest checkpoint of a run folder is unusable; an earlier one is used."""


class ResumeSettingsWarning(UserWarning):
    """A run resumes with optimisation settings other than its checkpoint's; the new ones apply."""


def step_files(out_dir: Path) -> list[tuple[Path, int]]:
    """step-<S>.pt files, newest first."""
    found = []
    for p in Path(out_dir).glob("step-*.pt"):
        tail = p.stem.removeprefix("step-")
        if tail.isdigit():
            found.append((p, int(tail)))
    return sorted(found, key=lambda f: -f[1])


def epoch_files(out_dir: str | Path) -> list[Path]:
    """checkpoint-<epoch>.pt files of a run folder, newest epoch first."""
    found = [(p, p.stem.removeprefix("checkpoint-")) for p in Path(out_dir).glob("checkpoint-*.pt")]
    return [p for p, tail in sorted(((p, t) for p, t in found if t.isdigit()), key=lambda f: -int(f[1]))]


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


def changed_settings(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``train.KEY OLD -> NEW`` for each optimisation setting of ``now`` (a config's ``train`` section as a dict)
    that differs from ``saved`` (the checkpoint's); the schedule's length and warm-up count where they change the lr
    (a cosine schedule, a warm-up still running)."""
    keys = list(OPTIMISATION_KEYS)
    if "cosine" in (saved.get("schedule"), now.get("schedule")):
        keys += SCHEDULE_KEYS
    elif saved.get("warmup_steps") != now.get("warmup_steps"):
        keys.append("warmup_steps")
    return [f"train.{k} {saved[k]!r} -> {now[k]!r}" for k in keys if k in saved and k in now and saved[k] != now[k]]


def supersede_newer(out_dir: Path, step: int, epoch: int, source: Path | None) -> list[str]:
    """Clear what a run folder holds from beyond the point a run starts at (``step``, ``epoch``), so that a later
    ``--resume auto`` cannot take a checkpoint of an abandoned run: step-<S>.pt with S > step are removed (they are
    transient by design); checkpoint-<E>.pt with E > epoch, and last.pt or best.pt written after ``step`` (by their
    record), move into ``superseded-at-step-<step>/`` (``-2``, ``-3``, ... when taken). ``source``, the file resumed
    from, stays. Returns what it did, one phrase per file."""
    done: list[str] = []
    for path, s in step_files(out_dir):
        if s > step:
            path.unlink(missing_ok=True)
            done.append(f"removed {path.name}")
    later = [p for p in out_dir.glob("checkpoint-*.pt") if _number(p, "checkpoint-", epoch) > epoch]
    for name in ("last.pt", "best.pt"):
        path = out_dir / name
        if path.is_file() and (source is None or path.resolve() != source.resolve()) and _written_at(path) > step:
            later.append(path)
    if later:
        aside = _new_folder(out_dir / f"superseded-at-step-{step}")
        for path in sorted(later):
            path.replace(aside / path.name)
            done.append(f"moved {path.name} to {aside.name}/")
    return done


def _new_folder(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ... when taken (a run rewound to the same step twice): files an earlier
    rewind moved aside are never overwritten."""
    candidate, n = path, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}-{n}")


def _number(path: Path, prefix: str, default: int) -> int:
    tail = path.stem.removeprefix(prefix)
    return int(tail) if tail.isdigit() else default


def _written_at(path: Path) -> int:
    """The step a checkpoint was written at, by its record; -1 (never newer) when it has none or cannot be read."""
    try:
        record = read_record(path)
    except CheckpointError:
        return -1
    step = record.get("step") if record else None
    return step if isinstance(step, int) else -1

"""What a run reports as it goes: the per-step loss log (JSON, CSV, curves), TensorBoard scalars, a progress bar."""

from __future__ import annotations

import csv
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from talmts.engine.training.hooks.base import Hook, TrainingLoop
from talmts.fileio import atomic_open, atomic_write_json
from talmts.progress import progress_bar


class LossLog(Hook):
    """Keeps one row a step (resumed runs continue the same list); only process 0 writes files.

    losses.json / losses.csv are rewritten at every epoch end (to follow a long run) and at the end, with
    loss_curves.png; TensorBoard gets the losses and lr every ``log_every`` steps (and at step 1).
    """

    name, legacy_keys = "loss_log", ("history",)

    def __init__(self, out_dir: Path, modality: str, log_every: int, is_main: bool):
        self.out, self.modality, self.log_every, self.is_main = out_dir, modality, log_every, is_main
        self.history: list[dict[str, float]] = []
        self.tensorboard: ScalarLogger | None = None

    def start(self, loop: TrainingLoop) -> None:
        self.tensorboard = ScalarLogger(self.out / "tensorboard" if self.is_main else None)

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.tensorboard is not None:
            self.tensorboard.scalars(prefix, values, step)

    def after_step(self, loop: TrainingLoop, row: dict[str, float]) -> None:
        self.history.append(row)
        if self.is_main and (loop.step % self.log_every == 0 or loop.step == 1):
            self.scalars("train", {k: v for k, v in row.items() if k not in ("step", "epoch", "seconds")}, loop.step)

    def after_epoch(self, loop: TrainingLoop) -> None:
        if self.is_main:
            write_loss_log(self.history, self.out)

    def close(self, loop: TrainingLoop) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.is_main and self.history:
            stopping = sys.exc_info()[1]
            try:
                write_loss_log(self.history, self.out)
                from talmts.viz import plot_loss_curves

                plot_loss_curves({self.modality: self.history}, self.out / "loss_curves.png")
            except OSError:
                if stopping is None:
                    raise  # else the error that stopped the run (e.g. a full disk) is the one to report

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))


class ProgressBar(Hook):
    """A progress bar per epoch with the loss and clips per second (tqdm on a terminal, lines in a log)."""

    def __init__(self, clips_per_step: int):
        self.clips_per_step = clips_per_step
        self.bar: Any = None

    def after_step(self, loop: TrainingLoop, row: dict[str, float]) -> None:
        if self.bar is None:
            left = min(loop.steps_per_epoch - loop.epoch_step, loop.total_steps - loop.step) + 1
            desc = f"epoch {loop.epoch + 1}/{loop.cfg.train.epochs}"
            self.bar = progress_bar(total=left, desc=desc, unit="step", leave=False)
        clips = self.clips_per_step / max(row["seconds"], 1e-9)
        self.bar.set_postfix(loss=f"{row['total']:.3f}", clips_s=f"{clips:.2f}")
        self.bar.update(1)

    def after_epoch(self, loop: TrainingLoop) -> None:
        self.close(loop)

    def close(self, loop: TrainingLoop) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def write_loss_log(history: Sequence[Mapping[str, float]], out_dir: str | Path, stem: str = "losses") -> Path:
    """Per-step losses as ``<stem>.json`` (a list of dicts) and ``<stem>.csv`` (one row a step)."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / f"{stem}.json", list(history))
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with atomic_open(out_dir / f"{stem}.csv", "w") as f:
        w = csv.DictWriter(f, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(history)
    return out_dir / f"{stem}.json"


class ScalarLogger:
    """TensorBoard scalars when tensorboard is installed; a silent no-op (with one warning) otherwise.

    Best-effort: when its files cannot be written (a full disk), one warning names the folder and the scalars stop;
    training goes on (its checkpoints and loss logs are written through talmts.fileio and stop it there)."""

    def __init__(self, log_dir: str | Path | None):
        self.writer = None
        self.log_dir = log_dir
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a declared dependency, but a stripped install may lack it
            warnings.warn("tensorboard is not installed: no TensorBoard scalars are written", stacklevel=2)
            return
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            try:
                for k, v in values.items():
                    self.writer.add_scalar(f"{prefix}/{k}", v, step)
            except OSError as e:  # raised here for a failure of TensorBoard's writer thread
                self._give_up(e)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError as e:
                self._give_up(e)

    def _give_up(self, e: OSError) -> None:
        reason = os.strerror(e.errno) if e.errno else str(e)
        warnings.warn(f"TensorBoard scalars stop: cannot write {self.log_dir}: {reason}", stacklevel=3)
        self.writer = None

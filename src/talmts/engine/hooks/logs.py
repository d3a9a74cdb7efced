"""What a run reports as it goes: the per-step loss log (JSON, CSV, curves), TensorBoard scalars, a progress bar."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talmts.engine.hooks.base import Hook
from talmts.engine.report import ScalarLogger, write_loss_log
from talmts.progress import progress_bar

if TYPE_CHECKING:
    from talmts.engine.train import TrainLoop


class LossLog(Hook):
    """Keeps one row a step (resumed runs continue the same list); only process 0 writes files.

    losses.json / losses.csv are rewritten at every epoch end (to follow a long run) and at the end, with
    loss_curves.png; TensorBoard gets the losses and lr every ``log_every`` steps (and at step 1).
    """

    def __init__(self, out_dir: Path, modality: str, log_every: int, is_main: bool):
        self.out, self.modality, self.log_every, self.is_main = out_dir, modality, log_every, is_main
        self.history: list[dict[str, float]] = []
        self.tensorboard: ScalarLogger | None = None

    def start(self, loop: TrainLoop) -> None:
        self.tensorboard = ScalarLogger(self.out / "tensorboard" if self.is_main else None)

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.tensorboard is not None:
            self.tensorboard.scalars(prefix, values, step)

    def after_step(self, loop: TrainLoop, row: dict[str, float]) -> None:
        self.history.append(row)
        if self.is_main and (loop.step % self.log_every == 0 or loop.step == 1):
            self.scalars("train", {k: v for k, v in row.items() if k not in ("step", "epoch", "seconds")}, loop.step)

    def after_epoch(self, loop: TrainLoop) -> None:
        if self.is_main:
            write_loss_log(self.history, self.out)

    def close(self, loop: TrainLoop) -> None:
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
        self.history = list(state["history"])


class ProgressBar(Hook):
    """A progress bar per epoch with the loss and clips per second (tqdm on a terminal, lines in a log)."""

    def __init__(self, clips_per_step: int):
        self.clips_per_step = clips_per_step
        self.bar: Any = None

    def after_step(self, loop: TrainLoop, row: dict[str, float]) -> None:
        if self.bar is None:
            left = min(loop.steps_per_epoch - loop.epoch_step, loop.total_steps - loop.step) + 1
            desc = f"epoch {loop.epoch + 1}/{loop.cfg.train.epochs}"
            self.bar = progress_bar(total=left, desc=desc, unit="step", leave=False)
        clips = self.clips_per_step / max(row["seconds"], 1e-9)
        self.bar.set_postfix(loss=f"{row['total']:.3f}", clips_s=f"{clips:.2f}")
        self.bar.update(1)

    def after_epoch(self, loop: TrainLoop) -> None:
        self.close(loop)

    def close(self, loop: TrainLoop) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

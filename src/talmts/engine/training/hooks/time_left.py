"""A running estimate of the time a training job has left, logged after every epoch.

The job may have spent time before the loop (feature extraction: ``spent_before``); what is left is the remaining
epochs at the mean measured epoch time (validation included, as it runs inside the epoch's end) plus
``after_s`` (work after the loop, e.g. writing the full-network checkpoints).
"""

from __future__ import annotations

import logging
import time

from talmts.engine.training.hooks.base import Hook, TrainingLoop
from talmts.progress import readable_duration

logger = logging.getLogger(__name__)


class TimeLeft(Hook):
    def __init__(self, spent_before: float = 0.0, after_s: float = 0.0) -> None:
        self.spent_before, self.after_s = spent_before, after_s
        self.started: float | None = None
        self.first_epoch = 0

    def start(self, loop: TrainingLoop) -> None:
        self.started, self.first_epoch = time.perf_counter(), loop.epoch

    def after_epoch(self, loop: TrainingLoop) -> None:
        if self.started is None or not loop.ctx.is_main:
            return
        elapsed = time.perf_counter() - self.started
        done = loop.epoch - self.first_epoch
        epochs = min(loop.cfg.train.epochs, -(-loop.total_steps // loop.steps_per_epoch))
        left = (epochs - loop.epoch) * elapsed / max(done, 1) + self.after_s
        logger.info(
            "epoch %d/%d: %.0f s per epoch; about %s left (%s spent)",
            loop.epoch,
            epochs,
            elapsed / max(done, 1),
            readable_duration(left),
            readable_duration(self.spent_before + elapsed),
        )

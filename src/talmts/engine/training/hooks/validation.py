"""Held-out evaluation every ``train.eval_every`` epochs, and ``best.pt`` for the best score so far.

The (EMA) model is evaluated on data.val_subset, a held-out split (the config refuses the test split), by
process 0; the scores go to validation.json and TensorBoard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from torch import nn

from talmts.engine.checkpoint import plain, save_checkpoint
from talmts.engine.training.hooks.base import Hook, TrainingLoop
from talmts.engine.training.hooks.logs import LossLog
from talmts.fileio import atomic_write_json

log = logging.getLogger(__name__)

Validate = Callable[[nn.Module, Any, Any], dict[str, Any]]  # (model, Config, ClassMap) -> metrics


class Validation(Hook):
    name, legacy_keys = "validation", ("validation", "best")

    def __init__(self, validate: Validate, eval_model: Callable[[], nn.Module], log: LossLog | None = None):
        self.validate, self.eval_model, self.log = validate, eval_model, log
        self.scores: list[dict[str, Any]] = []
        self.best: float | None = None

    def after_epoch(self, loop: TrainingLoop) -> None:
        cfg = loop.cfg
        if cfg.data.val_subset is None or loop.epoch % max(cfg.train.eval_every, 1):
            return
        if loop.ctx.is_main:
            model = self.eval_model()
            was_training = model.training
            model.eval()
            metrics = plain(self.validate(model, cfg, loop.classes), "validation")
            model.train(was_training)
            metrics = {"epoch": loop.epoch, "step": loop.step, **metrics}
            self.scores.append(metrics)
            atomic_write_json(loop.out / "validation.json", self.scores)
            if self.log is not None:
                self.log.scalars("val", {"average_mAP": metrics["average_mAP"]}, loop.step)
            log.info("epoch %d: %s average mAP %.4f", loop.epoch, cfg.data.val_subset, metrics["average_mAP"])
            if self.best is None or metrics["average_mAP"] > self.best:
                self.best = metrics["average_mAP"]
                save_checkpoint(loop.state(), loop.out / "best.pt")
        loop.ctx.barrier()

    def state_dict(self) -> dict[str, Any]:
        return {"validation": self.scores, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores, self.best = list(state.get("validation", [])), state.get("best")

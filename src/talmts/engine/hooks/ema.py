"""The EMA weights as a hook: updated after every optimiser step, saved and resumed with the checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from talmts.engine.ema import ModelEMA
from talmts.engine.hooks.base import Hook

if TYPE_CHECKING:
    from torch import nn

    from talmts.engine.train import TrainLoop


class EMAHook(Hook):
    def __init__(self, model: nn.Module, decay: float):
        self.ema = ModelEMA(model, decay)

    @property
    def module(self) -> nn.Module:
        return self.ema.module

    def after_step(self, loop: TrainLoop, row: dict[str, float]) -> None:
        self.ema.update(loop.model)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("ema"):
            self.ema.load_state_dict(state["ema"])

"""Exponential moving average of the weights (evaluated instead of the raw weights when enabled), as a hook: updated
after every optimiser step, saved and resumed with the checkpoint."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from talmts.engine.training.hooks.base import Hook, TrainingLoop


class ModelEMA:
    """Keeps ``ema = decay * ema + (1 - decay) * weights`` after every optimiser step.

    Floating-point parameters and buffers are averaged; integer buffers (counters) are copied. The average
    starts from the model's initial weights; ``decay`` is warmed up as min(decay, (1 + n) / (10 + n)) so the
    first steps are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema={decay}: the EMA decay must lie in (0, 1), e.g. 0.999")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        src = model.state_dict()
        for name, value in self.module.state_dict().items():
            new = src[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(new.to(value.dtype), alpha=1.0 - d)
            else:
                value.copy_(new)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.updates = state["updates"]
        self.module.load_state_dict(state["weights"])


class EMAHook(Hook):
    name = "ema"

    def __init__(self, model: nn.Module, decay: float):
        self.ema = ModelEMA(model, decay)

    @property
    def module(self) -> nn.Module:
        return self.ema.module

    def after_step(self, loop: TrainingLoop, row: dict[str, float]) -> None:
        self.ema.update(loop.model)

    def state_dict(self) -> dict[str, Any]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.ema.load_state_dict(state)

    def legacy_state(self, flat: dict[str, Any]) -> dict[str, Any]:
        return flat.get("ema") or {}

"""What a training hook is: a part of training the step loop calls at fixed points, with state of its own.

The loop (engine/training/loop.py) calls, in the order the hooks were given:
  start(loop)                  once, after a resume and before the first step
  before_update(loop, losses)  every step, after the forward pass and before any weight changes
  after_step(loop, row)        every step, after the update and the step counters (``row``: the logged values)
  after_epoch(loop)            after the last step of an epoch (``loop.epoch`` already counts it)
  after_run(loop)              once, when the last step is done
  close(loop)                  always, last (also after an error), in reverse order
A hook sees the loop through :class:`TrainingLoop`, the few attributes hooks read. A hook that keeps state (a loss
log, an average of weights) names it with ``name``: its ``state_dict()`` goes into every checkpoint under
``hooks/<name>``, apart from the loop's own entries and every other hook's, and comes back through
``load_state_dict`` on resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from talmts.config import Config
    from talmts.engine.distributed import DistContext
    from talmts.schema import ClassMap


class TrainingLoop(Protocol):
    """What a hook may read of the step loop."""

    cfg: Config
    ctx: DistContext
    out: Path  # the run folder
    model: nn.Module
    classes: ClassMap
    epoch: int  # epochs completed
    step: int  # optimiser steps completed
    epoch_step: int  # steps done inside the current epoch
    steps_per_epoch: int
    total_steps: int
    resumed_from: Path | None  # the checkpoint the run started from (None: a fresh start)

    def state(self) -> dict[str, Any]:
        """Everything a checkpoint holds (the loop's entries and every hook's)."""
        ...


class Hook:
    name: str = ""  # the namespace of this hook's state in a checkpoint; "" for a hook without state
    legacy_keys: tuple[str, ...] = ()  # where checkpoints of talmts 0.1 kept that state (flat, beside the loop's)

    def start(self, loop: TrainingLoop) -> None:
        pass

    def before_update(self, loop: TrainingLoop, losses: dict[str, torch.Tensor]) -> None:
        pass

    def after_step(self, loop: TrainingLoop, row: dict[str, float]) -> None:
        pass

    def after_epoch(self, loop: TrainingLoop) -> None:
        pass

    def after_run(self, loop: TrainingLoop) -> None:
        pass

    def close(self, loop: TrainingLoop) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def legacy_state(self, flat: dict[str, Any]) -> dict[str, Any]:
        """This hook's state out of a checkpoint written before hooks had namespaces."""
        return {k: flat[k] for k in self.legacy_keys if k in flat}

"""What a training hook is: a part of training the step loop calls at fixed points, with state of its own.

The loop (engine/training/loop.py) calls, in the order the hooks were given:
  start(loop)                  once, after a resume and before the first step
  before_update(loop, losses)  every step, after the forward pass and before any weight changes
  after_step(loop, row)        every step, after the update and the step counters (``row``: the logged values)
  after_epoch(loop)            after the last step of an epoch (``loop.epoch`` already counts it)
  after_run(loop)              once, when the last step is done
  close(loop)                  always, last (also after an error), in reverse order
A hook's ``state_dict()`` entries go into every checkpoint beside the loop's own and come back through
``load_state_dict`` on resume, so a hook that keeps state (a loss log, an average of weights) resumes exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from talmts.engine.training.loop import TrainLoop


class Hook:
    def start(self, loop: TrainLoop) -> None:
        pass

    def before_update(self, loop: TrainLoop, losses: dict[str, torch.Tensor]) -> None:
        pass

    def after_step(self, loop: TrainLoop, row: dict[str, float]) -> None:
        pass

    def after_epoch(self, loop: TrainLoop) -> None:
        pass

    def after_run(self, loop: TrainLoop) -> None:
        pass

    def close(self, loop: TrainLoop) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

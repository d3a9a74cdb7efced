"""Stop on a NaN or Inf loss before the bad update touches any weight or file."""

from __future__ import annotations

import torch

from talmts.engine.training.hooks.base import Hook, TrainingLoop
from talmts.errors import TalmtsError


class NonFiniteLossError(TalmtsError, RuntimeError):
    """A loss term became NaN or Inf; training stopped before the bad update touched any weight or file."""


class NaNGuard(Hook):
    def before_update(self, loop: TrainingLoop, losses: dict[str, torch.Tensor]) -> None:
        bad = [k for k, v in losses.items() if not bool(torch.isfinite(v).all())]
        # every process learns whether any one saw a bad value, so all stop together and none hangs in DDP
        if loop.ctx.all_true(not bad):
            return
        from talmts.engine.training.resume import newest_checkpoint

        done = newest_checkpoint(loop.out, loop.steps_per_epoch)
        where = f"the last good checkpoint {done} is intact" if done else "no checkpoint had been written yet"
        what = ", ".join(f"{k}={float(losses[k].detach())}" for k in bad) if bad else "on another process"
        raise NonFiniteLossError(
            f"non-finite loss at step {loop.step + 1} (epoch {loop.epoch + 1}): {what}; training stopped "
            f"before this update and {where}. Try a lower train.lr, train.grad_clip, or check the data."
        )

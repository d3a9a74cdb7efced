"""The fast GPU inference path (``talmts eval/detect --fast``): the :data:`~talmts.models.levers.FAST` levers,
run by :class:`~talmts.models.levers.LeverRunner`, with every batch padded to the inference batch size."""

from __future__ import annotations

from torch import nn

from talmts.models.levers import FAST, LeverRunner


def FastForward(model: nn.Module, batch_size: int) -> LeverRunner:  # the name engine/infer.py calls
    """``clip [B, C, T, F, F] -> DetectorOutput`` through the fast path; B <= ``batch_size`` is padded to it."""
    return LeverRunner(model, FAST, batch_size)

"""What the network returns: the one contract between models, losses and post-processing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch


@dataclass
class DetectorOutput:
    """Raw (pre-activation) outputs of one TAL-MTS stream for a batch of clips.

    K is the number of anchor positions over all pyramid levels (126 for T=256), C the number of action classes;
    class index 0 is background, so class tensors have C + 1 entries.
    """

    loc: torch.Tensor  # [B, K, 2] coarse distances (d_start, d_end) from each anchor, in clip frames, >= 0
    conf: torch.Tensor  # [B, K, C+1] coarse class logits
    prop_loc: torch.Tensor  # [B, K, 2] refined offsets, in units of half the coarse width (eq. 13)
    prop_conf: torch.Tensor  # [B, K, C+1] refined class logits
    quality: torch.Tensor  # [B, K] quality logit (epsilon in eq. 12-13)
    anchors: torch.Tensor  # [K] anchor centres in clip frames: (c + 0.5) * T / t_l for position c of level l
    level_sizes: tuple[int, ...]  # t_l per level, in order; sums to K
    clip_frames: int  # T

    def detach(self) -> DetectorOutput:
        return self.map(lambda t: t.detach())

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> DetectorOutput:
        """Apply ``fn`` to every tensor field (not to anchors)."""
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = fn(v) if isinstance(v, torch.Tensor) and f.name != "anchors" else v
        return DetectorOutput(**kw)

    @staticmethod
    def average(outputs: list[DetectorOutput]) -> DetectorOutput:
        """Average raw outputs of several streams (AFSD's two-stream fusion: before softmax and decoding)."""
        first = outputs[0]
        kw = {}
        for f in fields(first):
            vals = [getattr(o, f.name) for o in outputs]
            if isinstance(vals[0], torch.Tensor) and f.name != "anchors":
                kw[f.name] = torch.stack(vals).mean(0)
            else:
                kw[f.name] = vals[0]
        return DetectorOutput(**kw)

"""Training targets: which anchors are positive, for which ground truth, and what they should regress to.

Everything is in clip frames. A ground truth is a row ``(start, end, class_index)`` with class_index in 1..C;
an anchor is a point (its centre) in the clip. Coarse targets follow AFSD (docs/DESIGN.md, "Losses"):
an anchor is positive for the shortest ground truth whose span contains it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from talmts.geometry import distance_iou


@dataclass
class CoarseTargets:
    labels: torch.Tensor  # [K] long, 0 = background
    loc: torch.Tensor  # [K, 2] (left, right) distances to the assigned ground truth; 0 for background
    gt_index: torch.Tensor  # [K] long, row of the assigned ground truth, -1 for background


@dataclass
class RefinedTargets:
    labels: torch.Tensor  # [K] long: the coarse label where the coarse tIoU is high enough, else 0
    offsets: torch.Tensor  # [K, 2] (delta_s, delta_e) in units of half the coarse width
    coarse_iou: torch.Tensor  # [K] tIoU of the coarse prediction with its coarse target (0 for background)


def anchor_levels(level_sizes: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """Pyramid level of each anchor: ``level_sizes (t_0, t_1, ...)`` -> ``[K]`` long."""
    sizes = torch.as_tensor(list(level_sizes), device=device)
    return torch.repeat_interleave(torch.arange(len(sizes), device=device), sizes)


def check_targets(gt: torch.Tensor, num_classes: int, clip: int | None = None) -> None:
    """Raise ValueError naming the clip and row when a ground-truth tensor is malformed."""
    where = f"targets[{clip}]" if clip is not None else "targets"
    if gt.ndim != 2 or gt.shape[1] != 3:
        raise ValueError(
            f"{where}: expected a [M, 3] tensor of (start_frame, end_frame, class_index), got {tuple(gt.shape)}"
        )
    if gt.numel() == 0:
        return
    bad = (gt[:, 1] < gt[:, 0]).nonzero()
    if len(bad):
        r = int(bad[0])
        raise ValueError(f"{where}, row {r}: end {float(gt[r, 1])} is before start {float(gt[r, 0])}")
    cls = gt[:, 2]
    bad = ((cls < 1) | (cls > num_classes) | (cls != cls.round())).nonzero()
    if len(bad):
        r = int(bad[0])
        raise ValueError(
            f"{where}, row {r}: class_index {float(cls[r])} is not an action class 1..{num_classes} "
            "(0 is background and never a ground truth)"
        )


def assign_coarse(
    anchors: torch.Tensor,
    gt: torch.Tensor,
    levels: torch.Tensor | None = None,
    ranges: Sequence[Sequence[float]] | None = None,
) -> CoarseTargets:
    """Positive anchors and their (left, right) targets for one clip.

    anchors [K] (frames), gt [M, 3]. With ``ranges`` (one ``(lo, hi)`` per level, given ``levels [K]``) an anchor of
    level l only takes a ground truth whose max(left, right) lies in (lo, hi], as AFSD's ActivityNet variant.
    Ties in length go to the first ground truth.
    """
    k = anchors.shape[0]
    if gt.shape[0] == 0:
        zeros = torch.zeros(k, dtype=torch.long, device=anchors.device)
        return CoarseTargets(zeros, anchors.new_zeros(k, 2), zeros - 1)
    a = anchors.to(gt.dtype)[:, None]  # [K, 1]
    left = a - gt[None, :, 0]  # [K, M]
    right = gt[None, :, 1] - a  # [K, M]
    inside = (left >= 0) & (right >= 0)
    if ranges is not None:
        if levels is None:
            raise ValueError("assign_coarse: ranges need the level of every anchor (levels)")
        bounds = torch.as_tensor(ranges, dtype=gt.dtype, device=gt.device)[levels]  # [K, 2]
        reach = torch.maximum(left, right)
        inside &= (reach > bounds[:, :1]) & (reach <= bounds[:, 1:])
    length = torch.where(inside, left + right, torch.full_like(left, float("inf")))
    best_len, best = length.min(dim=1)  # first minimum on ties
    pos = torch.isfinite(best_len)
    labels = torch.where(pos, gt[best, 2].round().long(), torch.zeros_like(best))
    loc = torch.stack([left.gather(1, best[:, None])[:, 0], right.gather(1, best[:, None])[:, 0]], dim=-1)
    loc = torch.where(pos[:, None], loc, torch.zeros_like(loc))
    return CoarseTargets(labels, loc, torch.where(pos, best, torch.full_like(best, -1)))


def refine_targets(
    coarse_pred: torch.Tensor,
    coarse: CoarseTargets,
    iou_thresh: float,
    mode: str = "fixed",
) -> RefinedTargets:
    """Refined positives and offset targets from the (detached) coarse predictions ``[K, 2]`` of one clip.

    A coarse positive stays a refined positive when its coarse tIoU (distance form: both share the anchor) is
    >= ``iou_thresh``; ``mode="min_max"`` lowers the threshold to the best coarse tIoU of the clip when that is
    smaller (AFSD-ANet), so every clip with a coarse positive keeps at least one refined positive.
    Offsets: delta = (target - coarse) / (0.5 * coarse width), the quantity decoded by eq. 13.
    """
    pred = coarse_pred.detach().to(coarse.loc.dtype)
    pos = coarse.labels > 0
    iou = torch.where(
        pos, distance_iou(pred, coarse.loc), torch.zeros(pred.shape[0], dtype=pred.dtype, device=pred.device)
    )
    thresh = torch.as_tensor(iou_thresh, dtype=iou.dtype, device=iou.device)
    if mode == "min_max":
        if bool(pos.any()):
            thresh = torch.minimum(thresh, iou[pos].max())
    elif mode != "fixed":
        raise ValueError(f"loss.refined_iou_mode={mode!r}: choose 'fixed' or 'min_max'")
    labels = torch.where(pos & (iou >= thresh), coarse.labels, torch.zeros_like(coarse.labels))
    half_width = (0.5 * pred.sum(-1, keepdim=True)).clamp(min=1e-6)  # [K, 1]; > 0 wherever tIoU > 0
    offsets = (coarse.loc - pred) / half_width
    return RefinedTargets(labels, offsets, iou)

"""Segment geometry used by losses, post-processing and evaluation alike: one definition of tIoU, and the official
evaluator's variant that scoring and its diagnosis both use (``official_tiou``).

Two encodings appear in the project:
- boundary form: ``[..., 2]`` arrays of ``(start, end)``;
- distance form: ``[..., 2]`` arrays of ``(d_start, d_end)`` measured from a shared anchor point, with
  ``start = anchor - d_start`` and ``end = anchor + d_end`` (AFSD's convention, see docs/DESIGN.md).

The functions accept numpy arrays or torch tensors and return the same kind.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor


def _is_torch(x: Array) -> bool:
    # numpy arrays and numpy scalars have no ``clamp``; torch tensors do. Avoids importing torch for numpy users.
    return hasattr(x, "clamp")


def _lib(x: Array) -> Any:
    return __import__("torch") if _is_torch(x) else np


def _maximum(a: Array, b: Array) -> Array:
    return _lib(a).maximum(a, b)


def _minimum(a: Array, b: Array) -> Array:
    return _lib(a).minimum(a, b)


def _clip_min(x: Array, lo: float) -> Array:
    return x.clamp(min=lo) if _is_torch(x) else np.clip(x, lo, None)


def pairwise_tiou(a: Array, b: Array) -> Array:
    """tIoU of every segment in ``a [N, 2]`` with every segment in ``b [M, 2]`` -> ``[N, M]``.

    A pair whose union has zero length (two identical points) has tIoU 0.
    """
    a_s, a_e = a[:, 0:1], a[:, 1:2]
    b_s, b_e = b[None, :, 0], b[None, :, 1]
    inter = _clip_min(_minimum(a_e, b_e) - _maximum(a_s, b_s), 0.0)
    union = (a_e - a_s) + (b_e - b_s) - inter
    return _safe_div(inter, union)


def official_tiou(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``[D, 2]`` x ``[G, 2]`` -> ``[D, G]`` tIoU as ActivityNet's ``segment_iou`` computes it, for scoring: the
    intersection clipped at 0 over the sum of the two (signed) lengths minus the intersection, with no guard.

    Only degenerate segments differ from :func:`pairwise_tiou`. A zero union gives 0/0 there; the NaN sorts first in
    the official descending-tIoU loop and fails every ``tIoU < threshold`` test, so the pair matches at every
    threshold, ahead of any real overlap: +inf here reproduces that (a point against the same point, or a detection
    with its end before its start exactly as long as the ground truth). A negative union (an inverted detection
    longer than the ground truth) gives -0.0 there, which matches nothing: 0 here.
    """
    inter = np.clip(np.minimum(det[:, None, 1], gt[None, :, 1]) - np.maximum(det[:, None, 0], gt[None, :, 0]), 0, None)
    union = (det[:, None, 1] - det[:, None, 0]) + (gt[None, :, 1] - gt[None, :, 0]) - inter
    return _official_ratio(inter, union)


def official_tiou_rows(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Row-wise :func:`official_tiou`: ``[N, 2]`` with ``[N, 2]`` -> ``[N]``."""
    inter = np.clip(np.minimum(det[:, 1], gt[:, 1]) - np.maximum(det[:, 0], gt[:, 0]), 0, None)
    union = (det[:, 1] - det[:, 0]) + (gt[:, 1] - gt[:, 0]) - inter
    return _official_ratio(inter, union)


def _official_ratio(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        tiou = inter / union
    tiou[np.isnan(tiou)] = np.inf  # 0/0: a match at every threshold, as the official NaN
    tiou[union < 0] = 0.0  # 0 / negative: the official -0.0, which matches nothing
    return tiou


def elementwise_tiou(a: Array, b: Array) -> Array:
    """tIoU of matching rows: ``a [..., 2]`` with ``b [..., 2]`` -> ``[...]``."""
    inter = _clip_min(_minimum(a[..., 1], b[..., 1]) - _maximum(a[..., 0], b[..., 0]), 0.0)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    return _safe_div(inter, union)


def distance_iou(pred: Array, target: Array) -> Array:
    """IoU of two segments given as distances from the same anchor: ``[..., 2]`` -> ``[...]``.

    Both segments contain the anchor (distances are >= 0), so the intersection is the sum of the smaller distances.
    """
    inter = _minimum(pred[..., 0], target[..., 0]) + _minimum(pred[..., 1], target[..., 1])
    union = pred.sum(-1) + target.sum(-1) - inter
    return _safe_div(inter, union)


def distance_giou(pred: Array, target: Array) -> Array:
    """Generalised IoU (Rezatofighi et al.) of two anchored segments in distance form: ``[..., 2]`` -> ``[...]``."""
    inter = _minimum(pred[..., 0], target[..., 0]) + _minimum(pred[..., 1], target[..., 1])
    union = pred.sum(-1) + target.sum(-1) - inter
    enclose = _maximum(pred[..., 0], target[..., 0]) + _maximum(pred[..., 1], target[..., 1])
    iou = _safe_div(inter, union)
    return iou - _safe_div(enclose - union, enclose)


def distances_to_segments(anchor: Array, dist: Array) -> Array:
    """Distance form -> boundary form: ``anchor [...]`` and ``dist [..., 2]`` -> ``[..., 2]``."""
    start = anchor - dist[..., 0]
    end = anchor + dist[..., 1]
    if _is_torch(dist):
        return _lib(dist).stack([start, end], dim=-1)
    return np.stack([start, end], axis=-1)


def segments_to_distances(anchor: Array, seg: Array) -> Array:
    """Boundary form -> distance form around ``anchor``; negative where the anchor lies outside."""
    left = anchor - seg[..., 0]
    right = seg[..., 1] - anchor
    if _is_torch(seg):
        return _lib(seg).stack([left, right], dim=-1)
    return np.stack([left, right], axis=-1)


def refine_distances(coarse: Array, offsets: Array) -> Array:
    """Eq. 13 in distance form, shared by the loss and decoding so their sign conventions cannot drift apart.

    ``coarse [..., 2]`` distances (d_s, d_e) and ``offsets [..., 2]`` (delta_s, delta_e) in units of half the
    coarse width w = d_s + d_e: d' = d + 0.5 w delta. A positive delta_s moves the start earlier.
    """
    width = coarse[..., 0:1] + coarse[..., 1:2]  # [..., 1]
    return coarse + 0.5 * width * offsets


def _safe_div(num: Array, den: Array, eps: float = 1e-12) -> Array:
    if _is_torch(num):
        torch = _lib(num)
        return torch.where(den > eps, num / den.clamp(min=eps), torch.zeros_like(num))
    return np.where(den > eps, num / np.where(den > eps, den, 1.0), 0.0)

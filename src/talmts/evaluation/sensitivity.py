"""DETAD's sensitivity analysis: how AP changes with the ground-truth instances' characteristics.

Each ground-truth instance gets three characteristics (DETAD, ECCV 2018):

- **length**: its duration in seconds;
- **coverage**: its duration divided by its video's duration (unknown when the ground truth has no duration; an
  instance that outlasts its video, coverage > 1, belongs to no bin);
- **instances**: how many instances of its class its video holds.

Each is cut into DETAD's bins, right-closed intervals (lo, hi] with the first one closed on both sides:

========== ================================= =====================================
           ActivityNet                       THUMOS14
========== ================================= =====================================
length     XS 0-30 s, S 30-60, M 60-120,     XS 0-3 s, S 3-6, M 6-12, L 12-18,
           L 120-180, XL > 180               XL > 18
coverage   XS 0-0.2, S 0.2-0.4, M ... XL 1   XS 0-0.02, S -0.04, M -0.06, L -0.08, XL -1
instances  XS 1, S 2-4, M 5-8, L > 8         XS 1, S 2-40, M 41-80, L > 80
========== ================================= =====================================

A bin's score is DETAD's average-mAP_N: per class with ground truth in the bin, the ranked list keeps the false
positives and the true positives matched to the bin's instances (true positives of other bins are dropped), AP is
normalized (:func:`talmts.evaluation.matching.ranked_ap` with N = ground truths per class over the whole set) and
averaged over the thresholds; the bin's value is the mean over those classes. The normalization makes bins with
few instances comparable with bins with many.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from talmts.errors import InputError
from talmts.evaluation.matches import Matches
from talmts.evaluation.matching import ranked_ap

INF = float("inf")
SIZES5 = ("XS", "S", "M", "L", "XL")
BINS: dict[str, dict[str, tuple[tuple[float, ...], tuple[str, ...]]]] = {
    "anet": {
        "length": ((0, 30, 60, 120, 180, INF), SIZES5),
        "coverage": ((0, 0.2, 0.4, 0.6, 0.8, 1.0), SIZES5),
        "instances": ((-1, 1, 4, 8, INF), SIZES5[:4]),
    },
    "thumos": {
        "length": ((0, 3, 6, 12, 18, INF), SIZES5),
        "coverage": ((0, 0.02, 0.04, 0.06, 0.08, 1.0), SIZES5),
        "instances": ((-1, 1, 40, 80, INF), SIZES5[:4]),
    },
}


def characteristics(m: Matches) -> dict[str, np.ndarray]:
    """[G] length (s), coverage (NaN when the video's duration is unknown) and same-class instances per video."""
    length = m.gt_seg[:, 1] - m.gt_seg[:, 0]
    durations = np.array([m.durations.get(v) or np.nan for v in m.videos], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = length / durations[m.gt_video]
    key = m.gt_video * len(m.classes) + m.gt_class
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return {"length": length, "coverage": coverage, "instances": counts[inverse].astype(np.float64)}


def auto_bins(lengths: np.ndarray) -> str:
    """THUMOS14's bins for short actions (median instance under 30 s, ActivityNet's first length edge), else
    ActivityNet's."""
    return "thumos" if lengths.size and float(np.median(lengths)) < 30 else "anet"


def bin_of(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """[G] bin index of each value in right-closed bins (lo, hi], the first closed at lo; -1 outside or NaN."""
    edges_arr = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(edges_arr, values, side="left") - 1
    idx[values == edges_arr[0]] = 0
    idx[(values < edges_arr[0]) | (values > edges_arr[-1]) | np.isnan(values)] = -1
    return idx


def sensitivity(m: Matches, bins: str = "auto") -> dict[str, Any]:
    """``{"base": average-mAP_N, "bins": the set's name, name: {"bins": labels, "edges": [...], "instances":
    counts, "average_mAP_N": [value or None]}}`` (an open last edge is None). ``bins``: "anet", "thumos" or "auto" (:func:`auto_bins`)."""
    found = characteristics(m)
    bins = auto_bins(found["length"]) if bins == "auto" else bins
    if bins not in BINS:
        raise InputError(f"unknown bins {bins!r}: use 'auto' or one of {sorted(BINS)}")
    norm = len(m.gt_seg) / len(m.classes)
    out: dict[str, Any] = {"base": _average_map_n(m, np.zeros(len(m.gt_seg), dtype=np.int64), 0, norm), "set": bins}
    for name, values in found.items():
        edges, labels = BINS[bins][name]
        which = bin_of(values, edges)
        out[name] = {
            "bins": list(labels),
            "edges": [None if e == INF else e for e in edges],  # JSON has no infinity
            "instances": [int((which == b).sum()) for b in range(len(labels))],
            "average_mAP_N": [_average_map_n(m, which, b, norm) for b in range(len(labels))],
        }
    return out


def _average_map_n(m: Matches, which: np.ndarray, b: int, norm: float) -> float | None:
    """Mean over classes with ground truth in bin ``b`` of their AP_N averaged over thresholds; None if empty."""
    in_bin = which == b
    aps = []
    for c in range(len(m.classes)):
        npos = int((in_bin & (m.gt_class == c)).sum())
        if npos == 0:
            continue
        order = m.ranked(c)
        per_t = []
        for t in range(len(m.tiou)):
            hit = m.matched[t, order]
            keep = (hit < 0) | in_bin[np.maximum(hit, 0)]
            per_t.append(ranked_ap(hit[keep] >= 0, npos, norm))
        aps.append(np.mean(per_t))
    return float(np.mean(aps)) if aps else None

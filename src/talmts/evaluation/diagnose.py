"""Error diagnosis of a detector with the definitions of DETAD (Alwassel, Caba Heilbron, Escorcia, Ghanem: "Diagnosing
Error in Temporal Action Detectors", ECCV 2018).

Matching is the official one (see :mod:`talmts.evaluation.detection`), with its tIoU
(:func:`talmts.geometry.official_tiou`, also for the types below, so degenerate segments score as there): per class, detections in descending score
order each take the unmatched ground truth of the same class and video with the highest tIoU >= alpha. A detection
left unmatched at threshold alpha is a false positive of exactly one type, decided by the ground truth ``g`` of its
video (any class) with the highest tIoU with it (the first listed on ties):

- **double detection**: tIoU(g) >= alpha and g has the detection's label (g was already taken by a better-scored
  detection, or a same-label ground truth with a lower tIoU was);
- **wrong label**: tIoU(g) >= alpha and g has another label;
- **localization error**: 0.1 <= tIoU(g) < alpha and g has the detection's label;
- **confusion**: 0.1 <= tIoU(g) < alpha and g has another label;
- **background**: tIoU(g) < 0.1 with every ground truth of the video (or the video has none).

**Removing an error type** (DETAD's "removing error impact"): the detections of that type are dropped from every
ranked list (the others keep their match), each class's AP is recomputed, and the gain is the new average mAP minus
the original one.

**False-positive profile**: per class with G ground truths, the detections ranked 1..G form the group "1G", G+1..2G
the group "2G", and so on up to "10G"; a group's profile is the share of each type among its detections, summed
over classes, averaged over the thresholds.

Sensitivity to the instances' characteristics lives in :mod:`talmts.evaluation.sensitivity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from talmts.errors import InputError
from talmts.evaluation.matches import Matches, groups
from talmts.evaluation.matching import greedy_assign, ranked_ap
from talmts.evaluation.result import thresholds_array
from talmts.evaluation.sensitivity import sensitivity
from talmts.formats import AMBIGUOUS
from talmts.geometry import official_tiou
from talmts.schema import AnnotationSet, Detection, normalize_subset

ERROR_TYPES = ("true positive", "double detection", "wrong label", "localization", "confusion", "background")
TRUE_POSITIVE, DOUBLE, WRONG_LABEL, LOCALIZATION, CONFUSION, BACKGROUND = range(6)
MIN_TIOU = 0.1  # DETAD's lower tIoU bound between a localization/confusion error and a background error
PROFILE_GROUPS = 10  # the profile's groups: 1G .. 10G


def match_detections(
    ground_truth: AnnotationSet,
    detections: dict[str, list[Detection]],
    tiou: Sequence[float],
    subset: str | None = None,
) -> Matches:
    """Flatten, match at every threshold and type every false positive (see the module's docstring)."""
    thr = thresholds_array(tiou)
    subset = None if subset is None else normalize_subset(subset)
    gt_videos = [v for v in ground_truth.videos.values() if subset is None or v.subset == subset]
    known = {v.id for v in gt_videos}
    videos = [v.id for v in gt_videos] + [v for v in detections if v not in known]  # the others hold no ground truth
    vid_index = {v: i for i, v in enumerate(videos)}
    rows = [(vid_index[v.id], k, s) for v in gt_videos for k, s in enumerate(v.annotations) if s.label != AMBIGUOUS]
    classes = [c for c in ground_truth.classes.names if c in {s.label for _, _, s in rows}]
    classes += sorted({s.label for _, _, s in rows} - set(classes))
    if not classes:
        raise InputError(f"no ground truth in subset {subset!r}: nothing to diagnose (check --subset)")
    cls_index = {c: i for i, c in enumerate(classes)}
    flat = [(vid_index[v], k, d) for v, dets in detections.items() for k, d in enumerate(dets)]
    m = Matches(
        tiou=thr,
        classes=classes,
        videos=videos,
        durations={v.id: v.duration for v in gt_videos},
        gt_video=np.array([r[0] for r in rows], dtype=np.int64),
        gt_class=np.array([cls_index[r[2].label] for r in rows], dtype=np.int64),
        gt_seg=np.array([(r[2].start, r[2].end) for r in rows], dtype=np.float64).reshape(-1, 2),
        gt_index=np.array([r[1] for r in rows], dtype=np.int64),
        det_video=np.array([f[0] for f in flat], dtype=np.int64),
        det_class=np.array([cls_index.get(f[2].label, -1) for f in flat], dtype=np.int64),
        det_label=[f[2].label for f in flat],
        det_seg=np.array([(f[2].start, f[2].end) for f in flat], dtype=np.float64).reshape(-1, 2),
        det_score=np.array([f[2].score for f in flat], dtype=np.float64),
        det_index=np.array([f[1] for f in flat], dtype=np.int64),
    )
    m.matched = _greedy(m)
    m.best_gt, m.best_tiou = _best_ground_truth(m)
    m.error = _error_types(m)
    return m


def _greedy(m: Matches) -> np.ndarray:
    """[T, N] matched ground-truth row, block by block (one class in one video), with the evaluator's kernel."""
    matched = np.full((len(m.tiou), len(m.det_score)), -1, dtype=np.int64)
    num_v = len(m.videos)
    gt_blocks = groups(m.gt_class * num_v + m.gt_video, np.arange(len(m.gt_seg)))
    det_rank = np.lexsort((np.arange(len(m.det_score)), -m.det_score))  # all detections in rank order
    for key, rows in groups((m.det_class * num_v + m.det_video)[det_rank], det_rank).items():
        g = gt_blocks.get(key)
        if g is not None and key >= 0:
            hit = greedy_assign(official_tiou(m.det_seg[rows], m.gt_seg[g]), m.tiou)  # [T, rows]
            matched[:, rows] = np.where(hit >= 0, g[np.maximum(hit, 0)], -1)
    return matched


def _best_ground_truth(m: Matches) -> tuple[np.ndarray, np.ndarray]:
    best = np.full(len(m.det_score), -1, dtype=np.int64)
    best_tiou = np.zeros(len(m.det_score))
    gt_by_video = groups(m.gt_video, np.arange(len(m.gt_seg)))
    for v, d in groups(m.det_video, np.arange(len(m.det_score))).items():
        g = gt_by_video.get(v)
        if g is not None:
            t = official_tiou(m.det_seg[d], m.gt_seg[g])  # [d, g]
            best[d] = g[t.argmax(axis=1)]  # first listed on ties, as DETAD's argmax
            best_tiou[d] = np.minimum(t.max(axis=1), 1.0)  # a zero union (+inf: matches at every threshold) as 1
    return best, best_tiou


def _error_types(m: Matches) -> np.ndarray:
    same = np.where(m.best_gt >= 0, m.gt_class[np.maximum(m.best_gt, 0)] == m.det_class, False)  # [N]
    err = np.full((len(m.tiou), len(m.det_score)), BACKGROUND, dtype=np.int64)
    for t, alpha in enumerate(m.tiou):
        high = m.best_tiou >= alpha
        mid = (m.best_tiou >= MIN_TIOU) & ~high
        err[t, high & same] = DOUBLE
        err[t, high & ~same] = WRONG_LABEL
        err[t, mid & same] = LOCALIZATION
        err[t, mid & ~same] = CONFUSION
    err[m.matched >= 0] = TRUE_POSITIVE
    return err


# ---------------------------------------------------------------------------------------------------- AP
def class_ap(m: Matches, keep: np.ndarray | None = None, normalized_by: float | None = None) -> np.ndarray:
    """[T, C] AP of each class at each threshold, over the detections where ``keep`` ([T, N] bool) holds
    (``normalized_by``: DETAD's AP_N, see :func:`talmts.evaluation.matching.ranked_ap`)."""
    ap = np.zeros((len(m.tiou), len(m.classes)))
    npos = np.bincount(m.gt_class, minlength=len(m.classes))
    for c in range(len(m.classes)):
        order = m.ranked(c)
        for t in range(len(m.tiou)):
            rows = order if keep is None else order[keep[t, order]]
            ap[t, c] = ranked_ap(m.matched[t, rows] >= 0, npos[c], normalized_by)
    return ap


# ---------------------------------------------------------------------------------------------------- analyses
def error_counts(m: Matches) -> dict[str, list[int]]:
    """Detections of each type at each threshold."""
    return {name: [int((m.error[t] == k).sum()) for t in range(len(m.tiou))] for k, name in enumerate(ERROR_TYPES)}


def removal_gains(m: Matches, base_ap: np.ndarray) -> dict[str, float]:
    """Average-mAP gain when the false positives of each type are removed (DETAD's removing-error impact)."""
    base = float(base_ap.mean())
    return {name: float(class_ap(m, m.error != k).mean()) - base for k, name in enumerate(ERROR_TYPES) if k}


def fp_profile(m: Matches, groups: int = PROFILE_GROUPS) -> list[dict[str, Any]]:
    """The share of each type among each class's detections ranked in (k-1)G..kG, for k = 1..groups."""
    npos = np.bincount(m.gt_class, minlength=len(m.classes))
    counts = np.zeros((groups, len(m.tiou), len(ERROR_TYPES)))
    sizes = np.zeros(groups)
    for c in range(len(m.classes)):
        order = m.ranked(c)[: groups * npos[c]]
        group = np.arange(len(order)) // npos[c]
        np.add.at(sizes, group, 1)
        for t in range(len(m.tiou)):
            np.add.at(counts[:, t], (group, m.error[t, order]), 1)
    profile = []
    for k in np.flatnonzero(sizes):
        share = counts[k].mean(axis=0) / sizes[k]
        profile.append({"group": f"{k + 1}G", "detections": int(sizes[k])} | dict(zip(ERROR_TYPES, share.tolist())))
    return profile


def per_video(m: Matches, t: int = 0) -> list[dict[str, Any]]:
    """Per video at threshold ``t``: ground truths, detections, true and false positives, missed ground truths and
    the video's AP (the mean, over the classes with ground truth in the video, of the class's AP on this video's
    detections alone; None for a video without ground truth)."""
    out = []
    matched_gt = np.zeros(len(m.gt_seg), dtype=bool)
    matched_gt[m.matched[t][m.matched[t] >= 0]] = True
    none = np.zeros(0, dtype=np.int64)
    gt_by_video = groups(m.gt_video, np.arange(len(m.gt_seg)))
    det_by_video = groups(m.det_video, np.arange(len(m.det_score)))
    for v, name in enumerate(m.videos):
        g, d = gt_by_video.get(v, none), det_by_video.get(v, none)
        aps = []
        for c in np.unique(m.gt_class[g]):
            rows = d[m.det_class[d] == c]
            rows = rows[np.argsort(-m.det_score[rows], kind="stable")]
            aps.append(ranked_ap(m.matched[t, rows] >= 0, int((m.gt_class[g] == c).sum())))
        tp = int((m.matched[t, d] >= 0).sum())
        out.append(
            {
                "video": name,
                "ground_truth": int(g.size),
                "detections": int(d.size),
                "tp": tp,
                "fp": int(d.size) - tp,
                "missed": int(g.size - matched_gt[g].sum()),
                "ap": float(np.mean(aps)) if aps else None,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------------- the report
@dataclass
class Diagnosis:
    """Everything :func:`diagnose` finds; ``matches`` keeps each detection's match and type for the pages."""

    tiou: list[float]
    mAP: list[float]
    average_mAP: float
    per_class: dict[str, list[float]]
    error_counts: dict[str, list[int]]
    map_gain: dict[str, float]
    fp_profile: list[dict[str, Any]]
    sensitivity: dict[str, Any]
    videos: list[dict[str, Any]]
    matches: Matches

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "matches"}


def diagnose(
    ground_truth: AnnotationSet,
    detections: dict[str, list[Detection]],
    tiou: Sequence[float],
    subset: str | None = None,
    bins: str = "auto",
) -> Diagnosis:
    """The whole DETAD diagnosis at the thresholds ``tiou`` (their mean where a figure is one number; the per-video
    rows at the first threshold). ``bins``: "anet", "thumos" or "auto" (see :mod:`talmts.evaluation.sensitivity`)."""
    m = match_detections(ground_truth, detections, tiou, subset)
    ap = class_ap(m)
    return Diagnosis(
        tiou=[float(t) for t in m.tiou],
        mAP=ap.mean(axis=1).tolist(),
        average_mAP=float(ap.mean()),
        per_class={c: ap[:, i].tolist() for i, c in enumerate(m.classes)},
        error_counts=error_counts(m),
        map_gain=removal_gains(m, ap),
        fp_profile=fp_profile(m),
        sensitivity=sensitivity(m, bins),
        videos=per_video(m),
        matches=m,
    )


def format_diagnosis(d: Diagnosis) -> str:
    """The diagnosis as text: false positives by type with the mAP gain of removing them, the profile of the top
    detections, the sensitivity bins and the per-class AP (percent, averaged over the thresholds)."""
    n = len(d.matches.det_score)
    lines = [f"diagnosis at tIoU {', '.join(f'{t:g}' for t in d.tiou)}: average mAP {100 * d.average_mAP:.1f} %"]
    lines.append(f"{'type':<18} {'share':>6} {'mAP gain':>9}")
    for name, counts in d.error_counts.items():
        share = 100 * float(np.mean(counts)) / max(n, 1)
        gain = f"{100 * d.map_gain[name]:+9.1f}" if name in d.map_gain else " " * 9
        lines.append(f"{name:<18} {share:5.1f}% {gain}")
    lines.append("top detections (per class, in steps of its ground-truth count G), % of each type:")
    short = ["TP", "dbl", "label", "loc", "conf", "bg"]
    lines.append(f"{'':<5} " + " ".join(f"{s:>5}" for s in short))
    for row in d.fp_profile:
        lines.append(f"{row['group']:<5} " + " ".join(f"{100 * row[t]:5.1f}" for t in ERROR_TYPES))
    lines.append(
        f"sensitivity ({d.sensitivity['set']} bins; average-mAP_N %, all instances {100 * d.sensitivity['base']:.1f}):"
    )
    for name, s in d.sensitivity.items():
        if name in ("base", "set"):
            continue
        cells = [
            f"{b} {'-' if v is None else f'{100 * v:.1f}'} ({k})"
            for b, v, k in zip(s["bins"], s["average_mAP_N"], s["instances"])
        ]
        lines.append(f"  {name:<10} " + ", ".join(cells))
    lines.append("per-class AP (%): " + ", ".join(f"{c} {100 * np.mean(v):.1f}" for c, v in d.per_class.items()))
    return "\n".join(lines)

"""Detection mAP with the numbers of the official ActivityNet evaluator (``Evaluation/eval_detection.py``).

What is evaluated, as there:
- the classes are the labels with ground truth in the subset; mAP is the plain mean of their APs;
- per class, detections are ranked by descending score and matched greedily per tIoU threshold
  (see :func:`talmts.evaluation.matching.greedy_match`); AP is VOC all-point interpolated;
- a class without detections scores 0; detections on videos without ground truth of that class in the subset
  (including videos absent from the subset) are false positives.

Where talmts decides what the official code leaves to chance:
- score ties keep input order (videos in the order of the ``detections`` dict, then list order); the official
  code uses ``argsort()[::-1]``, which reverses ties;
- a detection whose label has no ground truth in the subset is ignored with a warning (the official code stops
  with a KeyError); ``strict=True`` makes it an error;
- equal tIoU between ground truths: the one listed last (see ``greedy_match``);
- segments are scored as written, as there: a start before 0 or an end past the video changes nothing but the
  tIoU; a detection whose end is before its start overlaps nothing (tIoU 0), except that a zero union (a point
  against a point, or an inverted detection exactly as long as the ground truth) is 0/0 there, which matches at
  every threshold (see :func:`talmts.geometry.official_tiou`, which the diagnosis uses too). Such segments are counted and reported in one warning;
- THUMOS14 "Ambiguous" ground truth (only present when the reader kept it) is never a class; as in the THUMOS14
  devkit, a detection that matches nothing and overlaps an Ambiguous segment is dropped from the false positives.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import chain, repeat
from operator import attrgetter

import numpy as np

from talmts.errors import InputError
from talmts.evaluation.matching import first_match_per_block, greedy_match, interpolated_ap
from talmts.evaluation.result import EvalResult, thresholds_array
from talmts.formats import AMBIGUOUS
from talmts.geometry import official_tiou, official_tiou_rows
from talmts.schema import AnnotationSet, Detection, SchemaError, normalize_subset


def _class_order(gt: AnnotationSet, labels: set[str]) -> list[str]:
    known = [c for c in gt.classes.names if c in labels]
    return known + sorted(labels - set(known))


def evaluate_detections(
    ground_truth: AnnotationSet,
    detections: dict[str, list[Detection]],
    tiou: Sequence[float],
    subset: str | None = None,
    strict: bool = False,
) -> EvalResult:
    """Score ``detections`` against the ground truth of ``subset`` (all videos when None) at each tIoU threshold."""
    thr = thresholds_array(tiou)
    subset = None if subset is None else normalize_subset(subset)
    videos = [v for v in ground_truth.videos.values() if subset is None or v.subset == subset]
    # ---- ground truth as flat arrays: video index, class index, start, end -------------------------------------
    vid_index = {v.id: i for i, v in enumerate(videos)}
    gt_rows = [(vid_index[v.id], s) for v in videos for s in v.annotations]
    classes = _class_order(ground_truth, {s.label for _, s in gt_rows if s.label != AMBIGUOUS})
    if not classes:
        raise InputError(f"no ground truth in subset {subset!r}: nothing to evaluate")
    cls_index = {c: i for i, c in enumerate(classes)}
    amb = [(vi, s.start, s.end) for vi, s in gt_rows if s.label == AMBIGUOUS]
    gt_rows = [(vi, s) for vi, s in gt_rows if s.label != AMBIGUOUS]
    gt_vid = np.array([vi for vi, _ in gt_rows], dtype=np.int64)
    gt_cls = np.array([cls_index[s.label] for _, s in gt_rows], dtype=np.int64)
    gt_seg = np.array([(s.start, s.end) for _, s in gt_rows], dtype=np.float64).reshape(-1, 2)
    del gt_rows  # a tuple per ground truth: 70 MB for a million

    # ---- detections as flat arrays; unknown videos get fresh indices (they hold no ground truth) ---------------
    _warn_unusual_segments(ground_truth, detections)
    det_vid, det_cls, det_seg, det_score = _flatten(detections, vid_index, cls_index, subset, strict)

    num_t, num_c, num_v = len(thr), len(classes), len(vid_index) + len(detections)
    # Rank inside each class: descending score, ties in input order (lexsort: last key is the primary one).
    rank_order = np.lexsort((np.arange(len(det_score)), -det_score, det_cls))
    tp = np.zeros((num_t, len(det_score)), dtype=bool)
    del det_score  # ranked: only the order is needed from here

    # ---- match inside each (class, video) block that has ground truth -----------------------------------------
    det_key = det_cls * num_v + det_vid
    det_sorted = rank_order[np.argsort(det_key[rank_order], kind="stable")]  # blocks of one key, in rank order
    det_keys_sorted = det_key[det_sorted]
    del det_key
    gt_key = gt_cls * num_v + gt_vid
    gt_sorted = np.argsort(gt_key, kind="stable")  # blocks in annotation order (decides equal-tIoU ties)
    keys, gt_starts = np.unique(gt_key[gt_sorted], return_index=True)
    gt_ends = np.append(gt_starts[1:], len(gt_sorted))
    lo = np.searchsorted(det_keys_sorted, keys, side="left")
    hi = np.searchsorted(det_keys_sorted, keys, side="right")
    blocks = np.flatnonzero(hi > lo)
    single = blocks[gt_ends[blocks] - gt_starts[blocks] == 1]
    if single.size:  # blocks with one ground truth (most of ActivityNet): all at once
        counts = hi[single] - lo[single]
        block = np.repeat(np.arange(single.size), counts)
        rows = np.repeat(lo[single] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        d_idx = det_sorted[rows]
        g_idx = gt_sorted[gt_starts[single]][block]
        tp[:, d_idx] = first_match_per_block(official_tiou_rows(det_seg[d_idx], gt_seg[g_idx]), block, thr)
    for k in blocks[gt_ends[blocks] - gt_starts[blocks] > 1]:
        d_idx = det_sorted[lo[k] : hi[k]]
        g_idx = gt_sorted[gt_starts[k] : gt_ends[k]]
        tp[:, d_idx] = greedy_match(official_tiou(det_seg[d_idx], gt_seg[g_idx]), thr)
    # an unmatched detection that overlaps Ambiguous ground truth is neither TP nor FP
    countable = ~_overlaps_ambiguous(amb, det_vid, det_seg) if amb else None
    del det_sorted, det_keys_sorted, det_vid, det_seg  # what matching needed (40 MB each for 5 million)

    # ---- AP per class -----------------------------------------------------------------------------------------
    ap = np.zeros((num_t, num_c))
    npos = np.bincount(gt_cls, minlength=num_c)
    bounds = np.searchsorted(det_cls[rank_order], np.arange(num_c + 1))
    # One class and one threshold at a time: the running counts of 5 million detections at 10 thresholds would be
    # 800 MB as one array. Counts of 0/1 values summed in float64 are exact.
    for c in range(num_c):
        a, b = bounds[c], bounds[c + 1]
        if a == b:
            continue  # no detections: AP 0, as the official evaluator
        rows = rank_order[a:b]
        for t in range(num_t):
            hit = tp[t, rows]
            tp_c = np.cumsum(hit, dtype=np.float64)
            fp_c = np.cumsum(~hit if countable is None else ~hit & countable[rows], dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                precision = np.where(tp_c + fp_c > 0, tp_c / (tp_c + fp_c), 0.0)
            ap[t, c] = interpolated_ap(precision, tp_c / npos[c])

    mAP = ap.mean(axis=1)
    return EvalResult(
        tiou=[float(t) for t in thr],
        mAP=[float(m) for m in mAP],
        average_mAP=float(mAP.mean()),
        per_class={c: [float(a) for a in ap[:, i]] for i, c in enumerate(classes)},
    )


def unusual_segments(ground_truth: AnnotationSet, detections: dict[str, list[Detection]]) -> dict[str, int]:
    """Counts of detections that start before 0 s, end after their video's duration (where the ground truth gives
    it) or end before they start; scored as written (see the module doc), but worth a look."""
    flat = list(chain.from_iterable(detections.values()))
    n = len(flat)
    start = np.fromiter(map(_start, flat), dtype=np.float64, count=n)
    end = np.fromiter(map(_end, flat), dtype=np.float64, count=n)
    known = {v: ground_truth.videos[v].duration for v in detections if v in ground_truth.videos}
    duration = np.repeat(
        np.array([known.get(v) or np.inf for v in detections], dtype=np.float64), [len(d) for d in detections.values()]
    )
    return {
        "start before 0 s": int((start < 0).sum()),
        "end after the video's duration": int((end > duration).sum()),
        "end before start": int((end < start).sum()),
    }


def _warn_unusual_segments(ground_truth: AnnotationSet, detections: dict[str, list[Detection]]) -> None:
    counts = unusual_segments(ground_truth, detections)
    found = {k: n for k, n in counts.items() if n}
    if found:
        total = sum(len(d) for d in detections.values())
        what = ", ".join(f"{n} {k}" for k, n in found.items())
        warnings.warn(
            f"of {total} detections, {what}: scored as written, as the official ActivityNet evaluator does "
            "(clip them to [0, duration] before writing if that is not intended)",
            stacklevel=3,
        )


def _flatten(
    detections: dict[str, list[Detection]],
    vid_index: dict[str, int],
    cls_index: dict[str, int],
    subset: str | None,
    strict: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``{video: [Detection]}`` -> video index [N], class index [N], segments [N, 2], scores [N].

    Attribute access goes through ``map``/``attrgetter`` (C loops): 200k detections take ~0.1 s, not ~0.5 s.
    """
    # Videos outside the ground truth get fresh indices: they hold no ground truth, so all their detections are FPs.
    extra = iter(range(len(vid_index), len(vid_index) + len(detections)))
    per_video = [vid_index[v] if v in vid_index else next(extra) for v in detections]
    counts = [len(d) for d in detections.values()]
    flat = list(chain.from_iterable(detections.values()))
    n = len(flat)
    vids = np.repeat(np.asarray(per_video, dtype=np.int64), counts)
    labels = np.fromiter(map(cls_index.get, map(_label, flat), repeat(-1)), dtype=np.int64, count=n)
    seg = np.empty((n, 2))
    seg[:, 0] = np.fromiter(map(_start, flat), dtype=np.float64, count=n)
    seg[:, 1] = np.fromiter(map(_end, flat), dtype=np.float64, count=n)
    scores = np.fromiter(map(_score, flat), dtype=np.float64, count=n)
    known = labels >= 0
    if not known.all():
        _report_unknown_labels(detections, cls_index, subset, strict)
        vids, labels, seg, scores = vids[known], labels[known], seg[known], scores[known]
    return vids, labels, seg, scores


_label, _start, _end, _score = (attrgetter(a) for a in ("label", "start", "end", "score"))


def _report_unknown_labels(
    detections: dict[str, list[Detection]], cls_index: dict[str, int], subset: str | None, strict: bool
) -> None:
    """Warn (or, under strict, fail) about detections whose label has no ground truth in the subset."""
    unknown: dict[str, tuple[str, int]] = {}  # label -> (first video, count)
    for vid, dets in detections.items():
        for d in dets:
            if d.label not in cls_index:
                first, count = unknown.get(d.label, (vid, 0))
                unknown[d.label] = (first, count + 1)
    where = f"subset {subset!r}" if subset else "the ground truth"
    if strict:
        label, (vid, _) = next(iter(unknown.items()))
        raise SchemaError(
            "<detections>", vid, "label", f"label {label!r} has no ground truth in {where}", "fix the labels"
        )
    summary = ", ".join(f"{lab!r} ({n})" for lab, (_, n) in sorted(unknown.items()))
    warnings.warn(f"ignored detections whose label has no ground truth in {where}: {summary}", stacklevel=4)


def _overlaps_ambiguous(amb: list[tuple[int, float, float]], det_vid: np.ndarray, det_seg: np.ndarray) -> np.ndarray:
    """[N] bool: the detection shares some time with an Ambiguous segment of its video."""
    out = np.zeros(len(det_vid), dtype=bool)
    amb_vid = np.array([a[0] for a in amb])
    amb_seg = np.array([(a[1], a[2]) for a in amb], dtype=np.float64)
    for v in np.unique(amb_vid):
        d = np.flatnonzero(det_vid == v)
        if d.size:
            seg = amb_seg[amb_vid == v]
            inter = np.minimum(det_seg[d, None, 1], seg[None, :, 1]) - np.maximum(det_seg[d, None, 0], seg[None, :, 0])
            out[d] = (inter > 0).any(axis=1)
    return out

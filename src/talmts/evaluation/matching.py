"""The kernels of detection mAP: greedy matching of ranked detections to ground truth, and VOC AP.

Both follow the official ActivityNet evaluator (``Evaluation/eval_detection.py``) step for step in what they
compute, but the matching runs over *matches* rather than detections, so a video with hundreds of detections
costs one numpy step per matched ground truth instead of one Python step per detection.
"""

from __future__ import annotations

import numpy as np


def greedy_match(tiou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Which detections are true positives, for every threshold at once: ``[T, D]`` bool (see
    :func:`greedy_assign`)."""
    return greedy_assign(tiou, thresholds) >= 0


def greedy_assign(tiou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The ground truth each detection matches, for every threshold at once.

    tiou: ``[D, G]`` tIoU of D detections (already in rank order: descending score) with G ground truths of
    one class in one video. thresholds: ``[T]``. Returns ``[T, D]``: the matched column, -1 for none.

    Rule (the official one): detections are taken in rank order; each takes the unmatched ground truth of highest
    tIoU among those with ``tIoU >= threshold``; a ground truth matches once. Equal tIoU (common in THUMOS14,
    whose boundaries sit on a 0.1 s grid): the ground truth listed last, which is what the official
    ``argsort()[::-1]`` gives with a stable sort (numpy's default sort is not stable, so the official choice
    varies with the numpy version; this fixes it).

    Why the loop is over matches: a detection whose candidates are all taken is a false positive and never
    changes the state, and candidates only disappear, so "the next detection that matches" is the first row that
    still has an available candidate. Each iteration finds it for all thresholds at once.
    """
    num_det, num_gt = tiou.shape
    matched = np.full((len(thresholds), num_det), -1, dtype=np.int64)
    if num_det == 0 or num_gt == 0:
        return matched
    useful = np.flatnonzero((tiou >= thresholds.min()).any(axis=1))
    if useful.size < num_det:  # detections without any candidate are false positives at every threshold
        matched[:, useful] = greedy_assign(tiou[useful], thresholds)
        return matched
    cand = tiou[None, :, :] >= thresholds[:, None, None]  # [T, D, G]
    avail = cand.sum(axis=2)  # [T, D]: unmatched candidate ground truths of each detection
    locked = np.zeros((len(thresholds), num_gt), dtype=bool)  # [T, G]
    while True:
        has = avail > 0
        live = np.flatnonzero(has.any(axis=1))  # thresholds that still have a match to make
        if live.size == 0:
            return matched
        det = has[live].argmax(axis=1)  # [t'] first detection in rank order with a free candidate
        free = cand[live, det] & ~locked[live]  # [t', G]
        # best free candidate; equal tIoU -> the ground truth listed last (argmax of the reversed row)
        gt = num_gt - 1 - np.where(free, tiou[det], -1.0)[:, ::-1].argmax(axis=1)
        locked[live, gt] = True
        matched[live, det] = gt
        avail[live] -= cand[live, :, gt]  # [t', D]: that ground truth is no longer free for anyone
        avail[live, det] = 0  # the detection is decided


def first_match_per_block(tiou: np.ndarray, block: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``greedy_match`` for many blocks that each hold a single ground truth, in one pass.

    tiou: ``[N]`` tIoU of each detection with its block's ground truth; block: ``[N]`` block ids, non-decreasing,
    detections in rank order inside a block. Returns ``[T, N]`` bool. With one ground truth the greedy rule
    reduces to: the first detection of the block with ``tIoU >= threshold`` is the true positive.
    """
    tp = np.zeros((len(thresholds), len(tiou)), dtype=bool)
    for t, thr in enumerate(thresholds):
        idx = np.flatnonzero(tiou >= thr)
        if idx.size:
            b = block[idx]
            first = np.concatenate(([True], b[1:] != b[:-1]))
            tp[t, idx[first]] = True
    return tp


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC (2010+) all-point interpolated average precision of one ranked list.

    precision, recall: ``[N]`` after each of the N ranked detections. The precision envelope is made
    non-increasing from the right and integrated over the recall steps, recall ending at 1 with precision 0.
    """
    prec = np.concatenate(([0.0], precision, [0.0]))
    rec = np.concatenate(([0.0], recall, [1.0]))
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    steps = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return float(np.sum((rec[steps] - rec[steps - 1]) * prec[steps]))


def ranked_ap(tp: np.ndarray, npos: int, normalized_by: float | None = None) -> float:
    """VOC AP of one ranked list of true (True) and false (False) positives against ``npos`` ground truths.

    ``normalized_by``: DETAD's normalized AP (AP_N): precision = R * N / (R * N + FP), with N that number in place
    of ``npos``, so that classes and bins holding different numbers of ground truths compare.
    """
    tp = np.asarray(tp, dtype=bool)
    if tp.size == 0 or npos == 0:
        return 0.0
    tp_cum = np.cumsum(tp, dtype=np.float64)
    fp_cum = np.cumsum(~tp, dtype=np.float64)
    recall = tp_cum / npos
    n = npos if normalized_by is None else normalized_by
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(recall * n / (recall * n + fp_cum))
    return interpolated_ap(precision, recall)

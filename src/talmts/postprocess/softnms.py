"""Gaussian Soft-NMS (Bodla et al. 2017) for 1D segments, exact and vectorised over all classes of a video.

The textbook loop takes the best remaining segment, keeps it, multiplies every other remaining score by
exp(-tIoU^2 / sigma) (only where tIoU > gate, when a gate is set) and drops those that fall below the score
threshold. One Python step per kept segment is too slow for a THUMOS14 video (tens of thousands of candidates),
so this module runs it in *rounds*:

- A remaining segment whose score beats every remaining segment it overlaps (a local maximum) is taken by the
  loop before any of them, and nothing can lower its score before that: only an overlapping segment taken
  earlier could, and none of them outranks it. So every local maximum can be kept at once.
- The decays the kept segments apply commute (they multiply), so applying them together gives the loop's scores.

The number of rounds is the longest chain of overlapping segments of decreasing score (about 30 for a THUMOS14
video) and each round is O(n log n) numpy work: segments are sorted by start, so the segments that start
inside segment i form a contiguous range, and range maxima come from a sparse table. Classes are pooled by
shifting each class to its own stretch of the time axis. The result equals the loop's (tests/test_softnms.py);
ties in score go to the segment that comes first in (class, start, input order).

Unlike AFSD's softnms_v2 the last remaining candidate is always kept (AFSD's loop stops at one candidate).
"""

from __future__ import annotations

import numpy as np


def soft_nms(
    segments: np.ndarray,
    scores: np.ndarray,
    sigma: float,
    iou_gate: float | None = None,
    score_thresh: float = 0.001,
    top_k: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS of one class: ``segments [N, 2]``, ``scores [N]`` -> kept ``(segments [n, 2], scores [n])``.

    Kept segments come best first, with the scores they had when the loop took them.
    """
    segments, scores = _check(segments, scores)
    kept = soft_nms_scores(segments, scores, np.zeros(len(scores), np.int64), sigma, iou_gate, score_thresh)
    idx = _top(kept, segments, np.zeros(len(scores), np.int64), top_k)
    return segments[idx], kept[idx]


def soft_nms_classes(
    segments: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    sigma: float,
    iou_gate: float | None = None,
    score_thresh: float = 0.001,
    top_k: int | None = None,
) -> np.ndarray:
    """Soft-NMS of each class on its own, all classes in one pass.

    Returns the indices of the kept candidates (at most ``top_k`` per class), best score first; their new
    scores are ``soft_nms_scores(...)[indices]``. Use :func:`soft_nms_scores` for both at once.
    """
    segments, scores = _check(segments, scores)
    kept = soft_nms_scores(segments, scores, labels, sigma, iou_gate, score_thresh)
    return _top(kept, segments, labels, top_k)


def soft_nms_scores(
    segments: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    sigma: float,
    iou_gate: float | None = None,
    score_thresh: float = 0.001,
) -> np.ndarray:
    """The score each candidate has when Soft-NMS keeps it, or NaN where it is dropped: ``[N]``."""
    segments, scores = _check(segments, scores)
    if not sigma > 0:
        raise ValueError(f"Soft-NMS sigma must be > 0, got {sigma} (infer.nms_sigma)")
    labels = np.asarray(labels)
    if labels.shape != scores.shape:
        raise ValueError(f"Soft-NMS: labels {labels.shape} and scores {scores.shape} differ in shape")
    n = len(scores)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    # Pool the classes: class g gets the time stretch [g * span, (g + 1) * span), so no two classes overlap.
    _, group = np.unique(labels, return_inverse=True)
    lo = float(segments.min())
    span = float(segments.max()) - lo + 1.0
    key_start = segments[:, 0] - lo + group * span
    key_end = segments[:, 1] - lo + group * span
    order = np.lexsort((np.arange(n), key_start))  # by (class, start, input order)
    out[order] = _rounds(
        segments[order, 0],
        segments[order, 1],
        key_start[order],
        key_end[order],
        scores[order],
        sigma,
        0.0 if iou_gate is None else float(iou_gate),
        score_thresh,
    )
    return out


def _rounds(
    start: np.ndarray,
    end: np.ndarray,
    key_start: np.ndarray,
    key_end: np.ndarray,
    score: np.ndarray,
    sigma: float,
    gate: float,
    thresh: float,
) -> np.ndarray:
    """Soft-NMS on candidates sorted by ``key_start``; returns the kept score or NaN, in that order."""
    n = len(score)
    score = score.copy()
    out = np.full(n, np.nan)
    alive = score >= thresh
    # Candidates i+1 .. reach[i]-1 start before i ends: a superset of those overlapping i that come later
    # ("right" also takes those starting exactly at i's end, which keeps it a superset after the class shift).
    reach = np.searchsorted(key_start, key_end, side="right")
    while alive.any():
        idx = np.flatnonzero(alive)  # the remaining candidates, still sorted
        m = len(idx)
        rank = np.concatenate([[0], np.cumsum(alive)])  # rank[x] = remaining candidates before position x
        s, e, sc = start[idx], end[idx], score[idx]
        pos = np.arange(m)
        hi = np.maximum(rank[reach[idx]], pos + 1)  # remaining neighbours after i: pos+1 .. hi-1
        leader = ~_outranked(sc, pos, hi)  # the local maxima: kept this round
        kept = np.flatnonzero(leader)
        out[idx[kept]] = sc[kept]
        # decay pairs (kept k, other j): j after k in k's range, or k after j in j's range
        owner, j = _expand(kept + 1, hi[kept])
        src1, dst1 = kept[owner], j
        n_kept = np.concatenate([[0], np.cumsum(leader)])  # kept candidates before each position
        owner, q = _expand(n_kept[pos + 1], n_kept[hi])
        src = np.concatenate([src1, kept[q]])
        dst = np.concatenate([dst1, owner])
        other = ~leader[dst]
        src, dst = src[other], dst[other]
        if len(src):
            inter = np.maximum(np.minimum(e[src], e[dst]) - np.maximum(s[src], s[dst]), 0.0)
            union = (e[src] - s[src]) + (e[dst] - s[dst]) - inter
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
            hit = iou > gate
            sc = sc * np.exp(np.bincount(dst[hit], -(iou[hit] ** 2) / sigma, minlength=m))  # product of decays
        score[idx] = sc
        alive[idx[kept]] = False
        alive[idx[sc < thresh]] = False
    return out


def _outranked(score: np.ndarray, pos: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """For each candidate i: does a neighbour outrank it? Neighbours after i are pos+1..hi-1 (i wins ties with
    them); neighbours before i are the j < i whose range reaches i (they win ties)."""
    m = len(score)
    out = np.zeros(m, bool)
    length = hi - pos - 1
    has = np.flatnonzero(length > 0)
    if len(has) == 0:
        return out
    level = np.frexp(length[has].astype(np.float64))[1] - 1  # floor(log2(length)), exact for ints
    width = 1 << level
    levels = int(level.max()) + 1
    # forward: sparse table of range maxima, table[p][x] = max(score[x : x + 2^p])
    table = np.empty((levels, m))
    table[0] = score
    for p in range(1, levels):
        h = 1 << (p - 1)
        np.maximum(table[p - 1, :-h], table[p - 1, h:], out=table[p, :-h])
        table[p, -h:] = table[p - 1, -h:]
    first, last = has + 1, hi[has] - width  # two blocks of 2^level covering pos+1 .. hi-1
    ahead = np.maximum(table[level, first], table[level, last])
    out[has[ahead > score[has]]] = True
    # backward: every i spreads its score over its own range; the same two blocks, pushed down level by level
    spread = np.full((levels, m), -np.inf)
    spread[level, first] = score[has]  # each first position belongs to one candidate: no collision
    np.maximum.at(spread, (level, last), score[has])
    for p in range(levels - 1, 0, -1):
        h = 1 << (p - 1)
        np.maximum(spread[p - 1], spread[p], out=spread[p - 1])
        np.maximum(spread[p - 1, h:], spread[p, :-h], out=spread[p - 1, h:])
    out |= spread[0] >= score
    return out


def _expand(first: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ranges ``first[r] .. stop[r]-1`` concatenated: (range number, value) arrays."""
    count = np.maximum(stop - first, 0)
    total = int(count.sum())
    owner = np.repeat(np.arange(len(first)), count)
    offset = np.cumsum(count) - count
    return owner, np.arange(total) - np.repeat(offset - first, count)


def _top(kept: np.ndarray, segments: np.ndarray, labels: np.ndarray, top_k: int | None) -> np.ndarray:
    """Indices of kept candidates, best first, at most ``top_k`` per label."""
    return top_k_per_label(best_first(kept, segments), np.asarray(labels), top_k)


def best_first(kept: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Indices of the kept candidates (score not NaN) by score, ties by start then input order: the order in
    which the textbook loop keeps them."""
    idx = np.flatnonzero(~np.isnan(kept))
    return idx[np.lexsort((idx, segments[idx, 0], -kept[idx]))]


def top_k_per_label(order: np.ndarray, labels: np.ndarray, top_k: int | None) -> np.ndarray:
    """The first ``top_k`` indices of each label in ``order`` (indices into ``labels``, best first)."""
    if top_k is None or len(order) == 0:
        return order
    lab = labels[order]
    by_label = np.argsort(lab, kind="stable")  # keeps the best-first order within a label
    first = np.searchsorted(lab[by_label], lab[by_label], side="left")
    rank = np.empty(len(order), np.int64)
    rank[by_label] = np.arange(len(order)) - first
    return order[rank < top_k]


def _check(segments: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(segments) != len(scores):
        raise ValueError(f"Soft-NMS: {len(segments)} segments but {len(scores)} scores")
    if not (np.isfinite(segments).all() and np.isfinite(scores).all()):
        raise ValueError("Soft-NMS: segments and scores must be finite (a NaN came out of the network?)")
    return segments, scores

"""Soft-NMS over a stream of windows: each detection as soon as no later window can change it.

Offline, Soft-NMS runs once per video over the candidates of all its windows (merge.py). On a stream the candidates
arrive window by window, and a detection can be emitted once its score is *final*: equal to the score the offline
run over the whole video gives it. When that is so follows from the greedy loop (softnms.py):

1. The loop takes candidates in decreasing current score, and scores only fall. So everything it does before it
   takes candidate i, at i's kept score s, involves only candidates whose own score is at least s: a lower one is
   taken after i, and decays only candidates taken after it.
2. A candidate decays only those it overlaps. So i's kept score depends only on its *chain*: the candidates of its
   class linked to it by overlaps among candidates scoring at least s.
3. Every window not run yet starts at or after the *frontier* (windows.WindowCutter.earliest_next_offset), and so do
   its candidates.

So i's kept score is final once its chain, computed on what has arrived, ends by the frontier: no later candidate,
whatever its score, can join it. Point 1 also means that candidates scoring below ``min_score`` change no detection
scoring ``min_score`` or more: they are dropped as they arrive, and the detections at or above ``min_score`` are
exactly the offline ones.

Memory: a *group* (all held candidates of a class linked by overlaps: the chain at ``min_score``) that ends by the
frontier and holds nothing left to emit is forgotten, exactly: no later candidate can reach it and no held one
overlaps it. But a group can run on for as long as the stream does (overlapping candidates above ``min_score`` are
all it takes), and its detections would wait for the end of the stream while it grows. So a detection still
unsettled ``horizon`` after its end is emitted with the score it has then, marked inexact, and candidates that end
``horizon`` before the frontier are forgotten; a chain that reaches back to one of those cannot be proven any more
and waits for the horizon too. The stream therefore equals the offline run exactly when no group stays open for
more than about ``horizon``, and each detection says whether it was proven (``exact``). Units are the caller's
(sample frames for the stream).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

import numpy as np

from talmts.config import InferConfig

from .decode import Candidates
from .softnms import soft_nms_scores


@dataclass(frozen=True)
class Settled:
    """A detection whose score is decided: segment in the candidates' unit, class index 1..C, kept score, its
    place in the order candidates arrived (``seq``), and whether its score is proven final (``exact``)."""

    start: float
    end: float
    label: int
    score: float
    seq: int
    exact: bool


class OnlineSoftNMS:
    """Candidates in, window by window (:meth:`add`); final detections out (:meth:`settle`, :meth:`finish`).

    Holds the candidates of the groups still open, and of no more than the last ``horizon`` (plus the windows still
    open), however long the stream.
    """

    def __init__(self, cfg: InferConfig, min_score: float, horizon: float):
        if not horizon > 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        self.cfg, self.min_score, self.horizon = cfg, float(min_score), float(horizon)
        self._seg = np.zeros((0, 2))
        self._score = np.zeros(0)
        self._label = np.zeros(0, np.int64)
        self._seq = np.zeros(0, np.int64)
        self._emitted = np.zeros(0, bool)
        self._arrived = 0  # candidates seen, dropped ones included: the offline pool's order
        self._forgotten_end = np.zeros(0)  # per class index: the latest end of a forgotten candidate (-inf: none)
        self._kept = np.zeros(0)  # Soft-NMS score of each held candidate (NaN: dropped), valid when not _dirty
        self._chain = np.zeros((0, 2))  # the extent of each kept candidate's chain
        self._dirty = False

    @property
    def held(self) -> int:
        """Candidates held now."""
        return len(self._score)

    def add(self, candidates: Candidates) -> None:
        """The candidates of the next window (in arrival order, as the offline pool concatenates them)."""
        n = len(candidates)
        keep = np.flatnonzero(np.asarray(candidates.scores) >= self.min_score)
        self._seg = np.concatenate([self._seg, np.asarray(candidates.segments, np.float64).reshape(-1, 2)[keep]])
        self._score = np.concatenate([self._score, np.asarray(candidates.scores, np.float64)[keep]])
        self._label = np.concatenate([self._label, np.asarray(candidates.labels, np.int64)[keep]])
        self._seq = np.concatenate([self._seq, self._arrived + keep])
        self._emitted = np.concatenate([self._emitted, np.zeros(len(keep), bool)])
        self._arrived += n
        self._dirty = self._dirty or len(keep) > 0

    def settle(self, frontier: float) -> list[Settled]:
        """The detections decided now that no later candidate starts before ``frontier``: those proven final, and
        those ``horizon`` past their end; then the closed groups and the candidates ``horizon`` behind the frontier
        are forgotten."""
        out = self._decide(frontier)
        self._drop(self._closed_groups(frontier), past_horizon=False)
        self._drop(self._seg[:, 1] <= frontier - self.horizon, past_horizon=True)
        return out

    def finish(self) -> list[Settled]:
        """The stream has ended: every detection left (proven final unless its chain reaches back to a forgotten
        candidate)."""
        return self._decide(np.inf)

    # ------------------------------------------------------------------------------------------------- internals
    def _decide(self, frontier: float) -> list[Settled]:
        if self._dirty:
            self._kept = soft_nms_scores(
                self._seg,
                self._score,
                self._label,
                self.cfg.nms_sigma,
                self.cfg.nms_iou_gate,
                self.cfg.nms_score_thresh,
            )
            self._chain = chain_extents(self._seg, self._score, self._label, self._kept, self._open(self._kept))
            self._dirty = False
        kept = self._kept
        open_ = self._open(kept)
        floor = self._floor(self._label)
        proven = open_ & (self._chain[:, 1] <= frontier) & (self._chain[:, 0] >= floor)
        overdue = open_ & ~proven & (self._seg[:, 1] + self.horizon <= frontier)
        if frontier == np.inf:
            overdue = open_ & ~proven
        decided = np.flatnonzero(proven | overdue)
        decided = decided[np.lexsort((self._seq[decided], self._seg[decided, 0]))]  # in stream order
        self._emitted[decided] = True
        return [
            Settled(float(s), float(e), int(c), float(p), int(q), bool(x))
            for s, e, c, p, q, x in zip(
                self._seg[decided, 0],
                self._seg[decided, 1],
                self._label[decided],
                kept[decided],
                self._seq[decided],
                proven[decided],
            )
        ]

    def _open(self, kept: np.ndarray) -> np.ndarray:
        """Held candidates still to be emitted: kept by Soft-NMS at ``min_score`` or more, not emitted yet."""
        out = ~self._emitted & ~np.isnan(kept)
        out[out] = kept[out] >= self.min_score
        return out

    def _floor(self, labels: np.ndarray) -> np.ndarray:
        """The latest end of a forgotten candidate of each label (-inf where none)."""
        known = labels < len(self._forgotten_end)
        out = np.full(len(labels), -np.inf)
        out[known] = self._forgotten_end[labels[known]]
        return out

    def _closed_groups(self, frontier: float) -> np.ndarray:
        """Held candidates whose *group* (all held candidates of their class linked to them by overlaps: the chain
        at ``min_score``) ends by the frontier and holds nothing left to emit. No later candidate can reach such a
        group, and no held candidate outside it overlaps it, so forgetting it changes no score (exact)."""
        n = len(self._score)
        if n == 0:
            return np.zeros(0, bool)
        lo = float(self._seg.min())
        span = float(self._seg.max()) - lo + 1.0  # each class on its own stretch of the axis, as softnms.py
        start = self._seg[:, 0] - lo + self._label * span
        end = self._seg[:, 1] - lo + self._label * span
        order = np.argsort(start, kind="stable")
        reach = np.maximum.accumulate(end[order])
        new_group = np.ones(n, bool)
        new_group[1:] = start[order][1:] >= reach[:-1]  # sharing an end point is no overlap
        group = np.empty(n, np.int64)
        group[order] = np.cumsum(new_group) - 1
        hi = np.full(int(group.max()) + 1, -np.inf)
        np.maximum.at(hi, group, self._seg[:, 1])
        busy = np.bincount(group, weights=self._open(self._kept), minlength=len(hi)) > 0
        return ((hi <= frontier) & ~busy)[group]

    def _drop(self, gone: np.ndarray, past_horizon: bool) -> None:
        """Forget the ``gone`` candidates; those dropped ``past_horizon`` (not as a closed group) raise their class's
        floor, behind which no chain can be proven any more."""
        if not gone.any():
            return
        if past_horizon:
            labels = self._label[gone]
            if labels.max() >= len(self._forgotten_end):
                grown = np.full(int(labels.max()) + 1, -np.inf)
                grown[: len(self._forgotten_end)] = self._forgotten_end
                self._forgotten_end = grown
            np.maximum.at(self._forgotten_end, labels, self._seg[gone, 1])
        stay = ~gone
        self._seg, self._score, self._label = self._seg[stay], self._score[stay], self._label[stay]
        self._seq, self._emitted = self._seq[stay], self._emitted[stay]
        if not self._dirty:
            # The scores and chains computed before stay valid proofs for the candidates left: a chain that does not
            # reach back to a forgotten candidate is the same chain without them (docs/DESIGN.md, "Streaming").
            self._kept, self._chain = self._kept[stay], self._chain[stay]


def chain_extents(
    segments: np.ndarray, scores: np.ndarray, labels: np.ndarray, kept: np.ndarray, wanted: np.ndarray | None = None
) -> np.ndarray:
    """For each kept candidate i (``kept`` not NaN; only where ``wanted`` when given): the extent [lo, hi] of its
    chain, the candidates of its class linked to it by overlaps (of positive length) among those whose score is at
    least ``kept[i]``; NaN elsewhere.

    Per class, candidates are added in decreasing score to a set of disjoint merged intervals, and each kept
    candidate's query is answered once every candidate scoring at least its kept score is in.
    """
    out = np.full((len(scores), 2), np.nan)
    asked = ~np.isnan(kept) if wanted is None else wanted & ~np.isnan(kept)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        queries = members[asked[members]]
        if len(queries) == 0:
            continue
        by_score = members[np.argsort(-scores[members], kind="stable")]
        queries = queries[np.argsort(-kept[queries], kind="stable")]
        los: list[float] = []  # disjoint merged intervals, sorted
        his: list[float] = []
        nxt = 0
        for q in queries.tolist():
            level = kept[q]
            while nxt < len(by_score) and scores[by_score[nxt]] >= level:
                s, e = segments[by_score[nxt]]
                a = bisect_right(his, s)  # first interval ending after s
                b = bisect_left(los, e)  # first interval starting at or after e
                if a < b:
                    s, e = min(s, los[a]), max(e, his[b - 1])
                los[a:b], his[a:b] = [s], [e]
                nxt += 1
            k = bisect_right(los, segments[q, 0]) - 1
            out[q] = los[k], his[k]
    return out


class BestPerClass:
    """The ``top_k`` best detections of each class seen so far (best as the offline order ranks them: score, then
    earlier start, then earlier arrival), in memory bounded by classes x ``top_k``; None keeps all."""

    def __init__(self, top_k: int | None):
        self.top_k = top_k
        self._heaps: dict[int, list[tuple[float, float, int, Settled]]] = {}

    def add(self, d: Settled) -> None:
        heap = self._heaps.setdefault(d.label, [])
        item = (d.score, -d.start, -d.seq, d)  # the heap's smallest is the worst
        if self.top_k is None or len(heap) < self.top_k:
            heapq.heappush(heap, item)
        elif item[:3] > heap[0][:3]:
            heapq.heapreplace(heap, item)

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())

    def items(self) -> list[Settled]:
        """The detections kept, in arrival order."""
        return sorted((it[3] for h in self._heaps.values() for it in h), key=lambda d: d.seq)

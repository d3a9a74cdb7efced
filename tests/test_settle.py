"""Soft-NMS over a stream (postprocess/settle.py) against the offline run over the whole video.

The reference is the offline path itself, written another way round: every window's candidates pooled, one Soft-NMS
(softnms.soft_nms_scores, which tests/test_softnms.py checks against the textbook loop), kept at min_score or more.
Windows are placed and cut the way the stream places them (data/windows.WindowCutter)."""

from __future__ import annotations

import numpy as np
import pytest

from talmts.config import InferConfig
from talmts.data.windows import WindowCutter
from talmts.postprocess import Candidates, soft_nms_scores
from talmts.postprocess.settle import BestPerClass, OnlineSoftNMS, Settled, chain_extents


def window_candidates(rng: np.random.Generator, offset: int, length: int, count: int, classes: int) -> Candidates:
    """Random candidates of one window: segments inside [offset, offset + length] (clamped, as eq. 13 clamps them)."""
    start = rng.uniform(-2, length, count)
    end = start + rng.exponential(length / 4, count) + 0.5
    seg = np.clip(np.stack([start, end], 1), 0, length) + offset
    ok = seg[:, 1] > seg[:, 0]
    scores = rng.beta(0.6, 2.0, count)  # mostly low, some high: chains of every length
    return Candidates(seg[ok], scores[ok], rng.integers(1, classes + 1, count)[ok])


def run_stream(frames: int, clip: int, stride: int, merger: OnlineSoftNMS, seed: int, per_window: int = 40):
    """Feed the windows of a ``frames``-long stream as they are cut; returns (emitted, every candidate in order);
    ``merger.held_at`` gets the candidates held after each frame."""
    rng = np.random.default_rng(seed)
    cutter = WindowCutter(clip, stride)
    pool: list[Candidates] = []
    emitted: list[tuple[int, Settled]] = []  # (frames read when emitted, detection)

    def run(window: tuple[int, list[np.ndarray]] | None) -> None:
        if window is not None:
            offset, (w,) = window
            pool.append(window_candidates(rng, offset, len(w), per_window, 3))
            merger.add(pool[-1])

    merger.held_at = []
    for _ in range(frames):
        run(cutter.push((np.zeros(1),)))
        emitted += [(cutter.count, d) for d in merger.settle(cutter.earliest_next_offset())]
        merger.held_at.append(merger.held)
    run(cutter.close())
    emitted += [(cutter.count, d) for d in merger.finish()]
    return emitted, Candidates.concat(pool)


def offline(pool: Candidates, cfg: InferConfig, min_score: float) -> dict[int, float]:
    """{place in the pool: kept score} of the offline run, at min_score or more."""
    kept = soft_nms_scores(
        pool.segments, pool.scores, pool.labels, cfg.nms_sigma, cfg.nms_iou_gate, cfg.nms_score_thresh
    )
    return {int(i): float(kept[i]) for i in np.flatnonzero(~np.isnan(kept)) if kept[i] >= min_score}


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("min_score", [0.0, 0.3])
def test_a_long_enough_horizon_emits_exactly_the_offline_detections(seed, min_score):
    # every third seed with a tIoU gate and a higher score threshold than the defaults: the stream must use the config's
    cfg = InferConfig(nms_iou_gate=0.3, nms_score_thresh=0.2) if seed % 3 == 2 else InferConfig()
    frames = [150, 161, 40, 64][seed % 4]  # aligned, unaligned end, one short window, exactly one window
    merger = OnlineSoftNMS(cfg, min_score, horizon=1e9)
    emitted, pool = run_stream(frames, clip=64, stride=32, merger=merger, seed=seed)
    want = offline(pool, cfg, min_score)
    got = {d.seq: d.score for _, d in emitted}
    assert len(got) == len(emitted)  # each once
    assert got == want  # the same set, the same scores, bit for bit
    assert all(d.exact for _, d in emitted)


@pytest.mark.parametrize("seed", range(6))
def test_detections_leave_before_the_stream_ends_and_only_once_final(seed):
    """High-scoring detections settle while the stream runs (their chains are short), and none is emitted before
    the window cutter has passed every window that could reach its chain."""
    cfg = InferConfig()
    merger = OnlineSoftNMS(cfg, 0.3, horizon=1e9)
    emitted, pool = run_stream(600, clip=64, stride=32, merger=merger, seed=seed, per_window=15)
    assert offline(pool, cfg, 0.3) == {d.seq: d.score for _, d in emitted}
    early = [(n, d) for n, d in emitted if n < 600]
    assert len(early) > len(emitted) / 2  # most leave mid-stream
    for n, d in early:
        assert d.end <= n - 64  # every window that can still come starts after it
    # with no horizon at all, memory stays bounded: a closed group of candidates is forgotten, exactly
    assert max(merger.held_at) < 0.2 * len(pool)


def test_a_short_horizon_bounds_memory_and_marks_what_it_could_not_prove():
    cfg = InferConfig()
    merger = OnlineSoftNMS(cfg, 0.0, horizon=96)
    cutter = WindowCutter(64, 32)
    rng = np.random.default_rng(3)
    emitted: list[Settled] = []
    pool: list[Candidates] = []
    held = []
    for _ in range(3008):  # ends on a regular window
        window = cutter.push((np.zeros(1),))
        if window is not None:
            pool.append(window_candidates(rng, window[0], 64, 40, 3))
            merger.add(pool[-1])
        emitted += merger.settle(cutter.earliest_next_offset())
        held.append(merger.held)
    assert cutter.close() is None
    emitted += merger.finish()
    assert max(held[1500:]) <= max(held[:1500])  # flat: the last horizon and the open windows only
    assert max(held) < 0.2 * sum(len(c) for c in pool)
    want = offline(Candidates.concat(pool), cfg, 0.0)
    assert len({d.seq for d in emitted}) == len(emitted)
    inexact = [d for d in emitted if not d.exact]
    assert inexact, "min_score 0 links long chains: some must reach the horizon"
    for d in emitted:
        if d.exact:  # a proven detection is the offline one, whatever the horizon
            assert want[d.seq] == d.score


def test_chain_extents_by_hand():
    # class 1: a (0.9) overlaps b (0.5), b overlaps c (0.8); a and c do not touch
    seg = np.array([[0.0, 4.0], [3.0, 7.0], [6.0, 9.0], [10.0, 11.0], [0.0, 20.0]])
    score = np.array([0.9, 0.5, 0.8, 0.7, 0.95])
    label = np.array([1, 1, 1, 1, 2])
    kept = np.array([0.9, 0.4, 0.8, 0.7, 0.95])
    ext = chain_extents(seg, score, label, kept)
    assert ext[0].tolist() == [0.0, 4.0]  # at 0.9 only a
    assert ext[2].tolist() == [6.0, 9.0]  # at 0.8: a and c, not linked (b is below)
    assert ext[1].tolist() == [0.0, 9.0]  # at 0.4: a - b - c
    assert ext[3].tolist() == [10.0, 11.0]  # touching nothing
    assert ext[4].tolist() == [0.0, 20.0]  # another class does not link
    touching = chain_extents(
        np.array([[0.0, 1.0], [1.0, 2.0]]), np.array([0.5, 0.5]), np.array([1, 1]), np.array([0.5, 0.5])
    )
    assert touching.tolist() == [[0.0, 1.0], [1.0, 2.0]]  # sharing an end point is no overlap (tIoU 0)
    only = chain_extents(seg, score, label, kept, np.array([True, False, True, False, True]))
    assert np.isnan(only[[1, 3]]).all()  # rows not wanted stay NaN
    assert only[[0, 2, 4]].tolist() == [[0.0, 4.0], [6.0, 9.0], [0.0, 20.0]]


def test_best_per_class_keeps_the_offline_top_k():
    rng = np.random.default_rng(0)
    n = 300
    scores = np.round(rng.uniform(0, 1, n), 2)  # ties, broken by start then arrival as offline
    starts = np.round(rng.uniform(0, 50, n), 0)
    labels = rng.integers(1, 4, n)
    best = BestPerClass(top_k=7)
    for i in rng.permutation(n):  # in any order
        best.add(Settled(float(starts[i]), float(starts[i]) + 1, int(labels[i]), float(scores[i]), int(i), True))
    items = best.items()
    assert [d.seq for d in items] == sorted(d.seq for d in items)  # arrival order
    for c in (1, 2, 3):
        mine = np.flatnonzero(labels == c)
        want = mine[np.lexsort((mine, starts[mine], -scores[mine]))][:7]  # the offline best-first order, cut
        assert sorted(d.seq for d in items if d.label == c) == sorted(want.tolist())
    assert len(BestPerClass(None).items()) == 0


def test_what_the_horizon_cut_off_is_still_emitted_inexact():
    """R is emitted, then forgotten past the horizon; P's chain reaches back to it, so P cannot be proven and must
    leave at the horizon, marked inexact, even though its group is closed before that (the group is kept while it
    holds something to emit)."""
    r, p, q = [0.0, 2.0], [0.0, 10.0], [9.0, 14.0]
    merger = OnlineSoftNMS(InferConfig(), 0.0, horizon=6.0)
    merger.add(Candidates(np.array([r, p, q]), np.array([0.55, 0.5, 0.6]), np.array([1, 1, 1])))
    out: dict[int, tuple[float, bool]] = {}
    for frontier in range(40):
        out.update({d.seq: (frontier, d.exact) for d in merger.settle(float(frontier))})
    assert out == {0: (2, True), 2: (14, True), 1: (16, False)}
    assert merger.held == 0


def test_best_per_class_breaks_a_tie_of_score_and_start_by_arrival_and_counts_what_it_holds():
    """Offline, equal scores and starts rank by arrival: the earlier one stays in a top 1, whichever comes first."""
    first = Settled(5.0, 6.0, 1, 0.5, 3, True)
    later = Settled(5.0, 7.0, 1, 0.5, 8, True)
    for order in ([first, later], [later, first]):
        best = BestPerClass(top_k=1)
        for d in order:
            best.add(d)
        assert best.items() == [first]
    best = BestPerClass(top_k=2)
    for d in (first, later, Settled(0.0, 1.0, 2, 0.1, 9, True), Settled(0.0, 1.0, 1, 0.9, 10, True)):
        best.add(d)
    assert len(best) == 3  # class 1 keeps two of three, class 2 its one


def test_a_candidate_scoring_exactly_min_score_is_kept_as_offline():
    """The offline run keeps kept scores >= min_score; an untouched candidate keeps its own score."""
    merger = OnlineSoftNMS(InferConfig(), 0.5, horizon=10.0)
    merger.add(Candidates(np.array([[0.0, 2.0], [4.0, 6.0]]), np.array([0.5, 0.49]), np.array([1, 1])))
    assert [(d.start, d.score, d.exact) for d in merger.finish()] == [(0.0, 0.5, True)]


def test_the_horizon_must_be_positive():
    OnlineSoftNMS(InferConfig(), 0.1, horizon=0.5)  # a fraction of a frame is allowed
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=f"horizon must be > 0, got {bad}"):
            OnlineSoftNMS(InferConfig(), 0.1, horizon=bad)


def _feed(merger: OnlineSoftNMS, frontiers, empty_adds: bool = False) -> tuple[dict[int, tuple], list[int]]:
    """settle() at each frontier: {seq: (frontier, start, end, label, score, exact)} and the held count after each."""
    out: dict[int, tuple] = {}
    held = []
    for f in frontiers:
        if empty_adds:  # a window whose candidates all score below min_score
            merger.add(Candidates(np.zeros((0, 2)), np.zeros(0), np.zeros(0, np.int64)))
        out.update({d.seq: (f, d.start, d.end, d.label, d.score, d.exact) for d in merger.settle(float(f))})
        held.append(merger.held)
    return out, held


def test_the_horizon_forgets_on_time_and_a_forgotten_candidate_still_decays_the_scores():
    """R, P, Q of one class: R is forgotten when its end is exactly ``horizon`` behind the frontier (frontier 8);
    P, whose chain reaches back to R, leaves at its end + horizon (16) with the score the whole video gives it: R's
    decay still counts, whatever empty windows arrive meanwhile."""
    seg = np.array([[0.0, 2.0], [0.0, 10.0], [9.0, 14.0]])
    score, label = np.array([0.55, 0.5, 0.6]), np.array([1, 1, 1])
    cfg = InferConfig()
    want = soft_nms_scores(seg, score, label, cfg.nms_sigma)  # the offline run over the whole video
    # by hand: Q (0.6) decays P at tIoU 1/14, then R (0.55) at tIoU 0.2; nothing overlaps R or Q above them
    assert want.tolist() == pytest.approx([0.55, 0.5 * np.exp(-((1 / 14) ** 2 + 0.2**2) / 0.3), 0.6], abs=1e-12)
    merger = OnlineSoftNMS(cfg, 0.0, horizon=6.0)
    merger.add(Candidates(seg, score, label))
    out, held = _feed(merger, range(40), empty_adds=True)
    assert held == [3] * 8 + [2] * 8 + [0] * 24
    assert out == {
        0: (2, 0.0, 2.0, 1, want[0], True),
        2: (14, 9.0, 14.0, 1, want[2], True),
        1: (16, 0.0, 10.0, 1, want[1], False),
    }
    # the stream ending before P's horizon: finish() emits P, unproven, with the same score
    merger = OnlineSoftNMS(cfg, 0.0, horizon=6.0)
    merger.add(Candidates(seg, score, label))
    out, _ = _feed(merger, range(13))
    assert out == {0: (2, 0.0, 2.0, 1, want[0], True)}
    assert [(d.seq, d.score, d.exact) for d in merger.finish()] == [(1, want[1], False), (2, want[2], True)]


def test_a_group_that_only_touches_the_next_closes_by_itself():
    """A = [0, 4] and B = [4, 20] share an end point, which is no overlap: once A is emitted its group is closed and
    forgotten at frontier 4 (exactly at its end), while B is still held."""
    merger = OnlineSoftNMS(InferConfig(), 0.0, horizon=100.0)
    merger.add(Candidates(np.array([[0.0, 4.0], [4.0, 20.0]]), np.array([0.9, 0.8]), np.array([1, 1])))
    out, held = _feed(merger, range(6))
    assert out == {0: (4, 0.0, 4.0, 1, 0.9, True)}
    assert held == [2, 2, 2, 2, 1, 1]


def test_a_chain_starting_where_a_forgotten_candidate_ended_is_proven():
    """T ([3, 6]) is forgotten past the horizon (U keeps its group open), so chains of its class that start before 6
    can no longer be proven; S = [6, 9] only touches T, so S is proven at its end, exact."""
    seg = np.array([[0.0, 4.0], [3.0, 6.0], [6.0, 9.0], [5.0, 30.0]])  # R, T, S, U
    merger = OnlineSoftNMS(InferConfig(), 0.0, horizon=2.0)
    merger.add(Candidates(seg, np.array([0.9, 0.85, 0.5, 0.3]), np.array([1, 1, 1, 1])))
    out, _ = _feed(merger, range(12))
    assert {seq: (f, exact) for seq, (f, *_, exact) in out.items()} == {0: (4, True), 1: (6, True), 2: (9, True)}
    assert out[2][4] == 0.5  # nothing above S overlaps it


def test_each_class_keeps_its_own_floor_when_another_class_forgets():
    """Class 1 forgets R (frontier 6), class 2 forgets R2 (frontier 7); class 1's V = [20, 22], which reaches no
    forgotten candidate, is still proven at its end."""
    seg = np.array([[0.0, 4.0], [3.0, 40.0], [0.0, 5.0], [4.0, 40.0], [20.0, 22.0]])  # R, U1, R2, U2, V
    merger = OnlineSoftNMS(InferConfig(), 0.0, horizon=2.0)
    merger.add(Candidates(seg, np.array([0.9, 0.3, 0.9, 0.3, 0.8]), np.array([1, 1, 2, 2, 1])))
    out, _ = _feed(merger, range(30))
    assert out[4][0] == 22 and out[4][5] is True


def test_a_class_with_nothing_to_emit_does_not_stop_the_others():
    """At the recompute after C arrives, class 1 holds only A (emitted) and B (decayed below min_score): class 2's
    C must still get its chain, and is proven at its end."""
    merger = OnlineSoftNMS(InferConfig(), 0.3, horizon=100.0)
    merger.add(Candidates(np.array([[0.0, 4.0], [0.0, 5.0]]), np.array([0.9, 0.32]), np.array([1, 1])))
    assert [(d.seq, d.exact) for d in merger.settle(4.0)] == [(0, True)]
    assert merger.held == 2
    merger.add(Candidates(np.array([[4.5, 6.0]]), np.array([0.8]), np.array([2])))
    out, _ = _feed(merger, [4.5, 5, 6])
    assert out == {2: (6, 4.5, 6.0, 2, 0.8, True)}


def test_emitted_in_stream_order_by_start():
    """Detections decided in the same call leave in order of start (then arrival), not of end."""
    merger = OnlineSoftNMS(InferConfig(), 0.0, horizon=100.0)
    merger.add(Candidates(np.array([[2.0, 5.0], [0.0, 10.0]]), np.array([0.9, 0.8]), np.array([1, 2])))
    assert [(d.start, d.end, d.label) for d in merger.finish()] == [(0.0, 10.0, 2), (2.0, 5.0, 1)]

"""Soft-NMS against a plain Python loop (the textbook algorithm), and its edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from talmts.postprocess import soft_nms, soft_nms_classes, soft_nms_scores


def loop_soft_nms(segments, scores, sigma, gate=None, thresh=0.001, top_k=None):
    """One candidate per step: the best remaining one (ties: earlier start, then input order) is kept, every
    other remaining score is multiplied by exp(-tIoU^2 / sigma) (only where tIoU > gate, if given), and those
    below ``thresh`` are dropped. Returns [(input index, score when kept)] in the order kept."""
    scores = [float(x) for x in scores]
    segs = [(float(s), float(e)) for s, e in segments]
    remaining = [i for i in range(len(scores)) if scores[i] >= thresh]
    kept = []
    while remaining and (top_k is None or len(kept) < top_k):
        best = max(remaining, key=lambda i: (scores[i], -segs[i][0], -i))
        remaining.remove(best)
        kept.append((best, scores[best]))
        bs, be = segs[best]
        for j in remaining:
            s, e = segs[j]
            inter = max(0.0, min(be, e) - max(bs, s))
            union = (be - bs) + (e - s) - inter
            iou = inter / union if union > 0 else 0.0
            if gate is None or iou > gate:
                scores[j] *= math.exp(-iou * iou / sigma)
        remaining = [j for j in remaining if scores[j] >= thresh]
    return kept


def random_candidates(rng: np.random.Generator, n: int, duration: float = 60.0):
    start = rng.uniform(0, duration, n)
    length = rng.gamma(2.0, 2.0, n)
    seg = np.stack([start, start + length], 1)
    seg = np.round(seg, 1)  # shared boundaries and exact duplicates happen in real decoded output too
    return seg, rng.uniform(0.0, 1.0, n) ** 3


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("sigma", "gate", "thresh"), [(0.3, None, 0.001), (0.5, 0.3, 0.001), (0.85, None, 0.05)])
def test_matches_the_loop(seed: int, sigma: float, gate: float | None, thresh: float) -> None:
    rng = np.random.default_rng(seed)
    seg, sc = random_candidates(rng, int(rng.integers(1, 160)))
    got_seg, got_sc = soft_nms(seg, sc, sigma, gate, thresh)
    ref = loop_soft_nms(seg, sc, sigma, gate, thresh)
    assert len(got_sc) == len(ref)
    np.testing.assert_allclose(got_sc, [s for _, s in ref], rtol=1e-9)
    np.testing.assert_array_equal(got_seg, seg[[i for i, _ in ref]])


@pytest.mark.parametrize("seed", range(4))
def test_classes_are_independent_and_top_k_is_per_class(seed: int) -> None:
    rng = np.random.default_rng(50 + seed)
    seg, sc = random_candidates(rng, 300, duration=30.0)
    labels = rng.integers(1, 5, len(sc))
    idx = soft_nms_classes(seg, sc, labels, 0.3, None, 0.001, top_k=7)
    new = soft_nms_scores(seg, sc, labels, 0.3)
    assert np.all(np.diff(new[idx]) <= 0)  # best first
    for c in range(1, 5):
        mine = np.flatnonzero(labels == c)
        ref = loop_soft_nms(seg[mine], sc[mine], 0.3, top_k=7)
        got = idx[labels[idx] == c]
        assert [mine[i] for i, _ in ref] == got.tolist()
        np.testing.assert_allclose(new[got], [s for _, s in ref], rtol=1e-9)


def test_last_candidate_is_never_dropped() -> None:
    # AFSD's softnms_v2 stops while one candidate remains: a single candidate of a class was never output
    seg, sc = soft_nms(np.array([[1.0, 2.0]]), np.array([0.5]), 0.3)
    assert seg.tolist() == [[1.0, 2.0]] and sc.tolist() == [0.5]
    # two disjoint candidates: both kept unchanged (AFSD would emit only one)
    seg, sc = soft_nms(np.array([[0.0, 1.0], [5.0, 6.0]]), np.array([0.2, 0.9]), 0.3)
    assert seg.tolist() == [[5.0, 6.0], [0.0, 1.0]] and sc.tolist() == [0.9, 0.2]


def test_gaussian_decay_by_hand() -> None:
    # [0, 10] (0.9) and [5, 10] (0.8): tIoU 0.5 -> 0.8 * exp(-0.25 / 0.5) = 0.4852245
    seg, sc = soft_nms(np.array([[0.0, 10.0], [5.0, 10.0]]), np.array([0.9, 0.8]), sigma=0.5)
    assert sc.tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.5)])
    # a gate of 0.6 leaves tIoU 0.5 alone
    _, sc = soft_nms(np.array([[0.0, 10.0], [5.0, 10.0]]), np.array([0.9, 0.8]), sigma=0.5, iou_gate=0.6)
    assert sc.tolist() == [0.9, 0.8]
    # a decay below the threshold drops it: identical segments, sigma 0.1: 0.8 * e^-10 < 0.001
    seg, sc = soft_nms(np.array([[0.0, 10.0], [0.0, 10.0]]), np.array([0.9, 0.8]), sigma=0.1)
    assert sc.tolist() == [0.9]


def test_empty_threshold_and_errors() -> None:
    seg, sc = soft_nms(np.zeros((0, 2)), np.zeros(0), 0.3)
    assert seg.shape == (0, 2) and sc.shape == (0,)
    # below the threshold from the start: never kept
    _, sc = soft_nms(np.array([[0.0, 1.0], [3.0, 4.0]]), np.array([0.0005, 0.5]), 0.3, score_thresh=0.001)
    assert sc.tolist() == [0.5]
    with pytest.raises(ValueError, match="sigma must be > 0"):
        soft_nms(np.array([[0.0, 1.0]]), np.array([0.5]), 0.0)
    with pytest.raises(ValueError, match="finite"):
        soft_nms(np.array([[0.0, np.nan]]), np.array([0.5]), 0.3)
    with pytest.raises(ValueError, match="2 segments but 1 scores"):
        soft_nms(np.zeros((2, 2)), np.array([0.5]), 0.3)
    with pytest.raises(ValueError, match=r"^Soft-NMS: labels \(3,\) and scores \(2,\) differ in shape$"):
        soft_nms_scores(np.zeros((2, 2)), np.array([0.5, 0.4]), np.array([1, 1, 2]), 0.3)
    # exactly at the threshold from the start: kept, as the loop keeps it
    _, sc = soft_nms(np.array([[0.0, 1.0], [3.0, 4.0]]), np.array([0.001, 0.5]), 0.3, score_thresh=0.001)
    assert sc.tolist() == [0.5, 0.001]


def test_classes_never_decay_each_other_wherever_their_segments_lie() -> None:
    """Two classes with the same segments, starting before 0 and spanning the whole range: no decay across."""
    seg = np.array([[-5.0, 5.0], [-5.0, 5.0], [-4.0, 4.0]])
    new = soft_nms_scores(seg, np.array([0.9, 0.8, 0.7]), np.array([1, 2, 2]), 0.3)
    assert new[0] == 0.9 and new[1] == 0.8
    assert new[2] == pytest.approx(0.7 * math.exp(-((8 / 10) ** 2) / 0.3))


def test_equal_scores_across_classes_come_by_start() -> None:
    # [0, 10] starts first but ends last: start decides, then input order
    idx = soft_nms_classes(np.array([[2.0, 8.0], [0.0, 10.0], [2.0, 3.0]]), np.array([0.5, 0.5, 0.5]), [1, 2, 3], 0.3)
    assert idx.tolist() == [1, 0, 2]


def test_dense_video_sized_input_matches_the_loop_per_class() -> None:
    """Thousands of candidates in long overlapping chains (many rounds), against the loop on two classes."""
    rng = np.random.default_rng(7)
    n = 1500
    centre = np.sort(rng.uniform(0, 120, n))
    half = rng.uniform(0.5, 12, n)
    seg = np.stack([centre - half, centre + half], 1)
    sc = rng.uniform(0.01, 0.05, n)
    labels = rng.integers(1, 3, n)
    new = soft_nms_scores(seg, sc, labels, 0.3)
    for c in (1, 2):
        mine = np.flatnonzero(labels == c)
        ref = loop_soft_nms(seg[mine], sc[mine], 0.3)
        got = mine[~np.isnan(new[mine])]
        assert len(got) == len(ref)
        np.testing.assert_allclose(np.sort(new[got])[::-1], [s for _, s in ref], rtol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_exact_ties_follow_the_documented_order(seed: int) -> None:
    """Many equal scores and equal starts: the earlier start (then the earlier input) is taken first."""
    rng = np.random.default_rng(200 + seed)
    n = 120
    start = rng.integers(0, 20, n).astype(float)
    seg = np.stack([start, start + rng.integers(1, 6, n)], 1)
    sc = rng.choice([0.2, 0.5, 0.9], n)
    got_seg, got_sc = soft_nms(seg, sc, 0.5)
    ref = loop_soft_nms(seg, sc, 0.5)
    np.testing.assert_allclose(got_sc, [s for _, s in ref], rtol=1e-9)
    np.testing.assert_array_equal(got_seg, seg[[i for i, _ in ref]])


def test_soft_nms_classes_passes_the_gate_and_the_default_threshold_on() -> None:
    """soft_nms_classes with a gate, and with its default score threshold (0.001), against the loop per class."""
    rng = np.random.default_rng(7)
    seg, sc = random_candidates(rng, 200, duration=30.0)
    labels = rng.integers(1, 3, len(sc))
    for gate, thresh, idx in (
        (0.3, 0.05, soft_nms_classes(seg, sc, labels, 0.5, 0.3, 0.05)),
        (None, 0.001, soft_nms_classes(seg, sc, labels, 0.5)),
    ):
        for c in (1, 2):
            mine = np.flatnonzero(labels == c)
            ref = loop_soft_nms(seg[mine], sc[mine], 0.5, gate, thresh)
            assert idx[labels[idx] == c].tolist() == [mine[i] for i, _ in ref]


def test_soft_nms_top_k_keeps_the_loops_first_k() -> None:
    rng = np.random.default_rng(3)
    seg, sc = random_candidates(rng, 60)
    got_seg, got_sc = soft_nms(seg, sc, 0.3, top_k=4)
    ref = loop_soft_nms(seg, sc, 0.3, top_k=4)
    assert len(got_sc) == 4
    np.testing.assert_allclose(got_sc, [s for _, s in ref], rtol=1e-9)
    np.testing.assert_array_equal(got_seg, seg[[i for i, _ in ref]])


def test_float32_input_is_computed_in_float64() -> None:
    """The same numbers given as float32 give the float64 result bit for bit (decays are not rounded to float32)."""
    seg32, sc32 = random_candidates(np.random.default_rng(5), 60)
    seg32, sc32 = np.asarray(seg32, np.float32), np.asarray(sc32, np.float32)
    labels = np.zeros(60, np.int64)
    want = soft_nms_scores(seg32.astype(np.float64), sc32.astype(np.float64), labels, 0.5)
    got = soft_nms_scores(seg32, sc32, labels, 0.5)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)


def test_a_decayed_score_exactly_at_the_threshold_is_kept_and_a_tiou_exactly_at_the_gate_does_not_decay() -> None:
    # B lies on A (tIoU 1): decayed to 0.5 * exp(-1 / 0.5), which is the threshold itself: kept ("below" drops)
    floor = 0.5 * math.exp(-1.0 / 0.5)
    kept = soft_nms_scores(np.array([[0.0, 1.0], [0.0, 1.0]]), np.array([1.0, 0.5]), np.zeros(2, np.int64), 0.5,
                           None, floor)  # fmt: skip
    assert kept.tolist() == [1.0, floor]
    # tIoU of [0, 2] and [1, 2] is exactly 0.5: a gate of 0.5 decays only above it
    kept = soft_nms_scores(np.array([[0.0, 2.0], [1.0, 2.0]]), np.array([0.9, 0.8]), np.zeros(2, np.int64), 0.5, 0.5)
    assert kept.tolist() == [0.9, 0.8]


def test_non_finite_input_is_refused_by_name() -> None:
    with pytest.raises(
        ValueError, match=r"^Soft-NMS: segments and scores must be finite \(a NaN came out of the network\?\)$"
    ):
        soft_nms_scores(np.array([[0.0, 1.0]]), np.array([np.nan]), np.zeros(1, np.int64), 0.5)

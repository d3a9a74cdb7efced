"""Segment geometry: hand-computed cases and agreement between numpy, torch and a scalar reference."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from talmts.geometry import (
    distance_giou,
    distance_iou,
    distances_to_segments,
    elementwise_tiou,
    pairwise_tiou,
    segments_to_distances,
)


def scalar_tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def test_pairwise_tiou_hand_computed():
    a = np.array([[0.0, 10.0], [5.0, 6.0]])
    b = np.array([[5.0, 15.0], [20.0, 30.0], [0.0, 10.0]])
    got = pairwise_tiou(a, b)
    # [0,10] vs [5,15]: inter 5, union 15; vs [20,30]: 0; vs itself: 1.
    # [5,6] vs [5,15]: inter 1, union 10; vs [0,10]: inter 1, union 10.
    want = np.array([[5 / 15, 0.0, 1.0], [0.1, 0.0, 0.1]])
    np.testing.assert_allclose(got, want)


def test_zero_length_union_is_zero_not_nan():
    a = np.array([[3.0, 3.0]])
    assert pairwise_tiou(a, a)[0, 0] == 0.0
    t = torch.tensor([[3.0, 3.0]])
    assert pairwise_tiou(t, t)[0, 0].item() == 0.0


segs = st.lists(
    st.tuples(st.floats(0, 100), st.floats(0.01, 50)).map(lambda p: (p[0], p[0] + p[1])), min_size=1, max_size=6
)


@settings(max_examples=60, deadline=None)
@given(segs, segs)
def test_pairwise_matches_scalar_reference_numpy_and_torch(a, b):
    an, bn = np.array(a), np.array(b)
    want = np.array([[scalar_tiou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(pairwise_tiou(an, bn), want, atol=1e-9)
    got_t = pairwise_tiou(torch.tensor(an), torch.tensor(bn)).numpy()
    np.testing.assert_allclose(got_t, want, atol=1e-9)
    n = min(len(a), len(b))
    np.testing.assert_allclose(elementwise_tiou(an[:n], bn[:n]), np.diag(want[:n, :n]), atol=1e-9)


# distances on a 0.01 grid: segments shorter than geometry's 1e-12 guard are degenerate by design (tIoU 0)
dist = st.integers(0, 2000).map(lambda i: i / 100)


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 100), st.tuples(dist, dist), st.tuples(dist, dist))
def test_distance_iou_equals_boundary_iou(anchor, d1, d2):
    p, t = np.array(d1), np.array(d2)
    seg_p = distances_to_segments(np.array(anchor), p)
    seg_t = distances_to_segments(np.array(anchor), t)
    assert distance_iou(p, t) == pytest.approx(scalar_tiou(seg_p, seg_t), abs=1e-9)
    np.testing.assert_allclose(segments_to_distances(np.array(anchor), seg_p), p, atol=1e-9)


def test_giou_hand_computed():
    # anchor 0: pred [-1, 1], target [-1, 4]: iou = 2/5, enclosing = union = 5 -> giou = 0.4
    assert distance_giou(np.array([1.0, 1.0]), np.array([1.0, 4.0])) == pytest.approx(0.4)
    # pred [-2, 0+eps]: distances (2, 0); target (0, 2): touch at the anchor, inter 0, union 4, enclose 4 -> 0
    assert distance_giou(np.array([2.0, 0.0]), np.array([0.0, 2.0])) == pytest.approx(0.0)
    g = distance_giou(torch.tensor([[1.0, 1.0]], requires_grad=True), torch.tensor([[1.0, 4.0]]))
    g.sum().backward()  # differentiable in torch


def _textbook_giou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Rezatofighi et al.'s GIoU of two segments in boundary form: clamped intersection, union, enclosing hull."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    hull = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union - (hull - union) / hull


signed = st.integers(-1500, 2000).map(lambda i: i / 100)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 100), st.tuples(signed, signed), st.tuples(dist, dist))
def test_distance_giou_equals_the_textbook_giou_also_for_disjoint_segments(anchor, d1, d2):
    """Predictions may leave the anchor (a negative distance) and miss the target altogether; the distance form
    must still give GIoU's negative values, -gap / hull."""
    assume(d1[0] + d1[1] > 0.01 and d2[0] + d2[1] > 0.01)  # segments of positive length
    seg_p = distances_to_segments(anchor, np.array(d1))
    seg_t = distances_to_segments(anchor, np.array(d2))
    expected = _textbook_giou(tuple(seg_p), tuple(seg_t))
    assert distance_giou(np.array(d1), np.array(d2)) == pytest.approx(expected, abs=1e-9)


def test_distance_and_boundary_forms_by_hand_on_batched_numpy_and_torch():
    """[B, K, 2] inputs (a batch of clips): each row converts on its own, along the last axis."""
    anchor = np.array([[2.0, 6.0], [10.0, 0.5]])  # [B=2, K=2]
    dist = np.array([[[1.0, 3.0], [0.5, 0.0]], [[4.0, 2.0], [-1.0, 1.5]]])
    seg = np.array([[[1.0, 5.0], [5.5, 6.0]], [[6.0, 12.0], [1.5, 2.0]]])  # anchor - d_s, anchor + d_e
    for lib in (np.asarray, torch.tensor):
        got = distances_to_segments(lib(anchor), lib(dist))
        np.testing.assert_allclose(np.asarray(got), seg)
        back = segments_to_distances(lib(anchor), lib(seg))
        np.testing.assert_allclose(np.asarray(back), dist)
        assert isinstance(got, type(lib(dist))) and isinstance(back, type(lib(seg)))


def test_the_zero_length_guard_is_inclusive_at_1e_12():
    """A union of exactly 1e-12 (the guard) counts as degenerate: tIoU 0, in numpy and torch."""
    a = np.array([[0.0, 1e-12]])
    assert pairwise_tiou(a, a)[0, 0] == 0.0
    assert pairwise_tiou(torch.tensor(a), torch.tensor(a))[0, 0].item() == 0.0
    b = np.array([[0.0, 2e-12]])  # just above the guard: a real segment
    assert pairwise_tiou(b, b)[0, 0] == pytest.approx(1.0)
    assert pairwise_tiou(torch.tensor(b), torch.tensor(b))[0, 0].item() == pytest.approx(1.0)

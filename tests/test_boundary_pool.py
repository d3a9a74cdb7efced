"""Boundary max pooling against a slow loop reference (forward and autograd backward), gradcheck, and the
AFSD pooling segments on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from talmts.models.boundary_pool import RangeArgmax, boundary_max_pool, frame_segments, level_segments


def loop_reference(x: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """AFSD's op written out element by element: python ints, explicit clamping, slice max."""
    b_n, c_n, length = x.shape
    out = []
    for b in range(b_n):
        rows = []
        for c in range(c_n):
            cols = []
            for n in range(segments.shape[1]):
                lo, hi = (0, 1) if c < c_n // 2 else (2, 3)
                left = min(max(int(segments[b, n, lo].item()), 0), length - 1)
                right = min(max(int(segments[b, n, hi].item()), 0), length - 1)
                cols.append(x[b, c, left] if right < left else x[b, c, left : right + 1].max())
            rows.append(torch.stack(cols))
        out.append(torch.stack(rows))
    return torch.stack(out)


def random_case(seed: int, b: int = 2, c: int = 6, length: int = 37, n: int = 23, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    # a permutation makes every value distinct, so the max (and its gradient) is unique
    x = torch.randperm(b * c * length, generator=g).to(dtype).view(b, c, length) / 7.0
    seg = torch.randint(-10, length + 10, (b, n, 4), generator=g).to(dtype)
    seg[..., :] += torch.rand(b, n, 4, generator=g, dtype=dtype) * 0.99  # fractional parts are truncated
    seg[0, 0] = torch.tensor([5.0, 2.0, 30.0, 30.0])  # an empty start range (r < l) and a single-frame end range
    seg[0, 1] = torch.tensor([-3.0, -1.0, length + 3.0, length + 9.0])  # both ranges entirely outside
    seg[0, 2] = torch.tensor([0.0, float(length - 1), 0.0, float(length - 1)])  # the whole axis
    return x, seg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_matches_loop_reference(seed: int) -> None:
    x, seg = random_case(seed)
    assert torch.equal(boundary_max_pool(x, seg), loop_reference(x, seg))


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8, 64, 100])
def test_every_range_of_short_axes(length: int) -> None:
    # every (l, r) pair once: the sparse table's power-of-two windows must cover all widths
    x = torch.randn(1, 2, length)
    pairs = [(lo, hi) for lo in range(length) for hi in range(length)]
    seg = torch.tensor([[[lo, hi, lo, hi] for lo, hi in pairs]], dtype=torch.float32)
    assert torch.equal(boundary_max_pool(x, seg), loop_reference(x, seg))


@pytest.mark.parametrize("seed", [3, 4])
def test_backward_matches_loop_reference(seed: int) -> None:
    x, seg = random_case(seed)
    w = torch.randn(x.shape[0], x.shape[1], seg.shape[1])  # a random upstream gradient
    x1 = x.clone().requires_grad_(True)
    (boundary_max_pool(x1, seg) * w).sum().backward()
    x2 = x.clone().requires_grad_(True)
    (loop_reference(x2, seg) * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_gradcheck_float64() -> None:
    x, seg = random_case(5, b=1, c=4, length=12, n=7, dtype=torch.float64)
    x = x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: boundary_max_pool(t, seg), (x,), eps=1e-6, atol=1e-8)


def test_gradient_lands_on_the_argmax_when_length_differs_from_segment_count() -> None:
    # AFSD's backward kernel uses the segment count as the time stride; with L != N it misplaces gradients
    x = torch.zeros(1, 2, 10)
    x[0, 0, 7] = 5.0  # start channel, max at 7
    x[0, 1, 2] = 4.0  # end channel, max at 2
    x.requires_grad_(True)
    seg = torch.tensor([[[6.0, 9.0, 0.0, 4.0], [0.0, 3.0, 1.0, 1.0], [7.0, 7.0, 2.0, 3.0]]])
    out = boundary_max_pool(x, seg)
    out.sum().backward()
    expected = torch.zeros(1, 2, 10)
    expected[0, 0, 7] = 2.0  # segments 0 and 2 pick index 7; segment 1 picks index 0 (all zeros: leftmost)
    expected[0, 0, 0] = 1.0
    expected[0, 1, 2] = 2.0  # segments 0 and 2 pick index 2; segment 1 picks index 1
    expected[0, 1, 1] = 1.0
    assert torch.equal(x.grad, expected)


def test_ties_send_the_gradient_to_the_leftmost_maximum() -> None:
    x = torch.tensor([[[1.0, 3.0, 0.0, 3.0, 2.0], [3.0, 3.0, 3.0, 3.0, 3.0]]], requires_grad=True)
    boundary_max_pool(x, torch.tensor([[[0.0, 4.0, 1.0, 4.0]]])).sum().backward()
    assert x.grad.tolist() == [[[0.0, 1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]]]


def test_a_tie_between_the_two_covering_windows_goes_left() -> None:
    # width-3 ranges are covered by two width-2 windows; their maxima tie at different positions
    x = torch.tensor([[[3.0, 0.0, 3.0, 1.0], [1.0, 2.0, 0.0, 2.0]]], requires_grad=True)
    boundary_max_pool(x, torch.tensor([[[0.0, 2.0, 1.0, 3.0]]])).sum().backward()
    assert x.grad.tolist() == [[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]]


def test_table_can_be_reused_and_must_match_the_input() -> None:
    x, seg = random_case(6)
    table = RangeArgmax(x)
    assert torch.equal(boundary_max_pool(x, seg, table), boundary_max_pool(x, seg))
    assert torch.equal(boundary_max_pool(x, seg[:, :5], table), loop_reference(x, seg[:, :5]))
    with pytest.raises(ValueError, match="different tensor"):
        boundary_max_pool(x.clone(), seg, table)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^boundary pooling splits channels into start/end halves: C=3 must be even$"):
        boundary_max_pool(torch.zeros(1, 3, 4), torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match=r"^boundary pooling expects features \[B, C, L\], got shape \(2, 4\)$"):
        RangeArgmax(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\[B, N, 4\]"):
        boundary_max_pool(torch.zeros(1, 2, 4), torch.zeros(1, 1, 2))


def test_level_segments_hand_computed() -> None:
    # level of 64 positions in a 256-frame clip; position c=3 predicts (10, 20) frames -> (2.5, 5) level units
    loc = torch.zeros(1, 64, 2)
    loc[0, 3] = torch.tensor([10.0, 20.0])
    seg = level_segments(loc, 64, 256)
    # left = 3 - 2.5 = 0.5, right = 3 + 5 = 8, length 7.5, inner = 1.875, outer = max(0.75, 1) = 1
    assert seg[0, 3].tolist() == [round(-0.5), round(2.375), round(6.125), 9.0]
    # a zero-length prediction at c=10: inner and outer are clamped to 1
    assert seg[0, 10].tolist() == [9.0, 11.0, 9.0, 11.0]


def test_frame_segments_hand_computed_with_and_without_plus_one() -> None:
    anchors = torch.tensor([26.0])  # e.g. position 6 of a 64-long level in a 256-frame clip
    loc = torch.tensor([[[6.0, 4.0]]])  # start 20, end 30
    # length 10: inner 2.5, outer 1 -> [19, 22.5, 27.5, 31] rounded half to even
    assert frame_segments(loc, anchors).tolist() == [[[19.0, 22.0, 28.0, 31.0]]]
    # AFSD's +1: length 11, inner 2.75, outer 1.1 -> [18.9, 22.75, 27.25, 31.1]
    assert frame_segments(loc, anchors, plus_one=True).tolist() == [[[19.0, 23.0, 27.0, 31.0]]]

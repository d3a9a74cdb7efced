"""Timelines and loss curves: what is drawn, and well-formed files."""

from __future__ import annotations

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from talmts.schema import Detection, Segment
from talmts.viz import plot_loss_curves, plot_timeline, timeline_bars
from talmts.viz.plots import _smooth

DETS = [
    Detection(1.0, 3.0, "jump", 0.9),
    Detection(1.2, 3.1, "jump", 0.05),  # below min_score: not drawn
    Detection(5.0, 6.0, "run", 0.5),
    Detection(7.0, 8.0, "run", 0.4),
    Detection(9.0, 9.5, "run", 0.3),
]
GT = [Segment(1.1, 2.9, "jump"), Segment(4.0, 4.5, "wave")]


def test_timeline_bars_filter_and_rows():
    classes, gt_bars, det_bars = timeline_bars(DETS, GT, min_score=0.1, max_per_class=2)
    assert classes == ["jump", "run", "wave"]  # a class with ground truth only still gets a row
    assert gt_bars == [(0, 1.1, 2.9), (2, 4.0, 4.5)]
    assert sorted(det_bars) == [(0, 1.0, 3.0, 0.9), (1, 5.0, 6.0, 0.5), (1, 7.0, 8.0, 0.4)]


def _pixels(img: np.ndarray, rgb, alpha: float = 1.0, tol: float = 0.02) -> np.ndarray:
    """Where ``img`` shows colour ``rgb`` drawn with opacity ``alpha`` on white."""
    want = np.asarray(rgb[:3]) * alpha + (1.0 - alpha)
    return np.abs(img[..., :3] - want).max(axis=-1) < tol


def _extent(mask: np.ndarray, height: int = 4) -> tuple[int, int]:
    """First and last pixel column of a bar (columns where it is at least ``height`` pixels tall)."""
    cols = np.flatnonzero(mask.sum(axis=0) >= height)
    assert cols.size, "the bar is not drawn"
    return int(cols[0]), int(cols[-1])


def test_timeline_png(tmp_path):
    """The picture's size follows its rows (12 x (1.2 + 0.6 per class) inches at 110 dpi); each bar is where its
    times put it, in its class's colour at its score's opacity (0.25 + 0.75 x score), ground truth in grey."""
    img = mpimg.imread(plot_timeline(DETS, tmp_path / "t.png", duration=10.0, ground_truth=GT, title="video x"))
    assert img.shape == (330, 1320, 4)  # 3 classes: jump, run, wave
    jump, run = plt.get_cmap("tab10")(0), plt.get_cmap("tab10")(1)
    # the scale from the starts of run's bars at 5 s (score 0.5) and 7 s (0.4), then every bar against it
    five, seven = _extent(_pixels(img, run, 0.625))[0], _extent(_pixels(img, run, 0.55))[0]
    per_s = (seven - five) / 2.0
    zero = five - 5.0 * per_s  # where t = 0 lies
    bars = [(jump, 0.925, 1.0, 3.0), (run, 0.625, 5.0, 6.0), (run, 0.55, 7.0, 8.0), (run, 0.475, 9.0, 9.5)]
    for colour, opacity, start, end in bars:
        first, last = _extent(_pixels(img, colour, opacity))
        assert abs(first - (zero + start * per_s)) <= 2 and abs(last + 1 - (zero + end * per_s)) <= 2, (start, end)
    assert not _pixels(img, jump, 0.25 + 0.75 * 0.05).any()  # below min_score: not drawn
    grey = _pixels(img, (0.35, 0.35, 0.35))
    bands = np.flatnonzero(grey.sum(axis=1) > 30)  # rows of the bars (text has fewer pixels of that grey)
    split = int(np.flatnonzero(np.diff(bands) > 1)[0]) + 1  # two ground-truth bars: the jump row's, then wave's
    for rows, (start, end) in zip((bands[:split], bands[split:]), [(1.1, 2.9), (4.0, 4.5)]):
        first, last = _extent(grey[rows])
        assert abs(first - (zero + start * per_s)) <= 2 and abs(last + 1 - (zero + end * per_s)) <= 2, (start, end)
    empty = mpimg.imread(plot_timeline([], tmp_path / "empty.png"))  # no detections: still a picture, one row
    assert empty.shape == (198, 1320, 4) and (empty[..., :3] < 0.5).any()  # axes and labels drawn


def test_smooth_is_a_trailing_mean():
    assert _smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert _smooth([2.0, 4.0], 5) == [2.0, 3.0]


def test_loss_curves_png(tmp_path):
    log = [{"epoch": (i + 1) / 4, "total": 5.0 / (i + 1), "coarse_cls": 1.0, "quality": 0.0} for i in range(12)]
    path = plot_loss_curves({"rgb": log, "flow": log[:6], "empty": []}, tmp_path / "loss.png")
    img = mpimg.imread(path)
    assert img.shape == (462, 1320, 4)  # 12 x 4.2 inches at 110 dpi
    # each run's total loss in its colour (rgb first, flow second) in the left panel; the empty run draws nothing
    left = img[:, :660]
    rgb, flow = (_pixels(left, plt.get_cmap("tab10")(k), tol=0.05) for k in (0, 1))
    assert rgb.sum() > 100 and flow.sum() > 100 and not _pixels(left, plt.get_cmap("tab10")(2), tol=0.05).any()
    # flow's log spans epochs 0.25-1.5 and rgb's 0.25-3 (flow's line covers rgb's where they coincide): flow's line,
    # from the left end of the axis, is (1.5 - 0.25) / (3 - 0.25) as long as the axis up to rgb's last point
    cols = np.flatnonzero(flow.any(axis=0))
    runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)  # the line, then its legend entry
    start, end = runs[0][0], runs[0][-1]
    rgb_end = np.flatnonzero(rgb.any(axis=0))[-1]
    assert (end - start) / (rgb_end - start) == pytest.approx(1.25 / 2.75, abs=0.02)

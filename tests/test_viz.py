"""Timelines and loss curves: what is drawn, and well-formed files."""

from __future__ import annotations

import matplotlib.image as mpimg

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


def test_timeline_png(tmp_path):
    path = plot_timeline(DETS, tmp_path / "t.png", duration=10.0, ground_truth=GT, title="video x")
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 1000
    assert plot_timeline([], tmp_path / "empty.png").is_file()  # no detections: still a picture


def test_smooth_is_a_trailing_mean():
    assert _smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert _smooth([2.0, 4.0], 5) == [2.0, 3.0]


def test_loss_curves_png(tmp_path):
    log = [{"epoch": (i + 1) / 4, "total": 5.0 / (i + 1), "coarse_cls": 1.0, "quality": 0.0} for i in range(12)]
    path = plot_loss_curves({"rgb": log, "flow": log[:6], "empty": []}, tmp_path / "loss.png")
    assert mpimg.imread(path).shape[1] > 1000

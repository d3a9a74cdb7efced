"""DETAD's diagnosis on hand-built cases: each false-positive type, the removal gains, the top-detection profile,
the sensitivity bins, the per-video rows; and the per-class AP against the official-style evaluator."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from talmts.evaluation import evaluate_detections
from talmts.evaluation.diagnose import (
    BACKGROUND,
    CONFUSION,
    DOUBLE,
    LOCALIZATION,
    TRUE_POSITIVE,
    WRONG_LABEL,
    diagnose,
    format_diagnosis,
    match_detections,
)
from talmts.evaluation.sensitivity import BINS, bin_of
from talmts.schema import AnnotationSet, ClassMap, Detection, Segment, Video


def _gt(videos: dict[str, list[Segment]], duration: float = 100.0) -> AnnotationSet:
    labels = sorted({s.label for segs in videos.values() for s in segs})
    return AnnotationSet(
        {v: Video(v, "test", duration=duration, annotations=segs) for v, segs in videos.items()},
        ClassMap(tuple(labels)),
    )


# v1: A 10-20, B 40-50, A 70-80. Each detection below is built to be one type at tIoU 0.5 (comment: why).
GT = _gt({"v1": [Segment(10, 20, "A"), Segment(40, 50, "B"), Segment(70, 80, "A")]})
DETS = {
    "v1": [
        Detection(40, 50, "A", 0.95),  # 0 wrong label: tIoU 1 with B's 40-50
        Detection(70, 73, "A", 0.92),  # 1 localization: tIoU 0.3 with A's 70-80
        Detection(10, 20, "A", 0.90),  # 2 true positive: A's 10-20
        Detection(11, 20, "A", 0.80),  # 3 double detection: tIoU 0.9 with A's 10-20, already taken
        Detection(45, 60, "A", 0.50),  # 4 confusion: tIoU 0.25 with B's 40-50
        Detection(90, 95, "A", 0.40),  # 5 background: overlaps nothing
        Detection(40, 50, "B", 0.95),  # 6 true positive: B's 40-50
    ],
    "v2": [Detection(0, 5, "B", 0.30)],  # 7 background: a video without ground truth
}
EXPECTED = [WRONG_LABEL, LOCALIZATION, TRUE_POSITIVE, DOUBLE, CONFUSION, BACKGROUND, TRUE_POSITIVE, BACKGROUND]


def test_each_false_positive_gets_its_detad_type():
    m = match_detections(GT, DETS, [0.5])
    assert m.error[0].tolist() == EXPECTED
    assert m.matched[0].tolist() == [-1, -1, 0, -1, -1, -1, 1, -1]  # ground-truth rows: 0 = A 10-20, 1 = B 40-50


def test_type_thresholds_are_inclusive_and_the_best_ground_truth_of_any_class_decides():
    gt = _gt({"v": [Segment(70, 80, "A"), Segment(0, 10, "A"), Segment(0, 8, "B")]})
    dets = {
        "v": [
            Detection(0, 10, "A", 0.9),  # true positive (A 0-10)
            Detection(70, 71, "A", 0.8),  # tIoU exactly 0.1 with A 70-80: localization, not background
            Detection(70, 75, "A", 0.7),  # tIoU exactly 0.5 with A 70-80: true positive at 0.5
            Detection(79.01, 80, "A", 0.6),  # tIoU 0.099 < 0.1: background
            Detection(0, 8.5, "A", 0.5),  # tIoU 0.85 with taken A 0-10 but 0.94 with B 0-8: wrong label, not double
        ]
    }
    m = match_detections(gt, dets, [0.5, 0.7])
    assert m.error[0].tolist() == [TRUE_POSITIVE, LOCALIZATION, TRUE_POSITIVE, BACKGROUND, WRONG_LABEL]
    # at 0.7 the 0.5-tIoU detection becomes a localization error; the others keep their type
    assert m.error[1].tolist() == [TRUE_POSITIVE, LOCALIZATION, LOCALIZATION, BACKGROUND, WRONG_LABEL]


def test_ap_removal_gains_profile_and_videos_by_hand():
    d = diagnose(GT, DETS, [0.5], bins="thumos")
    # A ranked: WL, LOC, TP, DBL, CONF, BG with 2 ground truths: AP = 0.5 * 1/3; B: TP then BG: AP 1
    assert d.per_class["A"] == pytest.approx([1 / 6])
    assert d.per_class["B"] == pytest.approx([1.0])
    assert d.average_mAP == pytest.approx(7 / 12)
    # without the wrong label (or the localization error) above A's true positive: AP_A = 0.5 * 1/2
    assert d.map_gain == pytest.approx(
        {"double detection": 0, "wrong label": 1 / 24, "localization": 1 / 24, "confusion": 0, "background": 0}
    )
    assert d.error_counts["background"] == [2] and d.error_counts["true positive"] == [2]
    # groups of G ranked detections per class (A: G = 2, B: G = 1), types pooled over the classes
    third = pytest.approx(1 / 3)
    g1, g2, g3 = d.fp_profile
    assert (g1["group"], g1["detections"]) == ("1G", 3)  # A: WL, LOC; B: TP
    assert (g1["true positive"], g1["wrong label"], g1["localization"], g1["background"]) == (third, third, third, 0)
    assert (g2["detections"], g2["true positive"], g2["double detection"], g2["background"]) == (3, third, third, third)
    assert (g3["group"], g3["confusion"], g3["background"]) == ("3G", 0.5, 0.5)  # A: CONF, BG
    v1, v2 = d.videos
    assert v1 == {
        "video": "v1",
        "ground_truth": 3,
        "detections": 7,
        "tp": 2,
        "fp": 5,
        "missed": 1,
        "ap": pytest.approx(7 / 12),
    }
    assert v2 == {"video": "v2", "ground_truth": 0, "detections": 1, "tp": 0, "fp": 1, "missed": 0, "ap": None}
    text = format_diagnosis(d)
    assert "wrong label" in text and "+4.2" in text  # 1/24 = 4.2 points


def test_bins_are_right_closed_with_the_first_closed():
    edges, labels = BINS["thumos"]["length"]
    values = np.array([0.0, 3.0, 3.0001, 18.0, 19.0, np.nan, -1.0])
    assert bin_of(values, edges).tolist() == [0, 0, 1, 3, 4, -1, -1]
    assert bin_of(np.array([1.0, 4.0, 5.0, 9.0]), BINS["anet"]["instances"][0]).tolist() == [0, 1, 2, 3]
    assert bin_of(np.array([1.2]), BINS["anet"]["coverage"][0]).tolist() == [-1]  # outlasts its video: no bin


def test_sensitivity_normalized_ap_per_bin_by_hand():
    # one class, N = 2 ground truths per class: a1 0-2 s (length XS, coverage 0.05 = M), a2 10-20 s (M, 0.25 = XL)
    gt = _gt({"v": [Segment(0, 2, "A"), Segment(10, 20, "A")]}, duration=40.0)
    dets = {"v": [Detection(10, 20, "A", 0.9), Detection(30, 31, "A", 0.8), Detection(0, 2, "A", 0.7)]}
    s = diagnose(gt, dets, [0.5], bins="thumos").sensitivity
    # all: TP (R .5, P_N 1), FP (P_N .5), TP (R 1, P_N 2/3): AP_N = .5 * 1 + .5 * 2/3
    assert s["base"] == pytest.approx(5 / 6)
    # bin of a1: the FP, then a1's TP (P_N = 1 * 2 / (2 + 1)); a2's TP is dropped; bin of a2: its TP first: 1
    assert s["length"]["average_mAP_N"] == pytest.approx([2 / 3, None, 1.0, None, None])
    assert s["length"]["instances"] == [1, 0, 1, 0, 0]
    assert s["coverage"]["average_mAP_N"] == pytest.approx([None, None, 2 / 3, None, 1.0])
    assert s["instances"]["average_mAP_N"] == pytest.approx([None, 5 / 6, None, None])  # 2 A's in the video: S


@pytest.mark.parametrize("degenerate", [False, True])
def test_per_class_ap_equals_the_official_style_evaluator_on_random_sets(degenerate):
    """Positive-length segments, and (degenerate) with point ground truths, point detections and inverted detections
    (end before start) among them, where the official tIoU's zero and negative unions decide the matches."""
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    videos, dets = {}, {}
    for v in range(6):
        starts = rng.uniform(0, 90, 5)
        videos[f"v{v}"] = [Segment(s, s + rng.uniform(1, 10), labels[rng.integers(3)]) for s in starts]
        starts = rng.uniform(0, 90, 25)
        dets[f"v{v}"] = [
            Detection(s, s + rng.uniform(1, 10), labels[rng.integers(3)], float(rng.uniform())) for s in starts
        ]
        if degenerate:
            points = [Segment(s, s, labels[rng.integers(3)]) for s in rng.uniform(0, 90, 2)]
            videos[f"v{v}"] += points
            for g in [*points, *videos[f"v{v}"][:3]]:
                label = g.label if rng.uniform() < 0.7 else labels[rng.integers(3)]
                dets[f"v{v}"] += [
                    Detection(g.start, g.start, label, float(rng.uniform())),  # a point at the start
                    Detection(g.end, g.start, label, float(rng.uniform())),  # inverted, exactly as long: 0/0
                    Detection(g.end + 1, g.start, label, float(rng.uniform())),  # inverted, longer: union < 0
                ]
    dets["unknown"] = [Detection(1, 2, "a", 0.99)]
    gt = _gt(videos)
    tiou = [0.1, 0.3, 0.5, 0.7]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the evaluator's count of inverted segments
        official = evaluate_detections(gt, dets, tiou)
    d = diagnose(gt, dets, tiou)
    assert d.mAP == pytest.approx(official.mAP, abs=1e-12)
    assert d.per_class.keys() == official.per_class.keys()
    for c in labels:
        assert d.per_class[c] == pytest.approx(official.per_class[c], abs=1e-12)
    # every detection has exactly one type, and the true positives are the matched ones
    m = d.matches
    assert ((m.error == TRUE_POSITIVE) == (m.matched >= 0)).all()
    assert sum(sum(c) for c in d.error_counts.values()) == len(tiou) * len(m.det_score)


def test_degenerate_segments_by_hand():
    """A point ground truth found by the same point, and an inverted detection exactly as long as a ground truth:
    the official tIoU is 0/0, a match at every threshold, ahead of real overlaps. So d0 takes the point, d1 takes
    20-30 before d2 (tIoU 1) can; d2 is then a double detection; d3 (inverted, longer: a negative union) overlaps
    nothing. AP = 1 (two true positives first), as evaluate_detections scores it; a guarded tIoU (0 for both) gave
    d2 alone as a true positive at rank 3: AP 1/6."""
    gt = _gt({"v": [Segment(10, 10, "A"), Segment(20, 30, "A")]})
    dets = {
        "v": [
            Detection(10, 10, "A", 0.9),
            Detection(30, 20, "A", 0.8),
            Detection(20, 30, "A", 0.7),
            Detection(45, 30, "A", 0.6),
        ]
    }
    d = diagnose(gt, dets, [0.5, 0.95])
    assert d.mAP == pytest.approx([1.0, 1.0])
    with pytest.warns(UserWarning, match="end before"):
        assert evaluate_detections(gt, dets, [0.5, 0.95]).mAP == pytest.approx([1.0, 1.0])
    assert d.matches.error.tolist() == [[TRUE_POSITIVE, TRUE_POSITIVE, DOUBLE, BACKGROUND]] * 2
    assert d.matches.best_tiou.tolist() == [1.0, 1.0, 1.0, 0.0]  # a zero union counts as 1 where a tIoU is shown

"""AR@AN: a hand-computed curve and a slow reference that follows the official loops."""

from __future__ import annotations

import random

import numpy as np
import pytest

from talmts.errors import InputError
from talmts.evaluation import DEFAULT_TIOU, evaluate_proposals
from talmts.schema import AnnotationSet, ClassMap, Detection, Segment, Video


def _gt(videos: dict[str, list[tuple[float, float]]]) -> AnnotationSet:
    return AnnotationSet(
        {k: Video(k, "validation", annotations=[Segment(s, e, "A") for s, e in v]) for k, v in videos.items()},
        ClassMap(("A",)),
    )


def test_hand_computed_curve() -> None:
    gt = _gt({"v1": [(0, 10), (20, 30)], "v2": [(5, 15)]})
    props = {
        "v1": [Detection(0, 10, "x", 0.9), Detection(50, 60, "x", 0.8)],
        "v2": [Detection(5, 15, "x", 0.9), Detection(40, 45, "x", 0.1)],
    }
    # 4 proposals, 2 videos: AN_max = 4 / 2 = 2 (default), ratio = 2 * 2 / 4 = 1, every proposal kept.
    # Point j uses int(2 * j / 100) proposals per video: 0 for j < 50, 1 for 50 <= j < 100, 2 at j = 100.
    # One proposal per video recalls g1 of v1 and g of v2 at every threshold: 2 of 3 ground truths.
    r = evaluate_proposals(gt, props, DEFAULT_TIOU["anet"], max_avg_proposals=None)
    expected = np.where(np.arange(1, 101) >= 50, 2 / 3, 0.0)
    assert np.allclose(r.average_recall, expected, atol=1e-15)
    assert np.allclose(r.proposals_per_video, np.arange(1, 101) / 50)
    # AUC: 0.02 * (0 + 2/3) / 2 from AN 0.98 to 1.0, then 1.0 * 2/3 up to AN 2; divided by AN_max = 2
    assert r.auc == pytest.approx((0.02 / 3 + 2 / 3) / 2, abs=1e-12)
    assert r.ar_at(2) == pytest.approx(2 / 3) and r.ar_at(1) == pytest.approx(2 / 3) and r.ar_at(0.98) == 0.0


def test_budget_scales_per_video_and_ignores_videos_without_ground_truth() -> None:
    gt = _gt({"v1": [(0, 10)]})
    props = {"v1": [Detection(30, 40, "x", 0.9), Detection(0, 10, "x", 0.5)], "zz": [Detection(0, 1, "x", 1.0)] * 2}
    # AN_max = 1: ratio = 1 * 1 / 4 (all 4 proposals count) -> v1 keeps int(2 * 0.25) = 0 proposals: recall 0,
    # on the full grid of 100 points up to AN 1
    none = evaluate_proposals(gt, props, [0.5, 0.7], max_avg_proposals=1)
    assert none.tiou == [0.5, 0.7] and none.max_avg_proposals == 1.0
    assert none.recall.shape == (2, 100) and not none.recall.any()
    assert none.average_recall.shape == (100,) and not none.average_recall.any()
    np.testing.assert_allclose(none.proposals_per_video, np.arange(1, 101) / 100)
    # AN_max = 2: ratio 1/2 -> v1 keeps its top 1 (the miss); AN_max = 4 keeps both and finds the hit.
    assert evaluate_proposals(gt, props, [0.5], max_avg_proposals=2).average_recall.max() == 0.0
    assert evaluate_proposals(gt, props, [0.5], max_avg_proposals=4).average_recall[-1] == 1.0


def reference_curve(gt: AnnotationSet, props: dict, thresholds: list[float], max_avg: float):
    """The official algorithm written as plain loops."""
    videos = [v for v in gt.videos.values() if v.annotations]
    total_all = sum(len(p) for p in props.values())
    ratio = max_avg * len(videos) / total_all
    scores, total = [], 0
    for v in videos:
        ps = sorted(enumerate(props.get(v.id, [])), key=lambda q: (-q[1].score, q[0]))
        n = min(int(len(ps) * ratio), len(ps))
        total += n
        rows = []
        for s in v.annotations:
            row = []
            for _, p in ps[:n]:
                inter = max(0.0, min(s.end, p.end) - max(s.start, p.start))
                row.append(inter / ((s.end - s.start) + (p.end - p.start) - inter))
            rows.append(row)
        scores.append((rows, n))
    pcn = [j / 100.0 * (max_avg * len(videos) / total) for j in range(1, 101)]
    curve = []
    for j in range(100):
        per_t = []
        for thr in thresholds:
            hit = npos = 0
            for rows, n in scores:
                k = min(int(n * pcn[j]), n)
                npos += len(rows)
                hit += sum(any(x >= thr for x in row[:k]) for row in rows)
            per_t.append(hit / npos)
        curve.append(sum(per_t) / len(per_t))
    return curve, [p * total / len(videos) for p in pcn]


@pytest.mark.parametrize("seed", range(5))
def test_matches_reference_on_random_cases(seed: int) -> None:
    rng = random.Random(seed)
    videos = {}
    for i in range(8):
        segs = [(s, s + rng.uniform(1, 20)) for s in (rng.uniform(0, 80) for _ in range(rng.randint(0, 4)))]
        videos[f"v{i}"] = segs
    videos["v0"] = videos["v0"] or [(1.0, 5.0)]
    props: dict[str, list[Detection]] = {}
    for _ in range(rng.randint(20, 300)):
        vid = f"v{rng.randrange(10)}"
        s = rng.uniform(0, 80)
        props.setdefault(vid, []).append(Detection(s, s + rng.uniform(0.5, 20), "x", round(rng.random(), 2)))
    gt = _gt(videos)
    for max_avg in (5, 20, 100):
        r = evaluate_proposals(gt, props, DEFAULT_TIOU["anet"], max_avg_proposals=max_avg)
        curve, an = reference_curve(gt, props, DEFAULT_TIOU["anet"], max_avg)
        assert np.allclose(r.average_recall, curve, atol=1e-12)
        assert np.allclose(r.proposals_per_video, an, atol=1e-12)


def test_default_budget_curve_points_json_and_errors() -> None:
    """AN_max defaults to 100; AR@AN reads point AN (1..100) and refuses the rest; the JSON keys; the messages."""
    gt = AnnotationSet(
        {
            "a": Video("a", "validation", annotations=[Segment(0, 10, "A")]),
            "b": Video("b", "validation", annotations=[Segment(5, 9, "A")]),  # no proposals at all: a miss
            "t": Video("t", "test", annotations=[Segment(0, 10, "A")]),  # another subset: not counted
        },
        ClassMap(("A",)),
    )
    props = {"a": [Detection(0, 10, "x", 0.9)], "t": [Detection(50, 60, "x", 0.9)]}
    r = evaluate_proposals(gt, props, [0.5], subset="validation")
    assert r.tiou == [0.5] and r.recall.shape == (1, 100) and np.allclose(r.recall, 0.5)
    # 2 proposals, 2 videos, AN_max 100: ratio 100, "a" keeps its one proposal; from the first point on it recalls
    # "a"'s ground truth: 1 of 2 ground truths of the subset ("t" would add a miss)
    assert r.max_avg_proposals == 100.0
    assert r.proposals_per_video[-1] == pytest.approx(100.0) and r.proposals_per_video[0] == pytest.approx(1.0)
    assert np.allclose(r.average_recall, 0.5)
    assert r.ar_at(1) == 0.5 and r.ar_at(100) == 0.5
    for outside in (0.4, 100.6, 101):
        with pytest.raises(ValueError, match=rf"AN {outside} is outside the curve \(max 100.0\)"):
            r.ar_at(outside)
    assert r.to_json() == {
        "tiou": [0.5],
        "average_recall": [0.5] * 100,
        "proposals_per_video": pytest.approx([float(x) for x in np.arange(1, 101)]),
        "auc": pytest.approx(0.5 * 99 / 100),
    }
    assert evaluate_proposals(gt, props, [0.5], subset="test").average_recall[-1] == 0.0
    with pytest.raises(InputError, match="no ground truth in subset 'training': nothing to evaluate"):
        evaluate_proposals(gt, props, [0.5], subset="training")
    with pytest.raises(InputError, match="^no proposals to evaluate$"):
        evaluate_proposals(gt, {"a": []}, [0.5])
    one = evaluate_proposals(gt, {"a": [Detection(0, 10, "x", 0.9)]}, [0.5], max_avg_proposals=1)  # one proposal
    assert one.average_recall[-1] == pytest.approx(1 / 3)  # 1 of the 3 ground truths (all videos)


def test_a_video_that_keeps_nothing_does_not_stop_the_others() -> None:
    """The first video's budget rounds to 0 proposals; the videos after it still count."""
    gt = _gt({"v0": [(0, 10)], "v1": [(0, 10)], "v2": [(20, 30)]})
    props = {
        "v0": [Detection(0, 10, "x", 0.9)],
        "v1": [Detection(0, 10, "x", 0.9), Detection(1, 9, "x", 0.8)],
        "v2": [Detection(20, 30, "x", 0.9), Detection(0, 1, "x", 0.5)],
    }
    # AN_max 1.5: ratio = 1.5 * 3 / 5 = 0.9 -> v0 keeps int(0.9) = 0, v1 and v2 keep int(1.8) = 1 each
    r = evaluate_proposals(gt, props, [0.5], max_avg_proposals=1.5)
    curve, an = reference_curve(gt, props, [0.5], 1.5)
    assert np.allclose(r.average_recall, curve) and np.allclose(r.proposals_per_video, an)
    assert r.average_recall[-1] == pytest.approx(2 / 3)


def test_a_proposal_at_exactly_the_threshold_recalls() -> None:
    gt = _gt({"v": [(0, 10)]})
    r = evaluate_proposals(gt, {"v": [Detection(0, 5, "x", 0.9)]}, [0.5, 0.6], max_avg_proposals=1)  # tIoU 0.5
    np.testing.assert_array_equal(r.recall[:, -1], [1.0, 0.0])

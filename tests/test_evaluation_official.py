"""Detection files the official ActivityNet evaluator scores, scored with its numbers: starts before 0, ends past the
video, ends before starts; and the warning that counts them."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest

from talmts.evaluation import evaluate_detections
from talmts.evaluation.detection import unusual_segments
from talmts.schema import AnnotationSet, ClassMap, Detection, Segment, Video


def official_ap(gt: AnnotationSet, dets: dict[str, list[Detection]], thresholds: list[float]) -> dict[str, list]:
    """The official algorithm step by step (``compute_average_precision_detection`` and ``segment_iou``), with score
    ties in input order and equal tIoU to the ground truth listed last, as talmts fixes them."""
    classes = sorted({s.label for v in gt.videos.values() for s in v.annotations})
    out = {}
    for c in classes:
        gts = [(vid, s) for vid, v in gt.videos.items() for s in v.annotations if s.label == c]
        preds = [(vid, d) for vid, ds in dets.items() for d in ds if d.label == c]
        order = sorted(range(len(preds)), key=lambda i: (-preds[i][1].score, i))
        lock = np.full((len(thresholds), len(gts)), -1)
        tp = np.zeros((len(thresholds), len(preds)))
        fp = np.zeros((len(thresholds), len(preds)))
        for rank, i in enumerate(order):
            vid, d = preds[i]
            mine = [j for j, (v, _) in enumerate(gts) if v == vid]
            if not mine:
                fp[:, rank] = 1
                continue
            seg = np.array([[gts[j][1].start, gts[j][1].end] for j in mine])
            t1 = np.maximum(d.start, seg[:, 0])
            t2 = np.minimum(d.end, seg[:, 1])
            inter = (t2 - t1).clip(0)
            union = (seg[:, 1] - seg[:, 0]) + (d.end - d.start) - inter
            with np.errstate(invalid="ignore", divide="ignore"):
                tiou = inter.astype(float) / union
            # descending; NaN first (numpy sorts NaN last); equal values: the later ground truth first
            ranked = sorted(range(len(mine)), key=lambda k: (not np.isnan(tiou[k]), -np.nan_to_num(tiou[k]), -k))
            for t, thr in enumerate(thresholds):
                for k in ranked:
                    if tiou[k] < thr:
                        fp[t, rank] = 1
                        break
                    if lock[t, mine[k]] >= 0:
                        continue
                    tp[t, rank] = 1
                    lock[t, mine[k]] = rank
                    break
                if fp[t, rank] == 0 and tp[t, rank] == 0:
                    fp[t, rank] = 1
        aps = []
        for t in range(len(thresholds)):
            tpc, fpc = np.cumsum(tp[t]), np.cumsum(fp[t])
            rec = tpc / len(gts)
            with np.errstate(invalid="ignore", divide="ignore"):
                prec = tpc / (tpc + fpc)
            mprec = np.hstack([[0], prec, [0]])
            mrec = np.hstack([[0], rec, [1]])
            for k in range(len(mprec) - 2, -1, -1):
                mprec[k] = max(mprec[k], mprec[k + 1])
            idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
            aps.append(float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])))
        out[c] = aps
    return out


def _case(seed: int) -> tuple[AnnotationSet, dict[str, list[Detection]]]:
    rng = random.Random(seed)
    videos = {}
    for v in range(4):
        segs = []
        for _ in range(rng.randint(1, 4)):
            s = float(rng.randint(0, 20))
            segs.append(Segment(s, s + rng.randint(1, 6), rng.choice("AB")))
        videos[f"v{v}"] = Video(f"v{v}", "test", 30.0, None, segs)
    gt = AnnotationSet(videos, ClassMap(("A", "B", "C")))  # C never has ground truth: not a class of the mAP
    dets: dict[str, list[Detection]] = {}
    for _ in range(rng.randint(5, 60)):
        vid = f"v{rng.randrange(5)}"  # v4 has no ground truth
        s = float(rng.randint(-5, 34))  # before 0 and past the 30 s duration
        length = rng.choice([-6, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8])  # negative: end before start
        dets.setdefault(vid, []).append(Detection(s, s + length, rng.choice("ABC"), round(rng.random(), 1)))
    return gt, dets


@pytest.mark.parametrize("seed", range(25))
def test_unusual_segments_score_as_the_official_evaluator(seed: int) -> None:
    gt, dets = _case(seed)
    thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = evaluate_detections(gt, dets, thresholds)
    ref = official_ap(gt, dets, thresholds)
    assert set(ours.per_class) == set(ref)  # the classes come from the reference, not from our list
    for c, aps in ref.items():
        assert ours.per_class[c] == pytest.approx(aps, abs=1e-12)
    # the official mAP: the plain mean over the classes with ground truth, per threshold
    ref_map = [sum(aps[t] for aps in ref.values()) / len(ref) for t in range(len(thresholds))]
    assert ours.tiou == pytest.approx(thresholds)
    assert ours.mAP == pytest.approx(ref_map, abs=1e-12)
    assert ours.average_mAP == pytest.approx(sum(ref_map) / len(ref_map), abs=1e-12)


def test_inverted_detection_as_long_as_the_ground_truth_matches_as_official() -> None:
    """[6, 4] against [0, 2]: no overlap, union 2 + (-2) - 0 = 0, so the official tIoU is 0/0 = NaN, which matches."""
    gt = AnnotationSet({"v": Video("v", "test", 10.0, None, [Segment(0, 2, "A")])}, ClassMap(("A",)))
    with pytest.warns(UserWarning, match="1 end before start"):
        r = evaluate_detections(gt, {"v": [Detection(6, 4, "A", 0.9)]}, [0.5, 0.9])
    assert r.mAP == [1.0, 1.0]
    with pytest.warns(UserWarning):  # longer than the ground truth: union < 0, the official -0.0 matches nothing
        r = evaluate_detections(gt, {"v": [Detection(9, 4, "A", 0.9)]}, [0.5])
    assert r.mAP == [0.0]


def test_negative_start_scores_with_its_true_tiou() -> None:
    """[-2, 4] against [0, 4]: tIoU 4 / 6; kept at 0.6, missed at 0.7 (clipping it to 0 would give 1.0)."""
    gt = AnnotationSet({"v": Video("v", "test", 10.0, None, [Segment(0, 4, "A")])}, ClassMap(("A",)))
    with pytest.warns(UserWarning, match="1 start before 0 s"):
        r = evaluate_detections(gt, {"v": [Detection(-2, 4, "A", 0.9)]}, [0.6, 0.7])
    assert r.mAP == [1.0, 0.0]


def test_unusual_segments_are_counted() -> None:
    gt = AnnotationSet(
        {"v": Video("v", "test", 10.0, None, [Segment(0, 4, "A")]), "w": Video("w", "test", None, None, [])},
        ClassMap(("A",)),
    )
    dets = {
        "v": [
            Detection(-1, 3, "A", 0.5),
            Detection(2, 11, "A", 0.5),
            Detection(5, 4, "A", 0.5),
            Detection(1, 2, "A", 1),
        ],
        "w": [Detection(0, 99, "A", 0.5)],  # no duration known: not "past the end"
        "x": [Detection(-3, -4, "A", 0.5)],  # a video outside the ground truth
    }
    assert unusual_segments(gt, dets) == {
        "start before 0 s": 2,
        "end after the video's duration": 1,
        "end before start": 2,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plain detections: no warning at all
        evaluate_detections(gt, {"v": [Detection(0, 4, "A", 0.5)]}, [0.5])


def test_unusual_segment_boundaries_and_the_warning() -> None:
    """Ending exactly at the duration is not past it; a zero-length detection does not end before it starts."""
    gt = AnnotationSet({"v": Video("v", "test", 10.0, None, [Segment(0, 4, "A")])}, ClassMap(("A",)))
    plain = {"v": [Detection(6, 10, "A", 0.5), Detection(3, 3, "A", 0.5)]}
    assert unusual_segments(gt, plain) == {
        "start before 0 s": 0,
        "end after the video's duration": 0,
        "end before start": 0,
    }
    odd = {"v": [Detection(-1, 3, "A", 0.5), Detection(5, 4, "A", 0.5), Detection(1, 2, "A", 0.5)]}
    with pytest.warns(UserWarning) as caught:
        evaluate_detections(gt, odd, [0.5])
    assert [str(w.message) for w in caught] == [
        "of 3 detections, 1 start before 0 s, 1 end before start: scored as written, as the official ActivityNet "
        "evaluator does (clip them to [0, duration] before writing if that is not intended)"
    ]

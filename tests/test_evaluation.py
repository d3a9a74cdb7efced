"""Detection mAP: hand-computed cases, a slow reference written another way, and invariants."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talmts.evaluation import DEFAULT_TIOU, EvalResult, evaluate_detections, format_table
from talmts.evaluation.matching import greedy_assign, greedy_match, interpolated_ap, ranked_ap
from talmts.formats import AMBIGUOUS, read_annotations
from talmts.schema import AnnotationSet, ClassMap, Detection, SchemaError, Segment, Video


def _gt(videos: dict[str, list[tuple[float, float, str]]], subset: str = "test") -> AnnotationSet:
    vids = {k: Video(k, subset, 100.0, 10.0, [Segment(*s) for s in segs]) for k, segs in videos.items()}
    labels = {s[2] for segs in videos.values() for s in segs if s[2] != AMBIGUOUS}
    return AnnotationSet(vids, ClassMap.from_labels(labels))


def _det(*items: tuple[float, float, str, float]) -> list[Detection]:
    return [Detection(*it) for it in items]


# ---- hand-computed cases ---------------------------------------------------------------------------------------


def test_hand_case_locked_ground_truth_and_thresholds() -> None:
    gt = _gt({"v": [(0, 10, "A"), (20, 30, "A")]})
    dets = {"v": _det((0, 10, "A", 0.9), (1, 10, "A", 0.8), (20, 25, "A", 0.7))}
    # d1 [0,10] tIoU 1 with g1 -> TP. d2 [1,10]: tIoU 0.9 with g1, but g1 is taken; 0 with g2 -> FP.
    # d3 [20,25]: tIoU 5/10 = 0.5 with g2 -> TP at 0.5, FP at 0.7.
    # thr 0.5: precision [1, 1/2, 2/3], recall [1/2, 1/2, 1]; envelope [1, 2/3, 2/3]
    #          AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    # thr 0.7: precision [1, 1/2, 1/3], recall [1/2, 1/2, 1/2] -> AP = 1/2 * 1 = 1/2
    r = evaluate_detections(gt, dets, [0.5, 0.7])
    assert r.mAP == pytest.approx([5 / 6, 1 / 2], abs=1e-15)
    assert r.average_mAP == pytest.approx(2 / 3, abs=1e-15)
    assert r.per_class == {"A": pytest.approx([5 / 6, 1 / 2], abs=1e-15)}


def test_hand_case_false_positives_on_other_videos_and_class_without_detections() -> None:
    gt = _gt({"v": [(0, 10, "A"), (50, 60, "B")], "u": []})
    dets = {"w": _det((0, 10, "A", 0.9)), "u": _det((0, 10, "A", 0.7)), "v": _det((0, 10, "A", 0.5))}
    # Class A: ranks w (0.9, video not in the ground truth: FP), u (0.7, video without A: FP), v (0.5, TP).
    #   precision [0, 0, 1/3], recall [0, 0, 1] -> AP = 1 * 1/3.
    # Class B: no detections -> AP 0.  mAP = (1/3 + 0) / 2 = 1/6.
    r = evaluate_detections(gt, dets, [0.5])
    assert r.per_class["A"] == pytest.approx([1 / 3], abs=1e-15) and r.per_class["B"] == [0.0]
    assert r.mAP == pytest.approx([1 / 6], abs=1e-15)
    # the class without detections listed first: the classes after it are still scored
    r = evaluate_detections(gt, {"v": _det((50, 60, "B", 0.5))}, [0.5])
    assert list(r.per_class) == ["A", "B"] and r.per_class == {"A": [0.0], "B": [1.0]}


def test_no_numpy_warning_escapes_on_zero_unions_and_dropped_false_positives() -> None:
    """A point against a point (0/0 tIoU) and a top-ranked detection dropped for overlapping Ambiguous ground truth
    (0/0 precision at its rank) are scored without a RuntimeWarning reaching the user."""
    gt = _gt({"v": [(5, 5, "A"), (0, 4, "A"), (20, 30, AMBIGUOUS)]})
    dets = {"v": _det((21, 29, "A", 0.9), (5, 5, "A", 0.8), (0, 4, "A", 0.7))}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = evaluate_detections(gt, dets, [0.5])
    assert r.mAP == [1.0]


def test_hand_case_greedy_takes_highest_tiou_not_best_assignment() -> None:
    gt = _gt({"v": [(0, 10, "A"), (5, 15, "A")]})
    # d1 [2,12]: tIoU 8/12 = 0.667 with g1, 7/13 = 0.538 with g2 -> takes g1 (highest), though g2 would do.
    # d2 [0,8]:  tIoU 0.8 with g1 (taken), 3/15 = 0.2 with g2 -> FP at 0.5.
    # thr 0.5: precision [1, 1/2], recall [1/2, 1/2] -> AP = 1/2.   thr 0.1: both match -> AP 1.
    r = evaluate_detections(gt, {"v": _det((2, 12, "A", 0.9), (0, 8, "A", 0.8))}, [0.1, 0.5])
    assert r.mAP == pytest.approx([1.0, 0.5], abs=1e-15)


def test_equal_tiou_goes_to_the_ground_truth_listed_last() -> None:
    # d1 [0,5] has tIoU 2/5 with g1 [0,2] and 2/5 with g2 [3,5] (bit-equal). As the official descending
    # argsort()[::-1] (over a stable sort) it takes g2, the one listed last; d2 [3,5] then finds g2 taken -> FP.
    # thr 0.3: precision [1, 1/2], recall [1/2, 1/2] -> AP 1/2.  Listing g2 first makes d1 take g1: AP 1.
    dets = {"v": _det((0, 5, "A", 0.9), (3, 5, "A", 0.8))}
    assert evaluate_detections(_gt({"v": [(0, 2, "A"), (3, 5, "A")]}), dets, [0.3]).mAP == [0.5]
    assert evaluate_detections(_gt({"v": [(3, 5, "A"), (0, 2, "A")]}), dets, [0.3]).mAP == [1.0]


def test_equal_tiou_goes_to_the_ground_truth_listed_last_in_a_large_file() -> None:
    # The case above in 150 videos, two classes interleaved (A, B, A, B per video): the ground truth is sorted into
    # (class, video) blocks, and a sort that does not keep the annotation order inside a block (numpy's default
    # for more than 16 rows) would swap g1 and g2 in some videos, where d2 then becomes a TP.
    # Per class: the 150 d1 (score 0.9) all TP, the 150 d2 all FP: precision 1 up to recall 1/2 -> AP 1/2.
    n = 150
    gt = _gt({f"v{i}": [(0, 2, "A"), (0, 2, "B"), (3, 5, "A"), (3, 5, "B")] for i in range(n)})
    dets = {f"v{i}": _det((0, 5, "A", 0.9), (3, 5, "A", 0.8), (0, 5, "B", 0.9), (3, 5, "B", 0.8)) for i in range(n)}
    r = evaluate_detections(gt, dets, [0.3])
    assert r.per_class == {"A": [0.5], "B": [0.5]}


def test_point_detection_against_point_ground_truth_matches_as_official() -> None:
    # The official tIoU of two zero-length segments is 0/0 = NaN, which its loop accepts at every threshold.
    gt = _gt({"v": [(5, 5, "A"), (0, 10, "A")]})
    r = evaluate_detections(gt, {"v": _det((7, 7, "A", 0.9), (0, 10, "A", 0.8))}, [0.5, 0.95])
    assert r.mAP == [1.0, 1.0]
    # A zero-length detection against a real segment overlaps nothing: FP. precision [0, 1/2] -> AP 1/2.
    gt = _gt({"v": [(0, 10, "A")]})
    assert evaluate_detections(gt, {"v": _det((5, 5, "A", 0.9), (0, 10, "A", 0.8))}, [0.5]).mAP == [0.5]


def test_threshold_is_inclusive() -> None:
    gt = _gt({"v": [(0, 10, "A")]})
    # [0, 5] has tIoU exactly 0.5 (binary-exact), a match at 0.5 but not at 0.5 + 1 ulp.
    r = evaluate_detections(gt, {"v": _det((0, 5, "A", 1.0))}, [0.5, np.nextafter(0.5, 1)])
    assert r.mAP == [1.0, 0.0]


def test_score_ties_keep_input_order() -> None:
    gt = _gt({"v": [(0, 10, "A")]})
    fp, tp = (30, 40, "A", 0.5), (0, 10, "A", 0.5)
    # FP first: precision [0, 1/2], recall [0, 1] -> AP 1/2.  TP first: AP 1.
    assert evaluate_detections(gt, {"v": _det(fp, tp)}, [0.5]).mAP == [0.5]
    assert evaluate_detections(gt, {"v": _det(tp, fp)}, [0.5]).mAP == [1.0]


def test_ambiguous_ground_truth_removes_overlapping_false_positives() -> None:
    gt = _gt({"v": [(0, 10, "A"), (20, 30, AMBIGUOUS)]})
    dets = {"v": _det((21, 29, "A", 0.9), (0, 10, "A", 0.8))}
    # d1 overlaps the Ambiguous segment and matches nothing: not counted. d2 TP -> AP 1 (it would be 1/2).
    r = evaluate_detections(gt, dets, [0.5])
    assert list(r.per_class) == ["A"] and r.mAP == [1.0]
    dropped = _gt({"v": [(0, 10, "A")]})
    assert evaluate_detections(dropped, dets, [0.5]).mAP == [0.5]
    # touching the Ambiguous segment at its end shares no time: still a false positive (AP 1/2)
    touching = {"v": _det((30, 35, "A", 0.9), (0, 10, "A", 0.8))}
    assert evaluate_detections(gt, touching, [0.5]).mAP == [0.5]


def test_unknown_label_warns_or_fails_under_strict() -> None:
    gt = _gt({"v": [(0, 10, "A")]})
    dets = {"v": _det((0, 10, "Zzz", 0.99), (0, 10, "A", 0.5))}
    with pytest.warns(UserWarning, match="'Zzz' \\(1\\)"):
        r = evaluate_detections(gt, dets, [0.5])
    assert r.mAP == [1.0]  # the unknown label is ignored, not a false positive of class A
    with pytest.raises(SchemaError, match="Zzz") as info:
        evaluate_detections(gt, dets, [0.5], strict=True)
    assert (info.value.record, info.value.field) == ("v", "label")
    assert str(info.value) == (
        "<detections>: record 'v', field 'label': label 'Zzz' has no ground truth in the ground truth (fix the labels)"
    )
    more = {"v": _det((0, 10, "Zzz", 0.9), (0, 10, "Bee", 0.9), (0, 10, "Zzz", 0.9)), "w": _det((0, 1, "Zzz", 0.9))}
    with pytest.warns(UserWarning) as caught:
        evaluate_detections(gt, more, [0.5])
    (w,) = caught
    assert (
        str(w.message) == "ignored detections whose label has no ground truth in the ground truth: 'Bee' (1), 'Zzz' (3)"
    )
    with pytest.warns(UserWarning, match="no ground truth in subset 'test': 'Bee' \\(1\\), 'Zzz' \\(3\\)$"):
        evaluate_detections(gt, more, [0.5], subset="test")
    with pytest.raises(SchemaError, match=r"^<detections>: record 'v', field 'label': label 'Zzz' .* in subset 'test'"):
        evaluate_detections(gt, more, [0.5], subset="test", strict=True)


def test_subset_selects_classes_and_videos() -> None:
    gt = AnnotationSet(
        {
            "a": Video("a", "validation", annotations=[Segment(0, 10, "A")]),
            "b": Video("b", "test", annotations=[Segment(0, 10, "B")]),
        },
        ClassMap(("A", "B")),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = evaluate_detections(gt, {"a": _det((0, 10, "A", 1.0)), "b": _det((0, 10, "B", 1.0))}, [0.5], "test")
    assert list(r.per_class) == ["B"] and r.mAP == [1.0]
    with pytest.raises(ValueError, match="no ground truth"):
        evaluate_detections(gt, {}, [0.5], subset="train")


def test_interpolated_ap_kernel() -> None:
    # precision [1, 0.5, 0.667], recall [0.5, 0.5, 1]: envelope 1 up to recall 0.5, 2/3 up to 1 -> 5/6
    assert interpolated_ap(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(5 / 6)
    assert interpolated_ap(np.array([]), np.array([])) == 0.0


def test_greedy_match_kernel() -> None:
    tiou = np.array([[0.9, 0.6], [0.8, 0.0], [0.7, 0.55]])
    # thr 0.5: d0 -> g0; d1 only g0 (taken) -> FP; d2 -> g1 (0.55).  thr 0.58: d2 has no free candidate.
    assert greedy_match(tiou, np.array([0.5, 0.58])).tolist() == [[True, False, True], [True, False, False]]
    matched = greedy_assign(tiou, np.array([0.5, 0.58]))
    assert matched.dtype == np.int64 and matched.tolist() == [[0, -1, 1], [0, -1, -1]]
    # one ground truth: the first detection at or above the threshold takes it
    assert greedy_assign(np.array([[0.4], [0.7], [0.9]]), np.array([0.5])).tolist() == [[-1, 0, -1]]
    assert greedy_assign(np.zeros((2, 0)), np.array([0.5])).tolist() == [[-1, -1]]
    assert greedy_assign(np.zeros((0, 2)), np.array([0.5])).shape == (1, 0)


def test_ranked_ap_by_hand() -> None:
    # TP, FP, TP against 3 ground truths: precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3 -> AP = 1/3 + 1/3 * 2/3
    assert ranked_ap(np.array([True, False, True]), 3) == pytest.approx(1 / 3 + 2 / 9)
    # DETAD's normalized AP with N = 6: precision = R * 6 / (R * 6 + FP): 1, 2/3, 4/5
    assert ranked_ap([True, False, True], 3, normalized_by=6) == pytest.approx(1 / 3 + 1 / 3 * 4 / 5)
    assert ranked_ap(np.array([], dtype=bool), 3) == 0.0 and ranked_ap([True], 0) == 0.0
    assert ranked_ap([False, False], 2) == 0.0
    assert ranked_ap([True], 1) == 1.0 and ranked_ap([True], 2) == 0.5
    assert ranked_ap([1, 0, 1], 3) == pytest.approx(1 / 3 + 2 / 9)  # 0/1 flags read as booleans


# ---- slow reference: one Python loop per threshold, class and detection ------------------------------------------


def _tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else float("inf")  # point against point: the official 0/0 matches


def reference_map(gt: AnnotationSet, dets: dict[str, list[Detection]], thresholds: list[float]) -> dict:
    gts = [(vid, s) for vid, v in gt.videos.items() for s in v.annotations]
    amb = [(vid, s) for vid, s in gts if s.label == AMBIGUOUS]
    classes = [c for c in gt.classes.names if any(s.label == c for _, s in gts)]
    flat = [(vid, d) for vid, ds in dets.items() for d in ds]
    out = {}
    for c in classes:
        mine = [(vid, s) for vid, s in gts if s.label == c]
        by_video: dict[str, list] = {}
        for gi, (vid, s) in enumerate(mine):
            by_video.setdefault(vid, []).append((gi, s))
        ranked = sorted((p for p in enumerate(flat) if p[1][1].label == c), key=lambda p: (-p[1][1].score, p[0]))
        aps = []
        for thr in thresholds:
            used: set[int] = set()
            flags = []  # True = TP, False = FP; ignored detections are left out
            for _, (vid, d) in ranked:
                best, best_iou = None, -1.0
                for gi, s in by_video.get(vid, []):
                    iou = _tiou((d.start, d.end), (s.start, s.end))
                    if gi not in used and iou >= thr and iou >= best_iou:  # ties: the last listed
                        best, best_iou = gi, iou
                if best is not None:
                    used.add(best)
                    flags.append(True)
                elif not any(v == vid and min(d.end, s.end) > max(d.start, s.start) for v, s in amb):
                    flags.append(False)
            # AP = (1 / npos) * sum over true positives of the best precision at that rank or later
            prec = [sum(flags[: k + 1]) / (k + 1) for k in range(len(flags))]
            aps.append(sum(max(prec[k:]) for k in range(len(flags)) if flags[k]) / len(mine))
        out[c] = aps
    return out


def _random_case(rng: random.Random, n_videos: int, n_classes: int, n_dets: int, ambiguous: bool = False):
    labels = [f"c{i}" for i in range(n_classes)]
    videos = {}
    for v in range(n_videos):
        segs = []
        for _ in range(rng.randint(0, 6)):
            s = round(rng.uniform(0, 90), 1)  # a 0.1 s grid as THUMOS14: equal tIoU between ground truths happens
            segs.append((s, round(s + rng.uniform(0.5, 10), 1), rng.choice(labels)))
        if ambiguous and rng.random() < 0.5:
            s = rng.uniform(0, 90)
            segs.append((s, s + rng.uniform(0.5, 5), AMBIGUOUS))
        videos[f"v{v}"] = segs
    gt = _gt(videos)
    dets: dict[str, list[Detection]] = {}
    for _ in range(n_dets):
        vid = f"v{rng.randrange(n_videos + 2)}"  # two videos without ground truth
        near = videos.get(vid) if rng.random() < 0.7 else None
        if near:
            s, e, lab = rng.choice(near)
            s, e = round(s + rng.gauss(0, 1), 1), round(e + rng.gauss(0, 1), 1)
            lab = lab if lab != AMBIGUOUS and rng.random() < 0.8 else rng.choice(labels)
        else:
            s = rng.uniform(0, 90)
            e, lab = s + rng.uniform(0.5, 10), rng.choice(labels)
        score = round(rng.random(), 2)  # two decimals: plenty of ties
        s, e = (round(s, 1), round(e, 1)) if rng.random() < 0.5 else (s, e)
        dets.setdefault(vid, []).append(Detection(max(0.0, s), max(0.0, s, e), lab, score))
    return gt, dets


@pytest.mark.parametrize("seed", range(12))
def test_matches_slow_reference_on_random_cases(seed: int) -> None:
    rng = random.Random(seed)
    gt, dets = _random_case(rng, n_videos=6, n_classes=3, n_dets=rng.randint(0, 120), ambiguous=seed % 3 == 0)
    if not any(s.label != AMBIGUOUS for v in gt.videos.values() for s in v.annotations):
        pytest.skip("no ground truth drawn")
    thresholds = DEFAULT_TIOU["thumos"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = evaluate_detections(gt, dets, thresholds)
    ref = reference_map(gt, dets, thresholds)
    assert r.per_class.keys() == ref.keys()
    for c in ref:
        assert r.per_class[c] == pytest.approx(ref[c], abs=1e-12)
    assert r.mAP == pytest.approx([float(np.mean([ref[c][t] for c in ref])) for t in range(7)], abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_matches_slow_reference_with_many_equal_tious(seed: int) -> None:
    # Integer boundaries and equal-length ground truths: detections often overlap two ground truths equally.
    rng = random.Random(100 + seed)
    videos = {f"v{i}": [(float(s), float(s + 2), "A") for s in rng.sample(range(0, 30, 3), 5)] for i in range(3)}
    dets: dict[str, list[Detection]] = {}
    for _ in range(40):
        s = rng.randrange(0, 30)
        dets.setdefault(f"v{rng.randrange(3)}", []).append(Detection(s, s + rng.randint(2, 8), "A", rng.random()))
    gt = _gt(videos)
    thresholds = [0.1, 0.2, 0.25, 0.3, 0.4, 0.5]
    r = evaluate_detections(gt, dets, thresholds)
    assert r.per_class["A"] == pytest.approx(reference_map(gt, dets, thresholds)["A"], abs=1e-12)


def test_matches_slow_reference_on_real_thumos_ground_truth(shared_data: Path) -> None:
    gt = read_annotations(shared_data / "thumos14" / "thumos_gt.json").subset("test")
    rng = random.Random(7)
    labels = list(gt.classes.names)
    dets: dict[str, list[Detection]] = {}
    for vid, v in list(gt.videos.items())[:60]:
        for s in v.annotations:
            for _ in range(3):  # jittered copies, sometimes with the wrong label
                lab = s.label if rng.random() < 0.8 else rng.choice(labels)
                a, b = sorted((max(0.0, s.start + rng.gauss(0, 1.5)), max(0.0, s.end + rng.gauss(0, 1.5))))
                dets.setdefault(vid, []).append(Detection(a, b, lab, rng.random()))
    r = evaluate_detections(gt, dets, DEFAULT_TIOU["thumos"])
    ref = reference_map(gt, dets, DEFAULT_TIOU["thumos"])
    for c in ref:
        assert r.per_class[c] == pytest.approx(ref[c], abs=1e-12)
    assert 0.05 < r.average_mAP < 0.9  # a non-trivial case: neither everything nor nothing matched


# ---- invariants (hypothesis) -----------------------------------------------------------------------------------

_seg = st.tuples(st.integers(0, 40), st.integers(1, 15)).map(lambda p: (float(p[0]), float(p[0] + p[1])))
_gt_items = st.lists(
    st.tuples(st.sampled_from(["v0", "v1"]), _seg, st.sampled_from(["A", "B"])), min_size=1, max_size=8
)
_det_items = st.lists(st.tuples(st.sampled_from(["v0", "v1", "v2"]), _seg, st.sampled_from(["A", "B"])), max_size=25)


def _build(gt_items, det_items, scores):
    videos: dict[str, list] = {"v0": [], "v1": []}
    for vid, (s, e), lab in gt_items:
        videos[vid].append((s, e, lab))
    dets: dict[str, list[Detection]] = {}
    for (vid, (s, e), lab), sc in zip(det_items, scores):
        dets.setdefault(vid, []).append(Detection(s, e, lab, sc))
    return _gt(videos), dets


@settings(max_examples=60, deadline=None)
@given(_gt_items, _det_items, st.randoms(use_true_random=False))
def test_permuting_detections_with_distinct_scores_changes_nothing(gt_items, det_items, rnd) -> None:
    scores = [(i + 1) / (len(det_items) + 1) for i in range(len(det_items))]
    rnd.shuffle(scores)
    gt, dets = _build(gt_items, det_items, scores)
    flat = [(vid, d) for vid, ds in dets.items() for d in ds]
    rnd.shuffle(flat)
    shuffled: dict[str, list[Detection]] = {}
    for vid, d in flat:
        shuffled.setdefault(vid, []).append(d)
    thr = [0.3, 0.5, 0.7]
    assert evaluate_detections(gt, shuffled, thr).to_json() == evaluate_detections(gt, dets, thr).to_json()


@settings(max_examples=60, deadline=None)
@given(_gt_items, st.randoms(use_true_random=False))
def test_perfect_detections_score_one(gt_items, rnd) -> None:
    gt, _ = _build(gt_items, [], [])
    perfect = {
        vid: [Detection(s.start, s.end, s.label, rnd.random()) for s in v.annotations] for vid, v in gt.videos.items()
    }
    r = evaluate_detections(gt, perfect, DEFAULT_TIOU["anet"])
    assert r.mAP == [1.0] * 10 and r.average_mAP == 1.0


@settings(max_examples=60, deadline=None)
@given(_gt_items, _det_items, st.sampled_from(["v0", "v1", "v2"]), _seg, st.sampled_from(["A", "B"]))
def test_low_score_false_positive_never_raises_ap(gt_items, det_items, vid, seg, label) -> None:
    scores = [0.5 + 0.5 * (i + 1) / (len(det_items) + 1) for i in range(len(det_items))]
    gt, dets = _build(gt_items, det_items, scores)
    thr = [0.3, 0.5, 0.7]
    before = evaluate_detections(gt, dets, thr)
    more = {k: list(v) for k, v in dets.items()}
    # lowest score of all, and a certain false positive: past the end of every ground truth (or on v2, which has none)
    more.setdefault(vid, []).append(Detection(seg[0] + 100, seg[1] + 100, label, 0.1))
    after = evaluate_detections(gt, more, thr)
    for c in before.per_class:
        assert all(a <= b + 1e-15 for a, b in zip(after.per_class[c], before.per_class[c]))


# ---- result and table ------------------------------------------------------------------------------------------


def test_format_table_rows() -> None:
    thumos = EvalResult([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], [0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1], 0.4, {})
    head, row = format_table(thumos, "thumos").splitlines()
    assert head.split() == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "Avg{0.1:0.5}", "Avg{0.3:0.7}"]
    assert row.split() == ["70.0", "60.0", "50.0", "40.0", "30.0", "20.0", "10.0", "50.0", "30.0"]
    anet = EvalResult(DEFAULT_TIOU["anet"], [0.5 - 0.05 * i for i in range(10)], 0.275, {})
    head, row = format_table(anet, "anet").splitlines()
    assert head.split() == ["0.5", "0.75", "0.95", "Avg"] and row.split() == ["50.0", "25.0", "5.0", "27.5"]
    partial = EvalResult([0.3, 0.5], [0.6, 0.4], 0.5, {})
    assert format_table(partial, "thumos").splitlines()[0].split() == ["0.3", "0.5", "Avg"]
    assert EvalResult([0.5], [0.25], 0.25, {"A": [0.25]}).to_json() == {
        "tiou": [0.5],
        "mAP": [0.25],
        "average_mAP": 0.25,
        "per_class": {"A": [0.25]},
    }
    written = {**EvalResult([0.5], [0.25], 0.25, {"A": [0.25]}).to_json(), "subset": "test"}  # as metrics.json
    assert EvalResult.from_json(written) == EvalResult([0.5], [0.25], 0.25, {"A": [0.25]})

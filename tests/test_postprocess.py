"""Decoding (eq. 13), clip merging, fusion and the video-level classifier on hand-computed cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from talmts.config import InferConfig
from talmts.losses import assign_coarse, refine_targets
from talmts.outputs import DetectorOutput
from talmts.postprocess import (
    Candidates,
    VideoScores,
    apply_video_classifier,
    clip_scores,
    decode_clip,
    decode_streams,
    detections_for_video,
    load_video_scores,
)
from talmts.schema import ClassMap, Detection, SchemaError

LN3 = math.log(3.0)


def two_anchor_output(**over) -> DetectorOutput:
    """T = 8 frames, one level with anchors at frames 2 and 6, two action classes."""
    t = {
        "loc": torch.tensor([[[1.0, 3.0], [2.0, 2.0]]]),
        "conf": torch.tensor([[[0.0, LN3, 0.0], [0.0, 0.0, 0.0]]]),
        "prop_loc": torch.tensor([[[0.5, -0.5], [0.0, 0.0]]]),
        "prop_conf": torch.tensor([[[0.0, LN3, 0.0], [0.0, 0.0, 0.0]]]),
        "quality": torch.tensor([[0.0, LN3]]),
    }
    t.update(over)
    return DetectorOutput(**t, anchors=torch.tensor([2.0, 6.0]), level_sizes=(2,), clip_frames=8)


def as_rows(c: Candidates) -> list[tuple[float, float, float, int]]:
    return sorted(
        (round(s, 6), round(e, 6), round(p, 6), int(k)) for (s, e), p, k in zip(c.segments, c.scores, c.labels)
    )


def test_decode_by_hand() -> None:
    c = decode_clip(two_anchor_output(), 0, offset=100, fps=10.0, conf_thresh=0.2)
    # anchor 2: d = (1, 3), w = 4, delta = (0.5, -0.5): d' = (1 + 2 * 0.5, 3 - 2 * 0.5) = (2, 2) -> [0, 4] frames
    #   -> seconds (0 + 100) / 10 = 10.0, (4 + 100) / 10 = 10.4. A positive delta_s moved the start earlier.
    #   softmax(0, ln 3, 0) = (1/5, 3/5, 1/5) for both heads, sigmoid(0) = 0.5:
    #   class 1: 0.5 (0.6 + 0.6) 0.5 = 0.3; class 2: 0.5 (0.2 + 0.2) 0.5 = 0.1 < 0.2 (dropped)
    # anchor 6: d' = (2, 2) -> [4, 8] -> [10.4, 10.8]; softmax = 1/3 each, sigmoid(ln 3) = 0.75: 0.25 per class
    assert as_rows(c) == [(10.0, 10.4, 0.3, 1), (10.4, 10.8, 0.25, 1), (10.4, 10.8, 0.25, 2)]
    assert c.segments.dtype == np.float64 and c.labels.dtype == np.int64


def test_paper_sign_convention_agrees() -> None:
    """Paper: t_s^p = t_s^c + 0.5 d delta_s^paper; ours: start = anchor - (d_s + 0.5 w delta_s). The two agree with
    delta^paper = (-delta_s, delta_e): our delta_s is measured in the distance direction (away from the anchor)."""
    out = two_anchor_output()
    c = decode_clip(out, 0, 0, 1.0, conf_thresh=0.2)
    ts_c, te_c = 2.0 - 1.0, 2.0 + 3.0  # coarse boundaries of anchor 2: [1, 5], d = 4
    ds, de = 0.5, -0.5
    paper = (ts_c + 0.5 * 4 * (-ds), te_c + 0.5 * 4 * de)
    assert tuple(c.segments[np.argmax(c.scores)]) == pytest.approx(paper)


def test_loss_targets_decode_to_the_ground_truth_in_seconds() -> None:
    gen = torch.Generator().manual_seed(3)
    sizes = (16, 8, 4)
    anchors = torch.cat([(torch.arange(t) + 0.5) * 64 / t for t in sizes])
    k = len(anchors)
    gt = torch.tensor([[5.0, 21.0, 1.0], [30.0, 47.0, 2.0]])
    loc = torch.rand(k, 2, generator=gen) * 12 + 0.5
    coarse = assign_coarse(anchors, gt)
    refined = refine_targets(loc, coarse, 0.0)
    conf = torch.full((1, k, 3), -20.0)
    conf[0, torch.arange(k), coarse.labels] = 20.0  # each anchor sure of its assigned class
    out = DetectorOutput(
        loc=loc[None], conf=conf, prop_loc=refined.offsets[None], prop_conf=conf.clone(),
        quality=torch.full((1, k), 20.0), anchors=anchors, level_sizes=sizes, clip_frames=64,
    )  # fmt: skip
    c = decode_clip(out, 0, offset=256, fps=10.0, conf_thresh=0.5)
    assert len(c) == int((coarse.labels > 0).sum())
    truth = {1: ((5 + 256) / 10, (21 + 256) / 10), 2: ((30 + 256) / 10, (47 + 256) / 10)}
    for (s, e), label in zip(c.segments, c.labels):
        assert (s, e) == pytest.approx(truth[int(label)], abs=1e-5)


def test_clamping_and_empty_segments() -> None:
    # anchor 2 reaches [-3, 7] -> clamped to [0, 7]; anchor 6 reaches [5, 12] -> [5, 8]
    out = two_anchor_output(loc=torch.tensor([[[5.0, 5.0], [1.0, 6.0]]]), prop_loc=torch.zeros(1, 2, 2))
    c = decode_clip(out, 0, 0, 1.0, conf_thresh=0.0)
    assert {tuple(s) for s in c.segments} == {(0.0, 7.0), (5.0, 8.0)}
    # a padded last clip with 5 real frames: [0, 5]; anchor 6's [5, 5] is empty and dropped
    c = decode_clip(out, 0, 0, 1.0, conf_thresh=0.0, num_frames=5)
    assert {tuple(s) for s in c.segments} == {(0.0, 5.0)}
    with pytest.raises(ValueError, match="fps must be > 0"):
        decode_clip(out, 0, 0, 0.0, 0.01)


def test_no_candidates_pool_to_typed_empty_arrays() -> None:
    empty = Candidates.concat([])
    assert empty.segments.shape == (0, 2) and empty.scores.shape == (0,) and len(empty) == 0
    assert empty.labels.shape == (0,) and empty.labels.dtype == np.int64


def test_batch_index_is_respected() -> None:
    a, b = two_anchor_output(), two_anchor_output(quality=torch.tensor([[-20.0, -20.0]]))
    batch = DetectorOutput(
        loc=torch.cat([a.loc, b.loc]), conf=torch.cat([a.conf, b.conf]), prop_loc=torch.cat([a.prop_loc, b.prop_loc]),
        prop_conf=torch.cat([a.prop_conf, b.prop_conf]), quality=torch.cat([a.quality, b.quality]),
        anchors=a.anchors, level_sizes=a.level_sizes, clip_frames=a.clip_frames,
    )  # fmt: skip
    assert len(decode_clip(batch, 0, 0, 1.0, 0.2)) == 3
    assert len(decode_clip(batch, 1, 0, 1.0, 0.2)) == 0  # sigmoid(-20) kills every score


def test_fusion_modes() -> None:
    rgb = two_anchor_output()
    flow = two_anchor_output(conf=torch.zeros(1, 2, 3), prop_conf=torch.zeros(1, 2, 3))
    # logits: conf of anchor 2 averages to (0, ln3 / 2, 0) = (0, ln sqrt 3, 0): softmax class 1 =
    # sqrt3 / (2 + sqrt3) = 0.4641016; score = 0.5 (2 * 0.4641016) * 0.5 = 0.2320508
    fused = decode_streams([rgb, flow], 0, 0, 1.0, InferConfig(conf_thresh=0.2, fusion="logits"))
    assert len(fused) == 1
    best = fused[0].scores[(fused[0].segments[:, 0] == 0.0) & (fused[0].labels == 1)]
    assert best.tolist() == pytest.approx([math.sqrt(3) / (2 + math.sqrt(3)) * 0.5])
    # detections: each stream on its own, pooled later; the RGB stream alone gives its 0.3
    per = decode_streams([rgb, flow], 0, 0, 1.0, InferConfig(conf_thresh=0.2, fusion="detections"))
    assert len(per) == 2 and as_rows(per[0]) == as_rows(decode_clip(rgb, 0, 0, 1.0, 0.2))
    assert as_rows(decode_streams([rgb], 0, 0, 1.0, InferConfig(conf_thresh=0.2))[0]) == as_rows(per[0])
    with pytest.raises(ValueError, match="no stream outputs"):
        decode_streams([], 0, 0, 1.0, InferConfig())


def cands(rows) -> Candidates:
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return Candidates(a[:, :2], a[:, 2], a[:, 3].astype(np.int64))


def test_detections_for_video_merges_overlapping_clips() -> None:
    classes = ClassMap(("Jump", "Run"))
    # clip 1 and clip 2 overlap in time and both see the same Jump at [10, 14]
    clip1 = cands([[10.0, 14.0, 0.9, 1], [20.0, 25.0, 0.5, 2]])
    clip2 = cands([[10.0, 14.0, 0.8, 1], [30.0, 31.0, 0.4, 1]])
    cfg = InferConfig(nms_sigma=0.3, nms_score_thresh=0.001)
    dets = detections_for_video([clip1, clip2], classes, cfg)
    # the duplicate decays by exp(-1 / 0.3) = 0.0356740: 0.8 * that = 0.0285392
    assert dets == [
        Detection(10.0, 14.0, "Jump", 0.9),
        Detection(20.0, 25.0, "Run", 0.5),
        Detection(30.0, 31.0, "Jump", 0.4),
        Detection(10.0, 14.0, "Jump", pytest.approx(0.8 * math.exp(-1 / 0.3))),
    ]
    # top-k per class, and per video
    dets = detections_for_video([clip1, clip2], classes, InferConfig(nms_top_k=1))
    assert [(d.label, d.score) for d in dets] == [("Jump", 0.9), ("Run", 0.5)]
    dets = detections_for_video([clip1, clip2], classes, InferConfig(max_per_video=2))
    assert [(d.label, d.score) for d in dets] == [("Jump", 0.9), ("Run", 0.5)]
    # clipping to the video's duration drops what lies beyond it
    dets = detections_for_video([clip1, clip2], classes, cfg, duration=22.0)
    assert [(d.start, d.end) for d in dets] == [(10.0, 14.0), (20.0, 22.0), (10.0, 14.0)]
    assert detections_for_video([], classes, cfg) == []
    with pytest.raises(ValueError, match="class map has 2 classes"):
        detections_for_video([cands([[0.0, 1.0, 0.5, 3]])], classes, cfg)


def test_video_classifier(tmp_path) -> None:
    path = tmp_path / "cuhk.json"
    path.write_text(json.dumps({"results": {"abc": [0.1, 0.7, 0.2], "v_def": [0.5, 0.2, 0.3]},
                                "class": ["Archery", "Bowling", "Cooking"]}))  # fmt: skip
    vs = load_video_scores(path)
    props = [Detection(1.0, 2.0, "action", 0.5), Detection(3.0, 4.0, "action", 0.9)]
    # ActivityNet ids: "v_abc" in the ground truth, "abc" in the CUHK file (and the other way round)
    dets = apply_video_classifier(props, vs.lookup("v_abc"), vs.classes)
    assert dets == [
        Detection(3.0, 4.0, "Bowling", pytest.approx(0.63)),
        Detection(1.0, 2.0, "Bowling", pytest.approx(0.35)),
    ]
    dets = apply_video_classifier(props, vs.lookup("def"), vs.classes, top_k=2)
    assert [(d.label, d.start, round(d.score, 6)) for d in dets] == [
        ("Archery", 3.0, 0.45), ("Cooking", 3.0, 0.27), ("Archery", 1.0, 0.25), ("Cooking", 1.0, 0.15),
    ]  # fmt: skip
    with pytest.raises(KeyError, match="no scores for video 'xyz'"):
        vs.lookup("xyz")
    with pytest.raises(ValueError, match="2 scores for 3 class names"):
        apply_video_classifier(props, [0.1, 0.2], vs.classes)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": {"abc": [0.1, 0.7]}, "class": ["A", "B", "C"]}))
    with pytest.raises(SchemaError, match="'abc'.*expected 3 finite scores"):
        load_video_scores(bad)
    bad.write_text(json.dumps({"results": {}}))
    with pytest.raises(SchemaError, match="results/class"):
        load_video_scores(bad)
    with pytest.raises(SchemaError, match="does not exist"):
        load_video_scores(tmp_path / "missing.json")


def test_video_score_file_errors_name_the_file_the_record_and_the_fix(tmp_path) -> None:
    path = tmp_path / "scores.json"

    def message(content: object) -> str:
        path.write_text(json.dumps(content))
        with pytest.raises(SchemaError) as e:
            load_video_scores(path)
        return str(e.value)

    top = f"{path}: record 'top level', field 'results/class': missing "
    top += '(expected {"results": {video: [scores]}, "class": [names]})'
    assert message([1, 2]) == top
    assert message({"results": [], "class": ["A"]}) == top
    assert message({"results": {}}) == top
    assert message({"class": ["A"]}) == top
    assert (
        message({"results": {}, "class": "A"})
        == f"{path}: record 'top level', field 'class': must be a list of class names"
    )
    assert (
        message({"results": {}, "class": ["A", 2]})
        == f"{path}: record 'top level', field 'class': must be a list of class names"
    )
    row = f"{path}: record 'v1', field 'results': expected 2 finite scores, one per class (check the file)"
    assert message({"results": {"v1": [0.5]}, "class": ["A", "B"]}) == row
    assert message({"results": {"v1": {"A": 0.5, "B": 0.5}}, "class": ["A", "B"]}) == row
    assert "record 'v1', field 'results'" in message({"results": {"v1": [0.5, "x"]}, "class": ["A", "B"]})
    missing = tmp_path / "none.json"
    with pytest.raises(SchemaError) as e:
        load_video_scores(missing)
    assert (
        str(e.value)
        == f"{missing}: record '-', field '-': file does not exist (set infer.video_scores to a score file)"
    )
    path.write_text(json.dumps({"results": {"v1": [0.25, 1]}, "class": ["A", "B"]}))
    vs = load_video_scores(str(path))  # a str path too
    assert vs.classes == ["A", "B"] and vs.source == str(path)
    assert vs.scores["v1"].dtype == np.float64 and vs.scores["v1"].tolist() == [0.25, 1.0]
    with pytest.raises(KeyError, match=rf"{path}: no scores for video 'v_x' \(nor with/without 'v_'\)"):
        vs.lookup("v_x")
    with pytest.raises(KeyError, match=r"^\"video scores: no scores for video 'x'"):
        VideoScores({}, []).lookup("x")


def test_video_classifier_refuses_top_k_below_one() -> None:
    with pytest.raises(ValueError, match="^apply_video_classifier: top_k must be >= 1, got 0$"):
        apply_video_classifier([Detection(0, 1, "a", 0.5)], [1.0], ["A"], top_k=0)


def test_clip_scores_of_a_whole_batch_are_each_clips_scores() -> None:
    one = two_anchor_output()
    other = two_anchor_output(
        conf=torch.tensor([[[LN3, 0.0, 0.0], [0.0, 0.0, LN3]]]), quality=torch.tensor([[1.0, -1.0]])
    )
    batch = DetectorOutput(
        **{
            k: torch.cat([getattr(one, k), getattr(other, k)])
            for k in ("loc", "conf", "prop_loc", "prop_conf", "quality")
        },
        anchors=one.anchors,
        level_sizes=one.level_sizes,
        clip_frames=one.clip_frames,
    )
    scores = clip_scores(batch)
    assert scores.shape == (2, 2, 2)
    torch.testing.assert_close(scores[0], clip_scores(one, 0))
    torch.testing.assert_close(scores[1], clip_scores(other, 0))
    # by hand: clip 0, anchor 2: 0.5 (3/5 + 3/5) 0.5 = 0.3 for class 1, 0.1 for class 2
    torch.testing.assert_close(scores[0, 0], torch.tensor([0.3, 0.1]))


def test_a_score_equal_to_the_threshold_is_dropped() -> None:
    # uniform logits over background + 1 class and a saturated quality: score = 0.5 (1/2 + 1/2) * 1 = 0.5 exactly
    out = two_anchor_output(
        conf=torch.zeros(1, 2, 2), prop_conf=torch.zeros(1, 2, 2), quality=torch.full((1, 2), 100.0)
    )
    assert clip_scores(out, 0).tolist() == [[0.5], [0.5]]
    assert len(decode_clip(out, 0, 0, 1.0, conf_thresh=0.5)) == 0
    assert len(decode_clip(out, 0, 0, 1.0, conf_thresh=0.4999)) == 2


def test_candidates_concat_to_flat_float_and_int_arrays() -> None:
    part = Candidates(np.array([[1, 2]]), np.array([[1]]), np.array([[2]]))  # ints, and a column of scores
    pool = Candidates.concat([part, part])
    assert pool.segments.dtype == np.float64 and pool.segments.shape == (2, 2)
    assert pool.scores.dtype == np.float64 and pool.scores.shape == (2,)
    assert pool.labels.dtype == np.int64 and pool.labels.tolist() == [2, 2]


def test_detections_for_video_passes_the_gate_and_the_score_threshold_on() -> None:
    classes = ClassMap(("Jump",))
    pool = cands([[10.0, 14.0, 0.9, 1], [12.0, 16.0, 0.8, 1], [-1.0, 3.0, 0.5, 1], [40.0, 41.0, 0.05, 1]])
    # [12, 16] overlaps [10, 14] with tIoU 2 / 6: no decay under a gate of 0.5, exp(-1/9 / 0.3) without
    gated = detections_for_video([pool], classes, InferConfig(nms_sigma=0.3, nms_iou_gate=0.5, nms_score_thresh=0.1))
    assert [(d.start, d.score) for d in gated] == [(10.0, 0.9), (12.0, 0.8), (-1.0, 0.5)]  # 0.05 < 0.1: dropped
    plain = detections_for_video([pool], classes, InferConfig(nms_sigma=0.3, nms_score_thresh=0.1), duration=15.0)
    assert [(d.start, d.end) for d in plain] == [(10.0, 14.0), (12.0, 15.0), (0.0, 3.0)]  # clipped to [0, 15]
    assert plain[1].score == pytest.approx(0.8 * math.exp(-((2 / 6) ** 2) / 0.3))


def test_decode_streams_refuses_no_outputs_and_an_unknown_fusion_by_name():
    with pytest.raises(ValueError, match=r"^decode_streams: no stream outputs$"):
        decode_streams([], 0, 0.0, 10.0, InferConfig())
    out = DetectorOutput(**{f: None for f in DetectorOutput.__dataclass_fields__})
    with pytest.raises(ValueError, match=r"^infer.fusion='mean': choose 'logits' or 'detections'$"):
        decode_streams([out], 0, 0.0, 10.0, InferConfig(fusion="mean"))

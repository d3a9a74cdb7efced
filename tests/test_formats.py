"""Annotation and detection files: round trips, the real files' counts, and clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from talmts.formats import (
    AMBIGUOUS,
    THUMOS14_CLASSES,
    read_annotations,
    read_class_list,
    read_detections,
    write_detections,
    write_ground_truth,
)
from talmts.schema import AnnotationSet, ClassMap, Detection, SchemaError, Segment, Video


def _toy_set() -> AnnotationSet:
    classes = ClassMap(("Zebra", "Apple", "Mango"))  # deliberately not sorted: the order must survive a round trip
    videos = {
        "a": Video("a", "train", 10.0, 25.0, [Segment(1.0, 2.5, "Zebra"), Segment(3.0, 4.0, "Apple")]),
        "b": Video("b", "validation", 5.0, 30.0, [Segment(0.0, 5.0, "Mango")]),
        "c": Video("c", "test", 7.5, None, []),
    }
    return AnnotationSet(videos, classes)


def test_ground_truth_round_trip(tmp_path: Path) -> None:
    gt = _toy_set()
    path = tmp_path / "gt.json"
    write_ground_truth(gt, path)
    raw = json.loads(path.read_text())
    assert raw["database"]["a"]["subset"] == "training" and raw["database"]["c"]["subset"] == "testing"
    back = read_annotations(path)
    assert back.classes == gt.classes
    assert back.videos == gt.videos
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


def test_detections_round_trip(tmp_path: Path) -> None:
    dets = {"a": [Detection(1.0, 2.0, "Zebra", 0.9), Detection(0.5, 0.75, "Apple", 0.1)], "z": []}
    path = tmp_path / "pred.json"
    write_detections(dets, path, version="v1")
    raw = json.loads(path.read_text())
    assert raw["version"] == "v1" and raw["external_data"] == {}
    assert raw["results"]["a"][0] == {"label": "Zebra", "score": 0.9, "segment": [1.0, 2.0]}
    assert read_detections(path) == dets


def _write(tmp_path: Path, obj: object, name: str = "f.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def _anet(annotations: list, subset: str = "validation", **extra: object) -> dict:
    return {"version": "x", "database": {"vid1": {"subset": subset, "annotations": annotations, **extra}}}


@pytest.mark.parametrize(
    ("obj", "record", "field", "words"),
    [
        (_anet([{"label": "A"}]), "vid1 annotation 0", "segment", "missing key"),
        (_anet([{"segment": [1, 2]}]), "vid1 annotation 0", "label", "missing key"),
        (_anet([{"segment": [3, 2], "label": "A"}]), "vid1 annotation 0", "segment", "before start"),
        (_anet([{"segment": [-1, 2], "label": "A"}]), "vid1 annotation 0", "segment", "negative"),
        (_anet([{"segment": ["x", 2], "label": "A"}]), "vid1 annotation 0", "segment", "number"),
        (_anet([], subset="holdout"), "vid1", "subset", "unknown subset"),
        (_anet([], duration=-3), "vid1", "duration", "negative"),
        ({"version": "x", "database": {"vid1": {"annotations": []}}}, "vid1", "subset", "missing key"),
        ({"version": "x", "database": {"vid1": {"subset": "test"}}}, "vid1", "annotations", "missing key"),
        ('{"database": {"v": {"subset": "test", "annotations": []}, "v": {}}}', "v", "video id", "twice"),
    ],
)
def test_ground_truth_errors_name_file_record_field(tmp_path: Path, obj, record, field, words) -> None:
    path = _write(tmp_path, obj)
    with pytest.raises(SchemaError) as info:
        read_annotations(path)
    err = info.value
    assert (err.file, err.record, err.field) == (str(path), record, field)
    assert words in str(err) and str(path) in str(err)


def test_label_outside_given_class_map(tmp_path: Path) -> None:
    path = _write(tmp_path, _anet([{"segment": [1, 2], "label": "A"}, {"segment": [1, 2], "label": "B"}]))
    with pytest.raises(SchemaError) as info:
        read_annotations(path, classes=ClassMap(("A",)))
    assert (info.value.record, info.value.field) == ("vid1 annotation 1", "label")


@pytest.mark.parametrize(
    ("item", "field", "words"),
    [
        ({"segment": [1, 2], "score": 0.5}, "label", "missing key"),
        ({"label": "A", "segment": [1, 2]}, "score", "missing key"),
        ({"label": "A", "score": 0.5}, "segment", "missing key"),
        ({"label": "A", "score": "nan", "segment": [1, 2]}, "score", "finite"),
        ({"label": "A", "score": 0.5, "segment": [float("nan"), 2]}, "segment", "finite"),
        ({"label": "A", "score": 0.5, "segment": ["x", 2]}, "segment", "expected a number"),
        ({"label": 3, "score": 0.5, "segment": [1, 2]}, "label", "expected str"),
    ],
)
def test_detection_errors(tmp_path: Path, item, field, words) -> None:
    path = _write(tmp_path, {"version": "x", "results": {"v": [item]}, "external_data": {}})
    with pytest.raises(SchemaError) as info:
        read_detections(path)
    assert (info.value.file, info.value.record, info.value.field) == (str(path), "v detection 0", field)
    assert words in str(info.value)


def test_detections_keep_segments_the_official_evaluator_scores(tmp_path: Path) -> None:
    """A start before 0 and an end before the start are read as written (the evaluator warns about them)."""
    items = [{"label": "A", "score": 0.5, "segment": [-2, 1]}, {"label": "A", "score": 0.4, "segment": [3, 2]}]
    path = _write(tmp_path, {"version": "x", "results": {"v": items}, "external_data": {}})
    assert read_detections(path)["v"] == [Detection(-2.0, 1.0, "A", 0.5), Detection(3.0, 2.0, "A", 0.4)]


def test_detections_duplicate_video_and_missing_results(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"results": {"v": [], "v": []}}')
    with pytest.raises(SchemaError, match="twice"):
        read_detections(path)
    path = _write(tmp_path, {"version": "x"}, "g.json")
    with pytest.raises(SchemaError, match="'results'"):
        read_detections(path)


# ---- the real files in ../shared/data (counts come from the files themselves) ----------------------------------


def _count(ann: AnnotationSet) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for v in ann.videos.values():
        n_vid, n_inst = out.get(v.subset, (0, 0))
        out[v.subset] = (n_vid + 1, n_inst + len(v.annotations))
    return out


def _segments(ann: AnnotationSet, subset: str) -> dict[str, list[tuple[float, float, str]]]:
    return {
        vid: sorted((s.start, s.end, s.label) for s in v.annotations)
        for vid, v in ann.videos.items()
        if v.subset == subset and v.annotations
    }


def test_thumos14_actionformer_json(shared_data: Path) -> None:
    ann = read_annotations(shared_data / "thumos14" / "thumos14.json")
    assert _count(ann) == {"validation": (200, 3007), "test": (212, 3358)}
    assert ann.classes.names == THUMOS14_CLASSES
    v = ann.videos["video_test_0000004"]
    assert (v.fps, v.duration) == (30.0, 33.83)
    assert v.annotations[0] == Segment(0.2, 1.1, "CricketBowling")


def test_thumos_gt_json_string_segments(shared_data: Path) -> None:
    ann = read_annotations(shared_data / "thumos14" / "thumos_gt.json")
    assert _count(ann) == {"train": (200, 3007), "test": (210, 3311)}
    seg = ann.videos["video_test_0000896"].annotations[0]
    assert seg == Segment(18.6, 24.8, "HighJump") and isinstance(seg.start, float)
    assert {"video_test_0000270", "video_test_0001496"}.isdisjoint(ann.videos)


def test_thumos_csv_files_agree_with_json(shared_data: Path) -> None:
    d = shared_data / "thumos14"
    full = read_annotations(d / "test_Annotation.csv")
    ours = read_annotations(d / "test_Annotation_ours.csv")
    official = read_annotations(d / "thumos14_test_groundtruth.csv")
    # 0001292 has only Ambiguous rows: it stays listed (it is a test video) with no instances.
    assert _count(full) == {"test": (213, 3358)} and full.videos["video_test_0001292"].annotations == []
    assert _count(ours) == {"test": (212, 3358)}
    js = read_annotations(d / "thumos14.json")
    assert _segments(full, "test") == _segments(ours, "test") == _segments(official, "test") == _segments(js, "test")
    assert _segments(read_annotations(d / "val_Annotation.csv"), "validation") == _segments(js, "validation")
    # fps/duration from test_video_info.csv (count / fps), and from the official CSV's own columns
    v = ours.videos["video_test_0000004"]
    assert v.fps == 30.0 and v.duration == pytest.approx(1012 / 30)
    assert official.videos["video_test_0000004"].fps == 30.0


def test_thumos_ambiguous_kept_on_request(shared_data: Path) -> None:
    d = shared_data / "thumos14"
    for name in ("test_Annotation.csv", "thumos14_test_groundtruth.csv"):
        kept = read_annotations(d / name, exclude_ambiguous=False)
        amb = [s for v in kept.videos.values() for s in v.annotations if s.label == AMBIGUOUS]
        assert len(amb) == 99 and kept.num_instances() == 3358 + 99
        assert AMBIGUOUS not in kept.classes and len(kept.classes) == 20
    assert read_annotations(d / "val_Annotation.csv", exclude_ambiguous=False).num_instances() == 3007 + 89


def test_thumos_per_class_files(shared_data: Path, tmp_path: Path) -> None:
    # Write the official per-class layout from test_Annotation.csv, read it back, compare.
    src = read_annotations(shared_data / "thumos14" / "test_Annotation.csv", exclude_ambiguous=False)
    lines: dict[str, list[str]] = {}
    for vid, v in src.videos.items():
        for s in v.annotations:
            lines.setdefault(s.label, []).append(f"{vid} {s.start!r}  {s.end!r}")
    for label, rows in lines.items():
        (tmp_path / f"{label}_test.txt").write_text("\n".join(rows) + "\n")
    (tmp_path / "detclasslist.txt").write_text("not a per-class file\n")
    back = read_annotations(tmp_path)
    excluded = read_annotations(shared_data / "thumos14" / "test_Annotation.csv")
    assert _segments(back, "test") == _segments(excluded, "test") and back.num_instances() == 3358
    kept = read_annotations(tmp_path, exclude_ambiguous=False)
    assert _segments(kept, "test") == _segments(src, "test") and kept.num_instances() == 3457


def test_class_lists(shared_data: Path) -> None:
    thumos = read_class_list(shared_data / "thumos14" / "Class Index_Detection.txt")
    assert thumos.names == THUMOS14_CLASSES and thumos.index("BaseballPitch") == 1
    txt = read_class_list(shared_data / "anet" / "action_name.txt")
    csv_ = read_class_list(shared_data / "anet" / "action_name.csv")
    assert txt == csv_ and len(txt) == 200 and "Beer pong" in txt  # names with spaces survive


def test_activitynet_derived_and_bsn_agree(shared_data: Path) -> None:
    d = shared_data / "anet"
    classes = read_class_list(d / "action_name.txt")
    derived = read_annotations(d / "anet1.3_gt_derived_from_bsn.json", classes=classes)
    assert _count(derived) == {"train": (9649, 14859), "validation": (4728, 7293)}
    bsn = read_annotations(d / "anet_anno_action.json", classes=classes, video_info=d / "video_info_new.csv")
    assert _count(bsn) == {"train": (9649, 14859), "validation": (4728, 7293), "test": (4851, 0)}
    for vid, v in derived.videos.items():  # ids lose the v_ prefix; subsets, fps, durations and segments agree
        b = bsn.videos[vid]
        assert (b.subset, b.fps, b.annotations) == (v.subset, v.fps, v.annotations)
        assert b.duration == pytest.approx(v.duration)


def test_round_trip_of_a_real_file(shared_data: Path, tmp_path: Path) -> None:
    ann = read_annotations(shared_data / "thumos14" / "thumos14.json")
    write_ground_truth(ann, tmp_path / "gt.json")
    back = read_annotations(tmp_path / "gt.json")
    assert back.videos == ann.videos and back.classes == ann.classes


def test_thumos_csv_errors(tmp_path: Path) -> None:
    head = "video,type,type_idx,start,end,startFrame,endFrame\n"
    bad_rows = {
        "video_test_1,Diving,26,5.0,4.0,150,120\n": ("row 2 (video_test_1)", "start/end", "before start"),
        "video_test_1,Diving,26,-1.0,4.0,150,120\n": ("row 2 (video_test_1)", "start/end", "negative"),
        "video_test_1,Diving,26,abc,4.0,150,120\n": ("row 2 (video_test_1)", "start", "number"),
        "video_test_1,Swimming,1,1.0,4.0,30,120\n": ("row 2 (video_test_1)", "label", "not in the class map"),
        "clip_7,Diving,26,1.0,4.0,30,120\n": ("row 2 (clip_7)", "video", "subset"),
    }
    for row, (record, field, words) in bad_rows.items():
        path = tmp_path / "x_Annotation.csv"
        path.write_text(head + row)
        with pytest.raises(SchemaError, match=words) as info:
            read_annotations(path)
        assert (info.value.file, info.value.record, info.value.field) == (str(path), record, field)
    path = tmp_path / "y_Annotation.csv"
    path.write_text("video,label,start,end\nv,Diving,1,2\n")
    with pytest.raises(SchemaError, match="missing column") as info:
        read_annotations(path)
    assert info.value.field == "type"
    # video_info: found next to the file by its prefix; a video listed twice is an error
    (tmp_path / "test_Annotation.csv").write_text(head + "video_test_1,Diving,26,1.0,4.0,30,120\n")
    (tmp_path / "test_video_info.csv").write_text(
        "video,fps,sample_fps,count,sample_count\nvideo_test_1,25,10,250,100\n"
    )
    v = read_annotations(tmp_path / "test_Annotation.csv").videos["video_test_1"]
    assert (v.fps, v.duration, v.subset) == (25.0, 10.0, "test")
    (tmp_path / "test_video_info.csv").write_text(
        "video,fps,sample_fps,count,sample_count\nvideo_test_1,25,10,250,100\nvideo_test_1,25,10,250,100\n"
    )
    with pytest.raises(SchemaError, match="twice") as info:
        read_annotations(tmp_path / "test_Annotation.csv")
    assert info.value.file.endswith("test_video_info.csv") and info.value.record == "line 3 (video_test_1)"


def test_bsn_errors(tmp_path: Path) -> None:
    anno = {"v_abc": {"duration_second": 10.0, "annotations": [{"segment": [1.0, 2.0], "label": "A"}]}}
    path = _write(tmp_path, anno, "anno.json")
    with pytest.raises(SchemaError, match="video_info"):
        read_annotations(path)  # no video_info_new.csv next to it
    info = tmp_path / "info.csv"
    info.write_text("video,numFrame,seconds,fps,rfps,subset,featureFrame\nv_abc,250,10,25,25,holdout,240\n")
    with pytest.raises(SchemaError, match="unknown subset") as err:
        read_annotations(path, video_info=info)
    assert (err.value.record, err.value.field) == ("row 2 (v_abc)", "subset")
    info.write_text("video,numFrame,seconds,fps,rfps,subset,featureFrame\nv_xyz,250,10,25,25,training,240\n")
    with pytest.raises(SchemaError, match="not in") as err:
        read_annotations(path, video_info=info)
    assert err.value.record == "v_abc"
    info.write_text("video,numFrame,seconds,fps,rfps,subset,featureFrame\nv_abc,250,10,25,25,training,240\n")
    ann = read_annotations(path, video_info=info)
    assert ann.videos["abc"] == Video("abc", "train", 10.0, 25.0, [Segment(1.0, 2.0, "A")])


def test_unrecognised_layout(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="unrecognised"):
        read_annotations(_write(tmp_path, {"videos": []}))
    with pytest.raises(SchemaError, match="not valid JSON"):
        read_annotations(_write(tmp_path, "{oops", "bad.json"))
    with pytest.raises(SchemaError, match="not found"):
        read_annotations(tmp_path / "missing.json")


def test_activitynet_taxonomy_is_optional_metadata(tmp_path: Path) -> None:
    """The official evaluator never reads the taxonomy: nodes without parentId are roots, and a taxonomy that cannot
    name the classes is ignored with a warning instead of rejecting the file."""
    db = {
        "v": {
            "subset": "training",
            "annotations": [{"segment": [1, 2], "label": "B"}, {"segment": [3, 4], "label": "A"}],
        }
    }
    flat = [{"nodeId": 1, "nodeName": "B"}, {"nodeId": 2, "nodeName": "A"}]  # no parentId at all
    path = _write(tmp_path, {"taxonomy": flat, "database": db}, "flat.json")
    assert read_annotations(path).classes.names == ("B", "A")  # its order is used
    for name, taxonomy, words in [
        ("nameless.json", [{"nodeId": 1}], "no nodeName"),
        ("short.json", [{"nodeId": 1, "nodeName": "A", "parentId": None}], r"lack the labels \['B'\]"),
        ("odd.json", {"A": 1}, "not a list"),
    ]:
        path = _write(tmp_path, {"taxonomy": taxonomy, "database": db}, name)
        with pytest.warns(UserWarning, match=words):
            assert read_annotations(path).classes.names == ("A", "B")  # the sorted labels

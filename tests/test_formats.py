"""Annotation and detection files: round trips, the real files' counts, and clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from talmts.formats import read_annotations, read_detections, write_detections, write_ground_truth
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
        ({"label": "A", "score": 0.5, "segment": [2, 1]}, "segment", "before start"),
        ({"label": "A", "score": 0.5, "segment": [-2, 1]}, "segment", "negative"),
        ({"label": "A", "score": "nan", "segment": [1, 2]}, "score", "finite"),
        ({"label": 3, "score": 0.5, "segment": [1, 2]}, "label", "expected str"),
    ],
)
def test_detection_errors(tmp_path: Path, item, field, words) -> None:
    path = _write(tmp_path, {"version": "x", "results": {"v": [item]}, "external_data": {}})
    with pytest.raises(SchemaError) as info:
        read_detections(path)
    assert (info.value.file, info.value.record, info.value.field) == (str(path), "v detection 0", field)
    assert words in str(info.value)


def test_detections_duplicate_video_and_missing_results(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"results": {"v": [], "v": []}}')
    with pytest.raises(SchemaError, match="twice"):
        read_detections(path)
    path = _write(tmp_path, {"version": "x"}, "g.json")
    with pytest.raises(SchemaError, match="'results'"):
        read_detections(path)

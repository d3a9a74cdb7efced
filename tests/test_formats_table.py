"""The plain CSV layout for one's own dataset (formats.table), read through read_annotations."""

from __future__ import annotations

from pathlib import Path

import pytest

from talmts.formats import read_annotations, write_ground_truth
from talmts.schema import ClassMap, SchemaError, Segment, Video

GOOD = (
    "\ufeffsubset, video ,label,end,start,duration,notes\n"  # a BOM, spaces, any column order, an extra column
    "training,kitchen_01,chop,17.0,12.5,,first\n"
    "train,kitchen_01,stir,41.8,30.1,95.2,\n"
    "Validation,kitchen_02,chop,3,0,20,\n"
    "testing,kitchen_07,,,,60,no actions\n"
)


def test_plain_csv_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "my_dataset.csv"
    path.write_text(GOOD, encoding="utf-8")
    ann = read_annotations(path)
    assert ann.classes == ClassMap(("chop", "stir")) and ann.source == str(path)
    assert ann.videos == {
        "kitchen_01": Video(
            "kitchen_01", "train", 95.2, None, [Segment(12.5, 17.0, "chop"), Segment(30.1, 41.8, "stir")]
        ),
        "kitchen_02": Video("kitchen_02", "validation", 20.0, None, [Segment(0.0, 3.0, "chop")]),
        "kitchen_07": Video("kitchen_07", "test", 60.0, None, []),
    }
    fixed = read_annotations(path, classes=ClassMap(("stir", "chop", "pour")))
    assert fixed.classes.names == ("stir", "chop", "pour")


def test_plain_csv_equals_its_activitynet_json(tmp_path: Path) -> None:
    csv_path = tmp_path / "a.csv"
    csv_path.write_text(GOOD, encoding="utf-8")
    ann = read_annotations(csv_path)
    write_ground_truth(ann, tmp_path / "a.json")
    back = read_annotations(tmp_path / "a.json", classes=ann.classes)
    assert back.videos == ann.videos


@pytest.mark.parametrize(
    ("row", "record", "field", "words"),
    [
        ("train,v1,chop,5,4,,\n", "row 3 (v1)", "start/end", "before start"),
        ("train,v1,chop,x,4,,\n", "row 3 (v1)", "start", "number"),
        ("train,v1,,1,2,,\n", "row 3 (v1)", "label", "empty label"),
        ("holdout,v1,chop,1,2,,\n", "row 3 (v1)", "subset", "unknown subset"),
        ("test,v1,chop,1,2,,\n", "row 3 (v1)", "subset", "differs"),
        ("train,v1,chop,1,2,30,\n", "row 3 (v1)", "duration", "differs"),
        ("train,v2,chop,1,2,-3,\n", "row 3 (v2)", "duration", "> 0"),
        ("train,,chop,1,2,,\n", "row 3 (no video)", "video", "empty"),
    ],
)
def test_plain_csv_errors_name_row_and_column(tmp_path: Path, row: str, record: str, field: str, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("subset,video,label,start,end,duration,fps\ntrain,v1,chop,1,2,20,\n" + row)
    with pytest.raises(SchemaError, match=words) as info:
        read_annotations(path)
    assert (info.value.file, info.value.record, info.value.field) == (str(path), record, field)


def test_csv_without_the_columns_says_which_layout(tmp_path: Path) -> None:
    path = tmp_path / "partial.csv"
    path.write_text("video,label,start,end\nv,chop,1,2\n")
    with pytest.raises(SchemaError, match="video,subset,label,start,end"):
        read_annotations(path)

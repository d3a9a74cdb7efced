"""Annotation and detection files: every real layout read into the records of ``talmts.schema``.

``read_annotations`` recognises the layout from the file itself:

- ActivityNet-layout JSON (``"database"`` key): official ActivityNet-1.3, ActionFormer's ``thumos14.json``,
  AFSD's ``thumos_gt.json`` (string segments);
- BSN's ``anet_anno_action.json`` (``v_``-prefixed ids with ``duration_second``), with ``video_info_new.csv``;
- THUMOS14 CSV files: ``*_Annotation*.csv`` and ``thumos14_test_groundtruth.csv``;
- a folder of THUMOS14's official per-class files (``<Class>_val.txt`` / ``<Class>_test.txt``);
- a plain CSV for one's own dataset (``video,subset,label,start,end[,duration][,fps]``, see ``formats.table``).
"""

from __future__ import annotations

from pathlib import Path

from talmts.formats.activitynet import read_activitynet, write_ground_truth
from talmts.formats.classes import THUMOS14_CLASSES, read_class_list
from talmts.formats.common import AMBIGUOUS, load_json_streamed
from talmts.formats.detections import read_detections, write_detections
from talmts.schema import AnnotationSet, ClassMap, SchemaError

__all__ = [
    "AMBIGUOUS",
    "THUMOS14_CLASSES",
    "read_activitynet",
    "read_annotations",
    "read_class_list",
    "read_detections",
    "write_detections",
    "write_ground_truth",
]


def read_annotations(
    path: str | Path,
    *,
    classes: ClassMap | None = None,
    video_info: str | Path | None = None,
    exclude_ambiguous: bool = True,
) -> AnnotationSet:
    """Read ground truth from any supported layout (see the module doc) into an AnnotationSet.

    classes: fixes the class order and rejects labels outside it; by default the file's own class list
        (an ActivityNet taxonomy, THUMOS14's 20 classes for THUMOS CSVs) or the sorted labels.
    video_info: per-video fps/duration (THUMOS ``*_video_info.csv``) or subsets (BSN ``video_info_new.csv``);
        looked up next to the annotation file when not given.
    exclude_ambiguous: drop THUMOS14 "Ambiguous" instances (default). Kept, they stay as segments labelled
        "Ambiguous" outside the class map; the evaluator then ignores unmatched detections that overlap them.
    """
    path = Path(path)
    if path.is_dir():
        from talmts.formats.thumos import read_thumos_class_files

        return read_thumos_class_files(path, classes=classes, exclude_ambiguous=exclude_ambiguous)
    if path.suffix.lower() == ".csv":
        from talmts.formats.table import is_table_header, read_table_csv
        from talmts.formats.thumos import read_thumos_csv

        if is_table_header(_csv_header(path)):
            return read_table_csv(path, classes=classes)

        return read_thumos_csv(path, classes=classes, video_info=video_info, exclude_ambiguous=exclude_ambiguous)
    from talmts.formats.activitynet import VideoEntries, parse_activitynet

    reader = VideoEntries(str(path), exclude_ambiguous)
    data, videos = load_json_streamed(path, "database", reader)  # one video's parsed entry at a time
    if videos is not None:
        return reader.annotation_set(videos, data.get("taxonomy"), classes)
    if isinstance(data, dict) and "database" in data:
        return parse_activitynet(data, file=str(path), classes=classes, exclude_ambiguous=exclude_ambiguous)
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "duration_second" in v for v in data.values()):
        from talmts.formats.bsn import parse_bsn

        return parse_bsn(data, file=str(path), classes=classes, video_info=video_info)
    raise SchemaError(
        str(path),
        "<top level>",
        "-",
        "unrecognised annotation layout",
        "expected ActivityNet JSON ('database'), BSN JSON, a CSV (video,subset,label,start,end, or THUMOS14's) "
        "or a folder of THUMOS per-class files",
    )


def _csv_header(path: Path) -> list[str]:
    from talmts.formats.common import read_csv

    return read_csv(path)[0]

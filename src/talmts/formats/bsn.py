"""BSN's ActivityNet annotations: ``anet_anno_action.json`` plus ``video_info_new.csv`` for the subsets.

The JSON maps ``v_<youtube id>`` to ``{"duration_second", "duration_frame", "feature_frame", "annotations"}``;
the CSV (``video,numFrame,seconds,fps,rfps,subset,featureFrame``) gives each video's subset and fps.
The ``v_`` prefix is dropped so that ids match the official ActivityNet files and results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from talmts.formats.classes import check_labels
from talmts.formats.common import as_float, parse_pair, read_csv, require
from talmts.schema import AnnotationSet, ClassMap, SchemaError, Segment, Video, check_segment, normalize_subset

BSN_PREFIX = "v_"


def strip_prefix(video: str) -> str:
    return video[len(BSN_PREFIX) :] if video.startswith(BSN_PREFIX) else video


def read_bsn_video_info(path: str | Path) -> dict[str, tuple[str, float]]:
    """``video_info_new.csv`` -> ``{video id without v_: (subset, fps)}``."""
    path, out = Path(path), {}
    file = str(path)
    header, rows = read_csv(path)
    for col in ("video", "subset", "fps"):
        if col not in header:
            raise SchemaError(file, "header", col, "missing column", "expected BSN's video_info_new.csv")
    for i, row in enumerate(rows):
        vid, record = strip_prefix(row["video"]), f"row {i + 2} ({row['video']})"
        if vid in out:
            raise SchemaError(file, record, "video", "video listed twice", "keep one row per video")
        fps = as_float(row["fps"], file=file, record=record, field_name="fps")
        out[vid] = (normalize_subset(row["subset"], file=file, record=record), fps)
    return out


def parse_bsn(
    data: dict[str, Any], *, file: str, classes: ClassMap | None = None, video_info: str | Path | None = None
) -> AnnotationSet:
    """Turn a loaded ``anet_anno_action.json`` into an AnnotationSet, subsets from ``video_info``."""
    info_path = Path(video_info) if video_info is not None else Path(file).with_name("video_info_new.csv")
    if not info_path.is_file():
        raise SchemaError(file, "-", "subset", "BSN annotations carry no subsets", "pass video_info=video_info_new.csv")
    info = read_bsn_video_info(info_path)
    videos: dict[str, Video] = {}
    labels: list[tuple[str, str]] = []
    for key, entry in data.items():
        vid = strip_prefix(key)
        if vid in videos:
            raise SchemaError(file, key, "video id", f"{vid!r} appears with and without the v_ prefix")
        if vid not in info:
            raise SchemaError(file, key, "subset", f"video not in {info_path}", "use the matching video_info file")
        subset, fps = info[vid]
        duration = as_float(
            require(entry, "duration_second", file=file, record=key),
            file=file,
            record=key,
            field_name="duration_second",
        )
        if duration < 0:
            raise SchemaError(file, key, "duration_second", f"negative duration {duration}")
        segments = []
        for i, ann in enumerate(require(entry, "annotations", file=file, record=key, kind=list)):
            record = f"{key} annotation {i}"
            label = require(ann, "label", file=file, record=record, kind=str)
            start, end = parse_pair(require(ann, "segment", file=file, record=record), file=file, record=record)
            check_segment(start, end, file=file, record=record)
            labels.append((record, label))
            segments.append(Segment(start, end, label))
        videos[vid] = Video(vid, subset, duration, fps, segments)
    return AnnotationSet(videos, check_labels(labels, classes, file=file), source=file)

"""A plain CSV for one's own dataset: one row per action, the columns a spreadsheet export gives.

    video,subset,label,start,end[,duration][,fps]
    kitchen_01,train,chop,12.5,17.0,95.2
    kitchen_01,train,stir,30.1,41.8,95.2
    kitchen_07,test,,,,60.0          <- a video without actions: label, start and end left empty

Times are seconds; subsets take any spelling ``normalize_subset`` knows (train/training, val/validation,
test/testing). Columns in any order; extra columns are ignored.
"""

from __future__ import annotations

from pathlib import Path

from talmts.formats.classes import check_labels
from talmts.formats.common import as_float, read_csv
from talmts.schema import AnnotationSet, ClassMap, SchemaError, Segment, Video, check_segment, normalize_subset

TABLE_COLUMNS = ("video", "subset", "label", "start", "end")


def is_table_header(header: list[str]) -> bool:
    return set(TABLE_COLUMNS) <= {h.strip() for h in header}


def read_table_csv(path: str | Path, *, classes: ClassMap | None = None) -> AnnotationSet:
    """Read the plain CSV layout above; errors name the file, the row and the column."""
    file = str(path)
    header, raw_rows = read_csv(path)  # a BOM (spreadsheets often write one) is dropped
    missing = [c for c in TABLE_COLUMNS if c not in {h.strip() for h in header}]
    if missing:
        raise SchemaError(file, "header", missing[0], f"missing column(s) {missing}", f"use {','.join(TABLE_COLUMNS)}")
    rows = [{(k.strip() if isinstance(k, str) else k): v for k, v in row.items()} for row in raw_rows]
    videos: dict[str, Video] = {}
    labels: list[tuple[str, str]] = []
    for i, row in enumerate(rows):
        vid = (row["video"] or "").strip()
        record = f"row {i + 2} ({vid or 'no video'})"
        if not vid:
            raise SchemaError(file, record, "video", "empty video id", "give every row its video's id (file name)")
        video = _video(videos, vid, row, file=file, record=record)
        label, start, end = ((row[k] or "").strip() for k in ("label", "start", "end"))
        if not (label or start or end):
            continue  # a video listed without actions
        if not label:
            raise SchemaError(file, record, "label", "empty label for a segment", "name the action class")
        s = as_float(start, file=file, record=record, field_name="start")
        e = as_float(end, file=file, record=record, field_name="end")
        check_segment(s, e, file=file, record=record, field_name="start/end")
        labels.append((record, label))
        video.annotations.append(Segment(s, e, label))
    return AnnotationSet(videos, check_labels(labels, classes, file=file), source=file)


def _video(videos: dict[str, Video], vid: str, row: dict[str, str], *, file: str, record: str) -> Video:
    """The video of ``row``, created at its first row; later rows must agree on subset, duration and fps."""
    subset = normalize_subset(row["subset"] or "", file=file, record=record)
    extra = {}
    for key in ("duration", "fps"):
        text = (row.get(key) or "").strip()
        if text:
            value = as_float(text, file=file, record=record, field_name=key)
            if value <= 0:
                raise SchemaError(file, record, key, f"{key} {value} must be > 0", "leave it empty if unknown")
            extra[key] = value
    if vid not in videos:
        videos[vid] = Video(vid, subset, extra.get("duration"), extra.get("fps"))
        return videos[vid]
    video = videos[vid]
    for key, now in (("subset", subset), *extra.items()):
        have = getattr(video, key)
        if have is None:
            setattr(video, key, now)
        elif have != now:
            raise SchemaError(file, record, key, f"{now!r} differs from {have!r} in an earlier row of {vid}")
    return video

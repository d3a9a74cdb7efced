"""THUMOS14 ground truth in its CSV and per-class text layouts.

- ``*_Annotation*.csv`` (AFSD): ``video,type,type_idx,start,end,startFrame,endFrame``; fps and duration come
  from the matching ``*_video_info.csv`` (formats.video_info; duration = count / fps).
- ``thumos14_test_groundtruth.csv``: ``video-name,t-init,t-end,...,video-duration,frame-rate,...,label-idx`` with
  label-idx 0..19 into the class list and -1 for Ambiguous.
- the official per-class files ``<Class>_val.txt`` / ``<Class>_test.txt`` ("video start end" lines) in one folder.

The subset comes from the video id (``video_validation_*`` / ``video_test_*``), else from the file name.
"""

from __future__ import annotations

import re
from pathlib import Path

from talmts.formats.classes import THUMOS14_CLASSES, check_labels
from talmts.formats.common import AMBIGUOUS, as_float, read_csv, read_text
from talmts.formats.video_info import read_video_info
from talmts.schema import AnnotationSet, ClassMap, SchemaError, Segment, Video, check_segment, normalize_subset

_ANNOTATION_COLUMNS = ("video", "type", "start", "end")
_GROUNDTRUTH_COLUMNS = ("video-name", "t-init", "t-end", "video-duration", "frame-rate", "label-idx")
_PER_CLASS_FILE = re.compile(r"^(?P<label>.+)_(?P<split>val|validation|test)\.txt$")


def _subset_of(video: str, *, file: str, record: str, hint: str | None = None) -> str:
    """Subset from the video id, else from ``hint`` (default: the file name's prefix, e.g. ``val_``)."""
    if video.startswith("video_validation_"):
        return "validation"
    if video.startswith("video_test_"):
        return "test"
    hint = Path(file).name.split("_")[0] if hint is None else hint
    try:
        return normalize_subset(hint, file=file, record=record)
    except SchemaError:
        raise SchemaError(
            file,
            record,
            "video",
            f"cannot tell the subset of {video!r}",
            "use video_validation_*/video_test_* ids or a val_/test_ file name prefix",
        ) from None


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    header, rows = read_csv(path)
    missing = [c for c in required if c not in header]
    if missing:
        raise SchemaError(
            str(path),
            "header",
            missing[0],
            f"missing column(s) {missing}",
            "check the file type (your own dataset: columns video,subset,label,start,end)",
        )
    return rows


def _find_video_info(path: Path) -> Path | None:
    candidate = path.with_name(f"{path.name.split('_')[0]}_video_info.csv")
    return candidate if candidate.is_file() else None


def read_thumos_csv(
    path: str | Path,
    *,
    classes: ClassMap | None = None,
    video_info: str | Path | None = None,
    exclude_ambiguous: bool = True,
) -> AnnotationSet:
    """Read either THUMOS14 CSV layout (chosen by the header)."""
    path = Path(path)
    if "video-name" in read_csv(path)[0]:
        return _read_groundtruth_csv(path, classes=classes, exclude_ambiguous=exclude_ambiguous)
    rows = _read_rows(path, _ANNOTATION_COLUMNS)
    info_path = Path(video_info) if video_info is not None else _find_video_info(path)
    info = {k: (v.fps, v.duration) for k, v in read_video_info(info_path).items()} if info_path is not None else {}
    file = str(path)
    videos: dict[str, Video] = {}
    labels: list[tuple[str, str]] = []
    for i, row in enumerate(rows):
        vid, label, record = row["video"], row["type"], f"row {i + 2} ({row['video']})"
        if vid not in videos:
            fps, duration = info.get(vid, (None, None))
            videos[vid] = Video(vid, _subset_of(vid, file=file, record=record), duration, fps)
        start = as_float(row["start"], file=file, record=record, field_name="start")
        end = as_float(row["end"], file=file, record=record, field_name="end")
        check_segment(start, end, file=file, record=record, field_name="start/end")
        if label == AMBIGUOUS and exclude_ambiguous:
            continue  # the video stays listed (it belongs to the subset), without this instance
        labels.append((record, label))
        videos[vid].annotations.append(Segment(start, end, label))
    return AnnotationSet(videos, check_labels(labels, classes, file=file, fallback=THUMOS14_CLASSES), source=file)


def _read_groundtruth_csv(path: Path, *, classes: ClassMap | None, exclude_ambiguous: bool) -> AnnotationSet:
    file = str(path)
    class_map = classes if classes is not None else ClassMap(THUMOS14_CLASSES)
    videos: dict[str, Video] = {}
    for i, row in enumerate(_read_rows(path, _GROUNDTRUTH_COLUMNS)):
        vid, record = row["video-name"], f"row {i + 2} ({row['video-name']})"
        idx = as_float(row["label-idx"], file=file, record=record, field_name="label-idx")
        if idx != int(idx) or not -1 <= idx < len(class_map):
            raise SchemaError(file, record, "label-idx", f"{row['label-idx']!r} is not -1 or 0..{len(class_map) - 1}")
        if vid not in videos:
            fps = as_float(row["frame-rate"], file=file, record=record, field_name="frame-rate")
            duration = as_float(row["video-duration"], file=file, record=record, field_name="video-duration")
            videos[vid] = Video(vid, _subset_of(vid, file=file, record=record), duration, fps)
        start = as_float(row["t-init"], file=file, record=record, field_name="t-init")
        end = as_float(row["t-end"], file=file, record=record, field_name="t-end")
        check_segment(start, end, file=file, record=record, field_name="t-init/t-end")
        if idx < 0 and exclude_ambiguous:
            continue
        label = AMBIGUOUS if idx < 0 else class_map.names[int(idx)]
        videos[vid].annotations.append(Segment(start, end, label))
    return AnnotationSet(videos, class_map, source=file)


def read_thumos_class_files(
    folder: str | Path, *, classes: ClassMap | None = None, exclude_ambiguous: bool = True
) -> AnnotationSet:
    """Read a folder of official THUMOS14 per-class files (``<Class>_val.txt``, ``<Class>_test.txt``)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if _PER_CLASS_FILE.match(p.name))
    if not files:
        raise SchemaError(str(folder), "-", "-", "no <Class>_val.txt / <Class>_test.txt files", "check the folder")
    videos: dict[str, Video] = {}
    labels: list[tuple[str, str]] = []
    for path in files:
        match = _PER_CLASS_FILE.match(path.name)
        assert match is not None  # the file list was filtered by this pattern
        label, split = match["label"], match["split"]
        file = str(path)
        for n, line in enumerate(read_text(path).splitlines()):
            if not line.strip():
                continue
            record = f"line {n + 1}"
            parts = line.split()
            if len(parts) != 3:
                raise SchemaError(file, record, "-", f"expected 'video start end', got {line!r}")
            vid = parts[0]
            start = as_float(parts[1], file=file, record=record, field_name="start")
            end = as_float(parts[2], file=file, record=record, field_name="end")
            check_segment(start, end, file=file, record=record, field_name="start/end")
            if vid not in videos:
                videos[vid] = Video(vid, _subset_of(vid, file=file, record=record, hint=split))
            if label == AMBIGUOUS and exclude_ambiguous:
                continue
            labels.append((f"{file} {record}", label))
            videos[vid].annotations.append(Segment(start, end, label))
    for video in videos.values():
        video.annotations.sort(key=lambda s: (s.start, s.end, s.label))
    class_map = check_labels(labels, classes, file=str(folder), fallback=THUMOS14_CLASSES)
    return AnnotationSet(dict(sorted(videos.items())), class_map, source=str(folder))

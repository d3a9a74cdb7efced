"""``video_info.csv``: the one reader and writer of per-video frame rates and counts.

Two layouts are read:

- AFSD's, which ``talmts prepare`` writes: ``video,fps,sample_fps,count,sample_count`` (the original rate and frame
  count, the sampled ones; THUMOS14's ``val_video_info.csv`` / ``test_video_info.csv`` have it too);
- BSN's ActivityNet ``video_info_new.csv``: ``video,numFrame,seconds,fps,...`` with ``v_``-prefixed ids (the prefix
  is dropped). Its sampled rate and count follow AFSD's dynamic fps, ``fps * min(max_frames / numFrame, 1)`` and at
  most ``max_frames`` frames (the original rate and count when ``max_frames`` is None).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from talmts.fileio import atomic_write_bytes
from talmts.formats.common import read_csv
from talmts.schema import SchemaError, check_video_id

AFSD_COLUMNS = ("video", "fps", "sample_fps", "count", "sample_count")
BSN_COLUMNS = ("video", "numFrame", "seconds", "fps")


@dataclass(frozen=True)
class VideoInfo:
    """One row: the original rate and frame count, and the sampled ones."""

    video: str
    fps: float  # original frame rate
    sample_fps: float  # nominal sampling rate (per video in ActivityNet's dynamic-fps mode)
    count: int  # original frame count
    sample_count: int  # frames stored in the prepared array

    @property
    def duration(self) -> float:
        """Seconds of video: count / fps."""
        return self.count / self.fps

    def rate(self, protocol: str) -> float:
        """Sample frames per second of video time: annotation seconds * rate = sample frames.

        ``whole`` (ActivityNet): the nominal sampling rate; ``sliding``: fps * sample_count / count, since the
        sampled frames really span count / fps seconds (AFSD's ``frame * sample_count / count``).
        """
        if protocol == "whole":
            return self.sample_fps
        return self.fps * self.sample_count / self.count


def read_video_info(path: str | Path, *, max_frames: int | None = None) -> dict[str, VideoInfo]:
    """Rows of a video_info CSV in either layout, keyed by video id; errors name the file, the row and the column."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(str(path), "-", "-", "file not found", "run `talmts prepare` or check the path")
    header, rows = read_csv(path)
    if all(c in header for c in AFSD_COLUMNS):
        layout = "afsd"
    elif all(c in header for c in BSN_COLUMNS):
        layout = "bsn"
    else:
        raise SchemaError(
            str(path),
            "header",
            ",".join(header),
            "unknown video_info layout",
            f"expected columns {','.join(AFSD_COLUMNS)} (or BSN's {','.join(BSN_COLUMNS)},...)",
        )
    out: dict[str, VideoInfo] = {}
    for line, rec in enumerate(rows, start=2):
        record = f"line {line} ({rec.get('video')})"
        info = _afsd_row(rec, path, record) if layout == "afsd" else _bsn_row(rec, path, record, max_frames)
        if info.video in out:
            raise SchemaError(str(path), record, "video", "video listed twice", "keep one row per video")
        out[info.video] = info
    return out


def write_video_info(rows: dict[str, VideoInfo], path: str | Path) -> None:
    """AFSD's layout, one row per video in id order, written atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(AFSD_COLUMNS)
    for name in sorted(rows):
        r = rows[name]
        writer.writerow([r.video, repr(r.fps), repr(r.sample_fps), r.count, r.sample_count])
    atomic_write_bytes(Path(path), buf.getvalue().encode())


def _number(rec: dict[str, str], key: str, path: Path, record: str) -> float:
    try:
        value = float(rec[key])
    except (TypeError, ValueError):
        raise SchemaError(str(path), record, key, f"not a number: {rec.get(key)!r}", "fix the row") from None
    if not value > 0 or value == float("inf"):
        raise SchemaError(str(path), record, key, f"must be a finite number > 0, got {value}", "fix the row")
    return value


def _whole(rec: dict[str, str], key: str, path: Path, record: str) -> int:
    value = _number(rec, key, path, record)
    if value != int(value):
        raise SchemaError(str(path), record, key, f"not a whole number: {value}", "fix the row")
    return int(value)


def _afsd_row(rec: dict[str, str], path: Path, record: str) -> VideoInfo:
    return VideoInfo(
        _video_id(rec, path, record),
        _number(rec, "fps", path, record),
        _number(rec, "sample_fps", path, record),
        _whole(rec, "count", path, record),
        _whole(rec, "sample_count", path, record),
    )


def _bsn_row(rec: dict[str, str], path: Path, record: str, max_frames: int | None) -> VideoInfo:
    video = _video_id(rec, path, record)
    video = check_video_id(video[2:] if video.startswith("v_") else video, file=str(path), record=record)
    fps, count = _number(rec, "fps", path, record), _whole(rec, "numFrame", path, record)
    scale = 1.0 if max_frames is None else min(max_frames / count, 1.0)
    sample_count = count if max_frames is None else min(count, max_frames)
    return VideoInfo(video, fps, fps * scale, count, sample_count)


def _video_id(rec: dict[str, str], path: Path, record: str) -> str:
    video = (rec.get("video") or "").strip()
    if not video:
        raise SchemaError(str(path), record, "video", "empty video id", "give every row its video's id")
    return check_video_id(video, file=str(path), record=record)

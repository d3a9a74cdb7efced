"""Clip protocols: which windows of a video the network sees, and which ground truth each window holds.

Pure numpy, no torch. Two protocols (``data.protocol``):

- ``sliding`` (THUMOS14, as AFSD): windows of ``clip`` frames; training windows every ``train_stride`` frames,
  the last one aligned to the video end, kept only when at least one action lies wholly inside; a ground truth
  joins a window when at least ``min_overlap`` of its length lies inside, clipped to the window. Test windows
  every ``test_stride`` frames, the last one aligned to the video end. A video of at most ``clip`` frames gets
  one window at 0 (the clip is padded).
- ``whole`` (ActivityNet, as AFSD): one window per video at offset 0 holding the whole video (at most ``clip``
  frames, sampled at a per-video rate by ``talmts prepare --max-frames``).

Annotation seconds become sample frames through each video's rate (:meth:`VideoInfo.rate`):
``sliding``: ``seconds * fps * sample_count / count`` (AFSD's ``frame * sample_count / count`` with the frame
index written as ``seconds * fps``); ``whole``: ``seconds * sample_fps``. Detections go back to seconds with
the same rate, so the round trip is exact.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talmts.schema import SchemaError, Video

AFSD_INFO_COLUMNS = ("video", "fps", "sample_fps", "count", "sample_count")  # `talmts prepare`, AFSD
BSN_INFO_COLUMNS = ("video", "numFrame", "seconds", "fps")  # BSN/G-TAD video_info_new.csv (ActivityNet)


# ------------------------------------------------------------------------------------------ video info
@dataclass(frozen=True)
class VideoInfo:
    """One row of video_info.csv: the original rate and frame count, and the sampled ones."""

    video: str
    fps: float  # original frame rate
    sample_fps: float  # nominal sampling rate (per video in ActivityNet's dynamic-fps mode)
    count: float  # original frame count
    sample_count: int  # frames stored in the prepared array

    def rate(self, protocol: str) -> float:
        """Sample frames per second of video time: annotation seconds * rate = sample frames."""
        if protocol == "whole":
            return self.sample_fps
        # fps * sample_count / count: the sampled frames really span count / fps seconds.
        return self.fps * self.sample_count / self.count


def read_video_info(path: str | Path, *, max_frames: int | None = None) -> dict[str, VideoInfo]:
    """Rows of a video_info CSV keyed by video id.

    Two layouts: AFSD's / ``talmts prepare``'s ``video,fps,sample_fps,count,sample_count``, and BSN's ActivityNet
    ``video_info_new.csv`` (``video,numFrame,seconds,fps,...``, ids with a ``v_`` prefix, which is dropped). For the
    BSN layout the sampled rate and count follow AFSD's dynamic fps, ``fps * min(max_frames / numFrame, 1)`` with
    at most ``max_frames`` frames (or the original rate and count when ``max_frames`` is None).
    """
    path = Path(path)
    try:
        f = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise SchemaError(str(path), "-", "-", "file not found", "run `talmts prepare` or check the path") from None
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if all(c in header for c in AFSD_INFO_COLUMNS):
            layout = "afsd"
        elif all(c in header for c in BSN_INFO_COLUMNS):
            layout = "bsn"
        else:
            raise SchemaError(
                str(path),
                "header",
                ",".join(header),
                "unknown video_info layout",
                f"expected columns {','.join(AFSD_INFO_COLUMNS)} (or BSN's {','.join(BSN_INFO_COLUMNS)},...)",
            )
        out: dict[str, VideoInfo] = {}
        for line, rec in enumerate(reader, start=2):
            record = f"line {line} ({rec.get('video')})"
            info = _afsd_row(rec, path, record) if layout == "afsd" else _bsn_row(rec, path, record, max_frames)
            if info.video in out:
                raise SchemaError(str(path), record, "video", "video listed twice", "keep one row per video")
            out[info.video] = info
    return out


def _number(rec: dict[str, str], key: str, path: Path, record: str) -> float:
    try:
        value = float(rec[key])
    except (TypeError, ValueError):
        raise SchemaError(str(path), record, key, f"not a number: {rec.get(key)!r}", "fix the row") from None
    if not value > 0:
        raise SchemaError(str(path), record, key, f"must be > 0, got {value}", "fix the row or drop the video")
    return value


def _afsd_row(rec: dict[str, str], path: Path, record: str) -> VideoInfo:
    sample_count = _number(rec, "sample_count", path, record)
    if sample_count != int(sample_count):
        raise SchemaError(str(path), record, "sample_count", f"not a whole number: {sample_count}", "fix the row")
    return VideoInfo(
        rec["video"],
        _number(rec, "fps", path, record),
        _number(rec, "sample_fps", path, record),
        _number(rec, "count", path, record),
        int(sample_count),
    )


def _bsn_row(rec: dict[str, str], path: Path, record: str, max_frames: int | None) -> VideoInfo:
    video = rec["video"][2:] if rec["video"].startswith("v_") else rec["video"]
    fps, count = _number(rec, "fps", path, record), _number(rec, "numFrame", path, record)
    scale = 1.0 if max_frames is None else min(max_frames / count, 1.0)
    sample_count = int(count) if max_frames is None else min(int(count), max_frames)
    return VideoInfo(video, fps, fps * scale, count, sample_count)


# ------------------------------------------------------------------------------------------ windows
@dataclass(frozen=True)
class Window:
    """A clip of ``length`` sample frames starting at ``offset``; frames past the video end are padding."""

    video: str
    offset: int
    length: int


def window_offsets(num_frames: int, clip: int, stride: int) -> list[int]:
    """Start frames every ``stride``, plus one aligned to the video end; ``[0]`` when the video fits one clip."""
    if clip < 1 or stride < 1:
        raise ValueError(f"clip ({clip}) and stride ({stride}) must be >= 1")
    if num_frames <= clip:
        return [0]
    last = num_frames - clip
    offsets = list(range(0, last + 1, stride))
    if offsets[-1] != last:
        offsets.append(last)
    return offsets


def test_windows(num_frames: int, clip: int, stride: int) -> list[int]:
    """Offsets of the sliding-window inference protocol (every ``stride`` frames, last window at the end)."""
    return window_offsets(num_frames, clip, stride)


test_windows.__test__ = False  # type: ignore[attr-defined]  # a protocol, not a pytest test


def inside_fraction(segments: np.ndarray, left: float, right: float) -> np.ndarray:
    """Fraction of each segment's length inside [left, right]: [N, 2] -> [N] (<= 0 when disjoint)."""
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    inter = np.minimum(seg[:, 1], right) - np.maximum(seg[:, 0], left)
    return inter / (seg[:, 1] - seg[:, 0])


def window_targets(
    segments: np.ndarray,
    labels: np.ndarray,
    offset: int,
    clip: int,
    min_overlap: float,
    *,
    afsd_left_edge: bool = False,
) -> np.ndarray:
    """Ground truth of one window: [N, 2] frames + [N] labels -> [M, 3] (start, end, label) in window frames.

    A segment joins when at least ``min_overlap`` of its length (and more than nothing) lies inside the window
    [offset, offset + clip]; it is clipped to [0, clip]. ``afsd_left_edge`` reproduces AFSD's quirk (left edge
    offset + 1, clipped to [1, clip]); only the AFSD reference counts use it.
    """
    edge = 1 if afsd_left_edge else 0
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    if len(seg) == 0:
        return np.zeros((0, 3), np.float32)
    left, right = offset + edge, offset + clip
    frac = inside_fraction(seg, left, right)
    keep = (frac >= min_overlap) & (frac > 0)
    out = np.empty((int(keep.sum()), 3), np.float64)
    out[:, 0] = np.maximum(seg[keep, 0] - offset, edge)
    out[:, 1] = np.minimum(seg[keep, 1] - offset, clip)
    out[:, 2] = np.asarray(labels).reshape(-1)[keep]
    return out.astype(np.float32)


def train_windows(
    num_frames: int,
    segments: np.ndarray,
    labels: np.ndarray,
    clip: int,
    stride: int,
    min_overlap: float = 0.5,
    *,
    afsd_left_edge: bool = False,
) -> list[tuple[int, np.ndarray]]:
    """Training windows of one video: (offset, targets [M, 3]) for every window holding a whole action."""
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    valid = seg[:, 1] > seg[:, 0]  # zero-length segments have no inside fraction: skipped
    seg, lab = seg[valid], np.asarray(labels).reshape(-1)[valid]
    out = []
    for offset in window_offsets(num_frames, clip, stride):
        left = offset + (1 if afsd_left_edge else 0)
        if not np.any((seg[:, 0] >= left) & (seg[:, 1] <= offset + clip)):
            continue
        out.append((offset, window_targets(seg, lab, offset, clip, min_overlap, afsd_left_edge=afsd_left_edge)))
    return out


def whole_video_targets(segments: np.ndarray, labels: np.ndarray, clip: int) -> np.ndarray:
    """The ``whole`` protocol: every segment with some length inside [0, clip], clipped to it -> [M, 3]."""
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    lab = np.asarray(labels).reshape(-1)
    valid = seg[:, 1] > seg[:, 0]
    return window_targets(seg[valid], lab[valid], 0, clip, 0.0)


# ------------------------------------------------------------------------------------------ planning
@dataclass(frozen=True, eq=False)
class ClipPlan:
    """One clip a dataset serves: the window, its targets [M, 3] in clip frames, and the video's rate."""

    window: Window
    targets: np.ndarray
    rate: float  # sample frames per second: seconds = (frame + offset) / rate
    num_frames: int  # frames of the whole video


def plan_clips(
    videos: Iterable[Video],
    infos: dict[str, VideoInfo],
    class_index: Callable[[str], int],
    *,
    protocol: str,
    clip: int,
    stride: int,
    min_overlap: float,
    train: bool,
) -> list[ClipPlan]:
    """Windows of every video (which must appear in ``infos``), in the given video order.

    train: the training protocol (only windows holding a whole action; for ``whole``, only videos with some
    ground truth); otherwise every test window of every video, with the ground truth it holds.
    """
    plans: list[ClipPlan] = []
    for video in videos:
        info = infos[video.id]
        rate = info.rate(protocol)
        n = info.sample_count
        seg = np.array([[s.start, s.end] for s in video.annotations], np.float64).reshape(-1, 2) * rate
        lab = np.array([class_index(s.label) for s in video.annotations], np.float64)
        if protocol == "whole":
            if n > clip:
                raise ValueError(
                    f"video {video.id}: {n} prepared frames exceed data.clip_frames={clip} under the 'whole' "
                    f"protocol (prepare with `talmts prepare --max-frames {clip}`, or use data.protocol=sliding)"
                )
            targets = whole_video_targets(seg, lab, clip)
            if not train or len(targets):
                plans.append(ClipPlan(Window(video.id, 0, clip), targets, rate, n))
        elif train:
            for offset, targets in train_windows(n, seg, lab, clip, stride, min_overlap):
                plans.append(ClipPlan(Window(video.id, offset, clip), targets, rate, n))
        else:
            valid = seg[:, 1] > seg[:, 0]
            for offset in test_windows(n, clip, stride):
                targets = window_targets(seg[valid], lab[valid], offset, clip, min_overlap)
                plans.append(ClipPlan(Window(video.id, offset, clip), targets, rate, n))
    return plans

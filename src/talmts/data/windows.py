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

Training plans its windows by index (:func:`plan_clips`, random access for a dataset); inference cuts them from
any frame source as the frames arrive (:class:`WindowCutter`, :func:`cut_windows`: stored arrays for ``eval``, a video
being decoded for ``detect``, a live stream for ``stream``). Both place them with :func:`window_offsets`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from talmts.errors import InputError, TalmtsError
from talmts.formats.video_info import VideoInfo
from talmts.schema import Video


# ------------------------------------------------------------------------------------------ windows
@dataclass(frozen=True)
class Window:
    """A clip of ``length`` sample frames starting at ``offset``; frames past the video end are padding."""

    video: str
    offset: int
    length: int


def window_offsets(num_frames: int, clip: int, stride: int, align: int = 1) -> list[int]:
    """The sliding-window rule: starts every ``stride``, plus one aligned to the video end; ``[0]`` when the video fits
    one clip. ``align`` > 1 (a whole-video feature map's grid; ``stride`` a multiple of it): the last start is
    rounded up to a multiple of ``align``, so that window runs past the video end by fewer than ``align`` frames."""
    if clip < 1 or stride < 1:
        raise ValueError(f"clip ({clip}) and stride ({stride}) must be >= 1")
    if num_frames <= clip:
        return [0]
    last = align * -(-(num_frames - clip) // align)
    offsets = list(range(0, last + 1, stride))
    if offsets[-1] != last:
        offsets.append(last)
    return offsets


def inference_offsets(num_frames: int, clip: int, stride: int, protocol: str = "sliding", align: int = 1) -> list[int]:
    """Window starts of the inference protocol: ``sliding``, :func:`window_offsets`; ``whole``, one window at 0."""
    if protocol == "whole":
        return [0]
    return window_offsets(num_frames, clip, stride, align)


class WholeVideoTooLong(TalmtsError, ValueError):
    """A video has more frames than one window under the ``whole`` protocol."""


class WindowCutter:
    """The one window cutter of inference, fed one frame at a time: :meth:`push` each frame, :meth:`close` at the end.

    A frame is a tuple with one array per stream (e.g. (rgb, flow)); a window comes out as (offset, [uint8 [t, ...]
    per stream]) at :func:`inference_offsets`, t <= clip (fewer at the end of a short video). The length need not be
    known in advance: a regular window is cut as soon as its last frame arrives, the end-aligned (or only) one at
    :meth:`close`, and only the last ``clip`` frames are held, since every later window starts after ``n - clip``.
    """

    def __init__(self, clip: int, stride: int, protocol: str = "sliding", video: str = "video"):
        if clip < 1 or stride < 1:
            raise ValueError(f"clip ({clip}) and stride ({stride}) must be >= 1")
        self.clip, self.stride, self.protocol, self.video = clip, stride, protocol, video
        self.count = 0  # frames pushed
        self._buf: deque[Sequence[np.ndarray]] = deque(maxlen=clip)

    def push(self, frame: Sequence[np.ndarray]) -> tuple[int, list[np.ndarray]] | None:
        """Add the next frame; the window it completes, if any."""
        clip, n = self.clip, self.count
        if self.protocol == "whole" and n == clip:
            raise WholeVideoTooLong(
                f"{self.video}: more than data.clip_frames={clip} frames under the 'whole' protocol (sample it to "
                f"at most {clip} frames: `talmts prepare --max-frames {clip}`, or use data.protocol=sliding)"
            )
        self._buf.append(frame)
        self.count = n = n + 1
        if self.protocol != "whole" and n >= clip and (n - clip) % self.stride == 0:  # a regular offset: in every plan
            return n - clip, self._window()
        return None

    def close(self) -> tuple[int, list[np.ndarray]] | None:
        """The input has ended: the end-aligned (or only) window, unless the last regular one already ends there."""
        n, clip = self.count, self.clip
        if n == 0:
            return None
        last = inference_offsets(n, clip, self.stride, self.protocol)[-1]
        if self.protocol == "whole" or n < clip or (n - clip) % self.stride:
            return last, self._window()
        return None

    def earliest_next_offset(self) -> int:
        """The smallest offset any window not cut yet can have: the end-aligned window, should the input end now,
        starts at ``count - clip``; every regular one later. Candidates of later windows start at or after it."""
        return max(0, self.count - self.clip)

    def _window(self) -> list[np.ndarray]:
        buf = self._buf
        return [np.stack([f[k] for f in buf]) for k in range(len(buf[0]))]


def cut_windows(
    frames: Iterable[Sequence[np.ndarray]], clip: int, stride: int, protocol: str = "sliding", video: str = "video"
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """:class:`WindowCutter` over any frame source (a raw video being decoded, or stored arrays): every window, in
    offset order."""
    cutter = WindowCutter(clip, stride, protocol, video)
    for f in frames:
        window = cutter.push(f)
        if window is not None:
            yield window
    window = cutter.close()
    if window is not None:
        yield window


def frames_of(arrays: Sequence[np.ndarray]) -> Iterator[tuple[np.ndarray, ...]]:
    """Per-frame tuples over stored arrays (views, no copy; memory-mapped arrays are read a window at a time)."""
    n = min(len(a) for a in arrays)
    for i in range(n):
        yield tuple(a[i] for a in arrays)


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
    align: int = 1,
) -> list[tuple[int, np.ndarray]]:
    """Training windows of one video: (offset, targets [M, 3]) for every window holding a whole action."""
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    valid = seg[:, 1] > seg[:, 0]  # zero-length segments have no inside fraction: skipped
    seg, lab = seg[valid], np.asarray(labels).reshape(-1)[valid]
    out = []
    for offset in window_offsets(num_frames, clip, stride, align):
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
    align: int = 1,
) -> list[ClipPlan]:
    """Windows of every video (which must appear in ``infos``), in the given video order.

    train: the training protocol (only windows holding a whole action; for ``whole``, only videos with some
    ground truth); otherwise every test window of every video, with the ground truth it holds. ``align``: window
    starts on this grid (:func:`window_offsets`).
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
                raise InputError(
                    f"video {video.id}: {n} prepared frames exceed data.clip_frames={clip} under the 'whole' "
                    f"protocol (prepare with `talmts prepare --max-frames {clip}`, or use data.protocol=sliding)"
                )
            targets = whole_video_targets(seg, lab, clip)
            if not train or len(targets):
                plans.append(ClipPlan(Window(video.id, 0, clip), targets, rate, n))
        elif train:
            for offset, targets in train_windows(n, seg, lab, clip, stride, min_overlap, align=align):
                plans.append(ClipPlan(Window(video.id, offset, clip), targets, rate, n))
        else:
            valid = seg[:, 1] > seg[:, 0]
            for offset in inference_offsets(n, clip, stride, align=align):
                targets = window_targets(seg[valid], lab[valid], offset, clip, min_overlap)
                plans.append(ClipPlan(Window(video.id, offset, clip), targets, rate, n))
    return plans

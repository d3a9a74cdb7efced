"""Decode a video with PyAV and sample it the way AFSD does: a fixed rate, resized to a square.

AFSD (common/video2npy.py) walks the decoded frames and keeps one whenever an accumulator, advanced by 1 per
decoded frame, reaches ``step = fps / sample_fps``; the kept frame is resized to S x S (aspect ratio not kept)
with bicubic interpolation. We do the same with two differences, both recorded in docs/DESIGN.md:

* resizing and YUV -> RGB conversion happen in one swscale call (bicubic, which filters over the whole
  footprint when shrinking, as PIL's bicubic does);
* a video slower than the sample rate repeats frames (``while`` instead of AFSD's ``if``), so the output is
  always at ``sample_fps``; AFSD refuses such videos.

ActivityNet's "dynamic fps" (at most N frames per video) is :func:`dynamic_sample_fps`.

A video's own rate is what its container declares, and a container can declare anything: a 1 kB file that claims
1/65535 fps would sample to two million frames. So the declared rate must lie in :data:`DECLARED_FPS` and the
sample rate in :data:`SAMPLE_FPS`; each decoded frame then yields at most ``SAMPLE_FPS[1] / DECLARED_FPS[0]``
sampled frames, and what is sampled is bounded by what the file really holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from talmts.data.completeness import DecodeCheck, check_decoded
from talmts.errors import TalmtsError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
INTERPOLATION = "BICUBIC"  # swscale flag name, see av.video.reformatter.Interpolation
# Frame rates a container may declare: from a slide show's frame every 10 s to a high-speed camera's 1000 fps.
DECLARED_FPS = (0.1, 1000.0)
# Rates talmts samples at (prepare --fps, data.fps): the paper's 10 fps, and anything from a frame every 100 s up to
# 120 fps (beyond a video's own rate the sampler only repeats frames)
SAMPLE_FPS = (0.01, 120.0)
MAX_FRAME_SIZE = 1024  # prepare --size and data.stored_size: a 1024 x 1024 RGB frame is 3 MiB, an hour at 10 fps 113 GB


class VideoDecodeError(TalmtsError, RuntimeError):
    """A video could not be decoded; ``reason`` says why in a few words."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class SampledVideo:
    """A decoded, sampled and resized video with AFSD's video_info columns."""

    frames: np.ndarray  # uint8 [T, S, S, 3] RGB
    fps: float  # the video's own frame rate
    sample_fps: float  # rate of ``frames``
    count: int  # frames decoded from the file
    sample_count: int  # T
    check: DecodeCheck | None = None  # decoded length against the declared one (see data.completeness)


class AccumulatorSampler:
    """AFSD's frame picker: after each decoded frame, say how many copies of it to keep (0, 1, or more)."""

    def __init__(self, fps: float, sample_fps: float):
        if not (0 < fps < math.inf and 0 < sample_fps < math.inf):  # inf would loop for ever, NaN keep nothing
            raise ValueError(f"frame rates must be positive and finite (fps={fps}, sample_fps={sample_fps})")
        self.step = fps / sample_fps
        self._acc = 0.0

    def __call__(self) -> int:
        self._acc += 1.0
        keep = 0
        # AFSD: `if`, identical whenever step >= 1. The tolerance makes the float accumulator agree with exact
        # arithmetic where k / step is a whole number (e.g. 250 frames at 25 -> 6 fps must give 60, not 59).
        while self._acc >= self.step - 1e-9:
            self._acc -= self.step
            keep += 1
        return keep


def sample_indices(count: int, fps: float, sample_fps: float) -> list[int]:
    """Indices (0-based, with repeats when upsampling) of the decoded frames the sampler keeps."""
    sampler = AccumulatorSampler(fps, sample_fps)
    out: list[int] = []
    for i in range(count):
        out.extend([i] * sampler())
    return out


def dynamic_sample_fps(fps: float, count: int, max_frames: int, cap: float | None = None) -> float:
    """ActivityNet "dynamic fps" (AFSD): fps' = fps * min(max_frames / count, 1), optionally capped at ``cap``."""
    if count <= 0:
        raise ValueError("count must be positive")
    rate = fps * min(max_frames / count, 1.0)
    return rate if cap is None else min(rate, cap)


def _open(path: Path) -> tuple[av.container.InputContainer, av.VideoStream]:
    if not path.is_file():
        raise VideoDecodeError(path, "file not found")
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise VideoDecodeError(path, f"cannot open: {ffmpeg_reason(e)}") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    return container, container.streams.video[0]


def ffmpeg_reason(e: Exception) -> str:
    """An FFmpeg error's reason in a few words (its str() carries the path too; the reason alone is in strerror)."""
    text = str(getattr(e, "strerror", None) or e).strip() or type(e).__name__
    return text.splitlines()[0][:200]


def stream_fps(path: str | Path) -> float:
    """Frame rate the container declares (average, else guessed, else base rate)."""
    container, stream = _open(Path(path))
    try:
        return declared_rate(path, stream)
    finally:
        container.close()


def declared_rate(path: str | Path, stream: av.VideoStream) -> float:
    """The stream's frame rate: average, else guessed, else base rate (``path`` names it in the error)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0 and math.isfinite(float(rate)):
            lo, hi = DECLARED_FPS
            if not lo <= float(rate) <= hi:
                raise VideoDecodeError(
                    path, f"the container declares {float(rate):.3g} fps, outside [{lo:g}, {hi:g}]: re-encode the video"
                )
            return float(rate)
    raise VideoDecodeError(path, "the container declares no frame rate")


def count_frames(path: str | Path) -> int:
    """Number of video frames, by demuxing packets (no decoding); used to pick the dynamic fps."""
    container, stream = _open(Path(path))
    try:
        return sum(1 for p in container.demux(stream) if p.size > 0)
    except av.FFmpegError as e:
        raise VideoDecodeError(path, f"cannot read packets: {ffmpeg_reason(e)}") from e
    finally:
        container.close()


def iter_frames(path: str | Path, threads: int = 0) -> Iterator[av.VideoFrame]:
    """Decoded frames of the first video stream, in order. ``threads`` 0 lets FFmpeg choose."""
    container, stream = _open(Path(path))
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    try:
        yield from container.decode(stream)
    except av.FFmpegError as e:
        raise VideoDecodeError(path, f"decoding failed: {ffmpeg_reason(e)}") from e
    finally:
        container.close()


def to_rgb(frame: av.VideoFrame, size: int | None) -> np.ndarray:
    """One frame as uint8 RGB [H, W, 3], resized to size x size when ``size`` is given (aspect not kept)."""
    if size is None:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(width=size, height=size, format="rgb24", interpolation=INTERPOLATION)


@dataclass
class DecodeInfo:
    """What decoding found, filled in while a video streams: the columns of AFSD's video_info.csv."""

    fps: float = 0.0  # the video's own frame rate
    sample_fps: float = 0.0  # the rate frames are kept at
    count: int = 0  # frames decoded from the file
    sample_count: int = 0  # frames kept
    check: DecodeCheck | None = None  # set once the video has streamed: is it as long as its container declares?

    @property
    def duration(self) -> float:
        return self.count / self.fps if self.fps else 0.0


def sampled_frames(
    path: str | Path,
    sample_fps: float | None = 10.0,
    size: int | None = 112,
    max_frames: int | None = None,
    info: DecodeInfo | None = None,
    threads: int = 0,
    strict: bool = False,
) -> Iterator[np.ndarray]:
    """The one sampler: uint8 RGB frames [S, S, 3] of ``path`` at ``sample_fps``, resized to ``size``, one at a time.

    ``max_frames`` switches to AFSD's ActivityNet dynamic fps: the rate is fps * min(max_frames / count, 1)
    (further capped at ``sample_fps`` when that is given) and at most ``max_frames`` frames are kept.
    ``sample_fps=None`` without ``max_frames`` keeps every frame at the video's own rate. ``info`` (optional) is
    filled in as the video streams. Raises :class:`VideoDecodeError` for missing, corrupt or empty videos, and with
    ``strict`` for one that decodes far shorter than its container declares (otherwise ``info.check`` says so, see
    data.completeness); only one decoded frame is held at a time, so a video of any length streams in constant
    memory.
    """
    path = Path(path)
    info = DecodeInfo() if info is None else info
    fps = stream_fps(path)
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        expected = count_frames(path)
        if expected == 0:
            raise VideoDecodeError(path, "zero frames")
        rate = dynamic_sample_fps(fps, expected, max_frames, cap=sample_fps)
    else:
        rate = fps if sample_fps is None else float(sample_fps)
    info.fps, info.sample_fps = fps, rate
    yield from sample_decoded(iter_frames(path, threads=threads), AccumulatorSampler(fps, rate), size, info, max_frames)
    if info.count == 0:
        raise VideoDecodeError(path, "zero frames decoded")
    if info.sample_count == 0:
        raise VideoDecodeError(path, f"no frame kept at {rate:g} fps from {info.count} frames")
    info.check = check_decoded(path, info.count, fps)  # a cut-short file decodes to its end without an error
    if strict and info.check.short:
        raise VideoDecodeError(path, info.check.problem())


def sample_decoded(
    frames: Iterable[av.VideoFrame],
    sampler: AccumulatorSampler,
    size: int | None,
    info: DecodeInfo,
    max_frames: int | None = None,
) -> Iterator[np.ndarray]:
    """The sampling loop over decoded frames, shared by files and live sources: each frame counted in ``info``,
    kept as ``sampler`` says (at most ``max_frames`` in all), converted to RGB at ``size`` only when kept."""
    for frame in frames:
        info.count += 1
        copies = sampler()
        if max_frames is not None:
            copies = min(copies, max_frames - info.sample_count)
        if copies <= 0:
            continue
        image = to_rgb(frame, size)
        for _ in range(copies):
            info.sample_count += 1
            yield image


def read_video(
    path: str | Path,
    sample_fps: float | None = 10.0,
    size: int | None = 112,
    max_frames: int | None = None,
    threads: int = 0,
    strict: bool = False,
) -> SampledVideo:
    """All frames of :func:`sampled_frames` in one array, with the video_info columns and the length check."""
    info = DecodeInfo()
    frames = np.stack(list(sampled_frames(path, sample_fps, size, max_frames, info, threads, strict)), 0)
    return SampledVideo(frames, info.fps, info.sample_fps, info.count, info.sample_count, info.check)

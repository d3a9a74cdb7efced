"""Is a decoded video whole? Compare what the decoder returned with the length the container declares.

A file cut short (a download or a copy that stopped), or a stream the decoder gives up on, still opens, and
decoding simply ends early: without this check the video would be kept as if it were whole, and every annotation
after the decoded end would silently become unreachable.

The declared length is the stream's frame count when the container stores one (AVI, MP4), else the stream's
duration, else the container's (Matroska, WebM). A decode is *short* when it falls below the declared length by
more than :data:`SHORT_FRACTION` of it and by more than :data:`SHORT_FRAMES` frames (both, so that a decoder
dropping a frame or two at the end, or a rounded duration, is not reported). A variable-frame-rate file whose
frames, counted at the average rate, cover less than its declared duration is reported the same way: talmts
maps frames to seconds at that rate, so the tail is out of reach there too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import av

SHORT_FRACTION = 0.05  # more than 5 % of the declared length missing ...
SHORT_FRAMES = 2  # ... and more than 2 frames
BEYOND_END_SECONDS = 1.0  # ground truth ending more than this after the decoded end is reported


DECODE_FIELDS = ("decoded_frames", "fps", "declared_frames", "declared_seconds")


@dataclass(frozen=True)
class DecodeCheck:
    """Decoded length of a video against the length its container declares (None: not declared)."""

    decoded_frames: int
    fps: float
    declared_frames: int | None
    declared_seconds: float | None

    @property
    def decoded_seconds(self) -> float:
        return self.decoded_frames / self.fps

    @property
    def short(self) -> bool:
        if self.declared_frames:
            missing = self.declared_frames - self.decoded_frames
            return missing > SHORT_FRAMES and missing > SHORT_FRACTION * self.declared_frames
        if self.declared_seconds:
            missing = self.declared_seconds - self.decoded_seconds
            return missing > SHORT_FRAMES / self.fps and missing > SHORT_FRACTION * self.declared_seconds
        return False

    def problem(self) -> str:
        """One sentence: both lengths, e.g. for a warning or an error."""
        if self.declared_frames:
            declared = f"{self.declared_frames} frames ({self.declared_frames / self.fps:.2f} s)"
        else:
            declared = f"{self.declared_seconds or 0:.2f} s"
        return (
            f"decoded {self.decoded_frames} frames ({self.decoded_seconds:.2f} s at {self.fps:g} fps) but the "
            f"container declares {declared}; the file is cut short or partly "
            "undecodable (or has a variable frame rate): annotations after the decoded end cannot be detected"
        )

    def record(self) -> dict:
        """The fields stored per video by `talmts prepare` (meta/<video>.json)."""
        return {**asdict(self), "decoded_seconds": self.decoded_seconds, "short": self.short}


def declared_length(path: str | Path) -> tuple[int | None, float | None]:
    """(frames, seconds) the container declares for its first video stream; None where it declares nothing."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None, None
            stream = container.streams.video[0]
            frames = int(stream.frames) if stream.frames and stream.frames > 0 else None
            seconds = None
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration:
                seconds = container.duration / av.time_base
            return frames, (seconds if seconds and seconds > 0 else None)
    except (av.FFmpegError, OSError):
        return None, None  # the decoder already reported what is wrong with this file


def check_decoded(path: str | Path, decoded_frames: int, fps: float) -> DecodeCheck:
    """Compare ``decoded_frames`` at ``fps`` with what the container at ``path`` declares."""
    frames, seconds = declared_length(path)
    return DecodeCheck(decoded_frames, fps, frames, seconds)


@dataclass(frozen=True)
class BeyondEnd:
    """Ground truth of one video that ends after what was decoded of it."""

    video: str
    decoded_seconds: float
    instances: int  # how many end more than BEYOND_END_SECONDS after the decoded end
    last_end: float

    def describe(self) -> str:
        return (
            f"{self.video}: {self.instances} ground-truth instance(s) end after the decoded end "
            f"{self.decoded_seconds:.2f} s (the last at {self.last_end:.2f} s)"
        )


def ground_truth_beyond_end(videos: Iterable, decoded_seconds: Mapping[str, float]) -> list[BeyondEnd]:
    """Videos (``schema.Video``) whose annotations end more than BEYOND_END_SECONDS after the decoded end."""
    out = []
    for video in videos:
        end = decoded_seconds.get(video.id)
        if end is None:
            continue
        late = [s.end for s in video.annotations if s.end > end + BEYOND_END_SECONDS]
        if late:
            out.append(BeyondEnd(video.id, end, len(late), max(late)))
    return out

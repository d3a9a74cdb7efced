"""Live video sources for ``talmts stream``, sampled the way :func:`talmts.data.video.sampled_frames` samples a file.

A source is a video file (decoded as fast as it goes, or at its own pace with ``realtime``), ``-`` for a container
stream on standard input (e.g. ``ffmpeg ... -f matroska -``), or anything else FFmpeg opens: a URL (RTSP, HTTP,
TCP, ...) or a device (``/dev/video0`` with ``format="v4l2"``). Decoding and sampling are those of a file, so a file
gives the same frames either way.

A network source that fails or times out mid-stream can be reopened (``reconnect`` times). The stream clock counts
sampled frames, so what the source sent while it was being reopened is not in it. Reaching the end of a source is
the end of the stream, never a reason to reconnect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np

from talmts.data.video import (
    AccumulatorSampler,
    DecodeInfo,
    VideoDecodeError,
    declared_rate,
    ffmpeg_reason,
    sample_decoded,
)
from talmts.errors import InputError

logger = logging.getLogger(__name__)

STDIN = "-"
# URL schemes of sources that may drop and come back (a file, a pipe or a device does not)
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "srt", "rtp", "mms", "hls")
RECONNECT_PAUSE_S = 1.0


class SourceStalled(VideoDecodeError):
    """No data came from a source for longer than its timeout."""


def is_network(source: str) -> bool:
    """Is ``source`` a URL of a network protocol (one that a reconnect can bring back)?"""
    scheme, sep, _ = source.partition("://")
    return bool(sep) and scheme.lower() in NETWORK_SCHEMES


def check_source(source: str, *, reconnect: int = 0, realtime: bool = False) -> None:
    """Refuse what cannot work before anything runs: a missing file, or options that do not apply to the source."""
    url = "://" in source
    if source != STDIN and not url and not source.startswith("/dev/") and not Path(source).is_file():
        raise InputError(f"{source}: no such video file (a file, '-' for standard input, or a URL)")
    if reconnect and not is_network(source):
        raise InputError(f"--reconnect applies to network sources ({', '.join(NETWORK_SCHEMES)}); {source} is not one")
    if realtime and (source == STDIN or url):
        raise InputError(f"--realtime paces a file; {source} arrives at its own pace already")


def open_source(source: str, timeout: float | None = None, fmt: str | None = None) -> av.container.InputContainer:
    """Open ``source`` with PyAV: ``-`` is standard input; ``timeout`` (seconds) bounds opening and each read where
    FFmpeg's protocol honours it (network protocols do; a pipe blocks, and the caller's own watchdog covers it)."""
    target = "pipe:0" if source == STDIN else source
    options: dict = {} if timeout is None else {"timeout": (timeout, timeout)}
    try:
        container = av.open(target, format=fmt, **options)
    except av.FFmpegError as e:
        raise VideoDecodeError(source, f"cannot open: {ffmpeg_reason(e)}") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(source, "no video stream")
    return container


def live_frames(
    source: str,
    sample_fps: float,
    size: int | None,
    info: DecodeInfo,
    *,
    timeout: float | None = None,
    fmt: str | None = None,
    realtime: bool = False,
    reconnect: int = 0,
    on_reconnect: Callable[[int, str], None] | None = None,
) -> Iterator[np.ndarray]:
    """uint8 RGB frames [S, S, 3] of ``source`` at ``sample_fps``, one at a time, as they are decoded.

    ``info`` is filled in as the frames arrive (its ``count`` and ``sample_count`` go on across reconnects).
    ``realtime``: a decoded frame is released no earlier than its place in the file at the file's own rate.
    ``reconnect``: times a network source is reopened after a read error or timeout; ``on_reconnect(attempt,
    reason)`` is called before each. Raises :class:`VideoDecodeError` when the source cannot be opened, or fails
    with no reconnect left.
    """
    attempts = 0
    container: av.container.InputContainer | None = open_source(source, timeout, fmt)
    while container is not None:
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = declared_rate(source, stream)
            if info.fps == 0.0:
                info.fps, info.sample_fps = fps, float(sample_fps)
            decoded = container.decode(stream)
            if realtime:
                decoded = _paced(decoded, fps)
            yield from sample_decoded(decoded, AccumulatorSampler(fps, sample_fps), size, info)
            return
        except av.ExitError:  # FFmpeg's interrupt: the timeout passed without data
            reason, stalled = f"no data for {timeout or 0:g} s", True
        except av.FFmpegError as e:
            reason, stalled = ffmpeg_reason(e), False
        finally:
            container.close()
        container = None
        while container is None:  # reopen, as many times as allowed
            if attempts >= reconnect:
                raise (SourceStalled if stalled else VideoDecodeError)(source, f"reading failed: {reason}")
            attempts += 1
            logger.warning("%s: %s; reconnecting (%d of %d)", source, reason, attempts, reconnect)
            if on_reconnect is not None:
                on_reconnect(attempts, reason)
            time.sleep(RECONNECT_PAUSE_S)
            try:
                container = open_source(source, timeout, fmt)
            except VideoDecodeError as e:
                reason, stalled = e.reason, False


def _paced(frames: Iterator[av.VideoFrame], fps: float) -> Iterator[av.VideoFrame]:
    """Release decoded frame i no earlier than i / fps seconds after the first."""
    start = time.monotonic()
    for i, frame in enumerate(frames):
        wait = start + i / fps - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield frame

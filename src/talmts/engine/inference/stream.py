"""``talmts stream``: detections while the video plays, each one as soon as it is final.

The offline path of :class:`~talmts.engine.inference.predictor.Predictor`, run as the frames arrive:

    source (data/source.live_frames, in a reader thread) -> a bounded queue -> flow on the fly
    (Predictor.stream_frames) -> WindowCutter -> the network, one window at a time (Predictor.window_candidates)
    -> OnlineSoftNMS (postprocess/settle.py) -> each detection, once final, to ``on_detection``

Memory is bounded by the window, not by the stream: the queue holds at most one window of frames, the cutter the
last window, the flow one frame pair, Soft-NMS the candidates of the last ``horizon`` seconds, and the files
written at the end (``out``) the ``infer.nms_top_k`` best detections of each class. What "final" means, and why the
detections equal ``talmts detect``'s on the same file, is in docs/DESIGN.md ("Streaming").
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch

from talmts.config import ConfigError
from talmts.data.flow import default_batch
from talmts.data.source import STDIN, SourceStalled, check_source, live_frames
from talmts.data.video import DecodeInfo, VideoDecodeError
from talmts.data.windows import WindowCutter
from talmts.engine.inference.predictor import Predictor, load_predictor, raw_video_flow_method
from talmts.engine.inference.stream_settings import StreamSettings, default_threads
from talmts.errors import InputError
from talmts.formats.video_info import VideoInfo
from talmts.postprocess import kept_detections
from talmts.postprocess.settle import BestPerClass, OnlineSoftNMS, Settled
from talmts.processes import StopSignals
from talmts.schema import Detection

logger = logging.getLogger(__name__)

POLL_S = 0.1  # how often the main thread looks at the stop flag and the clock while it waits for a frame


@dataclass(frozen=True)
class Emitted:
    """A detection as it leaves: in seconds of stream time (sample frame / sample rate), with the stream time read
    and the wall seconds since the start when it left, and whether its score is proven final."""

    detection: Detection
    stream_time: float
    wall: float
    exact: bool


@dataclass(frozen=True)
class StreamStatus:
    stream_time: float  # seconds of stream processed
    wall: float  # seconds since the first frame arrived
    rate: float  # stream seconds processed per wall second, since the previous status
    lag: float  # wall - stream_time: how far processing runs behind real time (negative: ahead)
    emitted: int
    held: int  # candidates Soft-NMS holds


@dataclass
class StreamResult:
    """How a stream ended, and what it gave."""

    video: str
    reason: str  # "end", "stalled", "source error" or "interrupted"
    message: str  # one line for the user when the reason is not "end" ("" otherwise)
    emitted: int
    inexact: int  # emitted at the horizon, not proven final
    info: DecodeInfo
    detections: list[Detection] = field(default_factory=list)  # what the files hold (best first)
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    peak_held: int = 0  # the most candidates Soft-NMS held at once

    @property
    def stream_time(self) -> float:
        return self.info.sample_count / self.info.sample_fps if self.info.sample_fps else 0.0


def run_stream(
    source: str,
    checkpoints: Sequence[str | Path],
    *,
    settings: StreamSettings | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    overrides: Sequence[str] = (),
    on_detection: Callable[[Emitted], None] = lambda e: None,
    on_status: Callable[[StreamStatus], None] = lambda s: None,
) -> StreamResult:
    """``talmts stream``: load the streams of ``checkpoints`` (one, or RGB + flow: fused) and run
    :func:`stream_detections` on ``source``."""
    settings = settings or StreamSettings()
    settings.check()
    check_source(source, reconnect=settings.reconnect, realtime=settings.realtime)
    predictor = load_predictor(checkpoints, device=device, overrides=overrides)
    return stream_detections(predictor, source, settings, out=out, on_detection=on_detection, on_status=on_status)


def stream_detections(
    predictor: Predictor,
    source: str,
    settings: StreamSettings,
    *,
    out: str | Path | None = None,
    on_detection: Callable[[Emitted], None] = lambda e: None,
    on_status: Callable[[StreamStatus], None] = lambda s: None,
) -> StreamResult:
    """Run ``predictor`` on ``source`` as it arrives; each final detection goes to ``on_detection``, a status every
    ``settings.every`` seconds to ``on_status``; with ``out``, the usual files are written when the stream ends
    (the end of the source, a stall, a source error, or SIGINT / SIGTERM, all of which end it cleanly)."""
    check_streamable(predictor)
    if out is not None:
        check_out_folder(out)
    prep = predictor.preparation
    assert prep.fps is not None  # check_streamable
    fps = float(prep.fps)
    d = predictor.streams[0].cfg.data
    vid = settings.video_id or video_id_of(source)
    info = DecodeInfo()
    reader = _Reader(source, prep.fps, prep.size, info, settings, queue_frames=d.clip_frames)
    cutter = WindowCutter(d.clip_frames, predictor.stride, predictor.protocol, vid)
    merger = OnlineSoftNMS(predictor.infer, settings.min_score, horizon=settings.horizon * fps)
    best = BestPerClass(predictor.infer.nms_top_k) if out is not None else None
    names = [""] + list(predictor.classes.names)
    emitted = inexact = peak = 0
    clock = _Clock(settings.every, on_status)

    def emit(decided: list[Settled]) -> None:
        nonlocal emitted, inexact
        now = clock.wall()
        for s in decided:
            det = Detection(s.start / fps, s.end / fps, names[s.label], s.score)
            on_detection(Emitted(det, cutter.count / fps, now, s.exact))
            emitted += 1
            inexact += not s.exact
            if best is not None:
                best.add(s)

    def run_window(window: tuple[int, list[np.ndarray]] | None) -> None:
        if window is not None:
            for candidates in predictor.window_candidates(*window):
                merger.add(candidates)

    start = time.perf_counter()
    with StopSignals((signal.SIGINT, signal.SIGTERM)) as stop, _torch_threads(settings.threads or default_threads()):
        reader.start(stop.requested)  # a stop ends the stream cleanly; a second Ctrl-C interrupts at once
        try:
            received = reader.frames(lambda: clock.tick(cutter.count / fps, emitted, merger.held))
            # A batched flow (TV-L1 on a GPU: 1,024 pairs) would hold frames back for minutes: at most one stride.
            for arrays in predictor.stream_frames(received, flow_batch=_flow_batch(predictor, prep.size)):
                run_window(cutter.push(arrays))
                emit(merger.settle(cutter.earliest_next_offset()))
                peak = max(peak, merger.held)
                clock.tick(cutter.count / fps, emitted, merger.held)
        finally:
            reader.stop()
        if stop.received is not None:
            logger.info("%s: stopping on %s after %d frames", source, stop.received, cutter.count)
        if cutter.count == 0:
            if reader.error is not None:
                raise reader.error
            raise VideoDecodeError(source, f"no frame arrived ({reader.reason})")
        run_window(cutter.close())  # the last, end-aligned window, as offline
    emit(merger.finish())
    clock.tick(cutter.count / fps, emitted, merger.held, force=settings.every is not None)
    info = reader.delivered()  # what decoding found, up to the last frame that went through
    result = StreamResult(vid, reader.reason, reader.message, emitted, inexact, info, peak_held=peak)
    if best is not None and out is not None:
        result.detections, result.files = _write_files(predictor, vid, best, info, Path(out), source, settings)
    result.seconds = time.perf_counter() - start
    return result


def _flow_batch(predictor: Predictor, size: int) -> int:
    method = raw_video_flow_method(predictor.preparation.flow)
    return max(1, min(default_batch(method, str(predictor.device), (size, size)), predictor.stride))


def check_streamable(predictor: Predictor) -> None:
    """A stream needs sliding windows at a fixed sample rate, and labels of its own."""
    prep, where = predictor.preparation, predictor.streams[0].source
    if predictor.protocol != "sliding":
        raise ConfigError(f"{where}: data.protocol={predictor.protocol!r}; a stream needs sliding windows")
    if predictor.video_context:
        raise ConfigError(
            f"{where}: model.backbone.context=video runs the backbone once over the whole video; a stream runs each "
            "window as it arrives and needs a checkpoint trained with model.backbone.context=window"
        )
    if prep.fps is None or prep.max_frames is not None:
        raise ConfigError(
            f"{where}: trained on frames sampled per video (max_frames={prep.max_frames}); a stream needs a fixed "
            "sample rate (`talmts prepare --fps`)"
        )
    if predictor.scores is not None:
        raise InputError(f"{where}: video-level scores (infer.video_scores) need the whole video; not for a stream")


def check_out_folder(out: str | Path) -> None:
    """The files are written when the stream ends, possibly hours later: an ``out`` that can never be a folder
    (it, or the nearest of its parents that exists, is a file) is refused before the first frame is read."""
    out = Path(out)
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InputError(f"--out {out}: {existing} is a file, not a folder; name a folder for the files")


def video_id_of(source: str) -> str:
    if source == STDIN or "://" in source:
        return "stream"
    return Path(source).stem


def source_label(source: str) -> str:
    """What the page names as the video: a file's name, "standard input", or a URL without its credentials and
    query (the page shows nothing of the machine or the account that wrote it)."""
    if source == STDIN:
        return "standard input"
    if "://" not in source:
        return Path(source).name
    url = urlsplit(source)
    host = url.hostname or ""
    return f"{url.scheme}://{host}{f':{url.port}' if url.port else ''}{url.path}"


def _write_files(
    predictor: Predictor,
    vid: str,
    best: BestPerClass,
    info: DecodeInfo,
    out: Path,
    source: str,
    settings: StreamSettings,
) -> tuple[list[Detection], dict[str, Path]]:
    """The files ``talmts detect`` writes, from the detections kept: seconds at the rate known now that the stream
    has ended (as offline: the sampled frames span the decoded frames' time), capped as offline."""
    from talmts.engine.inference.detect_video import write_detection_files

    items = best.items()
    seg = np.array([[s.start, s.end] for s in items], np.float64).reshape(-1, 2)
    labels = np.array([s.label for s in items], np.int64)
    scores = np.array([s.score for s in items], np.float64)
    vinfo = VideoInfo(vid, info.fps, info.sample_fps, info.count, info.sample_count)
    dets = kept_detections(
        seg, labels, scores, predictor.classes, predictor.infer, vinfo.duration, rate=vinfo.rate(predictor.protocol)
    )
    video = Path(source) if source != STDIN and "://" not in source else None
    files = write_detection_files(
        predictor, vid, dets, info, out, video=video, source=source_label(source), min_score=settings.min_score
    )
    return dets, files


class _Clock:
    """Wall time since the first frame, and a status every ``every`` seconds."""

    def __init__(self, every: float | None, on_status: Callable[[StreamStatus], None]):
        self.every, self.on_status = every, on_status
        self.start: float | None = None
        self._last = (0.0, 0.0)  # (wall, stream time) at the previous status

    def wall(self) -> float:
        return 0.0 if self.start is None else time.perf_counter() - self.start

    def tick(self, stream_time: float, emitted: int, held: int, force: bool = False) -> None:
        if self.start is None:
            if stream_time == 0 and not force:
                return
            self.start = time.perf_counter()
        if self.every is None:
            return
        now = self.wall()
        if not force and now - self._last[0] < self.every:
            return
        span = now - self._last[0]
        rate = (stream_time - self._last[1]) / span if span > 0 else 0.0
        self._last = (now, stream_time)
        self.on_status(StreamStatus(stream_time, now, rate, now - stream_time, emitted, held))


class _ReaderStopped(Exception):
    """Raised in the reader thread where it would reconnect after the stream stopped."""


class _Reader:
    """Decodes and samples the source in a thread, into a queue of at most ``queue_frames`` frames, so that a
    source that stalls (a pipe that stops, a network that hangs) can be noticed without waiting on it forever."""

    def __init__(
        self, source: str, fps: float, size: int, info: DecodeInfo, settings: StreamSettings, queue_frames: int
    ):
        self.source, self.settings, self.info = source, settings, info
        self._counts = (0, 0)  # info.count and info.sample_count when the last frame taken from the queue was sampled
        self.frames_in = live_frames(
            source,
            fps,
            size,
            info,
            timeout=settings.stall_timeout,
            fmt=settings.fmt,
            realtime=settings.realtime,
            reconnect=settings.reconnect,
            on_reconnect=self._reconnecting,
        )
        self.queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=max(1, queue_frames))
        self.reason, self.message = "end", ""
        self.error: BaseException | None = None
        self._stop_reading = threading.Event()
        self._stop_requested: threading.Event | None = None
        self._thread = threading.Thread(target=self._run, name="talmts-stream-reader", daemon=True)

    def start(self, stop_requested: threading.Event) -> None:
        self._stop_requested = stop_requested
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and wait for the reader to close the source: it ends at its next frame, when FFmpeg's read
        times out (the stall timeout bounds an open and a read), or before it would reconnect. A reader still
        blocked after that (standard input, where FFmpeg's timeout does not apply) ends with the process, as a
        daemon thread."""
        self._stop_reading.set()
        if self._thread.is_alive():  # a read in progress, or an open and its first read: each bounded by the timeout
            self._thread.join(timeout=2 * self.settings.stall_timeout + 1.0)
            if self._thread.is_alive():
                logger.warning("%s: the reader is still blocked in the source; it ends with the process", self.source)

    def _put(self, item: tuple[str, object]) -> bool:
        while not self._stop_reading.is_set():
            try:
                self.queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _reconnecting(self, attempt: int, reason: str) -> None:
        if not self._put(("reconnect", (attempt, reason))):
            raise _ReaderStopped  # stopped: reopening the source would outlive the stream

    def _run(self) -> None:
        try:
            for frame in self.frames_in:
                if not self._put(("frame", (frame, self.info.count, self.info.sample_count))):
                    return
            self._put(("end", None))
        except Exception as e:  # handed to the main thread, which ends the stream with it
            self._put(("error", e))
        finally:
            self.frames_in.close()

    def delivered(self) -> DecodeInfo:
        """What decoding found: all of it when the source ended, else up to the last frame delivered (a stream
        stopped by a signal leaves frames in the queue, which it does not run)."""
        if self.reason == "end":
            return self.info
        count, sampled = self._counts
        return DecodeInfo(self.info.fps, self.info.sample_fps, count, sampled)

    def frames(self, idle: Callable[[], None]) -> Iterator[np.ndarray]:
        """The frames as they arrive, until the source ends, fails, stalls or a stop is requested (the reason is
        kept in ``reason`` and ``message``); ``idle`` is called while waiting."""
        assert self._stop_requested is not None
        timeout = self.settings.stall_timeout
        if self.settings.reconnect:  # the reader's own timeouts come first, and every reconnect resets the clock
            timeout = 2 * timeout + 1.0
        last = time.monotonic()
        while True:
            if self._stop_requested.is_set():
                self.reason, self.message = "interrupted", f"{self.source}: stopped by a signal"
                return
            try:
                kind, item = self.queue.get(timeout=POLL_S)
            except queue.Empty:
                idle()
                if time.monotonic() - last > timeout:
                    self.reason = "stalled"
                    self.message = f"{self.source}: stalled, no frame for {self.settings.stall_timeout:g} s"
                    return
                continue
            last = time.monotonic()
            if kind == "frame":
                frame, count, sampled = item  # type: ignore[misc]
                self._counts = (count, sampled)
                yield frame
            elif kind == "reconnect":
                continue
            elif kind == "error":
                assert isinstance(item, BaseException)
                self.error, self.message = item, str(item)
                self.reason = "stalled" if isinstance(item, SourceStalled) else "source error"
                return
            else:
                return


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

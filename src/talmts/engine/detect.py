"""Detection in one raw video, streamed: decode -> sample -> (flow) -> windows -> network -> detections.

Only one window of frames (T sampled frames per stream) is held in memory, so a video of any length fits.
Sampling and flow are those of ``talmts prepare`` (the checkpoint records the options its data was prepared
with), so the network sees what it was trained on.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talmts.data.flow import flow_to_uint8, make_flow_fn
from talmts.data.video import AccumulatorSampler, count_frames, dynamic_sample_fps, iter_frames, stream_fps, to_rgb
from talmts.engine.infer import Stream, check_compatible, run_windows
from talmts.postprocess import (
    Candidates,
    VideoScores,
    apply_video_classifier,
    detections_for_video,
    load_video_scores,
)
from talmts.schema import AnnotationSet, Detection

DEFAULT_PREPARE = {"fps": 10.0, "size": 112, "max_frames": None, "flow": "tvl1"}


@dataclass
class DecodeInfo:
    """Filled in while a video streams: what AFSD's video_info.csv would say about it."""

    fps: float = 0.0
    sample_fps: float = 0.0
    count: int = 0
    sample_count: int = 0
    extra: dict = field(default_factory=dict)


def sampled_frames(path: str | Path, prepare: dict, info: DecodeInfo, threads: int = 0) -> Iterator[np.ndarray]:
    """uint8 RGB [S, S, 3] frames at the prepared rate (AFSD's accumulator sampler), one at a time."""
    fps = stream_fps(path)
    rate = prepare.get("fps")
    max_frames = prepare.get("max_frames")
    if max_frames:
        rate = dynamic_sample_fps(fps, max(count_frames(path), 1), max_frames, cap=rate)
    rate = fps if rate is None else float(rate)
    info.fps, info.sample_fps = fps, rate
    sampler = AccumulatorSampler(fps, rate)
    for frame in iter_frames(path, threads=threads):
        info.count += 1
        copies = sampler()
        if not copies or (max_frames and info.sample_count >= max_frames):
            continue
        image = to_rgb(frame, prepare.get("size", 112))
        for _ in range(copies if not max_frames else min(copies, max_frames - info.sample_count)):
            info.sample_count += 1
            yield image


def with_flow(frames: Iterator[np.ndarray], method: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rgb_t, flow_t) pairs, flow t = motion t -> t + 1 as uint8, the last flow repeated (as prepare does)."""
    import cv2

    fn = make_flow_fn(method)
    prev = prev_gray = last = None
    for frame in frames:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if prev is not None:
            last = flow_to_uint8(fn(prev_gray, gray))
            yield prev, last
        prev, prev_gray = frame, gray
    if prev is not None:
        if last is None:  # one frame: no motion to measure
            last = np.full((*prev.shape[:2], 2), 128, np.uint8)
        yield prev, last


def sliding_windows(
    frames: Iterator[Sequence[np.ndarray]], clip: int, stride: int
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Windows of a stream of per-stream frames, at the offsets of data.windows.test_windows, without knowing
    the length in advance: every ``stride`` frames, plus one aligned to the end; [0] for a short video.

    Holds the last ``clip`` frames only: every later window starts after ``n - clip``.
    """
    buf: deque[Sequence[np.ndarray]] = deque(maxlen=clip)
    n = 0

    def window() -> list[np.ndarray]:
        return [np.stack([f[k] for f in buf]) for k in range(len(buf[0]))]

    for f in frames:
        buf.append(f)
        n += 1
        if n >= clip and (n - clip) % stride == 0:
            yield n - clip, window()
    if n == 0:
        return
    if n < clip:
        yield 0, window()
    elif (n - clip) % stride:
        yield n - clip, window()


def detect_video(
    path: str | Path,
    streams: Sequence[Stream],
    prepare: dict | None = None,
    device: str = "cpu",
    stride: int | None = None,
) -> tuple[list[Detection], DecodeInfo]:
    """Detections (seconds) in the video at ``path`` and what decoding found (rates, counts)."""
    check_compatible(streams)
    prep = {**DEFAULT_PREPARE, **(prepare or {})}
    d = streams[0].cfg.data
    info = DecodeInfo()
    frames = sampled_frames(path, prep, info)
    modalities = [s.modality for s in streams]
    if "flow" in modalities:
        method = prep["flow"] if prep.get("flow") not in (None, "none") else "tvl1"
        pairs = with_flow(frames, method)
        per_stream = ([rgb if m == "rgb" else flow for m in modalities] for rgb, flow in pairs)
    else:
        per_stream = ([rgb] for rgb in frames)
    # Decode in sample frames (rate 1): the seconds per frame are known once the whole video has streamed.
    cands = run_windows(
        streams, sliding_windows(per_stream, d.clip_frames, stride or d.test_stride), 1.0, streams[0].cfg.infer, device
    )
    rate = _rate(info, d.protocol)
    cands = [Candidates(c.segments / rate, c.scores, c.labels) for c in cands]
    duration = info.count / info.fps
    return detections_for_video(cands, streams[0].classes, streams[0].cfg.infer, duration), info


def _rate(info: DecodeInfo, protocol: str) -> float:
    """Sample frames per second of video time, as data.windows.VideoInfo.rate computes it."""
    if info.sample_count == 0:
        raise ValueError("no frame was decoded")
    if protocol == "whole":
        return info.sample_fps
    return info.fps * info.sample_count / info.count


def read_prepare_options(root: str | Path) -> dict | None:
    """The options a prepared dataset was made with (``prepare.json``), or None for an older folder."""
    path = Path(root) / "prepare.json"
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class DetectOutputs:
    video: str
    detections: list[Detection]
    info: DecodeInfo
    files: dict[str, Path]
    seconds: float


@dataclass
class Detector:
    """Loaded once, run on any number of videos: the streams, how their training data was sampled, and the
    optional video-level scores that label a class-agnostic checkpoint."""

    streams: list[Stream]
    checkpoints: list[str]
    prepare: dict | None
    device: object
    scores: VideoScores | None = None

    @property
    def names(self) -> str:
        return " + ".join(s.modality for s in self.streams)


def load_detector(
    checkpoints: Sequence[str | Path],
    *,
    device: str = "auto",
    overrides: Sequence[str] = (),
    video_scores: str | Path | None = None,
) -> Detector:
    """Streams from ``checkpoints`` (one, or RGB and flow: fused) with ``infer.*`` overrides applied."""
    from talmts.engine.distributed import resolve_device
    from talmts.engine.infer import load_stream

    dev = resolve_device(device)
    streams = [load_stream(c, dev) for c in checkpoints]
    for s in streams:  # inference overrides (e.g. infer.conf_thresh=0.05) on top of the stored configs
        s.cfg = _with_infer_overrides(s.cfg, overrides)
    scores_path = video_scores or streams[0].cfg.infer.video_scores
    scores = _check_scores(load_video_scores(scores_path), streams[0]) if scores_path else None
    prepare = _checkpoint_prepare(checkpoints[0])
    return Detector(streams, [str(c) for c in checkpoints], prepare, dev, scores)


def detect_and_write(
    detector: Detector,
    video: str | Path,
    out_dir: str | Path,
    *,
    ground_truth: AnnotationSet | None = None,
    min_score: float = 0.1,
    video_id: str | None = None,
) -> DetectOutputs:
    """Detections in one raw video written as JSON, CSV, subtitles (SRT, WebVTT), a timeline PNG and an HTML page."""
    import time

    from talmts.engine.report import write_detections_csv, write_detections_srt, write_detections_vtt
    from talmts.formats import write_detections
    from talmts.viz import plot_timeline, write_html

    start = time.perf_counter()
    video, out = Path(video), Path(out_dir)
    vid = video_id or video.stem
    row = _scores_row(detector.scores, vid) if detector.scores else None  # before the network runs
    dets, info = detect_video(video, detector.streams, detector.prepare, detector.device)
    if row is not None:
        top_k = detector.streams[0].cfg.infer.video_top_k
        dets = apply_video_classifier(dets, row, detector.scores.classes, top_k)
    files = {
        "json": out / "detections.json",
        "csv": out / "detections.csv",
        "srt": out / "detections.srt",
        "vtt": out / "detections.vtt",
        "timeline": out / "timeline.png",
        "html": out / "index.html",
    }
    write_detections({vid: dets}, files["json"])
    write_detections_csv({vid: dets}, files["csv"])
    write_detections_srt(dets, files["srt"], min_score=min_score)
    write_detections_vtt(dets, files["vtt"], min_score=min_score)
    duration = info.count / info.fps if info.fps else None
    gt = None
    if ground_truth is not None:
        if vid in ground_truth.videos:
            gt = ground_truth.videos[vid].annotations
        else:
            print(f"note: {vid!r} is not in {ground_truth.source}; the timeline shows detections only")
    title = f"{vid} ({detector.names})"
    plot_timeline(dets, files["timeline"], duration=duration, ground_truth=gt, title=title, min_score=min_score)
    scored = f"{detector.scores.source} (video {vid!r})" if detector.scores else None
    write_html(
        files["html"],
        title=f"talmts detect: {vid}",
        detections=[d for d in dets if d.score >= min_score * 0.1],
        timeline_png=files["timeline"],
        video_src=_relative(video, out),
        captions_src=files["vtt"].name,
        notes={
            "video": str(video),
            "checkpoints": ", ".join(detector.checkpoints),
            "streams": detector.names,
            "decoded": f"{info.count} frames at {info.fps:g} fps, {info.sample_count} sampled at {info.sample_fps:g} fps",
            **({"video-level scores": scored} if scored else {}),
        },
    )
    return DetectOutputs(vid, dets, info, files, time.perf_counter() - start)


def run_detect(
    video: str | Path,
    checkpoints: Sequence[str | Path],
    out_dir: str | Path,
    *,
    annotations: str | Path | None = None,
    device: str = "auto",
    overrides: Sequence[str] = (),
    min_score: float = 0.1,
    video_scores: str | Path | None = None,
    video_id: str | None = None,
) -> DetectOutputs:
    """``talmts detect`` on one video: :func:`load_detector`, then :func:`detect_and_write`.

    ``annotations``: a ground-truth file whose entry for this video is drawn beside the detections.
    ``video_scores``: video-level classifier scores (CUHK layout, as ``talmts eval --video-scores``) that label a
    class-agnostic checkpoint's detections; the video is looked up as ``video_id`` (default: the file's stem).
    """
    from talmts.formats import read_annotations

    detector = load_detector(checkpoints, device=device, overrides=overrides, video_scores=video_scores)
    gt = read_annotations(annotations) if annotations is not None else None
    return detect_and_write(detector, video, out_dir, ground_truth=gt, min_score=min_score, video_id=video_id)


def _check_scores(scores: VideoScores, stream: Stream) -> VideoScores:
    """Video-level scores label a class-agnostic checkpoint only."""
    if len(stream.classes) != 1:
        raise ValueError(
            f"--video-scores labels a class-agnostic detector, but {stream.source} has {len(stream.classes)} "
            "classes (its own labels are used): drop --video-scores / infer.video_scores"
        )
    return scores


def _scores_row(scores: VideoScores, video: str) -> np.ndarray:
    try:
        return scores.lookup(video)
    except KeyError as e:
        raise ValueError(f"{e.args[0]}; pass --video-id with the video's id in that file") from None


def _with_infer_overrides(cfg, overrides: Sequence[str]):  # noqa: ANN001, ANN202 - Config -> Config
    import yaml

    from talmts.config import ConfigError, config_from_dict

    raw = cfg.to_dict()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("infer."):
            raise ConfigError(f"detect override {item!r}: only infer.<key>=<value> applies to a trained checkpoint")
        raw["infer"][key.split(".", 1)[1]] = yaml.safe_load(value)
    return config_from_dict(raw, source="detect overrides")


def _checkpoint_prepare(path: str | Path) -> dict | None:
    from talmts.engine.checkpoint import load_checkpoint

    return load_checkpoint(path).get("prepare")


def _relative(target: Path, start: Path) -> str:
    import os

    try:
        return os.path.relpath(target.resolve(), start.resolve())
    except ValueError:  # another drive on Windows
        return target.resolve().as_uri()

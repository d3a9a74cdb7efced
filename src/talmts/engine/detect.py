"""``talmts detect`` on one raw video: the predictor's detections written as JSON, CSV, subtitles (SRT, WebVTT), a
timeline picture and an HTML page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from talmts.data.video import DecodeInfo
from talmts.engine.predictor import Predictor, load_predictor
from talmts.schema import AnnotationSet, Detection


@dataclass
class DetectedVideo:
    """A video's detections, what decoding found, the files written and the seconds it took."""

    video: str
    detections: list[Detection]
    info: DecodeInfo
    files: dict[str, Path]
    seconds: float


def detect_and_write(
    predictor: Predictor,
    video: str | Path,
    out_dir: str | Path,
    *,
    ground_truth: AnnotationSet | None = None,
    min_score: float = 0.1,
    video_id: str | None = None,
) -> DetectedVideo:
    """Detections in one raw video written as JSON, CSV, subtitles (SRT, WebVTT), a timeline PNG and an HTML page."""
    import time

    from talmts.engine.report import write_detections_csv, write_detections_srt, write_detections_vtt
    from talmts.formats import write_detections
    from talmts.viz import plot_timeline, write_html

    start = time.perf_counter()
    video, out = Path(video), Path(out_dir)
    vid = video_id or video.stem
    dets, info = predictor.raw_video(video, vid)
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
    title = f"{vid} ({predictor.names})"
    plot_timeline(dets, files["timeline"], duration=duration, ground_truth=gt, title=title, min_score=min_score)
    scored = f"{predictor.scores.source} (video {vid!r})" if predictor.scores else None
    write_html(
        files["html"],
        title=f"talmts detect: {vid}",
        detections=[d for d in dets if d.score >= min_score * 0.1],
        timeline_png=files["timeline"],
        video_src=_relative(video, out),
        captions_src=files["vtt"].name,
        notes={
            "video": str(video),
            "checkpoints": ", ".join(s.source for s in predictor.streams),
            "streams": predictor.names,
            "decoded": f"{info.count} frames at {info.fps:g} fps, {info.sample_count} sampled at {info.sample_fps:g} fps",
            **({"video-level scores": scored} if scored else {}),
        },
    )
    return DetectedVideo(vid, dets, info, files, time.perf_counter() - start)


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
) -> DetectedVideo:
    """``talmts detect`` on one video: :func:`load_detector`, then :func:`detect_and_write`.

    ``annotations``: a ground-truth file whose entry for this video is drawn beside the detections.
    ``video_scores``: video-level classifier scores (CUHK layout, as ``talmts eval --video-scores``) that label a
    class-agnostic checkpoint's detections; the video is looked up as ``video_id`` (default: the file's stem).
    """
    from talmts.formats import read_annotations

    predictor = load_predictor(checkpoints, device=device, overrides=overrides, video_scores=video_scores)
    gt = read_annotations(annotations) if annotations is not None else None
    return detect_and_write(predictor, video, out_dir, ground_truth=gt, min_score=min_score, video_id=video_id)


def _relative(target: Path, start: Path) -> str:
    import os

    try:
        return os.path.relpath(target.resolve(), start.resolve())
    except ValueError:  # another drive on Windows
        return target.resolve().as_uri()

"""One raw video's detections written as JSON, CSV, subtitles (SRT, WebVTT), a timeline picture and the view's page
for the video."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from talmts.data.video import DecodeInfo
from talmts.engine.inference.predictor import Predictor
from talmts.schema import AnnotationSet, Detection, Segment

log = logging.getLogger(__name__)


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
    nav: Sequence[tuple[str, str | None]] = (),
) -> DetectedVideo:
    """Detections in one raw video written as JSON, CSV, subtitles (SRT, WebVTT), a timeline PNG and the view's
    page for the video (index.html: player, interactive timeline, score slider; judged against the ground truth
    when ``ground_truth`` holds the video). ``nav``: (label, href) links in the page's header."""
    import time

    from talmts.engine.site import check_page_options

    check_page_options(min_score=min_score)  # before the video is decoded
    start = time.perf_counter()
    video, out = Path(video), Path(out_dir)
    vid = video_id or video.stem
    dets, info = predictor.raw_video(video, vid)
    short = info.check.problem() if info.check is not None and info.check.short else ""
    if short:  # a cut-short file decodes to its end without an error: say so, the detections stop there
        log.warning("%s: %s", video, short)
    gt = None
    if ground_truth is not None:
        if vid in ground_truth.videos:
            gt = ground_truth.videos[vid].annotations
        else:
            log.info("note: %r is not in %s; the timeline shows detections only", vid, ground_truth.source)
    files = write_detection_files(
        predictor, vid, dets, info, out, video=video, ground_truth=gt, min_score=min_score, nav=nav, warning=short
    )
    return DetectedVideo(vid, dets, info, files, time.perf_counter() - start)


def write_detection_files(
    predictor: Predictor,
    vid: str,
    dets: list[Detection],
    info: DecodeInfo,
    out: Path,
    *,
    video: Path | None,
    source: str | None = None,
    ground_truth: Sequence[Segment] | None = None,
    min_score: float = 0.1,
    nav: Sequence[tuple[str, str | None]] = (),
    warning: str = "",
) -> dict[str, Path]:
    """The files of one video's detections (``detect`` and ``stream`` alike): JSON, CSV, SRT, WebVTT, the timeline
    PNG and the page. ``video``: the file the page plays (None: no player); ``source``: what the page names as the
    video (default the file's name)."""
    from talmts.engine.site import relative_link, write_video_view
    from talmts.formats import write_detections
    from talmts.formats.detections import write_detections_csv
    from talmts.formats.subtitles import write_detections_srt, write_detections_vtt
    from talmts.viz import plot_timeline

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
    title = f"{vid} ({predictor.names})"
    plot_timeline(
        dets, files["timeline"], duration=duration, ground_truth=ground_truth, title=title, min_score=min_score
    )
    scored = f"{Path(predictor.scores.source).name} (video {vid!r})" if predictor.scores else None
    write_video_view(
        files["html"],
        vid,
        [d for d in dets if d.score >= min_score * 0.1],  # the slider starts at min_score and can go lower
        ground_truth=ground_truth,
        duration=duration,
        video_src=relative_link(video, out) if video is not None else None,
        captions_src=files["vtt"].name,
        min_score=min_score,
        nav=nav,
        notes={  # file names only: the page shows nothing of the machine that wrote it
            "video": source or (video.name if video is not None else vid),
            "checkpoints": ", ".join(Path(s.source).name for s in predictor.streams),
            "streams": predictor.names,
            "decoded": f"{info.count} frames at {info.fps:g} fps, {info.sample_count} sampled at {info.sample_fps:g} fps",
            "files": ", ".join(f.name for k, f in files.items() if k != "html"),
            **({"video-level scores": scored} if scored else {}),
            **({"WARNING": warning} if warning else {}),
        },
    )
    return files

"""``talmts detect FOLDER``: every video of a folder, the network loaded once; one page to browse them all.

OUT/<video id>/ holds each video's files (as ``talmts detect VIDEO``); OUT/detections.json and .csv hold all
videos; OUT/index.html lists the videos with their best detections and links to their pages (the view's pages). A video that cannot
be decoded is reported by name and the others go on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from talmts.data.prepare import find_videos
from talmts.data.video import VideoDecodeError
from talmts.engine.inference.detect_video import DetectedVideo, detect_and_write
from talmts.engine.inference.predictor import Predictor
from talmts.schema import AnnotationSet, video_file
from talmts.viz.view import write_page


@dataclass
class FolderOutputs:
    results: list[DetectedVideo] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # video id -> why
    files: dict[str, Path] = field(default_factory=dict)


def detect_folder(
    predictor: Predictor,
    folder: str | Path,
    out_dir: str | Path,
    *,
    ground_truth: AnnotationSet | None = None,
    min_score: float = 0.1,
    progress: bool = False,
) -> FolderOutputs:
    """Run ``predictor`` on every video directly in ``folder`` (ids = file names without extension)."""
    from talmts.engine.site import check_page_options
    from talmts.formats import write_detections
    from talmts.formats.detections import write_detections_csv

    check_page_options(min_score=min_score)
    videos = find_videos(folder)
    if not videos:
        raise FileNotFoundError(f"{folder}: no video files in this folder")
    out = Path(out_dir)
    res = FolderOutputs()
    items = videos.items()
    if progress:
        from talmts.progress import progress_bar

        items = progress_bar(items, desc="detect", unit="video")
    for vid, path in items:
        try:
            res.results.append(
                detect_and_write(
                    predictor,
                    path,
                    video_file(out, vid, ""),
                    ground_truth=ground_truth,
                    min_score=min_score,
                    nav=[("all videos", "../index.html")],
                )
            )
        except (VideoDecodeError, ValueError) as e:  # a broken or unreadable video, or no scores for it
            res.failed[vid] = str(e).replace(str(path.resolve()), path.name).replace(str(path), path.name)
    everything = {r.video: r.detections for r in res.results}
    res.files = {"json": out / "detections.json", "csv": out / "detections.csv", "html": out / "index.html"}
    write_detections(everything, res.files["json"])
    write_detections_csv(everything, res.files["csv"])
    write_folder_page(
        res, res.files["html"], title=f"talmts detect: {Path(folder).resolve().name}", min_score=min_score
    )
    return res


def _short_note(res: FolderOutputs) -> str:
    """A sentence naming the videos that decoded far shorter than their containers declare (data.completeness)."""
    short = [f"{r.video} ({r.info.check.problem()})" for r in res.results if r.info.check and r.info.check.short]
    return f" Decoded only in part: {'; '.join(short)}." if short else ""


def write_folder_page(res: FolderOutputs, path: Path, *, title: str, min_score: float) -> Path:
    """The view's index page: one row per video (duration, detections above ``min_score`` by class, the best one),
    sortable, each linking to its page; the videos that failed, with why."""
    rows = []
    for r in res.results:
        kept = [d for d in r.detections if d.score >= min_score]
        best = max(r.detections, key=lambda d: d.score, default=None)
        rows.append(
            {
                "video": r.video,
                "href": f"{quote(r.video)}/index.html",
                "duration": r.info.count / r.info.fps if r.info.fps else None,
                "detections": len(kept),
                "by_class": ", ".join(f"{k} {n}" for k, n in Counter(d.label for d in kept).most_common()) or None,
                "best": f"{best.label} {best.start:.1f}-{best.end:.1f} s ({best.score:.2f})" if best else None,
                "best_score": best.score if best else None,
            }
        )
    columns = [
        ("video", "video", "link"),
        ("duration", "seconds", "num1"),
        ("detections", f"detections ≥ {min_score:g}", "int"),
        ("by_class", "by class", "text"),
        ("best", "best", "text"),
    ]
    data = {
        "rows": rows,
        "columns": columns,
        "stats": [[len(res.results), "videos"], [sum(r["detections"] for r in rows), f"detections ≥ {min_score:g}"]],
        "note": "Click a column to sort; click a video to see it." + _short_note(res),
        "failed": res.failed,
    }
    return write_page(path, kind="index", title=title, data=data, nav=[("videos", None)])

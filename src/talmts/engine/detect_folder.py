"""``talmts detect FOLDER``: every video of a folder, the network loaded once; one page to browse them all.

OUT/<video id>/ holds each video's files (as ``talmts detect VIDEO``); OUT/detections.json and .csv hold all
videos; OUT/index.html lists the videos with their best detections and links to their pages. A video that cannot
be decoded is reported by name and the others go on.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from talmts.data.prepare import find_videos
from talmts.data.video import VideoDecodeError
from talmts.engine.detect import DetectedVideo, detect_and_write
from talmts.engine.predictor import Predictor
from talmts.fileio import atomic_write_text
from talmts.schema import AnnotationSet


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
    from talmts.engine.report import write_detections_csv
    from talmts.formats import write_detections

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
                detect_and_write(predictor, path, out / vid, ground_truth=ground_truth, min_score=min_score)
            )
        except (VideoDecodeError, ValueError) as e:  # a broken or unreadable video, or no scores for it
            res.failed[vid] = str(e)
    everything = {r.video: r.detections for r in res.results}
    res.files = {"json": out / "detections.json", "csv": out / "detections.csv", "html": out / "index.html"}
    write_detections(everything, res.files["json"])
    write_detections_csv(everything, res.files["csv"])
    write_folder_page(res, res.files["html"], title=f"talmts detect: {folder}", min_score=min_score)
    return res


def write_folder_page(res: FolderOutputs, path: Path, *, title: str, min_score: float) -> Path:
    """One row per video: duration, detections above ``min_score`` by class, the best one, a link to its page."""
    rows = []
    for r in res.results:
        kept = [d for d in r.detections if d.score >= min_score]
        counts = ", ".join(f"{html.escape(k)} {n}" for k, n in Counter(d.label for d in kept).most_common())
        best = max(r.detections, key=lambda d: d.score, default=None)
        best_text = f"{html.escape(best.label)} {best.start:.1f}-{best.end:.1f} s ({best.score:.2f})" if best else "-"
        duration = f"{r.info.count / r.info.fps:.1f}" if r.info.fps else "?"
        link = f"<a href='{html.escape(r.video, quote=True)}/index.html'>{html.escape(r.video)}</a>"
        rows.append(
            f"<tr><td class='l'>{link}</td><td>{duration}</td><td>{len(kept)}</td>"
            f"<td class='l'>{counts or '-'}</td><td class='l'>{best_text}</td></tr>"
        )
    failed = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in res.failed.items())
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee}.l{text-align:left}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>{len(res.results)} videos; detections scoring at least {min_score:g} are counted.</p>"
        "<table><tr><th class='l'>video</th><th>seconds</th><th>detections</th><th class='l'>by class</th><th class='l'>best</th></tr>"
        + "\n".join(rows)
        + "</table>"
        + (f"<h2>Failed ({len(res.failed)})</h2><ul>{failed}</ul>" if failed else "")
        + "</body></html>"
    )
    atomic_write_text(path, page)
    return path

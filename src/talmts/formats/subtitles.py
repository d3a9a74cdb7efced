"""Detections as subtitles: SubRip (.srt) for video players, WebVTT (.vtt) for the HTML ``<track>`` element.

A cue's text is one line whatever the label holds: line breaks would end the cue and start lines a player reads
as cues of their own, and ``-->`` would read as a timing line; WebVTT's markup characters are written as its
entities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from talmts.fileio import atomic_write_text
from talmts.schema import Detection


def srt_time(seconds: float, sep: str = ",") -> str:
    """SubRip's ``HH:MM:SS,mmm`` (milliseconds rounded); WebVTT writes the same with ``sep="."``."""
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def write_detections_srt(detections: Sequence[Detection], path: str | Path, min_score: float = 0.1) -> Path:
    """Detections of one video as SubRip subtitles, in time order, so a video player shows them over the video.

    Only detections scoring at least ``min_score``; overlapping ones are separate cues (players stack them).
    """
    return _write_cues(detections, path, min_score, webvtt=False)


def write_detections_vtt(detections: Sequence[Detection], path: str | Path, min_score: float = 0.1) -> Path:
    """The same cues as WebVTT, the caption format of the HTML ``<track>`` element (the detect page uses it)."""
    return _write_cues(detections, path, min_score, webvtt=True)


def cue_text(label: str, *, webvtt: bool) -> str:
    """A label as the text of one cue: whitespace runs (newlines among them) made one space, ``-->`` broken up,
    and for WebVTT ``&``, ``<`` and ``>`` as entities."""
    text = " ".join(label.split()).replace("-->", "- ->")
    if webvtt:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text or "?"


def _write_cues(detections: Sequence[Detection], path: str | Path, min_score: float, *, webvtt: bool) -> Path:
    kept = sorted((d for d in detections if d.score >= min_score), key=lambda d: (d.start, -d.score))
    sep, header = (".", "WEBVTT\n\n") if webvtt else (",", "")
    cues = [
        f"{i}\n{srt_time(d.start, sep)} --> {srt_time(d.end, sep)}\n{cue_text(d.label, webvtt=webvtt)} ({d.score:.2f})\n"
        for i, d in enumerate(kept, 1)
    ]
    atomic_write_text(Path(path), header + "\n".join(cues))
    return Path(path)

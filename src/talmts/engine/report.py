"""Logs and small reports: per-step loss logs (JSON + CSV), detections as CSV and subtitles, TensorBoard scalars."""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from talmts.fileio import atomic_open, atomic_write_text
from talmts.schema import Detection


def write_json(obj: Any, path: str | Path) -> Path:
    """JSON written atomically (tmp + rename), so a reader never sees half a file."""
    path = Path(path)
    atomic_write_text(path, json.dumps(obj, indent=1))
    return path


def write_loss_log(history: Sequence[Mapping[str, float]], out_dir: str | Path, stem: str = "losses") -> Path:
    """Per-step losses as ``<stem>.json`` (a list of dicts) and ``<stem>.csv`` (one row a step)."""
    out_dir = Path(out_dir)
    write_json(list(history), out_dir / f"{stem}.json")
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with atomic_open(out_dir / f"{stem}.csv", "w") as f:
        w = csv.DictWriter(f, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(history)
    return out_dir / f"{stem}.json"


def write_detections_csv(results: Mapping[str, Sequence[Detection]], path: str | Path) -> Path:
    """One row a detection: video, label, start, end (seconds), score; highest score first per video."""
    path = Path(path)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["video", "label", "start", "end", "score"])
    for vid, dets in results.items():
        for d in sorted(dets, key=lambda d: -d.score):
            w.writerow([vid, d.label, f"{d.start:.3f}", f"{d.end:.3f}", f"{d.score:.6f}"])
    atomic_write_text(path, buf.getvalue())
    return path


def srt_time(seconds: float, sep: str = ",") -> str:
    """SubRip's ``HH:MM:SS,mmm`` (milliseconds rounded); WebVTT writes the same with ``sep="."``."""
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def write_detections_srt(detections: Sequence[Detection], path: str | Path, min_score: float = 0.1) -> Path:
    """Detections of one video as SubRip subtitles, in time order, so a video player shows them over the video.

    Only detections scoring at least ``min_score``; overlapping ones are separate cues (players stack them).
    """
    return _write_cues(detections, path, min_score, sep=",", header="")


def write_detections_vtt(detections: Sequence[Detection], path: str | Path, min_score: float = 0.1) -> Path:
    """The same cues as WebVTT, the caption format of the HTML ``<track>`` element (the detect page uses it)."""
    return _write_cues(detections, path, min_score, sep=".", header="WEBVTT\n\n")


def _write_cues(detections: Sequence[Detection], path: str | Path, min_score: float, sep: str, header: str) -> Path:
    kept = sorted((d for d in detections if d.score >= min_score), key=lambda d: (d.start, -d.score))
    cues = [
        f"{i}\n{srt_time(d.start, sep)} --> {srt_time(d.end, sep)}\n{d.label} ({d.score:.2f})\n"
        for i, d in enumerate(kept, 1)
    ]
    atomic_write_text(Path(path), header + "\n".join(cues))
    return Path(path)


class ScalarLogger:
    """TensorBoard scalars when tensorboard is installed; a silent no-op (with one warning) otherwise.

    Best-effort: when its files cannot be written (a full disk), one warning names the folder and the scalars stop;
    training goes on (its checkpoints and loss logs are written through talmts.fileio and stop it there)."""

    def __init__(self, log_dir: str | Path | None):
        self.writer = None
        self.log_dir = log_dir
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a declared dependency, but a stripped install may lack it
            warnings.warn("tensorboard is not installed: no TensorBoard scalars are written", stacklevel=2)
            return
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            try:
                for k, v in values.items():
                    self.writer.add_scalar(f"{prefix}/{k}", v, step)
            except OSError as e:  # raised here for a failure of TensorBoard's writer thread
                self._give_up(e)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError as e:
                self._give_up(e)

    def _give_up(self, e: OSError) -> None:
        reason = os.strerror(e.errno) if e.errno else str(e)
        warnings.warn(f"TensorBoard scalars stop: cannot write {self.log_dir}: {reason}", stacklevel=3)
        self.writer = None

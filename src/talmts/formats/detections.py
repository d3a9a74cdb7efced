"""Detections in the ActivityNet results layout, and as a CSV table (one row a detection).

``{"version", "results": {vid: [{"label", "score", "segment": [s, e]}]}, "external_data": {}}``

Only what the official ActivityNet evaluator cannot score is an error: a missing field, a value that is not a
number, NaN or infinity. Segments are kept as written (see :mod:`talmts.evaluation.detection`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from talmts.fileio import atomic_write_json, atomic_write_text
from talmts.formats.common import as_float, load_json_streamed, parse_pair, require
from talmts.schema import Detection, SchemaError


def detections_to_json(results: dict[str, list[Detection]], version: str = "talmts") -> dict[str, Any]:
    """The results layout as a plain dict (floats made plain Python floats)."""
    out = {
        vid: [{"label": d.label, "score": float(d.score), "segment": [float(d.start), float(d.end)]} for d in dets]
        for vid, dets in results.items()
    }
    return {"version": version, "results": out, "external_data": {}}


def write_detections(results: dict[str, list[Detection]], path: str | Path, version: str = "talmts") -> None:
    """Write detections in the ActivityNet results layout, atomically (temporary file + rename)."""
    atomic_write_json(path, detections_to_json(results, version), indent=None)


def parse_detections(data: Any, *, file: str) -> dict[str, list[Detection]]:
    """Turn a loaded results object into ``{video: [Detection]}`` (file order kept: it decides score ties)."""
    results = require(data, "results", file=file, record="<top level>", kind=dict)
    labels: dict[str, str] = {}
    return {vid: video_detections(vid, items, file=file, labels=labels) for vid, items in results.items()}


def video_detections(vid: str, items: Any, *, file: str, labels: dict[str, str] | None = None) -> list[Detection]:
    """One video's list of detection records as Detections. ``labels``: shared label strings (one object per label
    name for a whole file, not one per detection).

    Records of the usual shape (a str label, numeric score and [start, end]) take a fast path checked in bulk;
    anything else goes through the field-by-field checks, which accept the same values and name what is wrong."""
    if not isinstance(items, list):
        raise SchemaError(file, vid, "results", f"expected a list of detections, got {type(items).__name__}")
    labels = {} if labels is None else labels
    try:
        rows = [(item["label"], item["score"], item["segment"]) for item in items]
        if _plain(rows):
            return [Detection(float(s), float(e), labels.setdefault(lab, lab), float(sc)) for lab, sc, (s, e) in rows]
    except (KeyError, TypeError, ValueError, OverflowError):
        pass  # the checks below say what is wrong
    dets = []
    for i, item in enumerate(items):
        record = f"{vid} detection {i}"
        label = require(item, "label", file=file, record=record, kind=str)
        score = as_float(require(item, "score", file=file, record=record), file=file, record=record, field_name="score")
        # Any finite pair is kept as written, as the official evaluator scores it: a start before 0, an end
        # past the video or before the start (the evaluator warns about those, with counts).
        start, end = parse_pair(require(item, "segment", file=file, record=record), file=file, record=record)
        dets.append(Detection(start, end, labels.setdefault(label, label), score))
    return dets


def _plain(rows: list[tuple[Any, Any, Any]]) -> bool:
    """Every row a str label, a finite int or float score and a [start, end] list of two finite ints or floats."""
    if not all(type(lab) is str and type(seg) is list and len(seg) == 2 for lab, _, seg in rows):
        return False
    numbers = [sc for _, sc, _ in rows] + [x for *_, seg in rows for x in seg]
    if not set(map(type, numbers)) <= {float, int}:  # bool is its own type: refused here, as as_float does
        return False
    return bool(np.isfinite(np.asarray(numbers, dtype=np.float64)).all())


def read_detections(path: str | Path) -> dict[str, list[Detection]]:
    """Read an ActivityNet results JSON file into ``{video: [Detection]}``, one video at a time
    (formats.common.load_json_streamed): the file's parsed tree never exists whole."""
    labels: dict[str, str] = {}
    top, results = load_json_streamed(
        path, "results", lambda vid, items: video_detections(vid, items, file=str(path), labels=labels)
    )
    return parse_detections(top, file=str(path)) if results is None else results


# A text cell a spreadsheet would read as a formula (OWASP's CSV injection guidance: =, +, -, @, tab, carriage
# return; and a line feed, which some readers take as a new row of their own)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def spreadsheet_text(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet evaluates: one that starts like a formula gets a leading apostrophe
    (the cell then shows the text as written; the csv module quotes what needs quoting)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_detections_csv(results: Mapping[str, Sequence[Detection]], path: str | Path) -> Path:
    """One row a detection: video, label, start, end (seconds), score; highest score first per video. Ids and
    labels that start like a spreadsheet formula are escaped (:func:`spreadsheet_text`); numbers are written as
    numbers."""
    path = Path(path)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["video", "label", "start", "end", "score"])
    for vid, dets in results.items():
        for d in sorted(dets, key=lambda d: -d.score):
            w.writerow(
                [spreadsheet_text(vid), spreadsheet_text(d.label), f"{d.start:.3f}", f"{d.end:.3f}", f"{d.score:.6f}"]
            )
    atomic_write_text(path, buf.getvalue())
    return path

"""Labels for a class-agnostic detector (ActivityNet) from an external video-level classifier, the AFSD way.

The score file has the layout of CUHK's UntrimmedNet results that AFSD and most ActivityNet detectors use:
``{"results": {video_id: [one score per class]}, "class": [class names]}``. Each video takes its top class
(or top ``k``), and every proposal's score is multiplied by that class's score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talmts.formats.common import as_float, load_json
from talmts.schema import Detection, SchemaError


@dataclass
class VideoScores:
    """Video-level class scores: ``scores[video]`` is ``[len(classes)]``."""

    scores: dict[str, np.ndarray]
    classes: list[str]
    source: str = ""

    def lookup(self, video: str) -> np.ndarray:
        """Scores of ``video``; ids with or without ActivityNet's ``v_`` prefix both match."""
        for key in (video, video[2:] if video.startswith("v_") else f"v_{video}"):
            if key in self.scores:
                return self.scores[key]
        raise KeyError(f"{self.source or 'video scores'}: no scores for video {video!r} (nor with/without 'v_')")


def load_video_scores(path: str | Path) -> VideoScores:
    """Read a CUHK-layout score file; SchemaError names the record that is wrong."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(str(path), "-", "-", "file does not exist", "set infer.video_scores to a score file")
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict) or "class" not in data:
        raise SchemaError(
            str(path),
            "top level",
            "results/class",
            "missing",
            'expected {"results": {video: [scores]}, "class": [names]}',
        )
    classes = data["class"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise SchemaError(str(path), "top level", "class", "must be a list of class names")
    scores = {}
    for vid, row in data["results"].items():
        if not isinstance(row, list) or len(row) != len(classes):
            raise SchemaError(
                str(path), vid, "results", f"expected {len(classes)} finite scores, one per class", "check the file"
            )
        scores[vid] = np.array([as_float(v, file=str(path), record=vid, field_name="results") for v in row])
    return VideoScores(scores, list(classes), str(path))


def apply_video_classifier(
    detections: Sequence[Detection],
    scores: Sequence[float] | np.ndarray,
    class_names: Sequence[str],
    top_k: int = 1,
) -> list[Detection]:
    """Give class-agnostic proposals the video's top-``top_k`` classes, score = proposal score x class score.

    With ``top_k > 1`` each proposal appears once per class. The result is sorted by score, best first.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(class_names),):
        raise ValueError(f"apply_video_classifier: {scores.shape[0]} scores for {len(class_names)} class names")
    if top_k < 1:
        raise ValueError(f"apply_video_classifier: top_k must be >= 1, got {top_k}")
    best = np.argsort(-scores, kind="stable")[:top_k]
    out = [Detection(d.start, d.end, class_names[c], float(d.score * scores[c])) for c in best for d in detections]
    out.sort(key=lambda d: -d.score)
    return out

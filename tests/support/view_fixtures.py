"""A small generated result set for the view's tests: ground truth, detections of each DETAD type, a tiny video."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from talmts.data.synth import write_mp4
from talmts.formats import write_detections, write_ground_truth
from talmts.schema import AnnotationSet, ClassMap, Detection, Segment, Video

CLASSES = ("bounce", "cross", "spin")
GROUND_TRUTH = {
    "clip": (4.0, [Segment(0.5, 1.5, "bounce"), Segment(2.5, 3.5, "spin")]),
    "long": (20.0, [Segment(2, 6, "spin"), Segment(10, 12, "bounce"), Segment(14, 18, "cross")]),
    "quiet": (10.0, [Segment(3, 5, "cross")]),
}
DETECTIONS = {
    "clip": [
        Detection(0.5, 1.5, "bounce", 0.9),  # true positive
        Detection(2.4, 3.5, "spin", 0.8),  # true positive (tIoU 0.91)
        Detection(0.6, 1.4, "bounce", 0.5),  # double detection
        Detection(1.0, 3.0, "cross", 0.3),  # confusion (tIoU 0.2 with bounce and with spin)
        Detection(3.6, 3.9, "spin", 0.05),  # background
    ],
    "long": [
        Detection(2.5, 6, "spin", 0.7),  # true positive
        Detection(10, 12, "spin", 0.6),  # wrong label
        Detection(14, 15, "cross", 0.4),  # localization (tIoU 0.25)
        Detection(7, 9, "bounce", 0.2),  # background
    ],
}


def ground_truth() -> AnnotationSet:
    videos = {v: Video(v, "test", duration=d, annotations=segs) for v, (d, segs) in GROUND_TRUTH.items()}
    return AnnotationSet(videos, ClassMap(CLASSES))


def write_result_set(root: Path) -> dict[str, Path]:
    """gt.json, detections.json and videos/clip.mp4 (4 s of noise at 10 fps, 64 x 48) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    write_ground_truth(ground_truth(), root / "gt.json")
    write_detections(DETECTIONS, root / "detections.json")
    rng = np.random.default_rng(0)
    frames = (rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(40))
    (root / "videos").mkdir(exist_ok=True)
    write_mp4(root / "videos" / "clip.mp4", frames, fps=10.0)
    return {"gt": root / "gt.json", "detections": root / "detections.json", "videos": root / "videos"}


PAGE_DATA = re.compile(r"<script type='application/json' id='talmts-data'>(.*?)</script>", re.S)


def page_data(path: Path) -> dict:
    """The JSON a page of the view embeds (what its script draws)."""
    return json.loads(PAGE_DATA.search(path.read_text()).group(1))


def view_site(root: Path) -> Path:
    """``talmts view`` of the result set written into ``root``: the site's folder."""
    from talmts.cli import main

    f = write_result_set(root)
    args = ["view", str(f["detections"]), "--ground-truth", str(f["gt"]), "--videos", str(f["videos"])]
    assert main([*args, "--out", str(root / "site")]) == 0
    return root / "site"

"""One builder of prepared datasets on disk, as `talmts prepare` leaves them (frames/, flow/, video_info.csv), and of
their ground truth in the ActivityNet layout, for every test that needs one."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talmts.formats.video_info import VideoInfo, write_video_info


@dataclass
class FakeVideo:
    """One prepared video: its arrays, its rates and its ground truth."""

    subset: str
    frames: np.ndarray | None  # uint8 [T, S, S, 3]; None: no RGB array
    flow: np.ndarray | None = None  # uint8 [T, S, S, 2]
    fps: float = 10.0  # the source video's rate
    sample_fps: float = 10.0  # the rate the arrays were sampled at
    count: float | None = None  # the source video's frames (default: the arrays' length at fps / sample_fps)
    annotations: Sequence[tuple[float, float, str]] = ()  # (start s, end s, label)
    duration: float | None = None  # seconds in the ground truth (default: the arrays' length / sample_fps)

    @property
    def length(self) -> int:
        return len(self.frames if self.frames is not None else self.flow)


def write_prepared(root: Path, videos: Mapping[str, FakeVideo]) -> Path:
    """frames/<id>.npy, flow/<id>.npy (where given) and video_info.csv under ``root``."""
    rows = {}
    for vid, v in videos.items():
        for folder, array in (("frames", v.frames), ("flow", v.flow)):
            if array is not None:
                (root / folder).mkdir(parents=True, exist_ok=True)
                np.save(root / folder / f"{vid}.npy", array)
        count = v.count if v.count is not None else v.length * v.fps / v.sample_fps
        rows[vid] = VideoInfo(vid, v.fps, v.sample_fps, count, v.length)
    root.mkdir(parents=True, exist_ok=True)
    write_video_info(rows, root / "video_info.csv")
    return root


def write_ground_truth(path: Path, videos: Mapping[str, FakeVideo]) -> Path:
    """The videos' annotations as ActivityNet-layout JSON."""
    db = {
        vid: {
            "subset": v.subset,
            "duration": v.duration if v.duration is not None else v.length / v.sample_fps,
            "annotations": [{"segment": [s, e], "label": label} for s, e, label in v.annotations],
        }
        for vid, v in videos.items()
    }
    path.write_text(json.dumps({"version": "test", "database": db}))
    return path

"""Clip counts of a config's protocol from annotation files alone (``talmts dataset-stats``).

The annotations are a file, or a folder laid out like the public annotation folders: THUMOS14 (``thumos14.json``
or ``thumos_gt.json`` or the ``*_Annotation_ours.csv`` files, plus ``val_video_info.csv`` /
``test_video_info.csv``) or ActivityNet (``activity_net.v1-3.min.json`` or ``anet1.3_gt_derived_from_bsn.json``,
plus BSN's ``video_info_new.csv``), or a prepared dataset (``video_info.csv``). No video is read: frame counts come
from the video_info files.

For THUMOS14 with AFSD's ``val_Annotation_ours.csv`` present, ``afsd_reference`` repeats AFSD's own recipe
(the CSV's frame columns and AFSD's window edge at offset + 1): 7,842 training windows over 196 videos.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

from talmts.config import Config
from talmts.data.completeness import ground_truth_beyond_end
from talmts.data.dataset import build_class_map, class_index_fn
from talmts.data.windows import plan_clips, train_windows
from talmts.formats.video_info import VideoInfo, read_video_info
from talmts.schema import AnnotationSet, normalize_subset

log = logging.getLogger(__name__)

KNOWN_ANNOTATIONS = {
    "sliding": ("thumos14.json", "thumos_gt.json", "annotations.json"),
    "whole": ("activity_net.v1-3.min.json", "anet1.3_gt_derived_from_bsn.json", "annotations.json"),
}
CSV_PREFIX = {"validation": "val", "test": "test"}  # THUMOS14 CSV file name per subset


def dataset_stats(cfg: Config, annotations: Path, video_info: Path | None = None) -> dict[str, Any]:
    """Windows, videos, frames and instances of the train / val / test subsets under the config's protocol."""
    d = cfg.data
    ann_dir = annotations if annotations.is_dir() else annotations.parent
    gt, source = _load(cfg, annotations)
    max_frames = d.clip_frames if d.protocol == "whole" else None
    infos = _video_infos(ann_dir, video_info, Path(d.root) if d.root else None, max_frames)
    classes = build_class_map(d, gt)
    index = class_index_fn(classes, d.class_agnostic)
    stats: dict[str, Any] = {
        "annotations": str(source),
        "protocol": d.protocol,
        "clip_frames": d.clip_frames,
        "classes": len(classes),
    }
    splits = [("train", d.train_subset, True), ("val", d.val_subset, False), ("test", d.test_subset, False)]
    counts: dict[str, Any] = {}
    for name, subset, train in splits:
        if subset is None:
            continue
        videos = gt.subset(normalize_subset(subset, file="config", record=f"data.{name}_subset")).videos
        ready = [videos[k] for k in sorted(videos) if k in infos]
        plans = plan_clips(
            ready,
            infos,
            index,
            protocol=d.protocol,
            clip=d.clip_frames,
            stride=d.train_stride if train else d.test_stride,
            min_overlap=d.min_overlap,
            train=train,
        )
        counts[f"{name}_clips"] = len(plans)
        stats[f"{name}_subset"] = subset
        stats[f"{name}_videos"] = len(ready)
        stats[f"{name}_videos_with_clips"] = len({p.window.video for p in plans})
        stats[f"{name}_videos_without_info"] = len(videos) - len(ready)
        stats[f"{name}_frames"] = sum(infos[v.id].sample_count for v in ready)
        stats[f"{name}_instances"] = sum(len(v.annotations) for v in ready)
        stats[f"{name}_targets"] = sum(len(p.targets) for p in plans)
        late = ground_truth_beyond_end(ready, {k: i.duration for k, i in infos.items()})
        stats[f"{name}_instances_beyond_decoded_end"] = sum(b.instances for b in late)
        for b in late:  # a video file cut short or partly undecodable (see `talmts prepare`'s warnings)
            log.warning("%s", b.describe())
    stats = {**counts, **stats}
    reference = _afsd_reference(cfg, ann_dir, infos)
    if reference is not None:
        stats["afsd_reference"] = reference
    return stats


def _load(cfg: Config, annotations: Path) -> tuple[AnnotationSet, Path]:
    from talmts.formats import read_annotations

    d = cfg.data
    read = lambda p: read_annotations(p, exclude_ambiguous=d.exclude_ambiguous)  # noqa: E731
    if annotations.is_file():
        return read(annotations), annotations
    if not annotations.is_dir():
        raise FileNotFoundError(f"--annotations {annotations}: no such file or folder")
    names = list(
        dict.fromkeys(([Path(d.annotations).name] if d.annotations else []) + list(KNOWN_ANNOTATIONS[d.protocol]))
    )
    for name in names:
        if (annotations / name).is_file():
            return read(annotations / name), annotations / name
    csvs = sorted(annotations.glob("*_Annotation_ours.csv"))
    if csvs:  # THUMOS14 CSVs: one file per subset, merged
        merged = [read(p) for p in csvs]
        videos = {k: v for a in merged for k, v in a.videos.items()}
        return AnnotationSet(videos, merged[0].classes, str(annotations)), annotations
    raise FileNotFoundError(f"{annotations}: none of {names} nor *_Annotation_ours.csv found")


def _video_infos(folder: Path, given: Path | None, root: Path | None, max_frames: int | None) -> dict[str, VideoInfo]:
    """The given csv; else every *video_info*.csv next to the annotations, merged; else data.root/video_info.csv."""
    if given is not None:
        paths = [given]
    else:
        paths = sorted(folder.glob("*video_info*.csv"))
        if not paths and root is not None and (root / "video_info.csv").is_file():
            paths = [root / "video_info.csv"]
    if not paths:
        raise FileNotFoundError(
            f"{folder}: no video_info csv (video_info.csv, val_video_info.csv, video_info_new.csv) and no "
            f"{root}/video_info.csv; pass --video-info PATH"
        )
    infos: dict[str, VideoInfo] = {}
    for p in paths:
        infos.update(read_video_info(p, max_frames=max_frames))
    return infos


def _afsd_reference(cfg: Config, folder: Path, infos: dict[str, VideoInfo]) -> dict[str, Any] | None:
    """AFSD's training windows exactly: CSV frame columns * sample_count / count, window edge at offset + 1.

    The CSV frame columns were made at a nominal rate (30 for 29.97 fps videos; 30 for the 25 fps
    video_validation_0000666), so they drift from the seconds; talmts converts the seconds instead.
    """
    d = cfg.data
    prefix = CSV_PREFIX.get(normalize_subset(d.train_subset, file="config", record="data.train_subset"))
    path = folder / f"{prefix}_Annotation_ours.csv"
    if d.protocol != "sliding" or prefix is None or not path.is_file():
        return None
    frames: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for rec in csv.DictReader(f):
            frames.setdefault(rec["video"], []).append((float(rec["startFrame"]), float(rec["endFrame"])))
    clips, videos = 0, 0
    for video, pairs in frames.items():
        info = infos[video]
        seg = np.array(pairs) * (info.sample_count / info.count)
        n = len(
            train_windows(
                info.sample_count,
                seg,
                np.ones(len(seg)),
                d.clip_frames,
                d.train_stride,
                d.min_overlap,
                afsd_left_edge=True,
            )
        )
        clips, videos = clips + n, videos + (n > 0)
    return {"file": str(path), "train_clips": clips, "train_videos_with_clips": videos, "train_videos": len(frames)}

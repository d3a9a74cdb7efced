"""Evaluation of trained streams on a split of a prepared dataset: detections, mAP, the paper's table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from talmts.config import Config
from talmts.data.dataset import load_annotations
from talmts.engine.infer import Stream, detect_prepared
from talmts.evaluation import EvalResult, evaluate_detections
from talmts.schema import AnnotationSet, ClassMap, Detection, Segment, Video


def load_ground_truth(cfg: Config, classes: ClassMap) -> AnnotationSet:
    """The ground truth scored by mAP (data.eval_annotations, else data.annotations); for a class-agnostic
    model every label becomes its one class, so the detector is scored on localisation alone."""
    gt = load_annotations(cfg.data, for_eval=True)
    if cfg.data.class_agnostic:
        (name,) = classes.names
        videos = {
            k: Video(v.id, v.subset, v.duration, v.fps, [Segment(s.start, s.end, name) for s in v.annotations])
            for k, v in gt.videos.items()
        }
        gt = AnnotationSet(videos, classes, gt.source)
    return gt


def split_videos(gt: AnnotationSet, subset: str) -> list[str]:
    videos = sorted(gt.subset(subset).videos)
    if not videos:
        present = sorted({v.subset for v in gt.videos.values()})
        raise ValueError(f"{gt.source}: no video in subset {subset!r} (subsets present: {present})")
    return videos


def evaluate_streams(
    streams: Sequence[Stream],
    cfg: Config,
    subset: str | None = None,
    progress: bool = False,
) -> tuple[EvalResult, dict[str, list[Detection]]]:
    """Run ``streams`` (one, or RGB + flow fused) on every video of ``subset`` and score them.

    ``cfg`` supplies the data (root, annotations, test_stride), inference and evaluation settings; the
    network geometry comes from each stream's own config.
    """
    subset = subset or cfg.data.test_subset
    gt = load_ground_truth(cfg, streams[0].classes)
    videos = split_videos(gt, subset)
    device = _device_of(streams[0].model)
    detections = detect_prepared(streams, cfg, videos, device=device, progress=progress)
    result = evaluate_detections(gt, detections, cfg.eval.tiou, subset=subset)
    return result, detections


def _device_of(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def describe_streams(streams: Sequence[Stream]) -> str:
    names = [f"{s.modality} ({Path(s.source).name})" for s in streams]
    return " + ".join(names) + (" fused" if len(names) > 1 else "")

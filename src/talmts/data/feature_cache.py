"""Cached backbone features: the on-disk layout and the training set that reads it.

``talmts extract-features`` runs the frozen I3D once over every window a dataset serves and stores, per video, the
endpoints the head reads (fp16), for the window as cropped at test time (centre crop) and for its mirror image.
Training the head then reads these instead of running the backbone (see docs/DESIGN.md, "Cached features").

Layout of a cache folder::

    CACHE/cache.json               what the features depend on (the fingerprint) and the endpoints stored
    CACHE/<subset>/<video>.npz     offsets int64 [N] (window starts, sample frames) and, per endpoint,
                                   float16 (or float32) [N, 2, C, t, h, w] (index 1 of axis 1: the horizontally flipped window)

A video file is written whole or not at all (talmts.fileio), so an interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from talmts.config import Config
from talmts.data.dataset import ClipDataset
from talmts.data.transforms import flip_horizontal, make_clip
from talmts.errors import InputError
from talmts.fileio import atomic_open, atomic_write_json

CACHE_FORMAT = 1
META_FILE = "cache.json"
MAX_OPEN_FILES = 64


def cache_fingerprint(cfg: Config, endpoints: list[str], in_channels: int) -> dict[str, Any]:
    """Everything the stored features depend on: a cache made under other values is refused, not silently reused."""
    d, b = cfg.data, cfg.model.backbone
    return {
        "format": CACHE_FORMAT,
        "root": str(Path(d.root).resolve()) if d.root else "",
        "modality": d.modality,
        "protocol": d.protocol,
        "clip_frames": d.clip_frames,
        "frame_size": d.frame_size,
        "train_stride": d.train_stride,
        "test_stride": d.test_stride,
        "min_overlap": d.min_overlap,
        "flip_negates_flow": d.flip_negates_flow,
        "weights": b.weights,
        "seed": None if b.weights else cfg.train.seed,  # a random backbone is the one drawn under train.seed
        "width": b.width,
        "in_channels": in_channels,
        "endpoints": sorted(endpoints),
    }


def check_or_write_meta(cache: Path, fingerprint: dict[str, Any], *, create: bool) -> None:
    """Compare CACHE/cache.json with ``fingerprint`` (its storage dtype excepted); write it when absent and
    ``create``."""
    path = cache / META_FILE
    if not path.is_file():
        if not create:
            raise FileNotFoundError(
                f"{path}: no feature cache here; run `talmts extract-features CONFIG --out {cache}`"
            )
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, fingerprint)
        return
    stored = json.loads(path.read_text())
    if "dtype" not in fingerprint:
        fingerprint = fingerprint | {"dtype": stored.get("dtype")}
    diff = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
    if diff:
        shown = ", ".join(f"{k}: cache {stored.get(k)!r} vs config {fingerprint.get(k)!r}" for k in diff[:4])
        raise InputError(
            f"{path}: the cached features were made under other settings ({shown}); "
            "extract into a new folder (--out / train.feature_cache) or delete this one"
        )


def video_file(cache: Path, subset: str, video: str) -> Path:
    return cache / subset / f"{video}.npz"


def write_video_features(path: Path, offsets: list[int], features: dict[str, np.ndarray]) -> None:
    """One video's windows, atomically: ``features[e]`` is float16 (or float32) [N, 2, C, t, h, w]."""
    with atomic_open(path, "wb") as f:
        np.savez(f, offsets=np.asarray(offsets, np.int64), **features)


def read_video_features(path: Path, endpoints: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: cached features missing (run `talmts extract-features` for this config)")
    with np.load(path) as z:
        missing = [e for e in endpoints if e not in z.files]
        if missing:
            raise InputError(f"{path}: no {missing} stored; re-extract for this model config")
        return z["offsets"], {e: z[e] for e in endpoints}


def flip_clip(clip: Tensor, flow: bool, negate_flow_x: bool) -> Tensor:
    """The mirror image of a network input [C, T, H, W], as the training transform flips it."""
    return torch.from_numpy(flip_horizontal(clip.numpy(), negate_flow_x=flow and negate_flow_x))


@dataclass
class CachedInput:
    """What the head reads instead of a clip: backbone endpoints and the frames (FSA and frame-token STT read them).
    Has ``.to`` like a tensor, so the training loop moves it to the device unchanged."""

    features: dict[str, Tensor]  # endpoint -> [B, C, t, h, w]
    clip: Tensor  # [B, C, T, H, W]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> CachedInput:
        feats = {k: v.to(device, non_blocking=non_blocking) for k, v in self.features.items()}
        return CachedInput(feats, self.clip.to(device, non_blocking=non_blocking))


class CachedFeatureDataset(Dataset):
    """The windows of ``subset`` as ClipDataset plans them, with their cached endpoints instead of a backbone pass.

    Items: {"clip": CachedInput-ready parts ("features", "frames"), "targets", "video", "offset", ...}. Training
    (``train=True``) picks the flipped copy with probability 0.5 (when data.flip); the frames are cropped as at
    extraction (centre crop), so the pair is exactly what the end-to-end network would see for that window.
    """

    def __init__(self, cfg: Config, cache: str | Path, subset: str, train: bool, endpoints: list[str]) -> None:
        self.clips = ClipDataset(cfg, subset, train=train)
        self.cache, self.subset, self.train, self.endpoints = Path(cache), self.clips.subset, train, sorted(endpoints)
        self.classes = self.clips.classes
        self.in_channels = self.clips.in_channels
        check_or_write_meta(self.cache, cache_fingerprint(cfg, self.endpoints, self.in_channels), create=False)
        self._rows: dict[str, dict[int, int]] = {}
        self._open: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        for video in {p.window.video for p in self.clips.plans}:
            offsets, _ = read_video_features(video_file(self.cache, self.subset, video), [])
            self._rows[video] = {int(o): i for i, o in enumerate(offsets)}
        lost = [p.window for p in self.clips.plans if p.window.offset not in self._rows[p.window.video]]
        if lost:
            raise InputError(
                f"{video_file(self.cache, self.subset, lost[0].video)}: no window at offset {lost[0].offset}; "
                "the cache is stale, re-run `talmts extract-features`"
            )

    def __len__(self) -> int:
        return len(self.clips)

    def _features(self, video: str) -> dict[str, np.ndarray]:
        if video in self._open:
            self._open.move_to_end(video)
            return self._open[video]
        _, feats = read_video_features(video_file(self.cache, self.subset, video), self.endpoints)
        self._open[video] = feats
        if len(self._open) > MAX_OPEN_FILES:
            self._open.popitem(last=False)
        return feats

    def __getitem__(self, index: int) -> dict[str, Any]:
        plan = self.clips.plans[index]
        w, d = plan.window, self.clips.data
        flip = self.train and d.flip and torch.rand(()).item() < 0.5
        clip = make_clip(self.clips.array(w.video), w.offset, w.length, d.frame_size, train=False)
        if flip:
            clip = flip_clip(clip, d.modality == "flow", d.flip_negates_flow)
        row = self._rows[w.video][w.offset]
        feats = {e: torch.from_numpy(a[row, int(flip)].astype(np.float32)) for e, a in self._features(w.video).items()}
        return {
            "features": feats,
            "frames": clip,
            "targets": torch.from_numpy(plan.targets.copy()),
            "video": w.video,
            "offset": w.offset,
            "flip": flip,
        }

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own files
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state


def collate_cached(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch for the training loop: ``clip`` is a :class:`CachedInput` (the loop calls ``.to`` and ``net(clip)``)."""
    feats = {e: torch.stack([it["features"][e] for it in items]) for e in items[0]["features"]}
    batch: dict[str, Any] = {
        "clip": CachedInput(feats, torch.stack([it["frames"] for it in items])),
        "targets": [it["targets"] for it in items],
    }
    for key in ("video", "offset", "flip"):
        batch[key] = [it[key] for it in items]
    return batch

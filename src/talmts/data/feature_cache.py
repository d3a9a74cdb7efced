"""Cached backbone features: one feature map per video, the on-disk layout, and the training set that reads it.

``talmts extract-features`` (or the first ``talmts train`` of a config with ``train.feature_cache``) runs the frozen
I3D once over each video (model.backbone.context "video", talmts.models.video_features) and stores the endpoints
the head reads, fp16, for the centre-cropped video and, for training videos, its mirror image. Each window's
features are a slice of its video's map (see docs/DESIGN.md, "Cached features").

Layout of a cache folder::

    CACHE/cache.json                   what every map depends on (the fingerprint: contents, not paths)
    CACHE/videos/<video>.<endpoint>.npy  float16 (or float32) [views, C, L / stride, h, w]; view 1: mirror image
    CACHE/videos/<video>.json          {"frames": n, "length": L, "views": V, "source": digest of the prepared array}

The .npy files are written first and the .json last, each atomically (talmts.fileio): a video whose .json is
missing or does not cover what is needed now (its frame count, padded length, views, or the prepared array's
content changed) is extracted again; an interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from talmts import schema
from talmts.config import BACKBONE_GRID, Config
from talmts.data.dataset import ClipDataset
from talmts.data.device_transforms import clips_from_windows, raw_window, window_patches
from talmts.data.record import record_path
from talmts.data.transforms import center_crop_box, flip_horizontal
from talmts.errors import InputError
from talmts.fileio import atomic_open, atomic_write_json, file_sha256
from talmts.formats.common import load_json

CACHE_FORMAT = 2
META_FILE = "cache.json"
VIDEOS_DIR = "videos"
MAX_OPEN_VIDEOS = 64
SOURCE_SAMPLES = 16  # frames of a prepared array hashed into its digest (with its shape): cheap, and content


def prepare_digest(root: str | Path) -> str | None:
    """sha256 of ROOT/prepare.json (how the frames were made), or None for a folder without a record."""
    path = record_path(root) if root else None
    return file_sha256(path) if path is not None and path.is_file() else None


def array_digest(frames: np.ndarray) -> str:
    """A digest of a prepared array's content: its shape and SOURCE_SAMPLES evenly spaced frames."""
    h = hashlib.sha256(repr((frames.shape, str(frames.dtype))).encode())
    n = len(frames)
    for i in sorted({round(k * (n - 1) / max(SOURCE_SAMPLES - 1, 1)) for k in range(SOURCE_SAMPLES)} if n else ()):
        h.update(np.ascontiguousarray(frames[i]).tobytes())
    return h.hexdigest()


def cache_fingerprint(cfg: Config, endpoints: list[str], in_channels: int, weights: str | None) -> dict[str, Any]:
    """What every stored map depends on, by content: the prepare record's sha256, the weights' identity
    (``weights``: the file's sha256, or the checksum of a named set), the crop, the endpoints. A cache made under
    other values is refused. Window geometry and annotations are not in it: a map covers its whole video."""
    d, b = cfg.data, cfg.model.backbone
    return {
        "format": CACHE_FORMAT,
        "prepare": prepare_digest(d.root),
        "modality": d.modality,
        "frame_size": d.frame_size,
        "flip_negates_flow": d.flip_negates_flow,
        "weights": weights,
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
    stored = load_json(path)
    if not isinstance(stored, dict):
        raise InputError(f"{path}: not a feature cache record (a JSON object); extract into a new folder")
    if "dtype" not in fingerprint:
        fingerprint = fingerprint | {"dtype": stored.get("dtype")}
    diff = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
    if diff:
        shown = ", ".join(f"{k}: cache {stored.get(k)!r} vs now {fingerprint.get(k)!r}" for k in diff[:4])
        raise InputError(
            f"{path}: the cached features were made from other data or settings ({shown}); "
            "extract into a new folder (--out / train.feature_cache) or delete this one"
        )


def video_record_path(cache: Path, video: str) -> Path:
    return schema.video_file(cache / VIDEOS_DIR, video, ".json")


def endpoint_path(cache: Path, video: str, endpoint: str) -> Path:
    return schema.video_file(cache / VIDEOS_DIR, video, f".{endpoint}.npy")


def video_record(frames: int, length: int, views: int, source: str) -> dict[str, Any]:
    return {"frames": frames, "length": length, "views": views, "source": source}


def covers(cache: Path, video: str, wanted: dict[str, Any], endpoints: list[str]) -> bool:
    """Whether the stored map of ``video`` serves ``wanted`` (:func:`video_record`): same frames, padded length and
    source, at least as many views, every endpoint file present."""
    path = video_record_path(cache, video)
    if not path.is_file():
        return False
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # ValueError: bad UTF-8 or JSON, a 5,000-digit integer
        return False
    if not isinstance(stored, dict):
        return False
    same = all(stored.get(k) == wanted[k] for k in ("frames", "length", "source"))
    return (
        same
        and stored.get("views", 0) >= wanted["views"]
        and all(endpoint_path(cache, video, e).is_file() for e in endpoints)
    )


def write_video_map(cache: Path, video: str, record: dict[str, Any], features: dict[str, np.ndarray]) -> None:
    """One video's map: the endpoint arrays, then the record that says they are whole."""
    video_record_path(cache, video).unlink(missing_ok=True)  # what was there no longer covers anything
    (cache / VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
    for e, a in features.items():
        with atomic_open(endpoint_path(cache, video, e), "wb") as f:
            np.save(f, a)
    atomic_write_json(video_record_path(cache, video), record)


def read_video_map(cache: Path, video: str, endpoints: list[str]) -> dict[str, np.ndarray]:
    """The stored map of ``video``, memory-mapped: {endpoint: [views, C, t, h, w]}."""
    out = {}
    for e in endpoints:
        path = endpoint_path(cache, video, e)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: cached features missing (run `talmts extract-features` for this config)")
        try:
            out[e] = np.load(path, mmap_mode="r")
        except (ValueError, EOFError) as err:  # cut short (a full disk, a copy stopped midway), or empty
            raise InputError(
                f"{path}: damaged cached features ({err}); delete it and run `talmts extract-features` again"
            ) from err
    return out


def slice_steps(feature_map: np.ndarray, length: int, offset: int, clip_frames: int) -> slice:
    """The steps of an endpoint map of a ``length``-frame video that a window at ``offset`` reads."""
    stride = length // feature_map.shape[2]
    return slice(offset // stride, (offset + clip_frames) // stride)


def flip_clip(clip: Tensor, flow: bool, negate_flow_x: bool) -> Tensor:
    """The mirror image of a network input [C, T, H, W], as the training transform flips it."""
    return torch.from_numpy(flip_horizontal(clip.numpy(), negate_flow_x=flow and negate_flow_x))


class CachedFeatureDataset(Dataset):
    """The windows of ``subset`` as ClipDataset plans them (on the backbone's grid), each with its slice of its
    video's cached map instead of a backbone pass.

    Items: {"features": {endpoint: [C, t, h, w]}, "window": uint8 [T, S, S, C] (the stored frames, zeros past the
    video's end), "crop", "real" (frames of the video in the window), "targets", "video", "offset", "flip"}.
    Training (``train=True``) picks the mirrored view with probability 0.5 (when data.flip); the frames are cropped
    as at extraction (centre crop) and mirrored with it when the batch is made (:class:`CachedInput`).
    """

    def __init__(self, cfg: Config, cache: str | Path, subset: str, train: bool, endpoints: list[str]) -> None:
        if cfg.model.backbone.context != "video":
            raise InputError("a feature cache holds whole-video maps: set model.backbone.context=video")
        self.clips = ClipDataset(cfg, subset, train=train)
        self.cache, self.subset, self.train, self.endpoints = Path(cache), self.clips.subset, train, sorted(endpoints)
        self.classes = self.clips.classes
        self.in_channels = self.clips.in_channels
        self.lengths: dict[str, int] = {}
        views = 2 if train and cfg.data.flip else 1
        for video in sorted({p.window.video for p in self.clips.plans}):
            wanted = video_record(
                self.clips.infos[video].sample_count,
                padded_map_length(self.clips.infos[video].sample_count, cfg.data.clip_frames),
                views,
                array_digest(self.clips.array(video)),
            )
            if not covers(self.cache, video, wanted, self.endpoints):
                raise InputError(
                    f"{video_record_path(self.cache, video)}: missing, or made from other frames or settings; "
                    "run `talmts extract-features` (or `talmts train`, which extracts what is missing)"
                )
            self.lengths[video] = wanted["length"]
        self._open: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.clips)

    def _map(self, video: str) -> dict[str, np.ndarray]:
        if video in self._open:
            self._open.move_to_end(video)
            return self._open[video]
        feats = read_video_map(self.cache, video, self.endpoints)
        self._open[video] = feats
        if len(self._open) > MAX_OPEN_VIDEOS:
            self._open.popitem(last=False)
        return feats

    def __getitem__(self, index: int) -> dict[str, Any]:
        plan = self.clips.plans[index]
        w, d = plan.window, self.clips.data
        flip = self.train and d.flip and torch.rand(()).item() < 0.5
        frames = self.clips.array(w.video)
        _, height, width, _ = frames.shape
        feats = {}
        for e, a in self._map(w.video).items():
            steps = slice_steps(a, self.lengths[w.video], w.offset, w.length)
            feats[e] = torch.from_numpy(np.array(a[int(flip), :, steps], dtype=np.float32))
        return {
            "features": feats,
            "window": torch.from_numpy(raw_window(frames, w.offset, w.length)),
            "crop": center_crop_box(height, width, d.frame_size),  # as extraction's make_clip(train=False)
            "real": min(w.length, len(frames) - w.offset),
            "targets": torch.from_numpy(plan.targets.copy()),
            "video": w.video,
            "offset": w.offset,
            "flip": flip,
        }

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own files
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state


def padded_map_length(num_frames: int, clip_frames: int) -> int:
    """Frames of a video's map: the video padded to the backbone's grid, and to at least one window."""
    return max(clip_frames, BACKBONE_GRID * -(-num_frames // BACKBONE_GRID))


@dataclass
class CachedInput:
    """What the head reads instead of a clip: backbone endpoints and the windows' stored frames, made into the clip
    or FSA's patches on demand (talmts.data.device_transforms: the same values as make_clip's, bit for bit). Has
    ``.to`` like a tensor, so the training loop moves it to the device unchanged."""

    features: dict[str, Tensor]  # endpoint -> [B, C, t, h, w]
    windows: Tensor  # uint8 [B, T, S, S, C]
    crops: list[tuple[int, int]]
    flips: list[bool]
    real: list[int]
    size: int  # data.frame_size
    negate_flow_x: bool  # flow with data.flip_negates_flow: a mirrored window's x channel changes sign

    def to(self, device: torch.device | str, non_blocking: bool = False) -> CachedInput:
        feats = {k: v.to(device, non_blocking=non_blocking) for k, v in self.features.items()}
        return replace(self, features=feats, windows=self.windows.to(device, non_blocking=non_blocking))

    @property
    def clip(self) -> Tensor:
        """float32 [B, C, T, F, F] in [-1, 1], as make_clip makes it."""
        return clips_from_windows(
            self.windows, self.crops, self.flips, self.real, self.size, negate_flow_x=self.negate_flow_x
        )

    def fsa_patches(self, patch: int) -> Tensor:
        """``patchify(self.clip, patch)``, cut on the uint8 frames (FSA's input at a quarter of the copying)."""
        return window_patches(
            self.windows, self.crops, self.flips, self.real, self.size, patch, negate_flow_x=self.negate_flow_x
        )


def collate_cached(items: list[dict[str, Any]], size: int, negate_flow_x: bool) -> dict[str, Any]:
    """Batch for the training loop: ``clip`` is a :class:`CachedInput` (the loop calls ``.to`` and ``net(clip)``).
    ``size``: data.frame_size; ``negate_flow_x``: flow with data.flip_negates_flow (:func:`cached_collate`)."""
    feats = {e: torch.stack([it["features"][e] for it in items]) for e in items[0]["features"]}
    windows = torch.stack([it["window"] for it in items])
    clip = CachedInput(
        feats, windows, [it["crop"] for it in items], [it["flip"] for it in items], [it["real"] for it in items],
        size, negate_flow_x,
    )  # fmt: skip
    batch: dict[str, Any] = {"clip": clip, "targets": [it["targets"] for it in items]}
    for key in ("video", "offset", "flip"):
        batch[key] = [it[key] for it in items]
    return batch


def cached_collate(cfg: Config) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """:func:`collate_cached` for ``cfg``'s frames (a picklable partial, for DataLoader workers)."""
    d = cfg.data
    return partial(collate_cached, size=d.frame_size, negate_flow_x=d.modality == "flow" and d.flip_negates_flow)

"""Torch datasets over a prepared dataset (``talmts prepare``): training windows and test windows.

Layout read (see contracts): ROOT/frames/<video>.npy (uint8 [T, S, S, 3]) or ROOT/flow/<video>.npy
(uint8 [T, S, S, 2]) by ``data.modality``, ROOT/video_info.csv, and the annotation file ``data.annotations``
read by :func:`talmts.formats.read_annotations`. Arrays are memory-mapped: a clip reads only its own frames.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from talmts.config import BACKBONE_GRID, MODALITY_CHANNELS, Config, DataConfig
from talmts.data.completeness import ground_truth_beyond_end
from talmts.data.device_transforms import raw_window
from talmts.data.transforms import draw_clip_params, make_clip
from talmts.data.windows import ClipPlan, Window, plan_clips
from talmts.errors import InputError
from talmts.formats.video_info import VideoInfo, read_video_info
from talmts.schema import AnnotationSet, ClassMap, normalize_subset, video_file

AGNOSTIC = ClassMap(("action",))  # data.class_agnostic: every label is class 1
MAX_OPEN_ARRAYS = 32  # memory maps kept open per dataset (each holds a file descriptor)


def _read_file(path: str | Path, classes: ClassMap | None, exclude_ambiguous: bool) -> AnnotationSet:
    from talmts.formats import read_annotations  # imported here: formats is a lower layer, loaded on use

    return read_annotations(path, classes=classes, exclude_ambiguous=exclude_ambiguous)


def read_config_annotations(data: DataConfig, *, for_eval: bool = False) -> AnnotationSet:
    """``formats.read_annotations`` of the config's file (``data.eval_annotations`` first when ``for_eval`` and it is
    set), in the config's class order."""
    path = data.eval_annotations if for_eval and data.eval_annotations else data.annotations
    if not path:
        raise InputError("data.annotations is empty: set it to the ground-truth file (e.g. data.annotations=gt.json)")
    classes = ClassMap(tuple(data.classes)) if data.classes and not data.class_agnostic else None
    return _read_file(path, classes, data.exclude_ambiguous)


def build_class_map(data: DataConfig, annotations: AnnotationSet) -> ClassMap:
    """``data.classes`` in its order, or the sorted labels of the file; one "action" class when class-agnostic."""
    if data.class_agnostic:
        return AGNOSTIC
    if data.classes:
        classes = ClassMap(tuple(data.classes))
        unknown = sorted({s.label for v in annotations.videos.values() for s in v.annotations} - set(classes))
        if unknown:
            raise InputError(
                f"{annotations.source or data.annotations}: labels {unknown[:5]} are not in data.classes "
                f"({len(classes)} classes); add them to data.classes or remove data.classes to use the file's labels"
            )
        return classes
    return ClassMap.from_labels(s.label for v in annotations.videos.values() for s in v.annotations)


def class_index_fn(classes: ClassMap, agnostic: bool) -> Callable[[str], int]:
    """label -> class index; every label is class 1 for a class-agnostic model."""
    return (lambda _label: 1) if agnostic else classes.index


class ClipDataset(Dataset):
    """Clips of one subset of a prepared dataset.

    train=True: the training protocol (windows holding a whole action), random crop and flip. train=False: every
    test window of every video of the subset in video order, centre crop (sliding-window inference and held-out
    losses). Items: {"clip": float32 [C, T, H, W] in [-1, 1], "targets": float32 [M, 3] (start, end, class) in
    clip frames, "video": str, "offset": int (window start, sample frames), "fps": float (sample frames per second
    of this video: seconds = (frame + offset) / fps), "frames": int (real frames in the clip; the rest is padding)}.

    raw=True (``data.transform: device``): instead of "clip", "window": uint8 [T, S, S, C] (the stored frames, zeros
    past the end), "crop": (y, x) and "flip": bool, drawn as ``make_clip`` draws them; the training device then
    makes the clip (data/device_transforms.py).
    """

    def __init__(
        self, cfg: Config, subset: str, train: bool, *, annotations: AnnotationSet | None = None, raw: bool = False
    ):
        self.cfg, self.data, self.train, self.raw = cfg, cfg.data, train, raw
        self.subset = normalize_subset(subset, file="config", record="data subset")
        d = self.data
        if not d.root:
            raise InputError("data.root is empty: set it to a folder made by `talmts prepare` (data.root=DIR)")
        self.root = Path(d.root)
        self.array_dir = self.root / ("frames" if d.modality == "rgb" else "flow")
        self.infos: dict[str, VideoInfo] = read_video_info(self.root / "video_info.csv")
        self.annotations = annotations if annotations is not None else read_config_annotations(d)
        self.classes = build_class_map(d, self.annotations)
        wanted = self.annotations.subset(self.subset).videos
        if not wanted:
            found = sorted({v.subset for v in self.annotations.videos.values()})
            raise InputError(
                f"{d.annotations}: no video in subset {self.subset!r} (the file has {found}); "
                "set data.train_subset / data.test_subset to one of those"
            )
        self.missing = sorted(set(wanted) - set(self.infos))
        if len(self.missing) == len(wanted):
            raise InputError(
                f"none of the {len(wanted)} {self.subset!r} videos of {d.annotations} is in {self.root}/video_info.csv "
                f"(e.g. {self.missing[:3]}); run `talmts prepare` on their videos or fix data.root"
            )
        if self.missing:
            warnings.warn(
                f"{len(self.missing)} of {len(wanted)} {self.subset!r} videos are not prepared in {self.root} "
                f"and are skipped (e.g. {self.missing[:3]})",
                stacklevel=2,
            )
        self.videos = [wanted[k] for k in sorted(wanted) if k in self.infos]
        self.beyond_end = ground_truth_beyond_end(self.videos, {k: i.duration for k, i in self.infos.items()})
        if self.beyond_end:
            n = sum(b.instances for b in self.beyond_end)
            warnings.warn(
                f"{n} {self.subset!r} ground-truth instance(s) in {len(self.beyond_end)} video(s) lie beyond what was "
                f"decoded of the video and cannot be learned or detected: "
                + "; ".join(b.describe() for b in self.beyond_end[:5])
                + " (see the prepare warnings: the video files are cut short or partly undecodable)",
                stacklevel=2,
            )
        self.plans: list[ClipPlan] = plan_clips(
            self.videos,
            self.infos,
            class_index_fn(self.classes, d.class_agnostic),
            protocol=d.protocol,
            clip=d.clip_frames,
            stride=d.train_stride if train else d.test_stride,
            min_overlap=d.min_overlap,
            train=train,
            align=window_grid(cfg),
        )
        self._arrays: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return MODALITY_CHANNELS[self.data.modality]

    def __len__(self) -> int:
        return len(self.plans)

    def array(self, video: str) -> np.ndarray:
        """The stored uint8 array of a video, memory-mapped and checked against video_info.csv."""
        if video in self._arrays:
            self._arrays.move_to_end(video)
            return self._arrays[video]
        path = video_file(self.array_dir, video, ".npy")
        arr = load_video_array(path, self.in_channels, self.infos[video].sample_count)
        self._arrays[video] = arr
        if len(self._arrays) > MAX_OPEN_ARRAYS:
            self._arrays.popitem(last=False)
        return arr

    def __getitem__(self, index: int) -> dict[str, Any]:
        plan = self.plans[index]
        w: Window = plan.window
        frames = self.array(w.video)
        d = self.data
        info = {
            "targets": torch.from_numpy(plan.targets.copy()),
            "video": w.video,
            "offset": w.offset,
            "fps": plan.rate,
            "frames": min(w.length, plan.num_frames - w.offset),
        }
        if self.raw:
            _, h, wd, _ = frames.shape
            crop, flipped = draw_clip_params(h, wd, d.frame_size, train=self.train, flip=d.flip)
            return {
                "window": torch.from_numpy(raw_window(frames, w.offset, w.length)),
                "crop": crop,
                "flip": flipped,
                **info,
            }
        clip = make_clip(
            frames,
            w.offset,
            w.length,
            d.frame_size,
            train=self.train,
            flip=d.flip,
            flow=d.modality == "flow",
            negate_flow_x=d.flip_negates_flow,
        )
        return {"clip": clip, **info}

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers get no open memory maps
        state = self.__dict__.copy()
        state["_arrays"] = OrderedDict()
        return state


def window_grid(cfg: Config) -> int:
    """The frames window starts are multiples of: the backbone's grid when it runs once per video, else 1."""
    return BACKBONE_GRID if cfg.model.backbone.context == "video" else 1


def load_video_array(path: Path, channels: int, expected_frames: int | None = None) -> np.ndarray:
    """Memory-map one prepared array and check it: uint8 [T, S, S, channels] with T = video_info's count."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prepared array missing (run `talmts prepare`, or check data.root/modality)")
    arr = np.load(path, mmap_mode="r")
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != channels:
        raise InputError(
            f"{path}: expected uint8 [T, S, S, {channels}], got {arr.dtype} {list(arr.shape)} "
            "(re-run `talmts prepare`, or check data.modality)"
        )
    if expected_frames is not None and arr.shape[0] != expected_frames:
        raise InputError(
            f"{path}: {arr.shape[0]} frames but video_info.csv says sample_count={expected_frames} "
            "(the array and the csv come from different runs: re-run `talmts prepare` for this video)"
        )
    return arr


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips into [B, C, T, H, W] (uint8 windows into [B, T, S, S, C], their crops into [B, 2] and flips into
    [B]); targets stay a list (their counts differ); other keys become lists."""
    batch: dict[str, Any] = {"targets": [it["targets"] for it in items]}
    if "window" in items[0]:
        batch["window"] = torch.stack([it["window"] for it in items])
        batch["crop"] = torch.tensor([it["crop"] for it in items], dtype=torch.long)
        batch["flip"] = torch.tensor([it["flip"] for it in items], dtype=torch.bool)
    else:
        batch["clip"] = torch.stack([it["clip"] for it in items])
    for key in items[0]:
        if key not in batch:
            batch[key] = [it[key] for it in items]
    return batch

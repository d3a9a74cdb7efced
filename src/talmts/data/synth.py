"""A procedurally generated untrimmed-video action dataset, deterministic by seed, made in seconds.

Each video is a textured background that pans slowly, a few small muted distractor objects that wander
around (they move, but are no action), and action instances drawn large, saturated and outlined. The classes
differ in how the object moves (see ``synth_settings.MOTIONS``); by default each class also has its own shape, and
``same_shapes=True`` draws every instance's shape from one pool so that only the motion tells classes apart.
The frame is split into two horizontal lanes; each lane holds one action at a time, so the lanes give
overlapping actions without objects colliding. An action's object may sit still for a moment before the
action starts and after it ends ("idle"): the ground truth covers the motion, not the visibility.

Ground truth: frames [start, end) of the written video, in seconds start / fps .. end / fps.

The plan records, the motions, their drawing and the annotations they produce share the same constants, so a
class's motion sits beside the code that draws and labels it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from talmts.data.synth_settings import SynthConfig
from talmts.fileio import atomic_path, atomic_write_json
from talmts.formats import write_ground_truth
from talmts.schema import SUBSETS, AnnotationSet, ClassMap, Segment, Video

CLASS_SHAPES = {
    "bounce": "disk",
    "spin": "bar",
    "pulse": "square",
    "cross": "triangle",
    "orbit": "diamond",
    "shake": "ring",
}
SHARED_SHAPES = ("square", "triangle", "bar", "plus", "diamond")  # none is symmetric under rotation
PALETTE = (
    (230, 40, 40),
    (40, 200, 60),
    (50, 90, 235),
    (245, 215, 40),
    (220, 50, 210),
    (40, 205, 225),
    (245, 135, 30),
)
OUTLINE = (15, 15, 15)
# class -> (low, high) of its rate: bounces/s, rev/s, cycles/s, frame widths/s, rev/s, Hz
RATES = {
    "bounce": (0.9, 1.4),
    "spin": (0.5, 0.9),
    "pulse": (0.6, 1.0),
    "cross": (0.3, 0.45),
    "orbit": (0.5, 0.8),
    "shake": (1.5, 2.2),
}


@dataclass(frozen=True)
class ActionPlan:
    label: str
    shape: str
    color: tuple[int, int, int]
    lane: int  # 0: top half, 1: bottom half
    appear: int  # object visible in frames [appear, vanish)
    start: int  # action (ground truth) in frames [start, end)
    end: int
    vanish: int
    x: float  # anchor x in pixels
    size: float  # pixels
    rate: float  # see RATES
    direction: int  # +1 / -1
    phase: float  # radians


@dataclass(frozen=True)
class DistractorPlan:
    shape: str
    color: tuple[int, int, int]
    size: float
    appear: int
    vanish: int
    path: tuple[float, float, float, float]  # x freq (Hz), y freq, x phase, y phase


@dataclass(frozen=True)
class VideoPlan:
    id: str
    subset: str
    frames: int
    fps: float
    height: int
    width: int
    background_seed: int
    tint: tuple[float, float, float]
    pan: tuple[float, float, float, float]  # x freq, y freq, x phase, y phase
    contrast: float
    actions: tuple[ActionPlan, ...]
    distractors: tuple[DistractorPlan, ...]


# ----------------------------------------------------------------------------------------------- planning
def subset_of(index: int, splits: tuple[int, int, int]) -> str:
    r = index % sum(splits)
    return SUBSETS[0] if r < splits[0] else SUBSETS[1] if r < splits[0] + splits[1] else SUBSETS[2]


def plan_video(cfg: SynthConfig, index: int) -> VideoPlan:
    """The plan of video ``index``; it depends only on (seed, index), not on the number of videos."""
    rng = np.random.default_rng([cfg.seed, index])
    h, w, fps = cfg.height, cfg.frame_width, cfg.fps
    n = max(1, round(rng.uniform(cfg.min_video_s, cfg.max_video_s) * fps))
    actions = [a for lane in (0, 1) for a in _schedule_lane(rng, cfg, lane, n)]
    if not actions:  # the video is too short for a sampled action: put one short action in the middle
        d = max(2, min(n // 2, round(cfg.min_action_s * fps)))
        actions = [_make_action(rng, cfg, 0, (n - d) // 2, (n - d) // 2, (n + d) // 2, (n + d) // 2)]
    k = int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))
    distractors = tuple(_make_distractor(rng, cfg, n) for _ in range(k))
    gray = rng.uniform(95, 145)
    return VideoPlan(
        id=f"synth_{index:04d}",
        subset=subset_of(index, cfg.splits),
        frames=n,
        fps=fps,
        height=h,
        width=w,
        background_seed=int(rng.integers(2**31)),
        tint=tuple(float(gray + rng.uniform(-12, 12)) for _ in range(3)),
        pan=(rng.uniform(0.03, 0.08), rng.uniform(0.03, 0.08), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)),
        contrast=cfg.background_contrast,
        actions=tuple(sorted(actions, key=lambda a: (a.start, a.lane))),
        distractors=distractors,
    )


def _schedule_lane(rng: np.random.Generator, cfg: SynthConfig, lane: int, n: int) -> list[ActionPlan]:
    fps, out = cfg.fps, []
    t = rng.uniform(0.3, 3.0)
    while True:
        if rng.random() < cfg.short_fraction:
            dur = rng.uniform(cfg.short_min_s, cfg.min_action_s)
        else:
            dur = rng.uniform(cfg.min_action_s, cfg.max_action_s)
        idle_before = rng.uniform(0.2, cfg.max_idle_s) if rng.random() < cfg.idle_prob else 0.0
        idle_after = rng.uniform(0.2, cfg.max_idle_s) if rng.random() < cfg.idle_prob else 0.0
        appear = round(t * fps)
        start = round((t + idle_before) * fps)
        end = max(start + 2, round((t + idle_before + dur) * fps))
        vanish = max(end, round((t + idle_before + dur + idle_after) * fps))
        if vanish > n - round(0.2 * fps):
            return out
        if lane == 0 or rng.random() < cfg.overlap:
            out.append(_make_action(rng, cfg, lane, appear, start, end, vanish))
        t = vanish / fps + rng.uniform(1.0, 4.0)


def _make_action(
    rng: np.random.Generator, cfg: SynthConfig, lane: int, appear: int, start: int, end: int, vanish: int
) -> ActionPlan:
    label = str(rng.choice(cfg.classes))
    shape = str(rng.choice(SHARED_SHAPES)) if cfg.same_shapes else CLASS_SHAPES[label]
    size = cfg.object_size * cfg.height * rng.uniform(0.9, 1.1)
    w = cfg.frame_width
    return ActionPlan(
        label=label,
        shape=shape,
        color=PALETTE[int(rng.integers(len(PALETTE)))],
        lane=lane,
        appear=appear,
        start=start,
        end=end,
        vanish=vanish,
        x=float(rng.uniform(size + 0.1 * w, w - size - 0.1 * w)),
        size=float(size),
        rate=float(rng.uniform(*RATES[label])),
        direction=int(rng.choice([-1, 1])),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )


def _make_distractor(rng: np.random.Generator, cfg: SynthConfig, n: int) -> DistractorPlan:
    gray = rng.uniform(30, 225)
    span = int(rng.integers(min(n, round(3 * cfg.fps)), n + 1))
    appear = int(rng.integers(0, n - span + 1))
    return DistractorPlan(
        shape=str(rng.choice(["disk", "square"])),
        color=tuple(int(np.clip(gray + rng.uniform(-15, 15), 0, 255)) for _ in range(3)),
        size=float(cfg.height * rng.uniform(0.07, 0.1)),
        appear=appear,
        vanish=appear + span,
        path=(rng.uniform(0.03, 0.15), rng.uniform(0.03, 0.15), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)),
    )


# ----------------------------------------------------------------------------------------------- motion
def action_pose(a: ActionPlan, frame: int, fps: float, height: int, width: int) -> tuple[float, float, float, float]:
    """(cx, cy, scale, angle) of the action object at ``frame``; still outside [start, end)."""
    t = (min(max(frame, a.start), a.end) - a.start) / fps  # seconds into the action
    lane_top, lane_h = a.lane * height / 2, height / 2
    cx, cy, scale, angle = a.x, lane_top + lane_h / 2, 1.0, a.phase
    r = a.size / 2
    if a.label == "bounce":
        floor = lane_top + lane_h - r - 2
        cy = floor - (lane_h - a.size - 4) * abs(math.sin(math.pi * a.rate * t))
        angle = 0.0
    elif a.label == "spin":
        angle = a.phase + a.direction * 2 * math.pi * a.rate * t
    elif a.label == "pulse":
        scale = 0.5 + 0.5 * (0.5 - 0.5 * math.cos(2 * math.pi * a.rate * t))
    elif a.label == "cross":
        lo, hi = r + 3, width - r - 3
        travel = (hi - lo) * a.rate * t  # rate: frame widths per second
        leg, pos = divmod(travel, hi - lo)
        forward = (int(leg) % 2 == 0) == (a.direction > 0)
        cx = lo + pos if forward else hi - pos
        angle = 0.0 if forward else math.pi  # the triangle points where it goes
    elif a.label == "orbit":
        radius = min(0.11 * height, (lane_h - a.size) / 2 + 1)
        theta = a.phase + a.direction * 2 * math.pi * a.rate * t
        cx, cy = a.x + radius * math.cos(theta), cy + radius * math.sin(theta)
        angle = 0.0
    elif a.label == "shake":
        cx = a.x + 0.1 * width * math.sin(2 * math.pi * a.rate * t)
        angle = 0.0
    return cx, cy, scale, angle


def distractor_position(d: DistractorPlan, frame: int, fps: float, height: int, width: int) -> tuple[float, float]:
    t = frame / fps
    fx, fy, px, py = d.path
    cx = width / 2 + (width / 2 - d.size) * math.sin(2 * math.pi * fx * t + px)
    cy = height / 2 + (height / 2 - d.size) * math.sin(2 * math.pi * fy * t + py)
    return cx, cy


# ----------------------------------------------------------------------------------------------- drawing
def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float, angle: float) -> np.ndarray:
    """Pixels inside ``shape`` of radius ``r`` rotated by ``angle``; dx, dy are offsets from its centre."""
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # object coordinates
    if shape == "disk":
        return dx * dx + dy * dy <= r * r
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.5 * r) ** 2)
    if shape == "square":
        return (np.abs(u) <= 0.85 * r) & (np.abs(v) <= 0.85 * r)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= r
    if shape == "bar":
        return (np.abs(u) <= r) & (np.abs(v) <= 0.4 * r)
    if shape == "plus":
        return ((np.abs(u) <= r) & (np.abs(v) <= 0.3 * r)) | ((np.abs(v) <= r) & (np.abs(u) <= 0.3 * r))
    if shape == "triangle":  # vertices at angle, angle +- 120 deg, 1.2 r from the centre
        inside = np.ones(dx.shape, bool)
        for k in (1, 3, 5):
            phi = angle + k * math.pi / 3
            inside &= dx * math.cos(phi) + dy * math.sin(phi) <= 0.6 * r
        return inside
    raise ValueError(f"unknown shape {shape!r}")


def draw_shape(
    image: np.ndarray,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    angle: float,
    color: tuple[int, int, int],
    outline: int = 0,
) -> None:
    """Paint a filled shape (with a dark border ``outline`` pixels wide) into ``image`` [H, W, 3] in place."""
    h, w = image.shape[:2]
    m = 1.25 * r  # every shape lies within 1.2 r of its centre
    x0, x1 = max(0, int(cx - m) - 1), min(w, int(cx + m) + 2)
    y0, y1 = max(0, int(cy - m) - 1), min(h, int(cy + m) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx -= cx
    dy -= cy
    patch = image[y0:y1, x0:x1]
    outer = shape_mask(shape, dx, dy, r, angle)
    if outline:
        inner = shape_mask(shape, dx, dy, max(r - outline, 0.5), angle)
        patch[outer & ~inner] = OUTLINE
        outer = inner
    patch[outer] = color


def make_background(plan: VideoPlan, pad: int) -> np.ndarray:
    """Smooth random texture (coarse blobs and finer grain) on a canvas ``pad`` pixels larger on each side."""
    rng = np.random.default_rng(plan.background_seed)
    hh, ww = plan.height + 2 * pad, plan.width + 2 * pad
    coarse = cv2.resize(rng.standard_normal((hh // 12 + 2, ww // 12 + 2)).astype(np.float32), (ww, hh))
    fine = cv2.resize(rng.standard_normal((hh // 3 + 2, ww // 3 + 2)).astype(np.float32), (ww, hh))
    texture = plan.contrast * (22 * coarse / (coarse.std() + 1e-6) + 9 * fine / (fine.std() + 1e-6))
    canvas = np.asarray(plan.tint, np.float32)[None, None, :] + texture[..., None]
    return np.clip(canvas, 0, 255).astype(np.uint8)


def render_frames(plan: VideoPlan) -> Iterator[np.ndarray]:
    """The frames of ``plan``: uint8 RGB [H, W, 3] each."""
    pad = max(4, plan.height // 10)
    canvas = make_background(plan, pad)
    fx, fy, px, py = plan.pan
    outline = max(1, round(plan.height / 56))
    for f in range(plan.frames):
        t = f / plan.fps
        ox = pad + round(pad * math.sin(2 * math.pi * fx * t + px))
        oy = pad + round(pad * math.sin(2 * math.pi * fy * t + py))
        image = canvas[oy : oy + plan.height, ox : ox + plan.width].copy()
        for d in plan.distractors:
            if d.appear <= f < d.vanish:
                cx, cy = distractor_position(d, f, plan.fps, plan.height, plan.width)
                draw_shape(image, d.shape, cx, cy, d.size / 2, 0.0, d.color)
        for a in plan.actions:
            if a.appear <= f < a.vanish:
                cx, cy, scale, angle = action_pose(a, f, plan.fps, plan.height, plan.width)
                draw_shape(image, a.shape, cx, cy, a.size / 2 * scale, angle, a.color, outline)
        yield image


# ----------------------------------------------------------------------------------------------- files
def write_mp4(path: str | Path, frames: Iterator[np.ndarray], fps: float, crf: int = 20) -> int:
    """Encode uint8 RGB frames as H.264 mp4 (written to a temporary name, renamed when whole); returns count."""
    path = Path(path)
    count = 0
    with atomic_path(path, keep_suffix=True) as tmp, av.open(str(tmp), "w") as container:
        stream = None
        for image in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "superfast"}
                stream.codec_context.thread_count = 1  # one thread: deterministic and pool-friendly
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    return count


def annotations_of(plans: list[VideoPlan], classes: tuple[str, ...]) -> AnnotationSet:
    videos = {
        p.id: Video(
            p.id,
            p.subset,
            duration=p.frames / p.fps,
            fps=p.fps,
            annotations=[Segment(a.start / p.fps, a.end / p.fps, a.label) for a in p.actions],
        )
        for p in plans
    }
    return AnnotationSet(videos, ClassMap(tuple(classes)), source="talmts synth")


def _write_one(plan: VideoPlan, out: Path, crf: int) -> str:
    write_mp4(out / "videos" / f"{plan.id}.mp4", render_frames(plan), plan.fps, crf)
    return plan.id


def generate_dataset(
    out_dir: str | Path, cfg: SynthConfig | None = None, workers: int = 1, progress: bool = False
) -> AnnotationSet:
    """Write OUT/videos/*.mp4, OUT/annotations.json (ActivityNet layout) and OUT/synth.json (the config; default
    :class:`SynthConfig`)."""
    from talmts.progress import progress_bar

    cfg = SynthConfig() if cfg is None else cfg
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    plans = [plan_video(cfg, i) for i in range(cfg.videos)]
    bar = progress_bar(total=len(plans), unit="video", desc="synth", disable=not progress)
    if workers <= 1:
        for p in plans:
            _write_one(p, out, cfg.crf)
            bar.update(1)
    else:
        from talmts.processes import stop_workers, worker_pool

        pool = worker_pool(workers)  # its workers end with this process, however it ends
        try:
            for _ in pool.map(_write_one, plans, [out] * len(plans), [cfg.crf] * len(plans)):
                bar.update(1)
        except BaseException:
            stop_workers(pool, grace=0)  # a half-written video is a temporary file, never the final one
            raise
        pool.shutdown()
    bar.close()
    annotations = annotations_of(plans, cfg.classes)
    write_ground_truth(annotations, out / "annotations.json")
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    atomic_write_json(out / "synth.json", config)
    return annotations

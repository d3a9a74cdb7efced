"""Full TAL-MTS inference on the CPU with the backbone levers on and off, interleaved in one run.

Variants: the plain eval model, BatchNorm folded, BatchNorm folded + fused 1x1x1 Inception convolutions. Same seeded
weights and clip for all; each pass of each variant is timed in turn (so load from other processes hits all of
them), median per variant; the fp32 matmul rate is measured in the same run, before and after, and the load
average is printed with the figures.

    python bench/bench_cpu_levers.py --repeats 3                  # THUMOS14 RGB config, one 256x96x96 clip
    python bench/bench_cpu_levers.py --config demo --repeats 2 data.clip_frames=32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from talmts.config import load_config, resolve_config_path
from talmts.engine.commands.bench.network import compare_scores, count_flops, matmul_peak_tflops, prepare_model
from talmts.models.levers import EXACT, INFERENCE, Levers

VARIANTS = {
    "plain": EXACT,
    "fold_bn": INFERENCE,
    "fold_bn+fuse_pointwise": Levers(fuse_pointwise=True),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="thumos14_rgb")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(resolve_config_path(args.config), ["model.backbone.weights=null", *args.overrides])
    cpu = torch.device("cpu")
    load_before = os.getloadavg()
    peak_before = matmul_peak_tflops(cpu, torch.float32)

    t, s = cfg.data.clip_frames, cfg.data.frame_size
    clip = torch.rand(args.batch, 3, t, s, s, generator=torch.Generator().manual_seed(0)) * 2 - 1
    models = {name: prepare_model(cfg, 20, 3, cpu, lev)[0] for name, lev in VARIANTS.items()}
    gflop = count_flops(models["plain"], clip[:1]) / 1e9
    outputs = {}
    with torch.inference_mode():
        for name, model in models.items():  # warm-up, and the outputs compared below
            outputs[name] = model(clip)
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.repeats):
            for name, model in models.items():
                t0 = time.perf_counter()
                model(clip)
                times[name].append(time.perf_counter() - t0)
    peak = max(peak_before, matmul_peak_tflops(cpu, torch.float32))
    load_after = os.getloadavg()

    base = statistics.median(times["plain"])
    print(f"{torch.get_num_threads()} threads, batch {args.batch} x {t} x {s}x{s}, {gflop:.1f} GFLOP/clip")
    print(
        f"fp32 matmul peak {peak * 1e3:.1f} GFLOP/s; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    for name, ts in times.items():
        sec = statistics.median(ts)
        rate = gflop * args.batch / sec  # GFLOP/s
        agree = compare_scores(outputs["plain"], outputs[name])
        row = {
            "variant": name,
            "median_s": sec,
            "times_s": ts,
            "frames_per_s": args.batch * t / sec,
            "gflop_per_s": rate,
            "peak_fraction": rate / (peak * 1e3),
            "speedup_vs_plain": base / sec,
            "max_score_diff": agree["max_score_diff"],
            "load_avg_1min": [load_before[0], load_after[0]],
        }
        print(
            f"{name:24s} {sec:7.3f} s  {row['frames_per_s']:6.1f} frames/s  {rate:5.1f} GFLOP/s "
            f"({row['peak_fraction'] * 100:4.1f} % of matmul)  x{row['speedup_vs_plain']:.3f} vs plain  "
            f"dscore {agree['max_score_diff']:.1e}"
        )
        print(json.dumps(row))


if __name__ == "__main__":
    main()

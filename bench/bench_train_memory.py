"""Peak memory (RSS) and time of one CPU training step for a config: forward, the trainer's losses, backward, Adam.

    python bench/bench_train_memory.py --config demo                   # the demo network, its batch of 4
    python bench/bench_train_memory.py --config thumos14_rgb --steps 2  # full size: 256x96x96, I3D width 1, batch 1

Random clips and two ground-truth segments per clip (memory does not depend on the values); the backbone weights
are not loaded (same shapes). Peak RSS is the process's high-water mark (``ru_maxrss``), printed after the model
is built and after the steps; the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import torch

from talmts.config import MODALITY_CHANNELS, load_config, resolve_config_path
from talmts.engine.training.loop import per_sample_losses
from talmts.models import build_detector


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="demo")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(resolve_config_path(args.config), ["model.backbone.weights=null", *args.overrides])
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    in_channels = MODALITY_CHANNELS[cfg.data.modality]
    model = build_detector(cfg, 3, in_channels).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    b, t, s = cfg.train.batch_size, cfg.data.clip_frames, cfg.data.frame_size
    clips = torch.rand(b, in_channels, t, s, s) * 2 - 1
    targets = [torch.tensor([[t * 0.1, t * 0.45, 1.0], [t * 0.6, t * 0.8, 2.0]]) for _ in range(b)]
    built_mb = peak_rss_mb()

    def step() -> None:
        losses = per_sample_losses(model(clips), targets, cfg.loss)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()

    step()  # warm-up; Adam's state is allocated here
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    row = {
        "config": args.config,
        "overrides": args.overrides,
        "threads": args.threads,
        "batch": b,
        "frames": t,
        "size": s,
        "width": cfg.model.backbone.width,
        "activation_checkpointing": cfg.model.backbone.checkpoint,
        "rss_after_build_mb": built_mb,
        "peak_rss_mb": peak_rss_mb(),
        "median_s_per_step": statistics.median(times),
        "times_s": times,
        "load_avg_1min": [load_before, os.getloadavg()[0]],
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()

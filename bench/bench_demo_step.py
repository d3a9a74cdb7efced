"""Time one training step of the demo network on the CPU: `python bench/bench_demo_step.py THREADS [overrides]`.

Batch, clip length and frame size come from configs/demo.yaml (overrides as `key=value`); random clips, real losses
(per-clip normalised, as the trainer), an Adam step. Prints the median and the minimum of 10 steps after 3 warm-up
steps.
"""

from __future__ import annotations

import sys
import time

import torch

from talmts.config import load_config, resolve_config_path
from talmts.engine.training.loop import per_sample_losses
from talmts.models import build_detector


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    cfg = load_config(resolve_config_path("demo"), sys.argv[2:])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_detector(cfg, 3, 3).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    b, t, s = cfg.train.batch_size, cfg.data.clip_frames, cfg.data.frame_size
    clips = torch.rand(b, 3, t, s, s) * 2 - 1
    targets = [torch.tensor([[5.0, 30.0, 1.0], [40.0, 50.0, 2.0]]) for _ in range(b)]

    def step() -> None:
        losses = per_sample_losses(model(clips), targets, cfg.loss)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(10):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    print(
        f"threads={threads} batch={b} T={t} size={s}: median {times[5] * 1e3:.0f} ms/step, min {times[0] * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()

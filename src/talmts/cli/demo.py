"""``talmts demo [--out DIR] [--json] [--quick]``: the main job on the embedded synthetic dataset.

Generates the dataset, prepares frames and flow, trains the RGB and flow streams, evaluates the fused model on
the test split, runs detect on one test video and writes OUT/report.md. The mAP table is printed last; with
``--json`` the last line is {"tiou": [...], "mAP": [...], "average_mAP": x, "seconds": s}.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="config overrides for both streams, e.g. train.epochs=2")
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON line, last")
    parser.add_argument("--quick", action="store_true", help="a tiny run through every stage (what CI runs)")
    parser.add_argument("--videos", type=int, default=None, help="synthetic videos to generate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="processes for synth and prepare (default 2)")
    parser.add_argument(
        "--sequential", action="store_true", help="train the streams one after the other (default: side by side)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from talmts.engine.commands.demo import DemoSettings, run_demo

    settings = DemoSettings(
        out=Path(args.out),
        quick=args.quick,
        workers=args.workers,
        progress=not args.quiet,
        parallel=not args.sequential,
        seed=args.seed,
        overrides=list(args.overrides),
    )
    if args.videos is not None:
        settings.videos = args.videos
    res = run_demo(settings, log=lambda m: print(m, file=sys.stderr if args.json else sys.stdout, flush=True))
    print(f"report: {res.report}")
    print(res.table)
    if args.json:
        m = res.metrics
        keys = ("tiou", "mAP", "average_mAP", "seconds")
        print(json.dumps({k: m[k] for k in keys}))
    return 0

"""``talmts dataset-stats CONFIG --annotations DIR``: clip counts of a config's protocol from annotation files alone
(what is read and how: :mod:`talmts.engine.commands.dataset_stats`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a config file or the name of a bundled config (e.g. thumos14_rgb)")
    parser.add_argument(
        "--annotations",
        default=None,
        help="a folder of annotation files (see talmts.engine.commands.dataset_stats) or a file (default: data.annotations)",
    )
    parser.add_argument(
        "--video-info",
        default=None,
        help="video_info csv giving frame counts (default: the *video_info*.csv files next to the annotations, "
        "else data.root/video_info.csv)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.train_stride=64")


def run(args: argparse.Namespace) -> int:
    from talmts.config import load_config, resolve_config_path
    from talmts.engine.commands.dataset_stats import dataset_stats

    cfg = load_config(resolve_config_path(args.config), args.overrides)
    from talmts.errors import InputError

    annotations = args.annotations or cfg.data.annotations
    if not annotations:
        raise InputError("no annotations: pass --annotations FILE_OR_DIR or set data.annotations in the config")
    video_info = Path(args.video_info) if args.video_info else None
    stats = dataset_stats(cfg, Path(annotations), video_info)
    if args.json:
        print(json.dumps(stats))
    else:
        width = max(len(k) for k in stats)
        for key, value in stats.items():
            print(f"{key:<{width}}  {json.dumps(value) if isinstance(value, dict) else value}")
    return 0

"""``talmts train CONFIG [key=value ...]``: train one stream (RGB or flow) as the config says.

Runs as one process, or as many under torchrun: ``torchrun --nproc_per_node 4 -m talmts train CONFIG``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML config file, or the name of a bundled one (e.g. thumos14_rgb)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=5 model.fsa.patch=48")
    parser.add_argument(
        "--resume", metavar="CKPT", help="continue exactly from a checkpoint (or a run folder: its latest epoch)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from talmts.config import load_config, resolve_config_path
    from talmts.engine.train import train

    cfg = load_config(resolve_config_path(args.config), args.overrides)
    result = train(cfg, resume=args.resume, progress=not args.quiet)
    if result.rank != 0:  # under torchrun, one process reports
        return 0
    if result.history:
        last = result.history[-1]
        print(
            f"trained {result.steps} steps in {result.seconds:.0f} s; last loss {last['total']:.4f}; "
            f"checkpoints, losses and curves in {result.out_dir}"
        )
    for v in result.validation[-1:]:
        print(f"held-out ({cfg.data.val_subset}) average mAP after epoch {v['epoch']}: {v['average_mAP']:.4f}")
    return 0

"""``talmts prepare-merge OUT_DIR``: complete a prepare run split with ``--shard K/N`` (see data/shards.py)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="the folder every `talmts prepare --shard K/N` wrote into")


def run(args: argparse.Namespace) -> int:
    from talmts.data.prepare import merge_shards
    from talmts.data.record import PreparationMismatch

    try:
        failed = merge_shards(args.out_dir)
    except (FileNotFoundError, PreparationMismatch) as e:
        print(f"talmts prepare-merge: {e}", file=sys.stderr)
        return 2
    for video, reason in sorted(failed.items()):
        print(f"  FAILED {video}: {reason}")
    print(f"merged: video_info.csv rebuilt in {args.out_dir}; {len(failed)} video(s) failed in the shards")
    return 1 if failed else 0

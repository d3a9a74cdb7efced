"""``talmts view DETECTIONS --ground-truth GT``: a static results site (index, a page per video, DETAD's diagnosis)
that opens from disk."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("detections", help="detections in the ActivityNet results layout (talmts eval/detect write it)")
    parser.add_argument("--ground-truth", required=True, help="ground truth (any layout `talmts evaluate` reads)")
    parser.add_argument("--videos", help="folder of the videos (file name = video id): a player on each video page")
    parser.add_argument("--out", default="view", help="output folder (default: view)")
    parser.add_argument("--tiou", type=float, default=0.5, help="tIoU threshold of the counts and the diagnosis (0.5)")
    parser.add_argument(
        "--subset",
        help="subset of the ground truth (default: the subsets the detection file's videos belong to, else all videos)",
    )
    parser.add_argument(
        "--bins", choices=["auto", "anet", "thumos"], default="auto", help="DETAD's sensitivity bins (auto: by length)"
    )
    parser.add_argument("--min-score", type=float, default=0.1, help="the score slider's starting value (0.1)")
    parser.add_argument("--title", default="talmts view", help="the site's title")


def run(args: argparse.Namespace) -> int:
    from talmts.engine.site import view_files

    res = view_files(
        args.detections,
        args.ground_truth,
        args.out,
        videos_dir=args.videos,
        tiou=args.tiou,
        subset=args.subset,
        bins=args.bins,
        min_score=args.min_score,
        title=args.title,
    )
    d = res.diagnosis
    print(f"mAP at tIoU {args.tiou:g}: {100 * d.mAP[0]:.1f} % on {res.scope} ({res.scored_videos} videos)")
    print(f"wrote {res.index} (open it in a browser), {res.diagnosis_page} and {len(res.videos)} video pages")
    return 0

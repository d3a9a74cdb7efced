"""``talmts prepare VIDEOS_DIR OUT_DIR``: raw videos -> 10 fps frames, optical flow and video_info.csv."""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos_dir", help="folder with the video files (video id = file name without extension)")
    parser.add_argument("out_dir", help="output folder: frames/, flow/, meta/, video_info.csv")
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help="sample rate (default 10; with --max-frames the default is each video's own rate, as AFSD)",
    )
    parser.add_argument("--size", type=int, default=112, help="frames are resized to SIZE x SIZE (default 112)")
    parser.add_argument(
        "--flow",
        choices=["tvl1", "tvl1-torch", "dis", "none"],
        default=None,
        help="optical flow method (default: the method OUT_DIR already holds, else tvl1-torch, TV-L1 in PyTorch;"
        " tvl1 is OpenCV's)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="cuda, cuda:N or cpu: compute tvl1-torch flow there in large batches while the workers decode",
    )
    parser.add_argument("--flow-batch", type=int, default=None, help="frame pairs per flow batch with --device")
    parser.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="prepare only shard K (0-based) of N, e.g. a job array's task id; then `talmts prepare-merge OUT_DIR`",
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (default: all cores)"
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="ActivityNet dynamic fps: at most N frames per video, fps' = fps * min(N / frame_count, 1)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="a video that decodes far shorter than its container declares fails (default: kept, with a warning)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from talmts.data.prepare import PrepareOptions, prepare_dataset
    from talmts.data.record import flow_to_resume
    from talmts.data.shards import Shard

    fps = args.fps if args.fps is not None else (None if args.max_frames else 10.0)
    flow = args.flow or flow_to_resume(args.out_dir)
    options = PrepareOptions(fps=fps, size=args.size, flow=flow, max_frames=args.max_frames)
    try:
        shard = Shard.parse(args.shard) if args.shard else None
        summary = prepare_dataset(
            args.videos_dir,
            args.out_dir,
            options,
            workers=args.workers,
            progress=not args.quiet,
            device=args.device,
            flow_batch=args.flow_batch,
            shard=shard,
            strict=args.strict,
        )
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP (talmts.processes.Terminated: 128 + the signal)
        print("talmts prepare: interrupted; run the same command again to resume", file=sys.stderr)
        return 128 + getattr(e, "signum", 2)
    print(summary.report())
    return 0 if summary.ok else 1

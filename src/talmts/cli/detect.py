"""``talmts detect VIDEO --checkpoint CKPT``: actions in one video as JSON, CSV, SRT, a timeline and an HTML page.

The checkpoint carries its config, class names and how its training data was sampled, so nothing else is
needed. Frames are decoded, sampled and (for a flow stream) turned into flow on the fly, window by window.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="a video file (any format FFmpeg reads)")
    parser.add_argument("overrides", nargs="*", help="inference overrides, e.g. infer.conf_thresh=0.05")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `talmts train`")
    parser.add_argument("--flow-checkpoint", help="the flow stream's checkpoint: the two streams are fused")
    parser.add_argument("--out", help="output folder (default: detect-<video name>)")
    parser.add_argument("--annotations", help="ground truth (any layout talmts reads) drawn beside the detections")
    parser.add_argument(
        "--video-scores",
        help="video-level class scores (CUHK layout, as `talmts eval --video-scores`) that label a class-agnostic "
        "checkpoint's detections (ActivityNet)",
    )
    parser.add_argument(
        "--video-id", help="the video's id, in the --video-scores file and the outputs (default: the file's name)"
    )
    parser.add_argument("--min-score", type=float, default=0.1, help="detections drawn on the timeline (0.1)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from talmts.config import ConfigError
    from talmts.data.video import VideoDecodeError
    from talmts.engine.detect import run_detect

    checkpoints = [args.checkpoint] + ([args.flow_checkpoint] if args.flow_checkpoint else [])
    out = args.out or f"detect-{Path(args.video).stem}"
    try:
        res = run_detect(
            args.video,
            checkpoints,
            out,
            annotations=args.annotations,
            device=args.device,
            overrides=args.overrides,
            min_score=args.min_score,
            video_scores=args.video_scores,
            video_id=args.video_id,
        )
    except (VideoDecodeError, FileNotFoundError, ValueError, ConfigError) as e:
        print(f"talmts detect: {e}", file=sys.stderr)
        return 2
    top = sorted(res.detections, key=lambda d: -d.score)[:10]
    print(f"{res.video}: {len(res.detections)} detections in {res.seconds:.1f} s; best:")
    for d in top:
        print(f"  {d.label:<20} {d.start:8.2f} - {d.end:8.2f} s  score {d.score:.3f}")
    print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0

"""``talmts detect VIDEO --checkpoint CKPT``: actions in one video (or every video of a folder) as JSON, CSV,
subtitles, a timeline and an HTML page.

The checkpoint carries its config, class names and how its training data was sampled, so nothing else is
needed; ``--model DIR`` (a folder written by ``talmts export``) runs the exported graphs instead, through the same
predictor. Frames are decoded, sampled and (for a flow stream) turned into flow on the fly, window by window; a TV-L1
flow stream's flow is computed on the chosen device (tvl1-torch, batched).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="a video file (any format FFmpeg reads), or a folder: each video in it")
    parser.add_argument("overrides", nargs="*", help="inference overrides, e.g. infer.conf_thresh=0.05")
    parser.add_argument("--checkpoint", help="a checkpoint written by `talmts train`")
    parser.add_argument(
        "--model", help="instead of --checkpoint: a folder written by `talmts export` (ONNX Runtime or TorchScript)"
    )
    parser.add_argument("--flow-checkpoint", help="the flow stream's checkpoint: the two streams are fused")
    parser.add_argument("--out", help="output folder (default: detect-<video or folder name>)")
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
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (TV-L1 flow runs there too: tvl1-torch)"
    )
    parser.add_argument("--fast", action="store_true", help="CUDA: the fast inference path (as `talmts eval --fast`)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (folder)")


def run(args: argparse.Namespace) -> int:
    from talmts.engine.inference.detect import run_detect
    from talmts.engine.inference.detect_folder import FolderOutputs

    checkpoints = [args.checkpoint] + ([args.flow_checkpoint] if args.flow_checkpoint else [])
    res = run_detect(
        args.video, checkpoints, args.out, model=args.model, annotations=args.annotations, device=args.device,
        overrides=args.overrides, min_score=args.min_score, video_scores=args.video_scores, video_id=args.video_id,
        fast=args.fast, progress=not args.quiet,
    )  # fmt: skip
    if isinstance(res, FolderOutputs):
        for r in res.results:
            kept = sum(d.score >= args.min_score for d in r.detections)
            print(f"  {r.video:<30} {kept:4d} detections >= {args.min_score:g}  ({r.seconds:.1f} s)")
        for vid, why in res.failed.items():
            print(f"talmts detect: {vid}: {why}", file=sys.stderr)
        print(f"{len(res.results)} videos; wrote " + ", ".join(str(p) for p in res.files.values()))
        return 1 if res.failed else 0
    print(f"{res.video}: {len(res.detections)} detections in {res.seconds:.1f} s; best:")
    for d in sorted(res.detections, key=lambda d: -d.score)[:10]:
        print(f"  {d.label:<20} {d.start:8.2f} - {d.end:8.2f} s  score {d.score:.3f}")
    print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0

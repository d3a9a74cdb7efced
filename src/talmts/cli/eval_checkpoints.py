"""``talmts eval CONFIG --checkpoint CKPT [--flow-checkpoint CKPT2]``: sliding-window inference on the test
split, Soft-NMS, a results JSON in the ActivityNet layout and the paper's table (single stream or fused)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config naming the data (root, annotations, test split) and inference")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. infer.nms_sigma=0.5")
    parser.add_argument("--checkpoint", help="checkpoint of the first stream (RGB or flow)")
    parser.add_argument(
        "--model", help="instead of --checkpoint: a folder written by `talmts export` (ONNX Runtime or TorchScript)"
    )
    parser.add_argument("--flow-checkpoint", help="checkpoint of the second stream: outputs are averaged (fusion)")
    parser.add_argument(
        "--config-flow", help="config of the second stream's data (default: the same data.root as CONFIG)"
    )
    parser.add_argument("--subset", help="split to evaluate (default data.test_subset)")
    parser.add_argument(
        "--video-scores",
        metavar="FILE",
        help='video-level classifier scores {"results": {video: [scores]}, "class": [names]} (e.g. CUHK\'s '
        "cuhk_val_simp_share.json) that label a class-agnostic detector's proposals (infer.video_scores)",
    )
    parser.add_argument("--per-class", action="store_true", help="also print the AP of every class")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON line, last")
    parser.add_argument("--out", help="output folder (default: <checkpoint folder>/eval-<subset>)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="CUDA: the fastest measured levers (bf16, channels-last, I3D rewrites, torch.compile, CUDA graphs; "
        "docs/PERFORMANCE.md); scores within 2e-3 on the THUMOS14 network; compiles for about a minute first; "
        "a larger infer.batch_size, e.g. 16, fills the GPU better",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from talmts.config import load_config, resolve_config_path
    from talmts.engine.inference.eval_checkpoints import eval_checkpoints
    from talmts.evaluation import format_per_class, format_table

    cfg = load_config(resolve_config_path(args.config), args.overrides)
    if args.video_scores:
        cfg.infer.video_scores = args.video_scores
    flow_root = load_config(resolve_config_path(args.config_flow)).data.root if args.config_flow else None
    done = eval_checkpoints(
        cfg, args.checkpoint, args.flow_checkpoint, model=args.model, flow_root=flow_root, subset=args.subset,
        out=args.out, device=args.device, fast=args.fast, progress=not args.quiet,
    )  # fmt: skip
    result = done.result
    print(f"{done.streams} on {done.subset!r} ({done.videos} videos); results in {done.out}")
    if args.per_class:
        print(format_per_class(result))
    print(f"{done.metric} (%):")
    print(format_table(result, cfg.eval.table))
    if args.json:
        print(json.dumps({"tiou": result.tiou, "mAP": result.mAP, "average_mAP": result.average_mAP}))
    return 0

"""``talmts eval CONFIG --checkpoint CKPT [--flow-checkpoint CKPT2]``: sliding-window inference on the test
split, Soft-NMS, a results JSON in the ActivityNet layout and the paper's table (single stream or fused)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from talmts.config import Config
    from talmts.evaluation import EvalResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config naming the data (root, annotations, test split) and inference")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. infer.nms_sigma=0.5")
    parser.add_argument("--checkpoint", required=True, help="checkpoint of the first stream (RGB or flow)")
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

    cfg = load_config(resolve_config_path(args.config), args.overrides)
    if args.video_scores:
        cfg.infer.video_scores = args.video_scores
    flow_cfg = load_config(resolve_config_path(args.config_flow)) if args.config_flow else None
    return evaluate(cfg, args, flow_cfg)


def evaluate(cfg: Config, args: argparse.Namespace, flow_cfg: Config | None = None) -> int:
    from talmts.engine.distributed import resolve_device
    from talmts.engine.inference.eval_checkpoints import describe_streams, evaluate_streams, metric_name
    from talmts.engine.inference.predictor import load_stream, use_fast_path
    from talmts.evaluation import format_table
    from talmts.fileio import atomic_write_json
    from talmts.formats import write_detections

    device = resolve_device(args.device)
    streams = [load_stream(args.checkpoint, device)]
    if args.flow_checkpoint:
        streams.append(load_stream(args.flow_checkpoint, device))
        if flow_cfg is not None:
            streams[1].root = flow_cfg.data.root
    if args.fast and (why_not := use_fast_path(streams, cfg.infer.batch_size, device)):
        print(f"talmts eval: {why_not}", file=sys.stderr)
    subset = args.subset or cfg.data.test_subset
    result, detections = evaluate_streams(streams, cfg, subset, progress=not args.quiet)
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / f"eval-{subset}"
    out.mkdir(parents=True, exist_ok=True)
    write_detections(detections, out / "detections.json")
    metric, caution = metric_name(cfg)
    metrics = {**result.to_json(), "subset": subset, "streams": describe_streams(streams), "metric": metric}
    if cfg.infer.video_scores:
        metrics["video_scores"] = str(cfg.infer.video_scores)
    atomic_write_json(out / "metrics.json", metrics)
    print(f"{describe_streams(streams)} on {subset!r} ({len(detections)} videos); results in {out}")
    if args.per_class:
        print(per_class_table(result))
    if caution:
        print(f"talmts eval: warning: {caution}", file=sys.stderr)
    print(f"{metric} (%):")
    print(format_table(result, cfg.eval.table))
    if args.json:
        print(json.dumps({"tiou": result.tiou, "mAP": result.mAP, "average_mAP": result.average_mAP}))
    return 0


def per_class_table(result: EvalResult) -> str:
    head = "class".ljust(24) + " ".join(f"{t:>6.2f}" for t in result.tiou)
    rows = [head]
    for name, aps in sorted(result.per_class.items()):
        rows.append(name[:23].ljust(24) + " ".join(f"{100 * a:6.1f}" for a in aps))
    return "\n".join(rows)

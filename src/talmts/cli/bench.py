"""``talmts bench``: network throughput (frames/s), FLOPs, achieved fraction of the device's peak, peak memory;
decoding + Soft-NMS timed separately; optionally one training step."""

from __future__ import annotations

import argparse
import json

from talmts.engine.commands.bench.options import FAST_FLAGS, LEVER_SWITCHES, TRAIN_VARIANTS
from talmts.models.lever_settings import COMPILE_BACKENDS, COMPILE_MODES, DTYPES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="config file or bundled name (default: the paper's THUMOS14 RGB)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument(
        "--batch", nargs="+", default=["1"], help="batch sizes (key=value items after them are config overrides)"
    )
    p.add_argument("--dtype", nargs="+", choices=DTYPES, default=["fp32"])
    p.add_argument("--channels-last", action="store_true", help="channels-last 3D memory format")
    p.add_argument("--fold-bn", action="store_true", help="fold the frozen BatchNorm into the I3D convolutions")
    p.add_argument(
        "--fuse-pointwise",
        action="store_true",
        help="fuse each Inception block's three 1x1x1 convolutions into one (implies --fold-bn)",
    )
    p.add_argument("--stem-s2d", action="store_true", help="I3D's 7x7x7 stem conv as space-to-depth + a 4x4x4 conv")
    p.add_argument("--pointwise-matmul", action="store_true", help="every 1x1x1 convolution as a matmul")
    p.add_argument(
        "--fused-pools", action="store_true", help="max pools as slices + maxima (one kernel each when compiled)"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument(
        "--fast",
        action="store_true",
        help="the levers of `talmts eval --fast` (the fastest measured GPU combination): --dtype bf16 "
        + " ".join("--" + f.replace("_", "-") for f in FAST_FLAGS),
    )
    p.add_argument("--compile-mode", choices=COMPILE_MODES, default="default", help="torch.compile mode")
    p.add_argument(
        "--compile-backend",
        choices=COMPILE_BACKENDS,
        default="inductor",
        help="eager / aot_eager only trace the graph (quick dry runs of a bench script; the mode is then ignored)",
    )
    p.add_argument(
        "--compile-cache",
        default=None,
        metavar="FILE",
        help="load torch.compile artifacts from FILE if it exists, save them there at the end (a later process "
        "with the same torch and device then skips the compile)",
    )
    p.add_argument("--backbone-only", action="store_true", help="time the I3D backbone alone, as the detector runs it")
    p.add_argument("--cuda-graph", action="store_true", help="capture the forward pass in a CUDA graph")
    p.add_argument("--streams", choices=["rgb", "flow", "both"], default="rgb")
    p.add_argument(
        "--preset",
        choices=["talmts", "afsd"],
        default="talmts",
        help="afsd: AFSD's network and protocol (fp32, batch 1, 2 warm-up + 20 timed passes, mean)",
    )
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (saves one pass)")
    p.add_argument("--postprocess", action="store_true", help="also time decoding + Soft-NMS per THUMOS14 video")
    p.add_argument(
        "--train-step",
        action="store_true",
        help="also time the training step per lever (--train-variants) for TAL-MTS and AFSD (--train-presets), at "
        "each --batch; --iters timed steps after --warmup",
    )
    p.add_argument("--train-only", action="store_true", help="with --train-step: skip the inference measurements")
    p.add_argument(
        "--train-variants",
        nargs="+",
        choices=list(TRAIN_VARIANTS),
        default=list(TRAIN_VARIANTS),
        help="training lever sets, each alone on the plain fp32 step; 'all' = every speed lever together",
    )
    p.add_argument(
        "--train-presets",
        nargs="+",
        choices=["talmts", "afsd"],
        default=["talmts", "afsd"],
        help="networks of the training step: TAL-MTS, and AFSD's (rfp, stt, fsa off)",
    )
    p.add_argument("--check", action="store_true", help="compare detections with the fp32 eager model (same weights)")
    p.add_argument("--json", action="store_true", help="one JSON object per measurement")
    p.add_argument("--save", default=None, help="also append the JSON lines to this file")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.clip_frames=128")


def run(args: argparse.Namespace) -> int:
    from talmts.engine.commands.bench.plan import format_row, plan_bench, run_bench

    plan = plan_bench(
        args.config, args.overrides, args.batch, device=args.device, dtypes=args.dtype,
        switches={name: getattr(args, name) for name in LEVER_SWITCHES}, fast=args.fast, streams=args.streams,
        preset=args.preset, backbone_only=args.backbone_only, warmup=args.warmup, iters=args.iters,
        flops=not args.no_flops, check=args.check, postprocess=args.postprocess,
        train_variants=args.train_variants if args.train_step else [], train_presets=args.train_presets,
        inference=not (args.train_step and args.train_only), compile_cache=args.compile_cache,
    )  # fmt: skip

    def emit(row: dict) -> None:  # each row as soon as it is measured: a step killed by a timeout keeps the rest
        print(json.dumps(row) if args.json else format_row(row), flush=True)
        if args.save:
            with open(args.save, "a") as f:
                f.write(json.dumps(row) + "\n")

    run_bench(plan, emit)
    return 0

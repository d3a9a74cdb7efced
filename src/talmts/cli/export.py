"""``talmts export CHECKPOINT --format onnx|torchscript --out DIR``: one stream's network (or two fused streams'
with ``--flow-checkpoint``) as a deployable graph with a dynamic batch axis, and ``DIR/talmts-model.json``, the
contract a runtime needs (docs/DEPLOY.md). ``talmts detect/eval --model DIR`` run it with ONNX Runtime or
TorchScript through the same predictor as a checkpoint."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by `talmts train` (the RGB stream of a fused pair)")
    parser.add_argument("--flow-checkpoint", help="the flow stream's checkpoint: both streams are exported, fused")
    parser.add_argument("--format", default="onnx", choices=["onnx", "torchscript"], help="graph format (onnx)")
    parser.add_argument("--out", required=True, help="a new (or empty) folder for the graphs and the JSON")
    parser.add_argument(
        "--quantize", action="store_true", help="ONNX: int8 dynamic quantisation of the MatMul/Gemm weights (CPU)"
    )


def run(args: argparse.Namespace) -> int:
    from talmts.engine.inference.export import export_model

    res = export_model(
        args.checkpoint, args.out, fmt=args.format, flow_checkpoint=args.flow_checkpoint, quantize=args.quantize
    )
    for stream, diff in res.max_diff.items():
        print(f"{stream}: the exported graph matches PyTorch to {diff:.1e}")
    print("wrote " + ", ".join(str(p) for p in res.files))
    return 0

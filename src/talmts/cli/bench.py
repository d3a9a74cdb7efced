"""``talmts bench``: network throughput (frames/s), FLOPs, achieved fraction of the device's peak, peak memory;
decoding + Soft-NMS timed separately; optionally one training step."""

from __future__ import annotations

import argparse
import json

import torch

from talmts.config import load_config, resolve_config_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="config file or bundled name (default: the paper's THUMOS14 RGB)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--batch", type=int, nargs="+", default=[1])
    p.add_argument("--dtype", nargs="+", choices=["fp32", "bf16"], default=["fp32"])
    p.add_argument("--channels-last", action="store_true", help="channels-last 3D memory format")
    p.add_argument("--fold-bn", action="store_true", help="fold the frozen BatchNorm into the I3D convolutions")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--compile-mode", default="default")
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
    p.add_argument("--train-step", action="store_true", help="also time one training step")
    p.add_argument("--check", action="store_true", help="compare detections with the fp32 eager model (same weights)")
    p.add_argument("--json", action="store_true", help="one JSON object per measurement")
    p.add_argument("--save", default=None, help="also append the JSON lines to this file")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.clip_frames=128")


def run(args: argparse.Namespace) -> int:
    from talmts.engine.bench import Levers, matmul_peak_tflops, measure_network, measure_postprocess, measure_train_step

    path = resolve_config_path(args.config or "thumos14_rgb")
    overrides = ["model.backbone.weights=null", *args.overrides]  # speed does not depend on the weights' values
    if args.preset == "afsd":
        overrides += ["model.rfp.enabled=false", "model.stt.enabled=false", "model.fsa.enabled=false"]
    cfg = load_config(path, overrides)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    warmup, iters, statistic = args.warmup, args.iters, "median"
    if args.preset == "afsd":
        warmup, iters, statistic = 2, 20, "mean"

    peaks = {}
    results = []
    streams = {"rgb": [3], "flow": [2], "both": [3, 2]}[args.streams]
    for dtype in args.dtype:
        torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
        if not args.no_flops and dtype not in peaks:
            peaks[dtype] = matmul_peak_tflops(device, torch_dtype)
        levers = Levers(dtype, args.channels_last, args.fold_bn, args.compile, args.compile_mode, args.cuda_graph)
        for batch in args.batch:
            per_stream = [
                measure_network(
                    cfg,
                    batch=batch,
                    device=device,
                    levers=levers,
                    in_channels=c,
                    warmup=warmup,
                    iters=iters,
                    peak_tflops=peaks.get(dtype),
                    flops=not args.no_flops,
                    statistic=statistic,
                    check_against=_reference(cfg, c, device) if args.check else None,
                )
                for c in streams
            ]
            for c, r in zip(streams, per_stream):
                row = {"stream": "rgb" if c == 3 else "flow", "preset": args.preset, **vars(r)}
                row.pop("times_ms")
                results.append(row)
            if len(per_stream) == 2:  # two streams run one after the other on the same clips
                fps = 1 / sum(1 / r.frames_per_s for r in per_stream)
                results.append({"stream": "both", "preset": args.preset, "batch": batch, "frames_per_s": fps})
    if args.postprocess:
        results.append({"postprocess": measure_postprocess(cfg)})
    if args.train_step:
        results.append({"train_step": measure_train_step(cfg, device=device)})
    if peaks:
        results.append({"peak_tflops": peaks, "device": str(device)})
    for row in results:
        print(json.dumps(row) if args.json else _line(row))
    if args.save:
        with open(args.save, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in results)
    return 0


def _reference(cfg, in_channels: int, device: torch.device):  # noqa: ANN001, ANN202
    """The fp32 eager model with the same (seeded) weights as the measured one."""
    from talmts.engine.bench import Levers, prepare_model

    model, _ = prepare_model(cfg, 20, in_channels, device, Levers())

    def run(clip: torch.Tensor):  # noqa: ANN202
        with torch.inference_mode():
            return model(clip.contiguous().float())

    return run


def _line(row: dict) -> str:
    if "frames_per_s" in row and "median_ms" in row:
        lev = row["levers"]
        on = [k for k in ("channels_last", "fold_bn", "compile", "cuda_graph") if lev.get(k)]
        frac = f"  {row['peak_fraction'] * 100:.1f}% of peak" if row.get("peak_fraction") else ""
        mem = f"  peak {row['peak_mem_mb']:.0f} MB" if row.get("peak_mem_mb") else ""
        gf = f"  {row['gflop_per_clip']:.1f} GFLOP/clip" if row.get("gflop_per_clip") else ""
        agree = row.get("agreement")
        chk = f"  [vs fp32: dscore {agree['max_score_diff']:.1e}, top-20 {agree['top_overlap']:.0%}]" if agree else ""
        return (
            f"{row['preset']:7s} {row['stream']:4s} b={row['batch']:<3d} {lev['dtype']} {'+'.join(on) or 'eager'}: "
            f"{row['frames_per_s']:,.0f} frames/s ({row['median_ms']:.2f} ms median){gf}{frac}{mem}{chk}"
        )
    return json.dumps(row)

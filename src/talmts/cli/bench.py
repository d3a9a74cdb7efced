"""``talmts bench``: network throughput (frames/s), FLOPs, achieved fraction of the device's peak, peak memory;
decoding + Soft-NMS timed separately; optionally one training step."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable

import torch

from talmts.config import MODALITY_CHANNELS, Config, load_config, resolve_config_path
from talmts.engine.commands.bench_train import TRAIN_VARIANTS
from talmts.models.levers import COMPILE_BACKENDS, COMPILE_MODES, DTYPES, FAST, LeverRunner, Levers

FAST_FLAGS = tuple(  # the on/off levers of the FAST preset, as `--fast` sets them (its dtype is bf16)
    f.name for f in dataclasses.fields(FAST) if getattr(FAST, f.name) is True
)


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
    from talmts.engine.commands.bench import (
        load_compile_cache,
        matmul_peak_tflops,
        measure_network,
        measure_postprocess,
        save_compile_cache,
    )

    # argparse hands --batch every positional after it: the key=value ones are config overrides
    args.overrides = [*args.overrides, *(b for b in args.batch if "=" in b)]
    try:
        batches = [int(b) for b in args.batch if "=" not in b]
    except ValueError:
        print(f"talmts bench: --batch takes integers (and key=value overrides), got {args.batch}", file=sys.stderr)
        return 2
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

    if args.fast:  # the FAST preset's levers, set as if given
        args.dtype = [FAST.dtype]
        for flag in FAST_FLAGS:
            setattr(args, flag, True)
    part = "backbone" if args.backbone_only else "network"
    try:  # bad combinations fail here, before any measurement
        switches = {f.name: getattr(args, f.name) for f in dataclasses.fields(Levers) if f.name != "dtype"}
        levers_of = {dtype: Levers(dtype=dtype, **switches) for dtype in args.dtype}
    except ValueError as err:
        print(f"talmts bench: {err}", file=sys.stderr)
        return 2
    if args.compile_cache and args.compile:
        print(f"compile cache {args.compile_cache}: {'loaded' if load_compile_cache(args.compile_cache) else 'none'}")

    peaks = {}

    def emit(row: dict) -> None:  # each row as soon as it is measured: a step killed by a timeout keeps the rest
        print(json.dumps(row) if args.json else _line(row), flush=True)
        if args.save:
            with open(args.save, "a") as f:
                f.write(json.dumps(row) + "\n")

    streams = {"rgb": ["rgb"], "flow": ["flow"], "both": ["rgb", "flow"]}[args.streams]
    for dtype in [] if args.train_step and args.train_only else args.dtype:
        levers = levers_of[dtype]
        if not args.no_flops and dtype not in peaks:
            peaks[dtype] = matmul_peak_tflops(device, levers.torch_dtype)
        for batch in batches:
            per_stream = [
                measure_network(
                    cfg,
                    batch=batch,
                    device=device,
                    levers=levers,
                    in_channels=MODALITY_CHANNELS[m],
                    warmup=warmup,
                    iters=iters,
                    peak_tflops=peaks.get(dtype),
                    flops=not args.no_flops,
                    statistic=statistic,
                    check_against=_reference(cfg, MODALITY_CHANNELS[m], device, part) if args.check else None,
                    part=part,
                )
                for m in streams
            ]
            for m, r in zip(streams, per_stream):
                row = {"stream": m, "preset": args.preset, **vars(r)}
                row.pop("times_ms")
                emit(row)
            if args.compile_cache and args.compile:  # after every compile, in case a later one runs out of time
                save_compile_cache(args.compile_cache)
            if len(per_stream) == 2:  # two streams run one after the other on the same clips
                fps = 1 / sum(1 / r.frames_per_s for r in per_stream)
                emit({"stream": "both", "preset": args.preset, "part": part, "batch": batch, "frames_per_s": fps})
    if args.postprocess:
        emit({"postprocess": measure_postprocess(cfg)})
    if args.train_step:
        _train_steps(args, cfg, device, batches, streams, emit)
    if peaks:
        emit({"peak_tflops": peaks, "device": str(device)})
    if args.compile_cache and args.compile:
        emit({"compile_cache": args.compile_cache, "bytes": save_compile_cache(args.compile_cache)})
    return 0


def _train_steps(
    args: argparse.Namespace,
    cfg: Config,
    device: torch.device,
    batches: list[int],
    streams: list[str],
    emit: Callable[[dict], None],
) -> None:
    """One row per (network, stream, batch, lever set); a lever set that fails is reported as a row, not fatal."""
    from talmts.engine.commands.bench_train import AFSD_MODULES_OFF, failed_variant, measure_train_variant, with_changes

    nets = {"talmts": cfg, "afsd": with_changes(cfg, AFSD_MODULES_OFF)}
    for preset in args.train_presets:
        for m in streams:
            net_cfg = with_changes(nets[preset], {"data.modality": m})
            for batch in batches:
                for variant in args.train_variants:
                    try:
                        row = measure_train_variant(
                            net_cfg, variant, device=device, batch=batch, steps=args.iters, warmup=args.warmup
                        )
                    except Exception as err:  # one lever failing (out of memory, a compile error) keeps the rest
                        row = failed_variant(variant, batch, err)
                    emit({"preset": preset, "stream": m, **row})


def _reference(cfg: Config, in_channels: int, device: torch.device, part: str = "network") -> LeverRunner:
    """The fp32 eager model (or backbone) with the same (seeded) weights as the measured one."""
    from talmts.engine.commands.bench import prepare_model

    return prepare_model(cfg, 20, in_channels, device, Levers(), part)[1]


def _line(row: dict) -> str:
    if "frames_per_s" in row and "median_ms" in row:
        lev = row["levers"]
        keys = ("channels_last", "fold_bn", "fuse_pointwise", "stem_s2d", "pointwise_matmul", "fused_pools")
        on = [k for k in (*keys, "compile", "cuda_graph") if lev.get(k)]
        if lev.get("compile"):
            tag = "compile"
            if lev.get("compile_backend", "inductor") != "inductor":
                tag += f"[{lev['compile_backend']}]"
            if lev.get("compile_mode", "default") != "default":
                tag += f"={lev['compile_mode']}"
            on[on.index("compile")] = tag
        frac = f"  {row['peak_fraction'] * 100:.1f}% of peak" if row.get("peak_fraction") else ""
        mem = f"  peak {row['peak_mem_mb']:.0f} MB" if row.get("peak_mem_mb") else ""
        gf = f"  {row['gflop_per_clip']:.1f} GFLOP/clip" if row.get("gflop_per_clip") else ""
        agree = row.get("agreement")
        chk = ""
        if agree and "max_score_diff" in agree:
            chk = f"  [vs fp32: dscore {agree['max_score_diff']:.1e}, top-20 {agree['top_overlap']:.0%}]"
        elif agree:
            chk = f"  [vs fp32: max relative feature diff {agree['max_rel_feature_diff']:.1e}]"
        return (
            f"{row['preset']:7s} {row['stream']:4s} {row['part']:8s} b={row['batch']:<3d} {lev['dtype']} {'+'.join(on) or 'eager'}: "
            f"{row['frames_per_s']:,.0f} frames/s ({row['median_ms']:.2f} ms median){gf}{frac}{mem}{chk}"
        )
    if "train_step" in row and "clips_per_s" in row:
        mem = f"  peak {row['peak_mem_mb']:,.0f} MB ({row['peak_mem_kind']})" if row.get("peak_mem_mb") else ""
        return (
            f"{row['preset']:7s} {row['stream']:4s} train    b={row['batch']:<3d} {row['train_step']:16s}: "
            f"{row['clips_per_s']:,.2f} clips/s, {row['frames_per_s']:,.0f} frames/s "
            f"({row['seconds_per_step'] * 1e3:.1f} ms/step, first step {row['first_step_s']:.1f} s){mem}"
        )
    return json.dumps(row)

"""Where a batch's time goes on a GPU: per-layer time of the TAL-MTS forward for several lever sets side by side.

Every variant runs bf16 autocast, channels-last 3D and folded BN (the base of docs/PERFORMANCE.md's GPU table),
eager, plus its own rewrites. Each I3D endpoint and the head (RFP, STT, FSA, boundary pooling, heads) is timed
with CUDA events inside one forward pass; medians over ``--iters`` passes. Also prints each layer's GFLOP per
clip and achieved TFLOP/s, and torch.profiler's top operators for the first variant.

    PYTHONPATH=src python3 bench/gpu_layers.py --batch 32 [--variants base fused s2d mm pools]
    PYTHONPATH=src python3 bench/gpu_layers.py --device cpu --config demo --batch 2 data.clip_frames=32   (smoke)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from talmts.config import load_config, resolve_config_path
from talmts.engine.commands.bench.network import prepare_model
from talmts.models.levers import Levers

VARIANTS = {  # name: extra levers on top of bf16 + channels-last + folded BN
    "base": {},
    "fused": {"fuse_pointwise": True},
    "s2d": {"fuse_pointwise": True, "stem_s2d": True},
    "mm": {"fuse_pointwise": True, "stem_s2d": True, "pointwise_matmul": True},
    "pools": {"fuse_pointwise": True, "stem_s2d": True, "pointwise_matmul": True, "fused_pools": True},
}


def layer_calls(model, clip):
    """[(name, fn)] running the network one layer at a time; each fn takes and returns the running state."""
    bb = model.backbone
    last = max(bb.endpoints.index(e) for e in model.endpoints)
    calls = []
    for name in bb.endpoints[: last + 1]:

        def step(state, name=name):
            x, feats = state
            x = getattr(bb, name)(x)
            if name in model.endpoints:
                feats = {**feats, name: x}
            return x, feats

        calls.append((name, step))
    calls.append(("head", lambda state: (model.forward_features(state[1], clip), state[1])))
    return calls


def time_layers(model, clip, device, iters: int) -> dict[str, float]:
    calls = layer_calls(model, clip)
    per: dict[str, list[float]] = {name: [] for name, _ in calls}
    for i in range(iters + 2):
        marks = []
        state = (clip, {})
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            for name, fn in calls:
                if device.type == "cuda":
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    state = fn(state)
                    end.record()
                    marks.append((name, start, end))
                else:
                    t0 = time.perf_counter()
                    state = fn(state)
                    marks.append((name, t0, time.perf_counter()))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:  # two warm-ups: cudnn picks its algorithms
            for name, a, b in marks:
                per[name].append(a.elapsed_time(b) if device.type == "cuda" else (b - a) * 1e3)
    return {name: statistics.median(v) for name, v in per.items()}


def layer_gflops(model, clip) -> dict[str, float]:
    out = {}
    state = (clip[:1], {})
    for name, fn in layer_calls(model, clip[:1]):
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            state = fn(state)
        out[name] = counter.get_total_flops() / 1e9
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="thumos14_rgb")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--top", type=int, default=15, help="rows of torch.profiler's operator table (0: none)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    cfg = load_config(resolve_config_path(args.config), ["model.backbone.weights=null", *args.overrides])
    t, s = cfg.data.clip_frames, cfg.data.frame_size
    clip = (torch.rand(args.batch, 3, t, s, s, device=device) * 2 - 1).contiguous(memory_format=torch.channels_last_3d)

    times, flops = {}, None
    for name in args.variants:
        levers = Levers(dtype="bf16", channels_last=True, fold_bn=True, **VARIANTS[name])
        model, _ = prepare_model(cfg, 20, 3, device, levers)
        if flops is None:
            flops = layer_gflops(model, clip)
        times[name] = time_layers(model, clip, device, args.iters)
        if name == args.variants[0] and args.top and device.type == "cuda":
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                time_layers(model, clip, device, 1)
            print(f"== torch.profiler, variant {name}, batch {args.batch} (3 passes)")
            print(prof.key_averages().table(sort_by="device_time_total", row_limit=args.top))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    names = list(times)
    print(
        f"== per layer, batch {args.batch}, {t}x{s}x{s}, ms per batch (median of {args.iters}); TFLOP/s of {names[0]}"
    )
    print(f"{'layer':18s} {'GFLOP/clip':>10s} " + " ".join(f"{n:>8s}" for n in names) + f" {'TFLOP/s':>8s}")
    for layer in times[names[0]]:
        row = " ".join(f"{times[n][layer]:8.2f}" for n in names)
        rate = flops[layer] * args.batch / times[names[0]][layer] if times[names[0]][layer] else 0.0
        print(f"{layer:18s} {flops[layer]:10.2f} {row} {rate:8.1f}")
    totals = {n: sum(times[n].values()) for n in names}
    print(f"{'total':18s} {sum(flops.values()):10.2f} " + " ".join(f"{totals[n]:8.2f}" for n in names))
    print("frames/s (sum of layers): " + ", ".join(f"{n} {args.batch * t / totals[n] * 1e3:,.0f}" for n in names))


if __name__ == "__main__":
    main()

"""TV-L1 in PyTorch on a GPU: pairs/s at 112 px per batch size, peak memory, memory bandwidth reached, where the
time goes (per-kernel profile), and agreement with OpenCV of the flow computed on the device.

    python bench/gpu_flow.py                           (CUDA; meant to take a few minutes on one H100 / H200)
    python bench/gpu_flow.py --device cpu --tiny       (smoke test of every step on the CPU, 32 px, small batches)
    python bench/gpu_flow.py --video clip.mp4          (real frames instead of the synthetic pairs)

Frame pairs: real-looking textures moved by random translations, rotations and zooms (no download needed), or
pairs from ``--video`` sampled at 10 fps, repeated up to the batch size.

Each batch runs eager and with the inner iteration compiled (torch.compile; the first call compiles, untimed).
Bandwidth: the time per inner iteration comes from a short run with the stopping rule off (epsilon 0, one warp,
two outer iterations per level), where the number of pixel-iterations is known exactly; bytes per pixel-iteration are counted from the operations of the inner
iteration as written (every elementwise op reads its inputs from and writes its output to memory), and from the
least a fused kernel must move (u, p, the per-warp constants in; u, p out) for the compiled rows. The fraction is
of ``--peak-gbs`` (by default looked up from the device name). The eager form runs only up to batch 1024 (it is
several times slower; the whole script is meant to fit in a few minutes of GPU time).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from talmts.data.tvl1 import TVL1Params, opencv_tvl1, pyramid_sizes, tvl1_flow

# float32 values read + written per pixel and pair in one inner iteration of talmts.data.tvl1 (eager): rho 12,
# the clamped step 13, u + step 6, divergence 26, + theta div 10, change 12, forward gradient 28, dual step 44
EAGER_FLOATS_PER_PIXEL = 151
# what a fused iteration must move: u (2) and p (4) in and out, grad I1w (2), rho_c and |grad I1w|^2 in
FUSED_FLOATS_PER_PIXEL = 16
PEAK_GBS = {"H200": 4800.0, "H100": 3350.0, "A100": 2039.0, "L40S": 864.0, "V100": 900.0}


def synthetic_pairs(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prev, nxt = [], []
    for _ in range(n):
        noise = rng.standard_normal((size, size)).astype(np.float32)
        base = sum(cv2.GaussianBlur(noise, (0, 0), s) * s for s in (1.0, 3.0, 8.0))
        frame = np.clip(128 + 50 * base / base.std(), 0, 255).astype(np.uint8)
        centre = ((size - 1) / 2, (size - 1) / 2)
        m = cv2.getRotationMatrix2D(centre, rng.uniform(-5, 5), rng.uniform(0.95, 1.05))
        m[:, 2] += rng.uniform(-4, 4, 2)
        prev.append(frame)
        nxt.append(cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
    return np.stack(prev), np.stack(nxt)


def video_pairs(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    from talmts.data.video import read_video

    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in read_video(path, 10.0, size).frames])
    return gray[:-1], gray[1:]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:  # noqa: ANN001
    """Best wall seconds of ``repeats`` calls, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="32 px, batches 2 and 4: a smoke test on the CPU")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--video", type=Path, default=None)
    parser.add_argument("--peak-gbs", type=float, default=None, help="the device's memory bandwidth, GB/s")
    args = parser.parse_args()
    if args.tiny:
        args.size, args.batches, args.repeats = 32, [2, 4], 1
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # a smoke test: one thread does not fight other jobs on a shared machine
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_gbs or next((v for k, v in PEAK_GBS.items() if k in name), None)
    print(f"# {name}, torch {torch.__version__}, {args.size} px, peak bandwidth {peak or 'unknown'} GB/s")

    prev, nxt = video_pairs(args.video, args.size) if args.video else synthetic_pairs(32, args.size)
    params = TVL1Params()

    # agreement with OpenCV of the flow computed on this device
    k = min(4, len(prev))
    ours = tvl1_flow(prev[:k], nxt[:k], params, device=device).cpu().numpy()
    algo = opencv_tvl1(params)
    ref = np.stack([algo.calc(a, b, None) for a, b in zip(prev[:k], nxt[:k])])
    print(f"agreement with OpenCV on {k} pairs: mean EPE {np.linalg.norm(ours - ref, axis=-1).mean():.4f} px")

    fixed = TVL1Params(epsilon=0.0, warps=1, outer_iterations=2)
    pixels = sum(h * w for h, w in pyramid_sizes(args.size, args.size, fixed.scales, fixed.scale_step))
    iters_per_pixel = fixed.warps * fixed.outer_iterations * fixed.inner_iterations
    print(
        "| inner iteration | batch | pairs/s (defaults) | peak memory (MiB) | pairs/s (epsilon 0) | "
        "floats moved / pixel / iteration | GB/s | fraction of peak |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for compiled, b in [(c, b) for c in (False, True) for b in args.batches if c or b <= 1024]:
        reps = -(-b // len(prev))
        p_dev = torch.as_tensor(np.concatenate([prev] * reps)[:b]).to(device)
        n_dev = torch.as_tensor(np.concatenate([nxt] * reps)[:b]).to(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sec = timed(lambda p=p_dev, n=n_dev, c=compiled: tvl1_flow(p, n, params, compiled=c), device, args.repeats)
        mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        sec_fixed = timed(lambda p=p_dev, n=n_dev, c=compiled: tvl1_flow(p, n, fixed, compiled=c), device, 1)
        # eager: every op's traffic; compiled: the least a fused iteration moves (a lower bound on its traffic)
        floats = FUSED_FLOATS_PER_PIXEL if compiled else EAGER_FLOATS_PER_PIXEL
        gbs = b * pixels * iters_per_pixel * floats * 4 / sec_fixed / 1e9
        frac = f"{gbs / peak:.1%}" if peak else "n/a"
        kind = "compiled" if compiled else "eager"
        print(f"| {kind} | {b} | {b / sec:.1f} | {mem:.0f} | {b / sec_fixed:.1f} | {floats} | {gbs:.0f} | {frac} |")

    b = args.batches[len(args.batches) // 2]
    p_dev = torch.as_tensor(np.concatenate([prev] * (-(-b // len(prev))))[:b]).to(device)
    n_dev = torch.as_tensor(np.concatenate([nxt] * (-(-b // len(nxt))))[:b]).to(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        tvl1_flow(p_dev, n_dev, params, compiled=True)
        synchronize(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\nper-kernel profile, batch {b}, default parameters, inner iteration compiled")
    print(prof.key_averages().table(sort_by=sort, row_limit=20))


if __name__ == "__main__":
    main()

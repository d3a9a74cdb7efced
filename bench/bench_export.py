"""Windows per second of one stream's network run by PyTorch eager, TorchScript and ONNX Runtime (fp32, and int8 with
--quantize), side by side in one run, with the exported files' sizes and each runtime's peak memory.

The network is the one inference runs (eval mode, BatchNorm folded), seeded random weights, at the demo's size
(64 x 48 x 48 clips, I3D width 0.25) and at THUMOS14's (256 x 96 x 96, width 1). Each timed pass of each runtime
runs in turn (so load from other processes hits all of them); the median per runtime is reported with the ratio to
PyTorch eager measured in the same run. Peak memory: each runtime loads and runs two passes in a child process of
its own, which reports its peak resident set size (ru_maxrss) less the size after the imports.

    python bench/bench_export.py                                  # demo and THUMOS14 sizes, CPU, batch 1
    python bench/bench_export.py --configs demo --repeats 5 --quantize
    python bench/bench_export.py --device cuda                    # PyTorch on the GPU vs ONNX Runtime's CUDA provider

ONNX Runtime uses as many threads as torch (torch.get_num_threads()), so both run on the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from talmts.config import load_config, resolve_config_path
from talmts.models import build_detector
from talmts.models.export import OUTPUT_NAMES, export_onnx, export_torchscript, quantize_onnx
from talmts.models.levers import INFERENCE, apply_levers

CONFIGS = {"demo": "demo", "thumos14": "thumos14_rgb"}


def build(config: str) -> torch.nn.Module:
    cfg = load_config(resolve_config_path(CONFIGS[config]), ["model.backbone.weights=null"])
    torch.manual_seed(0)
    return apply_levers(build_detector(cfg, 20, 3), INFERENCE)


def clip_for(model: torch.nn.Module, batch: int) -> torch.Tensor:
    t, s = model.clip_frames, model.frame_size
    return torch.rand(batch, 3, t, s, s, generator=torch.Generator().manual_seed(1)) * 2 - 1


def runners(model: torch.nn.Module, files: dict[str, Path], device: str) -> dict[str, object]:
    """name -> callable(clip) returning the five outputs as numpy arrays."""
    import onnxruntime as ort

    dev = torch.device(device)
    eager = model.to(dev)

    def run_eager(x: torch.Tensor) -> list[np.ndarray]:
        with torch.no_grad():
            out = eager(x.to(dev))
        return [getattr(out, n).cpu().numpy() for n in OUTPUT_NAMES]

    out: dict[str, object] = {"pytorch eager": run_eager}
    if "torchscript" in files and device == "cpu":
        scripted = torch.jit.load(str(files["torchscript"]))

        def run_ts(x: torch.Tensor) -> list[np.ndarray]:
            with torch.no_grad():
                return [t.numpy() for t in scripted(x)]

        out["torchscript"] = run_ts
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    for name in ("onnx fp32", "onnx int8"):
        if name in files:
            session = ort.InferenceSession(str(files[name]), options, providers=providers)
            out[f"onnxruntime {name.split()[1]}"] = lambda x, s=session: s.run(list(OUTPUT_NAMES), {"clip": x.numpy()})
    return out


def peak_memory(config: str, runtime: str, files: dict[str, Path], device: str, batch: int) -> float:
    """MB of peak RSS above the RSS after the imports, for one runtime loading the network and running it twice,
    measured in a child process (Linux: /proc/self/clear_refs resets the peak, VmHWM reads it)."""
    code = (
        "import sys, json, torch; sys.path.insert(0, sys.argv[1]); import bench_export as b\n"
        "status = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1])\n"
        "open('/proc/self/clear_refs', 'w').write('5'); base = status('VmRSS')\n"
        "files = {k: b.Path(v) for k, v in json.loads(sys.argv[4]).items()}\n"
        "m = b.build(sys.argv[2]); x = b.clip_for(m, int(sys.argv[6]))\n"
        "r = b.runners(m, files, sys.argv[5])[sys.argv[3]]; [r(x) for _ in range(2)]\n"
        "print((status('VmHWM') - base) / 1024)\n"
    )
    argv = [str(Path(__file__).parent), config, runtime, json.dumps({k: str(v) for k, v in files.items()}), device]
    proc = subprocess.run([sys.executable, "-c", code, *argv, str(batch)], capture_output=True, text=True)
    if proc.returncode:
        print(f"# peak memory of {runtime} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return float("nan")
    return float(proc.stdout.strip().splitlines()[-1])


def bench(config: str, args: argparse.Namespace, folder: Path) -> list[dict]:
    model = build(config)
    files: dict[str, Path] = {}
    t0 = time.perf_counter()
    export_onnx(model, folder / f"{config}.onnx")
    files["onnx fp32"] = folder / f"{config}.onnx"
    export_seconds = time.perf_counter() - t0
    if args.quantize:
        quantize_onnx(files["onnx fp32"], folder / f"{config}.int8.onnx")
        files["onnx int8"] = folder / f"{config}.int8.onnx"
    export_torchscript(model, folder / f"{config}.ts")
    files["torchscript"] = folder / f"{config}.ts"
    clip = clip_for(model, args.batch)
    run = runners(model, files, args.device)
    reference = run["pytorch eager"](clip)
    diffs = {name: max(float(np.abs(a - b).max()) for a, b in zip(f(clip), reference)) for name, f in run.items()}
    times: dict[str, list[float]] = {name: [] for name in run}
    for _ in range(args.repeats):
        for name, f in run.items():
            t = time.perf_counter()
            f(clip)
            if args.device == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    size = {"pytorch eager": None, "torchscript": files["torchscript"], "onnxruntime fp32": files["onnx fp32"]}
    size["onnxruntime int8"] = files.get("onnx int8")
    eager = statistics.median(times["pytorch eager"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append(
            {
                "config": config,
                "runtime": name,
                "windows_per_s": round(args.batch / med, 3),
                "vs_eager": round(eager / med, 3),
                "median_s": round(med, 4),
                "file_mb": round(size[name].stat().st_size / 1e6, 1) if size.get(name) else None,
                "peak_mb": round(peak_memory(config, name, files, args.device, args.batch), 0),
                "max_abs_diff": diffs[name],
                "export_s": round(export_seconds, 1) if name == "onnxruntime fp32" else None,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quantize", action="store_true", help="also time the int8 ONNX graph")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for config in args.configs for row in bench(config, args, Path(tmp))]
    print(
        f"# torch threads {torch.get_num_threads()}, batch {args.batch}, device {args.device}, load {load} -> {os.getloadavg()}"
    )
    print("| size | runtime | windows/s | vs PyTorch eager | file MB | peak MB | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['runtime']} | {r['windows_per_s']} | {r['vs_eager']} | {r['file_mb'] or '-'} | "
            f"{r['peak_mb']} | {r['max_abs_diff']:.1e} |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

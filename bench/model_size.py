"""Parameters and forward FLOPs of TAL-MTS and of the AFSD baseline (every TAL-MTS module off), per part.

    python bench/model_size.py --frames 256 --size 96 --classes 20

FLOPs come from torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-add; convolutions, matmuls and
attention only: norms, activations, pooling and interpolation are not counted). Attention runs on SDPA's math
backend here so that its matmuls are visible to the counter (CPU's fused kernel is not registered with it).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from talmts.config import Config
from talmts.models import build_detector


def measure(cfg: Config, classes: int, in_channels: int) -> dict[str, object]:
    net = build_detector(cfg, num_classes=classes, in_channels=in_channels).eval()
    params = {name: sum(p.numel() for p in child.parameters()) for name, child in net.named_children()}
    clip = torch.zeros(1, in_channels, cfg.data.clip_frames, cfg.data.frame_size, cfg.data.frame_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        net(clip)
    per_module = counter.get_flop_counts()
    flops = {name: sum(per_module.get(f"TALMTS.{name}", {}).values()) for name in params if name != "backbone"}
    # extract_features (not forward) drives the backbone, so the tracker has no entry for it: it is the rest
    flops["backbone"] = counter.get_total_flops() - sum(flops.values())
    return {
        "params": sum(params.values()),
        "params_by_part": params,
        "flops": counter.get_total_flops(),
        "flops_by_part": flops,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {}
    for name in ("talmts", "afsd_baseline"):
        cfg = Config()
        cfg.data.clip_frames, cfg.data.frame_size = args.frames, args.size
        cfg.model.backbone.width = args.width
        if name == "afsd_baseline":
            cfg.model.rfp.enabled = cfg.model.stt.enabled = cfg.model.fsa.enabled = False
        results[name] = measure(cfg, args.classes, args.in_channels)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    parts = list(results["talmts"]["params_by_part"])
    print("| part | TAL-MTS params (M) | TAL-MTS GFLOP | AFSD baseline params (M) | AFSD baseline GFLOP |")
    print("|---|---|---|---|---|")
    for part in [*parts, "total"]:
        row = [part]
        for name in ("talmts", "afsd_baseline"):
            r = results[name]
            p = r["params"] if part == "total" else r["params_by_part"].get(part, 0)
            f = r["flops"] if part == "total" else r["flops_by_part"].get(part, 0)
            row += [f"{p / 1e6:.3f}", f"{f / 1e9:.2f}"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

"""One raw video end to end, stage by stage: decode, sample + resize, optical flow, network (RGB and flow streams),
decode + Soft-NMS. Each stage in frames/s and as a multiple of real time (video seconds / stage seconds).

    python bench/bench_pipeline.py VIDEO [--device cpu|cuda] [--config demo|thumos14] [--flow tvl1|tvl1-torch]

The network is the config's detector with random weights (speed does not depend on them), one per stream, run on
the sliding windows exactly as ``talmts detect`` runs them (engine/inference/predictor.py). Stages run one after the other,
each timed alone, so the sum is what a pipeline without overlap costs. On the CPU the times are CPU seconds of
this process (other jobs on a shared machine do not count; use --threads 1 for per-core figures), on a GPU wall
seconds. Flow defaults to tvl1-torch on either device, as ``talmts detect`` picks it for a TV-L1 flow stream.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from talmts.config import MODALITY_CHANNELS, load_config, resolve_config_path
from talmts.data.flow import compute_flow
from talmts.data.video import AccumulatorSampler, iter_frames, stream_fps, to_rgb
from talmts.data.windows import cut_windows
from talmts.engine.inference.predictor import Predictor, Stream, network_outputs, raw_video_flow_method
from talmts.formats.video_info import VideoInfo
from talmts.models import build_detector
from talmts.schema import ClassMap

CONFIGS = {"demo": ("demo", "demo"), "thumos14": ("thumos14_rgb", "thumos14_flow")}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock_for(device: torch.device):  # noqa: ANN201 - a time function
    return time.perf_counter if device.type == "cuda" else time.process_time


def stream(config: str, modality: str, classes: ClassMap, device: torch.device) -> Stream:
    cfg = load_config(resolve_config_path(config), ["model.backbone.weights=null", f"data.modality={modality}"])
    model = build_detector(cfg, len(classes), MODALITY_CHANNELS[modality])
    if hasattr(getattr(model, "backbone", None), "fold_batchnorm"):
        model.backbone = model.backbone.fold_batchnorm()  # as load_stream does for inference
    return Stream(model=model.to(device).eval(), cfg=cfg, classes=classes, source=f"{config} ({modality})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    parser.add_argument("--flow", default=None, help="flow method (default: as `talmts detect`, tvl1-torch)")
    parser.add_argument("--flow-batch", type=int, default=None)
    parser.add_argument("--size", type=int, default=112, help="sampled frame size, as prepared (default 112)")
    parser.add_argument("--threads", type=int, default=None, help="torch / OpenCV threads (default: torch's)")
    args = parser.parse_args()
    device = torch.device(args.device)
    clock = clock_for(device)
    if args.threads:
        import cv2

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    classes = ClassMap(tuple(f"class{i}" for i in range(20)))
    rgb_cfg, flow_cfg = CONFIGS[args.config]
    streams = [stream(rgb_cfg, "rgb", classes, device), stream(flow_cfg, "flow", classes, device)]
    cfg = streams[0].cfg
    predictor = Predictor(streams, cfg.infer, cfg.data.test_stride, cfg.data.protocol, device)
    sample_fps, size = 10.0, args.size
    method = args.flow or raw_video_flow_method("tvl1")

    # 1 + 2: decode, and sample + resize (the swscale call of each kept frame timed on its own)
    fps = stream_fps(args.video)
    sampler, frames, resize_s, count = AccumulatorSampler(fps, sample_fps), [], 0.0, 0
    start = clock()
    for frame in iter_frames(args.video):
        count += 1
        copies = sampler()
        if copies:
            t = clock()
            image = to_rgb(frame, size)
            resize_s += clock() - t
            frames.extend([image] * copies)
    decode_s = clock() - start - resize_s
    rgb = np.stack(frames)
    duration = count / fps

    # 3: flow
    compute_flow(rgb[:3], method, device=str(device), batch=args.flow_batch)  # warm-up (imports, allocator)
    sync(device)
    start = clock()
    flow = compute_flow(rgb, method, device=str(device), batch=args.flow_batch)
    sync(device)
    flow_s = clock() - start

    # 4: the network on every window of both streams
    d = cfg.data
    windows = list(cut_windows(zip(rgb, flow), d.clip_frames, predictor.stride, predictor.protocol, "video"))
    network_outputs(streams, windows[:1], cfg.infer.batch_size, device)  # warm-up
    sync(device)
    start = clock()
    batches = network_outputs(streams, windows, cfg.infer.batch_size, device)
    sync(device)
    network_s = clock() - start

    # 5: decode the windows, fuse the streams, merge with Soft-NMS
    info = VideoInfo("video", fps, sample_fps, count, len(rgb))
    start = clock()
    detections = predictor.finish(batches, info)
    post_s = clock() - start

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"# {name}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(
        f"# {args.video.name}: {duration:.1f} s, {count} frames at {fps:g} fps -> {len(rgb)} frames at "
        f"{sample_fps:g} fps, {size} px; flow {method}; network {args.config} x 2 streams, {len(windows)} "
        f"windows of {d.clip_frames}; {len(detections)} detections"
    )
    print("| stage | seconds | frames/s | x real time |")
    print("|---|---|---|---|")
    rows = [
        ("decode", decode_s, count),
        ("sample + resize", resize_s, len(rgb)),
        (f"flow ({method})", flow_s, len(rgb)),
    ]
    rows += [("network (RGB + flow)", network_s, len(rgb)), ("decode + Soft-NMS", post_s, len(rgb))]
    for stage, sec, n in rows:
        print(f"| {stage} | {sec:.3f} | {n / sec:.1f} | {duration / sec:.1f} |")
    total = sum(r[1] for r in rows)
    print(f"| **total** | **{total:.3f}** | **{len(rgb) / total:.1f}** | **{duration / total:.2f}** |")


if __name__ == "__main__":
    main()

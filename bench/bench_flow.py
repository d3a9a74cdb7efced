"""Optical-flow throughput per core (frames per second) for TV-L1 (ours and OpenCV's) and DIS, and decode + resize
throughput.

    python bench/bench_flow.py [--sizes 112 96] [--seconds 10]

Frames come from a synthetic video (talmts.data.synth) so the numbers need no download; ``--video PATH``
uses a real file instead. OpenCV and torch run on one thread: ``talmts prepare`` runs one process per core.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import torch

from talmts.data.flow import compute_flow
from talmts.data.synth import SynthConfig, generate_dataset
from talmts.data.video import read_video


def time_call(fn: Callable[[], object], min_seconds: float) -> tuple[float, int]:
    """Run fn() until min_seconds of CPU time have passed (at least once); returns (CPU s per call, calls).

    CPU time of this process (one OpenCV/FFmpeg thread), not wall time: per-core throughput stays meaningful
    on a machine shared with other jobs.
    """
    calls, start = 0, time.process_time()
    while True:
        fn()
        calls += 1
        elapsed = time.process_time() - start
        if elapsed >= min_seconds:
            return elapsed / calls, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 96])
    parser.add_argument("--methods", nargs="+", default=["tvl1-torch", "tvl1", "dis"])
    parser.add_argument("--frames", type=int, default=21, help="frames per timed flow call")
    parser.add_argument("--seconds", type=float, default=10.0, help="minimum timed seconds per measurement")
    parser.add_argument("--video", type=Path, default=None, help="a real video instead of the synthetic one")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        video = args.video
        if video is None:
            cfg = SynthConfig(videos=1, seed=0, height=240, min_video_s=20, max_video_s=20)
            generate_dataset(tmp, cfg)
            video = Path(tmp) / "videos" / "synth_0000.mp4"
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, OpenCV {cv2.__version__}")
        print(f"# video {video.name}")
        print("| step | size | frames/s per core | ms per frame |")
        print("|---|---|---|---|")
        for size in args.sizes:
            sec, _ = time_call(lambda s=size: read_video(video, 10.0, s, threads=1), args.seconds / 2)
            v = read_video(video, 10.0, size, threads=1)
            rate = v.sample_count / sec
            print(f"| decode + sample 10 fps + resize ({v.count} frames in) | {size} | {rate:.0f} | {1e3 / rate:.2f} |")
            frames = v.frames[: args.frames]
            for method in args.methods:
                compute_flow(frames[:2], method)  # warm up
                sec, _ = time_call(lambda f=frames, m=method: compute_flow(f, m), args.seconds)
                rate = (len(frames) - 1) / sec  # flow fields computed per second
                print(f"| flow {method} | {size} | {rate:.1f} | {1e3 / rate:.1f} |")


if __name__ == "__main__":
    main()

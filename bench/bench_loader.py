"""The training loader's ceiling: clips/s and frames/s from a THUMOS14-sized fake prepared set, with N workers,
for float32 clips made in the workers (``data.transform: loader``, make_clip) and for uint8 windows
(``data.transform: device``: the crop, flip and normalisation are then the device's job).

    python bench/bench_loader.py                              # 200 videos x 1,700 frames at 112 px (12.8 GB)
    python bench/bench_loader.py --videos 4 --workers 0 1 2   # a quick run (256 MB)

The set is generated under --out (a temporary folder by default, deleted at the end; never commit it): random
uint8 frames in talmts prepare's layout (frames/<video>.npy, video_info.csv) and one 3 s action every 6 s, so
that the training protocol (256-frame windows, stride 30) gives about 49 windows per video, as THUMOS14's 7,842
over 200 videos. Clips are drawn in a shuffled order through the trainer's own ClipDataset and DataLoader. The
arrays are read through the page cache: once a set smaller than the memory has been read it comes from memory;
the first pass over a set larger than it is the disk's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from talmts.config import MODALITY_CHANNELS, load_config
from talmts.data.dataset import ClipDataset, collate_clips

FPS = 10.0


def generate(root: Path, videos: int, frames: int, size: int, modality: str) -> Path:
    """A fake prepared set under ``root`` (reused when it is already there with the same shape)."""
    folder = root / ("frames" if modality == "rgb" else "flow")
    folder.mkdir(parents=True, exist_ok=True)
    channels = MODALITY_CHANNELS[modality]
    rows, db = ["video,fps,sample_fps,count,sample_count"], {}
    for i in range(videos):
        name = f"video_{i:04d}"
        path = folder / f"{name}.npy"
        if not path.is_file() or np.load(path, mmap_mode="r").shape != (frames, size, size, channels):
            rng = np.random.default_rng(i)
            np.save(path, rng.integers(0, 256, (frames, size, size, channels), dtype=np.uint8))
        rows.append(f"{name},30.0,{FPS},{frames * 3},{frames}")
        seconds = frames / FPS
        actions = [{"segment": [s, s + 3.0], "label": "action"} for s in np.arange(1.0, seconds - 4.0, 6.0)]
        db[name] = {"subset": "validation", "duration": seconds, "annotations": actions}
    (root / "video_info.csv").write_text("\n".join(rows) + "\n")
    (root / "annotations.json").write_text(json.dumps({"database": db}))
    return root


def measure(root: Path, modality: str, transform: str, workers: int, batch: int, clips: int) -> dict:
    cfg = load_config(
        None,
        [
            f"data.root={root}",
            f"data.annotations={root / 'annotations.json'}",
            f"data.modality={modality}",
            "data.train_subset=validation",
            f"data.transform={transform}",
        ],
    )
    dataset = ClipDataset(cfg, "validation", train=True, raw=transform == "device")
    order = torch.Generator().manual_seed(0)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        generator=order,
        num_workers=workers,
        collate_fn=collate_clips,
        prefetch_factor=cfg.data.prefetch if workers else None,
        drop_last=True,
    )
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)  # worker start-up and the first batch, reported apart
    first = time.perf_counter() - t0
    n, t1 = 0, time.perf_counter()
    for _ in range(max(clips // batch, 1)):
        try:
            next(it)
        except StopIteration:
            break
        n += batch
    sec = time.perf_counter() - t1
    del it
    return {
        "transform": transform,
        "workers": workers,
        "batch": batch,
        "clips": n,
        "clips_per_s": n / sec,
        "frames_per_s": n * cfg.data.clip_frames / sec,
        "first_batch_s": first,
        "windows": len(dataset),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=200)
    p.add_argument("--frames", type=int, default=1700, help="frames per video (THUMOS14 validation: about 1,700)")
    p.add_argument("--size", type=int, default=112, help="stored frame size (talmts prepare's default)")
    p.add_argument("--modality", choices=["rgb", "flow"], default="rgb")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4, 8, 16])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--clips", type=int, default=64, help="clips timed per configuration")
    p.add_argument("--transforms", nargs="+", choices=["loader", "device"], default=["loader", "device"])
    p.add_argument("--out", default=None, help="folder of the fake set (kept); default: a temporary one, deleted")
    args = p.parse_args()
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="talmts-loader-"))
    try:
        t0 = time.perf_counter()
        generate(root, args.videos, args.frames, args.size, args.modality)
        gb = args.videos * args.frames * args.size**2 * MODALITY_CHANNELS[args.modality] / 1e9
        print(json.dumps({"set": str(root), "videos": args.videos, "GB": round(gb, 2), "generate_s": time.perf_counter() - t0}))  # fmt: skip
        print(json.dumps({"cpus": os.cpu_count(), "load_average": os.getloadavg()}))
        for workers in args.workers:
            for transform in args.transforms:  # interleaved: both paths see the same load
                row = measure(root, args.modality, transform, workers, args.batch, args.clips)
                print(json.dumps(row), flush=True)
    finally:
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

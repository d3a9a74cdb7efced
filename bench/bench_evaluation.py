"""Time a THUMOS14-sized detection evaluation on one core and print the figures as JSON.

Ground truth: 212 test videos, ~3,360 instances over 20 classes (synthetic, fixed seed; pass --gt to use a real
annotation file instead). Detections: 200,000, 60% jittered copies of ground truth (right label 70% of the time),
40% random segments with random labels; 7 thresholds (0.1:0.1:0.7).

    python bench/bench_evaluation.py [--gt ../shared/data/thumos14/thumos14.json] [--repeats 5]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from talmts.evaluation import DEFAULT_TIOU, evaluate_detections  # noqa: E402
from talmts.formats import THUMOS14_CLASSES, read_annotations  # noqa: E402
from talmts.schema import AnnotationSet, ClassMap, Detection, Segment, Video  # noqa: E402


def synthetic_ground_truth(rng: np.random.Generator, num_videos: int = 212, per_video: float = 15.8) -> AnnotationSet:
    videos = {}
    for i in range(num_videos):
        duration = float(rng.uniform(30, 400))
        labels = rng.choice(THUMOS14_CLASSES, size=rng.integers(1, 3))  # THUMOS videos hold 1-2 classes
        segs = []
        for _ in range(max(1, rng.poisson(per_video))):
            length = float(rng.uniform(1, 12))
            start = float(rng.uniform(0, duration - length))
            segs.append(Segment(start, start + length, str(rng.choice(labels))))
        videos[f"video_test_{i:07d}"] = Video(f"video_test_{i:07d}", "test", duration, 30.0, segs)
    return AnnotationSet(videos, ClassMap(THUMOS14_CLASSES))


def synthetic_detections(rng: np.random.Generator, gt: AnnotationSet, total: int) -> dict[str, list[Detection]]:
    vids = list(gt.videos.values())
    out: dict[str, list[Detection]] = {v.id: [] for v in vids}
    per_video = total // len(vids)
    for n, v in enumerate(vids):
        count = per_video + (1 if n < total - per_video * len(vids) else 0)
        near = rng.random(count) < 0.6 if v.annotations else np.zeros(count, dtype=bool)
        for is_near in near:
            if is_near:
                s = v.annotations[rng.integers(len(v.annotations))]
                jitter = rng.normal(0, 0.15 * s.length, size=2)
                start, end = sorted((max(0.0, s.start + jitter[0]), max(0.0, s.end + jitter[1])))
                label = s.label if rng.random() < 0.7 else str(rng.choice(THUMOS14_CLASSES))
            else:
                start = float(rng.uniform(0, v.duration or 100))
                end = start + float(rng.uniform(0.5, 15))
                label = str(rng.choice(THUMOS14_CLASSES))
            out[v.id].append(Detection(float(start), float(end), label, float(rng.random())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", help="real ground truth file instead of the synthetic one")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--detections", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    gt = read_annotations(args.gt).subset(args.subset) if args.gt else synthetic_ground_truth(rng)
    dets = synthetic_detections(rng, gt, args.detections)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = evaluate_detections(gt, dets, DEFAULT_TIOU["thumos"])
        times.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "benchmark": "evaluate_detections",
                "ground_truth": args.gt or "synthetic",
                "videos": len(gt.videos),
                "instances": gt.num_instances(),
                "detections": sum(len(d) for d in dets.values()),
                "thresholds": len(DEFAULT_TIOU["thumos"]),
                "seconds_median": round(float(np.median(times)), 4),
                "seconds_min": round(min(times), 4),
                "repeats": args.repeats,
                "average_mAP": round(result.average_mAP, 6),
                "python": platform.python_version(),
                "numpy": np.__version__,
                "cpu": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()

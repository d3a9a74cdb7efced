"""``talmts stream``: latency per ground-truth action, throughput in stream seconds per wall second, and memory
after 1 and after 60 minutes of stream. Prints JSON lines, one per measurement.

    python bench/bench_stream.py latency --demo demo_out [--model NAME=CKPT[,FLOW_CKPT] ...]
    python bench/bench_stream.py throughput [--seconds 120] [--device cpu|cuda] [--flow dis|tvl1-torch]
    python bench/bench_stream.py memory [--minutes 60]

latency: the demo's test videos (``talmts demo``'s synth/ and annotations) joined into one stream, in id order,
streamed as fast as they decode with the defaults a user gets (``--min-score 0.1 --horizon 60``). For each
ground-truth action, its detection is the best-scoring emitted one of its class with tIoU >= 0.5; the latency is
the stream time read when that detection left minus the action's end (stream seconds; on a live source the
network's time for one window comes on top). The same stream goes through the offline path (``talmts detect``,
windows one at a time) and the files written at the end are compared with it. Models: ``demo`` = the demo's fused
checkpoints (12.8 s windows), plus any ``--model NAME=CKPT[,FLOW]`` (e.g. one trained with THUMOS14's 25.6 s windows).

throughput: a generated 320 x 240, 25 fps video (moving shapes), streamed as fast as possible through the demo
network and the THUMOS14 network (configs demo / thumos14_rgb + thumos14_flow, random weights: speed does not depend
on them), each sampled at 10 fps, RGB alone and RGB + flow (DIS on the CPU, as the demo's checkpoints), one after the
other in one run. Stream seconds per wall second (> 1: faster than real time), and the load average.

memory: a generated 160 x 120, 10 fps video of ``--minutes`` (default 60) streamed through the demo network, RGB + DIS
flow fused at 10 fps; the process's resident memory (VmRSS) and its peak (VmHWM) read at 1 minute of stream and at
the end, with the candidates Soft-NMS holds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from talmts.config import MODALITY_CHANNELS, load_config, resolve_config_path
from talmts.data.record import PrepareOptions
from talmts.engine.inference.predictor import Predictor, Stream, load_predictor
from talmts.engine.inference.stream import (
    Emitted,
    StreamSettings,
    StreamStatus,
    default_threads,
    stream_detections,
)
from talmts.formats import read_annotations
from talmts.models import build_detector
from talmts.schema import ClassMap


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def report(**row: object) -> None:
    print(json.dumps(row), flush=True)


# ------------------------------------------------------------------------------------------------- videos
def write_frames(path: Path, frames, fps: float, size: tuple[int, int]) -> Path:  # noqa: ANN001 - an iterator
    """Encode uint8 RGB frames (mpeg4 in Matroska) to ``path``."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 2_000_000
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def moving_shapes(count: int, height: int, width: int, seed: int = 0):  # noqa: ANN201 - an iterator
    """Bright squares moving over a textured background: content to decode and flow to compute."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 120, (height, width, 3), dtype=np.uint8)
    pos = rng.uniform(0, 1, (4, 2))
    vel = rng.uniform(-0.01, 0.01, (4, 2))
    s = height // 6
    for _ in range(count):
        image = base.copy()
        pos = (pos + vel) % 1.0
        for (y, x), colour in zip(pos, ((255, 64, 64), (64, 255, 64), (64, 64, 255), (255, 255, 64))):
            top, left = int(y * (height - s)), int(x * (width - s))
            image[top : top + s, left : left + s] = colour
        yield image


def joined_test_stream(demo: Path, work: Path) -> tuple[Path, list[tuple[str, float, float]], float]:
    """The demo's test videos, in id order, decoded and written one after the other into one file; returns it, the
    ground truth in its time ((label, start, end) seconds) and its length in seconds."""
    gt = read_annotations(demo / "synth" / "annotations.json").subset("test")
    path = work / "demo_test_stream.mkv"
    actions: list[tuple[str, float, float]] = []
    offset, fps = 0, None
    frames = []
    for vid in sorted(gt.videos):
        with av.open(str(demo / "synth" / "videos" / f"{vid}.mp4")) as c:
            stream = c.streams.video[0]
            fps = fps or float(stream.average_rate)
            decoded = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        actions += [(a.label, a.start + offset / fps, a.end + offset / fps) for a in gt.videos[vid].annotations]
        frames += decoded
        offset += len(decoded)
    assert fps is not None
    write_frames(path, frames, fps, frames[0].shape[:2])
    return path, actions, offset / fps


# ------------------------------------------------------------------------------------------------- latency
def last_checkpoint(run: Path) -> Path:
    """The last checkpoint-N.pt of a training run (what the demo evaluates)."""
    found = sorted(run.glob("checkpoint-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    if not found:
        raise SystemExit(f"{run}: no checkpoint-N.pt; run `talmts demo` first")
    return found[-1]


def tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def latency(args: argparse.Namespace) -> None:
    demo = Path(args.demo)
    models = {"demo": [last_checkpoint(demo / "rgb"), last_checkpoint(demo / "flow")]}
    for spec in args.model:
        name, _, paths = spec.partition("=")
        models[name] = [Path(p) for p in paths.split(",")]
    default = StreamSettings()
    runs = [(default.min_score, default.horizon)]  # the defaults first, then one knob at a time
    runs += [(default.min_score, h) for h in args.horizons if h != default.horizon]
    runs += [(m, default.horizon) for m in args.min_scores if m != default.min_score]
    with tempfile.TemporaryDirectory() as tmp:
        video, actions, seconds = joined_test_stream(demo, Path(tmp))
        for name, ckpts in models.items():
            predictor = load_predictor(ckpts, device=args.device, overrides=["infer.batch_size=1"])
            offline, _ = predictor.raw_video(video)
            d = predictor.streams[0].cfg.data
            for min_score, horizon in runs:
                settings = StreamSettings(min_score=min_score, horizon=horizon)
                emitted: list[Emitted] = []
                load_before = load_average()
                out = Path(tmp) / name
                res = stream_detections(predictor, str(video), settings, out=out, on_detection=emitted.append)
                want = [x for x in offline if x.score >= min_score]
                lat, missed = [], 0
                for label, start, end in actions:
                    hits = [e for e in emitted if e.detection.label == label]
                    hits = [e for e in hits if tiou((e.detection.start, e.detection.end), (start, end)) >= 0.5]
                    if not hits:
                        missed += 1
                        continue
                    lat.append(max(hits, key=lambda e: e.detection.score).stream_time - end)
                after_end = [e.stream_time - e.detection.end for e in emitted]
                report(
                    part="latency",
                    model=name,
                    streams=predictor.names,
                    window_s=d.clip_frames / d.fps,
                    stride_s=predictor.stride / d.fps,
                    min_score=min_score,
                    horizon_s=horizon,
                    stream_s=round(seconds, 1),
                    actions=len(actions),
                    detected=len(lat),
                    missed=missed,
                    median_s=round(float(np.median(lat)), 2) if lat else None,
                    p95_s=round(float(np.percentile(lat, 95)), 2) if lat else None,
                    max_s=round(float(np.max(lat)), 2) if lat else None,
                    any_detection_max_s=round(float(np.max(after_end)), 2) if after_end else None,
                    emitted=res.emitted,
                    inexact=res.inexact,
                    files_equal_offline=res.detections == want,
                    offline_detections=len(want),
                    per_class_max=max((sum(x.label == c for x in want) for c in predictor.classes.names), default=0),
                    nms_top_k=predictor.infer.nms_top_k,
                    peak_held=res.peak_held,
                    wall_s=round(res.seconds, 1),
                    load=f"{load_before} -> {load_average()}",
                )


# ------------------------------------------------------------------------------------------------- throughput
def random_predictor(config: str, flow: str | None, device: torch.device, fps: float = 10.0) -> Predictor:
    """The config's network(s) with random weights, as load_predictor would build them from a checkpoint whose data
    was sampled at ``fps`` (and whose flow stream was trained on ``flow``)."""
    configs = {"demo": ("demo", "demo"), "thumos14": ("thumos14_rgb", "thumos14_flow")}[config]
    classes = ClassMap(tuple(f"class{i}" for i in range(3 if config == "demo" else 20)))
    streams = []
    for cfg_name, modality in zip(configs, ["rgb", "flow"] if flow else ["rgb"]):
        over = ["model.backbone.weights=null", f"data.modality={modality}", f"data.fps={fps}"]
        cfg = load_config(resolve_config_path(cfg_name), over)
        model = build_detector(cfg, len(classes), MODALITY_CHANNELS[modality])
        if hasattr(getattr(model, "backbone", None), "fold_batchnorm"):
            model.backbone = model.backbone.fold_batchnorm()  # as load_stream does for inference
        prep = PrepareOptions(fps=fps, size=cfg.data.stored_size, flow=flow or "none")
        streams.append(Stream(model.to(device).eval(), cfg, classes, f"{config} ({modality})", prepare=prep))
    cfg = streams[0].cfg
    return Predictor(streams, cfg.infer, cfg.data.test_stride, cfg.data.protocol, device)


def throughput(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        video = write_frames(
            Path(tmp) / "shapes.mkv", moving_shapes(int(args.seconds * 25), 240, 320), 25.0, (240, 320)
        )
        for config in ("demo", "thumos14"):
            for flow in (None, args.flow):
                predictor = random_predictor(config, flow, device)
                load_before, cpu0 = load_average(), time.process_time()
                res = stream_detections(predictor, str(video), StreamSettings(threads=args.threads))
                report(
                    part="throughput",
                    model=config,
                    streams=predictor.names + (f" ({flow})" if flow else ""),
                    device=str(device),
                    stream_s=round(res.stream_time, 1),
                    wall_s=round(res.seconds, 2),
                    x_real_time=round(res.stream_time / res.seconds, 2),
                    cpu_s=round(time.process_time() - cpu0, 1),
                    threads=args.threads or default_threads(),
                    load=f"{load_before} -> {load_average()}",
                )


# ------------------------------------------------------------------------------------------------- memory
def memory_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def memory(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        frames = int(args.minutes * 60 * 10)
        video = write_frames(Path(tmp) / "long.mkv", moving_shapes(frames, 120, 160), 10.0, (120, 160))
        predictor = random_predictor("demo", "dis", device)
        marks: dict[str, dict] = {}

        def status(s: StreamStatus) -> None:
            rss, hwm = memory_kib()
            mark = {
                "stream_s": round(s.stream_time, 1),
                "rss_mib": rss // 1024,
                "peak_mib": hwm // 1024,
                "held": s.held,
            }
            if "1 min" not in marks and s.stream_time >= 60:
                marks["1 min"] = mark
            marks["last"] = mark  # the last status: the end of the stream, before the files are written

        load_before = load_average()
        settings = StreamSettings(every=1.0, threads=args.threads)
        res = stream_detections(predictor, str(video), settings, out=Path(tmp) / "out", on_status=status)
        rss, hwm = memory_kib()
        report(
            part="memory",
            model="demo",
            streams=predictor.names + " (dis)",
            at_1_min=marks["1 min"],
            at_end=marks["last"],
            after_files={"rss_mib": rss // 1024, "peak_mib": hwm // 1024},
            peak_held=res.peak_held,
            detections_in_files=len(res.detections),
            x_real_time=round(res.stream_time / res.seconds, 2),
            load=f"{load_before} -> {load_average()}",
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("latency", "throughput", "memory"))
    parser.add_argument("--demo", default="demo_out", help="the output folder of `talmts demo` (latency)")
    parser.add_argument("--model", action="append", default=[], help="NAME=CKPT[,FLOW_CKPT], more models (latency)")
    parser.add_argument("--horizons", type=float, nargs="*", default=[10.0, 20.0, 30.0], help="latency: also these")
    parser.add_argument("--min-scores", type=float, nargs="*", default=[0.05, 0.01], help="latency: also these")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the throughput video")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the memory video")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the network; flow as --flow)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: stream's, all cores but one)"
    )
    parser.add_argument("--flow", default="dis", help="flow method of the flow streams (throughput): dis, tvl1-torch")
    args = parser.parse_args()
    report(
        cpu=cpu_model(),
        cpus=os.cpu_count(),
        torch=torch.__version__,
        threads=args.threads or default_threads(),
        date=time.strftime("%Y-%m-%d"),
    )
    {"latency": latency, "throughput": throughput, "memory": memory}[args.part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

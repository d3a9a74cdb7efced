"""Throughput, FLOPs and peak memory of the network, and the cost of decoding + Soft-NMS beside it.

Protocol (``measure_network``): build the detector for a config, put it in eval mode, apply the inference levers
asked for (models/levers.py: module rewrites, channels-last 3D, bf16 autocast, ``torch.compile`` in one of its
modes, CUDA graphs), run ``warmup`` forward passes, then time ``iters`` passes one by one (CUDA events on GPU, a synchronised clock elsewhere) and
report the median. frames/s = batch x T / median seconds. AFSD's own protocol (fp32, batch 1, 2 warm-up and 20
timed passes, mean) is the ``afsd`` preset of the CLI, so the figures compare with the ones AFSD reports.
``part="backbone"`` times the I3D backbone alone, as the detector runs it (up to Mixed_5c, keeping the endpoints
the head reads), for reference.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from talmts.config import Config
from talmts.fileio import atomic_write_bytes
from talmts.geometry import refine_distances
from talmts.models import build_detector
from talmts.models.detector import anchor_centres, pyramid_lengths
from talmts.models.levers import PARTS, BackboneOnly, LeverRunner, Levers, first_clips
from talmts.outputs import DetectorOutput
from talmts.postprocess import clip_scores, decode_clip, detections_for_video
from talmts.schema import ClassMap


@dataclass
class NetworkResult:
    part: str
    batch: int
    frames: int
    size: int
    device: str
    levers: dict
    median_ms: float
    mean_ms: float
    frames_per_s: float
    peak_mem_mb: float | None
    gflop_per_clip: float | None = None
    achieved_tflops: float | None = None
    peak_fraction: float | None = None
    times_ms: list[float] = field(default_factory=list)
    agreement: dict | None = None  # vs the fp32 eager model on the same clip (see compare_scores)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(model: torch.nn.Module, clip: torch.Tensor) -> float:
    """Forward FLOPs of one call (2 per multiply-add), counted by torch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(clip)
    return float(counter.get_total_flops())


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, n: int | None = None, iters: int = 10) -> float:
    """The device's measured dense matmul rate (TFLOP/s): the ceiling that achieved fractions are taken against."""
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = _time_calls(lambda: a @ b, device, iters)
    return 2 * n**3 / statistics.median(times) / 1e12


def _time_calls(fn: Callable[[], object], device: torch.device, iters: int) -> list[float]:
    """Seconds per call, one call at a time (events on CUDA, synchronised perf_counter elsewhere)."""
    out = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return out


def prepare_model(
    cfg: Config, num_classes: int, in_channels: int, device: torch.device, levers: Levers, part: str = "network"
) -> tuple[torch.nn.Module, LeverRunner]:
    """The detector (or its backbone, ``part="backbone"``) in eval mode with the levers' rewrites applied, and the
    runner that executes it with the run-time levers.

    Seeded, so every variant built for the same config has the same weights and can be compared.
    """
    if part not in PARTS:
        raise ValueError(f"part {part!r}: use one of {', '.join(PARTS)}")
    torch.manual_seed(0)
    model: torch.nn.Module = build_detector(cfg, num_classes, in_channels).eval()
    if part == "backbone":
        model = BackboneOnly(model.backbone, model.endpoints).eval()
    runner = LeverRunner(model.to(device), levers)
    return runner.model, runner


def load_compile_cache(path: str | Path) -> bool:
    """Load ``torch.compile`` artifacts (compiled graphs, kernels, autotuning results) saved by an earlier process
    with :func:`save_compile_cache`, so that a fresh machine with the same torch and device skips the compile."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        info = torch.compiler.load_cache_artifacts(p.read_bytes())  # None when the bytes do not deserialise
    except Exception as err:  # another torch version or a damaged file: compile from scratch instead
        info, why = None, str(err)
    else:
        why = "not readable by this torch"
    if info is None:
        warnings.warn(f"{p}: compile cache not loaded ({why}); compiling from scratch", stacklevel=2)
        return False
    return True


def save_compile_cache(path: str | Path) -> int:
    """Write this process's ``torch.compile`` artifacts to ``path``; returns the bytes written (0: nothing)."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return 0
    data = saved[0]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return len(data)


def measure_network(
    cfg: Config,
    *,
    batch: int,
    device: torch.device,
    levers: Levers,
    num_classes: int = 20,
    in_channels: int = 3,
    warmup: int = 3,
    iters: int = 20,
    peak_tflops: float | None = None,
    flops: bool = True,
    statistic: str = "median",
    check_against: Callable[[torch.Tensor], object] | None = None,
    part: str = "network",
) -> NetworkResult:
    """Time the whole network (backbone, RFP, STT, FSA, boundary pooling, heads) on random clips, or the backbone
    alone (``part="backbone"``); ``check_against`` is the reference for the same part."""
    t, s = cfg.data.clip_frames, cfg.data.frame_size
    model, runner = prepare_model(cfg, num_classes, in_channels, device, levers, part)
    clip = runner.layout(torch.rand(batch, in_channels, t, s, s, device=device) * 2 - 1)
    gflop = count_flops(model, clip[:1]) / 1e9 if flops else None

    def forward() -> object:
        return runner.forward(clip)

    agreement = None
    if check_against is not None:
        agreement = compare_outputs(check_against(clip[:1]), first_clips(forward(), 1))

    call: Callable[[], object] = forward
    if levers.cuda_graph and device.type == "cuda":  # the replay alone is timed: the clip stays in the graph
        call = runner.capture(clip, max(warmup, 2))[1].replay
    else:
        for _ in range(warmup):
            forward()
        synchronize(device)
    if device.type == "cuda":  # steady state: cudnn's autotuning workspaces during warm-up are not counted
        torch.cuda.reset_peak_memory_stats(device)
    times = _time_calls(call, device, iters)
    sec = statistics.median(times) if statistic == "median" else statistics.fmean(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _cpu_peak_mb()
    res = NetworkResult(
        part=part,
        batch=batch,
        frames=t,
        size=s,
        device=_device_name(device),
        levers=asdict(levers),
        median_ms=statistics.median(times) * 1e3,
        mean_ms=statistics.fmean(times) * 1e3,
        frames_per_s=batch * t / sec,
        peak_mem_mb=peak,
        gflop_per_clip=gflop,
        times_ms=[x * 1e3 for x in times],
        agreement=agreement,
    )
    if gflop is not None:
        res.achieved_tflops = gflop * batch / sec / 1e3
        if peak_tflops:
            res.peak_fraction = res.achieved_tflops / peak_tflops
    return res


def compare_outputs(ref: object, out: object) -> dict:
    """``compare_scores`` for detector outputs; for backbone features, the largest difference relative to the
    reference's largest magnitude, over the endpoints."""
    if isinstance(ref, DetectorOutput):
        return compare_scores(ref, out)
    diffs = [
        float((a.float() - b.float()).abs().max() / a.float().abs().max().clamp_min(1e-12)) for a, b in zip(ref, out)
    ]
    return {"max_rel_feature_diff": max(diffs)}


def compare_scores(ref: DetectorOutput, out: DetectorOutput, top: int = 20) -> dict:
    """How far a fast variant's detections are from the reference: max score difference, max boundary difference
    (clip frames) and the overlap of the top-``top`` (anchor, class) candidates."""
    a, b = clip_scores(ref), clip_scores(out)
    ia = set(a.flatten().topk(top).indices.tolist())
    ib = set(b.flatten().topk(top).indices.tolist())
    loc_a = refine_distances(ref.loc.float(), ref.prop_loc.float())
    loc_b = refine_distances(out.loc.float(), out.prop_loc.float())
    return {
        "max_score_diff": float((a - b).abs().max()),
        "max_boundary_diff_frames": float((loc_a - loc_b).abs().max()),
        "top_overlap": len(ia & ib) / top,
    }


def _cpu_peak_mb() -> float | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    except (ImportError, AttributeError):
        return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def measure_postprocess(
    cfg: Config, num_classes: int = 20, clips_per_video: int = 16, videos: int = 5, seed: int = 0
) -> dict:
    """Seconds per THUMOS14-like video spent in decoding + clip merging + Soft-NMS (random raw outputs).

    3,485 test windows over 212 THUMOS14 videos is 16.4 clips per video; every anchor of every clip is scored
    for every class, so this is the candidate load a real test pass produces.
    """
    g = torch.Generator().manual_seed(seed)
    t = cfg.data.clip_frames
    sizes = pyramid_lengths(cfg.model, t)
    k = sum(sizes)
    anchors = anchor_centres(sizes, t)
    classes = ClassMap(tuple(f"class{i}" for i in range(num_classes)))

    def raw() -> DetectorOutput:
        return DetectorOutput(
            loc=torch.rand(clips_per_video, k, 2, generator=g) * t / 4,
            conf=torch.randn(clips_per_video, k, num_classes + 1, generator=g),
            prop_loc=torch.randn(clips_per_video, k, 2, generator=g) * 0.1,
            prop_conf=torch.randn(clips_per_video, k, num_classes + 1, generator=g),
            quality=torch.randn(clips_per_video, k, generator=g),
            anchors=anchors,
            level_sizes=tuple(sizes),
            clip_frames=t,
        )

    per_video, candidates = [], []
    for _ in range(videos):
        out = raw()
        t0 = time.perf_counter()
        cands = [
            decode_clip(out, i, offset=i * cfg.data.test_stride, fps=cfg.data.fps, conf_thresh=cfg.infer.conf_thresh)
            for i in range(clips_per_video)
        ]
        detections_for_video(cands, classes, cfg.infer)
        per_video.append(time.perf_counter() - t0)
        candidates.append(sum(len(c.scores) for c in cands))
    return {
        "clips_per_video": clips_per_video,
        "candidates_per_video": float(np.mean(candidates)),
        "seconds_per_video": statistics.median(per_video),
    }

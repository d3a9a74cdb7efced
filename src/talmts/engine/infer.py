"""Sliding-window inference: one or two streams over the windows of a video, decoded to detections.

A *stream* is a trained network with its resolved config and class names (all read from its checkpoint).
Two streams (RGB and flow) are fused the AFSD way by default: their raw outputs are averaged per window before
softmax and decoding (``infer.fusion=logits``); ``infer.fusion=detections`` pools each stream's decoded
candidates instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from talmts.config import Config, InferConfig, config_from_dict
from talmts.data.transforms import make_clip
from talmts.data.windows import read_video_info, test_windows
from talmts.engine.checkpoint import load_checkpoint
from talmts.models import build_detector
from talmts.outputs import DetectorOutput
from talmts.postprocess import Candidates, decode_streams, detections_for_video
from talmts.schema import ClassMap, Detection

MODALITY_DIRS = {"rgb": "frames", "flow": "flow"}
MODALITY_CHANNELS = {"rgb": 3, "flow": 2}


@dataclass
class Stream:
    """A network ready for inference, with the config and classes it was trained with."""

    model: nn.Module
    cfg: Config
    classes: ClassMap
    source: str = ""
    root: str | None = None  # prepared dataset of this stream; None: the evaluation config's data.root
    prepare: dict | None = None  # how its training data was prepared (``talmts prepare`` options), if recorded
    forward: Callable[[torch.Tensor], DetectorOutput] | None = None  # set by use_fast_path; None: ``model``

    @property
    def modality(self) -> str:
        return self.cfg.data.modality


def load_stream(path: str | Path, device: torch.device | str = "cpu", use_ema: bool = True) -> Stream:
    """Build the network a checkpoint describes and load its weights (the EMA weights when it has them)."""
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"], source=f"{path} (stored config)")
    classes = ClassMap(tuple(state["classes"]))
    cfg.model.backbone.weights = None  # the checkpoint holds the fine-tuned weights; do not load I3D's again
    model = build_detector(cfg, len(classes), state["in_channels"])
    ema = state.get("ema")
    model.load_state_dict(ema["weights"] if use_ema and ema else state["model"])
    if hasattr(getattr(model, "backbone", None), "fold_batchnorm"):  # inference: BN folded into the convs, 1.04x on CPU
        model.backbone = model.backbone.fold_batchnorm()
    model.to(device).eval()
    return Stream(model=model, cfg=cfg, classes=classes, source=str(path), prepare=state.get("prepare"))


def use_fast_path(streams: Sequence[Stream], batch_size: int, device: torch.device) -> str | None:
    """Switch the streams to engine/fast.py's GPU path; returns why not (a message for the user) on a CPU, where
    the exact fp32 path with folded BN is the fastest measured (docs/PERFORMANCE.md)."""
    if device.type != "cuda":
        return (
            f"--fast applies on a CUDA device; on {device.type} the exact fp32 path (BN folded) is already the "
            "fastest measured, and is used"
        )
    from talmts.engine.fast import FastForward

    for s in streams:
        s.forward = FastForward(s.model, batch_size)
    return None


def check_compatible(streams: Sequence[Stream]) -> None:
    """Fused streams must share classes and window geometry, or their outputs cannot be averaged."""
    first = streams[0]
    for s in streams[1:]:
        if s.classes != first.classes:
            raise ValueError(f"{s.source} and {first.source} have different classes; they cannot be fused")
        for key in ("clip_frames", "frame_size", "fps"):
            a, b = getattr(first.cfg.data, key), getattr(s.cfg.data, key)
            if a != b:
                raise ValueError(f"{first.source} has data.{key}={a} but {s.source} has {b}; fused streams must agree")


PREPARE_KEYS = ("fps", "size", "max_frames")  # and "flow" for a flow stream


def check_prepared_like_training(streams: Sequence[Stream], root: str | Path) -> None:
    """Test data must be sampled as the training data was: a network trained at 10 fps sees other motion at 5 fps,
    and its mAP drops without any error. Compared where both sides recorded their ``talmts prepare`` options."""
    import json

    for s in streams:
        path = Path(s.root or root) / "prepare.json"
        if not s.prepare or not path.is_file():
            continue
        here = json.loads(path.read_text())
        for key in PREPARE_KEYS + (("flow",) if s.modality == "flow" else ()):
            if key in here and key in s.prepare and here[key] != s.prepare[key]:
                raise ValueError(
                    f"{path}: {key}={here[key]!r}, but {s.source} was trained on data prepared with "
                    f"{key}={s.prepare[key]!r}; prepare the test videos with the training data's options "
                    f"({', '.join(f'{k}={v!r}' for k, v in s.prepare.items())})"
                )


def window_tensor(frames: np.ndarray, clip_frames: int, frame_size: int) -> torch.Tensor:
    """uint8 [t, S, S, C] window (t <= T; may be a memmap slice) -> float [C, T, F, F]: the test-time transform
    of the datasets (centre crop, x / 255 * 2 - 1, padded past the video end)."""
    return make_clip(frames, 0, clip_frames, frame_size, train=False)


def _batches(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class WindowOutputs:
    """The raw outputs (on the CPU) of every stream for one batch of windows of a video."""

    outputs: list  # one DetectorOutput per stream, batch = len(offsets)
    offsets: list[int]
    num_frames: list[int]  # real frames of each window (< T for the padded tail of a video)


@torch.no_grad()
def network_outputs(
    streams: Sequence[Stream],
    windows: Iterable[tuple[int, Sequence[np.ndarray]]],
    infer: InferConfig,
    device: torch.device | str = "cpu",
) -> list[WindowOutputs]:
    """Run every stream on each (offset, per-stream frames) window, in batches of ``infer.batch_size``.

    ``windows`` yields the window's start (sample frames) and one uint8 array [t, S, S, C] per stream, t <= T.
    """
    d = streams[0].cfg.data
    batches: list[WindowOutputs] = []
    pending: list[tuple[int, Sequence[np.ndarray]]] = []

    def flush() -> None:
        outs = []
        for k, stream in enumerate(streams):
            x = torch.stack([window_tensor(arrs[k], d.clip_frames, d.frame_size) for _, arrs in pending])
            run = stream.forward or stream.model
            out = run(x.to(device))  # [B, C, T, F, F] -> DetectorOutput
            outs.append(out.map(lambda t: t.float().cpu()))
        batches.append(WindowOutputs(outs, [o for o, _ in pending], [len(arrs[0]) for _, arrs in pending]))
        pending.clear()

    for item in windows:
        pending.append(item)
        if len(pending) >= infer.batch_size:
            flush()
    if pending:
        flush()
    return batches


def decode_windows(batches: Sequence[WindowOutputs], rate: float, infer: InferConfig) -> list[Candidates]:
    """Eq. 13 candidates of every window; ``rate`` is the video's sample frames per second:
    seconds = (frame + offset) / rate, segments clamped to each window's real frames. Streams are fused as
    ``infer.fusion`` says."""
    candidates: list[Candidates] = []
    for b in batches:
        for i, (offset, n) in enumerate(zip(b.offsets, b.num_frames)):
            candidates.extend(decode_streams(b.outputs, i, float(offset), rate, infer, num_frames=n))
    return candidates


def run_windows(
    streams: Sequence[Stream],
    windows: Iterable[tuple[int, Sequence[np.ndarray]]],
    rate: float,
    infer: InferConfig,
    device: torch.device | str = "cpu",
) -> list[Candidates]:
    """:func:`network_outputs` then :func:`decode_windows`."""
    return decode_windows(network_outputs(streams, windows, infer, device), rate, infer)


def _postprocess_video(
    batches: Sequence[WindowOutputs], rate: float, classes: ClassMap, infer: InferConfig, duration: float
) -> list[Detection]:
    return detections_for_video(decode_windows(batches, rate, infer), classes, infer, duration)


def array_windows(
    arrays: Sequence[np.ndarray], clip_frames: int, stride: int, protocol: str = "sliding"
) -> Iterator[tuple[int, list]]:
    """The test windows of whole per-stream arrays (memmaps are fine: only a window is read at a time)."""
    n = min(len(a) for a in arrays)
    offsets = [0] if protocol == "whole" else test_windows(n, clip_frames, stride)
    for offset in offsets:
        yield offset, [a[offset : offset + clip_frames] for a in arrays]


def detect_arrays(
    streams: Sequence[Stream],
    arrays: Sequence[np.ndarray],
    rate: float,
    cfg: Config,
    device: torch.device | str,
    duration: float | None = None,
) -> list[Detection]:
    """Detections in one prepared video given as one uint8 array per stream (``rate``: see run_windows)."""
    d = streams[0].cfg.data
    windows = array_windows(arrays, d.clip_frames, cfg.data.test_stride, cfg.data.protocol)
    cands = run_windows(streams, windows, rate, cfg.infer, device)
    return detections_for_video(cands, streams[0].classes, cfg.infer, duration)


def detect_prepared(
    streams: Sequence[Stream],
    cfg: Config,
    videos: Sequence[str],
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict[str, list[Detection]]:
    """Detections for prepared videos (frames/flow .npy under cfg.data.root), one stream or fused."""
    check_compatible(streams)
    root = Path(cfg.data.root)
    check_prepared_like_training(streams, root)
    info = read_video_info(root / "video_info.csv")
    missing = [v for v in videos if v not in info]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} video(s) of the split are not in {root}/video_info.csv (first: {missing[0]!r}); "
            "run `talmts prepare` on them first"
        )
    iterator: Iterable[str] = videos
    if progress:
        from tqdm import tqdm

        iterator = tqdm(videos, desc="inference", unit="video", leave=False)
    d = streams[0].cfg.data
    # Decoding, merging and Soft-NMS of video i (numpy, CPU) run in a worker thread while the network processes video i + 1:
    # with a fast GPU network it would otherwise be a tenth of a test pass (docs/PERFORMANCE.md).
    futures: dict[str, Future[list[Detection]]] = {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        for vid in iterator:
            arrays = [np.load(_array_path(Path(s.root or root), s.modality, vid), mmap_mode="r") for s in streams]
            v = info[vid]
            windows = array_windows(arrays, d.clip_frames, cfg.data.test_stride, cfg.data.protocol)
            batches = network_outputs(streams, windows, cfg.infer, device)
            rate, duration = v.rate(cfg.data.protocol), v.count / v.fps
            futures[vid] = pool.submit(_postprocess_video, batches, rate, streams[0].classes, cfg.infer, duration)
        return {vid: f.result() for vid, f in futures.items()}


def _array_path(root: Path, modality: str, vid: str) -> Path:
    path = root / MODALITY_DIRS[modality] / f"{vid}.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: prepare the {modality} stream of {vid!r} (`talmts prepare`)")
    return path

"""Training-step throughput per speed lever: clips/s, frames/s and peak memory of one optimiser step.

Protocol (``measure_train_variant``): build the detector for a config with one named set of training levers
(:data:`TRAIN_VARIANTS`, each on top of the plain fp32 eager step), seed it, and run the trainer's step on one
fixed random batch held in host memory (pinned on CUDA): copy to the device (float32 clips, or uint8 windows cut
there with ``data.transform=device``), forward under the levers, the trainer's per-sample losses, backward, Adam.
``warmup`` steps first (the compile happens there and is reported as ``first_step_s``), then ``steps`` timed
steps one by one (CUDA events on GPU, a synchronised clock elsewhere); the median is reported. Peak memory is the
CUDA allocator's high-water mark during the timed steps on GPU; on CPU it is the process's peak RSS so far
(monotone over a run: read it for the first variant, or run variants in separate processes).
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch

from talmts.config import MODALITY_CHANNELS, Config
from talmts.data.device_transforms import batch_clips
from talmts.engine.commands.bench.network import _cpu_peak_mb, _device_name, _time_calls, synchronize
from talmts.engine.commands.bench.options import TRAIN_VARIANTS
from talmts.engine.training.loop import build_optimizer, per_sample_losses
from talmts.engine.training.speedups import amp_context, amp_enabled, for_training, network_call
from talmts.models import build_detector

PLAIN: dict[str, Any] = {  # the reference step: fp32, eager, Adam's loop, float32 clips from the loader
    "train.amp": False,
    "train.channels_last": False,
    "train.compile": False,
    "train.adam": "loop",
    "model.backbone.checkpoint": False,
    "data.transform": "loader",
}
AFSD_MODULES_OFF = {"model.rfp.enabled": False, "model.stt.enabled": False, "model.fsa.enabled": False}


def with_changes(cfg: Config, changes: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted ``changes`` set (values already typed)."""
    out = copy.deepcopy(cfg)
    for key, value in changes.items():
        *path, leaf = key.split(".")
        node: Any = out
        for part in path:
            node = getattr(node, part)
        if not hasattr(node, leaf):
            raise KeyError(f"{key}: no such config field")
        setattr(node, leaf, value)
    return out


def _host_batch(cfg: Config, batch: int, device: torch.device) -> dict[str, Any]:
    """One fixed random batch in host memory, as the loader delivers it (pinned for asynchronous copies on CUDA)."""
    d = cfg.data
    c, t = MODALITY_CHANNELS[d.modality], d.clip_frames
    g = torch.Generator().manual_seed(0)
    if d.transform == "device":
        window = torch.randint(0, 256, (batch, t, d.stored_size, d.stored_size, c), generator=g, dtype=torch.uint8)
        out: dict[str, Any] = {
            "window": window,
            "crop": torch.tensor([[(d.stored_size - d.frame_size) // 2] * 2] * batch),
            "flip": torch.tensor([i % 2 == 1 for i in range(batch)]),
            "frames": [t] * batch,
        }
    else:
        out = {"clip": torch.rand(batch, c, t, d.frame_size, d.frame_size, generator=g) * 2 - 1}
    if device.type == "cuda":
        out = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in out.items()}
    return out


def measure_train_variant(
    cfg: Config,
    variant: str,
    *,
    device: torch.device,
    batch: int,
    steps: int = 5,
    warmup: int = 2,
    num_classes: int = 20,
) -> dict[str, Any]:
    """Time the trainer's step with the levers of ``TRAIN_VARIANTS[variant]`` (on top of :data:`PLAIN`)."""
    if variant not in TRAIN_VARIANTS:
        raise ValueError(f"train variant {variant!r}: use one of {', '.join(TRAIN_VARIANTS)}")
    changes = {**PLAIN, **TRAIN_VARIANTS[variant], "train.batch_size": batch}
    cfg = with_changes(cfg, changes)
    torch.manual_seed(0)
    model = build_detector(cfg, num_classes, MODALITY_CHANNELS[cfg.data.modality]).to(device).train()
    model = for_training(model, cfg)
    opt = build_optimizer(model, cfg, cfg.train.lr)
    net = network_call(model, cfg)
    host = _host_batch(cfg, batch, device)
    t = cfg.data.clip_frames
    targets = [torch.tensor([[t * 0.2, t * 0.6, 1.0 + i % num_classes]], device=device) for i in range(batch)]
    flow_sign = cfg.data.modality == "flow" and cfg.data.flip_negates_flow
    last: list[float] = []

    def step() -> None:
        clip = batch_clips(
            host, device, cfg.data.frame_size, flow_sign=flow_sign, channels_last=cfg.train.channels_last
        )
        with amp_context(cfg, device):
            out = net(clip)
        if amp_enabled(cfg, device):
            out = out.map(lambda x: x.float())
        losses = per_sample_losses(out, targets, cfg.loss)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()
        last[:] = [losses["total"].detach()]

    t0 = time.perf_counter()
    step()
    synchronize(device)
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = _time_calls(step, device, steps)
    cuda = device.type == "cuda"
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _cpu_peak_mb()
    sec = statistics.median(times)
    row = {
        "train_step": variant,
        "stream": cfg.data.modality,
        "device": _device_name(device),
        "batch": batch,
        "frames": t,
        "size": cfg.data.frame_size,
        "levers": {k: v for k, v in TRAIN_VARIANTS[variant].items()},
        "amp": amp_enabled(cfg, device),
        "compile_backend": cfg.train.compile_backend if cfg.train.compile else None,
        "seconds_per_step": sec,
        "clips_per_s": batch / sec,
        "frames_per_s": batch * t / sec,
        "first_step_s": first,
        "peak_mem_mb": peak,
        "peak_mem_kind": "cuda allocated" if cuda else "process RSS so far",
        "peak_mem_per_clip_mb": peak / batch if (peak is not None and cuda) else None,
        "loss": float(last[0]),
    }
    if cfg.train.compile:
        torch._dynamo.reset()  # each variant's compile starts afresh (no recompilation limit across variants)
    if cuda:
        torch.cuda.empty_cache()
    return row


def failed_variant(variant: str, batch: int, err: BaseException) -> dict[str, Any]:
    """The row of a lever set that failed (out of memory, a compile error), after freeing what it held."""
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return {"train_step": variant, "batch": batch, "error": f"{type(err).__name__}: {first}"[:300]}

"""A real TAL-MTS network at the smallest sizes, saved as a checkpoint the way `talmts train` saves one: enough
for `talmts detect` and `talmts eval` to run end to end in seconds (its detections are random, not good)."""

from __future__ import annotations

from pathlib import Path

import torch

from talmts.config import load_config
from talmts.engine.checkpoint import save_checkpoint
from talmts.models.detector import build_detector

TINY = [
    "data.clip_frames=32",
    "data.frame_size=32",
    "data.stored_size=32",
    "data.test_stride=16",
    "model.levels=3",
    "model.channels=32",
    "model.groups=8",
    "model.backbone.width=0.125",
    "model.stt.dim=32",
    "model.stt.heads=2",
    "model.fsa.patch=16",
    "model.fsa.dim=32",
    "model.fsa.heads=2",
    "model.fsa.out_channels=32",
    "infer.batch_size=2",
]


def tiny_checkpoint(
    path: str | Path,
    *,
    fps: float = 10.0,
    flow: str = "none",
    seed: int = 0,
    overrides: tuple[str, ...] = (),
    modality: str = "rgb",
    size: int = 32,
) -> Path:
    """A random tiny TAL-MTS for clips of 32 frames at ``fps``, 32 x 32 px, two classes; RGB, or flow (2 channels,
    its data prepared with ``flow``); frames sampled at ``size`` px (the clip is their centre)."""
    torch.manual_seed(seed)
    cfg = load_config(_demo(), [*TINY, f"data.fps={fps}", f"data.modality={modality}", *overrides])
    channels = 2 if modality == "flow" else 3
    model = build_detector(cfg, 2, channels)
    state = {
        "config": cfg.to_dict(),
        "classes": ["jump", "wave"],
        "in_channels": channels,
        "prepare": {"fps": fps, "size": size, "max_frames": None, "flow": flow},
        "model": model.state_dict(),
        "ema": None,
    }
    return save_checkpoint(state, path)


def _demo() -> Path:
    from talmts.config import resolve_config_path

    return resolve_config_path("demo")

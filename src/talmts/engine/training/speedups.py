"""Training speed levers: what the ``train.`` fields ask of the model, the network call and Adam.

Each lever is one config field, switchable alone (docs/DESIGN.md "Training speed"):

- ``train.amp``: bf16 autocast of the network on CUDA (the losses run in float32);
- ``train.channels_last``: model and clips in the channels-last 3D memory format;
- ``train.compile`` (+ ``compile_mode``, ``compile_backend``): ``torch.compile`` of the network's forward and
  backward with static shapes, through :func:`talmts.models.levers.compile_model` (the inference levers' names);
  mode "reduce-overhead" also replays them as CUDA graphs. The losses stay eager: their number of targets changes
  from clip to clip;
- ``train.adam``: Adam's implementation (loop, foreach, fused);
- ``model.backbone.checkpoint``: activation checkpointing (in the model itself);
- ``data.transform: device``: the clips cut from uint8 windows on the device (data/device_transforms.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from talmts.config import Config
from talmts.models.levers import CHANNELS_LAST, Levers, compile_model

ADAM_OPTIONS: dict[str, dict[str, bool]] = {
    "torch": {},  # torch's own choice: foreach on CUDA, the loop on CPU
    "loop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


def adam_options(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of ``torch.optim.Adam`` for ``train.adam``."""
    return dict(ADAM_OPTIONS[cfg.train.adam])


def for_training(model: nn.Module, cfg: Config) -> nn.Module:
    """``model`` (in place) in the memory format ``train.channels_last`` asks for."""
    return model.to(memory_format=CHANNELS_LAST) if cfg.train.channels_last else model


def compile_levers(cfg: Config) -> Levers:
    """The inference levers' value for the training compile switches (only the compile fields are used)."""
    t = cfg.train
    return Levers(compile=t.compile, compile_mode=t.compile_mode, compile_backend=t.compile_backend)


def network_call(net: nn.Module, cfg: Config) -> Callable[[torch.Tensor], Any]:
    """``net`` (a model, or its DDP wrapper) compiled as ``train.compile`` asks, or ``net`` itself."""
    return compile_model(net, compile_levers(cfg))


def amp_context(cfg: Config, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast when ``train.amp`` is on and the device is CUDA (on CPU, bf16 convolutions are slower)."""
    on = cfg.train.amp and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on)


def amp_enabled(cfg: Config, device: torch.device) -> bool:
    return cfg.train.amp and device.type == "cuda"

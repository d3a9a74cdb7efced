"""The clip transforms of data/transforms.py on the training device, for a loader that ships uint8 windows.

With ``data.transform: device`` the loader workers only copy each window's stored uint8 frames (4x fewer bytes
than float32 clips, and no per-pixel arithmetic on the host) and draw the crop corner and the flip exactly as
:func:`talmts.data.transforms.make_clip` does (same function, same RNG, same order). :func:`clips_from_windows`
then crops, flips (negating flow x), normalises and pads on the device with torch ops and gives ``make_clip``'s
values bit for bit: the same float32 multiply by 2/255 and subtraction of 1, the same exact negation and padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from talmts.data.transforms import PAD_VALUE

CHANNELS_LAST = torch.channels_last_3d


def raw_window(frames: np.ndarray, offset: int, length: int) -> np.ndarray:
    """uint8 [length, S, S, C]: the stored frames of one window, zeros past the video's end (padded on the device)."""
    n = frames.shape[0]
    stop = min(offset + length, n)
    out = np.zeros((length, *frames.shape[1:]), np.uint8)
    out[: stop - offset] = frames[offset:stop]
    return out


def clips_from_windows(
    windows: torch.Tensor,
    crops: torch.Tensor | Sequence[Sequence[int]],
    flips: torch.Tensor | Sequence[bool],
    frames: torch.Tensor | Sequence[int],
    size: int,
    *,
    negate_flow_x: bool,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 windows [B, L, S, S, C] (on any device) -> float32 clips [B, C, L, size, size] in [-1, 1] there.

    ``crops``: each window's (y, x) crop corner; ``flips``: whether it is mirrored; ``frames``: its real frames
    (the rest becomes :data:`PAD_VALUE`). ``negate_flow_x``: a mirrored clip's channel 0 changes sign (flow).
    ``channels_last``: the result in the channels-last 3D layout (free: the stored layout already is).
    """
    if windows.dtype != torch.uint8 or windows.ndim != 5:
        raise ValueError(f"windows must be uint8 [B, L, S, S, C], got {windows.dtype} {list(windows.shape)}")
    corners = [(int(y), int(x)) for y, x in _as_list(crops)]
    mirrored = [bool(f) for f in _as_list(flips)]
    real = torch.as_tensor(_as_list(frames), dtype=torch.long, device=windows.device)
    b, length, height, width, channels = windows.shape
    if not (len(corners) == len(mirrored) == real.numel() == b):
        raise ValueError(f"{b} windows but {len(corners)} crops, {len(mirrored)} flips, {real.numel()} frame counts")
    for y, x in corners:
        if not (0 <= y <= height - size and 0 <= x <= width - size):
            raise ValueError(f"crop corner ({y}, {x}) of size {size} falls outside the {height}x{width} frames")
    cut = torch.stack(
        [
            w[:, y : y + size, x : x + size].flip(2) if f else w[:, y : y + size, x : x + size]
            for w, (y, x), f in zip(windows, corners, mirrored)
        ]
    )  # [B, L, size, size, C] uint8: crop and mirror before the arithmetic, on a quarter of the bytes
    clip = cut.float().mul_(2.0 / 255.0).sub_(1.0)  # as normalize(): float32 x * (2/255) - 1
    if negate_flow_x and any(mirrored):
        sign = torch.ones(b, 1, 1, 1, channels, device=clip.device)
        sign[torch.tensor(mirrored, device=clip.device), ..., 0] = -1.0
        clip.mul_(sign)  # multiplying by +-1 is exact
    pad = torch.arange(length, device=clip.device)[None, :] >= real[:, None]  # [B, L]
    clip.masked_fill_(pad[:, :, None, None, None], PAD_VALUE)
    clip = clip.permute(0, 4, 1, 2, 3)  # [B, C, L, size, size], already channels-last 3D in memory
    return clip if channels_last else clip.contiguous()


def batch_clips(batch: dict[str, Any], device: torch.device, size: int, *, flow_sign: bool, channels_last: bool) -> Any:
    """The network input of a collated batch on ``device``: its float32 ``clip``, or clips made there from its
    uint8 ``window`` (``flow_sign``: a mirrored clip's channel 0 is negated, i.e. flow with data.flip_negates_flow)."""
    if "window" not in batch:  # a float32 clip, or another input with ``.to`` (the cached-feature head's)
        clip = batch["clip"].to(device, non_blocking=True)
        return clip.contiguous(memory_format=CHANNELS_LAST) if channels_last and torch.is_tensor(clip) else clip

    windows = batch["window"].to(device, non_blocking=True)
    return clips_from_windows(
        windows,
        batch["crop"],
        batch["flip"],
        batch["frames"],
        size,
        negate_flow_x=flow_sign,
        channels_last=channels_last,
    )


def _as_list(values: torch.Tensor | Sequence) -> list:
    return values.tolist() if isinstance(values, torch.Tensor) else list(values)

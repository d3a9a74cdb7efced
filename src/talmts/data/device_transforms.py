"""The clip transforms of data/transforms.py on the training device, for a loader that ships uint8 windows.

With ``data.transform: device`` the loader workers only copy each window's stored uint8 frames (4x fewer bytes
than float32 clips, and no per-pixel arithmetic on the host) and draw the crop corner and the flip exactly as
:func:`talmts.data.transforms.make_clip` does (same function, same RNG, same order). :func:`clips_from_windows`
then crops, flips (negating flow x), normalises and pads on the device with torch ops and gives ``make_clip``'s
values bit for bit: the same float32 multiply by 2/255 and subtraction of 1, the same exact negation and padding.
:func:`window_patches` gives the same values already cut into FSA's patches (the cached-feature head's input).
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
    cut, mirrored, real = _cut(windows, crops, flips, frames, size)  # [B, L, size, size, C] uint8
    clip = _normalised(cut, mirrored, real, negate_flow_x, channel_axis=4)
    clip = clip.permute(0, 4, 1, 2, 3)  # [B, C, L, size, size], already channels-last 3D in memory
    return clip if channels_last else clip.contiguous()


def window_patches(
    windows: torch.Tensor,
    crops: torch.Tensor | Sequence[Sequence[int]],
    flips: torch.Tensor | Sequence[bool],
    frames: torch.Tensor | Sequence[int],
    size: int,
    patch: int,
    *,
    negate_flow_x: bool,
) -> torch.Tensor:
    """``patchify(clips_from_windows(...), patch)`` bit for bit, cut before the arithmetic: uint8 windows
    [B, L, S, S, C] -> float32 patches [B * L, (size/patch)^2, C * patch * patch] (talmts.models.transformer).

    Reordering the pixels into patches is a copy; done on the uint8 frames it moves a quarter of the bytes, and the
    float clip is never made (FSA reads its input only as these patches)."""
    if size % patch:
        raise ValueError(f"patch size {patch} must divide the frame size {size}")
    cut, mirrored, real = _cut(windows, crops, flips, frames, size)  # [B, L, size, size, C] uint8
    b, length, _, _, channels = cut.shape
    g = size // patch
    grid = cut.view(b, length, g, patch, g, patch, channels).permute(0, 1, 2, 4, 6, 3, 5)  # [B, L, gh, gw, C, p, p]
    tokens = grid.reshape(b, length, g * g, channels, patch * patch)
    x = _normalised(tokens, mirrored, real, negate_flow_x, channel_axis=3)
    return x.reshape(b * length, g * g, channels * patch * patch)


def _cut(
    windows: torch.Tensor,
    crops: torch.Tensor | Sequence[Sequence[int]],
    flips: torch.Tensor | Sequence[bool],
    frames: torch.Tensor | Sequence[int],
    size: int,
) -> tuple[torch.Tensor, list[bool], torch.Tensor]:
    """Each window cropped and mirrored as drawn, still uint8 [B, L, size, size, C]; the flips; the real frames."""
    if windows.dtype != torch.uint8 or windows.ndim != 5:
        raise ValueError(f"windows must be uint8 [B, L, S, S, C], got {windows.dtype} {list(windows.shape)}")
    corners = [(int(y), int(x)) for y, x in _as_list(crops)]
    mirrored = [bool(f) for f in _as_list(flips)]
    real = torch.as_tensor(_as_list(frames), dtype=torch.long, device=windows.device)
    b, _, height, width, _ = windows.shape
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
    )  # crop and mirror before the arithmetic, on a quarter of the bytes
    return cut, mirrored, real


def _normalised(
    x: torch.Tensor, mirrored: list[bool], real: torch.Tensor, negate_flow_x: bool, *, channel_axis: int
) -> torch.Tensor:
    """uint8 pixels [B, L, ...] -> float32 as normalize() (x * (2/255) - 1); a mirrored window's channel 0
    negated when ``negate_flow_x``; the frames (axis 1) past each window's real ones set to PAD_VALUE."""
    out = x.float().mul_(2.0 / 255.0).sub_(1.0)
    if negate_flow_x and any(mirrored):
        shape = [1] * out.ndim
        shape[0], shape[channel_axis] = out.shape[0], out.shape[channel_axis]
        sign = torch.ones(shape, device=out.device)
        sign.select(channel_axis, 0)[torch.tensor(mirrored, device=out.device)] = -1.0
        out.mul_(sign)  # multiplying by +-1 is exact
    pad = torch.arange(out.shape[1], device=out.device)[None, :] >= real[:, None]  # [B, L]
    out.masked_fill_(pad.view(*pad.shape, *[1] * (out.ndim - 2)), PAD_VALUE)
    return out


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

"""Clip transforms: crop, flip, normalise, pad. Arrays in, arrays out; random draws come from torch's RNG.

Stored frames are uint8 [T, S, S, C] (C = 3 RGB or 2 flow x, y with 128 = no motion). The network takes
float32 [C, T, H, W] in [-1, 1] (x / 255 * 2 - 1). Padding past the end of a video is 0 in that normalised
space for training and testing alike (mid-grey for RGB, no motion for flow).
"""

from __future__ import annotations

import numpy as np
import torch

from talmts.errors import InputError

PAD_VALUE = 0.0  # normalised padding value (AFSD pads -1 in training and 0 at test; we use 0 for both)


def random_crop_box(height: int, width: int, size: int) -> tuple[int, int]:
    """Top-left corner of a uniformly drawn ``size`` x ``size`` crop."""
    _check_size(height, width, size)
    y = int(torch.randint(0, height - size + 1, ()).item())
    x = int(torch.randint(0, width - size + 1, ()).item())
    return y, x


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int]:
    """Top-left corner of the centred crop (rounded towards the top-left, as ``(S - size) // 2``)."""
    _check_size(height, width, size)
    return (height - size) // 2, (width - size) // 2


def _check_size(height: int, width: int, size: int) -> None:
    if size > height or size > width:
        raise InputError(f"crop {size} is larger than the stored frames ({height}x{width}); lower data.frame_size")


def normalize(frames: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, C] -> float32 [C, T, H, W] in [-1, 1]."""
    x = np.ascontiguousarray(np.moveaxis(np.asarray(frames), -1, 0), dtype=np.float32)
    x *= 2.0 / 255.0
    x -= 1.0
    return x


def flip_horizontal(clip: np.ndarray, *, negate_flow_x: bool) -> np.ndarray:
    """Mirror a normalised clip [C, T, H, W] left-right; for flow, optionally negate the x channel.

    Mirroring the picture reverses horizontal motion, so the physically right flow of the flipped clip has -x.
    """
    out = np.ascontiguousarray(clip[..., ::-1])
    if negate_flow_x:
        out[0] *= -1.0
    return out


def pad_time(clip: np.ndarray, length: int, value: float = PAD_VALUE) -> np.ndarray:
    """Pad a normalised clip [C, t, H, W] at the end of time to [C, length, H, W]."""
    c, t, h, w = clip.shape
    if t > length:
        raise ValueError(f"clip has {t} frames, more than the window length {length}")
    if t == length:
        return clip
    out = np.full((c, length, h, w), value, np.float32)
    out[:, :t] = clip
    return out


def make_clip(
    frames: np.ndarray,
    offset: int,
    length: int,
    size: int,
    *,
    train: bool,
    flip: bool = True,
    flow: bool = False,
    negate_flow_x: bool = True,
) -> torch.Tensor:
    """Cut one network input from a stored video: uint8 [N, S, S, C] -> float32 tensor [C, length, size, size].

    Training: a random crop and (when ``flip``) a horizontal flip with probability 0.5; otherwise the centre
    crop. Frames past the video's end are padded with :data:`PAD_VALUE`.
    """
    n, h, w, _ = frames.shape
    (y, x), flipped = draw_clip_params(h, w, size, train=train, flip=flip)
    stop = min(offset + length, n)
    clip = normalize(frames[offset:stop, y : y + size, x : x + size])  # [t, S, S, C] -> [C, t, size, size]
    if flipped:
        clip = flip_horizontal(clip, negate_flow_x=flow and negate_flow_x)
    return torch.from_numpy(pad_time(clip, length))


def draw_clip_params(height: int, width: int, size: int, *, train: bool, flip: bool) -> tuple[tuple[int, int], bool]:
    """((y, x) crop corner, flipped) of one clip, drawn from torch's RNG in :func:`make_clip`'s order.

    The uint8 window path (data/device_transforms.py) draws with this function too, so that the same seed gives
    the same crops and flips whichever side does the arithmetic.
    """
    box = random_crop_box(height, width, size) if train else center_crop_box(height, width, size)
    flipped = bool(train and flip and torch.rand(()).item() < 0.5)
    return box, flipped

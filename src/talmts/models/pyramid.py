"""Refined Feature Pyramids (RFP, paper III-B) and the frame-level feature f_ca.

Bottom-up as AFSD: two-endpoint variant (THUMOS) = level 0 from Mixed_4f and level 1 from Mixed_5c by 3D convs
whose kernel ``[1, h, w]`` spans the endpoint's whole spatial map, then k3/s2 1D convs from the *raw* level 1;
single-endpoint variant (ActivityNet) = level 0 from Mixed_5c, then k3/s2 convs. Top-down, parameter-free:
with RFP every level is interpolated into the next lower one from the top down (FPN order, each add sees the
already refined level above); without RFP only AFSD's single add, level 1 into level 0 (two-endpoint only).
"""

from __future__ import annotations

import math
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from talmts.models.same import SameConv1d

Interp = Literal["nearest", "linear"]


def conv_gn_relu(in_channels: int, out_channels: int, kernel: int, stride: int, groups: int) -> nn.Sequential:
    """``[B, C_in, L] -> [B, C_out, ceil(L / stride)]``."""
    return nn.Sequential(
        SameConv1d(in_channels, out_channels, kernel, stride), nn.GroupNorm(groups, out_channels), nn.ReLU(inplace=True)
    )


def interpolate(x: Tensor, size: int, mode: Interp) -> Tensor:
    """Resample ``[B, C, L] -> [B, C, size]`` (linear: ``align_corners=False``, sample centres stay aligned)."""
    if mode == "linear":
        return F.interpolate(x, size=size, mode="linear", align_corners=False)
    return F.interpolate(x, size=size, mode="nearest")


def endpoint_shape(name: str, clip_frames: int, frame_size: int) -> tuple[int, int, int]:
    """``(t, h, w)`` of an I3D endpoint with TF "same" padding: Mixed_4f is /4 in time and /16 in space,
    Mixed_5c /8 and /32."""
    t_div, s_div = {"Mixed_4f": (4, 16), "Mixed_5c": (8, 32)}[name]
    side = math.ceil(frame_size / s_div)
    return math.ceil(clip_frames / t_div), side, side


class SpatialCollapse(nn.Module):
    """3D conv ``[1, h, w]`` (no spatial padding) + GN + ReLU: ``[B, C_in, t, h, w] -> [B, C, t]``."""

    def __init__(self, in_channels: int, out_channels: int, hw: tuple[int, int], groups: int, endpoint: str) -> None:
        super().__init__()
        self.endpoint, self.hw = endpoint, hw
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=(1, *hw), bias=True)
        self.norm = nn.GroupNorm(groups, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.hw:
            raise ValueError(
                f"{self.endpoint} has spatial size {tuple(x.shape[-2:])}, but the pyramid was built for {self.hw}: "
                "build the detector with the frame size it is fed (data.frame_size)"
            )
        return F.relu(self.norm(self.collapse(x)), inplace=True)

    def collapse(self, x: Tensor) -> Tensor:
        """``self.conv`` as one matrix product: its kernel spans the whole map, so each time step is a dot product
        of the flattened ``[C_in, h, w]`` with each filter (faster than mkldnn's Conv3d at these shapes on a CPU,
        backward included; the parameters stay the Conv3d's)."""
        b, c, t, h, w = x.shape
        steps = x.permute(0, 2, 1, 3, 4).reshape(b * t, c * h * w)  # [B*t, C_in*h*w], (c, y, x) as the kernel
        y = F.linear(steps, self.conv.weight.reshape(self.conv.out_channels, -1), self.conv.bias)
        return y.view(b, t, -1).transpose(1, 2)  # [B, C, t]


class FeaturePyramid(nn.Module):
    """``features {endpoint: [B, C_e, t, h, w]} -> [level_0 [B, C, t_0], ..., level_{L-1}]``."""

    def __init__(
        self,
        variant: Literal["two_endpoint", "single_endpoint"],
        endpoint_channels: dict[str, int],
        endpoint_hw: dict[str, tuple[int, int]],
        channels: int,
        levels: int,
        groups: int,
        refine: bool,
        mode: Interp = "nearest",
    ) -> None:
        super().__init__()
        self.variant, self.refine, self.mode = variant, refine, mode
        self.endpoints = ["Mixed_4f", "Mixed_5c"] if variant == "two_endpoint" else ["Mixed_5c"]
        if levels < len(self.endpoints):
            raise ValueError(f"model.levels={levels} is too few for the {variant} pyramid")
        self.lateral = nn.ModuleList(
            SpatialCollapse(endpoint_channels[e], channels, endpoint_hw[e], groups, e) for e in self.endpoints
        )
        self.down = nn.ModuleList(
            conv_gn_relu(channels, channels, 3, 2, groups) for _ in range(levels - len(self.endpoints))
        )

    def forward(self, features: dict[str, Tensor]) -> list[Tensor]:
        levels = [lat(features[e]) for lat, e in zip(self.lateral, self.endpoints)]
        x = levels[-1]  # bottom-up continues from the raw (not yet refined) last lateral level, as AFSD
        for conv in self.down:
            x = conv(x)
            levels.append(x)
        if self.refine:
            return top_down(levels, self.mode)
        if self.variant == "two_endpoint":  # AFSD: one add, level 1 into level 0
            levels[0] = levels[0] + interpolate(levels[1], levels[0].shape[-1], "nearest")
        return levels


def top_down(levels: list[Tensor], mode: Interp) -> list[Tensor]:
    """RFP's parameter-free top-down pass: from the highest level down, ``p[l-1] += resample(p[l])`` where ``p[l]``
    is already refined (so the top level's semantics reach level 0)."""
    out = list(levels)
    for i in range(len(out) - 1, 0, -1):
        out[i - 1] = out[i - 1] + interpolate(out[i], out[i - 1].shape[-1], mode)
    return out


class FrameFeature(nn.Module):
    """f_ca: level 0 resampled to the clip length, then AFSD's 3-layer conv stack (k3, k3, k1; GN; ReLU).

    ``[B, C, t_0] -> [B, C, T]``; channels ``[:C/2]`` serve start regions, ``[C/2:]`` end regions.
    """

    def __init__(self, channels: int, groups: int, mode: Interp = "nearest") -> None:
        super().__init__()
        self.mode = mode
        self.convs = nn.Sequential(
            conv_gn_relu(channels, channels, 3, 1, groups),
            conv_gn_relu(channels, channels, 3, 1, groups),
            conv_gn_relu(channels, channels, 1, 1, groups),
        )

    def forward(self, level0: Tensor, clip_frames: int) -> Tensor:
        return self.convs(interpolate(level0, clip_frames, self.mode))

"""Inference-only rewrites of I3D for GPU throughput: the same function, other kernels.

Each rewrite swaps modules in a copy of an eval-mode :class:`InceptionI3d` and gives the same values up to float
rounding (tests/test_i3d_rewrites.py checks each against the plain model). They are levers of ``talmts bench``,
measured one by one in docs/PERFORMANCE.md:

- ``stem_s2d``: Conv3d_1a (7x7x7, stride 2, 3 input channels) as space-to-depth + a 4x4x4 stride-1 conv on
  24 channels. Three input channels leave tensor cores mostly idle; 24 fill them, at the cost of more
  multiply-adds (the zero eighth tap).
- ``pointwise_matmul``: every 1x1x1 convolution as a matmul over the channel dimension (cuBLAS, and under
  ``torch.compile`` a GEMM whose bias/ReLU epilogue can fuse) instead of a 3D convolution kernel.
- ``fused_pools``: the "same" max pools as :class:`~talmts.models.same.FusedMaxPool` (zero padding + maxima of
  strided slices), which ``torch.compile`` fuses into one element-wise kernel per pool (use it compiled).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from talmts.models.i3d import InceptionI3d, InceptionModule, Unit3D
from talmts.models.same import FusedMaxPool, MaxPool3dSame, same_padding


class StemSpaceToDepth(nn.Module):
    """A stride-2 Unit3D with a 7x7x7 kernel as a stride-1 4x4x4 conv over 2x2x2 space-to-depth blocks.

    With the kernel zero-extended to 8 taps, out[i] = sum_{a<4, b<2} w[2a + b] x[2(i + a) + b]: tap ``a`` of a
    stride-1 conv over blocks of two input elements, block offset ``b`` as a channel.
    """

    def __init__(self, unit: Unit3D) -> None:
        super().__init__()
        if unit.kernel != (7, 7, 7) or unit.stride != (2, 2, 2):
            raise ValueError(f"StemSpaceToDepth needs a 7x7x7 stride-2 unit, got {unit.kernel} / {unit.stride}")
        w = unit.conv3d.weight.detach()
        c_out, c_in = w.shape[:2]
        w8 = F.pad(w, (0, 1, 0, 1, 0, 1))  # [O, C, 8, 8, 8]; the 8th tap is zero
        w8 = w8.reshape(c_out, c_in, 4, 2, 4, 2, 4, 2).permute(0, 1, 3, 5, 7, 2, 4, 6)  # [O, C, bt, bh, bw, a..]
        self.weight = nn.Parameter(w8.reshape(c_out, c_in * 8, 4, 4, 4).contiguous(), requires_grad=False)
        bias = unit.conv3d.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.bn, self.relu = unit.bn, unit.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        channels_last = x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and c > 1
        outs = [-(-n // 2) for n in x.shape[2:]]
        befores = [same_padding(n, 7, 2)[0] for n in x.shape[2:]]
        afters = [2 * o + 6 - n - p for n, o, p in zip(x.shape[2:], outs, befores)]  # 2 * (out + 3) in all
        x = F.pad(x, (befores[2], afters[2], befores[1], afters[1], befores[0], afters[0]))
        lt, lh, lw = (o + 3 for o in outs)
        if channels_last:  # -> [B, Lt, Lh, Lw, C*8] in memory, viewed as NCDHW (channel c*8 + bt*4 + bh*2 + bw)
            x = x.permute(0, 2, 3, 4, 1).reshape(b, lt, 2, lh, 2, lw, 2, c)
            x = x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, lt, lh, lw, c * 8).permute(0, 4, 1, 2, 3)
        else:
            x = x.reshape(b, c, lt, 2, lh, 2, lw, 2).permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * 8, lt, lh, lw)
        x = F.conv3d(x, self.weight, self.bias)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class PointwiseMatmul(nn.Module):
    """A 1x1x1, stride-1 convolution (+ the unit's BN and ReLU) as a matmul on the channels-last view."""

    def __init__(self, conv: nn.Conv3d, bn: nn.Module | None = None, relu: bool = False) -> None:
        super().__init__()
        if conv.kernel_size != (1, 1, 1) or conv.stride != (1, 1, 1) or conv.groups != 1:
            raise ValueError(f"PointwiseMatmul needs a 1x1x1 stride-1 conv, got {conv}")
        self.weight = nn.Parameter(conv.weight.detach().flatten(1).clone(), requires_grad=False)  # [O, C]
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.bn, self.relu = bn, relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, T, H, W] -> [B, T, H, W, C] (a view when x is channels-last) -> matmul -> back as a view
        x = F.linear(x.movedim(1, -1), self.weight, self.bias).movedim(-1, 1)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


def rewrite_for_speed(
    model: InceptionI3d, *, stem_s2d: bool = False, pointwise_matmul: bool = False, fused_pools: bool = False
) -> InceptionI3d:
    """An eval-mode copy of ``model`` with the chosen rewrites; the original is not touched."""
    out = copy.deepcopy(model).eval()
    if stem_s2d and isinstance(getattr(out, "Conv3d_1a_7x7", None), Unit3D):
        out.Conv3d_1a_7x7 = StemSpaceToDepth(out.Conv3d_1a_7x7)
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if pointwise_matmul and isinstance(child, Unit3D) and child.kernel == child.stride == (1, 1, 1):
                setattr(parent, name, PointwiseMatmul(child.conv3d, child.bn, child.relu))
            elif pointwise_matmul and isinstance(parent, InceptionModule) and name == "pointwise":
                parent.pointwise = PointwiseMatmul(child)  # type: ignore[arg-type]  # the block applies the ReLU
            elif fused_pools and isinstance(child, MaxPool3dSame):
                setattr(parent, name, FusedMaxPool(child.kernel, child.stride))
    return out

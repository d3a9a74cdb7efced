"""Inception-I3D (Carreira & Zisserman 2017) up to Mixed_5c, with optional Kinetics logits.

The parameter names follow the pytorch-i3d state_dict layout (``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_3b.b1b.bn.running_mean``, ``logits.conv3d.bias``, ...) so its public checkpoints load strictly.

Padding is TensorFlow "SAME" (models/same.py). Instead of padding every activation with ``F.pad`` (a full copy),
the symmetric part of the padding is passed to the convolution / pooling itself; only an asymmetric remainder costs
an ``F.pad`` (for I3D that is the 3-channel input of Conv3d_1a on even sizes) or is expressed with ``ceil_mode``
for the max pools.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from talmts.models.same import MaxPool3dSame, Triple, same_pads

ENDPOINTS: tuple[str, ...] = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
)

# Inception branch widths: (b0 1x1, b1a 1x1, b1b 3x3, b2a 1x1, b2b 3x3, b3b 1x1 after the 3x3x3 max pool).
INCEPTION_WIDTHS: dict[str, tuple[int, ...]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# (kernel, stride) of the stem convolutions and of the max pools between the Inception blocks.
STEM_CONVS: dict[str, tuple[int, Triple, Triple]] = {
    "Conv3d_1a_7x7": (64, (7, 7, 7), (2, 2, 2)),
    "Conv3d_2b_1x1": (64, (1, 1, 1), (1, 1, 1)),
    "Conv3d_2c_3x3": (192, (3, 3, 3), (1, 1, 1)),
}
POOLS: dict[str, tuple[Triple, Triple]] = {
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}

BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def scaled_channels(channels: int, width: float) -> int:
    """Channel count under a width multiplier: rounded to a multiple of 8, at least 8; exact at width 1."""
    if width == 1.0:
        return channels
    return max(8, int(round(channels * width / 8.0)) * 8)


class Unit3D(nn.Module):
    """Conv3d (TF-same padding) -> BatchNorm3d (eps 1e-3, momentum 0.01) -> ReLU; pytorch-i3d names."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        *,
        use_bn: bool = True,
        use_bias: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.relu = relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=use_bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM) if use_bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_pads(x.shape[2:], self.kernel, self.stride)
        extra = [after - before for before, after in pads]
        if any(extra):  # only the asymmetric remainder is padded explicitly (zeros, at the end)
            x = F.pad(x, (0, extra[2], 0, extra[1], 0, extra[0]))
        conv = self.conv3d
        x = F.conv3d(x, conv.weight, conv.bias, self.stride, tuple(p[0] for p in pads))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels (b0, b1a->b1b, b2a->b2b, b3a pool->b3b)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3b)
        self.out_channels = w0 + w1b + w2b + w3b
        # set by InceptionI3d.fuse_pointwise (inference only): b0, b1a and b2a as one 1x1x1 conv; not in state_dict
        self.pointwise: nn.Conv3d | None = None
        self.pointwise_split = (w0, w1a, w2a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pointwise is not None:  # one read of x for the three 1x1x1 convolutions
            y0, y1, y2 = torch.split(F.relu(self.pointwise(x)), self.pointwise_split, dim=1)  # views
            branches = [y0, self.b1b(y1), self.b2b(y2), self.b3b(self.b3a(x))]
        else:
            branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))]
        return torch.cat(branches, dim=1)  # [B, C_in, T, H, W] -> [B, out_channels, T, H, W]

    @torch.no_grad()
    def fuse_pointwise_(self) -> None:
        """In place: replace b0, b1a and b2a (BN already folded) by one conv with their outputs concatenated."""
        units = [self.b0, self.b1a, self.b2a]
        if any(u is None or u.bn is not None or u.kernel != (1, 1, 1) for u in units):
            raise RuntimeError("fuse_pointwise_ needs the BatchNorm folded first (InceptionI3d.fold_batchnorm)")
        ref = units[0].conv3d.weight
        weight = torch.cat([u.conv3d.weight for u in units])  # [w0 + w1a + w2a, C_in, 1, 1, 1]
        bias = torch.cat(
            [u.conv3d.bias if u.conv3d.bias is not None else ref.new_zeros(u.conv3d.out_channels) for u in units]
        )
        fused = nn.Conv3d(weight.shape[1], weight.shape[0], 1, bias=True).to(device=ref.device, dtype=ref.dtype)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        self.pointwise = fused
        self.b0 = self.b1a = self.b2a = None  # type: ignore[assignment]


class InceptionI3d(nn.Module):
    """I3D backbone. ``forward`` returns the final endpoint, or [B, num_classes] time-averaged logits."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 400,
        width: float = 1.0,
        final_endpoint: str = "Mixed_5c",
        with_logits: bool = False,
        freeze_bn: bool = True,
        dropout: float = 0.5,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if final_endpoint not in ENDPOINTS:
            raise ValueError(f"final_endpoint {final_endpoint!r} is not one of {', '.join(ENDPOINTS)}")
        if with_logits and final_endpoint != "Mixed_5c":
            raise ValueError("with_logits=True needs final_endpoint='Mixed_5c' (the logits read Mixed_5c)")
        if in_channels < 1 or width <= 0:
            raise ValueError(f"in_channels must be >= 1 and width > 0, got {in_channels} and {width}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.width = width
        self.final_endpoint = final_endpoint
        self.with_logits = with_logits
        self.freeze_bn = freeze_bn
        self.checkpoint = checkpoint
        self.endpoints = ENDPOINTS[: ENDPOINTS.index(final_endpoint) + 1]

        channels = in_channels
        for name in self.endpoints:
            if name in STEM_CONVS:
                out, kernel, stride = STEM_CONVS[name]
                self.add_module(name, Unit3D(channels, scaled_channels(out, width), kernel, stride))
            elif name in POOLS:
                self.add_module(name, MaxPool3dSame(*POOLS[name]))
            else:
                widths = tuple(scaled_channels(c, width) for c in INCEPTION_WIDTHS[name])
                self.add_module(name, InceptionModule(channels, widths))
            channels = self.endpoint_channels(name, width, in_channels)

        if with_logits:
            self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=(1, 1, 1))
            self.dropout = nn.Dropout(dropout)
            self.logits = Unit3D(channels, num_classes, use_bn=False, use_bias=True, relu=False)
        if freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm3d):
                    module.weight.requires_grad_(False)
                    module.bias.requires_grad_(False)
            self.train(self.training)

    @staticmethod
    def endpoint_channels(name: str, width: float = 1.0, in_channels: int = 3) -> int:
        """Channels of an endpoint's output (832 for Mixed_4f, 1024 for Mixed_5c at width 1)."""
        if name not in ENDPOINTS:
            raise ValueError(f"unknown I3D endpoint {name!r}; valid: {', '.join(ENDPOINTS)}")
        for prev in reversed(ENDPOINTS[: ENDPOINTS.index(name) + 1]):
            if prev in STEM_CONVS:
                return scaled_channels(STEM_CONVS[prev][0], width)
            if prev in INCEPTION_WIDTHS:
                w0, _, w1b, _, w2b, w3b = (scaled_channels(c, width) for c in INCEPTION_WIDTHS[prev])
                return w0 + w1b + w2b + w3b
        return in_channels

    def train(self, mode: bool = True) -> InceptionI3d:
        super().train(mode)
        if self.freeze_bn:  # frozen BN keeps using its running statistics, as AFSD
            for module in self.modules():
                if isinstance(module, nn.BatchNorm3d):
                    module.eval()
        return self

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        block = getattr(self, name)
        if self.checkpoint and self.training and torch.is_grad_enabled() and name.startswith("Mixed"):
            return activation_checkpoint(block, x, use_reentrant=False)
        return block(x)

    def extract_features(self, x: torch.Tensor, endpoints: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Run up to the last requested endpoint; [B, C, T, H, W] -> {endpoint: [B, C_e, T_e, H_e, W_e]}.

        ``endpoints=None`` returns every endpoint built; otherwise only the named ones are kept (less memory).
        """
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"I3D expects [B, {self.in_channels}, T, H, W], got {list(x.shape)}")
        wanted = set(self.endpoints if endpoints is None else endpoints)
        unknown = wanted.difference(self.endpoints)
        if unknown:
            raise ValueError(f"endpoints {sorted(unknown)} are not built (final_endpoint={self.final_endpoint})")
        last = max(self.endpoints.index(n) for n in wanted)
        features: dict[str, torch.Tensor] = {}
        for name in self.endpoints[: last + 1]:
            x = self._run(name, x)
            if name in wanted:
                features[name] = x
        return features

    def classify(self, mixed_5c: torch.Tensor) -> torch.Tensor:
        """Kinetics head: (2,7,7) average pool, dropout, 1x1x1 conv; [B, 1024, T, H, W] -> [B, classes, T-1]."""
        if not self.with_logits:
            raise RuntimeError("this I3D was built without logits (with_logits=False)")
        logits = self.logits(self.dropout(self.avg_pool(mixed_5c)))
        return logits.mean(dim=(3, 4))  # spatial is 1x1 at 224 px; the mean also tolerates larger inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.extract_features(x, [self.final_endpoint])
        out = feats[self.final_endpoint]
        if self.with_logits:
            return self.classify(out).mean(dim=2)  # logits averaged over time: [B, num_classes]
        return out

    @torch.no_grad()
    def fold_batchnorm(self) -> InceptionI3d:
        """An inference copy with every BN folded into its conv (conv gains a bias; the BN is removed).

        Matches this model in eval mode; the copy is returned in eval mode and should not be trained.
        """
        folded = copy.deepcopy(self).eval()
        for unit in folded.modules():
            if not isinstance(unit, Unit3D) or unit.bn is None:
                continue
            bn, conv = unit.bn, unit.conv3d
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [C_out]
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            new_conv = nn.Conv3d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding=0, bias=True
            ).to(device=conv.weight.device, dtype=conv.weight.dtype)
            new_conv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1, 1))
            new_conv.bias.copy_(bias)
            unit.conv3d = new_conv
            unit.bn = None
        return folded

    def fuse_pointwise(self) -> InceptionI3d:
        """An inference copy with BN folded and, in every Inception block, the three 1x1x1 convolutions that read
        the block input (b0, b1a, b2a) fused into one: the input is read once instead of three times.

        Matches this model in eval mode (same values up to float rounding); the copy's state_dict has
        ``Mixed_*.pointwise.*`` in place of those three units, so it is for inference, not for saving.
        """
        fused = self.fold_batchnorm()
        for block in fused.modules():
            if isinstance(block, InceptionModule) and block.pointwise is None:
                block.fuse_pointwise_()
        return fused

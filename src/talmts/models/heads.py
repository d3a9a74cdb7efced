"""Coarse heads (paper eq. 3-4) and the refinement branches (eq. 6, AFSD's ProposalBranch).

All weights are shared over pyramid levels; each level runs separately because GroupNorm statistics are per level
(as AFSD). Tensors leave the heads time-major: ``[B, t, channels]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from talmts.models.boundary_pool import boundary_max_pool
from talmts.models.pyramid import conv_gn_relu
from talmts.models.same import SameConv1d


class ScaleExp(nn.Module):
    """``exp(s * x)`` with a learnable scalar ``s`` (init 1): non-negative distances with a per-level range."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([init]))

    def forward(self, x: Tensor) -> Tensor:
        return torch.exp(x * self.scale)


class CoarseHead(nn.Module):
    """Conv1 = loc tower on f, Conv2 = conf tower on f_mts = [f, f_l], Conv3 = loc head, Conv4 = conf head."""

    def __init__(self, channels: int, cls_channels: int, num_logits: int, levels: int, groups: int) -> None:
        super().__init__()
        self.loc_tower = nn.Sequential(
            conv_gn_relu(channels, channels, 3, 1, groups), conv_gn_relu(channels, channels, 3, 1, groups)
        )
        self.conf_tower = nn.Sequential(
            conv_gn_relu(cls_channels, channels, 3, 1, groups), conv_gn_relu(channels, channels, 3, 1, groups)
        )
        self.loc_head = SameConv1d(channels, 2, 3)
        self.conf_head = SameConv1d(channels, num_logits, 3)
        self.scales = nn.ModuleList(ScaleExp() for _ in range(levels))

    def forward(self, f: Tensor, f_mts: Tensor, level: int, multiplier: float = 1.0) -> tuple[Tensor, ...]:
        """``f [B, C, t]``, ``f_mts [B, C_cls, t]`` -> loc_feat, conf_feat ``[B, C, t]``, loc ``[B, t, 2]`` (clip
        frames, >= 0), conf ``[B, t, C+1]``."""
        loc_feat, conf_feat = self.loc_tower(f), self.conf_tower(f_mts)
        loc = self.scales[level](self.loc_head(loc_feat)) * multiplier
        return loc_feat, conf_feat, loc.transpose(1, 2), self.conf_head(conf_feat).transpose(1, 2)


class ProposalBranch(nn.Module):
    """AFSD's refinement of one branch: ``[B, C, t] -> [B, C, t]``.

    fm_short (k1) keeps the position's own feature; ``lr`` (k1, 2C channels: C start + C end) is boundary-pooled
    over level-unit segments; the frame-level feature f_a, pooled over frame-unit segments (done once outside, it
    is the same for both branches), goes through roi_conv (k1); the three are concatenated and fused (k1).
    """

    def __init__(self, channels: int, frame_channels: int, groups: int) -> None:
        super().__init__()
        self.fm_short = conv_gn_relu(channels, channels, 1, 1, groups)
        self.lr = conv_gn_relu(channels, 2 * channels, 1, 1, groups)
        self.roi_conv = conv_gn_relu(frame_channels, channels, 1, 1, groups)
        self.proposal_conv = conv_gn_relu(4 * channels, channels, 1, 1, groups)

    def forward(self, feat: Tensor, pooled_frame: Tensor, segments: Tensor) -> Tensor:
        """``feat [B, C, t]``, ``pooled_frame [B, C_a, t]``, level-unit ``segments [B, t, 4]`` -> ``[B, C, t]``."""
        short = self.fm_short(feat)
        pooled_level = boundary_max_pool(self.lr(feat), segments)  # [B, 2C, t]
        fused = torch.cat([self.roi_conv(pooled_frame), pooled_level, short], dim=1)  # [B, 4C, t]
        return self.proposal_conv(fused)


class RefinedHead(nn.Module):
    """Both branches and their heads: refined offsets (loc branch), refined logits (conf branch), quality (loc)."""

    def __init__(self, channels: int, frame_channels: int, num_logits: int, groups: int) -> None:
        super().__init__()
        self.loc_branch = ProposalBranch(channels, frame_channels, groups)
        self.conf_branch = ProposalBranch(channels, frame_channels, groups)
        self.prop_loc_head = SameConv1d(channels, 2, 1)
        self.prop_conf_head = SameConv1d(channels, num_logits, 1)
        self.quality_head = SameConv1d(channels, 1, 3)

    def forward(
        self, loc_feat: Tensor, conf_feat: Tensor, pooled_frame: Tensor, segments: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """-> prop_loc ``[B, t, 2]``, prop_conf ``[B, t, C+1]``, quality ``[B, t]``."""
        loc_prop = self.loc_branch(loc_feat, pooled_frame, segments)
        conf_prop = self.conf_branch(conf_feat, pooled_frame, segments)
        return (
            self.prop_loc_head(loc_prop).transpose(1, 2),
            self.prop_conf_head(conf_prop).transpose(1, 2),
            self.quality_head(loc_prop)[:, 0],
        )

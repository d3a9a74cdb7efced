"""Spatial-Temporal Transformer (STT, paper eq. 1-2): a factorised (ViViT model 2) encoder and its pyramid.

Tokens (``model.stt.tokens``):
- ``features``: the cells of an I3D endpoint (Mixed_4f: T/4 steps x (S/16)^2 cells of 832 channels);
- ``frames``: raw ``D x D`` frame patches, as FSA's (T steps x (S/D)^2 patches).
Spatial encoder within each time step (steps folded into the batch), mean over the step's tokens, learned temporal
position embedding, temporal encoder over the T_j steps, Linear to the pyramid width: f_t ``[B, C, T_j]``.
:class:`STTPyramid` then brings f_t to the pyramid's lengths with k3 1D convs (GN, ReLU).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from talmts.config import STTConfig
from talmts.models.pyramid import conv_gn_relu, interpolate
from talmts.models.transformer import Encoder, init_transformer, patchify, positional


class SpatialTemporalTransformer(nn.Module):
    """``input -> f_t [B, C, T_j]``; input is an endpoint map ``[B, C_e, T_j, h, w]`` or the clip ``[B, C, T, H, W]``.

    ``token_dim`` is the width of one token (C_e, or C * D * D for frame patches), ``spatial_tokens`` the tokens
    per step and ``steps`` the expected T_j (the position embeddings are learned for exactly these counts).
    """

    def __init__(self, cfg: STTConfig, token_dim: int, spatial_tokens: int, steps: int, out_channels: int) -> None:
        super().__init__()
        self.tokens, self.patch = cfg.tokens, cfg.patch
        self.spatial_tokens, self.steps = spatial_tokens, steps
        self.embed = nn.Linear(token_dim, cfg.dim)
        self.spatial = Encoder(cfg.dim, cfg.heads, cfg.spatial_layers, cfg.mlp_ratio, cfg.dropout)
        self.temporal = Encoder(cfg.dim, cfg.heads, cfg.temporal_layers, cfg.mlp_ratio, cfg.dropout)
        self.out = nn.Linear(cfg.dim, out_channels)
        init_transformer(self)
        self.spatial_pos = positional(spatial_tokens, cfg.dim)
        self.temporal_pos = positional(steps, cfg.dim)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t = x.shape[:3]
        if self.tokens == "frames":
            tokens = patchify(x, self.patch)  # [B*T, Z, C*D*D]
        else:
            tokens = x.flatten(3).permute(0, 2, 3, 1).reshape(b * t, -1, x.shape[1])  # [B*T_j, h*w, C_e]
        if tokens.shape[1] != self.spatial_tokens or t != self.steps:
            raise ValueError(
                f"STT was built for {self.steps} steps x {self.spatial_tokens} tokens, got {t} x {tokens.shape[1]}: "
                "build the detector with the clip length and frame size it is fed"
            )
        s = self.spatial(self.embed(tokens) + self.spatial_pos).mean(dim=1)  # [B*T_j, dim]
        f = self.temporal(s.view(b, t, -1) + self.temporal_pos)  # [B, T_j, dim]
        return self.out(f).transpose(1, 2)  # [B, C, T_j]


class STTPyramid(nn.Module):
    """``f_t [B, C, T_j] -> [f_0 [B, C, t_0], ..., f_{L-1}]`` with k3 convs + GN + ReLU.

    Entry to level 0: a stride-1 conv if ``T_j == t_0``; ``log2(T_j / t_0)`` stride-2 convs if T_j is a power-of-two
    multiple of t_0 (Mixed_4f at T=768 for the single-endpoint pyramid: 192 -> 96; frame tokens: 256 -> 64); if
    ``T_j < t_0`` (Mixed_5c into the THUMOS pyramid: 32 -> 64) a nearest upsample, then the stride-1 conv. Then one
    stride-2 conv per further level.
    """

    def __init__(self, channels: int, steps: int, level0: int, levels: int, groups: int) -> None:
        super().__init__()
        self.level0 = level0
        ratio = steps / level0
        if steps <= level0:
            self.upsample, strides = steps < level0, [1]
        elif ratio == 2 ** round(math.log2(ratio)):
            self.upsample, strides = False, [2] * round(math.log2(ratio))
        else:
            raise ValueError(f"STT length {steps} cannot be brought to the pyramid's level-0 length {level0}")
        self.entry = nn.Sequential(*(conv_gn_relu(channels, channels, 3, s, groups) for s in strides))
        self.down = nn.ModuleList(conv_gn_relu(channels, channels, 3, 2, groups) for _ in range(levels - 1))

    def forward(self, f_t: Tensor) -> list[Tensor]:
        x = interpolate(f_t, self.level0, "nearest") if self.upsample else f_t
        x = self.entry(x)
        out = [x]
        for conv in self.down:
            x = conv(x)
            out.append(x)
        return out

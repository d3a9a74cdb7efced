"""Frame-level Self Attention (FSA, paper eq. 5) and the joined frame-level feature f_a.

Each input frame is cut into ``D x D`` patches (Z = (H/D)(W/D) tokens of ``C*D*D`` values), linearly embedded,
given a learned position embedding, encoded by a pre-LN transformer *within the frame* (the T frames of every
clip are the batch dimension of attention), mean-pooled over the patches and mapped by a fully connected layer to
f_ra ``[B, C_ra, T]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from talmts.config import FSAConfig
from talmts.models.transformer import Encoder, init_transformer, patchify, positional


class FrameSelfAttention(nn.Module):
    """``clip [B, C, T, H, W] -> f_ra [B, C_ra, T]``."""

    def __init__(self, cfg: FSAConfig, in_channels: int, frame_size: int) -> None:
        super().__init__()
        if frame_size % cfg.patch:
            raise ValueError(
                f"model.fsa.patch={cfg.patch} must divide the frame size {frame_size} "
                f"(e.g. one of {[p for p in range(frame_size, 0, -1) if frame_size % p == 0][:6]})"
            )
        if cfg.out_channels % 2:
            raise ValueError(f"model.fsa.out_channels={cfg.out_channels} must be even (start and end halves)")
        self.patch = cfg.patch
        self.frame_size = frame_size
        tokens = (frame_size // cfg.patch) ** 2
        self.embed = nn.Linear(in_channels * cfg.patch * cfg.patch, cfg.dim)
        self.encoder = Encoder(cfg.dim, cfg.heads, cfg.layers, cfg.mlp_ratio, cfg.dropout)
        self.fc = nn.Linear(cfg.dim, cfg.out_channels)
        init_transformer(self)
        self.pos = positional(tokens, cfg.dim)

    def forward(self, clip: Tensor) -> Tensor:
        b, _, t, h, w = clip.shape
        if (h, w) != (self.frame_size, self.frame_size):
            raise ValueError(f"FSA was built for {self.frame_size}x{self.frame_size} frames, got {h}x{w}")
        return self.encode(patchify(clip, self.patch), b)

    def encode(self, patches: Tensor, batch: int) -> Tensor:
        """``patches [B*T, Z, C*D*D]`` (:func:`patchify` of the clip, or the same cut made from uint8 frames by
        talmts.data.device_transforms.window_patches) -> f_ra ``[B, C_ra, T]``."""
        if patches.shape[1:] != (self.pos.shape[0], self.embed.in_features):
            raise ValueError(
                f"FSA was built for {self.pos.shape[0]} patches of {self.embed.in_features} values per frame, got "
                f"{list(patches.shape[1:])}"
            )
        x = self.embed(patches) + self.pos  # [B*T, Z, dim]
        x = self.encoder(x).mean(dim=1)  # [B*T, dim]
        return self.fc(x).view(batch, -1, self.fc.out_features).transpose(1, 2)  # [B, C_ra, T]


def join_frame_features(f_ca: Tensor, f_ra: Tensor | None) -> Tensor:
    """f_a = ``[f_ca_start, f_ra_start, f_ca_end, f_ra_end]`` along channels.

    Boundary pooling reads the first half of the channels over start regions and the second half over end
    regions; interleaving keeps each source's start/end halves on their own side (a plain concatenation would turn
    all of f_ca into "start" and all of f_ra into "end"). ``f_ra=None`` returns f_ca.
    """
    if f_ra is None:
        return f_ca
    a, r = f_ca.shape[1] // 2, f_ra.shape[1] // 2
    return torch.cat([f_ca[:, :a], f_ra[:, :r], f_ca[:, a:], f_ra[:, r:]], dim=1)

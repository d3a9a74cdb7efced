"""The pre-LN transformer encoder shared by STT and FSA, and frame patching.

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels
where available). Every sequence is independent: callers fold frames (FSA, STT's spatial stage) into the batch
dimension, so attention never spans more tokens than one frame or one clip's time axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttention(nn.Module):
    """Multi-head self-attention: ``[N, S, D] -> [N, S, D]``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by the number of heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, s, d = x.shape
        qkv = self.qkv(x).view(n, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # [3, N, h, S, d_h]
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(n, s, d))


class EncoderBlock(nn.Module):
    """Pre-LN block: ``x + MSA(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    """A stack of pre-LN blocks closed by a LayerNorm (pre-LN stacks leave the residual stream unnormalised)."""

    def __init__(self, dim: int, heads: int, layers: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, mlp_ratio, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def init_transformer(module: nn.Module) -> None:
    """ViT's init: truncated normal (std 0.02) for linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def patchify(clip: Tensor, patch: int) -> Tensor:
    """Cut every frame into non-overlapping ``patch x patch`` squares.

    ``[B, C, T, H, W] -> [B * T, (H/patch) * (W/patch), C * patch * patch]`` (patches in row-major order).
    """
    b, c, t, h, w = clip.shape
    if h % patch or w % patch:
        raise ValueError(
            f"patch size {patch} must divide the frame size {h}x{w} "
            f"(set model.fsa.patch / model.stt.patch to a divisor, e.g. {_divisors(min(h, w))})"
        )
    gh, gw = h // patch, w // patch
    x = clip.reshape(b, c, t, gh, patch, gw, patch)
    x = x.permute(0, 2, 3, 5, 1, 4, 6)  # [B, T, gh, gw, C, p, p]
    return x.reshape(b * t, gh * gw, c * patch * patch)


def _divisors(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0][:6]


def positional(count: int, dim: int) -> nn.Parameter:
    """A learned position embedding ``[count, dim]`` (ViT init)."""
    p = nn.Parameter(torch.zeros(count, dim))
    nn.init.trunc_normal_(p, std=0.02)
    return p

"""Boundary max pooling (AFSD's op, TAL-MTS eq. 6) in pure PyTorch, and the segments it pools over.

Semantics (AFSD): input ``x [B, C, L]``, segments ``[B, N, 4] = (s0, s1, s2, s3)`` -> ``[B, C, N]``. The first half
of the channels is max-pooled over ``[s0, s1]`` (the start region), the second half over ``[s2, s3]`` (the end
region), both ends inclusive. Bounds are truncated to integers and clamped to ``[0, L - 1]``; an empty range
(``r < l``) reads ``x[l]``.

How: a sparse table of range arg-maxima. Level ``k`` holds, for every position ``i``, the arg-max of
``x[i : i + 2**k]``; any range ``[l, r]`` of width ``w`` is covered by the two (overlapping) windows of width
``2**floor(log2 w)`` that start at ``l`` and end at ``r``. The table is built once per input under ``no_grad``
(``floor(log2 L) + 1`` levels of ``[B, C, L]`` values and int32 indices: 8 bytes x C x L x levels, 63 MB for
C=1024, L=768) and queried for any number of segment sets, so the frame-level feature is tabled once and pooled
for every pyramid level. The output is ``x.gather(arg-max)``: autograd sends each output's gradient to exactly one
position, its (leftmost) arg-max. AFSD's CUDA backward indexes with the number of segments instead of the input
length and is wrong whenever ``L != N``; this implementation has no such coupling. A masked max over
``[B, C, N, L]`` would need 594 MB per query at C=1024, N=189, L=768.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(x: Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f"boundary pooling expects features [B, C, L], got shape {tuple(x.shape)}")
    if x.shape[1] % 2:
        raise ValueError(f"boundary pooling splits channels into start/end halves: C={x.shape[1]} must be even")


class RangeArgmax:
    """Sparse table of range arg-maxima over the last axis of ``x [B, C, L]`` (built without autograd)."""

    def __init__(self, x: Tensor) -> None:
        _check(x)
        self.x = x
        b, c, length = x.shape
        self.length = length
        with torch.no_grad():
            values = x.detach()
            index = torch.arange(length, device=x.device, dtype=torch.int32).expand(b, c, length)
            levels_v, levels_i = [values], [index]
            half = 1
            while 2 * half <= length:
                n = length - 2 * half + 1  # positions whose window of width 2*half fits
                a_v, b_v = values[..., :n], values[..., half : half + n]
                take_a = a_v >= b_v  # ties keep the left one: the result is the leftmost arg-max
                new_v = torch.where(take_a, a_v, b_v)
                new_i = torch.where(take_a, index[..., :n], index[..., half : half + n])
                # pad to L with the previous level's tail; those entries are never queried
                values = torch.cat([new_v, values[..., n:]], dim=-1)
                index = torch.cat([new_i, index[..., n:]], dim=-1)
                levels_v.append(values)
                levels_i.append(index)
                half *= 2
            self.levels = len(levels_v)
            self.values = torch.stack(levels_v, dim=2).reshape(b, c, -1)  # [B, C, levels * L]
            self.index = torch.stack(levels_i, dim=2).reshape(b, c, -1)

    def argmax(self, left: Tensor, right: Tensor) -> Tensor:
        """Arg-max of ``x[b, c, left : right + 1]`` for int64 bounds ``[B, C, N]`` with 0 <= left <= right < L."""
        width = right - left + 1
        # k = floor(log2(width)) and 2**k by integer comparisons, one per table level: exact, and ordinary ops in
        # an exported graph (a float log2 there is computed as ln(w) / ln(2), which can land below an integer)
        k, span = torch.zeros_like(width), torch.ones_like(width)
        for level in range(1, self.levels):
            wide = width >= 2**level
            k = torch.where(wide, level, k)
            span = torch.where(wide, 2**level, span)
        pos_a = k * self.length + left
        pos_b = k * self.length + right - span + 1  # the window of width 2**k that ends at ``right``
        v_a, v_b = self.values.gather(2, pos_a), self.values.gather(2, pos_b)
        i_a, i_b = self.index.gather(2, pos_a), self.index.gather(2, pos_b)
        return torch.where(v_a >= v_b, i_a, i_b).long()


def segment_bounds(segments: Tensor, channels: int, length: int) -> tuple[Tensor, Tensor]:
    """Per-channel inclusive bounds ``[B, C, N]`` from segments ``[B, N, 4]`` following AFSD's integer rules."""
    if segments.dim() != 3 or segments.shape[-1] != 4:
        raise ValueError(f"segments must be [B, N, 4] (s0, s1, s2, s3), got shape {tuple(segments.shape)}")
    seg = segments.detach().trunc().long().clamp(0, length - 1)  # [B, N, 4]
    half = channels // 2
    b, n, _ = seg.shape
    left = torch.cat([seg[:, None, :, 0].expand(b, half, n), seg[:, None, :, 2].expand(b, half, n)], dim=1)
    right = torch.cat([seg[:, None, :, 1].expand(b, half, n), seg[:, None, :, 3].expand(b, half, n)], dim=1)
    return left, torch.maximum(left, right)  # r < l reads x[l]


def boundary_max_pool(x: Tensor, segments: Tensor, table: RangeArgmax | None = None) -> Tensor:
    """``x [B, C, L]``, ``segments [B, N, 4]`` -> ``[B, C, N]``; pass ``table`` to reuse one built on ``x``."""
    _check(x)
    if table is None:
        table = RangeArgmax(x)
    elif table.x is not x:
        raise ValueError("the RangeArgmax table was built on a different tensor than the one being pooled")
    if segments.shape[0] != x.shape[0]:
        raise ValueError(f"segments batch {segments.shape[0]} != features batch {x.shape[0]}")
    left, right = segment_bounds(segments, x.shape[1], x.shape[2])
    return x.gather(2, table.argmax(left, right))  # [B, C, L] -> [B, C, N]


# ------------------------------------------------------------------------------------------ pooling segments
def _regions(start: Tensor, end: Tensor, length: Tensor) -> Tensor:
    """AFSD's start/end regions: a quarter of the length inside, a tenth outside, each at least 1."""
    inner = torch.clamp(length / 4.0, min=1.0)
    outer = torch.clamp(length / 10.0, min=1.0)
    return torch.round(torch.stack([start - outer, start + inner, end - inner, end + outer], dim=-1))


@torch.no_grad()
def level_segments(loc: Tensor, level_len: int, clip_frames: int) -> Tensor:
    """Pooling segments in units of one pyramid level, for that level's own features.

    ``loc [B, t, 2]`` coarse distances in clip frames -> ``[B, t, 4]``. As AFSD: distances scaled to level units,
    measured from the integer index ``c`` of the position (not its centre ``c + 0.5``), length ``d_s + d_e``.
    """
    d = loc.detach() * (level_len / clip_frames)  # [B, t, 2] in level units
    c = torch.arange(level_len, device=loc.device, dtype=d.dtype)[None, :]
    return _regions(c - d[..., 0], c + d[..., 1], d[..., 0] + d[..., 1])


@torch.no_grad()
def frame_segments(loc: Tensor, anchors: Tensor, plus_one: bool = False) -> Tensor:
    """Pooling segments in clip frames, for the frame-level feature.

    ``loc [B, K, 2]``, ``anchors [K]`` (centres in clip frames) -> ``[B, K, 4]``. Length ``end - start`` (AFSD adds
    1 here but not in :func:`level_segments`; ``plus_one=True`` restores that, see docs/DESIGN.md).
    """
    d = loc.detach()
    start = anchors[None, :] - d[..., 0]
    end = anchors[None, :] + d[..., 1]
    return _regions(start, end, end - start + (1.0 if plus_one else 0.0))

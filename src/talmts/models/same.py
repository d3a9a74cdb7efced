"""TensorFlow "SAME" padding and the max pools built on it: output = ceil(input / stride), the total padding split
evenly with an odd element at the end.

I3D (pytorch-i3d, ported from TensorFlow) and AFSD's 1D convolutions pad this way; ``same_padding`` is the one
definition, and every convolution and pool of the models that pads "same" reads it from here. Max pools pad with
zeros, as pytorch-i3d does (not with -inf): on I3D's ReLU outputs the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Triple = tuple[int, int, int]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) for one dimension; the odd element goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_pads(sizes: Iterable[int], kernel: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int]]:
    """:func:`same_padding` of each dimension, in the order given."""
    return [same_padding(n, k, s) for n, k, s in zip(sizes, kernel, stride)]


def pad_same(x: Tensor, kernel: Sequence[int], stride: Sequence[int]) -> Tensor:
    """``x`` zero-padded "same" in its last ``len(kernel)`` dimensions."""
    pads = same_pads(x.shape[x.dim() - len(kernel) :], kernel, stride)
    return F.pad(x, [p for before_after in reversed(pads) for p in before_after])  # F.pad lists the last dim first


class SameConv1d(nn.Conv1d):
    """Conv1d with "same" padding (AFSD's Unit1D): output length ``ceil(L / stride)``.

    For k=3, s=2 on an even length the single padding element goes on the right, as in AFSD.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(pad_same(x, self.kernel_size, self.stride))


class MaxPool3dSame(nn.Module):
    """Max pool with "same" output size and zero padding, as pytorch-i3d.

    The inputs in I3D are ReLU outputs (>= 0) and every window holds at least one real element, so padding with
    zeros equals the pool's implicit -inf padding: symmetric padding goes to ``padding=``, an extra element at
    the end becomes ``ceil_mode=True``. With ``nonnegative_input=False`` the zero padding is made explicitly.
    """

    def __init__(self, kernel: Triple, stride: Triple, nonnegative_input: bool = True) -> None:
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.nonnegative_input = nonnegative_input

    def _native_plan(self, sizes: Iterable[int]) -> tuple[Triple, bool] | None:
        """(padding, ceil_mode) reproducing the "same" output with a native pool, or None if impossible."""
        sizes = tuple(sizes)
        pads, ceil = [], False
        for (before, after), k, s in zip(same_pads(sizes, self.kernel, self.stride), self.kernel, self.stride):
            if after - before == 1 and s > 1:
                ceil = True
            elif after != before:
                return None
            if before > k // 2:
                return None
            pads.append(before)
        for n, k, s, p in zip(sizes, self.kernel, self.stride, pads):
            span = n + 2 * p - k
            out = (-(-span // s) if ceil else span // s) + 1
            if ceil and (out - 1) * s >= n + p:  # torch drops a last window that starts in the right padding
                out -= 1
            if out != -(-n // s):
                return None
        return (pads[0], pads[1], pads[2]), ceil

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and not (torch.is_grad_enabled() and x.requires_grad):
            # CPU inference: torch's max_pool3d kernel is slow there, element-wise maxima are not
            return shifted_max_pool(x, self.kernel, self.stride, self.nonnegative_input)
        plan = self._native_plan(x.shape[2:]) if self.nonnegative_input else None
        if plan is not None:
            return F.max_pool3d(x, self.kernel, self.stride, plan[0], ceil_mode=plan[1])
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


def shifted_max_pool(x: Tensor, kernel: Triple, stride: Triple = (1, 1, 1), nonnegative: bool = False) -> Tensor:
    """ "Same" max pool with zero padding (as pytorch-i3d's F.pad + max_pool3d), one dimension at a time, as a
    running maximum of shifted, strided views: out[i] = max_j padded[i * stride + j], j < kernel.

    Same values as that reference, computed with element-wise maxima in place, which on the CPU cost less than
    torch's max_pool3d kernel (docs/PERFORMANCE.md). With ``nonnegative=True`` (ReLU outputs) the padding is not
    materialised: each window takes the maximum over its real elements only, equal to zero padding since every
    window holds one. Used for inference only: with ties (ReLU zeros) ``torch.maximum`` splits the gradient, the
    pool sends it to one element.
    """
    for dim, k, s in zip((2, 3, 4), kernel, stride):
        if k == 1 and s == 1:
            continue
        out = -(-x.shape[dim] // s)  # [.., n, ..] -> [.., ceil(n / s), ..]
        before, after = same_padding(x.shape[dim], k, s)
        if not nonnegative and before + after:
            x = F.pad(x, [0, 0] * (4 - dim) + [before, after])
            before = 0
        n = x.shape[dim]
        index: list[slice] = [slice(None)] * x.dim()
        index[dim] = slice(0, (out - 1) * s + 1, s)  # shift `before` reads x[i * s], real for every i
        result = x[tuple(index)].clone()
        for shift in range(k):
            off = shift - before  # out[i] reads x[i * s + off] where 0 <= i * s + off < n
            lo, hi = -(off // s) if off < 0 else 0, min(out, (n - 1 - off) // s + 1)
            if shift == before or hi <= lo:
                continue
            index[dim] = slice(lo * s + off, (hi - 1) * s + off + 1, s)
            part = result.narrow(dim, lo, hi - lo)
            torch.maximum(part, x[tuple(index)], out=part)  # in place on a view of result
        x = result
    return x


def sliced_max_pool(x: Tensor, kernel: Triple, stride: Triple) -> Tensor:
    """The same pool as :func:`shifted_max_pool`, written without in-place writes: zero padding, then the maximum
    of the strided slices that hold each window's taps. Purely functional, so ``torch.compile`` fuses the padding
    and the maxima into one element-wise kernel."""
    x = pad_same(x, kernel, stride)
    for dim, k, s in zip((2, 3, 4), kernel, stride):
        out = (x.shape[dim] - k) // s + 1
        index: list[slice] = [slice(None)] * x.dim()
        result = None
        for j in range(k):  # tap j of every window: x[j], x[j + s], ..., x[j + (out - 1) * s]
            index[dim] = slice(j, j + (out - 1) * s + 1, s)
            tap = x[tuple(index)]
            result = tap if result is None else torch.maximum(result, tap)
        x = result
    return x


class FusedMaxPool(nn.Module):
    """:class:`MaxPool3dSame` as :func:`sliced_max_pool`: the form to run under ``torch.compile``."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: Tensor) -> Tensor:
        return sliced_max_pool(x, self.kernel, self.stride)

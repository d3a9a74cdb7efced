"""TensorFlow "same" padding and pooling (models/same.py) against references written another way: the padding
from the output-size rule, the pools as zero padding + ``unfold`` windows."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from talmts.models.same import (
    FusedMaxPool,
    MaxPool3dSame,
    SameConv1d,
    pad_same,
    same_padding,
    shifted_max_pool,
    sliced_max_pool,
)


def _ref_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """TF's rule as TF documents it: pad so that ceil(size / s) windows fit, the odd element at the end."""
    total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
    return total // 2, total - total // 2


def _ref_pool(x: torch.Tensor, kernel: tuple, stride: tuple) -> torch.Tensor:
    """pytorch-i3d's pool: zero padding to "same", then the maximum of every window, taken with ``unfold``."""
    pads = [_ref_pad(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride)]
    x = F.pad(x, (*pads[2], *pads[1], *pads[0]))
    for dim, k, s in zip((2, 3, 4), kernel, stride):
        x = x.unfold(dim, k, s)  # windows as a new last dimension
    return x.amax(dim=(-3, -2, -1))


@pytest.mark.parametrize("size", [1, 2, 7, 8, 9, 16, 33])
@pytest.mark.parametrize(("kernel", "stride"), [(1, 1), (3, 1), (3, 2), (7, 2), (2, 2), (1, 2), (4, 3)])
def test_same_padding_follows_the_tensorflow_rule(size: int, kernel: int, stride: int) -> None:
    before, after = same_padding(size, kernel, stride)
    assert (before, after) == _ref_pad(size, kernel, stride)
    assert (size + before + after - kernel) // stride + 1 == math.ceil(size / stride)  # output = ceil(n / s)


def test_pad_same_pads_the_trailing_dimensions_only() -> None:
    x = torch.ones(1, 2, 4, 5)
    y = pad_same(x, (3, 3), (2, 1))  # sizes 4 (k3 s2: pads 0, 1) and 5 (k3 s1: pads 1, 1)
    assert y.shape == (1, 2, 5, 7)
    assert float(y.sum()) == float(x.sum()) and float(y[..., 4, :].abs().sum()) == 0 and float(y[..., 0].sum()) == 0


@pytest.mark.parametrize(
    ("length", "stride", "kernel", "pads"), [(8, 2, 3, (0, 1)), (7, 2, 3, (1, 1)), (8, 1, 3, (1, 1))]
)
def test_same_conv_pads_like_tensorflow(length: int, stride: int, kernel: int, pads: tuple[int, int]) -> None:
    conv = SameConv1d(2, 3, kernel, stride)
    x = torch.randn(1, 2, length)
    expected = F.conv1d(F.pad(x, list(pads)), conv.weight, conv.bias, stride)
    out = conv(x)
    assert out.shape[-1] == -(-length // stride)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("kernel,stride", [((3, 3, 3), (2, 2, 2)), ((1, 3, 3), (1, 2, 2)), ((2, 2, 2), (2, 2, 2)),
                                           ((3, 3, 3), (1, 1, 1)), ((1, 1, 1), (2, 2, 2))])  # fmt: skip
@pytest.mark.parametrize("size", [(4, 6, 7), (5, 9, 8), (1, 2, 3), (8, 12, 12)])
def test_max_pool_same_padding(kernel: tuple, stride: tuple, size: tuple) -> None:
    x = torch.randn(2, 3, *size)
    pool = MaxPool3dSame(kernel, stride)
    relu_x = torch.relu(x)
    torch.testing.assert_close(pool(relu_x), _ref_pool(relu_x, kernel, stride), rtol=0, atol=0)
    exact = MaxPool3dSame(kernel, stride, nonnegative_input=False)  # zero padding also for negative inputs
    torch.testing.assert_close(exact(x), _ref_pool(x, kernel, stride), rtol=0, atol=0)
    assert pool(relu_x).shape[2:] == tuple(math.ceil(n / s) for n, s in zip(size, stride))


def test_shifted_max_pool_equals_native_pool_on_nonnegative_inputs() -> None:
    # the CPU inference path of the Inception branch pools (3x3x3, stride 1) must give max_pool3d's values exactly
    g = torch.Generator().manual_seed(0)
    for shape in [(1, 8, 5, 6, 6), (2, 4, 4, 3, 3), (1, 3, 1, 1, 2)]:
        x = torch.relu(torch.randn(*shape, generator=g))
        want = torch.nn.functional.max_pool3d(x, 3, 1, 1)
        assert torch.equal(shifted_max_pool(x, (3, 3, 3), (1, 1, 1)), want)
        with torch.no_grad():
            assert torch.equal(MaxPool3dSame((3, 3, 3), (1, 1, 1))(x), want)


@pytest.mark.parametrize(
    ("kernel", "stride"),
    [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2)), ((3, 3, 3), (1, 1, 1))],
)
@pytest.mark.parametrize("size", [(8, 12, 12), (7, 9, 10), (5, 6, 3), (1, 1, 2), (4, 2, 2)])
def test_shifted_max_pool_strided_equals_zero_padded_reference(kernel: tuple, stride: tuple, size: tuple) -> None:
    # the CPU inference path of every I3D pool (the strided ones between blocks too): pytorch-i3d's zero padding +
    # max pool, exactly, for inputs of any sign; and the module's training path agrees on ReLU outputs
    g = torch.Generator().manual_seed(sum(size) + sum(kernel))
    x = torch.randn(2, 3, *size, generator=g)
    pool = MaxPool3dSame(kernel, stride)
    want = _ref_pool(x, kernel, stride)
    got = shifted_max_pool(x, kernel, stride)
    assert got.shape == want.shape and torch.equal(got, want)
    r = torch.relu(x)
    assert torch.equal(shifted_max_pool(r, kernel, stride, nonnegative=True), _ref_pool(r, kernel, stride))
    r.requires_grad_(True)  # grad enabled: the native max_pool3d path
    with torch.no_grad():
        fast = pool(r)
    assert torch.equal(fast, pool(r).detach())
    with torch.no_grad():  # a pool that may see negative inputs pads its zeros explicitly
        assert torch.equal(MaxPool3dSame(kernel, stride, nonnegative_input=False)(x), want)


@pytest.mark.parametrize(
    ("kernel", "stride"),
    [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2)), ((3, 3, 3), (1,) * 3)],
)
@pytest.mark.parametrize("size", [(8, 12, 12), (7, 11, 6)])
def test_fused_pool_equals_zero_padded_max_pool(kernel, stride, size) -> None:
    x = torch.randn(2, 5, *size, generator=torch.Generator().manual_seed(7))  # signed: the zero padding matters
    got = FusedMaxPool(kernel, stride)(x)
    torch.testing.assert_close(got, _ref_pool(x, kernel, stride), rtol=0, atol=0)
    torch.testing.assert_close(sliced_max_pool(x, kernel, stride), got, rtol=0, atol=0)
    relu = x.clamp_min(0)  # and on ReLU outputs it is the pool I3D uses
    torch.testing.assert_close(FusedMaxPool(kernel, stride)(relu), MaxPool3dSame(kernel, stride)(relu), rtol=0, atol=0)

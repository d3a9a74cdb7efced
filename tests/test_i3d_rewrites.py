"""I3D's inference rewrites (space-to-depth stem, pointwise matmuls, fused pools) against the plain modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from talmts.models.i3d import InceptionI3d, Unit3D
from talmts.models.i3d_rewrites import PointwiseMatmul, StemSpaceToDepth, rewrite_for_speed
from talmts.models.same import MaxPool3dSame
from test_fuse_pointwise import _close, _randomise, random_i3d

CL = torch.channels_last_3d


def _unit(c_in: int, c_out: int, kernel, stride, seed: int) -> Unit3D:
    unit = Unit3D(c_in, c_out, kernel, stride).eval()
    _randomise(unit, seed)
    return unit


@pytest.mark.parametrize("size", [(16, 32, 32), (15, 33, 40), (9, 7, 12)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_space_to_depth_stem_equals_the_7x7x7_stride_2_unit(size, channels_last) -> None:
    unit = _unit(3, 16, (7, 7, 7), (2, 2, 2), seed=3)
    stem = StemSpaceToDepth(unit)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(4))
    if channels_last:
        x = x.contiguous(memory_format=CL)
    with torch.no_grad():
        want, got = unit(x), stem(x)
    assert got.shape == want.shape == (2, 16, *(-(-n // 2) for n in size))
    _close(want, got, 1e-5)
    assert float((want > 0).float().mean()) > 0.2  # ReLU does not hide the comparison


def test_space_to_depth_stem_rejects_other_units() -> None:
    with pytest.raises(ValueError, match="7x7x7 stride-2"):
        StemSpaceToDepth(_unit(3, 8, (3, 3, 3), (1, 1, 1), seed=0))


@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_matmul_equals_the_1x1x1_unit(channels_last) -> None:
    unit = _unit(24, 40, (1, 1, 1), (1, 1, 1), seed=5)
    mm = PointwiseMatmul(unit.conv3d, unit.bn, unit.relu)
    x = torch.randn(2, 24, 4, 6, 5, generator=torch.Generator().manual_seed(6))
    if channels_last:
        x = x.contiguous(memory_format=CL)
    with torch.no_grad():
        want, got = unit(x), mm(x)
    assert got.shape == want.shape
    _close(want, got, 1e-5)
    if channels_last:  # the result stays channels-last: the next conv reads it without a copy
        assert got.is_contiguous(memory_format=CL)


@pytest.fixture(scope="module")
def model() -> InceptionI3d:
    return random_i3d()


@pytest.mark.parametrize("fuse", [False, True])
def test_all_rewrites_match_the_plain_model_at_every_endpoint(model: InceptionI3d, fuse: bool) -> None:
    base = model.fuse_pointwise() if fuse else model.fold_batchnorm()
    fast = rewrite_for_speed(base, stem_s2d=True, pointwise_matmul=True, fused_pools=True)
    assert isinstance(fast.Conv3d_1a_7x7, StemSpaceToDepth)
    assert not any(isinstance(m, MaxPool3dSame) for m in fast.modules())
    assert not any(isinstance(m, Unit3D) and m.kernel == (1, 1, 1) for m in fast.modules())
    assert sum(isinstance(m, PointwiseMatmul) for m in fast.modules()) == 1 + 9 * (2 if fuse else 4)
    assert isinstance(base.Conv3d_1a_7x7, Unit3D)  # the input model is not touched
    x = torch.randn(2, 3, 16, 40, 40, generator=torch.Generator().manual_seed(2)).contiguous(memory_format=CL)
    with torch.no_grad():
        want = model.extract_features(x)
        got = fast.extract_features(x)
    for name in model.endpoints:
        assert got[name].shape == want[name].shape
        _close(want[name], got[name], 1e-5)


def test_rewrites_under_bf16_autocast(model: InceptionI3d) -> None:
    fast = rewrite_for_speed(model.fuse_pointwise(), stem_s2d=True, pointwise_matmul=True, fused_pools=True)
    fast = fast.to(memory_format=CL)
    x = torch.randn(1, 3, 16, 32, 32).contiguous(memory_format=CL)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = model(x), fast(x)
    _close(a, b, 3e-2)


def test_rewrite_keeps_the_bn_of_an_unfolded_model(model: InceptionI3d) -> None:
    fast = rewrite_for_speed(model, stem_s2d=True, pointwise_matmul=True)
    assert isinstance(fast.Conv3d_1a_7x7.bn, nn.BatchNorm3d)
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        _close(model(x), fast(x), 1e-5)

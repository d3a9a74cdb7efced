"""RFP and f_ca: "same" padding, top-down refinement on hand-computed tensors, AFSD's pyramid when RFP is off."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from talmts.models.pyramid import (
    FeaturePyramid,
    FrameFeature,
    SpatialCollapse,
    endpoint_shape,
    interpolate,
    top_down,
)


def test_endpoint_shapes_match_i3d() -> None:
    assert endpoint_shape("Mixed_4f", 256, 96) == (64, 6, 6)
    assert endpoint_shape("Mixed_5c", 256, 96) == (32, 3, 3)
    assert endpoint_shape("Mixed_4f", 768, 96) == (192, 6, 6)
    assert endpoint_shape("Mixed_5c", 768, 96) == (96, 3, 3)
    assert endpoint_shape("Mixed_5c", 64, 32) == (8, 1, 1)


def test_top_down_nearest_by_hand() -> None:
    lv0 = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    lv1 = torch.tensor([[[10.0, 20.0]]])
    lv2 = torch.tensor([[[100.0]]])
    out = top_down([lv0, lv1, lv2], "nearest")
    assert out[2].tolist() == [[[100.0]]]
    assert out[1].tolist() == [[[110.0, 120.0]]]  # + 100 everywhere
    assert out[0].tolist() == [[[111.0, 112.0, 123.0, 124.0]]]  # + refined level 1, each value twice


def test_top_down_linear_by_hand() -> None:
    lv0 = torch.zeros(1, 1, 4)
    lv1 = torch.tensor([[[0.0, 8.0]]])
    # align_corners=False: output i reads source (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped to [0, 1])
    out = top_down([lv0, lv1], "linear")
    assert out[0].tolist() == [[[0.0, 2.0, 6.0, 8.0]]]


def _features(batch: int = 2, t: int = 16, c4: int = 12, c5: int = 20) -> dict[str, torch.Tensor]:
    return {"Mixed_4f": torch.randn(batch, c4, t, 2, 2), "Mixed_5c": torch.randn(batch, c5, t // 2, 1, 1)}


def _pyramid(variant: str, refine: bool, mode: str = "nearest") -> FeaturePyramid:
    hw = {"Mixed_4f": (2, 2), "Mixed_5c": (1, 1)}
    return FeaturePyramid(variant, {"Mixed_4f": 12, "Mixed_5c": 20}, hw, 16, 4, 4, refine, mode)


def _raw_bottom_up(p: FeaturePyramid, feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    raw = [lat(feats[e]) for lat, e in zip(p.lateral, p.endpoints)]
    for conv in p.down:
        raw.append(conv(raw[-1]))
    return raw


def test_pyramid_without_rfp_is_afsd() -> None:
    torch.manual_seed(0)
    p, feats = _pyramid("two_endpoint", refine=False), _features()
    raw = _raw_bottom_up(p, feats)
    out = p(feats)
    assert [o.shape[-1] for o in out] == [16, 8, 4, 2]
    torch.testing.assert_close(out[0], raw[0] + raw[1].repeat_interleave(2, dim=-1))  # the one AFSD add
    for o, r in zip(out[1:], raw[1:]):
        torch.testing.assert_close(o, r)  # the higher levels are the raw bottom-up ones


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_pyramid_with_rfp_refines_every_level_after_bottom_up(mode: str) -> None:
    torch.manual_seed(0)
    p, feats = _pyramid("two_endpoint", refine=True, mode=mode), _features()
    raw = _raw_bottom_up(p, feats)
    out = p(feats)
    expected = list(raw)
    for i in (3, 2, 1):
        expected[i - 1] = expected[i - 1] + F.interpolate(expected[i], size=expected[i - 1].shape[-1], mode=mode)
    for o, e in zip(out, expected):
        torch.testing.assert_close(o, e)
    assert not torch.allclose(out[1], raw[1])


def test_single_endpoint_pyramid_reads_only_mixed_5c() -> None:
    torch.manual_seed(0)
    off, on = _pyramid("single_endpoint", refine=False), _pyramid("single_endpoint", refine=True)
    feats = _features()
    out_off = off(feats)
    assert [o.shape[-1] for o in out_off] == [8, 4, 2, 1]
    torch.testing.assert_close(out_off, _raw_bottom_up(off, feats))  # AFSD-ANet has no top-down add
    feats["Mixed_4f"] = torch.full_like(feats["Mixed_4f"], float("nan"))
    assert all(torch.isfinite(o).all() for o in on(feats))


def test_pyramid_refuses_a_spatial_size_it_was_not_built_for() -> None:
    p = _pyramid("two_endpoint", refine=True)
    feats = _features()
    feats["Mixed_4f"] = torch.randn(2, 12, 16, 3, 3)
    with pytest.raises(ValueError, match="frame size"):
        p(feats)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_frame_feature_resamples_then_convolves(mode: str) -> None:
    torch.manual_seed(0)
    ff = FrameFeature(16, 4, mode)
    level0 = torch.randn(2, 16, 8)
    out = ff(level0, 32)
    assert out.shape == (2, 16, 32)
    torch.testing.assert_close(out, ff.convs(interpolate(level0, 32, mode)))
    if mode == "nearest":
        torch.testing.assert_close(interpolate(level0, 32, mode), level0.repeat_interleave(4, dim=-1))


@pytest.mark.parametrize("channels_last", [False, True])
def test_spatial_collapse_is_its_conv3d(channels_last: bool) -> None:
    """The matrix-product form gives what nn.Conv3d with the same weights gives: the output and the gradients of
    the weights and the input, in both memory formats."""
    torch.manual_seed(0)
    lat = SpatialCollapse(12, 8, (3, 2), 4, "Mixed_4f")
    x = torch.randn(2, 12, 5, 3, 2, requires_grad=True)
    if channels_last:
        lat = lat.to(memory_format=torch.channels_last_3d)
    inp = x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x
    got = lat.collapse(inp)
    want = F.conv3d(x, lat.conv.weight, lat.conv.bias).flatten(2)  # torch's own 3D convolution: [B, C, t]
    torch.testing.assert_close(got, want)
    g = torch.randn_like(want)
    dw, db, dx = torch.autograd.grad(got, (lat.conv.weight, lat.conv.bias, x), g)
    rw, rb, rx = torch.autograd.grad(want, (lat.conv.weight, lat.conv.bias, x), g)
    for a, b in ((dw, rw), (db, rb), (dx, rx)):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(lat(inp), F.relu(lat.norm(want)))

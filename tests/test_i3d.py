"""I3D backbone: layout, shapes, TF-same padding against an explicit F.pad reference, BN freezing and folding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from talmts.models.i3d import ENDPOINTS, InceptionI3d, InceptionModule, Unit3D
from talmts.models.same import MaxPool3dSame


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so that padding or folding mistakes show."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)


# ---- a plain reference: pytorch-i3d's way, F.pad of the full TF-same padding before every conv and pool ----


def _ref_pad(size: int, k: int, s: int) -> tuple[int, int]:
    total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
    return total // 2, total - total // 2


def _ref_unit(unit: Unit3D, x: torch.Tensor) -> torch.Tensor:
    pads = [_ref_pad(n, k, s) for n, k, s in zip(x.shape[2:], unit.kernel, unit.stride)]
    x = F.pad(x, (*pads[2], *pads[1], *pads[0]))
    x = F.conv3d(x, unit.conv3d.weight, unit.conv3d.bias, unit.stride)
    if unit.bn is not None:
        bn = unit.bn
        x = (x - bn.running_mean.view(1, -1, 1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1, 1) + 1e-3)
        x = x * bn.weight.view(1, -1, 1, 1, 1) + bn.bias.view(1, -1, 1, 1, 1)
    return torch.relu(x) if unit.relu else x


def _ref_pool(pool: MaxPool3dSame, x: torch.Tensor) -> torch.Tensor:
    pads = [_ref_pad(n, k, s) for n, k, s in zip(x.shape[2:], pool.kernel, pool.stride)]
    x = F.pad(x, (*pads[2], *pads[1], *pads[0]))  # zeros, as pytorch-i3d
    return F.max_pool3d(x, pool.kernel, pool.stride)


def _ref_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(block, Unit3D):
        return _ref_unit(block, x)
    if isinstance(block, MaxPool3dSame):
        return _ref_pool(block, x)
    assert isinstance(block, InceptionModule)
    b0 = _ref_unit(block.b0, x)
    b1 = _ref_unit(block.b1b, _ref_unit(block.b1a, x))
    b2 = _ref_unit(block.b2b, _ref_unit(block.b2a, x))
    b3 = _ref_unit(block.b3b, _ref_pool(block.b3a, x))
    return torch.cat([b0, b1, b2, b3], 1)


def _ref_features(model: InceptionI3d, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for name in model.endpoints:
        x = _ref_block(getattr(model, name), x)
        out[name] = x
    return out


# ---- tests ----


def test_parameter_count_up_to_mixed_5c() -> None:
    n = sum(p.numel() for p in InceptionI3d().parameters())
    assert round(n / 1e6, 2) == 12.29  # AFSD notes: I3D up to Mixed_5c has 12.29 M parameters


def test_state_dict_layout_is_pytorch_i3d() -> None:
    keys = set(InceptionI3d(with_logits=True).state_dict())
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    expected = set()
    units = ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
    units += [f"Mixed_{m}.{b}" for m in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c")
              for b in ("b0", "b1a", "b1b", "b2a", "b2b", "b3b")]  # fmt: skip
    for u in units:
        expected.add(f"{u}.conv3d.weight")
        expected.update(f"{u}.bn.{p}" for p in bn)
    expected.update({"logits.conv3d.weight", "logits.conv3d.bias"})
    assert keys == expected
    sd = InceptionI3d().state_dict()
    assert sd["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert sd["Mixed_5c.b1b.conv3d.weight"].shape == (384, 192, 3, 3, 3)


def test_endpoint_shapes_full_width() -> None:
    model = InceptionI3d().eval()
    with torch.no_grad():
        feats = model.extract_features(torch.zeros(1, 3, 32, 96, 96), ["Mixed_4f", "Mixed_5c"])
    assert set(feats) == {"Mixed_4f", "Mixed_5c"}
    assert feats["Mixed_4f"].shape == (1, 832, 8, 6, 6)  # T/4
    assert feats["Mixed_5c"].shape == (1, 1024, 4, 3, 3)  # T/8


def test_endpoint_shapes_256_frames_small_width() -> None:
    model = InceptionI3d(width=0.125).eval()
    with torch.no_grad():
        feats = model.extract_features(torch.zeros(1, 3, 256, 96, 96))
    assert list(feats) == list(ENDPOINTS)
    assert feats["Mixed_4f"].shape[2:] == (64, 6, 6)
    assert feats["Mixed_5c"].shape[2:] == (32, 3, 3)
    for name, f in feats.items():
        assert f.shape[1] == InceptionI3d.endpoint_channels(name, 0.125), name


@pytest.mark.parametrize("width", [1.0, 0.5, 0.25])
def test_endpoint_channels(width: float) -> None:
    model = InceptionI3d(width=width)
    for name in ENDPOINTS:
        block = getattr(model, name)
        if isinstance(block, InceptionModule):
            assert block.out_channels == InceptionI3d.endpoint_channels(name, width)
        elif isinstance(block, Unit3D):
            assert block.conv3d.out_channels == InceptionI3d.endpoint_channels(name, width)
    assert InceptionI3d.endpoint_channels("Mixed_4f") == 832
    assert InceptionI3d.endpoint_channels("Mixed_5c") == 1024
    with pytest.raises(ValueError, match="Mixed_9z"):
        InceptionI3d.endpoint_channels("Mixed_9z")


@pytest.mark.parametrize("shape", [(2, 3, 16, 32, 32), (1, 3, 17, 33, 31), (1, 2, 9, 35, 40), (1, 3, 6, 20, 19)])
def test_matches_explicit_fpad_reference(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = InceptionI3d(in_channels=shape[1], width=0.25).eval()
    _randomise_bn(model)
    x = torch.randn(shape)
    with torch.no_grad():
        ours = model.extract_features(x)
        ref = _ref_features(model, x)
    for name in ENDPOINTS:
        assert ours[name].shape == ref[name].shape, name
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-5, atol=1e-5, msg=name)


def test_classifier_head_against_hand_computation() -> None:
    torch.manual_seed(1)
    model = InceptionI3d(width=0.25, num_classes=5, with_logits=True).eval()
    c = InceptionI3d.endpoint_channels("Mixed_5c", 0.25)
    feat = torch.randn(2, c, 4, 7, 7)
    w = model.logits.conv3d.weight.view(5, c)
    b = model.logits.conv3d.bias
    windows = torch.stack([feat[:, :, t : t + 2].mean(dim=(2, 3, 4)) for t in range(3)], dim=2)  # [2, c, 3]
    expected = torch.einsum("kc,bct->bkt", w, windows) + b.view(1, 5, 1)
    with torch.no_grad():
        torch.testing.assert_close(model.classify(feat), expected, rtol=1e-5, atol=1e-5)
        out = model(torch.randn(1, 3, 16, 224, 224))
    assert out.shape == (1, 5)


def test_frozen_batchnorm_stays_frozen_in_training() -> None:
    model = InceptionI3d(width=0.125, final_endpoint="Mixed_3b").train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert bns and all(not bn.training for bn in bns)
    assert all(not bn.weight.requires_grad and not bn.bias.requires_grad for bn in bns)
    assert model.Conv3d_1a_7x7.conv3d.weight.requires_grad
    before = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 8, 32, 32)).sum().backward()
    torch.testing.assert_close(bns[0].running_mean, before, rtol=0, atol=0)
    assert model.Conv3d_1a_7x7.conv3d.weight.grad is not None

    free = InceptionI3d(width=0.125, final_endpoint="Mixed_3b", freeze_bn=False).train()
    free_bn = free.Conv3d_1a_7x7.bn
    assert free_bn.training and free_bn.weight.requires_grad
    free(torch.randn(2, 3, 8, 32, 32))
    assert not torch.equal(free_bn.running_mean, torch.zeros_like(free_bn.running_mean))


def test_fold_batchnorm_matches_eval_model() -> None:
    torch.manual_seed(2)
    model = InceptionI3d(width=0.25, num_classes=7, with_logits=True).eval()
    _randomise_bn(model, seed=3)
    folded = model.fold_batchnorm()
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules())  # the original is untouched
    x = torch.randn(1, 3, 12, 40, 40)
    with torch.no_grad():
        a = model.extract_features(x)["Mixed_5c"]
        b = folded.extract_features(x)["Mixed_5c"]
    assert torch.linalg.norm(a - b) <= 1e-4 * torch.linalg.norm(a)


def test_activation_checkpointing_gives_same_gradients() -> None:
    torch.manual_seed(4)
    plain = InceptionI3d(width=0.125, final_endpoint="Mixed_4b").train()
    ckpt = InceptionI3d(width=0.125, final_endpoint="Mixed_4b", checkpoint=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 8, 32, 32)
    plain(x).square().sum().backward()
    ckpt(x).square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_flow_input_and_bad_inputs() -> None:
    model = InceptionI3d(in_channels=2, width=0.125, final_endpoint="Mixed_3c").eval()
    assert model.Conv3d_1a_7x7.conv3d.weight.shape[1] == 2
    with torch.no_grad():
        assert model(torch.randn(1, 2, 8, 32, 32)).shape == (1, model.endpoint_channels("Mixed_3c", 0.125), 4, 4, 4)
    with pytest.raises(ValueError, match=r"\[B, 2, T, H, W\]"):
        model(torch.randn(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match="final_endpoint"):
        InceptionI3d(final_endpoint="Logits")
    with pytest.raises(ValueError, match="with_logits"):
        InceptionI3d(final_endpoint="Mixed_4f", with_logits=True)
    with pytest.raises(ValueError, match="not built"):
        model.extract_features(torch.randn(1, 2, 8, 32, 32), ["Mixed_5c"])


@pytest.mark.parametrize("name", ["MaxPool3d_2a_3x3", "MaxPool3d_3a_3x3", "MaxPool3d_4a_3x3", "MaxPool3d_5a_2x2"])
@pytest.mark.parametrize("size", [(256, 48, 48), (79, 112, 112), (40, 57, 57), (9, 7, 7)])
def test_i3d_pools_never_need_an_explicit_pad(name: str, size: tuple) -> None:
    pool = getattr(InceptionI3d(width=0.125), name)
    assert pool._native_plan(size) is not None  # the speed path: padding= / ceil_mode, no F.pad copy

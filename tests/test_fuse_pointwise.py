"""I3D inference fusion of each Inception block's three 1x1x1 convolutions (b0, b1a, b2a) into one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from talmts.models.i3d import InceptionI3d, InceptionModule


def _randomise(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics, BN affine parameters and conv weights, so that any mix-up of weights, biases
    or split order changes the output."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.2)
        elif isinstance(m, nn.Conv3d):
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)


def random_i3d() -> InceptionI3d:
    """A small eval-mode I3D (width 0.25) with randomised weights and BN (shared with test_i3d_rewrites.py)."""
    torch.manual_seed(0)
    m = InceptionI3d(width=0.25).eval()
    _randomise(m, seed=1)
    return m


@pytest.fixture(scope="module")
def model() -> InceptionI3d:
    return random_i3d()


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    err = float(torch.linalg.norm(a.float() - b.float()) / torch.linalg.norm(a.float()))
    assert err <= tol, f"relative error {err:.2e} > {tol:.0e}"


def test_fused_matches_unfused_eval_model_at_every_endpoint(model: InceptionI3d) -> None:
    fused = model.fuse_pointwise()
    x = torch.randn(2, 3, 16, 40, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model.extract_features(x)
        got = fused.extract_features(x)
    for name in model.endpoints:
        _close(want[name], got[name], 1e-5)
        assert got[name].shape == want[name].shape
    # the outputs are not trivially equal to something else: the branches really differ from one another
    assert float(want["Mixed_5c"].std()) > 0


def test_fused_copy_layout_and_original_untouched(model: InceptionI3d) -> None:
    keys = set(model.state_dict())
    fused = model.fuse_pointwise()
    assert set(model.state_dict()) == keys  # the training/checkpoint layout is not changed
    assert set(InceptionI3d(width=0.25).state_dict()) == keys
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm3d) for m in fused.modules())
    blocks = [m for m in fused.modules() if isinstance(m, InceptionModule)]
    assert len(blocks) == 9
    for block in blocks:
        assert block.b0 is None and block.b1a is None and block.b2a is None
        assert block.pointwise is not None
        assert block.pointwise.out_channels == sum(block.pointwise_split)
    fused_keys = set(fused.state_dict())
    assert "Mixed_3b.pointwise.weight" in fused_keys and "Mixed_3b.pointwise.bias" in fused_keys
    assert not any(".b0." in k or ".b1a." in k or ".b2a." in k for k in fused_keys)
    # fusing again is a no-op on an already fused model
    again = fused.fuse_pointwise()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), fused(x))


def test_fused_conv_reads_the_block_input_once(model: InceptionI3d) -> None:
    fused = model.fuse_pointwise()
    calls: list[tuple[int, ...]] = []
    block = fused.Mixed_4b
    block.pointwise.register_forward_hook(lambda mod, inp, out: calls.append(tuple(out.shape)))
    with torch.no_grad():
        fused(torch.randn(1, 3, 8, 32, 32))
    assert len(calls) == 1 and calls[0][1] == sum(block.pointwise_split)


def test_fused_channels_last_and_bf16_autocast(model: InceptionI3d) -> None:
    # the GPU bench's path: channels-last 3D (the split views are then strided) and bf16 autocast
    ref = model.fold_batchnorm().to(memory_format=torch.channels_last_3d)
    fused = model.fuse_pointwise().to(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 3, 16, 32, 32).contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        _close(ref(x), fused(x), 1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a, b = ref.extract_features(x)["Mixed_5c"], fused.extract_features(x)["Mixed_5c"]
    _close(a, b, 3e-2)


def test_block_fusion_needs_folded_batchnorm(model: InceptionI3d) -> None:
    block = InceptionModule(16, (8, 8, 8, 8, 8, 8))
    with pytest.raises(RuntimeError, match="fold_batchnorm"):
        block.fuse_pointwise_()

"""FSA against a per-frame loop reference and a hand-written one, its patch-size checks, and the start/end interleaving
of f_a."""

from __future__ import annotations

import pytest
import torch

from talmts.config import FSAConfig
from talmts.models.boundary_pool import boundary_max_pool
from talmts.models.fsa import FrameSelfAttention, join_frame_features
from talmts.models.transformer import patchify


def _fsa(patch: int, frame: int = 12, in_channels: int = 2) -> FrameSelfAttention:
    cfg = FSAConfig(patch=patch, dim=8, heads=2, layers=2, mlp_ratio=2.0, out_channels=6)
    m = FrameSelfAttention(cfg, in_channels, frame).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


@pytest.mark.parametrize("patch", [4, 6, 12])
def test_fsa_matches_per_frame_reference(patch: int) -> None:
    torch.manual_seed(0)
    m = _fsa(patch)
    clip = torch.randn(2, 2, 3, 12, 12, dtype=torch.float64)
    out = m(clip)
    assert out.shape == (2, 6, 3)  # [B, C_ra, T]
    g = 12 // patch
    for b in range(2):
        for t in range(3):
            frame = clip[b, :, t]
            patches = torch.stack(
                [
                    frame[:, i * patch : (i + 1) * patch, j * patch : (j + 1) * patch].reshape(-1)
                    for i in range(g)
                    for j in range(g)
                ]
            )  # [Z, C*D*D]
            tokens = m.embed(patches) + m.pos
            pooled = m.encoder(tokens[None])[0].mean(0)
            torch.testing.assert_close(out[b, :, t], m.fc(pooled))


def test_fsa_frames_do_not_attend_to_each_other() -> None:
    torch.manual_seed(1)
    m = _fsa(4)
    clip = torch.randn(1, 2, 3, 12, 12, dtype=torch.float64)
    changed = clip.clone()
    changed[:, :, 1] += 1.0
    a, b = m(clip), m(changed)
    torch.testing.assert_close(a[..., [0, 2]], b[..., [0, 2]])
    assert not torch.allclose(a[..., 1], b[..., 1])


def test_patch_must_divide_the_frame() -> None:
    with pytest.raises(ValueError, match=r"model\.fsa\.patch=5 must divide the frame size 12"):
        _fsa(5)
    m = _fsa(4)
    with pytest.raises(ValueError, match="built for 12x12"):
        m(torch.randn(1, 2, 1, 16, 16, dtype=torch.float64))


def _hand_layer_norm(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased, as LayerNorm
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def _hand_fsa_frame(m: FrameSelfAttention, patches: torch.Tensor) -> torch.Tensor:
    """f_ra of one frame from its patches ``[Z, C*D*D]``, the layers applied one step at a time from their weights:
    embedding + position, per block LN -> heads of softmax(q k^T / sqrt(d_h)) v -> projection -> residual, LN -> MLP
    (exact GELU) -> residual; the closing LN, the mean over patches, the fully connected layer."""
    x = patches @ m.embed.weight.T + m.embed.bias + m.pos  # [Z, dim]
    for block in m.encoder.blocks:
        heads = block.attn.heads
        width = x.shape[1] // heads
        qkv = _hand_layer_norm(x, block.norm1) @ block.attn.qkv.weight.T + block.attn.qkv.bias  # [Z, 3 * dim]
        q, k, v = qkv[:, : x.shape[1]], qkv[:, x.shape[1] : 2 * x.shape[1]], qkv[:, 2 * x.shape[1] :]
        mixed = []
        for h in range(heads):
            cols = slice(h * width, (h + 1) * width)
            weights = torch.softmax(q[:, cols] @ k[:, cols].T / width**0.5, dim=-1)
            mixed.append(weights @ v[:, cols])
        x = x + torch.cat(mixed, dim=1) @ block.attn.proj.weight.T + block.attn.proj.bias
        first, second = block.mlp[0], block.mlp[3]
        hidden = _hand_layer_norm(x, block.norm2) @ first.weight.T + first.bias
        hidden = 0.5 * hidden * (1.0 + torch.erf(hidden / 2.0**0.5))
        x = x + hidden @ second.weight.T + second.bias
    pooled = _hand_layer_norm(x, m.encoder.norm).mean(0)
    return pooled @ m.fc.weight.T + m.fc.bias


def test_encode_and_forward_equal_a_hand_written_fsa_and_encode_refuses_other_shapes() -> None:
    """encode(patches) against :func:`_hand_fsa_frame` on patches cut by a plain loop over frames and patch
    positions (frame rows first, then each patch's channels, rows, columns); patchify makes the same cut, and the
    forward pass (patchify, then encode) gives the same f_ra."""
    torch.manual_seed(2)
    patch, batch, frames = 4, 2, 3
    m = _fsa(patch).eval()
    clip = torch.randn(batch, 2, frames, 12, 12, dtype=torch.float64)
    cut = torch.stack(
        [
            torch.stack(
                [
                    clip[b, :, t, i * patch : (i + 1) * patch, j * patch : (j + 1) * patch].reshape(-1)
                    for i in range(12 // patch)
                    for j in range(12 // patch)
                ]
            )
            for b in range(batch)
            for t in range(frames)
        ]
    )  # [B*T, Z, C*D*D]
    with torch.no_grad():
        want = torch.stack(
            [torch.stack([_hand_fsa_frame(m, cut[b * frames + t]) for t in range(frames)], dim=1) for b in range(batch)]
        )  # [B, C_ra, T]
        assert want.shape == (batch, 6, frames)
        torch.testing.assert_close(m.encode(cut, batch), want)
        assert torch.equal(patchify(clip, patch), cut)
        torch.testing.assert_close(m(clip), want)
    with pytest.raises(ValueError, match=r"built for 9 patches of 32 values per frame, got \[9, 31\]"):
        m.encode(cut[..., :-1], batch)


def test_join_interleaves_start_and_end_halves() -> None:
    f_ca = torch.arange(4.0).view(1, 4, 1)  # start channels 0, 1; end channels 2, 3
    f_ra = 10 + torch.arange(6.0).view(1, 6, 1)  # start 10, 11, 12; end 13, 14, 15
    f_a = join_frame_features(f_ca, f_ra)
    assert f_a.flatten().tolist() == [0.0, 1.0, 10.0, 11.0, 12.0, 2.0, 3.0, 13.0, 14.0, 15.0]
    assert join_frame_features(f_ca, None) is f_ca


def test_pooling_f_a_pools_each_source_over_its_own_regions() -> None:
    torch.manual_seed(2)
    f_ca, f_ra = torch.randn(1, 4, 20), torch.randn(1, 6, 20)
    seg = torch.tensor([[[2.0, 5.0, 11.0, 17.0]]])
    pooled = boundary_max_pool(join_frame_features(f_ca, f_ra), seg)[0, :, 0]
    start_expected = torch.cat([f_ca[0, :2, 2:6].amax(-1), f_ra[0, :3, 2:6].amax(-1)])
    end_expected = torch.cat([f_ca[0, 2:, 11:18].amax(-1), f_ra[0, 3:, 11:18].amax(-1)])
    torch.testing.assert_close(pooled, torch.cat([start_expected, end_expected]))

"""STT and the shared transformer against slow references that loop over sequences, heads and time steps and
compute attention, LayerNorm and GELU explicitly (the modules use SDPA and folded batches)."""

from __future__ import annotations

import math

import pytest
import torch

from talmts.config import STTConfig
from talmts.models.stt import SpatialTemporalTransformer, STTPyramid
from talmts.models.transformer import Encoder, EncoderBlock, SelfAttention, patchify


def ref_linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    return x @ layer.weight.T + layer.bias


def ref_layer_norm(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def ref_attention(attn: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """One sequence ``[S, D]`` at a time, one head at a time, softmax written out."""
    d = x.shape[-1]
    dh = d // attn.heads
    outs = []
    for seq in x:
        qkv = ref_linear(seq, attn.qkv)
        q, k, v = qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :]
        heads = []
        for h in range(attn.heads):
            cols = slice(h * dh, (h + 1) * dh)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(dh)
            weights = torch.exp(scores - scores.max(-1, keepdim=True).values)
            heads.append((weights / weights.sum(-1, keepdim=True)) @ v[:, cols])
        outs.append(ref_linear(torch.cat(heads, dim=-1), attn.proj))
    return torch.stack(outs)


def ref_block(block: EncoderBlock, x: torch.Tensor) -> torch.Tensor:
    x = x + ref_attention(block.attn, ref_layer_norm(x, block.norm1))
    hidden = ref_linear(ref_layer_norm(x, block.norm2), block.mlp[0])
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
    return x + ref_linear(hidden, block.mlp[3])


def ref_encoder(enc: Encoder, x: torch.Tensor) -> torch.Tensor:
    for block in enc.blocks:
        x = ref_block(block, x)
    return ref_layer_norm(x, enc.norm)


def _randomise(module: torch.nn.Module) -> None:
    # LayerNorms start at (1, 0) and biases at 0: perturb everything so the reference checks every term
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)


def test_attention_and_encoder_match_explicit_reference() -> None:
    torch.manual_seed(0)
    enc = Encoder(dim=12, heads=3, layers=2, mlp_ratio=2.0).double()
    _randomise(enc)
    x = torch.randn(4, 5, 12, dtype=torch.float64)
    torch.testing.assert_close(enc.blocks[0].attn(x), ref_attention(enc.blocks[0].attn, x))
    torch.testing.assert_close(enc(x), ref_encoder(enc, x))


def test_attention_width_must_split_into_heads() -> None:
    with pytest.raises(ValueError, match="divisible"):
        SelfAttention(10, 3)


def test_patchify_matches_slicing() -> None:
    clip = torch.randn(2, 3, 4, 6, 9)
    patches = patchify(clip, 3)  # [2*4, 2*3, 27]
    assert patches.shape == (8, 6, 27)
    for b in range(2):
        for t in range(4):
            for i in range(2):
                for j in range(3):
                    expected = clip[b, :, t, 3 * i : 3 * i + 3, 3 * j : 3 * j + 3].reshape(-1)
                    assert torch.equal(patches[b * 4 + t, i * 3 + j], expected)
    with pytest.raises(ValueError, match="must divide"):
        patchify(clip, 4)


def _stt(tokens: str, token_dim: int, spatial: int, steps: int) -> SpatialTemporalTransformer:
    cfg = STTConfig(tokens=tokens, patch=4, dim=8, heads=2, spatial_layers=1, temporal_layers=2, mlp_ratio=2.0)
    m = SpatialTemporalTransformer(cfg, token_dim, spatial, steps, out_channels=6).double()
    _randomise(m)
    return m


def test_stt_on_feature_cells_matches_per_step_reference() -> None:
    torch.manual_seed(1)
    m = _stt("features", token_dim=5, spatial=6, steps=4)
    x = torch.randn(2, 5, 4, 2, 3, dtype=torch.float64)  # [B, C_e, T_j, h, w]
    out = m(x)
    assert out.shape == (2, 6, 4)
    for b in range(2):
        steps = []
        for t in range(4):
            cells = x[b, :, t].reshape(5, 6).T  # [h*w, C_e]
            s = ref_encoder(m.spatial, (ref_linear(cells, m.embed) + m.spatial_pos)[None])[0]
            steps.append(s.mean(0))
        f = ref_encoder(m.temporal, (torch.stack(steps) + m.temporal_pos)[None])[0]
        torch.testing.assert_close(out[b], ref_linear(f, m.out).T)


def test_stt_on_frame_patches_matches_per_frame_reference() -> None:
    torch.manual_seed(2)
    m = _stt("frames", token_dim=2 * 16, spatial=4, steps=3)
    clip = torch.randn(1, 2, 3, 8, 8, dtype=torch.float64)
    out = m(clip)
    steps = []
    for t in range(3):
        patches = [clip[0, :, t, i : i + 4, j : j + 4].reshape(-1) for i in (0, 4) for j in (0, 4)]
        s = ref_encoder(m.spatial, (ref_linear(torch.stack(patches), m.embed) + m.spatial_pos)[None])[0]
        steps.append(s.mean(0))
    f = ref_encoder(m.temporal, (torch.stack(steps) + m.temporal_pos)[None])[0]
    torch.testing.assert_close(out[0], ref_linear(f, m.out).T)


def test_stt_refuses_other_sizes() -> None:
    m = _stt("features", token_dim=5, spatial=6, steps=4)
    with pytest.raises(ValueError, match="built for 4 steps"):
        m(torch.randn(1, 5, 8, 2, 3, dtype=torch.float64))


@pytest.mark.parametrize(
    ("steps", "level0", "entry_strides", "upsample"),
    [(64, 64, [1], False), (192, 96, [2], False), (256, 64, [2, 2], False), (32, 64, [1], True)],
)
def test_stt_pyramid_reaches_every_level_length(
    steps: int, level0: int, entry_strides: list[int], upsample: bool
) -> None:
    p = STTPyramid(channels=8, steps=steps, level0=level0, levels=6, groups=4)
    assert [m[0].stride[0] for m in p.entry] == entry_strides
    assert p.upsample is upsample
    out = p(torch.randn(1, 8, steps))
    assert [o.shape[-1] for o in out] == [level0 // 2**i for i in range(6)]


def test_stt_pyramid_refuses_a_non_power_of_two_ratio() -> None:
    with pytest.raises(ValueError, match="cannot be brought"):
        STTPyramid(channels=8, steps=96, level0=64, levels=6, groups=4)

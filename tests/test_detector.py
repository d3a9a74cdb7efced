"""The assembled TAL-MTS network: AFSD's parameter count with every module off, shapes of the THUMOS and
ActivityNet variants, every switch combination, gradient flow, and which branch each module feeds."""

from __future__ import annotations

import itertools

import pytest
import torch

from talmts.config import Config, ConfigError
from talmts.models import TALMTS, build_detector
from talmts.models.i3d import InceptionI3d
from talmts.models.pyramid import endpoint_shape
from talmts.models.transformer import patchify

FULL_WIDTH = {"Mixed_4f": 832, "Mixed_5c": 1024}

# AFSD's THUMOS head (BDNet minus I3D), layer by layer, 512 channels, 21 logits:
#   3D convs 832*512*36+512 and 1024*512*9+512, each + GN(1024)          15,336,960 + 4,720,128
#   four k3/s2 convs (786,944 + GN 1,024)                                  3,151,872
#   loc + conf towers, 2 x (786,944 + 1,024) each                          3,151,872
#   loc head 512*2*3+2, conf head 512*21*3+21, 6 ScaleExp                  3,074 + 32,277 + 6
#   f_ca convs: 2 x (786,944+1,024) + (262,656+1,024)                      1,839,616
#   2 proposal branches: fm_short 263,680, lr 527,360, roi 263,680,
#     proposal 1,050,112                                                   4,209,664
#   prop_loc 1,026, prop_conf 10,773, quality (k3) 1,537                  13,336
AFSD_THUMOS_HEAD = 32_458_805  # AFSD: 44.75 M total - 12.29 M I3D = 32.46 M
AFSD_ANET_HEAD = 17_870_863  # AFSD-ANet: 30.16 M - 12.29 M = 17.87 M (Mixed_5c only, 2 logits)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def all_off(cfg: Config) -> Config:
    cfg.model.rfp.enabled = cfg.model.stt.enabled = cfg.model.fsa.enabled = False
    return cfg


def tiny(clip: int = 64, frame: int = 32, levels: int = 4) -> Config:
    cfg = Config()
    cfg.data.clip_frames, cfg.data.frame_size = clip, frame
    m = cfg.model
    m.levels, m.channels, m.groups = levels, 32, 8
    m.backbone.width = 0.25
    m.stt.dim = m.fsa.dim = 16
    m.stt.heads = m.fsa.heads = 2
    m.stt.patch, m.fsa.patch, m.fsa.out_channels = 16, 8, 32
    return cfg


def head_only(cfg: Config, num_classes: int = 4) -> TALMTS:
    w = cfg.model.backbone.width
    channels = {e: InceptionI3d.endpoint_channels(e, w) for e in FULL_WIDTH}
    return TALMTS(cfg.model, num_classes, cfg.data.clip_frames, cfg.data.frame_size, 3, channels)


def random_inputs(net: TALMTS, batch: int = 2) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    t, s = net.clip_frames, net.frame_size
    w = net.cfg.backbone.width
    feats = {e: torch.randn(batch, InceptionI3d.endpoint_channels(e, w), *endpoint_shape(e, t, s)) for e in FULL_WIDTH}
    return feats, torch.randn(batch, 3, t, s, s)


def test_all_off_is_afsd_head_parameter_for_parameter() -> None:
    cfg = all_off(Config())
    assert count(TALMTS(cfg.model, 20, 256, 96, 3, FULL_WIDTH)) == AFSD_THUMOS_HEAD
    cfg.model.variant = "single_endpoint"
    assert count(TALMTS(cfg.model, 1, 768, 96, 3, FULL_WIDTH)) == AFSD_ANET_HEAD


def test_all_off_detector_matches_afsd_total() -> None:
    net = build_detector(all_off(Config()), num_classes=20, in_channels=3)  # builds only, no forward
    assert count(net) - count(net.backbone) == AFSD_THUMOS_HEAD
    assert round(count(net) / 1e6, 2) == 44.75  # AFSD's published BDNet size


def test_thumos_shapes_at_256_frames_96px() -> None:
    cfg = Config()
    cfg.model.backbone.width, cfg.model.channels = 0.25, 64
    cfg.model.stt.dim = cfg.model.fsa.dim = 64
    cfg.model.fsa.out_channels = 64
    net = build_detector(cfg, num_classes=20, in_channels=3).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 256, 96, 96) * 2 - 1)
    assert out.level_sizes == (64, 32, 16, 8, 4, 2) and out.clip_frames == 256
    assert out.loc.shape == out.prop_loc.shape == (1, 126, 2)
    assert out.conf.shape == out.prop_conf.shape == (1, 126, 21)
    assert out.quality.shape == (1, 126) and out.anchors.shape == (126,)
    assert (out.loc >= 0).all()
    assert out.anchors[:2].tolist() == [2.0, 6.0] and out.anchors[-2:].tolist() == [64.0, 192.0]


def test_activitynet_single_endpoint_shapes_and_stride_multipliers() -> None:
    cfg = tiny(clip=768, frame=32, levels=6)
    cfg.model.variant = "single_endpoint"
    net = head_only(cfg, num_classes=1)
    assert net.endpoints == ["Mixed_4f", "Mixed_5c"]  # STT reads Mixed_4f (192 steps), the pyramid Mixed_5c
    assert net.loc_multipliers == [4.0, 8.0, 16.0, 32.0, 64.0, 128.0]  # AFSD-ANet's fpn_strides
    with torch.no_grad():  # loc head silenced: exp(0) = 1, so loc equals each level's multiplier
        net.coarse.loc_head.weight.zero_()
        net.coarse.loc_head.bias.zero_()
        out = net.forward_features(*random_inputs(net, batch=1))
    assert out.level_sizes == (96, 48, 24, 12, 6, 3)
    assert out.loc.shape == (1, 189, 2) and out.conf.shape == (1, 189, 2) and out.quality.shape == (1, 189)
    expected = torch.cat([torch.full((t,), m) for t, m in zip(out.level_sizes, net.loc_multipliers)])
    assert torch.equal(out.loc[0, :, 0], expected) and torch.equal(out.loc[0, :, 1], expected)
    assert out.anchors[:2].tolist() == [4.0, 12.0] and out.anchors[-1].item() == 640.0


def test_thumos_variant_has_no_stride_multiplier() -> None:
    net = head_only(tiny())
    assert net.loc_multipliers == [1.0] * 4


SWITCHES = list(
    itertools.product([False, True], ["off", "Mixed_4f", "Mixed_5c", "frames"], [False, True], ["nearest", "linear"])
)


@pytest.mark.parametrize(("rfp", "stt", "fsa", "mode"), SWITCHES[::2] + [SWITCHES[-1]])
def test_every_switch_combination_runs(rfp: bool, stt: str, fsa: bool, mode: str) -> None:
    cfg = tiny()
    m = cfg.model
    m.rfp.enabled, m.rfp.mode, m.rfp.frame_mode, m.fsa.enabled = rfp, mode, mode, fsa
    m.stt.enabled = stt != "off"
    if stt == "frames":
        m.stt.tokens = "frames"
    elif stt != "off":
        m.stt.endpoint = stt
    net = head_only(cfg)
    out = net.forward_features(*random_inputs(net))
    assert out.level_sizes == (16, 8, 4, 2)
    assert out.loc.shape == (2, 30, 2) and out.prop_conf.shape == (2, 30, 5) and out.quality.shape == (2, 30)
    for t in (out.loc, out.conf, out.prop_loc, out.prop_conf, out.quality):
        assert torch.isfinite(t).all()
    assert (net.stt is not None) == (stt != "off") and (net.fsa is not None) == fsa


@pytest.mark.parametrize("tokens", ["features", "frames"])
def test_gradient_reaches_every_trainable_parameter(tokens: str) -> None:
    torch.manual_seed(0)
    cfg = tiny()
    cfg.model.stt.tokens = tokens
    net = build_detector(cfg, num_classes=3, in_channels=3).train()
    out = net(torch.rand(1, 3, 64, 32, 32) * 2 - 1)
    loss = sum(t.square().mean() for t in (out.loc, out.conf, out.prop_loc, out.prop_conf, out.quality))
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []


def _perturbed_outputs(net: TALMTS, module: torch.nn.Module) -> tuple:
    torch.manual_seed(1)
    inputs = random_inputs(net)
    with torch.no_grad():
        before = net.forward_features(*inputs)
        for p in module.parameters():
            p.add_(torch.randn_like(p))
        after = net.forward_features(*inputs)
    return before, after


def test_stt_feeds_only_the_classification_branch() -> None:
    net = head_only(tiny()).eval()
    before, after = _perturbed_outputs(net, net.stt)
    for name in ("loc", "prop_loc", "quality"):  # f_loc = Conv1(f): no STT
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    for name in ("conf", "prop_conf"):  # f_cls = Conv2([f, f_l])
        assert not torch.allclose(getattr(before, name), getattr(after, name)), name


def test_fsa_feeds_only_the_refinement() -> None:
    net = head_only(tiny()).eval()
    before, after = _perturbed_outputs(net, net.fsa)
    for name in ("loc", "conf"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    for name in ("prop_loc", "prop_conf", "quality"):
        assert not torch.allclose(getattr(before, name), getattr(after, name)), name


@pytest.mark.parametrize("tokens", ["features", "frames"])
def test_fsa_patches_given_are_the_clip_cut_by_fsa(tokens: str) -> None:
    """forward_features with FSA's patches made beforehand gives what it gives from the clip; the clip is only
    needed by frame-token STT, and wrong patches are refused."""
    cfg = tiny()
    cfg.model.stt.tokens = tokens
    net = head_only(cfg).eval()
    feats, clip = random_inputs(net)
    patches = patchify(clip, cfg.model.fsa.patch)
    with torch.no_grad():
        want = net.forward_features(feats, clip)
        got = net.forward_features(feats, clip if net.reads_clip else None, patches)
        other = net.forward_features(feats, clip, patchify(torch.rand_like(clip), cfg.model.fsa.patch))
    for name in ("loc", "conf", "prop_loc", "prop_conf", "quality"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert not torch.allclose(other.prop_conf, want.prop_conf)  # the patches, not the clip, fed FSA
    assert net.reads_clip == (tokens == "frames")
    with pytest.raises(ValueError, match="FSA patches for"):
        net.forward_features(feats, clip, patches[1:])
    if net.reads_clip:
        with pytest.raises(ValueError, match="frame-token STT reads"):
            net.forward_features(feats, None, patches)
    else:
        with pytest.raises(ValueError, match="FSA reads"):
            net.forward_features(feats, None)


def test_init_follows_afsd() -> None:
    thumos = head_only(tiny())
    w = thumos.coarse.loc_tower[0][0].weight  # xavier-uniform: |w| <= sqrt(6 / (fan_in + fan_out))
    bound = (6 / (w.shape[1] * 3 + w.shape[0] * 3)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert not thumos.coarse.loc_tower[0][0].bias.any()
    cfg = tiny()
    cfg.model.variant = "single_endpoint"
    anet = head_only(cfg)
    assert abs(anet.refined.loc_branch.lr[0].weight.std().item() - 0.01) < 0.002  # AFSD-ANet's N(0, 0.01)


def test_bad_sizes_and_widths_are_refused() -> None:
    net = head_only(tiny())
    feats, clip = random_inputs(net)
    with pytest.raises(ValueError, match="64-frame clips"):
        net.forward_features(feats, clip[:, :, :32])
    cfg = tiny()
    cfg.model.channels = 36
    with pytest.raises(ConfigError, match="model.groups"):
        head_only(cfg)
    cfg = tiny()
    cfg.model.stt.heads = 3
    with pytest.raises(ConfigError, match="model.stt.dim"):
        head_only(cfg)


def test_outputs_are_float32_under_autocast() -> None:
    net = head_only(tiny())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net.forward_features(*random_inputs(net, batch=1))
    assert {t.dtype for t in (out.loc, out.conf, out.prop_loc, out.prop_conf, out.quality)} == {torch.float32}

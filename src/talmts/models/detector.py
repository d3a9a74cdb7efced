"""The TAL-MTS network assembled from the config: I3D -> RFP (+ STT) -> coarse heads -> FSA + boundary pooling ->
refined heads. With ``model.rfp/stt/fsa.enabled`` all false it is AFSD's BDNet (same layers, same parameter count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from talmts.config import Config, ConfigError, ModelConfig
from talmts.models.boundary_pool import boundary_max_pool, frame_segments, level_segments
from talmts.models.fsa import FrameSelfAttention, join_frame_features
from talmts.models.heads import CoarseHead, RefinedHead
from talmts.models.pyramid import FeaturePyramid, FrameFeature, endpoint_shape
from talmts.models.stt import SpatialTemporalTransformer, STTPyramid
from talmts.outputs import DetectorOutput


def pyramid_lengths(cfg: ModelConfig, clip_frames: int) -> list[int]:
    """t_l of every level: level 0 from the first pyramid endpoint, then ceil-halving (TF "same" k3/s2 convs)."""
    first = "Mixed_4f" if cfg.variant == "two_endpoint" else "Mixed_5c"
    lengths = [endpoint_shape(first, clip_frames, 1)[0]]
    while len(lengths) < cfg.levels:
        lengths.append(math.ceil(lengths[-1] / 2))
    return lengths


def anchor_centres(level_sizes: Sequence[int], clip_frames: int, device: torch.device | None = None) -> Tensor:
    """Anchor centres of every level in clip frames, concatenated: ``(c + 0.5) * T / t_l`` for position c of
    level l; ``[K]``, K = sum of the level sizes."""
    return torch.cat(
        [(torch.arange(t, device=device, dtype=torch.float32) + 0.5) * (clip_frames / t) for t in level_sizes]
    )


def _check(cfg: ModelConfig) -> None:
    g = cfg.groups
    widths = {"model.channels": cfg.channels}
    if cfg.fsa.enabled:
        widths["model.fsa.out_channels"] = cfg.fsa.out_channels
    for key, width in widths.items():
        if width % g or width % 2:
            raise ConfigError(f"{key}={width} must be even and divisible by model.groups={g} (GroupNorm groups)")
    for key, sub in (("model.stt", cfg.stt), ("model.fsa", cfg.fsa)):
        if sub.enabled and sub.dim % sub.heads:
            raise ConfigError(f"{key}.dim={sub.dim} must be divisible by {key}.heads={sub.heads}")


class TALMTS(nn.Module):
    """``forward(clip [B, C, T, H, W]) -> DetectorOutput``; :meth:`forward_features` runs the head alone."""

    def __init__(
        self,
        cfg: ModelConfig,
        num_classes: int,
        clip_frames: int,
        frame_size: int,
        in_channels: int,
        endpoint_channels: dict[str, int],
        backbone: nn.Module | None = None,
    ) -> None:
        super().__init__()
        _check(cfg)
        self.cfg, self.num_classes = cfg, num_classes
        self.clip_frames, self.frame_size = clip_frames, frame_size
        self.backbone = backbone
        ch, groups, n_levels = cfg.channels, cfg.groups, cfg.levels
        hw = {e: endpoint_shape(e, clip_frames, frame_size)[1:] for e in ("Mixed_4f", "Mixed_5c")}
        self.pyramid = FeaturePyramid(
            cfg.variant, endpoint_channels, hw, ch, n_levels, groups, cfg.rfp.enabled, cfg.rfp.mode
        )
        lengths = pyramid_lengths(cfg, clip_frames)
        # the paper's f_ca uses linear interpolation; without RFP the pyramid is AFSD's, whose f_ca is nearest
        self.frame_feature = FrameFeature(ch, groups, cfg.rfp.frame_mode if cfg.rfp.enabled else "nearest")

        self.stt: SpatialTemporalTransformer | None = None
        self.stt_pyramid: STTPyramid | None = None
        if cfg.stt.enabled:
            if cfg.stt.tokens == "features":
                steps, h, w = endpoint_shape(cfg.stt.endpoint, clip_frames, frame_size)
                token_dim, tokens = endpoint_channels[cfg.stt.endpoint], h * w
            else:
                if frame_size % cfg.stt.patch:
                    raise ConfigError(f"model.stt.patch={cfg.stt.patch} must divide data.frame_size={frame_size}")
                steps, token_dim = clip_frames, in_channels * cfg.stt.patch**2
                tokens = (frame_size // cfg.stt.patch) ** 2
            self.stt = SpatialTemporalTransformer(cfg.stt, token_dim, tokens, steps, ch)
            self.stt_pyramid = STTPyramid(ch, steps, lengths[0], n_levels, groups)

        self.fsa = FrameSelfAttention(cfg.fsa, in_channels, frame_size) if cfg.fsa.enabled else None
        frame_channels = ch + (cfg.fsa.out_channels if cfg.fsa.enabled else 0)
        cls_channels = ch * (2 if cfg.stt.enabled else 1)
        self.coarse = CoarseHead(ch, cls_channels, num_classes + 1, n_levels, groups)
        self.refined = RefinedHead(ch, frame_channels, num_classes + 1, groups)
        # AFSD-ANet multiplies the distances by [4, 8, ..., 128] at T=768 (half of each level's true stride T/t_l)
        self.loc_multipliers = (
            [clip_frames / lengths[0] / 2 * 2**i for i in range(n_levels)]
            if cfg.variant == "single_endpoint"
            else [1.0] * n_levels
        )
        self.reset_head_parameters()

    @property
    def stt_endpoint(self) -> str | None:
        if self.stt is None or self.cfg.stt.tokens == "frames":
            return None
        return self.cfg.stt.endpoint

    def reset_head_parameters(self) -> None:
        """AFSD's init: xavier-uniform conv weights and zero biases (transformers keep their ViT init); the
        single-endpoint (ActivityNet) variant re-initialises towers, heads and branches with N(0, 0.01) as AFSD-ANet."""
        convs = (nn.Conv1d, nn.Conv3d)
        for name, child in self.named_children():
            if name == "backbone":
                continue
            for m in child.modules():
                if isinstance(m, convs):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
        if self.cfg.variant == "single_endpoint":
            for m in [*self.coarse.modules(), *self.refined.modules()]:
                if isinstance(m, nn.Conv1d):
                    nn.init.normal_(m.weight, std=0.01)
                    nn.init.zeros_(m.bias)

    def forward(self, clip: Tensor) -> DetectorOutput:
        if self.backbone is None:
            raise RuntimeError("this TALMTS has no backbone; call forward_features(features, clip)")
        return self.forward_features(self.backbone.extract_features(clip, self.endpoints), clip)

    @property
    def endpoints(self) -> list[str]:
        """The backbone endpoints this head reads (only these are kept, to save memory)."""
        names = set(self.pyramid.endpoints)
        if self.stt_endpoint is not None:
            names.add(self.stt_endpoint)
        return sorted(names)

    @property
    def reads_clip(self) -> bool:
        """Whether :meth:`forward_features` needs the clip even when FSA's patches are given (frame-token STT)."""
        return self.stt is not None and self.cfg.stt.tokens == "frames"

    def forward_features(
        self, features: dict[str, Tensor], clip: Tensor | None, fsa_patches: Tensor | None = None
    ) -> DetectorOutput:
        """``features`` = backbone endpoints, ``clip [B, C, T, H, W]`` (read by FSA and frame-token STT).

        ``fsa_patches``: FSA's input already cut (``patchify(clip, model.fsa.patch)``, e.g. from uint8 frames); then
        ``clip`` may be None unless :attr:`reads_clip`."""
        t_clip = clip.shape[2] if clip is not None else self.clip_frames
        if t_clip != self.clip_frames:
            raise ValueError(f"the detector was built for {self.clip_frames}-frame clips, got {t_clip}")
        levels = self.pyramid(features)  # L x [B, C, t_l]
        sizes = tuple(x.shape[-1] for x in levels)
        f_ra = None
        if self.fsa is not None:
            batch = levels[0].shape[0]
            if fsa_patches is not None:
                if fsa_patches.shape[0] != batch * t_clip:
                    raise ValueError(f"FSA patches for {fsa_patches.shape[0]} frames, expected {batch} x {t_clip}")
                f_ra = self.fsa.encode(fsa_patches, batch)
            else:
                f_ra = self.fsa(_needed(clip, "FSA"))
        f_a = join_frame_features(self.frame_feature(levels[0], t_clip), f_ra)  # [B, C_a, T]
        cls_levels = levels
        if self.stt is not None and self.stt_pyramid is not None:
            stt_in = _needed(clip, "frame-token STT") if self.reads_clip else features[self.cfg.stt.endpoint]
            f_l = self.stt_pyramid(self.stt(stt_in))
            cls_levels = [torch.cat([f, g], dim=1) for f, g in zip(levels, f_l)]  # f_mts = [f, f_l]

        anchors = anchor_centres(sizes, t_clip, levels[0].device)  # [K]
        coarse = [self.coarse(f, g, i, self.loc_multipliers[i]) for i, (f, g) in enumerate(zip(levels, cls_levels))]
        loc = torch.cat([c[2] for c in coarse], dim=1)  # [B, K, 2]
        # f_a is pooled once for all levels; both branches share the pooled feature
        pooled = boundary_max_pool(f_a, frame_segments(loc, anchors, self.cfg.segment_plus_one))  # [B, C_a, K]
        refined = [
            self.refined(lf, cf, p, level_segments(lc, t, t_clip))
            for (lf, cf, lc, _), p, t in zip(coarse, pooled.split(sizes, dim=2), sizes)
        ]
        return DetectorOutput(
            loc=_full(loc),
            conf=_full(torch.cat([c[3] for c in coarse], dim=1)),
            prop_loc=_full(torch.cat([r[0] for r in refined], dim=1)),
            prop_conf=_full(torch.cat([r[1] for r in refined], dim=1)),
            quality=_full(torch.cat([r[2] for r in refined], dim=1)),
            anchors=anchors,
            level_sizes=sizes,
            clip_frames=t_clip,
        )


def _needed(clip: Tensor | None, reader: str) -> Tensor:
    if clip is None:
        raise ValueError(f"{reader} reads the clip's frames: pass the clip")
    return clip


def _full(t: Tensor) -> Tensor:
    """Half-precision outputs (autocast) become float32: losses and decoding need the precision."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def build_detector(cfg: Config, num_classes: int, in_channels: int) -> TALMTS:
    """The full network for ``cfg`` with an I3D backbone (pretrained when ``cfg.model.backbone.weights`` is set)."""
    from talmts.models.i3d import InceptionI3d  # the backbone module is heavy; import on use

    b = cfg.model.backbone
    backbone = InceptionI3d(
        in_channels=in_channels,
        width=b.width,
        final_endpoint="Mixed_5c",
        freeze_bn=b.freeze_bn,
        checkpoint=b.checkpoint,
    )
    if b.weights:
        from talmts.models.weights import load_i3d_weights

        load_i3d_weights(backbone, b.weights)
    channels = {e: InceptionI3d.endpoint_channels(e, b.width, in_channels) for e in ("Mixed_4f", "Mixed_5c")}
    return TALMTS(cfg.model, num_classes, cfg.data.clip_frames, cfg.data.frame_size, in_channels, channels, backbone)

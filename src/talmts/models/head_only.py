"""The TAL-MTS head without its backbone, for training on cached I3D features (every module of the paper kept:
RFP, STT, FSA, boundary pooling, coarse and refined heads).

Its parameters have the same names as in the full :class:`TALMTS` (``pyramid.*``, ``stt.*``, ...), so its state
dict loads into a full network beside the frozen backbone's (:func:`head_into_detector`).
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor, nn

from talmts.config import Config
from talmts.errors import InputError
from talmts.models.detector import TALMTS
from talmts.outputs import DetectorOutput


class CachedWindows(Protocol):
    """The head's input in stage 1 (talmts.data.feature_cache.CachedInput): the backbone's endpoints of each window,
    and its frames, as the clip or as FSA's patches cut from them."""

    features: dict[str, Tensor]

    @property
    def clip(self) -> Tensor: ...

    def fsa_patches(self, patch: int) -> Tensor: ...


def endpoint_channels(width: float, in_channels: int) -> dict[str, int]:
    from talmts.models.i3d import InceptionI3d

    return {e: InceptionI3d.endpoint_channels(e, width, in_channels) for e in ("Mixed_4f", "Mixed_5c")}


class HeadOnlyTALMTS(TALMTS):
    """``forward(x)`` with ``x.features`` (cached endpoints) and the windows' frames, read as FSA's patches (the
    float clip only for frame-token STT)."""

    def forward(self, x: CachedWindows) -> DetectorOutput:  # type: ignore[override]
        patches = x.fsa_patches(self.fsa.patch) if self.fsa is not None else None
        return self.forward_features(x.features, x.clip if self.reads_clip else None, patches)


def build_head(cfg: Config, num_classes: int, in_channels: int) -> HeadOnlyTALMTS:
    """The head of :func:`talmts.models.build_detector` for ``cfg``, same layers and initialisation, no backbone."""
    d = cfg.data
    channels = endpoint_channels(cfg.model.backbone.width, in_channels)
    return HeadOnlyTALMTS(cfg.model, num_classes, d.clip_frames, d.frame_size, in_channels, channels, backbone=None)


def head_into_detector(detector: TALMTS, head_state: dict[str, Any]) -> None:
    """Load a head's weights into a full network in place; its backbone keeps its own weights."""
    result = detector.load_state_dict(head_state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("backbone.")]
    if missing or result.unexpected_keys:
        raise InputError(
            f"the head's weights do not fit this network: missing {missing[:5]}, unexpected "
            f"{list(result.unexpected_keys)[:5]} (was the head trained under another model config?)"
        )


def frozen(module: nn.Module) -> nn.Module:
    """``module`` in eval mode with no gradients: the backbone as the cache sees it."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module

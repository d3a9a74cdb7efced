"""The TAL-MTS network: I3D backbone, RFP, STT, FSA, boundary pooling, coarse and refined heads.

The network is imported on first use (``talmts.models.build_detector``), not with the package: the command line
reads the levers' vocabulary (lever_settings.py) without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from talmts.models.detector import TALMTS, build_detector

__all__ = ["TALMTS", "build_detector"]


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def __getattr__(name: str) -> Any:
    if name in __all__:
        from talmts.models import detector

        return getattr(detector, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The TAL-MTS network: I3D backbone, RFP, STT, FSA, boundary pooling, coarse and refined heads."""

from talmts.models.detector import TALMTS, build_detector

__all__ = ["TALMTS", "build_detector"]

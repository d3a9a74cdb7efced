"""``talmts extract-features``: the frozen I3D run once, into the video feature cache that head-only training reads,
into ActionFormer-style snippet features for other tools, or both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from talmts.config import MODALITY_CHANNELS, Config
from talmts.engine.commands.snippets import SnippetSummary, extract_snippet_features
from talmts.engine.training.cached_features import ExtractSummary, extract_video_features, frozen_detector
from talmts.errors import InputError


@dataclass
class ExtractedFeatures:
    """What was written: the video cache's summary and the snippet features' (None where not asked for)."""

    cache: ExtractSummary | None
    snippets: SnippetSummary | None


def extract_features(
    cfg: Config,
    *,
    cache: str | Path | None = None,
    subsets: Sequence[str] | None = None,
    snippets: str | Path | None = None,
    snippet_window: int = 16,
    snippet_stride: int = 4,
    batch_size: int = 16,
    dtype: str = "float16",
    progress: bool = True,
) -> ExtractedFeatures:
    """The video cache at ``cache`` (default train.feature_cache) for ``subsets`` (default the training and
    validation splits) and/or ``[T, C]`` snippet features in ``snippets``."""
    cache = cache or cfg.train.feature_cache
    if not cache and not snippets:
        raise InputError("give --out CACHE (or set train.feature_cache), --snippets DIR, or both")
    cached = None
    if cache:
        chosen = list(subsets) if subsets else None
        cached = extract_video_features(cfg, cache, chosen, progress=progress, dtype=dtype)
    written = None
    if snippets:
        backbone = frozen_detector(cfg, 1, MODALITY_CHANNELS[cfg.data.modality]).backbone
        written = extract_snippet_features(
            cfg,
            backbone,
            snippets,
            window=snippet_window,
            stride=snippet_stride,
            batch_size=batch_size,
            progress=progress,
        )
    return ExtractedFeatures(cached, written)

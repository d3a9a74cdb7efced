"""``talmts train``'s one entry: the recipe the config names, the whole network end to end, or (train.feature_cache
set) the head on the frozen backbone's cached features, then an optional fine-tune."""

from __future__ import annotations

from pathlib import Path

from talmts.config import Config
from talmts.engine.training.loop import TrainResult


def run_training(cfg: Config, *, resume: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Train one stream as ``cfg`` says; raises TrainingStopped when a stop signal ended it after a checkpoint."""
    if cfg.train.feature_cache:
        from talmts.engine.training.cached_features import train_cached

        return train_cached(cfg, resume=resume, progress=progress)
    from talmts.engine.training.loop import train

    return train(cfg, resume=resume, progress=progress)

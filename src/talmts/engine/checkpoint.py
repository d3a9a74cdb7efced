"""Checkpoints: written atomically, carrying everything to resume training or to run the model alone.

A checkpoint is a dict saved with ``torch.save``:
  format      CHECKPOINT_FORMAT, bumped when the layout changes
  config      the resolved config as a plain dict (Config.to_dict())
  classes     action class names in index order (1..C)
  in_channels 3 (RGB) or 2 (flow)
  model       the network's state_dict (unwrapped from DDP)
  ema         the EMA weights' state_dict, or None
  optimizer, scheduler   their state_dicts (training only)
  rng         python / numpy / torch (/ cuda) RNG states
  epoch       epochs completed; step: optimiser steps completed; epoch_step: steps done inside ``epoch``
  history     the per-step loss log so far, so a resumed run keeps one continuous log
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from talmts.fileio import atomic_open

CHECKPOINT_FORMAT = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then os.replace.

    A crash during the write leaves the previous file (if any) untouched and no partial file under ``path``.
    """
    path = Path(path)
    with atomic_open(path, "wb") as f:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, f)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (train writes OUT_DIR/checkpoint-<epoch>.pt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ValueError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); is it a talmts checkpoint?"
        ) from e
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(
            f"checkpoint {path} is not a talmts checkpoint (no 'model'/'config' entries); "
            "talmts eval/detect need a checkpoint written by `talmts train`"
        )
    if state.get("format", 0) > CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} has format {state['format']}; this talmts reads <= {CHECKPOINT_FORMAT}")
    return state


def rng_state() -> dict[str, Any]:
    """Every global RNG state that training draws from (data augmentation, dropout, sampler seeds)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint of the highest epoch in ``out_dir`` (``checkpoint-<epoch>.pt``), or None."""
    found = []
    for p in Path(out_dir).glob("checkpoint-*.pt"):
        tail = p.stem.split("-", 1)[1]
        if tail.isdigit():
            found.append((int(tail), p))
    return max(found)[1] if found else None

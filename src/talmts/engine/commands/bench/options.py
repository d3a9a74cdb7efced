"""What ``talmts bench``'s options may name, apart from the measurements so that the command line can offer them
as choices without loading torch."""

from __future__ import annotations

import dataclasses
from typing import Any

from talmts.models.lever_settings import FAST, Levers

FAST_FLAGS = tuple(  # the on/off levers of the FAST preset, as `--fast` sets them (its dtype is bf16)
    f.name for f in dataclasses.fields(FAST) if getattr(FAST, f.name) is True
)
LEVER_SWITCHES = tuple(f.name for f in dataclasses.fields(Levers) if f.name != "dtype")

TRAIN_VARIANTS: dict[str, dict[str, Any]] = {  # each lever alone, then all the speed levers together
    "plain": {},
    "bf16": {"train.amp": True},
    "channels_last": {"train.channels_last": True},
    "compile": {"train.compile": True},
    "adam_foreach": {"train.adam": "foreach"},
    "adam_fused": {"train.adam": "fused"},
    "checkpoint": {"model.backbone.checkpoint": True},
    "device_transform": {"data.transform": "device"},
    "all": {
        "train.amp": True,
        "train.channels_last": True,
        "train.compile": True,
        "train.adam": "fused",
        "data.transform": "device",
    },
}

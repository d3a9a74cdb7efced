"""One stream's network ready for inference (:class:`Stream`): a checkpoint's PyTorch model or an exported model's
runner, with the config, classes and data preparation it was trained with. The predictor runs streams;
checkpoints (``predictor.load_stream``) and model folders (``runtime.load_model_streams``) make them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from talmts.config import Config
from talmts.data.record import PrepareOptions
from talmts.outputs import DetectorOutput
from talmts.schema import ClassMap


@dataclass
class Stream:
    """A network ready for inference, with the config, classes and data preparation it was trained with.

    ``model`` is the PyTorch network of a checkpoint; an exported model (engine/inference/runtime.py) has none and
    sets ``forward`` to its ONNX Runtime or TorchScript runner instead: the rest of the path is the same.
    """

    model: nn.Module | None
    cfg: Config
    classes: ClassMap
    source: str = ""
    root: str | None = None  # prepared dataset of this stream; None: the evaluation config's data.root
    prepare: PrepareOptions | None = None  # how its training data was prepared, if recorded
    forward: Callable[[torch.Tensor], DetectorOutput] | None = None  # use_fast_path, a runtime; None: ``model``

    @property
    def modality(self) -> str:
        return self.cfg.data.modality

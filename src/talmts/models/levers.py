"""Inference speed levers: the one function that rewrites a detector for them and the one runner that executes it
with them. What they are (:class:`Levers`), their allowed values and the named sets the tools use live apart, in
models/lever_settings.py, where the command line reads them without loading torch.

Two kinds of lever:

- module rewrites (:func:`apply_levers`), the same function computed by other kernels: BatchNorm folded into
  I3D's convolutions, each Inception block's three 1x1x1 convolutions fused into one, I3D's rewrites
  (models/i3d_rewrites.py: space-to-depth stem, 1x1x1 convolutions as matmuls, compilable max pools), and the
  channels-last 3D memory format;
- run-time levers (:class:`LeverRunner`): bf16 autocast, ``torch.compile`` with static shapes, one CUDA graph per
  input shape, and short batches padded to a fixed batch size so that one compiled graph serves them all.

``talmts bench`` measures each lever alone (docs/PERFORMANCE.md); inference uses :data:`INFERENCE` by default and
:data:`FAST` with ``--fast`` on a GPU. Every rewrite gives the plain model's values up to float rounding; bf16
changes scores by its rounding (``talmts bench --check`` reports how much).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable

import torch
from torch import nn

from talmts.models.i3d import InceptionI3d
from talmts.models.i3d_rewrites import rewrite_for_speed
from talmts.models.lever_settings import COMPILE_BACKENDS as COMPILE_BACKENDS  # these 8: re-exported
from talmts.models.lever_settings import COMPILE_MODES as COMPILE_MODES
from talmts.models.lever_settings import DTYPES as DTYPES
from talmts.models.lever_settings import EXACT as EXACT
from talmts.models.lever_settings import FAST as FAST
from talmts.models.lever_settings import INFERENCE as INFERENCE
from talmts.models.lever_settings import PRESETS as PRESETS
from talmts.models.lever_settings import Levers as Levers

PARTS = ("network", "backbone")  # what ``talmts bench`` times: the whole detector, or its I3D backbone alone
CHANNELS_LAST = torch.channels_last_3d


def apply_levers(model: nn.Module, levers: Levers) -> nn.Module:
    """An eval-mode copy of ``model`` with the module rewrites of ``levers``; the original is not touched.

    The rewrites apply to an :class:`InceptionI3d`, or to ``model.backbone`` when that is one (a detector, or
    :class:`BackboneOnly`); channels-last applies to the whole copy. Same device and dtype as ``model``.
    """
    model = copy.deepcopy(model).eval()
    if isinstance(model, InceptionI3d):
        model = _rewrite_i3d(model, levers)
    elif isinstance(getattr(model, "backbone", None), InceptionI3d):
        model.backbone = _rewrite_i3d(model.backbone, levers)
    if levers.channels_last:
        model = model.to(memory_format=CHANNELS_LAST)
    return model


def _rewrite_i3d(i3d: InceptionI3d, levers: Levers) -> InceptionI3d:
    if levers.fuse_pointwise:
        i3d = i3d.fuse_pointwise()  # folds the BN too
    elif levers.fold_bn:
        i3d = i3d.fold_batchnorm()
    if levers.stem_s2d or levers.pointwise_matmul or levers.fused_pools:
        i3d = rewrite_for_speed(
            i3d, stem_s2d=levers.stem_s2d, pointwise_matmul=levers.pointwise_matmul, fused_pools=levers.fused_pools
        )
    return i3d


def compile_model(model: nn.Module, levers: Levers) -> Callable[[torch.Tensor], object]:
    """``torch.compile(model)`` as ``levers`` ask, or ``model`` itself when they do not.

    Static shapes: each batch size gets its own graph (otherwise a second batch size in the same process
    recompiles the code with a dynamic batch dimension, and slower kernels).
    """
    if not levers.compile:
        return model
    mode = None if levers.compile_mode == "default" or levers.compile_backend != "inductor" else levers.compile_mode
    return torch.compile(model, mode=mode, backend=levers.compile_backend, dynamic=False)


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device``, or nothing for fp32."""
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def capture_cuda_graph(forward: Callable[[], object], device: torch.device, warmup: int = 2) -> tuple:
    """(graph, output) of one ``forward()`` captured in a CUDA graph; ``graph.replay()`` refills ``output``.

    The warm-up runs on a side stream first (cudnn/compile choices are made there, outside the capture).
    """
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(max(warmup, 1)):
            forward()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = forward()
    torch.cuda.synchronize(device)
    return graph, out


class LeverRunner:
    """``clip [B, C, T, F, F] -> output`` of ``model`` with every lever of ``levers`` applied.

    The module rewrites are made on a copy (``self.model``, eager, on ``model``'s device). With ``batch_size``,
    a batch of fewer clips (a video's last windows) is padded with zero clips to it and the padding is dropped
    from the output, so that one compiled graph serves every batch. The output is a :class:`DetectorOutput` for a
    detector, a tuple of tensors for :class:`BackboneOnly`.
    """

    def __init__(self, model: nn.Module, levers: Levers, batch_size: int | None = None) -> None:
        self.levers = levers
        self.model = apply_levers(model, levers)
        self.batch_size = None if batch_size is None else max(1, batch_size)
        self.compiled = compile_model(self.model, levers)
        self.graphs: dict[tuple[int, ...], tuple] = {}  # input shape -> (static input, graph, static output)

    def layout(self, clip: torch.Tensor) -> torch.Tensor:
        """``clip`` in the memory format the model was rewritten for."""
        return clip.contiguous(memory_format=CHANNELS_LAST if self.levers.channels_last else torch.contiguous_format)

    def forward(self, clip: torch.Tensor) -> object:
        """One pass of the (compiled) model under inference mode and the levers' autocast; no padding, no graph."""
        with torch.inference_mode(), autocast(clip.device, self.levers.dtype):
            return self.compiled(clip)

    def capture(self, clip: torch.Tensor, warmup: int = 2) -> tuple:
        """(static input, graph, static output) for ``clip``'s shape, captured on first use: copy a clip into the
        static input, ``graph.replay()``, read the static output (overwritten by the next replay)."""
        shape = tuple(clip.shape)
        if shape not in self.graphs:
            static = self.layout(clip.clone())
            graph, out = capture_cuda_graph(lambda: self.forward(static), clip.device, warmup)
            self.graphs[shape] = (static, graph, out)
        return self.graphs[shape]

    def __call__(self, clip: torch.Tensor) -> object:
        n = clip.shape[0]
        if self.batch_size is not None and n < self.batch_size:
            clip = torch.cat([clip, clip.new_zeros((self.batch_size - n, *clip.shape[1:]))])
        clip = self.layout(clip)
        if self.levers.cuda_graph and clip.device.type == "cuda":
            static, graph, out = self.capture(clip)
            static.copy_(clip)
            graph.replay()
            return first_clips(out, n, clone=True)  # the next replay overwrites ``out``
        return first_clips(self.forward(clip), n)


def first_clips(out: object, n: int, clone: bool = False) -> object:
    """The first ``n`` clips of a detector's or a backbone's output."""

    def take(t: torch.Tensor) -> torch.Tensor:
        return t[:n].clone() if clone else t[:n]

    if isinstance(out, tuple):
        return tuple(take(t) for t in out)
    return out.map(take)  # type: ignore[attr-defined]


class BackboneOnly(nn.Module):
    """The detector's backbone as the detector runs it: ``clip -> (endpoint features, ...)`` in ``endpoints`` order."""

    def __init__(self, backbone: nn.Module, endpoints: list[str]) -> None:
        super().__init__()
        self.backbone, self.endpoints = backbone, list(endpoints)

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.backbone.extract_features(clip, self.endpoints)
        return tuple(feats[e] for e in self.endpoints)

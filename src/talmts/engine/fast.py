"""The fast GPU inference path (``talmts eval/detect --fast``): the levers that docs/PERFORMANCE.md measured fastest.

bf16 autocast, channels-last 3D, BatchNorm folded, I3D's fused pointwise convolutions and rewrites
(models/i3d_rewrites.py), ``torch.compile`` with static shapes and one CUDA graph per input shape. Batches
smaller than the batch size (a video's last windows) are padded with zero clips, so one graph serves them all.
Scores differ from the exact fp32 path by bf16 rounding: at most 1.9e-3 on the THUMOS14 network (the bench's
``--check``), up to 2.3e-2 on the small random demo network (bench/gpu_fast_check.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from talmts.models.i3d import InceptionI3d
from talmts.models.i3d_rewrites import rewrite_for_speed
from talmts.outputs import DetectorOutput

CHANNELS_LAST = torch.channels_last_3d


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


def speed_up_detector(model: nn.Module) -> nn.Module:
    """A copy of the detector, in eval mode and channels-last, with its I3D backbone rewritten for GPU inference."""
    model = copy.deepcopy(model).eval()
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, InceptionI3d):
        backbone = backbone.fuse_pointwise()  # folds the BN too
        model.backbone = rewrite_for_speed(backbone, stem_s2d=True, pointwise_matmul=True, fused_pools=True)
    return model.to(memory_format=CHANNELS_LAST)


class FastForward:
    """``clip [B, C, T, F, F] -> DetectorOutput`` through the fast path; B <= ``batch_size`` is padded to it.

    ``compile_backend``/``cuda_graph``/``dtype`` exist so that the CPU tests can run the same code quickly
    (trace-only compile, no graph, fp32); the GPU path uses the defaults.
    """

    def __init__(
        self,
        model: nn.Module,
        batch_size: int,
        *,
        dtype: torch.dtype = torch.bfloat16,
        compile_backend: str = "inductor",
        cuda_graph: bool = True,
    ) -> None:
        self.model = speed_up_detector(model)
        self.batch_size = max(1, batch_size)
        self.dtype = dtype
        self.run = torch.compile(self.model, backend=compile_backend, dynamic=False)
        self.cuda_graph = cuda_graph
        self.graphs: dict[tuple[int, ...], tuple] = {}  # input shape -> (static input, graph, static output)

    def _forward(self, x: torch.Tensor) -> DetectorOutput:
        with (
            torch.inference_mode(),
            torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32),
        ):
            return self.run(x)

    def __call__(self, clip: torch.Tensor) -> DetectorOutput:
        n = clip.shape[0]
        if n < self.batch_size:  # pad: one compiled graph for every batch of a video
            clip = torch.cat([clip, clip.new_zeros((self.batch_size - n, *clip.shape[1:]))])
        clip = clip.contiguous(memory_format=CHANNELS_LAST)
        if clip.device.type == "cuda" and self.cuda_graph:
            shape = tuple(clip.shape)
            if shape not in self.graphs:
                static = clip.clone(memory_format=CHANNELS_LAST)
                graph, out = capture_cuda_graph(lambda: self._forward(static), clip.device)
                self.graphs[shape] = (static, graph, out)
            static, graph, out = self.graphs[shape]
            static.copy_(clip)
            graph.replay()
            return out.map(lambda t: t[:n].clone())  # the next replay overwrites ``out``
        return self._forward(clip).map(lambda t: t[:n])

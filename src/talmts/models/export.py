"""One stream's network as a deployable graph: ONNX (run by ONNX Runtime) or TorchScript.

The graph is the whole network of :class:`TALMTS` from the normalised clip to its five raw outputs: I3D (BatchNorm
folded), RFP, STT, FSA, the coarse heads, boundary pooling and the refined heads. Everything before (decoding,
sampling, crop, normalisation, windows) and after (eq. 13, fusion, Soft-NMS) stays outside, described by the model
folder's JSON (engine/inference/export.py), so a runtime can reproduce both without talmts.

- Input ``clip`` ``[batch, C, T, F, F]`` float32; outputs ``loc [batch, K, 2]``, ``conf [batch, K, C+1]``,
  ``prop_loc [batch, K, 2]``, ``prop_conf [batch, K, C+1]``, ``quality [batch, K]``. Only the batch axis is
  dynamic: the position embeddings, the pyramid's spatial kernels and K are fixed by T and F.
- ONNX through ``torch.onnx.export(dynamo=True)`` (torch.export, then onnxscript's translation), opset 18: every
  op is a standard one (boundary pooling becomes GatherElements / Where / comparisons, attention MatMul + Softmax,
  GroupNorm InstanceNormalization); no custom op, no custom domain.
- TorchScript through ``torch.jit.trace`` under ``no_grad`` (the CPU inference code path, same kernels as eager).
- The anchors, level sizes and T are constants of the network: the model JSON carries them, the graph does not.

Only modules whose export is checked by the parity tests (tests/test_export.py) are accepted: anything else, e.g.
the speed rewrites of ``--fast`` or a module added to the network later, is refused by name before tracing.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from talmts.errors import TalmtsError
from talmts.models.detector import TALMTS, pyramid_lengths
from talmts.models.fsa import FrameSelfAttention
from talmts.models.heads import CoarseHead, ProposalBranch, RefinedHead, ScaleExp
from talmts.models.i3d import InceptionI3d, InceptionModule, Unit3D
from talmts.models.pyramid import FeaturePyramid, FrameFeature, SpatialCollapse
from talmts.models.same import MaxPool3dSame, SameConv1d
from talmts.models.stt import SpatialTemporalTransformer, STTPyramid
from talmts.models.transformer import Encoder, EncoderBlock, SelfAttention

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts"}
OPSET = 18  # >= 17 (LayerNormalization); 18 is the dynamo exporter's own and what ONNX Runtime >= 1.14 runs
INPUT_NAME = "clip"
OUTPUT_NAMES = ("loc", "conf", "prop_loc", "prop_conf", "quality")
ONNX_EXTRA = "pip install 'talmts[onnx]'"

# Exactly these module types (not subclasses: a subclass may override forward) are exported; each is covered by
# the parity tests. BatchNorm3d is listed for a network exported without folding.
EXPORTABLE: tuple[type[nn.Module], ...] = (
    TALMTS,
    InceptionI3d,
    InceptionModule,
    Unit3D,
    MaxPool3dSame,
    FeaturePyramid,
    SpatialCollapse,
    FrameFeature,
    SpatialTemporalTransformer,
    STTPyramid,
    FrameSelfAttention,
    Encoder,
    EncoderBlock,
    SelfAttention,
    CoarseHead,
    ScaleExp,
    RefinedHead,
    ProposalBranch,
    SameConv1d,
    nn.Conv3d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.Linear,
    nn.GELU,
    nn.ReLU,
    nn.Dropout,
    nn.Sequential,
    nn.ModuleList,
)


class ExportError(TalmtsError, ValueError):
    """A network (or a part of it) that cannot be exported faithfully; the message names the module."""


class RuntimeMissing(TalmtsError, ImportError):
    """An optional package (onnx, onnxscript, onnxruntime) that export or the ONNX runtime needs is not installed."""


class ExportedNetwork(nn.Module):
    """``clip -> (loc, conf, prop_loc, prop_conf, quality)``: the detector with its outputs as a plain tuple."""

    def __init__(self, detector: TALMTS) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, clip: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        out = self.detector(clip)
        return out.loc, out.conf, out.prop_loc, out.prop_conf, out.quality


def check_exportable(model: nn.Module) -> None:
    """Refuse, naming the first such module, a network holding a module whose export is not checked."""
    if not isinstance(model, TALMTS) or model.backbone is None:
        raise ExportError(f"only a TALMTS detector with its backbone is exported, not a {type(model).__name__}")
    for name, module in model.named_modules():
        if type(module) not in EXPORTABLE:
            raise ExportError(
                f"module {name or '<root>'} ({type(module).__module__}.{type(module).__name__}) has no checked "
                "export: export the network as trained (no --fast speed rewrites)"
            )


def input_shape(model: TALMTS, batch: int | str = "batch") -> list[int | str]:
    """``[batch, C, T, F, F]`` of the network's input."""
    assert model.backbone is not None
    return [batch, model.backbone.in_channels, model.clip_frames, model.frame_size, model.frame_size]


def output_shapes(model: TALMTS) -> dict[str, list[int | str]]:
    """The shape of every output, ``"batch"`` for the dynamic axis (K derived as the network derives it)."""
    k = sum(pyramid_lengths(model.cfg, model.clip_frames))
    logits = model.num_classes + 1
    return {
        "loc": ["batch", k, 2],
        "conf": ["batch", k, logits],
        "prop_loc": ["batch", k, 2],
        "prop_conf": ["batch", k, logits],
        "quality": ["batch", k],
    }


def example_clip(model: TALMTS, batch: int = 2, seed: int = 0) -> Tensor:
    """A random clip in the network's input range [-1, 1] (the tracer needs one; its values do not matter)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(input_shape(model, batch), generator=g) * 2 - 1  # type: ignore[arg-type]


@contextlib.contextmanager
def _quiet_exporter(*more: str) -> Iterator[None]:
    """The exporters' progress lines and tracer warnings are noise to a user: keep them out of the output."""
    names = ["torch.onnx", "torch.onnx._internal.exporter._registration", "onnxscript", *more]
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def export_onnx(model: TALMTS, path: str | Path, *, opset: int = OPSET) -> None:
    """Write the network as one ONNX file (weights inside) with a dynamic batch axis."""
    check_exportable(model)
    try:
        import onnx  # noqa: F401  (the exporter needs both; a clear message beats its ImportError)
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise RuntimeMissing(
            f"ONNX export needs the onnx and onnxscript packages ({e.name} is missing): {ONNX_EXTRA}"
        ) from None
    net = ExportedNetwork(model).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        # Traced with autograd on: the I3D max pools then take their native max_pool3d form (ONNX MaxPool), the
        # form training and the GPU run; the CPU's shifted maxima give the same values (tests/test_same.py).
        with _quiet_exporter():
            program = torch.onnx.export(
                net,
                (example_clip(model),),
                dynamo=True,
                verbose=False,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: batch},),
                opset_version=opset,
            )
    except Exception as e:  # the exporter's own errors are long; the first line says what failed
        raise ExportError(f"the ONNX exporter failed: {_first_line(e)}") from e
    program.save(str(path), external_data=False)


def export_torchscript(model: TALMTS, path: str | Path) -> None:
    """Write the network as a traced TorchScript file with a dynamic batch axis (CPU)."""
    check_exportable(model)
    net = ExportedNetwork(model).eval()
    try:
        with _quiet_exporter(), torch.no_grad():
            traced = torch.jit.trace(net, (example_clip(model),), check_trace=False)
    except Exception as e:
        raise ExportError(f"TorchScript tracing failed: {_first_line(e)}") from e
    traced.save(str(path))


def quantize_onnx(src: str | Path, dst: str | Path) -> None:
    """int8 dynamic quantisation of the MatMul / Gemm weights of an ONNX graph (ONNX Runtime's quantize_dynamic):
    the transformers' and linear layers' weights become int8, activations are quantised per call."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise RuntimeMissing(f"quantisation needs onnxruntime ({e.name} is missing): {ONNX_EXTRA}") from None
    with _quiet_exporter(""):  # "": the root logger, where quantize_dynamic advises pre-processing
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]

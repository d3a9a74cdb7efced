"""``talmts export``: trained streams as deployable graphs plus ``talmts-model.json``, the contract a runtime needs.

Everything is checked before anything is written (the checkpoints load, the streams can be fused, every module has
a checked export, the output folder is new or empty); the graphs are written into a temporary folder beside the
output, each one run once against its PyTorch network (a graph that differs is refused), and the folder is renamed
into place last, so a failed export leaves nothing behind.

The contract (docs/DEPLOY.md) says what to feed the graph and what to do with its outputs, in terms of numbers and
formulas rather than talmts' code: classes, sampling, normalisation, windows, the input and output names and
shapes, the anchors, eq. 13, Soft-NMS and fusion settings, and each graph's sha256.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from talmts import __version__
from talmts.data.record import PrepareOptions
from talmts.data.transforms import PAD_VALUE
from talmts.engine.inference.predictor import Stream, check_compatible, load_stream
from talmts.engine.inference.runtime import (
    CONTRACT,
    CONTRACT_VERSION,
    MODEL_FILE,
    OnnxNetwork,
    TorchScriptNetwork,
)
from talmts.errors import InputError
from talmts.fileio import atomic_write_json, file_sha256
from talmts.models.export import (
    FORMATS,
    INPUT_NAME,
    OPSET,
    OUTPUT_NAMES,
    ExportError,
    check_exportable,
    example_clip,
    export_onnx,
    export_torchscript,
    input_shape,
    output_shapes,
    quantize_onnx,
)

logger = logging.getLogger(__name__)

PARITY_TOL = 1e-4  # the largest difference from PyTorch an exported fp32 graph may show, relative to max(1, |ref|)


@dataclass
class ExportResult:
    out: Path
    files: list[Path]  # the graphs, then the contract
    max_diff: dict[str, float]  # per stream: the largest output difference from PyTorch on the check clip


def export_model(
    checkpoint: str | Path,
    out: str | Path,
    *,
    fmt: str = "onnx",
    flow_checkpoint: str | Path | None = None,
    quantize: bool = False,
) -> ExportResult:
    """Export the stream(s) of ``checkpoint`` (and ``flow_checkpoint``: two fused streams) to ``out``."""
    given, out = out, Path(os.path.abspath(out))  # "." and "x/.." get their real name, for the temporary beside
    if out == Path.cwd():
        raise InputError(f"--out {given}: the export replaces its folder whole; name a new folder inside this one")
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if quantize and fmt != "onnx":
        raise InputError("--quantize makes an int8 ONNX graph: use it with --format onnx")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an empty folder: name a new folder for the exported model")
    streams = [load_stream(checkpoint, "cpu")]
    if flow_checkpoint is not None:
        streams.append(load_stream(flow_checkpoint, "cpu"))
        modalities = [s.modality for s in streams]
        if modalities != ["rgb", "flow"]:
            raise InputError(
                f"{checkpoint} is a {modalities[0]} stream and {flow_checkpoint} a {modalities[1]} one: export "
                "RGB.pt --flow-checkpoint FLOW.pt"
            )
        check_compatible(streams)
    for s in streams:
        try:
            check_exportable(s.model)
        except ExportError as e:
            raise ExportError(f"{s.source}: {e}") from None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        entries, diffs = [], {}
        for s in streams:
            entry, diffs[s.modality] = _export_stream(s, tmp, fmt, quantize)
            entries.append(entry)
        atomic_write_json(tmp / MODEL_FILE, contract(streams, entries))
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = [out / e["file"] for e in entries] + [out / MODEL_FILE]
    return ExportResult(out, files, diffs)


def _export_stream(stream: Stream, folder: Path, fmt: str, quantize: bool) -> tuple[dict[str, Any], float]:
    """Write one stream's graph into ``folder``, run it against PyTorch once; its contract entry and the difference."""
    model = stream.model
    assert model is not None
    path = folder / f"{stream.modality}.{'onnx' if fmt == 'onnx' else 'ts'}"
    logger.info("exporting %s to %s", stream.source, path.name)
    if fmt == "onnx":
        export_onnx(model, path)
    else:
        export_torchscript(model, path)
    diff = parity_difference(stream, path, fmt)
    if diff > PARITY_TOL:
        raise ExportError(
            f"{stream.source}: the exported {fmt} graph differs from the PyTorch network by {diff:.1e} "
            f"(more than {PARITY_TOL:g}); it is not written"
        )
    entry: dict[str, Any] = {
        "modality": stream.modality,
        "format": fmt,
        "file": path.name,
        "flow": stream.prepare.flow if stream.prepare is not None else PrepareOptions().flow,
        "checkpoint": Path(stream.source).name,
        "quantized": None,
    }
    if quantize:
        int8 = folder / f"{stream.modality}.int8.onnx"
        quantize_onnx(path, int8)
        path.unlink()
        entry["file"] = int8.name
        entry["quantized"] = {
            "method": "onnxruntime dynamic int8, MatMul/Gemm weights",
            "max_diff": round(parity_difference(stream, int8, fmt), 6),  # as PARITY_TOL measures it
        }
    entry["sha256"] = file_sha256(folder / entry["file"])
    if fmt == "onnx":
        entry["opset"] = OPSET
    return entry, diff


def parity_difference(stream: Stream, graph: Path, fmt: str) -> float:
    """The largest difference between the graph's and the PyTorch network's outputs on one random clip, relative
    to max(1, |PyTorch output|) of each output tensor."""
    model = stream.model
    assert model is not None
    clip = example_clip(model, batch=1, seed=1)  # the trace used batch 2: this also exercises the dynamic axis
    meta = {"outputs": {"anchors": [], "level_sizes": []}, "windows": {"clip_frames": model.clip_frames}}
    runner = OnnxNetwork(graph, meta, torch.device("cpu")) if fmt == "onnx" else TorchScriptNetwork(graph, meta)
    with torch.no_grad():
        ref = model(clip)
    got = runner(clip)
    worst = 0.0
    for name in OUTPUT_NAMES:
        r, g = getattr(ref, name), getattr(got, name)
        if r.shape != g.shape:
            return float("inf")
        worst = max(worst, float((r - g).abs().max()) / max(1.0, float(r.abs().max())))
    return worst


def contract(streams: Sequence[Stream], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``talmts-model.json``: everything a runtime needs to use the graphs, in numbers and formulas."""
    first = streams[0]
    model, cfg = first.model, first.cfg
    assert model is not None
    prep = first.prepare or PrepareOptions()
    with torch.no_grad():
        probe = model(example_clip(model, batch=1))  # anchors and level sizes as the network computes them
    shapes = output_shapes(model)
    infer = cfg.infer
    return {
        "format": CONTRACT,
        "version": CONTRACT_VERSION,
        "written_by": f"talmts {__version__}",
        "classes": list(first.classes.names),
        "sampling": {
            "fps": prep.fps,
            "max_frames": prep.max_frames,
            "frame_size": prep.size,
            "crop": cfg.data.frame_size,
            "recorded": first.prepare is not None,
            "how": "keep decoded frame i whenever an accumulator advanced by 1 per frame reaches fps_video / fps "
            "(a slower video repeats frames); resize to frame_size x frame_size, bicubic, aspect not kept; "
            "max_frames (when set): fps = fps_video * min(max_frames / frames, 1), at most max_frames kept",
        },
        "normalization": {
            "input": "uint8 frames [t, frame_size, frame_size, channels]: RGB, or flow (x, y) as prepared",
            "crop": "centre: rows and columns from (frame_size - crop) // 2",
            "scale": 2.0 / 255.0,
            "shift": -1.0,
            "formula": "x * scale + shift, in float32",
            "pad_value": PAD_VALUE,
            "layout": "[channels, clip_frames, crop, crop], clips stacked on a first batch axis",
        },
        "windows": {
            "clip_frames": cfg.data.clip_frames,
            "test_stride": cfg.data.test_stride,
            "protocol": cfg.data.protocol,
            "rule": "sliding: starts 0, test_stride, 2 test_stride, ... while a whole window fits, plus one ending at "
            "the last frame; one window at 0 when the video has <= clip_frames frames (padded with pad_value); "
            "whole: one window at 0",
            "seconds": "(clip frame + window start) / rate; rate = video fps * sampled frames / video frames "
            "(sliding) or the sampling fps (whole)",
        },
        "input": {"name": INPUT_NAME, "shape": input_shape(model), "dtype": "float32"},
        "outputs": {
            "tensors": [{"name": n, "shape": shapes[n], "dtype": "float32"} for n in OUTPUT_NAMES],
            "meaning": {
                "loc": "coarse distances (start, end) from each anchor, in clip frames",
                "conf": "coarse class logits, index 0 = background, index i = classes[i - 1]",
                "prop_loc": "refined offsets, in units of half the coarse width",
                "prop_conf": "refined class logits",
                "quality": "quality logit",
            },
            "anchors": [float(a) for a in probe.anchors.tolist()],
            "level_sizes": list(probe.level_sizes),
        },
        "postprocess": {
            "score": "0.5 * (softmax(conf)[c] + softmax(prop_conf)[c]) * sigmoid(quality) for classes c >= 1",
            "segment": "w = loc_s + loc_e; d = loc + 0.5 * w * prop_loc; [anchor - d_s, anchor + d_e] clamped to "
            "[0, real frames of the window]; kept when score > conf_thresh and end > start",
            "conf_thresh": infer.conf_thresh,
            "fusion": infer.fusion,
            "fusion_rule": "logits: average the streams' raw outputs per window before scoring; detections: score "
            "each stream and pool the candidates",
            "soft_nms": {
                "sigma": infer.nms_sigma,
                "iou_gate": infer.nms_iou_gate,
                "score_thresh": infer.nms_score_thresh,
                "top_k": infer.nms_top_k,
                "rule": "per class over the video's pooled candidates: take the best, decay every other score by "
                "exp(-tIoU^2 / sigma) (only where tIoU > iou_gate when set), drop scores < score_thresh; "
                "ties by start then candidate order",
            },
            "max_per_video": infer.max_per_video,
            "batch_size": infer.batch_size,
            "duration": "segments clipped to [0, video frames / video fps]; empty ones dropped",
        },
        "streams": entries,
    }

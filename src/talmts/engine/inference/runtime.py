"""An exported model folder (``talmts export``) as predictor streams: the network run by ONNX Runtime or TorchScript,
everything around it by the same :class:`Predictor` as a checkpoint.

The folder holds one graph per stream and ``talmts-model.json``, the contract a runtime needs (written by
engine/inference/export.py, described in docs/DEPLOY.md). Reading it checks, before any network runs: that the
contract is one this talmts reads, that every stream's graph is there, and that its sha256 is the one written at
export. A runner maps a clip batch ``[B, C, T, F, F]`` to the :class:`DetectorOutput` a PyTorch network returns, so
decoding, windows, eq. 13, fusion and Soft-NMS stay one code path.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from talmts.config import Config, InferConfig, config_from_dict
from talmts.data.record import PrepareOptions
from talmts.engine.inference.network import Stream
from talmts.errors import InputError, TalmtsError
from talmts.fileio import file_sha256
from talmts.models.export import FORMATS, INPUT_NAME, ONNX_EXTRA, OUTPUT_NAMES, RuntimeMissing
from talmts.outputs import DetectorOutput
from talmts.schema import ClassMap, is_number, is_whole

logger = logging.getLogger(__name__)

MODEL_FILE = "talmts-model.json"
CONTRACT = "talmts-model"  # the "format" field: what the file is
CONTRACT_VERSION = 1  # bumped when a runtime would have to read the contract differently


class ModelFolderError(TalmtsError, ValueError):
    """An exported model folder that cannot be used as it is (names the file, the field and the fix)."""


# ------------------------------------------------------------------------------------------------ the contract
def read_contract(folder: str | Path) -> dict[str, Any]:
    """``folder/talmts-model.json``, checked: format and version, the fields this talmts reads, each stream's graph
    present with the sha256 the contract names."""
    folder = Path(folder)
    path = folder / MODEL_FILE
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: no such model folder (write one with `talmts export CHECKPOINT --out DIR`)")
    if not path.is_file():
        raise ModelFolderError(f"{path} does not exist: {folder} is not a folder written by `talmts export`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, or an integer of more than 4,300 digits
        raise ModelFolderError(f"{path}: not valid JSON ({type(e).__name__}); export the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != CONTRACT:
        raise ModelFolderError(f"{path}: field 'format' is not {CONTRACT!r}: not a talmts model file")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise ModelFolderError(f"{path}: field 'version' must be a positive integer, got {version!r}")
    if version > CONTRACT_VERSION:
        raise ModelFolderError(
            f"{path}: version {version}, written by {meta.get('written_by', 'a newer talmts')}; this talmts reads "
            f"version <= {CONTRACT_VERSION}: upgrade talmts"
        )
    for key in ("classes", "sampling", "normalization", "windows", "outputs", "postprocess", "streams"):
        if key not in meta:
            raise ModelFolderError(f"{path}: field {key!r} is missing; export the model again")
    streams = meta["streams"]
    if not isinstance(streams, list) or not streams:
        raise ModelFolderError(f"{path}: field 'streams' must list at least one stream")
    _check_fields(meta, path)
    for i, s in enumerate(streams):
        where = f"{path}: streams[{i}]"
        if not isinstance(s, dict) or s.get("format") not in FORMATS or not isinstance(s.get("file"), str):
            raise ModelFolderError(f"{where} needs 'format' (one of {', '.join(FORMATS)}) and 'file'")
        graph = folder / s["file"]
        if Path(s["file"]).name != s["file"]:
            raise ModelFolderError(f"{where}.file={s['file']!r} must be a file name inside the folder")
        if not graph.is_file():
            raise ModelFolderError(
                f"{graph} ({s.get('modality', '?')} stream of {path}) does not exist: copy the whole model folder"
            )
        actual = file_sha256(graph)
        if actual != s.get("sha256"):
            raise ModelFolderError(
                f"{graph}: sha256 {actual[:16]}... differs from {str(s.get('sha256'))[:16]}... in {path}: the graph "
                "was changed or damaged after export; export it again"
            )
    return meta


def _is_count(v: Any) -> bool:
    return is_whole(v) and v > 0


# the contract's fields that talmts reads besides the streams' own: (section, field, test, what it must be)
_FIELDS: tuple[tuple[str, str, Any, str], ...] = (
    ("windows", "clip_frames", _is_count, "a positive integer"),
    ("windows", "test_stride", _is_count, "a positive integer"),
    ("windows", "protocol", lambda v: v in ("sliding", "whole"), "'sliding' or 'whole'"),
    ("sampling", "frame_size", _is_count, "a positive integer"),
    ("sampling", "crop", _is_count, "a positive integer"),
    ("sampling", "fps", lambda v: v is None or (is_number(v) and v > 0), "a positive number or null"),
    ("sampling", "max_frames", lambda v: v is None or _is_count(v), "a positive integer or null"),
    ("outputs", "anchors", lambda v: isinstance(v, list) and all(map(is_number, v)), "a list of numbers"),
    ("outputs", "level_sizes", lambda v: isinstance(v, list) and all(map(_is_count, v)), "a list of integers"),
)


def _check_fields(meta: dict[str, Any], path: Path) -> None:
    """The fields read to build the streams, each of the type it must have: the contract is plain JSON that a user
    may edit, and a field lost or mistyped in an edit is named here rather than failing somewhere inside."""
    for section in ("windows", "sampling", "outputs", "postprocess"):
        if not isinstance(meta[section], dict):
            raise ModelFolderError(f"{path}: field {section!r} must be an object; export the model again")
    for section, name, test, what in _FIELDS:
        if not test(meta[section].get(name)):
            raise ModelFolderError(
                f"{path}: field '{section}.{name}' must be {what}, got {meta[section].get(name)!r}; "
                "export the model again"
            )
    if not isinstance(meta["postprocess"].get("soft_nms", {}), dict):
        raise ModelFolderError(f"{path}: field 'postprocess.soft_nms' must be an object; export the model again")
    for i, s in enumerate(meta["streams"]):
        if not isinstance(s.get("flow"), str):
            raise ModelFolderError(
                f"{path}: field 'streams[{i}].flow' must name a flow method, got {s.get('flow')!r}; "
                "export the model again"
            )


def contract_infer(meta: dict[str, Any], source: str) -> InferConfig:
    """The post-processing settings of the contract as an :class:`InferConfig` (validated like a config's)."""
    post = meta["postprocess"]
    nms = post.get("soft_nms", {})
    raw = {
        "conf_thresh": post.get("conf_thresh"),
        "nms_sigma": nms.get("sigma"),
        "nms_iou_gate": nms.get("iou_gate"),
        "nms_score_thresh": nms.get("score_thresh"),
        "nms_top_k": nms.get("top_k"),
        "max_per_video": post.get("max_per_video"),
        "fusion": post.get("fusion"),
        "batch_size": post.get("batch_size", 1),
    }
    return config_from_dict({"infer": raw}, source=source).infer


def contract_config(meta: dict[str, Any], modality: str, source: str) -> Config:
    """The parts of a :class:`Config` the predictor reads (data geometry and windows, inference), from the contract.

    The model section stays at its defaults and is never read: the network is the graph.
    """
    cfg = Config()
    w, s = meta["windows"], meta["sampling"]
    cfg.data.modality = modality
    cfg.data.clip_frames = int(w["clip_frames"])
    cfg.data.test_stride = int(w["test_stride"])
    cfg.data.protocol = w["protocol"]
    cfg.data.frame_size = int(s["crop"])
    cfg.data.stored_size = int(s["frame_size"])
    cfg.data.fps = float(s["fps"] or cfg.data.fps)  # None: each video's own rate (the config's value is unused)
    cfg.infer = contract_infer(meta, source)
    return cfg


# ------------------------------------------------------------------------------------------------ the runners
class _Runner:
    """``clip [B, C, T, F, F] -> DetectorOutput``, the tensors on the CPU, anchors and sizes from the contract."""

    def __init__(self, meta: dict[str, Any]) -> None:
        out = meta["outputs"]
        self.anchors = torch.tensor(out["anchors"], dtype=torch.float32)
        self.level_sizes = tuple(int(t) for t in out["level_sizes"])
        self.clip_frames = int(meta["windows"]["clip_frames"])

    def wrap(self, tensors: list[torch.Tensor]) -> DetectorOutput:
        loc, conf, prop_loc, prop_conf, quality = tensors
        return DetectorOutput(loc, conf, prop_loc, prop_conf, quality, self.anchors, self.level_sizes, self.clip_frames)


class OnnxNetwork(_Runner):
    """An ONNX graph run by ONNX Runtime: the CUDA provider on a CUDA device when it is installed, else the CPU's
    (as many threads as torch uses, so one setting governs both)."""

    def __init__(self, path: str | Path, meta: dict[str, Any], device: torch.device) -> None:
        super().__init__(meta)
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeMissing(f"{path} is an ONNX graph; running it needs onnxruntime: {ONNX_EXTRA}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise
        providers: list[Any] = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
            else:
                logger.warning("onnxruntime has no CUDA provider here (onnxruntime-gpu); the graph runs on the CPU")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.providers = self.session.get_providers()

    def __call__(self, clip: torch.Tensor) -> DetectorOutput:
        x = clip.detach().float().cpu().numpy()
        outs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(x)})
        return self.wrap([torch.from_numpy(o) for o in outs])


class TorchScriptNetwork(_Runner):
    """A traced TorchScript graph (CPU; torch marks TorchScript deprecated, it still loads and runs in 2.13)."""

    def __init__(self, path: str | Path, meta: dict[str, Any]) -> None:
        super().__init__(meta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.module = torch.jit.load(str(path), map_location="cpu").eval()

    def __call__(self, clip: torch.Tensor) -> DetectorOutput:
        with torch.no_grad():
            return self.wrap(list(self.module(clip.detach().float().cpu())))


def load_model_streams(folder: str | Path, device: torch.device | str = "cpu") -> list[Stream]:
    """The streams of an exported model folder (one, or RGB and flow: fused), ready for a :class:`Predictor`."""
    folder = Path(folder)
    device = torch.device(device)
    meta = read_contract(folder)
    classes = meta["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ModelFolderError(f"{folder / MODEL_FILE}: field 'classes' must list the class names")
    s = meta["sampling"]
    streams = []
    for entry in meta["streams"]:
        graph = folder / entry["file"]
        modality = entry.get("modality")
        if modality not in ("rgb", "flow"):
            raise ModelFolderError(f"{folder / MODEL_FILE}: stream {entry['file']}: modality must be rgb or flow")
        cfg = contract_config(meta, modality, source=str(folder / MODEL_FILE))
        prepare = PrepareOptions(
            fps=s["fps"], size=int(s["frame_size"]), flow=entry["flow"], max_frames=s["max_frames"]
        )
        network = OnnxNetwork(graph, meta, device) if entry["format"] == "onnx" else TorchScriptNetwork(graph, meta)
        streams.append(
            Stream(
                model=None,
                cfg=cfg,
                classes=ClassMap(tuple(classes)),
                source=str(graph),
                prepare=prepare if s.get("recorded", True) else None,
                forward=network,
            )
        )
    return streams


def check_model_or_checkpoint(
    checkpoint: str | Path | None, model: str | Path | None, flow_checkpoint: str | Path | None = None
) -> None:
    """Exactly one of ``--checkpoint`` and ``--model``; an exported folder holds its flow stream itself."""
    if bool(checkpoint) == bool(model):
        raise InputError("name the network once: --checkpoint CKPT (PyTorch) or --model DIR (an exported model)")
    if model and flow_checkpoint:
        raise InputError(
            "--flow-checkpoint goes with --checkpoint; an exported model folder holds both streams "
            "(`talmts export RGB.pt --flow-checkpoint FLOW.pt --out DIR`)"
        )

"""The one inference path: streams -> windows -> network -> eq. 13 -> fusion -> Soft-NMS -> video labels.

``talmts eval`` (prepared arrays), ``talmts detect`` (a raw video, or every video of a folder), validation during
training and the demo all run a :class:`Predictor`, so their checks are written once.

A *stream* is a trained network with its resolved config, class names and the record of how its training data was
prepared (all read from its checkpoint). Two streams (RGB and flow) are fused the AFSD way by default: their raw
outputs are averaged per window before softmax and decoding (``infer.fusion=logits``); ``infer.fusion=detections``
pools each stream's decoded candidates instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from talmts.config import BACKBONE_GRID, MODALITY_CHANNELS, Config, ConfigError, InferConfig, config_from_dict
from talmts.data.dataset import load_video_array
from talmts.data.feature_cache import padded_map_length
from talmts.data.flow import DEFAULT_FLOW, with_flow
from talmts.data.record import PrepareOptions, check_same_preparation, flow_family, read_record
from talmts.data.transforms import make_clip
from talmts.data.video import DecodeInfo, sampled_frames
from talmts.data.windows import WholeVideoTooLong, cut_windows, frames_of, inference_offsets
from talmts.engine.checkpoint import averaged_weights, load_checkpoint
from talmts.engine.inference.network import Stream
from talmts.formats.video_info import VideoInfo, read_video_info
from talmts.models import build_detector
from talmts.models.levers import FAST, INFERENCE, LeverRunner, apply_levers
from talmts.models.video_features import video_feature_map, window_slice
from talmts.outputs import DetectorOutput
from talmts.postprocess import Candidates, VideoScores, apply_video_classifier, decode_streams, detections_for_video
from talmts.schema import ClassMap, Detection, video_file

ARRAY_DIRS = {"rgb": "frames", "flow": "flow"}


def load_stream(path: str | Path, device: torch.device | str = "cpu", use_ema: bool = True) -> Stream:
    """Build the network a checkpoint describes and load its weights (the EMA weights when it has them)."""
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"], source=f"{path} (stored config)")
    classes = ClassMap(tuple(state["classes"]))
    cfg.model.backbone.weights = None  # the checkpoint holds the fine-tuned weights; do not load I3D's again
    model = build_detector(cfg, len(classes), state["in_channels"])
    ema = averaged_weights(state)
    model.load_state_dict(ema if use_ema and ema is not None else state["model"])
    model = apply_levers(model, INFERENCE).to(device)  # an eval copy, BatchNorm folded
    prepare = (
        PrepareOptions.from_dict(state["prepare"], source=f"{path} (prepare record)") if state.get("prepare") else None
    )
    return Stream(model=model, cfg=cfg, classes=classes, source=str(path), prepare=prepare)


def use_fast_path(streams: Sequence[Stream], batch_size: int, device: torch.device) -> str | None:
    """Switch the streams to the ``FAST`` levers (models/levers.py), every batch padded to ``batch_size``; returns
    why not (a message for the user) on a CPU, where the exact fp32 path with folded BN is the fastest measured
    (docs/PERFORMANCE.md)."""
    if device.type != "cuda":
        return (
            f"--fast applies on a CUDA device; on {device.type} the exact fp32 path (BN folded) is already the "
            "fastest measured, and is used"
        )
    if any(s.model is None for s in streams):
        return "--fast applies to checkpoints; an exported model runs as it was exported"
    for s in streams:
        s.forward = LeverRunner(s.model, FAST, batch_size)
    return None


def check_compatible(streams: Sequence[Stream]) -> None:
    """Fused streams must share classes, window geometry and sampling, or their outputs cannot be averaged."""
    first = streams[0]
    for s in streams[1:]:
        if s.classes != first.classes:
            raise ConfigError(f"{s.source} and {first.source} have different classes; they cannot be fused")
        for key in ("clip_frames", "frame_size", "fps"):
            a, b = getattr(first.cfg.data, key), getattr(s.cfg.data, key)
            if a != b:
                raise ConfigError(f"{first.source} has data.{key}={a} but {s.source} has {b}; fused streams must agree")
        a, b = first.cfg.model.backbone.context, s.cfg.model.backbone.context
        if a != b:
            raise ConfigError(
                f"{first.source} has model.backbone.context={a} but {s.source} has {b}; fused streams must agree"
            )
        check_same_preparation(first.prepare, s.prepare, flow=False, where=s.source, source=first.source)


def window_tensor(frames: np.ndarray, clip_frames: int, frame_size: int) -> torch.Tensor:
    """uint8 [t, S, S, C] window (t <= T) -> float [C, T, F, F]: the test-time transform of the datasets (centre
    crop, x / 255 * 2 - 1, padded past the video end)."""
    return make_clip(frames, 0, clip_frames, frame_size, train=False)


@dataclass
class WindowOutputs:
    """The raw outputs (on the CPU) of every stream for one batch of windows of a video."""

    outputs: list[DetectorOutput]  # one per stream, batch = len(offsets)
    offsets: list[int]
    num_frames: list[int]  # real frames of each window (< T for the padded tail of a video)


@torch.no_grad()
def network_outputs(
    streams: Sequence[Stream],
    windows: Iterable[tuple[int, Sequence[np.ndarray]]],
    batch_size: int,
    device: torch.device | str = "cpu",
) -> list[WindowOutputs]:
    """Run every stream on each (offset, per-stream frames) window, ``batch_size`` windows at a time."""
    d = streams[0].cfg.data
    batches: list[WindowOutputs] = []
    pending: list[tuple[int, Sequence[np.ndarray]]] = []

    def flush() -> None:
        outs = []
        for k, stream in enumerate(streams):
            x = torch.stack([window_tensor(arrs[k], d.clip_frames, d.frame_size) for _, arrs in pending])
            run = stream.forward or stream.model
            assert run is not None
            outs.append(run(x.to(device)).map(lambda t: t.float().cpu()))  # [B, C, T, F, F] -> DetectorOutput
        batches.append(WindowOutputs(outs, [o for o, _ in pending], [len(arrs[0]) for _, arrs in pending]))
        pending.clear()

    for item in windows:
        pending.append(item)
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return batches


@torch.no_grad()
def sliced_outputs(
    streams: Sequence[Stream],
    arrays: Sequence[np.ndarray],
    offsets: Sequence[int],
    batch_size: int,
    device: torch.device | str = "cpu",
    maps: Sequence[dict[str, torch.Tensor]] | None = None,
) -> list[WindowOutputs]:
    """``model.backbone.context: video``: each stream's backbone once over its whole video (``arrays``, one per
    stream), or the given ``maps`` ({endpoint: [views, C, t, h, w]}, view 0 read: a feature cache), then the head on
    each window's slice, ``batch_size`` windows at a time."""
    d = streams[0].cfg.data
    n = min(len(a) for a in arrays)
    arrays = [a[:n] for a in arrays]  # the frames every stream has, as the window path reads them (frames_of)
    length = padded_map_length(n, d.clip_frames)
    if maps is None:
        maps = [stream_feature_map(s, a, length, device) for s, a in zip(streams, arrays)]
    batches = []
    for i in range(0, len(offsets), batch_size):
        chunk = list(offsets[i : i + batch_size])
        outs = []
        for stream, array, fmap in zip(streams, arrays, maps):
            x = torch.stack([window_tensor(array[o : o + d.clip_frames], d.clip_frames, d.frame_size) for o in chunk])
            feats = {
                e: torch.stack([window_slice(fmap, o, d.clip_frames)[e][0] for o in chunk]).to(device, torch.float32)
                for e in stream.model.endpoints
            }
            outs.append(stream.model.forward_features(feats, x.to(device)).map(lambda t: t.float().cpu()))
        batches.append(WindowOutputs(outs, chunk, [min(d.clip_frames, n - o) for o in chunk]))
    return batches


def stream_feature_map(
    stream: Stream, array: np.ndarray, length: int, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """The backbone's map of one stored video (centre crop, padded to ``length`` frames): {endpoint: [1, C, t, h, w]}."""
    d, model = stream.cfg.data, stream.model
    return video_feature_map(
        model.backbone,
        lambda a, b: make_clip(array, a, b - a, d.frame_size, train=False).to(device),
        length,
        model.endpoints,
    )


def decode_windows(batches: Sequence[WindowOutputs], rate: float, infer: InferConfig) -> list[Candidates]:
    """Eq. 13 candidates of every window, in units of 1 / ``rate`` seconds: (frame + offset) / rate, segments
    clamped to each window's real frames (``rate`` 1: sample frames). Streams fused as ``infer.fusion`` says."""
    candidates: list[Candidates] = []
    for b in batches:
        for i, (offset, n) in enumerate(zip(b.offsets, b.num_frames)):
            candidates.extend(decode_streams(b.outputs, i, float(offset), rate, infer, num_frames=n))
    return candidates


@dataclass
class Predictor:
    """Streams (one, or RGB + flow fused) with the inference settings, run on any number of videos.

    ``stride`` and ``protocol`` place the windows (data.test_stride, data.protocol); ``scores`` (video-level class
    scores) label a class-agnostic detector's proposals, the AFSD way on ActivityNet.
    """

    streams: list[Stream]
    infer: InferConfig
    stride: int
    protocol: str
    device: torch.device
    scores: VideoScores | None = None

    def __post_init__(self) -> None:
        check_compatible(self.streams)
        if self.scores is not None and len(self.classes) != 1:
            raise ConfigError(
                f"video-level scores label a class-agnostic detector, but {self.streams[0].source} has "
                f"{len(self.classes)} classes (its own labels are used): drop --video-scores / infer.video_scores"
            )

    @property
    def classes(self) -> ClassMap:
        return self.streams[0].classes

    @property
    def names(self) -> str:
        return " + ".join(s.modality for s in self.streams)

    # ------------------------------------------------------------------------------------------- the one path
    @property
    def video_context(self) -> bool:
        """The backbone runs once per video and the head on slices of its map (model.backbone.context)."""
        return self.streams[0].cfg.model.backbone.context == "video"

    def outputs(self, frames: Iterable[Sequence[np.ndarray]], video: str) -> list[WindowOutputs]:
        """The network's outputs on every window of a video given frame by frame (one array per stream)."""
        d = self.streams[0].cfg.data
        if self.video_context:  # the whole video is needed for its map: gather the frames
            columns = list(zip(*frames))
            return self.array_outputs([np.stack(c) for c in columns] if columns else [], video)
        windows = cut_windows(frames, d.clip_frames, self.stride, self.protocol, video)
        return network_outputs(self.streams, windows, self.infer.batch_size, self.device)

    def array_outputs(self, arrays: Sequence[np.ndarray], video: str) -> list[WindowOutputs]:
        """The network's outputs on every window of a video held as arrays (one per stream)."""
        if not self.video_context:
            return self.outputs(frames_of(arrays), video)
        if not arrays or min(len(a) for a in arrays) == 0:
            return []
        d = self.streams[0].cfg.data
        n = min(len(a) for a in arrays)
        if self.protocol == "whole" and n > d.clip_frames:
            raise WholeVideoTooLong(
                f"{video}: more than data.clip_frames={d.clip_frames} frames under the 'whole' protocol"
            )
        offsets = inference_offsets(n, d.clip_frames, self.stride, self.protocol, align=BACKBONE_GRID)
        return sliced_outputs(self.streams, arrays, offsets, self.infer.batch_size, self.device)

    def finish(self, batches: Sequence[WindowOutputs], info: VideoInfo) -> list[Detection]:
        """Decode, fuse, merge the windows with Soft-NMS, and label the video: its detections, best first.

        Candidates stay in sample frames through Soft-NMS and become seconds at the end, with the rate known once
        the whole video is read; a stream (stream.py) runs the same numbers before it knows that rate."""
        candidates = decode_windows(batches, 1.0, self.infer)
        detections = detections_for_video(
            candidates, self.classes, self.infer, info.duration, rate=info.rate(self.protocol)
        )
        if self.scores is None:
            return detections
        return apply_video_classifier(
            detections, self.score_row(info.video), self.scores.classes, self.infer.video_top_k
        )

    def score_row(self, video: str) -> np.ndarray:
        """The video-level scores of ``video``; a clear error before any network runs when they are missing."""
        assert self.scores is not None
        try:
            return self.scores.lookup(video)
        except KeyError as e:
            raise ConfigError(f"{e.args[0]}; the score file must cover every video (or pass --video-id)") from None

    # ------------------------------------------------------------------------------------------- sources
    def prepared_videos(
        self, root: str | Path, videos: Sequence[str], progress: bool = False
    ) -> dict[str, list[Detection]]:
        """Detections of prepared videos (frames/ and flow/ arrays under ``root``, or each stream's own root)."""
        root = Path(root)
        for s in self.streams:
            here = Path(s.root or root)
            check_same_preparation(
                s.prepare,
                read_record(here),
                flow=s.modality == "flow",
                where=str(here / "prepare.json"),
                source=s.source,
            )
        info = read_video_info(root / "video_info.csv")
        missing = [v for v in videos if v not in info]
        if missing:
            raise ConfigError(
                f"{len(missing)} video(s) of the split are not in {root}/video_info.csv (first: {missing[0]!r}); "
                "run `talmts prepare` on them first"
            )
        if self.scores is not None:
            for v in videos:
                self.score_row(v)
        iterator: Iterable[str] = videos
        if progress:
            from talmts.progress import progress_bar

            iterator = progress_bar(videos, desc="inference", unit="video", leave=False)
        # Decoding, merging and Soft-NMS of video i (numpy, CPU) run in a worker thread while the network processes
        # video i + 1, so that a fast GPU network does not wait for them.
        futures: dict[str, Future[list[Detection]]] = {}
        with ThreadPoolExecutor(max_workers=1) as pool:
            for vid in iterator:
                arrays = [self._array(Path(s.root or root), s.modality, info[vid]) for s in self.streams]
                batches = self.array_outputs(arrays, vid)
                futures[vid] = pool.submit(self.finish, batches, info[vid])
            return {vid: f.result() for vid, f in futures.items()}

    def raw_video(self, path: str | Path, video: str | None = None) -> tuple[list[Detection], DecodeInfo]:
        """Detections in a video file, decoded, sampled and turned into flow on the fly as the checkpoint's training
        data was prepared; one window of frames is held at a time, so a video of any length fits."""
        video = video or Path(path).stem
        if self.scores is not None:
            self.score_row(video)  # before the network runs
        prep = self.preparation
        decoded = DecodeInfo()
        frames = sampled_frames(path, prep.fps, prep.size, prep.max_frames, decoded)
        batches = self.outputs(self.stream_frames(frames), video)
        info = VideoInfo(video, decoded.fps, decoded.sample_fps, decoded.count, decoded.sample_count)
        return self.finish(batches, info), decoded

    @property
    def preparation(self) -> PrepareOptions:
        """How a raw video is sampled for these streams: as their training data was prepared."""
        return self.streams[0].prepare or PrepareOptions()

    def stream_frames(self, frames: Iterable[np.ndarray], flow_batch: int | None = None) -> Iterator[list[np.ndarray]]:
        """Sampled RGB frames, one at a time -> one array per stream (RGB, or the flow computed on the fly as the
        checkpoint's data was prepared, see :func:`raw_video_flow_method`; ``flow_batch`` frame pairs at a time,
        default data.flow.default_batch)."""
        modalities = [s.modality for s in self.streams]
        if "flow" not in modalities:
            return ([rgb] for rgb in frames)
        method = raw_video_flow_method(self.preparation.flow)
        flows = with_flow(frames, method, device=str(self.device), batch=flow_batch)
        return ([rgb if m == "rgb" else flow for m in modalities] for rgb, flow in flows)

    def window_candidates(self, offset: int, arrays: Sequence[np.ndarray]) -> list[Candidates]:
        """Eq. 13 candidates of one window (one array per stream), in sample frames: what :meth:`finish` pools for
        this window when the network runs it alone (batch 1). Window context only: under ``model.backbone.context:
        video`` a window's features come from the whole video's map."""
        if self.video_context:
            raise ConfigError(f"{self.streams[0].source}: model.backbone.context=video has no per-window path")
        batches = network_outputs(self.streams, [(offset, arrays)], 1, self.device)
        return decode_windows(batches, 1.0, self.infer)

    def _array(self, root: Path, modality: str, info: VideoInfo) -> np.ndarray:
        path = video_file(root / ARRAY_DIRS[modality], info.video, ".npy")
        return load_video_array(path, MODALITY_CHANNELS[modality], info.sample_count)


def raw_video_flow_method(trained: str) -> str:
    """The flow method for a raw video: the one the checkpoint's data was prepared with, except that the TV-L1
    family runs as tvl1-torch: the faster of the two on a CPU core and the only one on a GPU (a checkpoint accepts
    either, data/record.flow_family)."""
    method = trained if trained != "none" else DEFAULT_FLOW
    return "tvl1-torch" if flow_family(method) == "tvl1" else method


def load_predictor(
    checkpoints: Sequence[str | Path] = (),
    *,
    model: str | Path | None = None,
    device: str = "auto",
    overrides: Sequence[str] = (),
    video_scores: str | Path | None = None,
) -> Predictor:
    """Streams from ``checkpoints`` (one, or RGB and flow: fused) or from an exported ``model`` folder (its graphs
    run by ONNX Runtime or TorchScript), with ``infer.*`` overrides on their stored settings; windows placed as the
    first stream's config says."""
    from talmts.engine.distributed import resolve_device
    from talmts.postprocess import load_video_scores

    dev = resolve_device(device)
    if model is not None:
        from talmts.engine.inference.runtime import load_model_streams

        streams = load_model_streams(model, dev)
    else:
        streams = [load_stream(c, dev) for c in checkpoints]
    for s in streams:
        s.cfg = with_infer_overrides(s.cfg, overrides)
    cfg = streams[0].cfg
    path = video_scores or cfg.infer.video_scores
    scores = load_video_scores(path) if path else None
    return Predictor(streams, cfg.infer, cfg.data.test_stride, cfg.data.protocol, dev, scores)


def with_infer_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """``infer.<key>=<value>`` overrides (e.g. infer.conf_thresh=0.05) on a trained stream's config; only the infer
    section is rebuilt and validated (an exported model's config has no model section to validate)."""
    import dataclasses

    import yaml

    raw = dataclasses.asdict(cfg.infer)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("infer."):
            raise ConfigError(f"override {item!r}: only infer.<key>=<value> applies to a trained network")
        raw[key.split(".", 1)[1]] = yaml.safe_load(value)
    if not overrides:
        return cfg
    return dataclasses.replace(cfg, infer=config_from_dict({"infer": raw}, source="inference overrides").infer)

"""Eq. 13: from one clip's raw outputs to scored candidate segments in seconds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from talmts.config import InferConfig
from talmts.geometry import distances_to_segments, refine_distances
from talmts.outputs import DetectorOutput


@dataclass
class Candidates:
    """Scored segments of one clip (or a whole video) before Soft-NMS."""

    segments: np.ndarray  # [N, 2] (start, end) in seconds
    scores: np.ndarray  # [N]
    labels: np.ndarray  # [N] class index 1..C

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> Candidates:
        return Candidates(np.zeros((0, 2)), np.zeros(0), np.zeros(0, np.int64))

    @staticmethod
    def concat(parts: Sequence[Candidates]) -> Candidates:
        if not parts:
            return Candidates.empty()
        return Candidates(
            np.concatenate([np.asarray(p.segments, np.float64).reshape(-1, 2) for p in parts]),
            np.concatenate([np.asarray(p.scores, np.float64).reshape(-1) for p in parts]),
            np.concatenate([np.asarray(p.labels, np.int64).reshape(-1) for p in parts]),
        )


def clip_scores(output: DetectorOutput, index: int | None = None) -> torch.Tensor:
    """Eq. 13's score of every anchor and action class of clip ``index``: ``[K, C]`` (fp32); of every clip of the
    batch when ``index`` is None: ``[B, K, C]``.

    score = 0.5 (softmax(coarse)[c] + softmax(refined)[c]) * sigmoid(quality), for classes c = 1..C.
    """
    clips = slice(None) if index is None else index
    conf = torch.softmax(output.conf[clips].float(), dim=-1)  # [(B,) K, C+1]
    prop_conf = torch.softmax(output.prop_conf[clips].float(), dim=-1)
    quality = torch.sigmoid(output.quality[clips].float())  # [(B,) K]
    return (0.5 * (conf + prop_conf) * quality[..., None])[..., 1:]


def clip_segments(output: DetectorOutput, index: int, num_frames: float | None = None) -> torch.Tensor:
    """Refined segments of every anchor of clip ``index`` in clip frames, clamped to [0, num_frames]: ``[K, 2]``.

    Distance form of eq. 13: d' = d + 0.5 (d_s + d_e) delta, start = anchor - d'_s, end = anchor + d'_e.
    ``num_frames`` defaults to the clip length T; pass the real frame count for a padded last clip.
    """
    loc = output.loc[index].double()  # [K, 2]
    refined = refine_distances(loc, output.prop_loc[index].double())
    seg = distances_to_segments(output.anchors.to(loc.device).double(), refined)
    limit = float(output.clip_frames if num_frames is None else min(num_frames, output.clip_frames))
    return seg.clamp(0.0, limit)


def decode_clip(
    output: DetectorOutput,
    index: int,
    offset: float,
    fps: float,
    conf_thresh: float,
    num_frames: float | None = None,
) -> Candidates:
    """Candidates of clip ``index`` of the batch: every (anchor, class) whose score exceeds ``conf_thresh``.

    Segments are clamped to the clip (to ``num_frames`` real frames when given), then converted to seconds as
    (frame + offset) / fps. Segments that clamping leaves empty (end <= start) are dropped: they can match no
    ground truth.
    """
    if fps <= 0:
        raise ValueError(f"decode_clip: fps must be > 0, got {fps}")
    scores = clip_scores(output, index)  # [K, C]
    seg = clip_segments(output, index, num_frames)  # [K, 2]
    keep = (scores > conf_thresh) & (seg[:, 1] > seg[:, 0])[:, None]
    anchor, cls = keep.nonzero(as_tuple=True)
    segments = (seg[anchor].cpu().numpy() + float(offset)) / float(fps)
    return Candidates(segments, scores[anchor, cls].double().cpu().numpy(), cls.cpu().numpy().astype(np.int64) + 1)


def decode_streams(
    outputs: Sequence[DetectorOutput],
    index: int,
    offset: float,
    fps: float,
    cfg: InferConfig,
    num_frames: float | None = None,
) -> list[Candidates]:
    """Two-stream (or more) fusion for one clip, as ``cfg.fusion`` says.

    ``"logits"``: average the raw outputs before softmax and decoding (AFSD), one list of candidates;
    ``"detections"``: decode every stream on its own; the engine pools all of them before Soft-NMS, which then
    removes the duplicates that two agreeing streams produce.
    """
    if not outputs:
        raise ValueError("decode_streams: no stream outputs")
    if cfg.fusion == "logits":
        fused = [DetectorOutput.average(list(outputs)) if len(outputs) > 1 else outputs[0]]
    elif cfg.fusion == "detections":
        fused = list(outputs)
    else:
        raise ValueError(f"infer.fusion={cfg.fusion!r}: choose 'logits' or 'detections'")
    return [decode_clip(o, index, offset, fps, cfg.conf_thresh, num_frames) for o in fused]

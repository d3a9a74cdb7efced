"""One video's detections: pool the candidates of all its clips, Soft-NMS per class, top-k, class names."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from talmts.config import InferConfig
from talmts.schema import ClassMap, Detection

from .decode import Candidates
from .softnms import best_first, soft_nms_scores, top_k_per_label


def detections_for_video(
    candidates: Sequence[Candidates],
    classes: ClassMap,
    cfg: InferConfig,
    duration: float | None = None,
    rate: float = 1.0,
) -> list[Detection]:
    """Merge the clips of one video into detections, best score first.

    Overlapping clips (THUMOS14 windows overlap by half) predict the same actions twice; pooling every clip's
    candidates per class and running Gaussian Soft-NMS over the pool (AFSD) merges them. Then at most
    ``cfg.nms_top_k`` per class and ``cfg.max_per_video`` in all are kept. With ``duration`` segments are clipped
    to [0, duration] and those left empty are dropped (AFSD-ANet). ``rate``: the candidates' unit is 1 / rate
    seconds (sample frames, when ``rate`` is the video's rate); Soft-NMS runs in that unit, since tIoU does not
    depend on it, and the detections come out in seconds.
    """
    pool = Candidates.concat(list(candidates))
    if len(pool) and (pool.labels.min() < 1 or pool.labels.max() > len(classes)):
        raise ValueError(
            f"candidate labels span {pool.labels.min()}..{pool.labels.max()} but the class map has "
            f"{len(classes)} classes (1..{len(classes)}); is the checkpoint trained on another class list?"
        )
    new_scores = soft_nms_scores(
        pool.segments, pool.scores, pool.labels, cfg.nms_sigma, cfg.nms_iou_gate, cfg.nms_score_thresh
    )
    return kept_detections(pool.segments, pool.labels, new_scores, classes, cfg, duration, rate)


def kept_detections(
    segments: np.ndarray,
    labels: np.ndarray,
    kept_scores: np.ndarray,
    classes: ClassMap,
    cfg: InferConfig,
    duration: float | None = None,
    rate: float = 1.0,
) -> list[Detection]:
    """The candidates Soft-NMS kept (``kept_scores`` not NaN) as detections of one video: best first (ties by start,
    then by place in the input), at most ``cfg.nms_top_k`` per class and ``cfg.max_per_video`` in all, segments
    divided by ``rate`` into seconds, clipped to [0, duration] when given, empty ones dropped."""
    kept = best_first(kept_scores, segments)
    kept = top_k_per_label(kept, labels, cfg.nms_top_k)
    if cfg.max_per_video is not None:
        kept = kept[: cfg.max_per_video]
    seg = segments[kept] / rate
    if duration is not None:
        seg = np.clip(seg, 0.0, duration)
    names = [""] + list(classes.names)  # index 0 is background
    rows = zip(seg[:, 0].tolist(), seg[:, 1].tolist(), labels[kept].tolist(), kept_scores[kept].tolist(), strict=True)
    return [Detection(s, e, names[c], p) for s, e, c, p in rows if e > s]

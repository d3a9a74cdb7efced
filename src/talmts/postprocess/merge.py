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
) -> list[Detection]:
    """Merge the clips of one video into detections, best score first.

    Overlapping clips (THUMOS14 windows overlap by half) predict the same actions twice; pooling every clip's
    candidates per class and running Gaussian Soft-NMS over the pool (AFSD) merges them. Then at most
    ``cfg.nms_top_k`` per class and ``cfg.max_per_video`` in all are kept. With ``duration`` segments are clipped
    to [0, duration] and those left empty are dropped (AFSD-ANet).
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
    kept = best_first(new_scores, pool.segments)
    kept = top_k_per_label(kept, pool.labels, cfg.nms_top_k)
    if cfg.max_per_video is not None:
        kept = kept[: cfg.max_per_video]
    seg = pool.segments[kept]
    if duration is not None:
        seg = np.clip(seg, 0.0, duration)
    names = [""] + list(classes.names)  # index 0 is background
    rows = zip(
        seg[:, 0].tolist(), seg[:, 1].tolist(), pool.labels[kept].tolist(), new_scores[kept].tolist(), strict=True
    )
    return [Detection(s, e, names[c], p) for s, e, c, p in rows if e > s]

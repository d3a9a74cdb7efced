"""Average recall against the average number of proposals per video (AR@AN), as ActivityNet's proposal task.

Follows ``Evaluation/eval_proposal.py`` of activitynet/ActivityNet (read, not copied):
- only videos with ground truth in the subset count; labels are ignored (proposals are class-agnostic);
- every video keeps its top ``int(n * ratio)`` proposals by score, ``ratio = AN_max * videos / all proposals``
  (all proposals, including those on videos without ground truth), so the budget scales with each video's list;
- the curve has 100 points: at point j a video uses its top ``int(kept * j / 100 * AN_max * videos / total kept)``;
  a ground truth counts as recalled when one of those has ``tIoU >= threshold``;
- recall is summed over videos then divided by all ground truths; AR is its mean over thresholds; the reported
  area is ``trapz(AR, AN) / AN_max``.
Score ties keep input order (the official code reverses them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from talmts.errors import InputError
from talmts.evaluation.result import DEFAULT_TIOU, thresholds_array
from talmts.geometry import pairwise_tiou
from talmts.schema import AnnotationSet, Detection, normalize_subset


@dataclass
class ProposalResult:
    """The AR-AN curve: ``recall [T, 100]`` per threshold, its mean over thresholds, and the AN of each point."""

    tiou: list[float]
    recall: np.ndarray  # [T, 100]
    average_recall: np.ndarray  # [100]
    proposals_per_video: np.ndarray  # [100]
    max_avg_proposals: float

    @property
    def auc(self) -> float:
        """Area under the AR-AN curve divided by the largest AN (a fraction; the official script prints x100)."""
        x, y = self.proposals_per_video, self.average_recall
        return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / x[-1])

    def ar_at(self, an: float) -> float:
        """AR at ``an`` proposals per video: curve point ``an / max_avg_proposals * 100`` (BSN's AR@1..AR@100)."""
        j = int(round(an / self.max_avg_proposals * 100)) - 1
        if not 0 <= j < 100:
            raise ValueError(f"AN {an} is outside the curve (max {self.max_avg_proposals})")
        return float(self.average_recall[j])

    def to_json(self) -> dict[str, Any]:
        return {
            "tiou": self.tiou,
            "average_recall": [float(x) for x in self.average_recall],
            "proposals_per_video": [float(x) for x in self.proposals_per_video],
            "auc": self.auc,
        }


def evaluate_proposals(
    ground_truth: AnnotationSet,
    proposals: dict[str, list[Detection]],
    tiou: Sequence[float] = DEFAULT_TIOU["anet"],
    subset: str | None = None,
    max_avg_proposals: float | None = 100,
) -> ProposalResult:
    """AR-AN curve of class-agnostic ``proposals`` (labels ignored) against the ground truth of ``subset``."""
    thr = thresholds_array(tiou)
    gts = {
        v.id: np.array([(s.start, s.end) for s in v.annotations], dtype=np.float64)
        for v in ground_truth.videos.values()
        if v.annotations and (subset is None or v.subset == normalize_subset(subset))
    }
    if not gts:
        raise InputError(f"no ground truth in subset {subset!r}: nothing to evaluate")
    num_videos = len(gts)
    total_all = sum(len(p) for p in proposals.values())
    if total_all == 0:
        raise InputError("no proposals to evaluate")
    if not max_avg_proposals:
        max_avg_proposals = total_all / num_videos
    ratio = max_avg_proposals * num_videos / total_all

    # First pass: each video's kept proposals (rank order), and for each threshold and ground truth the rank of
    # the first proposal that recalls it (kept if none does).
    first_hit: list[np.ndarray] = []  # per video [T, G]
    kept: list[int] = []
    for vid, gt in gts.items():
        props = proposals.get(vid, [])
        n_keep = min(int(len(props) * ratio), len(props))
        if n_keep == 0:
            first_hit.append(np.zeros((len(thr), len(gt)), dtype=np.int64))
            kept.append(0)
            continue
        scores = np.array([p.score for p in props])
        order = np.argsort(-scores, kind="stable")[:n_keep]
        seg = np.array([(props[i].start, props[i].end) for i in order], dtype=np.float64)
        hit = pairwise_tiou(gt, seg)[None, :, :] >= thr[:, None, None]  # [T, G, P]
        first_hit.append(np.where(hit.any(axis=2), hit.argmax(axis=2), n_keep))
        kept.append(n_keep)
    total_kept = sum(kept)
    if total_kept == 0:  # the budget keeps nothing (the official code divides by zero here): recall 0 everywhere
        zeros = np.zeros((len(thr), 100))
        grid = np.arange(1, 101) / 100.0 * max_avg_proposals
        return ProposalResult([float(t) for t in thr], zeros, zeros.mean(axis=0), grid, float(max_avg_proposals))

    pcn = np.arange(1, 101) / 100.0 * (max_avg_proposals * num_videos / total_kept)  # [100]
    matches = np.zeros((len(thr), 100))
    positives = 0
    for hits, n_keep in zip(first_hit, kept):
        positives += hits.shape[1]
        if n_keep == 0:
            continue
        budget = np.minimum((n_keep * pcn).astype(int), n_keep)  # [100] proposals used at each point
        matches += (hits[:, :, None] < budget[None, None, :]).sum(axis=1)  # [T, G, 100] -> [T, 100]
    recall = matches / positives
    return ProposalResult(
        tiou=[float(t) for t in thr],
        recall=recall,
        average_recall=recall.mean(axis=0),
        proposals_per_video=pcn * (total_kept / num_videos),
        max_avg_proposals=float(max_avg_proposals),
    )

"""One evaluation as flat arrays (:class:`Matches`): the ground truth and detections, and each detection's match
and error type at every threshold. :mod:`talmts.evaluation.diagnose` fills it; the sensitivity analysis and the
view's pages read it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Matches:
    """Ground truth and detections of one evaluation as flat arrays, and each detection's match and error type.

    Videos are indexed in ``videos`` (the ground truth's videos first, then videos that only have detections);
    classes in ``classes`` (labels with ground truth); a detection whose label has no ground truth has class -1:
    it is a false positive of no class's AP. ``gt_index``/``det_index`` give each row's position in its video's
    list, so the pages can point back at the input.
    """

    tiou: np.ndarray  # [T]
    classes: list[str]
    videos: list[str]
    durations: dict[str, float | None]
    gt_video: np.ndarray  # [G] video index
    gt_class: np.ndarray  # [G] class index
    gt_seg: np.ndarray  # [G, 2]
    gt_index: np.ndarray  # [G] position in the video's annotation list
    det_video: np.ndarray  # [N]
    det_class: np.ndarray  # [N], -1: label without ground truth
    det_label: list[str]  # [N]
    det_seg: np.ndarray  # [N, 2]
    det_score: np.ndarray  # [N]
    det_index: np.ndarray  # [N] position in the video's detection list
    matched: np.ndarray = field(default=None)  # [T, N] ground-truth row matched at each threshold, -1: none
    error: np.ndarray = field(default=None)  # [T, N] one of the ERROR_TYPES' codes
    best_gt: np.ndarray = field(default=None)  # [N] the ground-truth row of highest tIoU in the video, -1: none
    best_tiou: np.ndarray = field(default=None)  # [N] that tIoU (0 when none)
    _ranked: dict[int, np.ndarray] | None = field(default=None, repr=False)

    def ranked(self, c: int) -> np.ndarray:
        """Rows of class ``c`` in rank order: descending score, ties in input order."""
        if self._ranked is None:
            order = np.lexsort((np.arange(len(self.det_score)), -self.det_score))
            self._ranked = groups(self.det_class[order], order)
        return self._ranked.get(c, np.zeros(0, dtype=np.int64))


def groups(keys: np.ndarray, rows: np.ndarray) -> dict[int, np.ndarray]:
    """{key: the rows with that key, in their given order}."""
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    return dict(zip(uniq.tolist(), np.split(rows[order], starts[1:])))

"""Pictures for people: detection timelines and loss curves (the paper's Fig. 6).

matplotlib runs headless (Agg); every function writes a file and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from talmts.fileio import atomic_path  # noqa: E402
from talmts.schema import Detection, Segment  # noqa: E402

LOSS_TERMS = ("total", "coarse_cls", "refined_cls", "coarse_loc", "refined_loc", "quality")


def plot_timeline(
    detections: Sequence[Detection],
    path: str | Path,
    *,
    duration: float | None = None,
    ground_truth: Sequence[Segment] | None = None,
    title: str = "",
    min_score: float = 0.1,
    max_per_class: int = 30,
) -> Path:
    """Detections per class along the video's time axis; ground truth drawn beside them when given.

    Each class gets one row: ground truth as a solid bar in the row's upper half, detections in the lower half
    with their opacity set by the score (only those >= ``min_score``, at most ``max_per_class`` per class).
    """
    classes, gt_bars, det_bars = timeline_bars(detections, ground_truth, min_score, max_per_class)
    end = duration or max([b[2] for b in det_bars] + [b[2] for b in gt_bars] + [1.0])
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.6 * max(len(classes), 1)))
    cmap = plt.get_cmap("tab10")
    for row, start, stop in gt_bars:
        y = len(classes) - 1 - row  # first class on top
        ax.broken_barh([(start, stop - start)], (y + 0.05, 0.4), facecolors="0.35", edgecolor="none")
    for row, start, stop, score in det_bars:
        y = len(classes) - 1 - row
        alpha = 0.25 + 0.75 * min(max(score, 0.0), 1.0)
        ax.broken_barh([(start, stop - start)], (y - 0.45, 0.4), facecolors=[cmap(row % 10)], alpha=alpha)
    ax.set_yticks([len(classes) - 1 - i for i in range(len(classes))], classes)
    ax.set_ylim(-0.6, max(len(classes), 1) - 0.4)
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    legend = "lower bars: detections (opacity = score)"
    if gt_bars:
        legend = "upper grey bars: ground truth; " + legend
    ax.set_title(f"{title}\n{legend}" if title else legend, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_loss_curves(runs: Mapping[str, Sequence[Mapping[str, float]]], path: str | Path) -> Path:
    """Loss against epochs for each run (e.g. RGB and flow streams), like the paper's Fig. 6.

    Each run is a per-step log: dicts with "epoch" (fractional, e.g. 1.5 = half-way through epoch 2) and the
    loss terms. Left: the total loss of every run; right: every term of every run, smoothed over an epoch's
    worth of steps.
    """
    fig, (ax_total, ax_terms) = plt.subplots(1, 2, figsize=(12, 4.2))
    for k, (name, log) in enumerate(runs.items()):
        if not log:
            continue
        xs = [r["epoch"] for r in log]
        window = _steps_per_epoch(xs)
        color = plt.get_cmap("tab10")(k % 10)
        tot = [r["total"] for r in log]
        ax_total.plot(xs, tot, color=color, alpha=0.25, linewidth=0.8)
        ax_total.plot(xs, _smooth(tot, window), color=color, label=name)
        for j, term in enumerate(t for t in LOSS_TERMS[1:] if t in log[0]):
            vals = _smooth([r[term] for r in log], window)
            style = ["-", "--", ":", "-."][k % 4]  # colour = term, line style = run
            ax_terms.plot(xs, vals, color=plt.get_cmap("tab10")(j % 10), linestyle=style, label=f"{name} {term}")
    ax_total.set_title("total loss")
    ax_terms.set_title("loss terms (smoothed)")
    for ax in (ax_total, ax_terms):
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    ax_terms.set_yscale("symlog", linthresh=1e-3)  # terms span decades and may reach 0
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------- helpers
def timeline_bars(
    detections: Sequence[Detection],
    ground_truth: Sequence[Segment] | None,
    min_score: float,
    max_per_class: int,
) -> tuple[list[str], list[tuple[int, float, float]], list[tuple[int, float, float, float]]]:
    """What the timeline draws: class rows (sorted names), ground-truth bars (row, start, end) and detection
    bars (row, start, end, score): detections >= ``min_score``, the best ``max_per_class`` of each class."""
    shown = _top_detections(detections, min_score, max_per_class)
    gt = list(ground_truth or [])
    classes = sorted({d.label for d in shown} | {s.label for s in gt})
    row = {name: i for i, name in enumerate(classes)}
    gt_bars = [(row[s.label], s.start, s.end) for s in gt]
    det_bars = [(row[d.label], d.start, d.end, d.score) for d in shown]
    return classes, gt_bars, det_bars


def _top_detections(detections: Sequence[Detection], min_score: float, per_class: int) -> list[Detection]:
    by_class: dict[str, list[Detection]] = {}
    for d in detections:
        if d.score >= min_score:
            by_class.setdefault(d.label, []).append(d)
    out = []
    for dets in by_class.values():
        out += sorted(dets, key=lambda d: -d.score)[:per_class]
    return out


def _steps_per_epoch(epochs: Sequence[float]) -> int:
    if len(epochs) < 2 or epochs[-1] <= epochs[0]:
        return 1
    return max(1, round(len(epochs) / max(epochs[-1] - epochs[0], 1e-9)))


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over ``window`` values (the first ones average what exists so far)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    try:
        with atomic_path(path, keep_suffix=True) as tmp:  # the suffix last: matplotlib picks the format by it
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path

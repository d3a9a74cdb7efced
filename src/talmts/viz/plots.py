"""Pictures for people: detection timelines and loss curves (the paper's Fig. 6), and the detect page.

matplotlib runs headless (Agg); every function writes a file and returns its path.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from talmts.fileio import atomic_write_text  # noqa: E402
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


def write_html(
    path: str | Path,
    *,
    title: str,
    detections: Sequence[Detection],
    timeline_png: str | Path | None = None,
    video_src: str | None = None,
    captions_src: str | None = None,
    notes: Mapping[str, str] | None = None,
) -> Path:
    """A self-contained page: the timeline embedded as base64, a table of detections, optionally the video.

    With the video, clicking a detection plays the video from its start, the rows of the detections under the
    playhead are highlighted, and ``captions_src`` (WebVTT) shows the labels over the video.
    """
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "th{background:#eee}td.l{text-align:left}img{max-width:100%}"
        "tr[data-start]{cursor:pointer}tr[data-start]:hover{background:#f4f4f4}tr.now{background:#ffe9a8}</style>"
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if notes:
        parts.append("<ul>")
        parts += [f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in notes.items()]
        parts.append("</ul>")
    if video_src:
        track = (
            f"<track kind='captions' label='detections' default src='{html.escape(captions_src, quote=True)}'>"
            if captions_src
            else ""
        )
        parts.append(f"<video controls width='640' src='{html.escape(video_src, quote=True)}'>{track}</video>")
        parts.append("<p>Click a detection to play it.</p>")
    if timeline_png is not None:
        data = base64.b64encode(Path(timeline_png).read_bytes()).decode("ascii")
        parts.append(f"<h2>Timeline</h2><img alt='timeline' src='data:image/png;base64,{data}'>")
    parts.append(f"<h2>Detections ({len(detections)})</h2>")
    parts.append("<table><tr><th>#</th><th>label</th><th>start (s)</th><th>end (s)</th><th>score</th></tr>")
    for i, d in enumerate(sorted(detections, key=lambda d: -d.score)):
        parts.append(
            f"<tr data-start='{d.start:.3f}' data-end='{d.end:.3f}'><td>{i + 1}</td>"
            f"<td class='l'>{html.escape(d.label)}</td><td>{d.start:.2f}</td><td>{d.end:.2f}</td>"
            f"<td>{d.score:.4f}</td></tr>"
        )
    parts.append("</table>")
    if video_src:
        parts.append(f"<script>{_PLAYER_JS}</script>")
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))
    return Path(path)


# Click a row: play from its start. While playing: highlight the rows whose segment holds the playhead.
_PLAYER_JS = """
const video = document.querySelector('video');
const rows = Array.from(document.querySelectorAll('tr[data-start]'));
for (const row of rows) {
  row.addEventListener('click', () => {
    video.currentTime = Number(row.dataset.start);
    video.play().catch(() => {});  // autoplay may be refused; the seek stands
  });
}
video.addEventListener('timeupdate', () => {
  const t = video.currentTime;
  for (const row of rows) {
    row.classList.toggle('now', Number(row.dataset.start) <= t && t < Number(row.dataset.end));
  }
});
"""


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

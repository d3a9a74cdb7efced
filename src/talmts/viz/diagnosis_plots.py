"""The diagnosis of :func:`talmts.evaluation.diagnose.diagnose` as pictures for a report (matplotlib, headless).

Each function takes the diagnosis as plain data (``Diagnosis.to_json()``), writes one PNG and returns its path.
The view's diagnosis page draws the same charts in the browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from talmts.viz.plots import _save, plt

TYPE_COLORS = {  # DETAD's palette
    "true positive": "#33a02c",
    "double detection": "#b2df8a",
    "wrong label": "#1f78b4",
    "localization": "#fb9a99",
    "confusion": "#e31a1c",
    "background": "#a6cee3",
}
SENSITIVITY_COLORS = {"length": "#f0027f", "coverage": "#386cb0", "instances": "#bf5b17"}


def plot_false_positives(diagnosis: dict[str, Any], path: str | Path) -> Path:
    """Left: the type shares of the top 1G..10G detections (stacked); right: the mAP gain of removing each type."""
    fig, (ax_p, ax_g) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    profile = diagnosis["fp_profile"]
    groups = [row["group"] for row in profile]
    bottom = np.zeros(len(groups))
    for name, color in TYPE_COLORS.items():
        share = np.array([100 * row[name] for row in profile])
        ax_p.bar(groups, share, bottom=bottom, color=color, label=name, width=0.7)
        bottom += share
    ax_p.set_ylim(0, 100)
    ax_p.set_ylabel("share of the detections (%)")
    ax_p.set_xlabel("top detections per class (G = its ground truths)")
    ax_p.set_title("false-positive profile")
    ax_p.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    errors = [t for t in TYPE_COLORS if t in diagnosis["map_gain"]]
    gains = [100 * diagnosis["map_gain"][t] for t in errors]
    bars = ax_g.bar(range(len(errors)), gains, color=[TYPE_COLORS[t] for t in errors], width=0.7)
    ax_g.bar_label(bars, fmt="%.1f", fontsize=8)
    ax_g.set_xticks(range(len(errors)), [t.replace(" ", "\n") for t in errors], fontsize=8)
    ax_g.set_ylabel("average-mAP gain (points)")
    ax_g.set_title("removing each error type")
    ax_g.set_ylim(0, max(gains + [0.1]) * 1.25)
    for ax in (ax_p, ax_g):
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    return _save(fig, path)


def plot_sensitivity(diagnosis: dict[str, Any], path: str | Path) -> Path:
    """Average-mAP_N per bin of length, coverage and instances per video; dashed: all instances."""
    sens = diagnosis["sensitivity"]
    names = [k for k in ("length", "coverage", "instances") if k in sens]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        s = sens[name]
        values = [np.nan if v is None else 100 * v for v in s["average_mAP_N"]]
        labels = [f"{b}\n({k})" for b, k in zip(s["bins"], s["instances"])]
        bars = ax.bar(labels, np.nan_to_num(values), color=SENSITIVITY_COLORS[name], width=0.7)
        ax.bar_label(bars, labels=["-" if np.isnan(v) else f"{v:.1f}" for v in values], fontsize=8)
        ax.axhline(100 * sens["base"], color="k", linestyle="--", linewidth=1)
        ax.set_title(name)
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0][0].set_ylabel("average-mAP$_N$ (%)")
    return _save(fig, path)


def plot_class_ap(diagnosis: dict[str, Any], path: str | Path) -> Path:
    """AP of each class (averaged over the thresholds), best first."""
    rows = sorted(((c, 100 * float(np.mean(v))) for c, v in diagnosis["per_class"].items()), key=lambda r: -r[1])
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.3 * len(rows)))
    y = np.arange(len(rows))[::-1]
    bars = ax.barh(y, [r[1] for r in rows], color="#2458c6", height=0.7)
    ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=3)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.set_xlim(0, 110)
    ax.set_xlabel("AP (%)")
    ax.set_title("AP per class")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_diagnosis(diagnosis: dict[str, Any], folder: str | Path) -> dict[str, Path]:
    """All three pictures into ``folder``: false_positives.png, sensitivity.png, class_ap.png."""
    folder = Path(folder)
    return {
        "false_positives": plot_false_positives(diagnosis, folder / "false_positives.png"),
        "sensitivity": plot_sensitivity(diagnosis, folder / "sensitivity.png"),
        "class_ap": plot_class_ap(diagnosis, folder / "class_ap.png"),
    }

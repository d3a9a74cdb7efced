"""The result of a detection evaluation, the default thresholds and the paper-style table row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from talmts.errors import InputError

# THUMOS14: 0.1:0.1:0.7 written as decimals; ActivityNet: the official evaluator's np.linspace(0.5, 0.95, 10)
# (whose 0.6 and 0.85 are a hair above the decimals; matching uses >=, so the exact values matter at ties).
DEFAULT_TIOU: dict[str, list[float]] = {
    "thumos": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
    "anet": [float(x) for x in np.linspace(0.5, 0.95, 10)],
}


@dataclass
class EvalResult:
    """mAP at each tIoU threshold (fractions in [0, 1]), its mean, and each class's AP per threshold."""

    tiou: list[float]
    mAP: list[float]
    average_mAP: float
    per_class: dict[str, list[float]]

    def to_json(self) -> dict[str, Any]:
        return {"tiou": self.tiou, "mAP": self.mAP, "average_mAP": self.average_mAP, "per_class": self.per_class}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> EvalResult:
        """The inverse of :meth:`to_json` (extra keys, such as those `talmts eval` adds to metrics.json, ignored)."""
        return cls(raw["tiou"], raw["mAP"], raw["average_mAP"], raw["per_class"])

    def mean_over(self, lo: float, hi: float) -> float | None:
        """Mean mAP over the thresholds in [lo, hi]; None unless every paper threshold of that window is present."""
        picked = [m for t, m in zip(self.tiou, self.mAP) if lo - 1e-9 <= t <= hi + 1e-9]
        expected = int(round((hi - lo) / 0.1)) + 1
        return float(np.mean(picked)) if len(picked) == expected else None


def _find(result: EvalResult, t: float) -> float | None:
    for tt, m in zip(result.tiou, result.mAP):
        if abs(tt - t) < 1e-9:
            return m
    return None


def format_table(result: EvalResult, style: Literal["thumos", "anet"] = "thumos") -> str:
    """Two lines, header and row, in percent with one decimal, as in the paper.

    thumos (Table I): every threshold, then Avg{0.1:0.5} and Avg{0.3:0.7} when those thresholds were evaluated
    (plain "Avg" over all thresholds when neither window is complete). anet (Table II): 0.5, 0.75, 0.95 (those
    evaluated) and Avg over all thresholds.
    """
    cols = table_columns(result, style)
    width = [max(len(name), 5) for name, _ in cols]
    head = " ".join(name.rjust(w) for (name, _), w in zip(cols, width))
    row = " ".join(f"{100 * v:.1f}".rjust(w) for (_, v), w in zip(cols, width))
    return f"{head}\n{row}"


def table_columns(result: EvalResult, style: Literal["thumos", "anet"] = "thumos") -> list[tuple[str, float]]:
    """The (name, mAP) columns of the paper's table row for ``result`` (see :func:`format_table`)."""
    cols: list[tuple[str, float]] = []
    if style == "thumos":
        cols += [(f"{t:g}", m) for t, m in zip(result.tiou, result.mAP)]
        for lo, hi in ((0.1, 0.5), (0.3, 0.7)):
            avg = result.mean_over(lo, hi)
            if avg is not None:
                cols.append((f"Avg{{{lo:g}:{hi:g}}}", avg))
        if len(cols) == len(result.tiou):
            cols.append(("Avg", result.average_mAP))
    elif style == "anet":
        for t in (0.5, 0.75, 0.95):
            m = _find(result, t)
            if m is not None:
                cols.append((f"{t:g}", m))
        cols.append(("Avg", result.average_mAP))
    else:
        raise ValueError(f"unknown table style {style!r}: use 'thumos' or 'anet'")
    return cols


def summarize_runs(results: Sequence[EvalResult], style: Literal["thumos", "anet"] = "thumos") -> dict[str, Any]:
    """Several runs of one experiment (seeds): each table column's mean and sample standard deviation.

    Returns ``{"columns": [names], "runs": [[values]], "mean": [...], "std": [...]}`` (fractions; std uses
    n - 1, and is 0 for one run). Every run must have been evaluated at the same thresholds.
    """
    if not results:
        raise ValueError("summarize_runs: no results")
    if any(r.tiou != results[0].tiou for r in results):
        raise InputError("the runs were evaluated at different tIoU thresholds: score them with the same --tiou")
    columns = [table_columns(r, style) for r in results]
    values = np.array([[v for _, v in cols] for cols in columns], dtype=np.float64)  # [runs, columns]
    std = values.std(axis=0, ddof=1) if len(results) > 1 else np.zeros(values.shape[1])
    return {
        "columns": [name for name, _ in columns[0]],
        "runs": values.tolist(),
        "mean": values.mean(axis=0).tolist(),
        "std": std.tolist(),
    }


def format_runs_table(summary: dict[str, Any], names: Sequence[str]) -> str:
    """The table of :func:`summarize_runs`: a row per run, then mean and "± std" rows, in percent."""
    label = max([len(n) for n in names] + [4])
    width = [max(len(c), 5) for c in summary["columns"]]

    def line(name: str, cells: Sequence[str]) -> str:
        return name.ljust(label) + " " + " ".join(c.rjust(w) for c, w in zip(cells, width))

    lines = [line("", summary["columns"])]
    lines += [line(n, [f"{100 * v:.1f}" for v in row]) for n, row in zip(names, summary["runs"])]
    lines.append(line("mean", [f"{100 * v:.1f}" for v in summary["mean"]]))
    lines.append(line("std", [f"±{100 * v:.1f}" for v in summary["std"]]))
    return "\n".join(lines)


def thresholds_array(tiou: Sequence[float]) -> np.ndarray:
    arr = np.asarray(list(tiou), dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.all((arr > 0) & (arr <= 1)):  # NaN is in no range
        raise InputError(f"tIoU thresholds must be a non-empty list of numbers in (0, 1], got {list(tiou)}")
    return arr


def format_per_class(result: EvalResult) -> str:
    """The AP (%) of every class at every tIoU threshold, one class a row."""
    rows = ["class".ljust(24) + " ".join(f"{t:>6.2f}" for t in result.tiou)]
    for name, aps in sorted(result.per_class.items()):
        rows.append(name[:23].ljust(24) + " ".join(f"{100 * a:6.1f}" for a in aps))
    return "\n".join(rows)

"""Scoring detection files against a ground-truth file (``talmts evaluate``): the dataset's thresholds and
subset, one :class:`EvalResult` per file, DETAD's diagnosis of one file, the class-agnostic proposal metrics, and
row names for several runs; :func:`evaluate_files` puts them together into the command's report."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talmts.errors import InputError
from talmts.evaluation import (
    DEFAULT_TIOU,
    Diagnosis,
    EvalResult,
    ProposalResult,
    diagnose,
    evaluate_detections,
    evaluate_proposals,
    format_diagnosis,
    format_runs_table,
    format_table,
    summarize_runs,
)
from talmts.formats import THUMOS14_CLASSES, read_annotations, read_class_list, read_detections
from talmts.schema import AnnotationSet, normalize_subset


@dataclass
class Scores:
    """What :func:`score_files` measured: the dataset (table layout), the subset and one result per file."""

    dataset: str
    subset: str | None
    results: list[EvalResult]


@dataclass
class EvaluateReport:
    """What ``talmts evaluate`` shows: ``document`` (its --json form), ``lines`` (its table) and ``written`` (files
    it wrote, e.g. the diagnosis plots)."""

    document: dict[str, Any]
    lines: list[str]
    written: list[Path] = field(default_factory=list)


def evaluate_files(
    gt_file: str | Path,
    files: Sequence[str | Path],
    *,
    tiou: Sequence[float] | None = None,
    subset: str | None = None,
    dataset: str | None = None,
    strict: bool = False,
    classes_file: str | Path | None = None,
    video_info: str | Path | None = None,
    keep_ambiguous: bool = False,
    diagnose_dir: str | Path | None = None,
    proposals: bool = False,
) -> EvaluateReport:
    """``talmts evaluate``: detection mAP of each file (several: a row each, then mean and std), with DETAD's
    diagnosis of one file written into ``diagnose_dir``; or, with ``proposals``, one file's AR@AN."""
    gt = read_annotations_with_class_list(
        gt_file, classes_file=classes_file, video_info=video_info, keep_ambiguous=keep_ambiguous
    )
    if proposals:
        if len(files) > 1:
            raise InputError("--proposals scores one detection file at a time")
        result, summary, chosen = score_proposal_file(gt, files[0], tiou=tiou, subset=subset, dataset=dataset)
        lines = [f"proposals on {chosen or 'all videos'} of {gt_file}"]
        return EvaluateReport(
            result.to_json() | summary, lines + [" ".join(f"{k}={100 * v:.2f}" for k, v in summary.items())]
        )
    if diagnose_dir is not None and len(files) > 1:
        raise InputError("--diagnose diagnoses one detection file at a time")
    scores = score_files(gt, files, tiou=tiou, subset=subset, dataset=dataset, strict=strict)
    where = scores.subset or "all videos"
    if len(scores.results) > 1:
        summary = summarize_runs(scores.results, scores.dataset)
        runs = [{"file": str(f)} | r.to_json() for f, r in zip(files, scores.results)]
        return EvaluateReport(
            {k: summary[k] for k in ("columns", "mean", "std")} | {"runs": runs},
            [
                f"mAP (%) on {where} of {gt_file}: {len(scores.results)} runs, mean and standard deviation",
                format_runs_table(summary, short_names([str(f) for f in files])),
            ],
        )
    (result,) = scores.results
    lines = [f"mAP (%) on {where} of {gt_file}: {len(result.per_class)} classes", format_table(result, scores.dataset)]
    if diagnose_dir is None:
        return EvaluateReport(result.to_json(), lines)
    diagnosis, pictures = diagnose_file(gt, files[0], diagnose_dir, tiou=tiou, subset=subset, dataset=scores.dataset)
    return EvaluateReport(
        result.to_json() | {"diagnosis": diagnosis.to_json()},
        [*lines, format_diagnosis(diagnosis)],
        list(pictures.values()),
    )


def read_annotations_with_class_list(
    path: str | Path,
    *,
    classes_file: str | Path | None = None,
    video_info: str | Path | None = None,
    keep_ambiguous: bool = False,
) -> AnnotationSet:
    """``formats.read_annotations``, with an optional class list file fixing the class order."""
    classes = read_class_list(classes_file) if classes_file else None
    return read_annotations(path, classes=classes, video_info=video_info, exclude_ambiguous=not keep_ambiguous)


def guess_dataset(gt: AnnotationSet) -> str:
    """THUMOS14 when its class names or video ids are recognised, otherwise ActivityNet."""
    if set(gt.classes.names) <= set(THUMOS14_CLASSES):
        return "thumos"
    if any(v.startswith(("video_test_", "video_validation_")) for v in gt.videos):
        return "thumos"
    return "anet"


def default_subset(gt: AnnotationSet, dataset: str) -> str | None:
    """test for THUMOS14, validation for ActivityNet, when the file has that subset; else None (every video)."""
    subsets = {v.subset for v in gt.videos.values()}
    preferred = "test" if dataset == "thumos" else "validation"
    return preferred if preferred in subsets else None


def score_files(
    gt: AnnotationSet,
    files: Sequence[str | Path],
    *,
    tiou: Sequence[float] | None = None,
    subset: str | None = None,
    dataset: str | None = None,
    strict: bool = False,
) -> Scores:
    """Detection mAP of each file; thresholds, subset and table layout default by dataset (guessed from the GT)."""
    dataset = dataset or guess_dataset(gt)
    subset = _subset(gt, subset, dataset)
    thresholds = list(tiou or DEFAULT_TIOU[dataset])
    results = [evaluate_detections(gt, read_detections(p), thresholds, subset=subset, strict=strict) for p in files]
    return Scores(dataset, subset, results)


def diagnose_file(
    gt: AnnotationSet,
    file: str | Path,
    out_dir: str | Path,
    *,
    tiou: Sequence[float] | None = None,
    subset: str | None = None,
    dataset: str | None = None,
) -> tuple[Diagnosis, dict[str, Path]]:
    """DETAD's diagnosis of one detection file and its three pictures written into ``out_dir``: the dataset's
    thresholds and subset; its sensitivity bins when ``dataset`` is given, else chosen by the instances' lengths
    (a guessed "anet" is also what one's own dataset gets, whose actions may be short)."""
    from talmts.viz.diagnosis_plots import plot_diagnosis

    bins = dataset or "auto"
    dataset = dataset or guess_dataset(gt)
    subset = _subset(gt, subset, dataset)
    result = diagnose(gt, read_detections(file), list(tiou or DEFAULT_TIOU[dataset]), subset=subset, bins=bins)
    return result, plot_diagnosis(result.to_json(), out_dir)


def score_proposal_file(
    gt: AnnotationSet,
    file: str | Path,
    *,
    tiou: Sequence[float] | None = None,
    subset: str | None = None,
    dataset: str | None = None,
) -> tuple[ProposalResult, dict[str, float], str | None]:
    """AR@AN of one file taken as class-agnostic proposals (AN up to 100): the result, AR@1/5/10/100 and the
    area under the AR-AN curve, and the subset scored. The default subset follows the dataset as for detection
    scoring (test for THUMOS14, validation for ActivityNet); the thresholds are ActivityNet's proposal task's
    (0.5:0.05:0.95) for either."""
    subset = _subset(gt, subset, dataset or guess_dataset(gt))
    result = evaluate_proposals(
        gt, read_detections(file), tiou or DEFAULT_TIOU["anet"], subset=subset, max_avg_proposals=100
    )
    summary = {f"AR@{n}": result.ar_at(n) for n in (1, 5, 10, 100)} | {"AUC": result.auc}
    return result, summary, subset


def _subset(gt: AnnotationSet, subset: str | None, dataset: str) -> str | None:
    if subset is None:
        return default_subset(gt, dataset)
    name = normalize_subset(subset, file="--subset", record=subset)
    if not gt.subset(name).videos:
        present = sorted({v.subset for v in gt.videos.values()})
        raise InputError(f"{gt.source}: no video in subset {name!r} (subsets present: {present})")
    return name


def short_names(paths: Sequence[str]) -> list[str]:
    """Row labels: the paths without the prefix and suffix they all share (runs/s1/det.json, runs/s2/det.json ->
    1, 2), cut at path separators or dashes so that labels stay readable; the full paths where that fails."""
    paths = [str(p) for p in paths]
    prefix = os.path.commonprefix(paths)
    suffix = os.path.commonprefix([p[::-1] for p in paths])[::-1]
    prefix = prefix[: max(prefix.rfind("/"), prefix.rfind("-")) + 1]  # whole path parts only
    cut = re.search(r"[/\-.]", suffix)
    suffix = suffix[cut.start() :] if cut else ""
    names = [p[len(prefix) : len(p) - len(suffix)] for p in paths]
    return names if all(names) and len(set(names)) == len(names) else list(paths)

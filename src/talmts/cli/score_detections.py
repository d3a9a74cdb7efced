"""``talmts evaluate GT PRED [PRED ...]``: score detection files against ground truth with the ActivityNet mAP.

Several files (runs of one experiment with different seeds) give a row each, then their mean and standard deviation.
"""

from __future__ import annotations

import argparse
import json
import sys

from talmts.evaluation import (
    DEFAULT_TIOU,
    evaluate_detections,
    evaluate_proposals,
    format_runs_table,
    format_table,
    summarize_runs,
)
from talmts.formats import THUMOS14_CLASSES, read_annotations, read_class_list, read_detections
from talmts.schema import AnnotationSet, SchemaError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gt", help="ground truth: ActivityNet/ActionFormer/AFSD JSON, BSN JSON or a THUMOS14 CSV")
    parser.add_argument(
        "pred", nargs="+", help="detections in the ActivityNet results layout; several: one row each, mean and std"
    )
    parser.add_argument("--tiou", type=float, nargs="+", help="tIoU thresholds (default: by dataset)")
    parser.add_argument("--subset", help="subset to evaluate (default: test for THUMOS14, validation for ANet)")
    parser.add_argument("--dataset", choices=["thumos", "anet"], help="default thresholds and table (default: guessed)")
    parser.add_argument("--json", action="store_true", help='print {"tiou", "mAP", "average_mAP", "per_class"}')
    parser.add_argument("--strict", action="store_true", help="fail on detection labels without ground truth")
    parser.add_argument("--classes", help="class list file (THUMOS Class Index, ANet action_name.txt/.csv)")
    parser.add_argument("--video-info", help="video info CSV for BSN or THUMOS CSV ground truth")
    parser.add_argument(
        "--keep-ambiguous",
        action="store_true",
        help="keep THUMOS14 Ambiguous instances: unmatched detections overlapping them are not false positives",
    )
    parser.add_argument(
        "--proposals",
        action="store_true",
        help="class-agnostic proposal evaluation instead: AR@1/5/10/100 and the AR-AN area (AN up to 100)",
    )


def guess_dataset(gt: AnnotationSet) -> str:
    """THUMOS14 when its class names or video ids are recognised, otherwise ActivityNet."""
    if set(gt.classes.names) <= set(THUMOS14_CLASSES):
        return "thumos"
    if any(v.startswith(("video_test_", "video_validation_")) for v in gt.videos):
        return "thumos"
    return "anet"


def default_subset(gt: AnnotationSet, dataset: str) -> str | None:
    subsets = {v.subset for v in gt.videos.values()}
    preferred = "test" if dataset == "thumos" else "validation"
    return preferred if preferred in subsets else None


def run(args: argparse.Namespace) -> int:
    try:
        classes = read_class_list(args.classes) if args.classes else None
        gt = read_annotations(
            args.gt, classes=classes, video_info=args.video_info, exclude_ambiguous=not args.keep_ambiguous
        )
        preds = [read_detections(p) for p in args.pred]
        dataset = args.dataset or guess_dataset(gt)
        subset = args.subset or default_subset(gt, dataset)
        if args.proposals:
            if len(preds) > 1:
                raise ValueError("--proposals scores one detection file at a time")
            return _proposals(gt, preds[0], args, subset)
        tiou = args.tiou or DEFAULT_TIOU[dataset]
        results = [evaluate_detections(gt, p, tiou, subset=subset, strict=args.strict) for p in preds]
    except (SchemaError, ValueError) as e:
        print(f"talmts evaluate: {e}", file=sys.stderr)
        return 2
    if len(results) > 1:
        return _runs(results, args, dataset, subset)
    (result,) = results
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(f"mAP (%) on {subset or 'all videos'} of {args.gt}: {len(result.per_class)} classes")
        print(format_table(result, dataset))
    return 0


def _runs(results: list, args: argparse.Namespace, dataset: str, subset: str | None) -> int:
    summary = summarize_runs(results, dataset)
    if args.json:
        runs = [{"file": f} | r.to_json() for f, r in zip(args.pred, results)]
        print(json.dumps({"columns": summary["columns"], "mean": summary["mean"], "std": summary["std"], "runs": runs}))
    else:
        print(f"mAP (%) on {subset or 'all videos'} of {args.gt}: {len(results)} runs, mean and standard deviation")
        print(format_runs_table(summary, short_names(args.pred)))
    return 0


def short_names(paths: list[str]) -> list[str]:
    """Row labels: the paths without the prefix and suffix they all share (runs/s1/det.json, runs/s2/det.json ->
    1, 2), cut at path separators or dashes so that labels stay readable; the full paths where that fails."""
    import os
    import re

    prefix = os.path.commonprefix(paths)
    suffix = os.path.commonprefix([p[::-1] for p in paths])[::-1]
    prefix = prefix[: max(prefix.rfind("/"), prefix.rfind("-")) + 1]  # whole path parts only
    cut = re.search(r"[/\-.]", suffix)
    suffix = suffix[cut.start() :] if cut else ""
    names = [p[len(prefix) : len(p) - len(suffix)] for p in paths]
    return names if all(names) and len(set(names)) == len(names) else list(paths)


def _proposals(gt: AnnotationSet, pred: dict, args: argparse.Namespace, subset: str | None) -> int:
    result = evaluate_proposals(gt, pred, args.tiou or DEFAULT_TIOU["anet"], subset=subset, max_avg_proposals=100)
    summary = {f"AR@{n}": result.ar_at(n) for n in (1, 5, 10, 100)} | {"AUC": result.auc}
    if args.json:
        print(json.dumps(result.to_json() | summary))
    else:
        print(f"proposals on {subset or 'all videos'} of {args.gt}")
        print(" ".join(f"{k}={100 * v:.2f}" for k, v in summary.items()))
    return 0

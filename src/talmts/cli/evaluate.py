"""``talmts evaluate GT PRED [PRED ...]``: score detection files against ground truth with the ActivityNet mAP
(:mod:`talmts.engine.commands.evaluate`).

Several files (runs of one experiment with different seeds) give a row each, then their mean and standard deviation.
"""

from __future__ import annotations

import argparse
import json
import sys


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
        "--diagnose",
        nargs="?",
        const="diagnosis",
        metavar="DIR",
        help="DETAD's error diagnosis too (false-positive types, mAP gain without each, sensitivity, per-class AP), "
        "printed, and its plots written into DIR (default: diagnosis)",
    )
    parser.add_argument(
        "--proposals",
        action="store_true",
        help="class-agnostic proposal evaluation instead: AR@1/5/10/100 and the AR-AN area (AN up to 100)",
    )


def run(args: argparse.Namespace) -> int:
    from talmts.engine.commands.evaluate import (
        diagnose_file,
        read_annotations_with_class_list,
        score_files,
        score_proposal_file,
        short_names,
    )
    from talmts.errors import InputError
    from talmts.evaluation import format_diagnosis, format_runs_table, format_table, summarize_runs

    gt = read_annotations_with_class_list(
        args.gt, classes_file=args.classes, video_info=args.video_info, keep_ambiguous=args.keep_ambiguous
    )
    if args.proposals:
        if len(args.pred) > 1:
            raise InputError("--proposals scores one detection file at a time")
        result, summary, subset = score_proposal_file(
            gt, args.pred[0], tiou=args.tiou, subset=args.subset, dataset=args.dataset
        )
        if args.json:
            print(json.dumps(result.to_json() | summary, allow_nan=False))
        else:
            print(f"proposals on {subset or 'all videos'} of {args.gt}")
            print(" ".join(f"{k}={100 * v:.2f}" for k, v in summary.items()))
        return 0
    if args.diagnose and len(args.pred) > 1:
        raise InputError("--diagnose diagnoses one detection file at a time")
    scores = score_files(gt, args.pred, tiou=args.tiou, subset=args.subset, dataset=args.dataset, strict=args.strict)
    where = scores.subset or "all videos"
    if len(scores.results) > 1:
        summary = summarize_runs(scores.results, scores.dataset)
        if args.json:
            runs = [{"file": f} | r.to_json() for f, r in zip(args.pred, scores.results)]
            print(json.dumps({k: summary[k] for k in ("columns", "mean", "std")} | {"runs": runs}, allow_nan=False))
        else:
            print(f"mAP (%) on {where} of {args.gt}: {len(scores.results)} runs, mean and standard deviation")
            print(format_runs_table(summary, short_names(args.pred)))
        return 0
    (result,) = scores.results
    diagnosis = pictures = None
    if args.diagnose:
        diagnosis, pictures = diagnose_file(
            gt, args.pred[0], args.diagnose, tiou=args.tiou, subset=args.subset, dataset=scores.dataset
        )
    if args.json:
        print(json.dumps(result.to_json() | ({"diagnosis": diagnosis.to_json()} if diagnosis else {}), allow_nan=False))
    else:
        print(f"mAP (%) on {where} of {args.gt}: {len(result.per_class)} classes")
        print(format_table(result, scores.dataset))
        if diagnosis:
            print(format_diagnosis(diagnosis))
    if pictures:  # on stderr under --json, which keeps stdout one JSON document
        print("wrote " + ", ".join(str(p) for p in pictures.values()), file=sys.stderr if args.json else sys.stdout)
    return 0

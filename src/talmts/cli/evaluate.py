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
    from talmts.engine.commands.evaluate import evaluate_files

    report = evaluate_files(
        args.gt,
        args.pred,
        tiou=args.tiou,
        subset=args.subset,
        dataset=args.dataset,
        strict=args.strict,
        classes_file=args.classes,
        video_info=args.video_info,
        keep_ambiguous=args.keep_ambiguous,
        diagnose_dir=args.diagnose,
        proposals=args.proposals,
    )
    if args.json:
        print(json.dumps(report.document, allow_nan=False))
    else:
        print("\n".join(report.lines))
    if report.written:  # on stderr under --json, which keeps stdout one JSON document
        print("wrote " + ", ".join(map(str, report.written)), file=sys.stderr if args.json else sys.stdout)
    return 0

"""Evaluation: detection mAP exactly as the official ActivityNet evaluator, AR@AN for proposals, table rows, and
DETAD's error diagnosis."""

from talmts.evaluation.detection import evaluate_detections
from talmts.evaluation.diagnose import Diagnosis, diagnose, format_diagnosis
from talmts.evaluation.proposals import ProposalResult, evaluate_proposals
from talmts.evaluation.result import (
    DEFAULT_TIOU,
    EvalResult,
    format_per_class,
    format_runs_table,
    format_table,
    summarize_runs,
)

__all__ = [
    "DEFAULT_TIOU",
    "Diagnosis",
    "EvalResult",
    "ProposalResult",
    "diagnose",
    "evaluate_detections",
    "evaluate_proposals",
    "format_diagnosis",
    "format_runs_table",
    "format_per_class",
    "format_table",
    "summarize_runs",
]

"""Evaluation: detection mAP exactly as the official ActivityNet evaluator, AR@AN for proposals, table rows."""

from talmts.evaluation.detection import evaluate_detections
from talmts.evaluation.proposals import ProposalResult, evaluate_proposals
from talmts.evaluation.result import DEFAULT_TIOU, EvalResult, format_runs_table, format_table, summarize_runs

__all__ = [
    "DEFAULT_TIOU",
    "EvalResult",
    "ProposalResult",
    "evaluate_detections",
    "evaluate_proposals",
    "format_runs_table",
    "format_table",
    "summarize_runs",
]

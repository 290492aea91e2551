"""Evaluation: scores files, official metrics, challenge submissions and results tables."""

from fpar.evaluation.epic_metrics import ActionRanking, action_id, rank_actions
from fpar.evaluation.groundtruth import EvaluationError
from fpar.evaluation.metrics import evaluate, flatten_metrics, format_report
from fpar.evaluation.scores import ScoresError, load_scores, merge_scores, save_scores
from fpar.evaluation.submission import build_submission, write_archive
from fpar.evaluation.tables import TableError, aggregate, to_markdown, write_table

__all__ = [
    "ActionRanking",
    "EvaluationError",
    "ScoresError",
    "TableError",
    "action_id",
    "aggregate",
    "build_submission",
    "evaluate",
    "flatten_metrics",
    "format_report",
    "load_scores",
    "merge_scores",
    "rank_actions",
    "save_scores",
    "to_markdown",
    "write_archive",
    "write_table",
]

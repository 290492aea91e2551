"""The metrics a dataset is scored with, by the name its registration gives (``metrics``).

- ``epic_kitchens_55``: top-1/top-5 of verb, noun and action with the many-shot precision and
  recall of the EPIC-KITCHENS-55 action recognition challenge;
- ``epic_kitchens_100``: overall, unseen-participant and tail-class top-1/top-5 of the
  EPIC-KITCHENS-100 challenge;
- ``classification``: top-1/top-5, mean class accuracy and confusion matrix of one label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from fpar.evaluation.classification import confusion_matrix, mean_class_accuracy, top1_predictions, topk_accuracy
from fpar.evaluation.epic_metrics import epic55_metrics, epic100_metrics
from shards.datasets import Dataset

# Confused pairs listed by the human report of single-label datasets.
_TOP_CONFUSIONS = 5

Scores = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class MetricSet:
    """How one split of a dataset is scored and shown.

    Attributes:
        compute: ``(dataset, scores, labels, segments, folder, split) -> metrics`` (nested,
            percentages); ``scores``/``labels`` by task, rows in ``segments``' order.
        report: Lines of the human-readable summary of one split's metrics.
        headline: Flattened metric keys the run report compares across splits.
        comparison_title: Title of that comparison.
    """

    compute: Callable[[Dataset, Scores, Scores, pd.DataFrame, Path, str], dict]
    report: Callable[[dict], list[str]]
    headline: tuple[str, ...]
    comparison_title: str = "Splits compared"


def single_label_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1/top-5, mean class accuracy and confusion matrix of a single-label split."""
    confusion = confusion_matrix(labels, top1_predictions(scores), scores.shape[1])
    top = topk_accuracy(scores, labels)
    return {
        "segments": int(len(labels)),
        "top1": top[1],
        "top5": top[5],
        "mean_class_accuracy": mean_class_accuracy(confusion),
        "classes_present": int((confusion.sum(axis=1) > 0).sum()),
        "confusion_matrix": confusion.tolist(),
    }


def _confusions(matrix: list[list[int]]) -> str:
    confusion = np.asarray(matrix)
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:_TOP_CONFUSIONS]
    pairs = [
        f"{t}->{p} ({off[t, p]})" for t, p in zip(*np.unravel_index(order, off.shape)) if off[t, p] > 0
    ]
    return ", ".join(pairs) if pairs else "none"


def _classification(dataset, scores, labels, segments, folder, split) -> dict:
    (task,) = dataset.tasks
    return single_label_metrics(scores[task], labels[task])


def _classification_report(m: dict) -> list[str]:
    size = len(m["confusion_matrix"])
    return [
        f"  top-1 {m['top1']:6.2f}  top-5 {m['top5']:6.2f}  mean class accuracy "
        f"{m['mean_class_accuracy']:6.2f} ({m['classes_present']} classes present)",
        f"  confusion matrix {size}x{size} (in --json); most confused true->predicted: "
        f"{_confusions(m['confusion_matrix'])}",
    ]


def _epic55(dataset, scores, labels, segments, folder, split) -> dict:
    return epic55_metrics(scores["verb"], scores["noun"], labels["verb"], labels["noun"],
                          dataset.extras["many_shot"](folder))


def _epic55_report(m: dict) -> list[str]:
    return [
        f"  {task:<6} top-1 {m[task]['top1']:6.2f}  top-5 {m[task]['top5']:6.2f}  "
        f"precision {m[task]['precision']:6.2f}  recall {m[task]['recall']:6.2f}  "
        f"({m[task]['many_shot_classes']} many-shot classes present)"
        for task in ("verb", "noun", "action")
    ]


def _epic100(dataset, scores, labels, segments, folder, split) -> dict:
    unseen = dataset.extras["unseen_participants"](folder, split) if split != "train" else set()
    return epic100_metrics(scores["verb"], scores["noun"], labels["verb"], labels["noun"],
                           segments["participant"].to_numpy(), unseen, dataset.extras["tail_classes"](folder))


def _epic100_report(m: dict) -> list[str]:
    lines = []
    for task in ("verb", "noun", "action"):
        o, u, t = m["overall"][task], m["unseen"][task], m["tail"][task]
        lines.append(
            f"  {task:<6} top-1 {o['top1']:6.2f}  top-5 {o['top5']:6.2f}  "
            f"unseen top-1 {u['top1']:6.2f}  tail top-1 {t['top1']:6.2f} "
            f"({t['segments']} tail segments)"
        )
    lines.append(f"  unseen-participant segments: {m['unseen']['segments']}")
    return lines


METRIC_SETS: dict[str, MetricSet] = {
    "epic_kitchens_55": MetricSet(
        _epic55, _epic55_report,
        ("verb_top1", "noun_top1", "action_top1", "verb_top5", "noun_top5", "action_top5"),
        "Seen vs unseen"),
    "epic_kitchens_100": MetricSet(
        _epic100, _epic100_report,
        ("overall_verb_top1", "overall_noun_top1", "overall_action_top1", "unseen_action_top1",
         "tail_action_top1")),
    "classification": MetricSet(
        _classification, _classification_report, ("top1", "top5", "mean_class_accuracy")),
}


def metric_set(dataset: Dataset) -> MetricSet:
    """The metrics ``dataset`` names; a dataset naming none known is a programming error."""
    if dataset.metrics not in METRIC_SETS:
        raise ValueError(f"dataset '{dataset.name}' names metrics '{dataset.metrics}'; "
                         f"known: {', '.join(METRIC_SETS)}")
    return METRIC_SETS[dataset.metrics]

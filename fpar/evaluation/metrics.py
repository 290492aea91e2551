"""The official metrics of each dataset, from a scores file and labelled annotations.

``evaluate`` reads the ground truth through ``shards.annotations``, matches score rows to
segments and returns a nested dict (accuracies in percent); ``format_report`` renders it
for people and ``flatten_metrics`` turns it into ``{split: {"verb_top1": ...}}`` rows
for results tables.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from fpar.evaluation.groundtruth import (
    EvaluationError,
    align,
    default_splits,
    labelled_segments,
    resolve_splits,
    show_ids,
)
from fpar.evaluation.metric_sets import metric_set, single_label_metrics  # noqa: F401  (re-exported)
from shards.datasets import UnknownDataset, get_dataset

log = logging.getLogger(__name__)

# The segment table column of each task's label.
LABEL_COLUMNS = {"verb": "verb_class", "noun": "noun_class", "class": "class_id"}


def check_outputs(fmt: str, ids: Sequence[str], outputs: Mapping[str, np.ndarray], where: str) -> None:
    """Checks the score arrays have the dataset's tasks and class counts and are finite.

    Raises:
        EvaluationError: Naming the task, the counts, or the first ids with bad scores.
    """
    dataset = get_dataset(fmt)
    expected = {task: dataset.num_classes[task] for task in dataset.tasks}
    if set(outputs) != set(expected):
        raise EvaluationError(
            f"{where}: {fmt} needs scores for {sorted(expected)}, found {sorted(outputs)}"
        )
    for task, count in expected.items():
        if outputs[task].shape[1] != count:
            raise EvaluationError(
                f"{where}: {task} scores have {outputs[task].shape[1]} classes, {fmt} has {count}"
            )
        bad = ~np.isfinite(outputs[task]).all(axis=1)
        if bad.any():
            bad_ids = [ids[i] for i in np.flatnonzero(bad)]
            raise EvaluationError(f"{where}: non-finite {task} scores for {show_ids(bad_ids)}")


def evaluate(
    fmt: str,
    ids: Sequence[str],
    outputs: Mapping[str, np.ndarray],
    annotations: str | Path,
    splits: Sequence[str] | None = None,
    root: str | Path | None = None,
) -> dict:
    """Computes the official metrics of every requested split.

    Args:
        fmt: A registered dataset ("epic55", "epic100", "gtea61", "egtea", ...).
        ids: Segment ids of the score rows.
        outputs: Score arrays by task ("verb"/"noun" or "class").
        annotations: The annotation folder, or one split file (its split is evaluated).
            GTEA-61: the frame folder.
        splits: Split names; by default every test split whose segments are all
            scored: S1/S2 (EPIC-55), validation/test (EPIC-100), test_split1-3 (EGTEA),
            test_fixed or test_loso1-4 (GTEA-61).
        root: GTEA-61 frame root when it differs from ``annotations``.

    Returns:
        {"format", "scored_segments", "splits": {split: metrics}}. Every segment of an
        evaluated split must have a score; scores of other segments are ignored.

    Raises:
        EvaluationError: Missing scores, wrong class counts, non-finite scores, or a split
            without labels.
    """
    try:
        dataset = get_dataset(fmt)
    except UnknownDataset as err:
        raise EvaluationError(str(err)) from None
    check_outputs(fmt, ids, outputs, "scores")
    folder, chosen = resolve_splits(fmt, annotations, splits)
    if chosen is None:
        chosen = default_splits(fmt, folder, ids, root)
    tasks = list(dataset.tasks)
    metrics_of = metric_set(dataset).compute
    label_columns = [LABEL_COLUMNS[t] for t in tasks]
    result: dict = {"format": fmt, "scored_segments": len(ids), "splits": {}}
    used: set[int] = set()
    for split in chosen:
        segments = labelled_segments(fmt, folder, split, root, label_columns)
        rows = align(ids, segments, f"{fmt} split {split!r}")
        used.update(rows.tolist())
        scores = {t: np.asarray(outputs[t])[rows] for t in tasks}
        labels = {t: segments[LABEL_COLUMNS[t]].to_numpy(dtype=np.int64) for t in tasks}
        metrics = metrics_of(dataset, scores, labels, segments, Path(folder), split)
        result["splits"][split] = metrics
    if len(used) < len(ids):
        log.warning(
            "%d scored segment(s) belong to no evaluated split and were ignored", len(ids) - len(used)
        )
    return result


def flatten_metrics(result: dict) -> dict[str, dict[str, float]]:
    """``{split: {"verb_top1": x, "overall_action_top5": y, ...}}``: numeric leaves only.

    Lists (the confusion matrix) are left out; keys join the nested names with "_".
    """

    def walk(node: dict, prefix: str, out: dict[str, float]) -> None:
        for key, value in node.items():
            name = f"{prefix}_{key}" if prefix else str(key)
            if isinstance(value, dict):
                walk(value, name, out)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = float(value)

    flat: dict[str, dict[str, float]] = {}
    for split, metrics in result["splits"].items():
        flat[split] = {}
        walk(metrics, "", flat[split])
    return flat


def format_report(result: dict) -> str:
    """Human-readable summary of ``evaluate``'s result (percentages, 2 decimals)."""
    lines = [f"format {result['format']}, {result['scored_segments']} scored segments"]
    report = metric_set(get_dataset(result["format"])).report
    for split, m in result["splits"].items():
        lines.append(f"[{split}] {m['segments']} segments")
        lines += report(m)
    return "\n".join(lines)

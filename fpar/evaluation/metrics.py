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

from fpar.evaluation.classification import (
    confusion_matrix,
    mean_class_accuracy,
    top1_predictions,
    topk_accuracy,
)
from fpar.evaluation.epic_metrics import epic55_metrics, epic100_metrics
from fpar.evaluation.groundtruth import (
    EvaluationError,
    align,
    default_splits,
    labelled_segments,
    resolve_splits,
    show_ids,
)
from shards.annotations import num_classes
from shards.annotations.epic55 import read_many_shot
from shards.annotations.epic100 import read_tail_classes, read_unseen_participants

log = logging.getLogger(__name__)

FORMATS = ("epic55", "epic100", "gtea61", "egtea")
_LABEL_COLUMNS = {"verb": "verb_class", "noun": "noun_class", "class": "class_id"}
# Confused pairs listed by the human report of single-label datasets.
_TOP_CONFUSIONS = 5


def check_outputs(fmt: str, ids: Sequence[str], outputs: Mapping[str, np.ndarray], where: str) -> None:
    """Checks the score arrays have the dataset's tasks and class counts and are finite.

    Raises:
        EvaluationError: Naming the task, the counts, or the first ids with bad scores.
    """
    expected = num_classes(fmt)
    if fmt == "egtea":
        expected = {"class": expected["class"]}
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
        fmt: "epic55", "epic100", "gtea61" or "egtea".
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
    if fmt not in FORMATS:
        raise EvaluationError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    check_outputs(fmt, ids, outputs, "scores")
    folder, chosen = resolve_splits(fmt, annotations, splits)
    if chosen is None:
        chosen = default_splits(fmt, folder, ids, root)
    tasks = ["verb", "noun"] if fmt.startswith("epic") else ["class"]
    label_columns = [_LABEL_COLUMNS[t] for t in tasks]
    result: dict = {"format": fmt, "scored_segments": len(ids), "splits": {}}
    used: set[int] = set()
    for split in chosen:
        segments = labelled_segments(fmt, folder, split, root, label_columns)
        rows = align(ids, segments, f"{fmt} split {split!r}")
        used.update(rows.tolist())
        scores = {t: np.asarray(outputs[t])[rows] for t in tasks}
        labels = {t: segments[_LABEL_COLUMNS[t]].to_numpy(dtype=np.int64) for t in tasks}
        if fmt == "epic55":
            metrics = epic55_metrics(
                scores["verb"], scores["noun"], labels["verb"], labels["noun"], read_many_shot(folder)
            )
        elif fmt == "epic100":
            metrics = epic100_metrics(
                scores["verb"],
                scores["noun"],
                labels["verb"],
                labels["noun"],
                segments["participant"].to_numpy(),
                read_unseen_participants(folder, split) if split != "train" else set(),
                read_tail_classes(folder),
            )
        else:
            metrics = single_label_metrics(scores["class"], labels["class"])
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


def _confusions(matrix: list[list[int]]) -> str:
    confusion = np.asarray(matrix)
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:_TOP_CONFUSIONS]
    pairs = [
        f"{t}->{p} ({off[t, p]})" for t, p in zip(*np.unravel_index(order, off.shape)) if off[t, p] > 0
    ]
    return ", ".join(pairs) if pairs else "none"


def format_report(result: dict) -> str:
    """Human-readable summary of ``evaluate``'s result (percentages, 2 decimals)."""
    lines = [f"format {result['format']}, {result['scored_segments']} scored segments"]
    for split, m in result["splits"].items():
        lines.append(f"[{split}] {m['segments']} segments")
        if result["format"] == "epic55":
            for task in ("verb", "noun", "action"):
                t = m[task]
                lines.append(
                    f"  {task:<6} top-1 {t['top1']:6.2f}  top-5 {t['top5']:6.2f}  "
                    f"precision {t['precision']:6.2f}  recall {t['recall']:6.2f}  "
                    f"({t['many_shot_classes']} many-shot classes present)"
                )
        elif result["format"] == "epic100":
            for task in ("verb", "noun", "action"):
                o, u, t = m["overall"][task], m["unseen"][task], m["tail"][task]
                lines.append(
                    f"  {task:<6} top-1 {o['top1']:6.2f}  top-5 {o['top5']:6.2f}  "
                    f"unseen top-1 {u['top1']:6.2f}  tail top-1 {t['top1']:6.2f} "
                    f"({t['segments']} tail segments)"
                )
            lines.append(f"  unseen-participant segments: {m['unseen']['segments']}")
        else:
            lines.append(
                f"  top-1 {m['top1']:6.2f}  top-5 {m['top5']:6.2f}  mean class accuracy "
                f"{m['mean_class_accuracy']:6.2f} ({m['classes_present']} classes present)"
            )
            size = len(m["confusion_matrix"])
            lines.append(
                f"  confusion matrix {size}x{size} (in --json); most confused true->predicted: "
                f"{_confusions(m['confusion_matrix'])}"
            )
    return "\n".join(lines)

"""Classification measures shared by every dataset: top-k, mean class accuracy, confusion,
macro precision/recall.

Ties: wherever classes are ranked, a higher score ranks first and among equal scores the
lower class id ranks first (a stable sort of the negated scores). ``np.argmax`` already
returns the lowest id among equal maxima, so the top-1 prediction follows the same rule.
All accuracies are returned in percent, except :func:`top1_metrics` (fractions, as the
training log and the best-checkpoint choice use them).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (shifted by the row maximum so it cannot overflow)."""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def ranked_classes(scores: np.ndarray, k: int | None = None) -> np.ndarray:
    """Class ids of each row ordered best first (ties: lower id first), cut to ``k``."""
    order = np.argsort(-np.asarray(scores), axis=1, kind="stable")
    return order if k is None else order[:, :k]


def label_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The 0-based rank of each row's label under the tie rule, without sorting.

    A label's rank is the number of classes scored higher plus the number of classes
    scored the same with a lower id.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))
    own = scores[rows, labels][:, None]
    ids = np.arange(scores.shape[1])[None, :]
    above = (scores > own) | ((scores == own) & (ids < labels[:, None]))
    return above.sum(axis=1)


def topk_accuracy(
    scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)
) -> dict[int, float]:
    """Top-k accuracy in percent for each k (k larger than the class count is clipped).

    Args:
        scores: (N, C) scores, higher is better.
        labels: (N,) true class ids in 0..C-1.
        ks: The k values.

    Returns:
        {k: accuracy} keyed by the k asked for; an empty ``labels`` gives NaN.
    """
    if len(labels) == 0:
        return {k: float("nan") for k in ks}
    ranks = label_rank(scores, labels)
    classes = np.asarray(scores).shape[1]
    return {k: float(np.mean(ranks < min(k, classes)) * 100.0) for k in ks}


def top1_predictions(scores: np.ndarray) -> np.ndarray:
    """The best class of each row (ties: the lower id)."""
    return np.argmax(np.asarray(scores), axis=1)


def top1_metrics(logits: Mapping[str, np.ndarray],
                 labels: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Top-1 accuracy (a fraction) per head on its labelled rows (label >= 0), of the action
    (verb and noun both right) and their mean over heads, ``mean_top1``.

    p(action) = p(verb) p(noun), so the action's argmax is the pair of argmaxes: this is
    the official EPIC action top-1 without ranking the actions. Used for validation and
    the training log; :mod:`fpar.evaluation.metrics` gives the official numbers.
    """
    metrics: dict[str, float] = {}
    hits = {}
    for head, scores in logits.items():
        if head not in labels or len(scores) == 0:
            continue
        target = np.asarray(labels[head])
        known = target >= 0
        hits[head] = (top1_predictions(scores) == target) & known
        if known.any():
            metrics[f"top1_{head}"] = float(hits[head][known].mean())
    if "verb" in hits and "noun" in hits:
        known = (np.asarray(labels["verb"]) >= 0) & (np.asarray(labels["noun"]) >= 0)
        if known.any():
            metrics["top1_action"] = float((hits["verb"] & hits["noun"])[known].mean())
    heads = [v for k, v in metrics.items() if k != "top1_action"]
    if heads:
        metrics["mean_top1"] = float(np.mean(heads))
    return metrics


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    flat = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predictions, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def mean_class_accuracy(confusion: np.ndarray) -> float:
    """Mean over the classes present in the ground truth of their recall, in percent.

    Classes with no true sample are left out: their recall is undefined.
    """
    support = confusion.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    recall = np.diag(confusion)[present] / support[present]
    return float(recall.mean() * 100.0)


def _counts(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """How often each of the sorted ``classes`` occurs in ``values``."""
    found, counts = np.unique(values, return_counts=True)
    pos = np.clip(np.searchsorted(found, classes), 0, max(found.size - 1, 0))
    if found.size == 0:
        return np.zeros(classes.size, dtype=np.float64)
    return np.where(found[pos] == classes, counts[pos], 0).astype(np.float64)


def macro_precision_recall(
    labels: np.ndarray, predictions: np.ndarray, classes: Iterable[int]
) -> tuple[float, float, int]:
    """Macro precision and recall (percent) over ``classes`` present in ``labels``.

    This is the EPIC-KITCHENS-55 definition: each listed class that occurs in the ground
    truth gets precision TP / predicted (0 when never predicted) and recall TP / true;
    both are averaged over those classes. Listed classes absent from the ground truth
    are excluded.

    Args:
        labels: (N,) true class ids (any integers, e.g. encoded actions).
        predictions: (N,) top-1 predicted ids, encoded the same way.
        classes: The classes to average over (e.g. the many-shot list).

    Returns:
        ``(precision, recall, classes_used)``; NaN means when no listed class is present.
    """
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    wanted = np.array(sorted(set(int(c) for c in classes)), dtype=np.int64)
    used = wanted[np.isin(wanted, labels)]
    if used.size == 0:
        return float("nan"), float("nan"), 0
    true_count = _counts(labels, used)
    pred_count = _counts(predictions, used)
    hit_count = _counts(labels[labels == predictions], used)
    precision = np.divide(hit_count, pred_count, out=np.zeros_like(hit_count), where=pred_count > 0)
    recall = hit_count / true_count
    return float(precision.mean() * 100.0), float(recall.mean() * 100.0), int(used.size)

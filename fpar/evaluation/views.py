"""A segment's score from its test-time views: the mean of the views' class distributions.

``aggregate: prob`` (PySlowFast, MMAction2 ``average_clips='prob'``, VideoMAE) averages the
softmax of each head over the views and keeps the log of that mean: the scores file then
stays in the official format, and the official evaluator's softmax of a row gives back
exactly the averaged distribution (its entries sum to one, so softmax(log p) = p). The
mean is kept as a running log-sum-exp in float64, so a class no view believes in gets a
very negative score rather than log(0). ``aggregate: logit`` averages the logits (TSN's
average consensus). A mirrored view's columns (and label) are first mapped back through
the dataset's mirror pairs, so that a mirrored move-left, scored as move-right by a model
that is right, counts for move-left. One view keeps the model's logits unchanged.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from fpar.data.views import View

log = logging.getLogger(__name__)

AGGREGATES = ("prob", "logit")


def views_record(settings) -> dict:
    """What a scores file records about the views behind its rows, from an
    ``EvalConfig`` (``clips``, ``crops``, ``aggregate``)."""
    clips, crops = int(settings.clips), int(settings.crops)
    return {"clips": clips, "crops": crops, "views": clips * crops,
            "aggregate": str(settings.aggregate)}


def describe_views(record: dict | None) -> str:
    """``"6 views (2 clips x 3 crops, mean of probabilities)"``, for reports."""
    if not record:
        return "views not recorded in the scores file"
    if int(record.get("views", 1)) == 1:
        return "1 view (chunk centres, centre crop)"
    how = "mean of probabilities" if record.get("aggregate") == "prob" else "mean of logits"
    return (f"{record['views']} views ({record['clips']} clips x {record['crops']} crops, "
            f"{how})")


class ViewAverage:
    """Turns the rows of consecutive views into one row per segment, as they stream in.

    Args:
        views: The views of every segment, in the order the stream gives them.
        mirrored: ``(label key, class) -> class`` of a horizontally flipped clip
            (``DataConfig.mirrored``).
        aggregate: ``prob`` or ``logit``.
    """

    def __init__(self, views: Sequence[View], mirrored: Callable[[str, int], int],
                 aggregate: str = "prob") -> None:
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
        self.views, self.mirrored, self.aggregate = tuple(views), mirrored, aggregate
        self._perm: dict[tuple[str, int], np.ndarray] = {}
        self._current: str | None = None
        self._seen: set[int] = set()
        self._sums: dict[str, np.ndarray] = {}
        self._labels: dict[str, int] = {}
        self._finished: set[str] = set()
        self.incomplete: list[str] = []

    def _columns(self, head: str, classes: int) -> np.ndarray:
        """Column order that maps a mirrored view's scores back (an involution)."""
        key = (head, classes)
        if key not in self._perm:
            self._perm[key] = np.array([self.mirrored(head, c) for c in range(classes)])
        return self._perm[key]

    def add(self, ids: Sequence[str], logits: dict[str, np.ndarray], labels: dict[str, np.ndarray],
            view: Sequence[int]) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Adds a batch of view rows; returns the rows of the segments it completed
        (``ids``, float32 scores by head, int64 labels by key; empty dicts for none).

        Raises:
            RuntimeError: If a segment's views are not consecutive.
        """
        done: tuple[list, dict, dict] = ([], {}, {})
        for row, segment in enumerate(ids):
            if segment != self._current:
                self._close(done)
                if segment in self._finished:
                    raise RuntimeError(f"evaluation: the views of segment {segment} are not "
                                       "consecutive in the stream")
                self._current = segment
            number = int(view[row])
            if number in self._seen:
                raise RuntimeError(f"evaluation: view {number} of segment {segment} came twice")
            self._seen.add(number)
            flip = self.views[number].flip
            for head, values in logits.items():
                scores = values[row].astype(np.float64)
                if flip:
                    scores = scores[self._columns(head, len(scores))]
                if self.aggregate == "prob":
                    shifted = scores - scores.max()
                    scores = shifted - np.log(np.exp(shifted).sum())
                    total = self._sums.get(head)
                    self._sums[head] = scores if total is None else np.logaddexp(total, scores)
                else:
                    self._sums[head] = self._sums.get(head, 0.0) + scores
            for key, values in labels.items():
                label = int(values[row])
                self._labels[key] = self.mirrored(key, label) if flip and label >= 0 else label
        return _packed(done)

    def finish(self) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The last segment's row; logs the segments left out for missing views."""
        done: tuple[list, dict, dict] = ([], {}, {})
        self._close(done)
        if self.incomplete:
            log.warning("%d segment(s) not scored: some of their %d views could not be "
                        "decoded (first: %s)", len(self.incomplete), len(self.views),
                        ", ".join(self.incomplete[:5]))
        return _packed(done)

    def _close(self, done: tuple[list, dict, dict]) -> None:
        segment = self._current
        if segment is None:
            return
        if len(self._seen) == len(self.views):
            done[0].append(segment)
            count = len(self.views)
            for head, total in self._sums.items():
                row = total - np.log(count) if self.aggregate == "prob" else total / count
                done[1].setdefault(head, []).append(row.astype(np.float32))
            for key, label in self._labels.items():
                done[2].setdefault(key, []).append(label)
        else:
            self.incomplete.append(segment)
        self._finished.add(segment)
        self._current, self._seen, self._sums, self._labels = None, set(), {}, {}


def _packed(done: tuple[list, dict, dict]) -> tuple[list[str], dict, dict]:
    ids, scores, labels = done
    return (ids, {head: np.stack(rows) for head, rows in scores.items()},
            {key: np.asarray(values, dtype=np.int64) for key, values in labels.items()})

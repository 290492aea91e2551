"""Prediction over an evaluation stream: one row per segment, gathered over ranks.

With several test-time views a segment's views are all read by the rank that owns the
segment, consecutively, and averaged there as they arrive (:mod:`fpar.evaluation.views`):
a batch holds views, so memory does not grow with the number of views, and the gathered
rows are one per segment exactly as with one view.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from fpar.data.batch import prepare_batch
from fpar.data.views import View, single_view
from fpar.engine import distributed
from fpar.engine.run_log import SegmentProgress
from fpar.evaluation.views import ViewAverage

LABEL_KEYS = ("verb", "noun", "class")


def predict_stream(forward: Callable[[dict], object], stream, device: torch.device,
                   dtype: torch.dtype = torch.float32, views: Sequence[View] = (),
                   aggregate: str = "prob", progress: bool = False, ms_tally=None):
    """:func:`predict` over a ``ShardStream``'s evaluation pass with test-time ``views``
    (one view: the chunk centres and the centre crop), averaged by ``aggregate``;
    ``progress`` shows this rank's segments/s; ``ms_tally`` as in :func:`predict`."""
    if single_view(views):  # streams without test-time views (e.g. a trainer's own) work too
        average, batches = None, stream.eval_batches()
    else:
        average = ViewAverage(views, stream.cfg.mirrored, aggregate)
        batches = stream.eval_batches(views)
    meter = SegmentProgress(stream.num_rank_samples) if progress else None
    return predict(forward, batches, device, dtype, average, meter, ms_tally)


@torch.no_grad()
def predict(forward: Callable[[dict], object], batches: Iterable[dict], device: torch.device,
            dtype: torch.dtype = torch.float32, views: ViewAverage | None = None,
            progress: SegmentProgress | None = None, ms_tally=None):
    """Runs ``forward`` over this rank's batches and gathers every rank's rows.

    Args:
        forward: ``batch -> ModelOutput`` (the model in eval mode).
        batches: This rank's evaluation batches (``segment_id`` plus inputs and labels;
            ``view`` numbers with several views).
        device: Where the model runs.
        dtype: Floating dtype of the model's inputs.
        views: Averages the rows of each segment's views, for batches of several views.
        progress: Counts the segments scored.
        ms_tally: A :class:`fpar.evaluation.ms_score.CellTally` to add every batch's motion
            targets and MS prediction to; on return it holds every rank's.

    Returns:
        ``(ids, logits, labels)`` on every rank: segment ids, float32 logits per head and
        int64 labels per label key, rows in the same order.

    Raises:
        RuntimeError: If a segment appears twice across ranks.
    """
    ids: list[str] = []
    logits: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        model_batch = prepare_batch(batch, device, dtype)
        output = forward(model_batch)
        if ms_tally is not None and "motion" in model_batch:
            ms_tally.add(model_batch["motion"], output.ms)
        rows = ([str(s) for s in batch["segment_id"]],
                {head: value.float().cpu().numpy() for head, value in output.logits.items()},
                {key: np.asarray(batch[key].cpu(), dtype=np.int64)
                 for key in LABEL_KEYS if key in batch})
        if views is not None:
            rows = views.add(*rows, batch["view"].tolist())
        _keep(rows, ids, logits, labels, progress)
    if views is not None:
        _keep(views.finish(), ids, logits, labels, progress)
    if progress is not None:
        progress.close()
    local = (ids, {k: np.concatenate(v) for k, v in logits.items()},
             {k: np.concatenate(v) for k, v in labels.items()})
    parts = distributed.gather_objects(local)
    if ms_tally is not None:
        from fpar.evaluation.ms_score import merge_ranks

        merge_ranks(ms_tally)
    all_ids = [i for part in parts for i in part[0]]
    duplicates = len(all_ids) - len(set(all_ids))
    if duplicates:
        raise RuntimeError(f"evaluation: {duplicates} segment(s) scored more than once "
                           "across ranks; the evaluation stream must split segments")
    heads = [k for part in parts for k in part[1]]
    merged_logits = {h: np.concatenate([p[1][h] for p in parts if h in p[1]])
                     for h in dict.fromkeys(heads)}
    keys = [k for part in parts for k in part[2]]
    merged_labels = {k: np.concatenate([p[2][k] for p in parts if k in p[2]])
                     for k in dict.fromkeys(keys)}
    return all_ids, merged_logits, merged_labels


def _keep(rows: tuple, ids: list, logits: dict, labels: dict,
          progress: SegmentProgress | None) -> None:
    """Appends finished segment rows to this rank's lists."""
    if not rows[0]:
        return
    ids.extend(rows[0])
    for head, value in rows[1].items():
        logits.setdefault(head, []).append(value)
    for key, value in rows[2].items():
        labels.setdefault(key, []).append(value)
    if progress is not None:
        progress.update(len(rows[0]))

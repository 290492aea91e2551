"""Prediction over an evaluation stream: one row per segment, gathered over ranks."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

from fpar.data.batch import prepare_batch
from fpar.engine import distributed

LABEL_KEYS = ("verb", "noun", "class")


@torch.no_grad()
def predict(forward: Callable[[dict], object], batches: Iterable[dict], device: torch.device,
            dtype: torch.dtype = torch.float32, ms_tally=None):
    """Runs ``forward`` over this rank's batches and gathers every rank's rows.

    Args:
        forward: ``batch -> ModelOutput`` (the model in eval mode).
        batches: This rank's evaluation batches (``segment_id`` plus inputs and labels).
        device: Where the model runs.
        dtype: Floating dtype of the model's inputs.
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
        ids.extend(str(s) for s in batch["segment_id"])
        for head, value in output.logits.items():
            logits.setdefault(head, []).append(value.float().cpu().numpy())
        for key in LABEL_KEYS:
            if key in batch:
                labels.setdefault(key, []).append(np.asarray(batch[key].cpu(), dtype=np.int64))
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

"""EPIC-KITCHENS-55 and -100 metrics: action scoring and the official measures.

Action scores follow the official tools: each task's scores go through a softmax, each
task keeps its top 100 classes, every kept pair gets p(v, n) = p(v) p(n) and the 100 most
probable pairs are the ranked actions. Ties rank the lower action id first (verb-major, so
the same for EPIC-55's ``verb*352+noun`` and EPIC-100's ``verb*1000+noun``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

import numpy as np

from fpar.evaluation.classification import (
    macro_precision_recall,
    ranked_classes,
    softmax,
    top1_predictions,
    topk_accuracy,
)
from shards.datasets import get_dataset

ACTION_TOP_N = 100
# Rows per block when forming the (top verbs x top nouns) products: bounds memory to a
# few tens of MB whatever the number of segments.
_CHUNK = 256


@dataclass
class ActionRanking:
    """The ranked actions of each segment, best first: arrays of shape (N, K)."""

    verbs: np.ndarray
    nouns: np.ndarray
    probs: np.ndarray

    def ids(self, fmt: str) -> np.ndarray:
        """The official action ids (``verb * stride + noun``) of the ranked actions."""
        return action_id(self.verbs, self.nouns, fmt)


def action_id(verbs: np.ndarray, nouns: np.ndarray, fmt: str) -> np.ndarray:
    """Encodes (verb, noun) pairs as the official action id of dataset ``fmt``
    (``verb * action_noun_stride + noun``: 352 on EPIC-55, 1000 on EPIC-100)."""
    stride = get_dataset(fmt).action_noun_stride
    return np.asarray(verbs, dtype=np.int64) * stride + np.asarray(nouns, dtype=np.int64)


def _top_sorted_by_id(probs: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` best classes per row (ties: lower id), listed in increasing class id."""
    return np.sort(ranked_classes(probs, n), axis=1)


def _order_candidates(products: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Orders rows holding exactly ``k`` candidates: best first, ties by position."""
    positions = np.nonzero(candidates)[1].reshape(-1, k)
    values = np.take_along_axis(products, positions, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(positions, order, axis=1)


def _rank_block(products: np.ndarray, k: int) -> np.ndarray:
    """Flat positions of the ``k`` largest products per row, best first, ties by position.

    Positions are in increasing action id, so the tie rule is "lower action id first".
    A partition finds each row's k-th largest value; rows with exactly k candidates at or
    above it (the usual case) need only a sort of those k, the rest a full sort.
    """
    rows, size = products.shape
    kth = np.partition(products, size - k, axis=1)[:, size - k]
    candidates = products >= kth[:, None]
    exact = np.count_nonzero(candidates, axis=1) == k
    if exact.all():  # the usual case: no copy of the block
        return _order_candidates(products, candidates, k)
    out = np.empty((rows, k), dtype=np.int64)
    if exact.any():
        out[exact] = _order_candidates(products[exact], candidates[exact], k)
    for row in np.flatnonzero(~exact):
        out[row] = np.argsort(-products[row], kind="stable")[:k]
    return out


def rank_actions(
    verb_scores: np.ndarray, noun_scores: np.ndarray, top_n: int = ACTION_TOP_N
) -> ActionRanking:
    """Ranks actions from verb and noun scores as the official EPIC tools do.

    Args:
        verb_scores: (N, V) raw verb scores (logits or probabilities).
        noun_scores: (N, C) raw noun scores.
        top_n: How many verbs, nouns and actions are kept (clipped to what exists).

    Returns:
        The ``min(top_n, V', C')``-long ranked action lists, with their probabilities.
    """
    n = len(verb_scores)
    p_verb, p_noun = softmax(verb_scores), softmax(noun_scores)
    keep_v = min(top_n, p_verb.shape[1])
    keep_n = min(top_n, p_noun.shape[1])
    k = min(top_n, keep_v * keep_n)
    verbs = np.empty((n, k), dtype=np.int64)
    nouns = np.empty((n, k), dtype=np.int64)
    probs = np.empty((n, k), dtype=np.float64)
    for start in range(0, n, _CHUNK):
        block = slice(start, min(start + _CHUNK, n))
        top_v = _top_sorted_by_id(p_verb[block], keep_v)
        top_n_ids = _top_sorted_by_id(p_noun[block], keep_n)
        pv = np.take_along_axis(p_verb[block], top_v, axis=1)
        pn = np.take_along_axis(p_noun[block], top_n_ids, axis=1)
        products = (pv[:, :, None] * pn[:, None, :]).reshape(len(pv), -1)
        flat = _rank_block(products, k)
        verbs[block] = np.take_along_axis(top_v, flat // keep_n, axis=1)
        nouns[block] = np.take_along_axis(top_n_ids, flat % keep_n, axis=1)
        probs[block] = np.take_along_axis(products, flat, axis=1)
    return ActionRanking(verbs, nouns, probs)


def action_topk_accuracy(
    ranking: ActionRanking, verb_labels: np.ndarray, noun_labels: np.ndarray, ks: Sequence[int] = (1, 5)
) -> dict[int, float]:
    """Percent of segments whose true (verb, noun) is among the first k ranked actions."""
    if len(verb_labels) == 0:
        return {k: float("nan") for k in ks}
    hit = (ranking.verbs == np.asarray(verb_labels)[:, None]) & (
        ranking.nouns == np.asarray(noun_labels)[:, None]
    )
    width = hit.shape[1]
    return {k: float(hit[:, : min(k, width)].any(axis=1).mean() * 100.0) for k in ks}


def _task_block(top: dict[int, float], extra: dict | None = None) -> dict[str, float]:
    block = {f"top{k}": v for k, v in top.items()}
    block.update(extra or {})
    return block


def epic55_metrics(
    verb_scores: np.ndarray,
    noun_scores: np.ndarray,
    verb_labels: np.ndarray,
    noun_labels: np.ndarray,
    many_shot: dict[str, Collection],
) -> dict:
    """The EPIC-KITCHENS-55 measures of one test split (S1 or S2).

    Args:
        verb_scores, noun_scores: (N, 125) and (N, 352) scores.
        verb_labels, noun_labels: (N,) true classes.
        many_shot: ``read_many_shot`` output: "verb"/"noun" id sets, "action" (v, n) pairs.

    Returns:
        {"segments": N, "verb"|"noun"|"action": {"top1", "top5", "precision", "recall",
        "many_shot_classes"}} in percent.
    """
    ranking = rank_actions(verb_scores, noun_scores)
    pred_verb, pred_noun = top1_predictions(verb_scores), top1_predictions(noun_scores)
    result: dict = {"segments": int(len(verb_labels))}
    for task, scores, labels, preds in (
        ("verb", verb_scores, verb_labels, pred_verb),
        ("noun", noun_scores, noun_labels, pred_noun),
    ):
        p, r, used = macro_precision_recall(labels, preds, many_shot[task])
        result[task] = _task_block(
            topk_accuracy(scores, labels), {"precision": p, "recall": r, "many_shot_classes": used}
        )
    true_action = action_id(verb_labels, noun_labels, "epic55")
    many_shot_actions = [int(action_id(v, n, "epic55")) for v, n in many_shot["action"]]
    p, r, used = macro_precision_recall(true_action, ranking.ids("epic55")[:, 0], many_shot_actions)
    result["action"] = _task_block(
        action_topk_accuracy(ranking, verb_labels, noun_labels),
        {"precision": p, "recall": r, "many_shot_classes": used},
    )
    return result


def epic100_metrics(
    verb_scores: np.ndarray,
    noun_scores: np.ndarray,
    verb_labels: np.ndarray,
    noun_labels: np.ndarray,
    participants: np.ndarray,
    unseen_participants: Collection[str],
    tail: dict[str, Collection[int]],
) -> dict:
    """The EPIC-KITCHENS-100 action recognition measures of one labelled split.

    "overall": top-1/top-5 of verb, noun and action over every segment; "unseen": top-1
    over the segments of unseen participants; "tail": top-1 per task over the segments
    whose class is a tail class (for actions: whose verb or noun is a tail class).

    Returns:
        {"segments", "overall": {task: {top1, top5}}, "unseen": {"segments", task: {top1}},
        "tail": {task: {"segments", "top1"}}}, accuracies in percent.
    """
    verb_labels = np.asarray(verb_labels)
    noun_labels = np.asarray(noun_labels)
    ranking = rank_actions(verb_scores, noun_scores)

    def accuracies(mask: np.ndarray, ks: Sequence[int]) -> dict[str, dict]:
        return {
            "verb": _task_block(topk_accuracy(verb_scores[mask], verb_labels[mask], ks)),
            "noun": _task_block(topk_accuracy(noun_scores[mask], noun_labels[mask], ks)),
            "action": _task_block(
                action_topk_accuracy(
                    ActionRanking(ranking.verbs[mask], ranking.nouns[mask], ranking.probs[mask]),
                    verb_labels[mask],
                    noun_labels[mask],
                    ks,
                )
            ),
        }

    everything = np.ones(len(verb_labels), dtype=bool)
    unseen = np.isin(np.asarray(participants).astype(str), list(unseen_participants))
    tail_verb = np.isin(verb_labels, list(tail["verb"]))
    tail_noun = np.isin(noun_labels, list(tail["noun"]))
    tail_masks = {"verb": tail_verb, "noun": tail_noun, "action": tail_verb | tail_noun}
    tail_result = {}
    for task, mask in tail_masks.items():
        tail_result[task] = {"segments": int(mask.sum()), **accuracies(mask, (1,))[task]}
    return {
        "segments": int(len(verb_labels)),
        "overall": accuracies(everything, (1, 5)),
        "unseen": {"segments": int(unseen.sum()), **accuracies(unseen, (1,))},
        "tail": tail_result,
    }

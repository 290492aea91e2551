"""Hand-computed cases for the classification measures and EPIC action scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fpar.evaluation.classification import (
    confusion_matrix,
    label_rank,
    macro_precision_recall,
    mean_class_accuracy,
    ranked_classes,
    softmax,
    top1_predictions,
    topk_accuracy,
)
from fpar.evaluation.epic_metrics import (
    action_topk_accuracy,
    epic55_metrics,
    epic100_metrics,
    rank_actions,
)


def test_ties_rank_the_lower_class_id_first():
    scores = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    assert ranked_classes(scores).tolist() == [[1, 2, 0, 3], [0, 1, 2, 3]]
    assert top1_predictions(scores).tolist() == [1, 0]
    # Label 2 ties with class 1 for the best score but loses the tie.
    assert label_rank(scores, np.array([2, 3])).tolist() == [1, 3]
    top = topk_accuracy(scores, np.array([2, 3]), ks=(1, 2, 4))
    assert top == {1: 0.0, 2: 50.0, 4: 100.0}


def test_topk_clips_k_to_the_number_of_classes():
    scores = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    labels = np.array([0, 2])  # ranked last in both rows
    assert topk_accuracy(scores, labels, ks=(1, 5)) == {1: 0.0, 5: 100.0}


def test_mean_class_accuracy_leaves_out_classes_absent_from_the_ground_truth():
    labels = np.array([0, 0, 1, 1, 1])
    preds = np.array([0, 3, 1, 1, 1])
    cm = confusion_matrix(labels, preds, 4)
    assert cm.tolist() == [[1, 0, 0, 1], [0, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    # Recall 1/2 and 3/3 over the two present classes; 2 and 3 never occur.
    assert mean_class_accuracy(cm) == pytest.approx(75.0)


def test_macro_precision_recall_over_listed_classes_present():
    labels = np.array([0, 0, 1, 2])
    preds = np.array([0, 1, 1, 1])
    # Class 0: P 1/1, R 1/2. Class 1: P 1/3, R 1/1. Class 3 is listed but absent.
    p, r, used = macro_precision_recall(labels, preds, {0, 1, 3})
    assert (p, r, used) == (pytest.approx(200 / 3), pytest.approx(75.0), 2)
    # A present class never predicted has precision 0 (and recall 0).
    labels = np.array([0, 0, 1, 2, 4])
    preds = np.array([0, 1, 1, 1, 0])
    p, r, used = macro_precision_recall(labels, preds, {0, 1, 4})
    assert used == 3
    assert p == pytest.approx((0.5 + 1 / 3 + 0) / 3 * 100)
    assert r == pytest.approx((0.5 + 1 + 0) / 3 * 100)
    assert math.isnan(macro_precision_recall(labels, preds, {7})[0])


def test_action_scores_by_hand():
    # p(verb) = [1, 2, 3] / 6 and p(noun) = [0.2, 0.8] after the softmax.
    verb = np.log(np.array([[1.0, 2.0, 3.0]]))
    noun = np.log(np.array([[1.0, 4.0]]))
    ranking = rank_actions(verb, noun)
    pairs = list(zip(ranking.verbs[0].tolist(), ranking.nouns[0].tolist()))
    assert pairs == [(2, 1), (1, 1), (0, 1), (2, 0), (1, 0), (0, 0)]
    expected = [0.4, 2 / 6 * 0.8, 1 / 6 * 0.8, 0.1, 2 / 6 * 0.2, 1 / 6 * 0.2]
    assert ranking.probs[0] == pytest.approx(expected)
    assert ranking.ids("epic55")[0, 0] == 2 * 352 + 1
    assert ranking.ids("epic100")[0, 0] == 2 * 1000 + 1
    # Six actions: top-5 misses only the last one.
    top = action_topk_accuracy(ranking, np.array([0]), np.array([0]), ks=(1, 5, 10))
    assert top == {1: 0.0, 5: 0.0, 10: 100.0}
    top = action_topk_accuracy(ranking, np.array([1]), np.array([0]), ks=(1, 5))
    assert top == {1: 0.0, 5: 100.0}


def test_tied_actions_rank_the_lower_action_id_first():
    verb = np.array([[1.0, 2.0, 2.0]])
    noun = np.array([[0.0, 0.0]])
    ranking = rank_actions(verb, noun)
    pairs = list(zip(ranking.verbs[0].tolist(), ranking.nouns[0].tolist()))
    assert pairs == [(1, 0), (1, 1), (2, 0), (2, 1), (0, 0), (0, 1)]


def test_only_the_top_100_verbs_and_nouns_form_actions():
    verb = np.tile(np.arange(125, dtype=float)[::-1], (1, 1))  # verb 0 best, 124 worst
    noun = np.zeros((1, 352))
    ranking = rank_actions(verb, noun)
    assert ranking.verbs.shape == (1, 100)
    assert ranking.verbs.max() < 100
    # Every noun ties, so the lowest noun ids come first with the best verb.
    assert ranking.verbs[0, :100].tolist() == [0] * 100
    assert ranking.nouns[0, :100].tolist() == list(range(100))


def test_action_ranking_matches_a_full_sort_with_many_ties():
    rng = np.random.default_rng(3)
    verb = rng.integers(0, 3, (40, 125)).astype(float)  # integer scores: ties everywhere
    noun = rng.integers(0, 3, (40, 352)).astype(float)
    noun[::7] = rng.standard_normal((6, 352))  # and some rows without ties
    ranking = rank_actions(verb, noun)
    pv, pn = softmax(verb), softmax(noun)
    for i in range(len(verb)):
        top_v = np.sort(np.argsort(-pv[i], kind="stable")[:100])
        top_n = np.sort(np.argsort(-pn[i], kind="stable")[:100])
        products = np.outer(pv[i, top_v], pn[i, top_n]).ravel()
        order = np.argsort(-products, kind="stable")[:100]
        assert ranking.verbs[i].tolist() == top_v[order // 100].tolist()
        assert ranking.nouns[i].tolist() == top_n[order % 100].tolist()


def _one_hot(labels: np.ndarray, classes: int, strength: float = 5.0) -> np.ndarray:
    return np.eye(classes)[labels] * strength


def test_epic55_metrics_small_case():
    verbs = np.array([0, 1, 1, 2])
    nouns = np.array([5, 5, 6, 7])
    verb_scores = _one_hot(np.array([0, 1, 0, 2]), 125)  # third verb wrong
    noun_scores = _one_hot(nouns, 352)
    many_shot = {"verb": {0, 1, 50}, "noun": {5, 6}, "action": {(1, 5), (1, 6), (9, 9)}}
    m = epic55_metrics(verb_scores, noun_scores, verbs, nouns, many_shot)
    assert m["segments"] == 4
    assert m["verb"]["top1"] == 75.0 and m["noun"]["top1"] == 100.0
    assert m["action"]["top1"] == 75.0 and m["action"]["top5"] == 100.0
    # Verbs 0 (P 1/2, R 1) and 1 (P 1, R 1/2); 50 is absent.
    assert m["verb"]["precision"] == pytest.approx(75.0)
    assert m["verb"]["recall"] == pytest.approx(75.0)
    assert m["verb"]["many_shot_classes"] == 2
    # Actions (1,5): P 1, R 1; (1,6): never predicted, P 0, R 0; (9,9) absent.
    assert m["action"]["precision"] == pytest.approx(50.0)
    assert m["action"]["recall"] == pytest.approx(50.0)
    assert m["action"]["many_shot_classes"] == 2


def test_epic100_metrics_unseen_and_tail_subsets():
    verbs = np.array([0, 1, 2, 3])
    nouns = np.array([0, 1, 2, 3])
    verb_scores = _one_hot(np.array([0, 1, 0, 0]), 97)  # segments 2 and 3 wrong verb
    noun_scores = _one_hot(np.array([0, 0, 2, 3]), 300)  # segment 1 wrong noun
    participants = np.array(["P01", "P32", "P32", "P01"])
    m = epic100_metrics(
        verb_scores, noun_scores, verbs, nouns, participants, {"P32"}, {"verb": {2, 3}, "noun": {1}}
    )
    assert m["overall"]["verb"]["top1"] == 50.0
    assert m["overall"]["noun"]["top1"] == 75.0
    assert m["overall"]["action"]["top1"] == 25.0
    assert m["unseen"]["segments"] == 2
    assert m["unseen"]["verb"]["top1"] == 50.0 and m["unseen"]["noun"]["top1"] == 50.0
    assert m["unseen"]["action"]["top1"] == 0.0
    assert m["tail"]["verb"] == {"segments": 2, "top1": 0.0}
    assert m["tail"]["noun"] == {"segments": 1, "top1": 0.0}
    # Tail actions: a tail verb or a tail noun (segments 1, 2, 3).
    assert m["tail"]["action"] == {"segments": 3, "top1": 0.0}

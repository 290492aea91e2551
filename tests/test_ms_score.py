"""The MS head's score against known answers: a perfect predictor, all static, the training
frequency, regression errors, and tallies merged over ranks or read back from JSON."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fpar.evaluation.ms_score import CellTally, confusion_scores, ms_scores
from fpar.models.losses import ms_target


def motion_batch(seed: int, b: int = 3, t: int = 4, side: int = 16) -> torch.Tensor:
    """(B, T, side, side) moving fractions: a moving block in the lower-left quarter, more
    often than elsewhere, so a per-cell frequency has something to find."""
    gen = torch.Generator().manual_seed(seed)
    motion = (torch.rand(b, t, side, side, generator=gen) < 0.05).float()
    motion[:, :, side // 2:, :side // 2] = (torch.rand(b, t, 1, 1, generator=gen) < 0.8).float()
    return motion


def logits_for(moving: torch.Tensor) -> torch.Tensor:
    """Classification logits (B, T, 2, s, s) that predict exactly ``moving``."""
    one = moving.float()
    return torch.stack([1.0 - one, one], dim=2)


def test_perfect_predictor_scores_one_and_all_static_zero():
    tally = CellTally(4, "classification", 0.5)
    motion = motion_batch(0)
    tally.add(motion, logits_for(ms_target(motion, 4, 0.5)))
    train = CellTally(4, "classification", 0.5)
    train.add(motion_batch(1))
    scores = ms_scores(tally, train)
    assert scores["head"]["f1"] == pytest.approx(1.0)
    assert scores["head"]["iou"] == pytest.approx(1.0)
    assert scores["all_static"] == {"f1": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}
    assert 0.0 < scores["moving_share"] < 1.0


def test_head_predicting_all_static_scores_like_the_all_static_predictor():
    tally = CellTally(4, "classification", 0.5)
    motion = motion_batch(2)
    tally.add(motion, logits_for(torch.zeros(3, 4, 4, 4)))
    train = CellTally(4, "classification", 0.5)
    train.add(motion_batch(3))
    scores = ms_scores(tally, train)
    assert scores["head"] == scores["all_static"]
    assert scores["head"]["f1"] == 0.0


def test_counts_by_hand_and_training_frequency():
    # 2 frames of 2x2 cells (maps already at the head's side: area averaging is the identity).
    motion = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]]])
    pred = torch.tensor([[[[1, 1], [0, 0]], [[1, 0], [0, 0]]]])
    tally = CellTally(2, "classification", 0.5)
    tally.add(motion, logits_for(pred))
    # tp: (0,0) twice; fp: (0,1) in frame 0; fn: (1,0) in frame 0, (0,1) in frame 1.
    expected = confusion_scores(2, 1, 2, 3)
    assert expected["f1"] == pytest.approx(4 / 7)
    assert expected["iou"] == pytest.approx(2 / 5)
    train = CellTally(2, "classification", 0.5)
    # Training: cell (0,0) always moves, (1,1) never, the others once in four frames.
    train.add(torch.tensor([[[[1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]],
                             [[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]]))
    scores = ms_scores(tally, train)
    assert scores["head"]["f1"] == pytest.approx(expected["f1"])
    # On training, "moving at (0,0)" has F1 2*4/(2*4+0+2) = 0.8 and beats adding the
    # 1-in-4 cells (2*6/(2*6+6+0) = 0.67): the prior marks (0,0) alone.
    freq = scores["train_frequency"]
    assert freq["cells_moving"] == 1 and freq["threshold"] == pytest.approx(1.0)
    # On the test frames (0,0) moves twice, 2 more cells move: tp 2, fp 0, fn 2.
    assert freq["f1"] == pytest.approx(confusion_scores(2, 0, 2, 4)["f1"])
    # Off the prior's cell (0,0) the head has fp (0,1) in frame 0 and misses (1,0) in frame 0
    # and (0,1) in frame 1: nothing found there, where half of the moving cells are.
    assert scores["head_beyond_prior"] == {**confusion_scores(0, 1, 2, 3),
                                           "moving_share_of_all": 0.5}
    # The head says "moving" at (0,0) as the prior does, and differs once, at (0,1).
    assert scores["head_agrees_with_prior"] == pytest.approx(7 / 8)


def test_a_head_that_learnt_the_prior_finds_nothing_beyond_it_and_a_perfect_one_all():
    train = CellTally(4, "classification", 0.5)
    train.add(motion_batch(8, b=8))
    test_motion = motion_batch(9, b=8)
    test_motion[::2, :, :4, -4:] = 1.0  # a cell the training split never saw moving
    prior_only = CellTally(4, "classification", 0.5)
    mask = torch.from_numpy(_prior_mask(train))
    prior_only.add(test_motion, logits_for(mask.expand(8, 4, 4, 4)))
    scores = ms_scores(prior_only, train)
    assert scores["head_agrees_with_prior"] == 1.0
    assert scores["head"]["f1"] == pytest.approx(scores["train_frequency"]["f1"])
    beyond = scores["head_beyond_prior"]
    assert beyond["f1"] == 0.0 and beyond["recall"] == 0.0
    assert 0.0 < beyond["moving_share_of_all"] < 1.0  # the prior misses some motion
    perfect = CellTally(4, "classification", 0.5)
    perfect.add(test_motion, logits_for(ms_target(test_motion, 4, 0.5)))
    assert ms_scores(perfect, train)["head_beyond_prior"]["f1"] == pytest.approx(1.0)
    assert ms_scores(perfect, train)["head_agrees_with_prior"] < 1.0


def _prior_mask(train: CellTally) -> np.ndarray:
    from fpar.evaluation.ms_score import frequency_mask

    return frequency_mask(train)[0]


def test_the_threshold_applies_to_the_area_averaged_fraction():
    motion = torch.zeros(1, 1, 4, 4)
    motion[0, 0, :2, :2] = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # 0.75 of cell (0,0)
    for tau, moving in ((0.5, 1.0), (0.8, 0.0)):
        tally = CellTally(2, "classification", tau)
        tally.add(motion)
        assert tally.moving[0, 0] == moving and tally.moving.sum() == moving


def test_regression_errors_of_the_head_and_the_trivial_predictors():
    motion = motion_batch(4)
    target = ms_target(motion, 4, 0.5, "regression")
    tally = CellTally(4, "regression", 0.5)
    tally.add(motion, target)  # a perfect regression head
    train = CellTally(4, "regression", 0.5)
    train_motion = motion_batch(5)
    train.add(train_motion)
    scores = ms_scores(tally, train)
    assert scores["head"]["mse"] == pytest.approx(0.0, abs=1e-12)
    assert scores["all_static"]["mse"] == pytest.approx(float((target ** 2).mean()))
    mean = ms_target(train_motion, 4, 0.5, "regression").flatten(0, 1).mean(0)
    assert scores["train_frequency"]["mse"] == pytest.approx(float(((target - mean) ** 2).mean()))


def test_merged_and_reloaded_tallies_score_like_one_pass():
    motion = motion_batch(6, b=4)
    pred = logits_for(ms_target(motion_batch(7, b=4), 4, 0.5))
    whole = CellTally(4, "classification", 0.5)
    whole.add(motion, pred)
    first, second = CellTally(4, "classification", 0.5), CellTally(4, "classification", 0.5)
    first.add(motion[:2], pred[:2])
    second.add(motion[2:], pred[2:])
    first.merge(CellTally.from_json(second.to_json()))
    assert first.frames == whole.frames == 16
    np.testing.assert_array_equal(first.moving, whole.moving)
    assert first.head == whole.head
    np.testing.assert_array_equal(first.head_cells, whole.head_cells)
    # A tally written before per-cell counts were kept still scores, without the extra figures.
    old = whole.to_json()
    del old["head_cells"]
    scores = ms_scores(CellTally.from_json(old), whole)
    assert scores["head"] == ms_scores(whole, whole)["head"]
    assert "head_beyond_prior" not in scores


def test_bad_tallies_are_refused():
    with pytest.raises(ValueError, match="ms_x.json"):
        CellTally.from_json({"side": 2}, "ms_x.json")
    with pytest.raises(ValueError, match="differ"):
        ms_scores(CellTally(2, "classification", 0.5), CellTally(4, "classification", 0.5))
    with pytest.raises(ValueError, match="side"):
        CellTally(2, "classification", 0.5).add(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 4, 4))

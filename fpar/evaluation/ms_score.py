"""The MS head's own score: how well it predicts which cells move, against trivial predictors.

The head's prediction is scored at its own resolution against the targets training uses
(:func:`fpar.models.losses.ms_target`: the same crop, area averaging and ``ms_tau``). A
classification head is scored by per-cell F1 and IoU of "moving"; a regression head by the
mean squared error of the moving fraction. Two predictors that look at no frame set the bar:
``all_static`` (nothing moves) and ``train_frequency`` (each cell's moving frequency in the
training split: for classification "moving" where that frequency reaches the threshold that
maximises F1 on the training split, so it also covers "everything moves"; for regression the
cell's mean fraction). Both follow from per-cell sums, which is what a pass collects.

A classification head is also scored where the training-frequency predictor says "static"
(``head_beyond_prior``): a head that has learnt only where things usually move scores 0
there, one that reads the frame finds the motion the prior misses. ``head_agrees_with_prior``
is the share of cell decisions in which the head says what that predictor says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fpar.models.losses import ms_target

@dataclass
class CellTally:
    """Per-cell sums over frames of one split at one resolution, and the head's confusion.

    ``moving``: per cell, frames whose target is moving (classification) or the summed
    moving fraction (regression); ``squares``: the summed squared fraction (regression).
    ``head``: ``tp, fp, fn, tn`` (classification) or the summed squared error (regression),
    None while no prediction was added; ``head_cells``: (side, side, 4) ``tp, fp, fn, tn`` per
    cell (classification; None in tallies written before it was kept).
    """

    side: int
    kind: str
    tau: float
    frames: int = 0
    moving: np.ndarray = field(default=None)
    squares: np.ndarray = field(default=None)
    head: list[float] | None = None
    head_cells: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.moving is None:
            self.moving = np.zeros((self.side, self.side), np.float64)
        if self.squares is None:
            self.squares = np.zeros((self.side, self.side), np.float64)

    def add(self, motion: torch.Tensor, prediction: torch.Tensor | None = None) -> None:
        """Adds a batch: ``motion`` (B, T, h, w) in [0, 1]; ``prediction`` the head's output
        (classification (B, T, 2, s, s) logits, regression (B, T, s, s)) or None."""
        target = ms_target(motion.float(), self.side, self.tau, self.kind).double()
        flat = target.flatten(0, 1)
        self.frames += int(flat.shape[0])
        self.moving += flat.sum(0).cpu().numpy()
        self.squares += (flat ** 2).sum(0).cpu().numpy()
        if prediction is None:
            return
        if prediction.shape[-1] != self.side:
            raise ValueError(f"MS prediction side {prediction.shape[-1]} != {self.side}")
        if self.kind == "classification":
            pred = prediction.flatten(0, 1).argmax(dim=1).cpu().bool()
            truth = flat.cpu().bool()
            cells = torch.stack([(pred & truth).sum(0), (pred & ~truth).sum(0),
                                 (~pred & truth).sum(0), (~pred & ~truth).sum(0)], -1).numpy()
            self.head_cells = cells.astype(np.float64) + (
                0 if self.head_cells is None else self.head_cells)
            add = [float(c) for c in cells.sum((0, 1))]
        else:
            add = [float(((prediction.flatten(0, 1).double().cpu() - flat.cpu()) ** 2).sum())]
        self.head = add if self.head is None else [a + b for a, b in zip(self.head, add)]

    def merge(self, other: "CellTally") -> None:
        """Adds another rank's tally of the same resolution."""
        self.frames += other.frames
        self.moving += other.moving
        self.squares += other.squares
        if other.head is not None:
            self.head = other.head if self.head is None else [
                a + b for a, b in zip(self.head, other.head)]
        if other.head_cells is not None:
            self.head_cells = other.head_cells + (
                0 if self.head_cells is None else self.head_cells)

    def to_json(self) -> dict[str, Any]:
        return {"side": self.side, "kind": self.kind, "tau": self.tau, "frames": self.frames,
                "moving": self.moving.tolist(), "squares": self.squares.tolist(),
                "head": self.head,
                "head_cells": None if self.head_cells is None else self.head_cells.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "MS tally") -> "CellTally":
        try:
            tally = cls(int(data["side"]), str(data["kind"]), float(data["tau"]),
                        int(data["frames"]), np.asarray(data["moving"], np.float64),
                        np.asarray(data["squares"], np.float64), data.get("head"))
            if data.get("head_cells") is not None:
                tally.head_cells = np.asarray(data["head_cells"], np.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where}: not an MS tally ({err})") from None
        if tally.moving.shape != (tally.side, tally.side):
            raise ValueError(f"{where}: 'moving' is not {tally.side}x{tally.side}")
        if tally.head_cells is not None and tally.head_cells.shape != (tally.side, tally.side, 4):
            raise ValueError(f"{where}: 'head_cells' is not {tally.side}x{tally.side}x4")
        return tally


def confusion_scores(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    """F1, IoU, precision and recall of "moving" (0 where undefined, e.g. nothing predicted)."""
    def ratio(a: float, b: float) -> float:
        return float(a / b) if b > 0 else 0.0

    return {"f1": ratio(2 * tp, 2 * tp + fp + fn), "iou": ratio(tp, tp + fp + fn),
            "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn)}


def _mask_confusion(mask: np.ndarray, tally: CellTally) -> tuple[float, float, float, float]:
    """Confusion of a fixed per-cell prediction ``mask`` (True = moving) over ``tally``."""
    pos, neg = tally.moving, tally.frames - tally.moving
    return (float(pos[mask].sum()), float(neg[mask].sum()), float(pos[~mask].sum()),
            float(neg[~mask].sum()))


def frequency_mask(train: CellTally) -> tuple[np.ndarray, float]:
    """Cells predicted moving by the training frequency, and the threshold that maximises
    the training split's F1 (ties: the higher threshold)."""
    freq = train.moving / max(train.frames, 1)
    best, best_t = -1.0, 1.0 + 1e-9
    for t in sorted(set(freq.ravel().tolist()), reverse=True):
        if t <= 0:
            continue
        f1 = confusion_scores(*_mask_confusion(freq >= t, train))["f1"]
        if f1 > best:
            best, best_t = f1, t
    return freq >= best_t, float(best_t)


def _beyond_prior(test: CellTally, prior: np.ndarray) -> dict[str, Any]:
    """The head's score on the cells ``prior`` calls static, the share of the test's moving
    cells there, and how often the head's decision equals the prior's."""
    cells = test.head_cells
    predicted_moving = cells[..., 0] + cells[..., 1]
    agree = predicted_moving[prior].sum() + (test.frames - predicted_moving[~prior]).sum()
    return {"head_beyond_prior": {**confusion_scores(*cells[~prior].sum(0).tolist()),
                                  "moving_share_of_all": float(
                                      test.moving[~prior].sum() / max(test.moving.sum(), 1))},
            "head_agrees_with_prior": float(agree / max(test.frames * test.side ** 2, 1))}


def ms_scores(test: CellTally, train: CellTally) -> dict[str, Any]:
    """The head's score on ``test`` next to the trivial predictors built from ``train``."""
    if (test.side, test.kind) != (train.side, train.kind):
        raise ValueError(f"MS tallies differ: test {test.side}/{test.kind}, "
                         f"train {train.side}/{train.kind}")
    cells = test.frames * test.side ** 2
    out: dict[str, Any] = {"side": test.side, "kind": test.kind, "tau": test.tau,
                           "frames": test.frames}
    if test.kind == "classification":
        out["moving_share"] = float(test.moving.sum() / max(cells, 1))
        out["head"] = confusion_scores(*test.head) if test.head is not None else None
        out["all_static"] = confusion_scores(*_mask_confusion(np.zeros_like(test.moving, bool),
                                                              test))
        mask, threshold = frequency_mask(train)
        out["train_frequency"] = {**confusion_scores(*_mask_confusion(mask, test)),
                                  "threshold": threshold, "cells_moving": int(mask.sum())}
        if test.head_cells is not None:
            out.update(_beyond_prior(test, mask))
        return out
    mean = train.moving / max(train.frames, 1)
    # sum over frames of (y - c)^2 = squares - 2 c moving + frames c^2, per cell.
    const_sse = float((test.squares - 2 * mean * test.moving + test.frames * mean ** 2).sum())
    out["moving_share"] = float(test.moving.sum() / max(cells, 1))
    out["head"] = {"mse": test.head[0] / max(cells, 1)} if test.head is not None else None
    out["all_static"] = {"mse": float(test.squares.sum()) / max(cells, 1)}
    out["train_frequency"] = {"mse": const_sse / max(cells, 1)}
    return out


def headline(scores: dict[str, Any]) -> str:
    """One line: the head's F1 (or MSE) and the trivial predictors'."""
    key = "f1" if scores["kind"] == "classification" else "mse"
    head = scores["head"][key] if scores["head"] is not None else None
    beyond = scores.get("head_beyond_prior")
    return (f"MS {key} head {'-' if head is None else f'{head:.3f}'}, all static "
            f"{scores['all_static'][key]:.3f}, training frequency "
            f"{scores['train_frequency'][key]:.3f} ({scores['side']}x{scores['side']} cells, "
            f"{100 * scores['moving_share']:.1f}% moving)"
            + ("" if beyond is None else
               f"; head where that predictor says static: f1 {beyond['f1']:.3f} "
               f"({100 * beyond['moving_share_of_all']:.0f}% of the moving cells are there), "
               f"same call as it on {100 * scores['head_agrees_with_prior']:.1f}% of cells"))


def merge_ranks(tally: CellTally) -> CellTally:
    """Makes ``tally`` every rank's sum (a no-op in one process)."""
    from fpar.engine import distributed

    tallies = distributed.gather_objects(tally)
    if len(tallies) > 1:  # copies of every rank's, this one's included
        for other in tallies[1:]:
            tallies[0].merge(other)
        vars(tally).update(vars(tallies[0]))
    return tally


def new_tally(model_cfg) -> CellTally:
    """An empty tally at the resolution, kind and threshold of a model config's MS head
    (``ms_tap``; for a model without the head, where the head would be)."""
    from fpar.models.config import stage_size

    return CellTally(stage_size(model_cfg.input_size, model_cfg.ms_tap), model_cfg.ms_kind,
                     model_cfg.ms_tau)


def targets_tally(cfg, folder: str | Path, rank: int = 0, world_size: int = 1) -> CellTally:
    """The per-cell target sums of a shard folder, cropped as evaluation crops (every rank's)."""
    from fpar.data import ShardStream
    from fpar.data.batch import prepare_batch

    tally = new_tally(cfg.model)
    stream = ShardStream(cfg.data, str(folder), train=False, rank=rank, world_size=world_size,
                         seed=cfg.seed)
    for batch in stream.eval_batches():
        if "motion" not in batch:
            continue
        tally.add(prepare_batch({"motion": batch["motion"]}, torch.device("cpu"))["motion"])
    return merge_ranks(tally)


def write_ms_file(path: str | Path, test: CellTally, train: CellTally) -> dict[str, Any]:
    """Writes ``{"scores", "test", "train"}`` to ``path``; returns the scores."""
    from shards.files import atomic_write_json

    scores = ms_scores(test, train)
    atomic_write_json(path, {"scores": scores, "test": test.to_json(), "train": train.to_json()})
    return scores


__all__ = ["CellTally", "confusion_scores", "frequency_mask", "headline",
           "merge_ranks", "ms_scores", "new_tally", "targets_tally",
           "write_ms_file"]

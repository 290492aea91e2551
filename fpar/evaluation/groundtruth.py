"""Ground truth for evaluation: which split an annotation file is, and scores matched to it.

Segments are read only through ``shards.annotations``; this module adds what evaluation
needs on top: a split named by its file, and score rows put in ground-truth order with
every segment accounted for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from shards.annotations import LABEL_MISSING, AnnotationError, load_segments
from shards.datasets import get_dataset

# How many offending ids an error message lists.
SHOWN_IDS = 5

class EvaluationError(ValueError):
    """Scores and annotations that cannot be evaluated or submitted together."""


def show_ids(ids: Sequence[str]) -> str:
    """The first few ids, for an error message."""
    ids = list(ids)
    text = ", ".join(repr(str(i)) for i in ids[:SHOWN_IDS])
    return text + (f", ... ({len(ids)} in all)" if len(ids) > SHOWN_IDS else "")


def split_of_file(fmt: str, path: str | Path) -> tuple[Path, str]:
    """The annotation folder and the split that a dataset file holds.

    Args:
        fmt: Dataset format.
        path: A split file under its dataset's own name (e.g. ``EPIC_100_validation.csv``,
            ``EPIC_test_s1_timestamps.csv``, ``test_split2.txt``).

    Raises:
        EvaluationError: If the name is not one of the dataset's split files.
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: annotation file not found")
    known = get_dataset(fmt).split_files
    if not known:
        raise EvaluationError(f"{path}: {fmt} is read from its folder; give the folder, not a file")
    for split, names in known.items():
        if path.name in names:
            return path.parent, split
    names = ", ".join(n for group in known.values() for n in group)
    raise EvaluationError(f"{path}: not a {fmt} split file (expected one of: {names})")


def resolve_splits(
    fmt: str, annotations: str | Path, asked: Sequence[str] | None
) -> tuple[Path, list[str] | None]:
    """The annotation folder and the splits to evaluate (None: the format's defaults).

    A file given as ``annotations`` names its split; asking for another split is an error.
    """
    annotations = Path(annotations)
    if annotations.is_dir():
        return annotations, list(asked) if asked else None
    folder, split = split_of_file(fmt, annotations)
    other = [s for s in asked or () if s != split]
    if other:
        raise EvaluationError(f"{annotations} holds split {split!r}, but {other} was asked for")
    return folder, [split]


def align(ids: Sequence[str], segments: pd.DataFrame, where: str) -> np.ndarray:
    """Score row of each ground-truth segment, in ground-truth order.

    Raises:
        EvaluationError: If some segment has no score (the first few are named).
    """
    row_of = pd.Series(np.arange(len(ids)), index=pd.Index(list(ids), dtype=object))
    wanted = segments["segment_id"].astype(str)
    rows = row_of.reindex(wanted.to_numpy())
    missing = wanted[rows.isna().to_numpy()].tolist()
    if missing:
        raise EvaluationError(f"{where}: {len(missing)} segment(s) have no score: {show_ids(missing)}")
    return rows.to_numpy(dtype=np.int64)


def labelled_segments(
    fmt: str, folder: Path, split: str, root: str | Path | None, label_columns: Sequence[str]
) -> pd.DataFrame:
    """Reads a split and checks every segment carries the labels evaluation needs."""
    segments = load_segments(fmt, folder, split, root=root, require_labels=True)
    for column in label_columns:
        unlabelled = segments["segment_id"][segments[column] == LABEL_MISSING].tolist()
        if unlabelled:
            raise EvaluationError(
                f"{fmt} split {split!r} in {folder}: {len(unlabelled)} segment(s) have no "
                f"{column} label: {show_ids(unlabelled)}"
            )
    return segments


def default_splits(fmt: str, folder: Path, ids: Sequence[str], root: str | Path | None) -> list[str]:
    """The candidate test splits whose every segment is scored (one per distinct set).

    GTEA-61's fixed split and its second LOSO fold hold the same segments; such a
    repeat is evaluated once, under the first name.

    Raises:
        EvaluationError: If no candidate split is completely scored; the message gives
            the best-covered one and its first unscored segments.
    """
    scored = set(ids)
    chosen: list[str] = []
    seen_sets: list[frozenset] = []
    best: tuple[int, str, list[str]] | None = None
    for split in get_dataset(fmt).eval_splits:
        try:
            segment_ids = load_segments(fmt, folder, split, root=root)["segment_id"].astype(str)
        except (AnnotationError, ValueError):
            continue  # this split's file is not in the folder
        members = frozenset(segment_ids)
        missing = [i for i in segment_ids if i not in scored]
        if not missing and members not in seen_sets:
            chosen.append(split)
            seen_sets.append(members)
        covered = len(members) - len(missing)
        if missing and covered and (best is None or covered > best[0]):
            best = (covered, split, missing)
    if chosen:
        return chosen
    if best is None:
        raise EvaluationError(
            f"the scores cover no segment of {fmt} {', '.join(get_dataset(fmt).eval_splits)} in {folder}"
        )
    covered, split, missing = best
    raise EvaluationError(
        f"no {fmt} split is completely scored; {split} lacks {len(missing)} segment(s): "
        f"{show_ids(missing)} (name the split with --split to see all checks)"
    )

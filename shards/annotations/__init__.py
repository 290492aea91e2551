"""Annotation readers: each dataset's own files in, one segment table out.

One module per dataset (``epic55``, ``epic100``, ``gtea61``, ``egtea``) exposes ``SPLITS``,
``NUM_CLASSES``, ``load(source, split, require_labels)``, ``available_splits(source)`` and
``class_names(source)``; the table's columns are in ``table.py``. The functions below read
any registered dataset (``shards.datasets``) by name:

- "epic55": splits "train", "s1" (seen kitchens), "s2" (unseen kitchens);
- "epic100": "train", "validation", "test";
- "egtea": "train_split1|2|3", "test_split1|2|3";
- "gtea61": "train_fixed", "test_fixed" (tests S2), "train_loso1".."4", "test_loso1".."4"
  (fold k tests S{k}); read from frame folders under ``root`` (default: ``annotations``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shards.annotations.table import LABEL_MISSING, SEGMENT_COLUMNS, AnnotationError
from shards.datasets.registry import get_dataset


def splits(fmt: str) -> tuple[str, ...]:
    """Every split name ``fmt`` knows."""
    return get_dataset(fmt).splits


def load_segments(
    fmt: str,
    annotations: str | Path,
    split: str,
    root: str | Path | None = None,
    *,
    require_labels: bool = False,
) -> pd.DataFrame:
    """Reads one split of one dataset into the segment table.

    Args:
        fmt: a registered dataset name ("epic55", "epic100", "gtea61", "egtea", ...).
        annotations: the folder of the dataset's annotation files.
        split: a split name of ``fmt`` (see the module docstring).
        root: frame-folder datasets (GTEA-61): the frame folder root (default: ``annotations``).
        require_labels: raise if the split's file carries no labels (public test files).

    Returns:
        DataFrame with ``SEGMENT_COLUMNS`` first (labels 0-based, -1 when absent),
        then the file's other columns.

    Raises:
        AnnotationError: a missing file or a bad row, naming the file and line.
        ValueError: unknown dataset or split.
    """
    return get_dataset(fmt).load_segments(annotations, split, root, require_labels=require_labels)


def available_splits(fmt: str, annotations: str | Path, root: str | Path | None = None) -> list[str]:
    """The splits of ``fmt`` whose files (or GTEA-61 subject folders) exist."""
    return get_dataset(fmt).available_splits(annotations, root)


def class_names(fmt: str, annotations: str | Path, root: str | Path | None = None) -> dict[str, list[str]]:
    """Class names by id: keys "verb" and "noun" (EPIC), "class" (GTEA-61), all three (EGTEA)."""
    return get_dataset(fmt).class_names(annotations, root)


def num_classes(fmt: str) -> dict[str, int]:
    """The dataset's class counts: the size of each classifier head."""
    return get_dataset(fmt).num_classes


__all__ = [
    "LABEL_MISSING",
    "SEGMENT_COLUMNS",
    "AnnotationError",
    "available_splits",
    "class_names",
    "load_segments",
    "num_classes",
    "splits",
]

"""Annotation readers: each dataset's own files in, one segment table out.

``load_segments(fmt, annotations, split)`` returns a DataFrame whose first columns are
``SEGMENT_COLUMNS`` (see ``table.py``) for fmt in ``FORMATS``:

- "epic55": splits "train", "s1" (seen kitchens), "s2" (unseen kitchens);
- "epic100": "train", "validation", "test";
- "egtea": "train_split1|2|3", "test_split1|2|3";
- "gtea61": "train_fixed", "test_fixed" (tests S2), "train_loso1".."4", "test_loso1".."4"
  (fold k tests S{k}); read from frame folders under ``root`` (default: ``annotations``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shards.annotations import egtea, epic55, epic100, gtea61
from shards.annotations.table import LABEL_MISSING, SEGMENT_COLUMNS, AnnotationError

FORMATS = ("epic55", "epic100", "gtea61", "egtea")
_READERS = {"epic55": epic55, "epic100": epic100, "gtea61": gtea61, "egtea": egtea}
FORMAT_TITLES = {
    "epic55": "EPIC-KITCHENS-55",
    "epic100": "EPIC-KITCHENS-100",
    "gtea61": "GTEA-61",
    "egtea": "EGTEA Gaze+",
}


def _reader(fmt: str):
    if fmt not in _READERS:
        raise ValueError(f"annotation format {fmt!r} unknown; choose from {', '.join(FORMATS)}")
    return _READERS[fmt]


def _source(fmt: str, annotations: str | Path, root: str | Path | None) -> Path:
    """GTEA-61 reads frame folders (``root``, else ``annotations``); the rest read files."""
    if fmt == "gtea61" and root is not None:
        return Path(root)
    return Path(annotations)


def splits(fmt: str) -> tuple[str, ...]:
    """Every split name ``fmt`` knows."""
    return tuple(_reader(fmt).SPLITS)


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
        fmt: "epic55", "epic100", "gtea61" or "egtea".
        annotations: the folder of the dataset's annotation files.
        split: a split name of ``fmt`` (see the module docstring).
        root: GTEA-61 only: the frame folder root (default: ``annotations``).
        require_labels: raise if the split's file carries no labels (public test files).

    Returns:
        DataFrame with ``SEGMENT_COLUMNS`` first (labels 0-based, -1 when absent),
        then the file's other columns.

    Raises:
        AnnotationError: a missing file or a bad row, naming the file and line.
        ValueError: unknown format or split.
    """
    return _reader(fmt).load(_source(fmt, annotations, root), split, require_labels=require_labels)


def available_splits(fmt: str, annotations: str | Path, root: str | Path | None = None) -> list[str]:
    """The splits of ``fmt`` whose files (or GTEA-61 subject folders) exist."""
    return _reader(fmt).available_splits(_source(fmt, annotations, root))


def class_names(
    fmt: str, annotations: str | Path, root: str | Path | None = None
) -> dict[str, list[str]]:
    """Class names by id: keys "verb" and "noun" (EPIC), "class" (GTEA-61), all three (EGTEA)."""
    return _reader(fmt).class_names(_source(fmt, annotations, root))


def num_classes(fmt: str) -> dict[str, int]:
    """The dataset's class counts: the size of each classifier head."""
    return dict(_reader(fmt).NUM_CLASSES)


__all__ = [
    "FORMATS",
    "FORMAT_TITLES",
    "LABEL_MISSING",
    "SEGMENT_COLUMNS",
    "AnnotationError",
    "available_splits",
    "class_names",
    "load_segments",
    "num_classes",
    "splits",
]

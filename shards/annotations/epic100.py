"""EPIC-KITCHENS-100: train/validation labels, test segments, unseen participants, tails.

Splits: "train" (``EPIC_100_train.csv``), "validation" (``EPIC_100_validation.csv``, same
columns) and "test" (``EPIC_100_test_labels.csv`` when present, else the public
``EPIC_100_test_timestamps.csv`` whose labels are -1).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shards.annotations import _epic
from shards.annotations.table import (
    AnnotationError,
    check_range,
    csv_lines,
    parse_int_column,
    read_csv_strings,
    require_file,
)

NUM_CLASSES = {"verb": 97, "noun": 300}
SPLITS = ("train", "validation", "test")
LABELLED_FILES = {"train": "EPIC_100_train.csv", "validation": "EPIC_100_validation.csv"}
TEST_LABELS = "EPIC_100_test_labels.csv"
TEST_TIMESTAMPS = "EPIC_100_test_timestamps.csv"

LAYOUT = _epic.EpicLayout(
    name="EPIC-KITCHENS-100",
    id_column="narration_id",
    video_info="EPIC_100_video_info.csv",
    video_info_column="video_id",
    verb_classes="EPIC_100_verb_classes.csv",
    noun_classes="EPIC_100_noun_classes.csv",
    verb_id_column="id",
    noun_id_column="id",
    class_key_column="key",
    num_classes=NUM_CLASSES,
)


def split_file(annotations: str | Path, split: str) -> Path:
    """The file a split is read from (test: labels preferred over timestamps)."""
    annotations = Path(annotations)
    if split not in SPLITS:
        raise ValueError(f"EPIC-100 split {split!r} unknown; choose from {', '.join(SPLITS)}")
    if split in LABELLED_FILES:
        return require_file(annotations, LABELLED_FILES[split], f"{split} labels")
    if (annotations / TEST_LABELS).is_file():
        return annotations / TEST_LABELS
    return require_file(annotations, TEST_TIMESTAMPS, f"test segments; nor is {TEST_LABELS}")


def available_splits(annotations: str | Path) -> list[str]:
    """The splits whose files exist in ``annotations``."""
    annotations = Path(annotations)
    names = {**{k: [v] for k, v in LABELLED_FILES.items()}, "test": [TEST_LABELS, TEST_TIMESTAMPS]}
    return [s for s in SPLITS if any((annotations / n).is_file() for n in names[s])]


def load(annotations: str | Path, split: str, require_labels: bool = False) -> pd.DataFrame:
    """Reads one EPIC-100 split into the segment table (see ``load_segments``)."""
    annotations = Path(annotations)
    path = split_file(annotations, split)
    return _epic.read_segments(
        LAYOUT,
        annotations,
        path,
        split,
        labelled_format=path.name != TEST_TIMESTAMPS,
        labels_required=require_labels,
    )


def class_names(annotations: str | Path) -> dict[str, list[str]]:
    """Verb (97) and noun (300) class keys by class id."""
    return _epic.class_names(LAYOUT, annotations)


def read_unseen_participants(annotations: str | Path, split: str) -> set[str]:
    """Participants of ``split`` ("validation" or "test") absent from the train set."""
    if split not in ("validation", "test"):
        raise ValueError(f"unseen participants are listed for validation and test, not {split!r}")
    path = require_file(
        annotations, f"EPIC_100_unseen_participant_ids_{split}.csv", "unseen participant ids"
    )
    return set(_epic.read_id_list(path, "participant_id"))


def read_tail_classes(annotations: str | Path) -> dict[str, set[int]]:
    """The tail verb and noun classes (the rare ones the "tail" metrics average over)."""
    result: dict[str, set[int]] = {}
    for key in ("verb", "noun"):
        path = require_file(annotations, f"EPIC_100_tail_{key}s.csv", f"tail {key}s")
        df = read_csv_strings(path, [key])
        lines = csv_lines(len(df))
        ids = parse_int_column(path, df[key], key, lines)
        check_range(path, ids, key, NUM_CLASSES[key], lines)
        result[key] = {int(i) for i in ids}
    return result


__all__ = [
    "AnnotationError",
    "LAYOUT",
    "NUM_CLASSES",
    "SPLITS",
    "available_splits",
    "class_names",
    "load",
    "read_tail_classes",
    "read_unseen_participants",
    "split_file",
]

"""EPIC-KITCHENS-55: train labels, S1/S2 test segments, class tables, many-shot lists.

Splits: "train" (``EPIC_train_action_labels.csv``), "s1" (seen kitchens) and "s2" (unseen
kitchens). The test splits read ``EPIC_test_s{1,2}_labels.csv`` when present (same columns
as the train file; the synthetic kitchens write it) and otherwise the public
``EPIC_test_s{1,2}_timestamps.csv``, whose labels are -1.
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

NUM_CLASSES = {"verb": 125, "noun": 352}
SPLITS = ("train", "s1", "s2")
TRAIN_FILE = "EPIC_train_action_labels.csv"

LAYOUT = _epic.EpicLayout(
    name="EPIC-KITCHENS-55",
    id_column="uid",
    video_info="EPIC_video_info.csv",
    video_info_column="video",
    verb_classes="EPIC_verb_classes.csv",
    noun_classes="EPIC_noun_classes.csv",
    verb_id_column="verb_id",
    noun_id_column="noun_id",
    class_key_column="class_key",
    num_classes=NUM_CLASSES,
)


def _test_files(split: str) -> tuple[str, str]:
    return f"EPIC_test_{split}_labels.csv", f"EPIC_test_{split}_timestamps.csv"


def split_file(annotations: str | Path, split: str) -> Path:
    """The file a split is read from (labels preferred over timestamps for s1/s2)."""
    annotations = Path(annotations)
    if split not in SPLITS:
        raise ValueError(f"EPIC-55 split {split!r} unknown; choose from {', '.join(SPLITS)}")
    if split == "train":
        return require_file(annotations, TRAIN_FILE, "train labels")
    labels, timestamps = _test_files(split)
    if (annotations / labels).is_file():
        return annotations / labels
    return require_file(annotations, timestamps, f"{split} test segments; nor is {labels}")


def available_splits(annotations: str | Path) -> list[str]:
    """The splits whose files exist in ``annotations``."""
    annotations = Path(annotations)
    found = []
    for split in SPLITS:
        names = [TRAIN_FILE] if split == "train" else list(_test_files(split))
        if any((annotations / n).is_file() for n in names):
            found.append(split)
    return found


def load(annotations: str | Path, split: str, require_labels: bool = False) -> pd.DataFrame:
    """Reads one EPIC-55 split into the segment table (see ``load_segments``)."""
    annotations = Path(annotations)
    path = split_file(annotations, split)
    return _epic.read_segments(
        LAYOUT,
        annotations,
        path,
        split,
        labelled_format=not path.name.endswith("_timestamps.csv"),
        labels_required=require_labels,
    )


def class_names(annotations: str | Path) -> dict[str, list[str]]:
    """Verb (125) and noun (352) class keys by class id."""
    return _epic.class_names(LAYOUT, annotations)


def read_many_shot(annotations: str | Path) -> dict[str, set]:
    """The many-shot classes the official precision/recall average over.

    Returns:
        {"verb": set of verb ids, "noun": set of noun ids, "action": set of (verb, noun)}.
    """
    annotations = Path(annotations)
    result: dict[str, set] = {}
    for key in ("verb", "noun"):
        path = require_file(annotations, f"EPIC_many_shot_{key}s.csv", f"many-shot {key}s")
        df = read_csv_strings(path, [f"{key}_class"])
        lines = csv_lines(len(df))
        ids = parse_int_column(path, df[f"{key}_class"], f"{key}_class", lines)
        check_range(path, ids, f"{key}_class", NUM_CLASSES[key], lines)
        result[key] = {int(i) for i in ids}
    path = require_file(annotations, "EPIC_many_shot_actions.csv", "many-shot actions")
    df = read_csv_strings(path, ["verb_class", "noun_class"])
    lines = csv_lines(len(df))
    verbs = parse_int_column(path, df["verb_class"], "verb_class", lines)
    nouns = parse_int_column(path, df["noun_class"], "noun_class", lines)
    check_range(path, verbs, "verb_class", NUM_CLASSES["verb"], lines)
    check_range(path, nouns, "noun_class", NUM_CLASSES["noun"], lines)
    result["action"] = {(int(v), int(n)) for v, n in zip(verbs, nouns)}
    return result


__all__ = [
    "AnnotationError",
    "LAYOUT",
    "NUM_CLASSES",
    "SPLITS",
    "available_splits",
    "class_names",
    "load",
    "read_many_shot",
    "split_file",
]

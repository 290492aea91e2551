"""EPIC-KITCHENS-100 reader on the real annotation files."""

from __future__ import annotations

import csv

import pytest

from shards.annotations import (
    LABEL_MISSING,
    SEGMENT_COLUMNS,
    AnnotationError,
    available_splits,
    class_names,
    load_segments,
    num_classes,
)
from shards.annotations import epic100


@pytest.fixture(scope="module")
def epic100_dir(real_annotations):
    return real_annotations / "epic-kitchens-100"


def test_validation_table(epic100_dir):
    table = load_segments("epic100", epic100_dir, "validation")
    assert list(table.columns[: len(SEGMENT_COLUMNS)]) == SEGMENT_COLUMNS
    assert len(table) == 9_668
    assert table["verb_class"].between(0, 96).all() and table["noun_class"].between(0, 299).all()
    with open(epic100_dir / "EPIC_100_validation.csv", newline="") as fh:
        raw = list(csv.DictReader(fh))
    by_id = table.set_index("segment_id")
    for expected in (raw[0], raw[4_321], raw[-1]):
        got = by_id.loc[expected["narration_id"]]
        assert got["video_id"] == expected["video_id"]
        assert (got["start_frame"], got["stop_frame"]) == (
            int(expected["start_frame"]), int(expected["stop_frame"]))
        assert (got["verb_class"], got["noun_class"]) == (
            int(expected["verb_class"]), int(expected["noun_class"]))
    first = by_id.loc["P01_11_0"]
    assert (first["start_frame"], first["stop_frame"], first["verb_class"], first["noun_class"]) == (
        1, 113, 0, 2)
    assert first["fps"] == pytest.approx(59.94, abs=0.01)
    with open(epic100_dir / "EPIC_100_video_info.csv", newline="") as fh:
        fps = {r["video_id"]: float(r["fps"]) for r in csv.DictReader(fh)}
    assert table["fps"].tolist() == [fps[v] for v in table["video_id"]]


def test_test_split_is_unlabelled(epic100_dir):
    table = load_segments("epic100", epic100_dir, "test")
    assert len(table) == 13_092
    assert (table[["verb_class", "noun_class"]] == LABEL_MISSING).all(axis=None)
    # The test set holds 2020 recordings, 50 fps in the video-info table.
    assert (table["fps"] == 50.0).any()
    with pytest.raises(AnnotationError, match=r"EPIC_100_test_timestamps\.csv, line 1"):
        load_segments("epic100", epic100_dir, "test", require_labels=True)
    assert available_splits("epic100", epic100_dir) == ["validation", "test"]


def test_train_file_absent_is_named(epic100_dir):
    with pytest.raises(AnnotationError) as err:
        load_segments("epic100", epic100_dir, "train")
    assert "EPIC_100_train.csv" in str(err.value) and str(epic100_dir) in str(err.value)


def test_unseen_participants_and_tails(epic100_dir):
    assert epic100.read_unseen_participants(epic100_dir, "validation") == {"P18", "P32"}
    assert {"P33", "P34", "P36"} <= epic100.read_unseen_participants(epic100_dir, "test")
    tails = epic100.read_tail_classes(epic100_dir)
    assert (len(tails["verb"]), len(tails["noun"])) == (86, 228)
    assert {10, 12, 13} <= tails["verb"] and {56, 59, 61} <= tails["noun"]
    assert all(isinstance(v, int) for v in tails["verb"])
    with pytest.raises(ValueError):
        epic100.read_unseen_participants(epic100_dir, "train")


def test_class_tables(epic100_dir):
    names = class_names("epic100", epic100_dir)
    assert (len(names["verb"]), len(names["noun"])) == (97, 300)
    assert names["verb"][:3] == ["take", "put", "wash"]
    assert names["noun"][:2] == ["tap", "spoon"]
    assert num_classes("epic100") == {"verb": 97, "noun": 300}

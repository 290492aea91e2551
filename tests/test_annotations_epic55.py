"""EPIC-KITCHENS-55 reader on the real annotation files and on small written ones."""

from __future__ import annotations

import csv
import logging
import random

import numpy as np
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
from shards.annotations import epic55

TRAIN_HEADER = (
    "uid,participant_id,video_id,narration,start_timestamp,stop_timestamp,start_frame,"
    "stop_frame,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes"
)


@pytest.fixture(scope="module")
def epic55_dir(real_annotations):
    return real_annotations / "epic-kitchens-55"


@pytest.fixture(scope="module")
def train(epic55_dir):
    """The 28k-row train table, read once for the module."""
    return load_segments("epic55", epic55_dir, "train")


def test_train_table_shape_and_types(train):
    assert list(train.columns[: len(SEGMENT_COLUMNS)]) == SEGMENT_COLUMNS
    assert len(train) == 28_472
    assert train["video_id"].nunique() == 272
    assert train["participant"].nunique() == 28
    assert (train["split"] == "train").all()
    assert (train["class_id"] == LABEL_MISSING).all()
    assert train["verb_class"].between(0, 124).all() and train["noun_class"].between(0, 351).all()
    assert (train["stop_frame"] >= train["start_frame"]).all()
    for column in ("start_frame", "stop_frame", "verb_class", "noun_class", "class_id"):
        assert train[column].dtype == np.int64, column
    assert isinstance(train["segment_id"].iloc[0], str)
    # Extra columns of the file follow the contract's columns.
    assert {"narration", "verb", "noun", "start_timestamp"} <= set(train.columns)


def test_train_cells_match_raw_file(train, epic55_dir):
    with open(epic55_dir / "EPIC_train_action_labels.csv", newline="") as fh:
        raw = list(csv.DictReader(fh))
    fps = {}
    with open(epic55_dir / "EPIC_video_info.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            fps[row["video"]] = float(row["fps"])
    by_id = train.set_index("segment_id")
    rows = [0, len(raw) - 1, *random.Random(0).sample(range(len(raw)), 20)]
    for i in rows:
        expected = raw[i]
        got = by_id.loc[expected["uid"]]
        assert got["video_id"] == expected["video_id"]
        assert got["participant"] == expected["participant_id"]
        assert got["start_frame"] == int(expected["start_frame"])
        assert got["stop_frame"] == int(expected["stop_frame"])
        assert got["verb_class"] == int(expected["verb_class"])
        assert got["noun_class"] == int(expected["noun_class"])
        assert got["narration"] == expected["narration"]
        assert got["fps"] == pytest.approx(fps[expected["video_id"]])
    first = by_id.loc["0"]
    assert (first["video_id"], first["start_frame"], first["stop_frame"]) == ("P01_01", 8, 202)
    assert (first["verb_class"], first["noun_class"]) == (2, 8)


def test_test_splits_have_no_labels(epic55_dir):
    s1 = load_segments("epic55", epic55_dir, "s1")
    s2 = load_segments("epic55", epic55_dir, "s2")
    assert (len(s1), len(s2)) == (8_047, 2_929)
    assert set(s2["participant"]) == {"P09", "P11", "P18", "P32"}
    for table, split in ((s1, "s1"), (s2, "s2")):
        assert (table[["verb_class", "noun_class", "class_id"]] == LABEL_MISSING).all(axis=None)
        assert (table["split"] == split).all()
    assert s1["segment_id"].iloc[0] == "1924"
    assert available_splits("epic55", epic55_dir) == ["train", "s1", "s2"]


def test_require_labels_on_public_test_file(epic55_dir):
    with pytest.raises(AnnotationError) as err:
        load_segments("epic55", epic55_dir, "s2", require_labels=True)
    assert "EPIC_test_s2_timestamps.csv, line 1" in str(err.value)
    assert "verb_class" in str(err.value)


def test_class_tables_and_many_shot(epic55_dir):
    names = class_names("epic55", epic55_dir)
    assert (len(names["verb"]), len(names["noun"])) == (125, 352)
    assert names["verb"][:3] == ["take", "put", "open"]
    assert names["noun"][1] == "pan"
    assert num_classes("epic55") == {"verb": 125, "noun": 352}
    many = epic55.read_many_shot(epic55_dir)
    assert (len(many["verb"]), len(many["noun"]), len(many["action"])) == (26, 71, 819)
    assert {0, 1, 4} <= many["verb"] and {3, 4, 8} <= many["noun"]
    assert (12, 78) in many["action"] and (9, 84) in many["action"]


def _write(path, header, rows):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_test_labels_file_is_preferred(tmp_path):
    _write(
        tmp_path / "EPIC_test_s1_timestamps.csv",
        "uid,participant_id,video_id,start_timestamp,stop_timestamp,start_frame,stop_frame",
        ["7,P01,P01_05,00:00:00.00,00:00:01.00,1,50"],
    )
    _write(
        tmp_path / "EPIC_test_s1_labels.csv",
        TRAIN_HEADER,
        ["7,P01,P01_05,open tap,00:00:00.00,00:00:01.00,1,50,open,2,tap,3,['tap'],[3]"],
    )
    _write(tmp_path / "EPIC_video_info.csv", "video,resolution,duration,fps", ["P01_05,1x1,9,30"])
    table = load_segments("epic55", tmp_path, "s1", require_labels=True)
    assert table[["segment_id", "verb_class", "noun_class"]].values.tolist() == [["7", 2, 3]]
    assert table["fps"].iloc[0] == 30.0
    assert available_splits("epic55", tmp_path) == ["s1"]


def test_fps_video_missing_from_table_is_named(tmp_path):
    _write(tmp_path / "EPIC_train_action_labels.csv", TRAIN_HEADER,
           ["0,P01,P01_01,x,00:00:00.00,00:00:01.00,1,5,open,2,tap,3,[],[]",
            "1,P02,P02_09,x,00:00:00.00,00:00:01.00,1,5,open,2,tap,3,[],[]"])
    _write(tmp_path / "EPIC_video_info.csv", "video,resolution,duration,fps", ["P01_01,1x1,9,60"])
    with pytest.raises(AnnotationError) as err:
        load_segments("epic55", tmp_path, "train")
    assert "EPIC_video_info.csv" in str(err.value) and "'P02_09'" in str(err.value)
    assert "line 3 of EPIC_train_action_labels.csv" in str(err.value)


def test_fps_table_absent_falls_back_with_warning(tmp_path, caplog):
    _write(tmp_path / "EPIC_train_action_labels.csv", TRAIN_HEADER,
           ["0,P01,P01_01,x,00:00:00.00,00:00:01.00,1,5,open,2,tap,3,[],[]"])
    with caplog.at_level(logging.WARNING):
        table = load_segments("epic55", tmp_path, "train")
    assert table["fps"].tolist() == [60.0]
    assert "EPIC_video_info.csv" in caplog.text

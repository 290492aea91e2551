"""GTEA-61 frame folders: class ids, fixed split and leave-one-subject-out folds."""

from __future__ import annotations

import pytest

from shards.annotations import (
    SEGMENT_COLUMNS,
    AnnotationError,
    available_splits,
    class_names,
    load_segments,
    num_classes,
)

# subject -> class -> {instance: frame count}; "stir_tea" exists only under S3.
TREE = {
    "S1": {"open_jam": {"1": 3, "2": 5}, "close_jam": {"1": 4}},
    "S2": {"open_jam": {"1": 2}, "pour_water": {"1": 6, "10": 2, "2": 7}},
    "S3": {"stir_tea": {"1": 9}, "close_jam": {"1": 1}},
    "S4": {"pour_water": {"3": 4}},
}
CLASSES = ["close_jam", "open_jam", "pour_water", "stir_tea"]


def make_tree(base, tree=TREE, suffix=".png"):
    for subject, classes in tree.items():
        for name, instances in classes.items():
            for instance, frames in instances.items():
                folder = base / subject / name / instance
                folder.mkdir(parents=True)
                for f in range(1, frames + 1):
                    (folder / f"{f:05d}{suffix}").write_bytes(b"")
    return base


@pytest.fixture()
def root(tmp_path):
    return make_tree(tmp_path / "gtea")


def test_fixed_split(root):
    test = load_segments("gtea61", root, "test_fixed")
    train = load_segments("gtea61", root, "train_fixed")
    assert list(test.columns[: len(SEGMENT_COLUMNS)]) == SEGMENT_COLUMNS
    assert set(test["participant"]) == {"S2"}
    assert set(train["participant"]) == {"S1", "S3", "S4"}
    # Instances in natural order: 2 before 10.
    assert test["segment_id"].tolist() == [
        "S2/open_jam/1", "S2/pour_water/1", "S2/pour_water/2", "S2/pour_water/10"]
    assert test["stop_frame"].tolist() == [2, 6, 7, 2]
    assert (test["start_frame"] == 1).all() and (test["fps"] == 24.0).all()
    assert test["class_id"].tolist() == [1, 2, 2, 2]
    assert (test[["verb_class", "noun_class"]] == -1).all(axis=None)
    assert (test["video_id"] == test["segment_id"]).all()
    assert test["frame_dir"].iloc[0] == str(root / "S2" / "open_jam" / "1")


def test_class_ids_span_all_subjects(root):
    # S1 alone lacks pour_water and stir_tea; ids still come from every subject.
    assert class_names("gtea61", root) == {"class": CLASSES}
    s1 = load_segments("gtea61", root, "test_loso1")
    assert dict(zip(s1["class_name"], s1["class_id"])) == {"open_jam": 1, "close_jam": 0}
    assert num_classes("gtea61") == {"class": 61}


def test_loso_folds_partition_the_subjects(root):
    everything = set()
    for k in range(1, 5):
        test = load_segments("gtea61", root, f"test_loso{k}")
        train = load_segments("gtea61", root, f"train_loso{k}")
        assert set(test["participant"]) == {f"S{k}"}
        assert f"S{k}" not in set(train["participant"])
        assert not set(test["segment_id"]) & set(train["segment_id"])
        fold = set(test["segment_id"]) | set(train["segment_id"])
        everything = everything or fold
        assert fold == everything
        assert (test["split"] == f"test_loso{k}").all()
    assert len(everything) == 10
    assert available_splits("gtea61", root) == [
        "train_fixed", "test_fixed", *(f"{kind}_loso{k}" for k in range(1, 5)
                                        for kind in ("train", "test"))]


def test_root_forms(tmp_path):
    # A frames/ subfolder (synthetic kitchens' layout) and rgb/ instance subfolders.
    make_tree(tmp_path / "frames", {"S2": {"wipe": {"1": 0}}})
    rgb = tmp_path / "frames" / "S2" / "wipe" / "1" / "rgb"
    rgb.mkdir()
    for f in range(3):
        (rgb / f"rgb{f:04d}.jpg").write_bytes(b"")
    (rgb / "notes.txt").write_text("not a frame")
    table = load_segments("gtea61", tmp_path / "annotations", "test_fixed", root=tmp_path)
    assert table["stop_frame"].tolist() == [3]
    assert table["frame_dir"].tolist() == [str(rgb)]
    assert available_splits("gtea61", tmp_path) == ["test_fixed", "test_loso2"]


def test_errors_name_the_folder(tmp_path, root):
    with pytest.raises(AnnotationError, match="no subject folder"):
        load_segments("gtea61", tmp_path / "empty", "test_fixed")
    (root / "S4" / "pour_water" / "9").mkdir()
    with pytest.raises(AnnotationError) as err:
        load_segments("gtea61", root, "test_loso4")
    assert str(root / "S4" / "pour_water" / "9") in str(err.value)
    partial = make_tree(tmp_path / "partial", {"S1": TREE["S1"]})
    with pytest.raises(AnnotationError, match="S2"):
        load_segments("gtea61", partial, "test_fixed")

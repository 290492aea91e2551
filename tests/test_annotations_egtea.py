"""EGTEA Gaze+ split files: the real split 1 and small written ones."""

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

CLIP = "OP01-R01-PastaSalad-1000-5000-F000024-F000120"


@pytest.fixture(scope="module")
def egtea_dir(real_annotations):
    return real_annotations / "egtea-gaze-plus"


def test_real_split1_counts_and_cells(egtea_dir):
    train = load_segments("egtea", egtea_dir, "train_split1")
    test = load_segments("egtea", egtea_dir, "test_split1")
    assert (len(train), len(test)) == (8_299, 2_022)
    assert list(train.columns[: len(SEGMENT_COLUMNS)]) == SEGMENT_COLUMNS
    assert not set(train["segment_id"]) & set(test["segment_id"])
    for table in (train, test):
        assert table["class_id"].between(0, 105).all()
        assert table["verb_class"].between(0, 18).all()
        assert table["noun_class"].between(0, 52).all()
        assert (table["fps"] == 24.0).all()
    # 1-based ids in the file -> 0-based in the table, cell by cell for a few lines.
    lines = (egtea_dir / "train_split1.txt").read_text().splitlines()
    by_id = train.set_index("segment_id")
    for text in (lines[0], lines[4_000], lines[-1]):
        clip, action, verb, noun = text.split()
        got = by_id.loc[clip]
        assert (got["class_id"], got["verb_class"], got["noun_class"]) == (
            int(action) - 1, int(verb) - 1, int(noun) - 1)
        session, _, _, start, stop = clip.rsplit("-", 4)
        assert got["video_id"] == session
        assert got["participant"] == session.split("-")[0]
        assert (got["start_frame"], got["stop_frame"]) == (int(start[1:]), int(stop[1:]))
    first = by_id.loc["P21-R04-ContinentalBreakfast-291175-294945-F006979-F007088"]
    assert (first["video_id"], first["participant"]) == ("P21-R04-ContinentalBreakfast", "P21")
    assert (first["start_frame"], first["stop_frame"], first["class_id"]) == (6979, 7088, 0)
    assert (first["start_ms"], first["stop_ms"]) == (291175, 294945)
    assert available_splits("egtea", egtea_dir) == ["train_split1", "test_split1"]


def test_missing_split_file_names_file_and_folder(egtea_dir):
    with pytest.raises(AnnotationError) as err:
        load_segments("egtea", egtea_dir, "test_split3")
    assert "test_split3.txt" in str(err.value) and str(egtea_dir) in str(err.value)


def _split(tmp_path, *lines):
    path = tmp_path / "train_split2.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "bad, expect",
    [
        (f"{CLIP} 1 1", "expected 4 fields"),
        ("OP01-R01-PastaSalad-F1-F9 1 1 1", "clip name"),
        (f"{CLIP} 107 1 1", "class_id: class id 107"),
        (f"{CLIP.replace('F000024', 'F000024x')} 1 1 1", "clip name"),
        (f"{CLIP} 0 1 1", "outside the class table (1..106)"),
        (f"{CLIP} 1 20 1", "verb_class"),
        (f"{CLIP} 1 1 x", "not an integer"),
        ("OP01-R01-PastaSalad-1000-5000-F000120-F000024 1 1 1", "before start_frame"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, bad, expect):
    good = "OP02-R02-TurkeySandwich-0-900-F000001-F000022 3 2 5"
    path = _split(tmp_path, good, "", bad)
    with pytest.raises(AnnotationError) as err:
        load_segments("egtea", tmp_path, "train_split2")
    assert str(err.value).startswith(f"{path}, line 3:")
    assert expect in str(err.value)


def test_small_split_reads(tmp_path):
    _split(tmp_path, f"{CLIP} 106 19 53", "OP01-R01-PastaSalad-6000-7000-F000144-F000168 2 3 4")
    table = load_segments("egtea", tmp_path, "train_split2")
    assert table["class_id"].tolist() == [105, 1]
    assert table["verb_class"].tolist() == [18, 2]
    assert table["noun_class"].tolist() == [52, 3]
    assert table["split"].tolist() == ["train_split2"] * 2
    assert table["participant"].tolist() == ["OP01", "OP01"]


def test_class_names(tmp_path, egtea_dir):
    assert num_classes("egtea") == {"class": 106, "verb": 19, "noun": 53}
    numbered = class_names("egtea", egtea_dir)
    assert numbered["class"][105] == "action_105" and len(numbered["noun"]) == 53
    (tmp_path / "verb_idx.txt").write_text(
        "\n".join(f"verb name {i}" for i in range(19, 0, -1)) + "\n"
    )
    named = class_names("egtea", tmp_path)
    assert named["verb"][0] == "verb name" and len(named["verb"]) == 19
    (tmp_path / "verb_idx.txt").write_text("Take 1\nPut 3\n")
    with pytest.raises(AnnotationError, match="no name for index"):
        class_names("egtea", tmp_path)

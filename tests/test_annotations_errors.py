"""Bad annotation files: every error names the file and the editor line of the bad row."""

from __future__ import annotations

import pytest

from shards.annotations import AnnotationError, load_segments

HEADER = (
    "uid,participant_id,video_id,narration,start_timestamp,stop_timestamp,start_frame,"
    "stop_frame,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes"
)
GOOD = "{uid},P01,P01_01,open tap,00:00:00.00,00:00:01.00,{start},{stop},open,{verb},tap,{noun},['tap'],[3]"


def row(uid, start=1, stop=10, verb=2, noun=3):
    return GOOD.format(uid=uid, start=start, stop=stop, verb=verb, noun=noun)


def write_train(folder, lines, header=HEADER):
    path = folder / "EPIC_train_action_labels.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    (folder / "EPIC_video_info.csv").write_text("video,resolution,duration,fps\nP01_01,1x1,9,60\n")
    return path


def load_error(folder, split="train", **kwargs) -> str:
    with pytest.raises(AnnotationError) as err:
        load_segments("epic55", folder, split, **kwargs)
    return str(err.value)


def test_good_file_reads(tmp_path):
    write_train(tmp_path, [row(0), row(1, 5, 5)])
    table = load_segments("epic55", tmp_path, "train")
    assert table["segment_id"].tolist() == ["0", "1"]
    assert table["stop_frame"].tolist() == [10, 5]


def test_missing_column_names_file_and_header(tmp_path):
    path = write_train(tmp_path, [row(0)], header=HEADER.replace("noun_class", "noun_klass"))
    message = load_error(tmp_path)
    assert message.startswith(f"{path}, line 1:")
    assert "missing column(s) noun_class" in message


def test_non_integer_names_line(tmp_path):
    path = write_train(tmp_path, [row(0), row(1), row(2, start="12a")])
    message = load_error(tmp_path)
    assert message.startswith(f"{path}, line 4:")
    assert "start_frame" in message and "'12a'" in message


def test_empty_label_cell_names_line(tmp_path):
    path = write_train(tmp_path, [row(0), row(1, verb="")])
    message = load_error(tmp_path)
    assert message.startswith(f"{path}, line 3:") and "verb_class" in message


def test_class_id_outside_the_table(tmp_path):
    path = write_train(tmp_path, [row(0), row(1, noun=352)])
    message = load_error(tmp_path)
    assert message.startswith(f"{path}, line 3:")
    assert "noun_class" in message and "352" in message and "0..351" in message


def test_class_id_checked_against_present_class_table(tmp_path):
    path = write_train(tmp_path, [row(0, verb=1), row(1, verb=4), row(2, verb=9)])
    (tmp_path / "EPIC_verb_classes.csv").write_text(
        "verb_id,class_key,verbs\n0,take,[]\n1,put,[]\n2,open,[]\n"
    )
    message = load_error(tmp_path)
    assert message.startswith(f"{path}, line 3:")
    assert "0..2" in message and "also on 1 more line(s): 4" in message


def test_negative_class_id_rejected_in_labelled_file(tmp_path):
    path = write_train(tmp_path, [row(0, verb=-1)])
    assert load_error(tmp_path).startswith(f"{path}, line 2:")


def test_stop_before_start(tmp_path):
    path = write_train(tmp_path, [row(0), row(1), row(2, start=50, stop=49)])
    message = load_error(tmp_path)
    assert message.startswith(f"{path}, line 4:")
    assert "stop_frame 49 is before start_frame 50" in message


def test_zero_start_frame_rejected(tmp_path):
    path = write_train(tmp_path, [row(0, start=0)])
    assert "1-based" in load_error(tmp_path)
    assert load_error(tmp_path).startswith(f"{path}, line 2:")


def test_duplicate_segment_id(tmp_path):
    path = write_train(tmp_path, [row(0), row(5), row(5)])
    message = load_error(tmp_path)
    assert message.startswith(f"{path}, line 4:") and "line 3" in message


def test_empty_video_id(tmp_path):
    path = write_train(tmp_path, [row(0), row(1).replace("P01_01", "")])
    message = load_error(tmp_path)
    assert message.startswith(f"{path}, line 3:") and "video_id" in message


def test_require_labels_on_timestamps_file(tmp_path):
    path = tmp_path / "EPIC_test_s2_timestamps.csv"
    path.write_text(
        "uid,participant_id,video_id,start_timestamp,stop_timestamp,start_frame,stop_frame\n"
        "3,P09,P09_01,00:00:00.00,00:00:01.00,1,9\n"
    )
    table = load_segments("epic55", tmp_path, "s2")
    assert table["verb_class"].tolist() == [-1]
    message = load_error(tmp_path, "s2", require_labels=True)
    assert message.startswith(f"{path}, line 1:")
    assert "labels were asked for" in message


def test_missing_file_names_file_and_folder(tmp_path):
    message = load_error(tmp_path, "s1")
    assert str(tmp_path) in message
    assert "EPIC_test_s1_timestamps.csv" in message and "EPIC_test_s1_labels.csv" in message
    with pytest.raises(AnnotationError, match="does not exist"):
        load_segments("epic55", tmp_path / "nowhere", "train")


def test_empty_file(tmp_path):
    path = tmp_path / "EPIC_train_action_labels.csv"
    path.write_text("")
    assert load_error(tmp_path).startswith(f"{path}, line 1:")


def test_unknown_format_and_split(tmp_path):
    with pytest.raises(ValueError, match="epic55, epic100"):
        load_segments("epic99", tmp_path, "train")
    with pytest.raises(ValueError, match="train, s1, s2"):
        load_segments("epic55", tmp_path, "validation")

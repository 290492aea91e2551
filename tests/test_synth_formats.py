"""Synthetic kitchens in every dataset format: files, columns, readers, seeds, bad options."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from launcher.cli import main
from shards.annotations import class_names, load_segments
from shards.annotations.epic100 import read_tail_classes, read_unseen_participants
from shards.decode import VideoFile
from shards.synth import generate
from shards.synth.vocab import LIDDED_NOUNS, NOUNS, PART_VERBS, VERBS, action_combos

TINY = {"width": 64, "height": 48, "min_seconds": 0.6, "max_seconds": 1.2, "fps": 12.0}


def _header(path):
    with open(path, newline="") as fh:
        return next(csv.reader(fh))


def _annotation_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted((folder / "annotations").iterdir())}


def test_same_seed_same_annotation_bytes_other_seed_differs(tmp_path):
    a = generate("epic55", tmp_path / "a", 2, 6, seed=3, **TINY)
    b = generate("epic55", tmp_path / "b", 2, 6, seed=3, **TINY)
    c = generate("epic55", tmp_path / "c", 2, 6, seed=4, **TINY)
    parallel = generate("epic55", tmp_path / "p", 2, 6, seed=3, workers=2, **TINY)
    assert _annotation_bytes(parallel) == _annotation_bytes(a)
    for video in ("P01_01.MP4", "P01_02.MP4"):
        assert (a / "videos" / "P01" / video).read_bytes() == \
            (parallel / "videos" / "P01" / video).read_bytes()
    assert _annotation_bytes(a) == _annotation_bytes(b)
    assert _annotation_bytes(a)["EPIC_train_action_labels.csv"] != \
        _annotation_bytes(c)["EPIC_train_action_labels.csv"]
    mask_a = np.load(a / "masks" / "P01_01.npz")["mask"]
    assert np.array_equal(mask_a, np.load(b / "masks" / "P01_01.npz")["mask"])


def test_epic55_files_have_the_real_columns(tmp_path, real_annotations):
    out = generate("epic55", tmp_path / "d", 2, 6, seed=0, **TINY) / "annotations"
    real = real_annotations / "epic-kitchens-55"
    for name in ("EPIC_train_action_labels.csv", "EPIC_test_s1_timestamps.csv",
                 "EPIC_test_s2_timestamps.csv", "EPIC_verb_classes.csv", "EPIC_noun_classes.csv",
                 "EPIC_video_info.csv", "EPIC_many_shot_verbs.csv", "EPIC_many_shot_nouns.csv",
                 "EPIC_many_shot_actions.csv"):
        assert _header(out / name) == _header(real / name), name
    for split in ("s1", "s2"):
        assert _header(out / f"EPIC_test_{split}_labels.csv") == \
            _header(real / "EPIC_train_action_labels.csv")
    names = class_names("epic55", out)
    assert len(names["verb"]) == 125 and len(names["noun"]) == 352
    assert names["verb"][:4] == ["take", "put", "open", "close"] and names["noun"][0] == "pan"
    labels = load_segments("epic55", out, "s2", require_labels=True)
    assert (labels.verb_class >= 0).all()


def test_epic100_at_the_real_5994_fps(tmp_path, real_annotations):
    out = generate("epic100", tmp_path / "d", 3, 9, seed=1, unseen_fraction=0.34,
                   **{**TINY, "fps": 59.94})
    ann, real = out / "annotations", real_annotations / "epic-kitchens-100"
    for name in ("EPIC_100_validation.csv", "EPIC_100_test_timestamps.csv",
                 "EPIC_100_verb_classes.csv", "EPIC_100_noun_classes.csv",
                 "EPIC_100_video_info.csv", "EPIC_100_tail_verbs.csv", "EPIC_100_tail_nouns.csv",
                 "EPIC_100_unseen_participant_ids_validation.csv",
                 "EPIC_100_unseen_participant_ids_test.csv"):
        assert _header(ann / name) == _header(real / name), name
    assert _header(ann / "EPIC_100_train.csv") == _header(real / "EPIC_100_validation.csv")
    assert _header(ann / "EPIC_100_test_labels.csv") == _header(real / "EPIC_100_validation.csv")
    info = pd.read_csv(ann / "EPIC_100_video_info.csv")
    assert (info.fps.astype(str) == "59.9400599400599").all()
    tables = {s: load_segments("epic100", ann, s) for s in ("train", "validation", "test")}
    unseen = read_unseen_participants(ann, "validation") | read_unseen_participants(ann, "test")
    assert unseen == {"P03"} and "P03" not in set(tables["train"].participant)
    assert (tables["test"].verb_class >= 0).all(), "labelled test file is read"
    tail = read_tail_classes(ann)
    assert tail["verb"] <= set(tables["train"].verb_class)
    for row in info.itertuples():
        vr = VideoFile(out / "videos" / row.video_id[:3] / f"{row.video_id}.MP4", short_side=48)
        assert vr.num_frames == round(row.duration * row.fps)
        assert vr.fps == pytest.approx(60000 / 1001)
        segs = pd.concat(tables.values())
        assert (segs[segs.video_id == row.video_id].stop_frame <= vr.num_frames).all()


def test_egtea_sessions_and_three_splits(tmp_path):
    out = generate("egtea", tmp_path / "d", 2, 9, seed=2, **TINY)
    ann = out / "annotations"
    tests = [set(load_segments("egtea", ann, f"test_split{k}").segment_id) for k in (1, 2, 3)]
    trains = [set(load_segments("egtea", ann, f"train_split{k}").segment_id) for k in (1, 2, 3)]
    everything = set().union(*tests)
    assert len(everything) == 9 and sum(len(t) for t in tests) == 9
    for test, train in zip(tests, trains):
        assert test and not test & train and test | train == everything
    table = load_segments("egtea", ann, "train_split1")
    names = class_names("egtea", ann)
    assert len(names["class"]) == 106 and len(names["verb"]) == 19 and len(names["noun"]) == 53
    for row in table.itertuples():
        video = out / "videos" / f"{row.video_id}.mp4"
        assert row.participant == row.video_id.split("-")[0]
        assert row.stop_frame <= VideoFile(video, short_side=48).num_frames
        verb, noun = action_combos()[row.class_id]
        assert (row.verb_class, row.noun_class) == (verb, noun)
        mask = np.load(out / "masks" / f"{row.video_id}.npz")["mask"]
        assert mask[row.start_frame - 1:row.stop_frame].any()


def test_gtea61_frame_folders(tmp_path):
    out = generate("gtea61", tmp_path / "d", 4, 8, seed=0, **TINY)
    test = load_segments("gtea61", out, "test_fixed", root=out)
    train = load_segments("gtea61", out, "train_fixed", root=out)
    assert len(test) + len(train) == 8 and set(test.participant) == {"S2"}
    names = class_names("gtea61", out, root=out)["class"]
    # 8 segments over 4 subjects: 2 classes, each performed by every subject.
    assert len(names) == 2
    both = pd.concat([test, train])
    assert all(set(group.participant) == {"S1", "S2", "S3", "S4"}
               for _, group in both.groupby("class_id"))
    for name in names:
        verb, noun = name.split("_")
        assert verb in VERBS and noun in NOUNS
    for row in pd.concat([test, train]).itertuples():
        mask = np.load(out / "masks" / f"{row.video_id}.npz")["mask"]
        assert mask.shape == (row.stop_frame, 48, 64) and mask.any()
        assert (out / "frames" / row.video_id / f"{row.stop_frame:05d}.png").is_file()


def test_action_vocabulary_is_consistent():
    combos = action_combos()
    assert len(set(combos)) == len(combos) >= 106
    for verb, noun in combos:
        assert VERBS[verb] not in PART_VERBS or NOUNS[noun] in LIDDED_NOUNS
    # Short prefixes (GTEA-61 with few segments) already span every verb and noun.
    for size in (2 * len(NOUNS), 61, 106):
        head = combos[:size]
        assert {v for v, _ in head} == set(range(len(VERBS)))
        assert {n for _, n in head} == set(range(len(NOUNS)))


@pytest.mark.parametrize("args, message", [
    (["--format", "gtea61", "--participants", "5"], "S1..S4"),
    (["--format", "epic55", "--width", "65"], "even"),
    (["--format", "epic55", "--min-seconds", "3", "--max-seconds", "2"], "min_seconds"),
    (["--format", "epic55", "--unseen-fraction", "1.0"], "unseen_fraction"),
])
def test_bad_options_fail_clearly(tmp_path, caplog, args, message):
    assert main(["synth", "--out", str(tmp_path / "x"), "--segments", "2", *args]) == 2
    assert message in caplog.text
    assert not (tmp_path / "x" / "videos").exists()

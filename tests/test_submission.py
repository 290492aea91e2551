"""Challenge archives from random scores on the real EPIC-55 and EPIC-100 test segments."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from fpar.evaluation import EvaluationError, build_submission, rank_actions, save_scores
from launcher.cli import main
from shards.annotations import load_segments


@pytest.fixture(scope="module")
def epic55(real_annotations):
    folder = real_annotations / "epic-kitchens-55"
    files = [folder / "EPIC_test_s1_timestamps.csv", folder / "EPIC_test_s2_timestamps.csv"]
    ids = {s: load_segments("epic55", folder, s)["segment_id"].tolist() for s in ("s1", "s2")}
    return files, ids


@pytest.fixture(scope="module")
def epic100(real_annotations):
    folder = real_annotations / "epic-kitchens-100"
    path = folder / "EPIC_100_test_timestamps.csv"
    return path, load_segments("epic100", folder, "test")["segment_id"].tolist()


def _random_scores(n: int, verbs: int, nouns: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "verb": rng.standard_normal((n, verbs)).astype(np.float32),
        "noun": rng.standard_normal((n, nouns)).astype(np.float32),
    }


@pytest.mark.slow
def test_epic55_archive_from_one_scores_file(epic55, tmp_path):
    files, by_split = epic55
    ids = by_split["s2"] + by_split["s1"]  # order of the scores file does not matter
    outputs = _random_scores(len(ids), 125, 352)
    scores = save_scores(tmp_path / "scores.pt", ids, outputs)
    out = tmp_path / "sub" / "epic55.zip"
    code = main(["submission", str(scores), "--format", "epic55", "--test-timestamps",
                 *map(str, files), "--out", str(out)])
    assert code == 0
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["seen.json", "unseen.json"]
        docs = {name: json.loads(archive.read(name)) for name in archive.namelist()}
    for name, split, count in (("seen.json", "s1", 8047), ("unseen.json", "s2", 2929)):
        doc = docs[name]
        assert list(doc) == ["version", "challenge", "results"]
        assert (doc["version"], doc["challenge"]) == ("0.1", "action_recognition")
        assert len(doc["results"]) == count and set(doc["results"]) == set(by_split[split])
    # One segment checked value by value against the scores and the action ranking.
    row = ids.index(by_split["s1"][10])
    entry = docs["seen.json"]["results"][ids[row]]
    assert list(entry["verb"]) == [str(i) for i in range(125)]
    assert list(entry["noun"]) == [str(i) for i in range(352)]
    np.testing.assert_array_equal(np.float32(list(entry["verb"].values())), outputs["verb"][row])
    ranking = rank_actions(outputs["verb"][row : row + 1], outputs["noun"][row : row + 1])
    expected = [f"{v},{n}" for v, n in zip(ranking.verbs[0], ranking.nouns[0])]
    assert list(entry["action"]) == expected and len(expected) == 100
    assert list(entry["action"].values()) == pytest.approx(ranking.probs[0].tolist(), rel=1e-12)
    for doc in docs.values():
        assert all(len(e["action"]) == 100 for e in doc["results"].values())


def test_epic55_scores_files_per_split_must_cover_every_segment(epic55, tmp_path, capsys):
    files, by_split = epic55
    paths = []
    for split in ("s1", "s2"):
        outputs = _random_scores(50, 125, 352, seed=len(split))
        paths.append(str(save_scores(tmp_path / f"{split}.pt", by_split[split][:50], outputs)))
    out = tmp_path / "x.zip"
    code = main(["submission", *paths, "--format", "epic55", "--test-timestamps", *map(str, files),
                 "--out", str(out)])
    assert code == 1 and not out.exists()
    first_missing = by_split["s1"][50]
    assert f"s1: {8047 - 50} test segment(s) have no score: '{first_missing}'" in capsys.readouterr().err


@pytest.mark.slow
def test_epic100_test_json(epic100):
    path, ids = epic100
    outputs = _random_scores(len(ids), 97, 300, seed=5)
    # The archive itself is checked with EPIC-55 above; here the JSON text directly.
    files = build_submission("epic100", ids, outputs, [path], {"sls_pt": 2, "sls_tl": 3, "sls_td": 4})
    assert list(files) == ["test.json"]
    doc = json.loads(files["test.json"])
    assert {k: doc[k] for k in ("version", "challenge", "sls_pt", "sls_tl", "sls_td")} == {
        "version": "0.2", "challenge": "action_recognition", "sls_pt": 2, "sls_tl": 3, "sls_td": 4,
    }
    assert len(doc["results"]) == 13092 and list(doc["results"]) == ids
    entry = doc["results"]["P01_101_0"]
    assert set(entry) == {"verb", "noun"}
    assert list(entry["verb"]) == [str(i) for i in range(97)] and len(entry["noun"]) == 300
    np.testing.assert_array_equal(np.float32(list(entry["noun"].values())), outputs["noun"][0])


@pytest.mark.parametrize(
    "change, message",
    [
        ("drop", "1 test segment(s) have no score: 'P01_101_0'"),
        ("extra", "1 scored segment(s) are not test segments: 'P99_1_0'"),
        ("nan", "non-finite verb scores for 'P01_101_1'"),
        ("classes", "noun scores have 299 classes, epic100 has 300"),
        ("sls", "sls_td must be an integer from 0 to 5, got 6"),
        ("no_sls", "EPIC-100 submissions need sls_pt"),
        ("files", "need the test segment file(s) of test"),
    ],
)
def test_epic100_refusals(epic100, real_annotations, change, message):
    path, ids = epic100
    ids = list(ids)
    outputs = _random_scores(len(ids), 97, 300)
    sls = {"sls_pt": 5, "sls_tl": 5, "sls_td": 5}
    files = [path]
    if change == "drop":
        ids, outputs = ids[1:], {k: v[1:] for k, v in outputs.items()}
    elif change == "extra":
        ids = ids + ["P99_1_0"]
        outputs = {k: np.concatenate([v, v[:1]]) for k, v in outputs.items()}
    elif change == "nan":
        outputs["verb"][1, 3] = np.nan
    elif change == "classes":
        outputs["noun"] = outputs["noun"][:, :299]
    elif change == "sls":
        sls["sls_td"] = 6
    elif change == "no_sls":
        sls = {}
    elif change == "files":
        files = [real_annotations / "epic-kitchens-100" / "EPIC_100_validation.csv"]
    with pytest.raises(EvaluationError) as err:
        build_submission("epic100", ids, outputs, files, sls)
    assert message in str(err.value)


def test_epic55_refusals(epic55, real_annotations):
    files, by_split = epic55
    ids = by_split["s1"] + by_split["s2"]
    outputs = _random_scores(len(ids), 125, 352)
    with pytest.raises(EvaluationError, match="need the test segment file"):
        build_submission("epic55", ids, outputs, files[:1])
    with pytest.raises(EvaluationError, match="verb scores have 97 classes, epic55 has 125"):
        build_submission("epic55", ids, {"verb": outputs["verb"][:, :97], "noun": outputs["noun"]}, files)
    with pytest.raises(EvaluationError, match="not a epic55 split file"):
        build_submission("epic55", ids, outputs, [files[0], real_annotations / "README.md"])
    last = by_split["s2"][-1]
    with pytest.raises(EvaluationError, match=f"s2: 1 test segment\\(s\\) have no score: '{last}'"):
        build_submission("epic55", ids[:-1], {k: v[:-1] for k, v in outputs.items()}, files)


def test_small_epic55_submission_by_hand(tmp_path):
    """Two segments in a hand-made test folder: the whole JSON checked."""
    folder = tmp_path / "ann"
    folder.mkdir()
    header = "uid,participant_id,video_id,start_timestamp,stop_timestamp,start_frame,stop_frame\n"
    (folder / "EPIC_test_s1_timestamps.csv").write_text(header + "7,P01,P01_11,00:00:00.00,00:00:01.00,1,60\n")
    (folder / "EPIC_test_s2_timestamps.csv").write_text(header + "9,P09,P09_01,00:00:00.00,00:00:01.00,1,60\n")
    verb = np.zeros((2, 125), dtype=np.float32)
    noun = np.zeros((2, 352), dtype=np.float32)
    verb[0, 3], noun[0, 5] = 9.0, 2.0
    files = build_submission(
        "epic55", ["9", "7"], {"verb": verb[::-1].copy(), "noun": noun[::-1].copy()},
        [folder / "EPIC_test_s2_timestamps.csv", folder / "EPIC_test_s1_timestamps.csv"],
    )
    seen, unseen = json.loads(files["seen.json"]), json.loads(files["unseen.json"])
    assert list(seen["results"]) == ["7"] and list(unseen["results"]) == ["9"]
    actions = list(seen["results"]["7"]["action"])
    # p(verb 3) is near 1, so every kept action has verb 3: noun 5 first, then the other
    # nouns tie and come in id order (the top-100 nouns: 5 and the 99 lowest others).
    assert actions == ["3,5"] + [f"3,{i}" for i in range(100) if i != 5]
    # All-zero scores: every pair ties, so ids ascend over the 100 lowest verbs x nouns.
    assert list(unseen["results"]["9"]["action"])[:3] == ["0,0", "0,1", "0,2"]
    assert seen["results"]["7"]["verb"]["3"] == 9.0


def test_fpar_submission_epic100_needs_supervision_levels(epic100, tmp_path, capsys):
    path, ids = epic100
    scores = save_scores(tmp_path / "s.pt", ids[:3], _random_scores(3, 97, 300))
    out = tmp_path / "t.zip"
    args = ["submission", str(scores), "--format", "epic100", "--test-timestamps", str(path), "--out", str(out)]
    assert main(args) == 1
    assert "EPIC-100 submissions need sls_pt (supervision level 0-5)" in capsys.readouterr().err
    assert main(args + ["--sls-pt", "1", "--sls-tl", "-1", "--sls-td", "0"]) == 1
    assert "sls_tl must be an integer from 0 to 5, got -1" in capsys.readouterr().err
    assert not out.exists()

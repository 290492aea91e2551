"""``evaluate`` and ``fpar metrics`` on the real annotation files and small frame trees."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fpar.evaluation import EvaluationError, evaluate, flatten_metrics, save_scores
from launcher.cli import main
from shards.annotations import load_segments


def _perfect(labels: np.ndarray, classes: int, rng, strength: float = 4.0) -> np.ndarray:
    """Noise plus a margin on the true class: top-1 is always right."""
    scores = rng.uniform(0, 1, (len(labels), classes))
    scores[np.arange(len(labels)), labels] += strength
    return scores.astype(np.float32)


@pytest.fixture(scope="module")
def epic100_validation(real_annotations):
    return load_segments("epic100", real_annotations / "epic-kitchens-100", "validation")


def test_epic100_validation_scores_matched_by_id(real_annotations, epic100_validation):
    seg = epic100_validation
    rng = np.random.default_rng(0)
    verb = _perfect(seg["verb_class"].to_numpy(), 97, rng)
    noun = rng.uniform(0, 1, (len(seg), 300)).astype(np.float32)
    order = rng.permutation(len(seg))  # scores in another order than the file
    ids = seg["segment_id"].to_numpy()[order].tolist()
    result = evaluate(
        "epic100", ids, {"verb": verb[order], "noun": noun[order]},
        real_annotations / "epic-kitchens-100" / "EPIC_100_validation.csv",
    )
    m = result["splits"]["validation"]
    assert m["segments"] == 9668
    assert m["overall"]["verb"]["top1"] == 100.0 and m["tail"]["verb"]["top1"] == 100.0
    noun_hits = noun.argmax(axis=1) == seg["noun_class"].to_numpy()
    assert m["overall"]["noun"]["top1"] == pytest.approx(noun_hits.mean() * 100)
    # With every verb right, an action is right exactly when its noun is.
    assert m["overall"]["action"]["top1"] == pytest.approx(noun_hits.mean() * 100)
    assert m["unseen"]["segments"] == int(seg["participant"].isin(["P18", "P32"]).sum())
    tail_verbs = set(pd.read_csv(real_annotations / "epic-kitchens-100" / "EPIC_100_tail_verbs.csv")["verb"])
    assert m["tail"]["verb"]["segments"] == int(seg["verb_class"].isin(tail_verbs).sum())
    flat = flatten_metrics(result)["validation"]
    assert flat["overall_verb_top1"] == 100.0 and "tail_noun_segments" in flat


def test_missing_scores_and_wrong_class_counts_are_refused(real_annotations, epic100_validation):
    seg = epic100_validation
    ids = seg["segment_id"].tolist()
    rng = np.random.default_rng(1)
    outputs = {"verb": rng.standard_normal((len(ids), 97)), "noun": rng.standard_normal((len(ids), 300))}
    folder = real_annotations / "epic-kitchens-100"
    fewer = {k: v[1:] for k, v in outputs.items()}
    with pytest.raises(EvaluationError, match=r"1 segment\(s\) have no score: 'P01_11_0'"):
        evaluate("epic100", ids[1:], fewer, folder, ["validation"])
    # No split named: none is completely scored, the nearest one is reported.
    with pytest.raises(EvaluationError, match=r"validation lacks 1 segment\(s\): 'P01_11_0'"):
        evaluate("epic100", ids[1:], fewer, folder)
    with pytest.raises(EvaluationError, match="verb scores have 96 classes, epic100 has 97"):
        evaluate("epic100", ids, {"verb": outputs["verb"][:, :96], "noun": outputs["noun"]}, folder)
    bad = outputs["noun"].copy()
    bad[3, 7] = np.nan
    with pytest.raises(EvaluationError, match=f"non-finite noun scores for '{ids[3]}'"):
        evaluate("epic100", ids, {"verb": outputs["verb"], "noun": bad}, folder)
    with pytest.raises(EvaluationError, match="holds split 'validation', but"):
        evaluate("epic100", ids, outputs, folder / "EPIC_100_validation.csv", ["test"])


def _labelled_epic55(real_annotations, tmp_path, rng):
    """Real S1/S2 segments with made-up labels, beside links to the real class tables."""
    real = real_annotations / "epic-kitchens-55"
    for name in ("EPIC_many_shot_verbs.csv", "EPIC_many_shot_nouns.csv", "EPIC_many_shot_actions.csv",
                 "EPIC_verb_classes.csv", "EPIC_noun_classes.csv", "EPIC_video_info.csv"):
        (tmp_path / name).symlink_to(real / name)
    for split in ("s1", "s2"):
        df = pd.read_csv(real / f"EPIC_test_{split}_timestamps.csv")
        df["verb_class"] = rng.integers(0, 125, len(df))
        df["noun_class"] = rng.integers(0, 352, len(df))
        df.to_csv(tmp_path / f"EPIC_test_{split}_labels.csv", index=False)
    return tmp_path


def test_fpar_metrics_epic55_reports_s1_and_s2(real_annotations, tmp_path, capsys):
    rng = np.random.default_rng(2)
    (tmp_path / "ann").mkdir()
    folder = _labelled_epic55(real_annotations, tmp_path / "ann", rng)
    parts = [load_segments("epic55", folder, s) for s in ("s1", "s2")]
    seg = pd.concat(parts, ignore_index=True)
    verb = _perfect(seg["verb_class"].to_numpy(), 125, rng)
    noun = rng.standard_normal((len(seg), 352)).astype(np.float32)
    scores = save_scores(tmp_path / "scores.pt", seg["segment_id"].tolist(), {"verb": verb, "noun": noun})
    out = tmp_path / "metrics.json"
    code = main(["metrics", str(scores), "--format", "epic55", "--annotations", str(folder),
                 "--json", "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    s1, s2 = printed["splits"]["s1"], printed["splits"]["s2"]
    assert (s1["segments"], s2["segments"]) == (8047, 2929)
    assert s1["verb"]["top1"] == 100.0 and s1["verb"]["precision"] == 100.0
    s2_nouns = noun[len(parts[0]):].argmax(axis=1) == parts[1]["noun_class"].to_numpy()
    assert s2["noun"]["top1"] == pytest.approx(s2_nouns.mean() * 100)
    assert 0 < s1["action"]["many_shot_classes"] <= 819
    # Human output names both splits; asking for S2 only leaves S1 out.
    assert main(["metrics", str(scores), "--format", "epic55", "--annotations", str(folder),
                 "--split", "s2"]) == 0
    text = capsys.readouterr().out
    assert "[s2] 2929 segments" in text and "[s1]" not in text


def test_fpar_metrics_refuses_public_test_files_without_labels(real_annotations, tmp_path, capsys):
    real = real_annotations / "epic-kitchens-55"
    ids = load_segments("epic55", real, "s1")["segment_id"].tolist()
    scores = save_scores(tmp_path / "s.pt", ids, {"verb": np.zeros((len(ids), 125)), "noun": np.zeros((len(ids), 352))})
    code = main(["metrics", str(scores), "--format", "epic55", "--annotations",
                 str(real / "EPIC_test_s1_timestamps.csv")])
    assert code == 1
    assert "labels were asked for" in capsys.readouterr().err


def test_egtea_single_label_metrics(real_annotations):
    seg = load_segments("egtea", real_annotations / "egtea-gaze-plus", "test_split1")
    labels = seg["class_id"].to_numpy()
    rng = np.random.default_rng(4)
    scores = _perfect(labels, 106, rng)
    wrong = np.flatnonzero(labels == labels[0])  # every clip of one class -> class 105
    scores[wrong, 105] = 99.0
    result = evaluate("egtea", seg["segment_id"].tolist(), {"class": scores},
                      real_annotations / "egtea-gaze-plus")
    m = result["splits"]["test_split1"]
    assert m["segments"] == 2022
    assert m["top1"] == pytest.approx(100 * (1 - len(wrong) / len(labels)))
    present = len(np.unique(labels))
    assert m["classes_present"] == present
    assert m["mean_class_accuracy"] == pytest.approx(100 * (present - 1) / present)
    cm = np.asarray(m["confusion_matrix"])
    assert cm.shape == (106, 106) and cm[labels[0], 105] == len(wrong) and cm.sum() == 2022


def test_gtea61_frame_tree(tmp_path, capsys):
    root = tmp_path / "frames"
    for subject in ("S1", "S2", "S3", "S4"):
        for name in ("close_jam", "open_jam", "take_bread"):
            for instance in ("1", "2"):
                folder = root / subject / name / instance
                folder.mkdir(parents=True)
                (folder / "00001.png").write_bytes(b"")
    seg = load_segments("gtea61", root, "test_fixed")
    assert len(seg) == 6
    scores = np.zeros((6, 61), dtype=np.float32)  # all tied: every clip -> class 0
    path = save_scores(tmp_path / "g.pt", seg["segment_id"].tolist(), {"class": scores})
    assert main(["metrics", str(path), "--format", "gtea61", "--annotations", str(root)]) == 0
    text = capsys.readouterr().out
    # Class 0 (close_jam) right, the others wrong; top-5 holds classes 0-4, so all of them.
    assert "top-1  33.33  top-5 100.00  mean class accuracy  33.33 (3 classes present)" in text
    assert "1->0 (2), 2->0 (2)" in text
    # test_loso2 holds the same S2 clips as test_fixed: reported once.
    assert "[test_fixed] 6 segments" in text and "test_loso2" not in text

"""Scores files: round trip, validation errors naming the file."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from fpar.evaluation.scores import ScoresError, load_scores, merge_scores, save_scores


def test_round_trip_keeps_ids_order_and_values(tmp_path):
    rng = np.random.default_rng(0)
    verb = rng.standard_normal((3, 5)).astype(np.float32)
    noun = torch.randn(3, 7, dtype=torch.float64)
    path = save_scores(tmp_path / "s.pt", ["P01_1_2", "P01_1_0", "P01_1_1"], {"verb": verb, "noun_output": noun})
    ids, outputs = load_scores(path)
    assert ids == ["P01_1_2", "P01_1_0", "P01_1_1"]
    assert set(outputs) == {"verb", "noun"}
    np.testing.assert_array_equal(outputs["verb"], verb)
    np.testing.assert_array_equal(outputs["noun"], noun.numpy())
    raw = torch.load(path, weights_only=False)  # the official key names on disk
    assert set(raw) == {"narration_id", "verb_output", "noun_output"}


def test_official_dict_written_elsewhere_loads(tmp_path):
    path = tmp_path / "official.pt"
    torch.save({"narration_id": ["a", "b"], "class_output": np.zeros((2, 61), np.float32)}, path)
    ids, outputs = load_scores(path)
    assert ids == ["a", "b"] and outputs["class"].shape == (2, 61)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"narration_id": ["a", "a"], "verb_output": np.zeros((2, 3))}, "'a' appears twice"),
        ({"narration_id": ["a", 7], "verb_output": np.zeros((2, 3))}, "narration_id[1] is 7"),
        ({"narration_id": ["a", "b"], "verb_output": np.zeros(2)}, "must be 2-D"),
        ({"narration_id": ["a", "b"], "verb_output": np.zeros((2, 3), np.int64)}, "must hold floats"),
        ({"narration_id": ["a", "b"], "verb_output": np.zeros((3, 3))}, "3 rows but there are 2 ids"),
        ({"verb_output": np.zeros((2, 3))}, "no 'narration_id'"),
        ({"narration_id": ["a"]}, "no score arrays"),
    ],
)
def test_bad_files_are_refused_naming_the_file(tmp_path, data, message):
    path = tmp_path / "bad.pt"
    torch.save(data, path)
    with pytest.raises(ScoresError) as err:
        load_scores(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "junk.pt").write_text("not a pickle")
    with pytest.raises(ScoresError, match="junk.pt: not a readable scores file"):
        load_scores(tmp_path / "junk.pt")
    with pytest.raises(ScoresError, match="scores file not found"):
        load_scores(tmp_path / "absent.pt")


def test_merge_joins_files_and_refuses_shared_ids():
    a = (["1", "2"], {"verb": np.zeros((2, 3)), "noun": np.ones((2, 4))})
    b = (["3"], {"verb": np.ones((1, 3)), "noun": np.zeros((1, 4))})
    ids, outputs = merge_scores([a, b], ["s1.pt", "s2.pt"])
    assert ids == ["1", "2", "3"] and outputs["verb"].shape == (3, 3)
    assert outputs["verb"][2].tolist() == [1, 1, 1]
    with pytest.raises(ScoresError, match="'2' is in both s1.pt and s2.pt"):
        merge_scores([a, (["2"], b[1])], ["s1.pt", "s2.pt"])
    with pytest.raises(ScoresError, match="differ"):
        merge_scores([a, (["3"], {"verb": np.ones((1, 5)), "noun": np.zeros((1, 4))})], ["x", "y"])


def _resave_as_numpy1(path):
    """Rewrites a torch.save file as numpy 1.x writes it (``numpy.core`` module names)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for name in members:
        if name.endswith("data.pkl"):
            members[name] = members[name].replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            assert b"numpy.core.multiarray" in members[name]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_official_layouts_numpy_ids_and_numpy1_files(tmp_path):
    path = tmp_path / "dict.pt"
    ids = np.array(["P01_101_0", "P01_101_1"])
    torch.save({"narration_id": ids, "verb_output": np.ones((2, 97), np.float32),
                "noun_output": np.zeros((2, 300), np.float32)}, path)
    _resave_as_numpy1(path)
    loaded_ids, outputs = load_scores(path)
    assert loaded_ids == ["P01_101_0", "P01_101_1"] and outputs["verb"].shape == (2, 97)
    listed = tmp_path / "list.pt"
    torch.save([{"narration_id": "P01_101_1", "verb_output": np.full(97, 2.0, np.float32),
                 "noun_output": np.zeros(300, np.float32)},
                {"narration_id": "P01_101_0", "verb_output": np.full(97, 3.0, np.float32),
                 "noun_output": np.zeros(300, np.float32)}], listed)
    loaded_ids, outputs = load_scores(listed)
    assert loaded_ids == ["P01_101_1", "P01_101_0"]
    assert outputs["verb"][:, 0].tolist() == [2.0, 3.0] and outputs["noun"].shape == (2, 300)


class _Payload:
    """An arbitrary object: a pickle that would construct it is refused, not run."""


def test_files_with_arbitrary_objects_are_refused(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"narration_id": ["a"], "verb_output": np.zeros((1, 3)), "extra": _Payload()}, path)
    with pytest.raises(ScoresError, match="obj.pt: not a readable scores file .*_Payload.*could run any code"):
        load_scores(path)


def _pandas_ids_file(path):
    """A scores file as pandas 3 users write it: ids are ``df.narration_id.values``."""
    pd = pytest.importorskip("pandas")
    ids = pd.DataFrame({"narration_id": ["P01_101_0", "P01_101_1"]}).narration_id.values
    assert not isinstance(ids, np.ndarray)
    torch.save({"narration_id": ids, "verb_output": np.ones((2, 97), np.float32),
                "noun_output": np.zeros((2, 300), np.float32)}, path)
    return path


def test_pandas_array_ids_are_refused_saying_what_to_do(tmp_path):
    path = _pandas_ids_file(tmp_path / "pandas.pt")
    with pytest.raises(ScoresError) as err:
        load_scores(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a readable scores file")
    assert "pandas" in message and "could run any code" in message
    assert "np.asarray(ids, dtype=str)" in message and "trust_pickle=True" in message


def test_trusted_pandas_array_ids_load_and_save_as_strings(tmp_path):
    path = _pandas_ids_file(tmp_path / "pandas.pt")
    ids, outputs = load_scores(path, trust_pickle=True)
    assert ids == ["P01_101_0", "P01_101_1"] and outputs["noun"].shape == (2, 300)
    # save_scores writes such ids as plain strings: the file then loads without trust.
    resaved = save_scores(tmp_path / "clean.pt", torch.load(path, weights_only=False)[
        "narration_id"], outputs)
    assert load_scores(resaved)[0] == ids


def test_fpar_metrics_trust_pickle_flag(tmp_path, capsys):
    from launcher.cli import main

    path = _pandas_ids_file(tmp_path / "pandas.pt")
    args = ["metrics", str(path), "--format", "epic100", "--annotations", str(tmp_path)]
    assert main(args) == 1
    assert "np.asarray(ids, dtype=str)" in capsys.readouterr().err
    main([*args, "--trust-pickle"])  # past loading: now the missing annotations fail
    assert "not a readable scores file" not in capsys.readouterr().err

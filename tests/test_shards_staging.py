"""The staging folder is fpar's own; decode groups are balanced by video time."""

from __future__ import annotations

import pytest

from fpar.config import ConfigError
from shards import staging as stg
from shards.build_tasks import group_units, unit_seconds
from shards.worker import SegmentTask, WorkUnit


def test_claim_marks_and_remove_deletes_only_what_fpar_marked(tmp_path):
    staging = stg.claim(tmp_path)
    task = stg.claim_task(staging, 0)
    (task / "a.tar").write_bytes(b"x")
    (staging / "task-00001").mkdir()  # not made by fpar
    with pytest.raises(ConfigError, match="task-00001.*not created by fpar"):
        stg.claim(tmp_path)
    with pytest.raises(ConfigError, match="not created by fpar"):
        stg.claim_task(staging, 1)
    assert stg.remove(staging) is False  # the foreign task folder keeps the folder alive
    assert not task.exists() and (staging / "task-00001").is_dir()
    (staging / "task-00001").rmdir()
    assert stg.remove(staging) is True and not staging.exists()


def test_an_unmarked_staging_folder_is_refused_and_never_removed(tmp_path):
    foreign = tmp_path / "staging"
    foreign.mkdir()
    (foreign / "x.tar").write_bytes(b"x")
    with pytest.raises(ConfigError, match="Move or rename it"):
        stg.claim(tmp_path)
    assert stg.remove(foreign) is False and (foreign / "x.tar").read_bytes() == b"x"


def test_failures_are_read_per_plan_and_per_segment(tmp_path):
    staging = stg.claim(tmp_path)
    old, new = stg.FailureLog(stg.claim_task(staging, 0), "p1"), stg.FailureLog(stg.claim_task(staging, 1), "p2")
    old.append({"segment_id": "s1", "video_id": "v", "reason": "old"})
    new.append({"segment_id": "s2", "video_id": "v", "reason": "first"})
    new.append({"segment_id": "s2", "video_id": "v", "reason": "again"})
    with open(new.path, "a") as fh:
        fh.write('{"plan": "p2", "segm')  # torn by a kill
    assert stg.read_failures(staging, "p2") == [{"segment_id": "s2", "video_id": "v", "reason": "again"}]
    assert stg.failed_by_task(staging, "p2") == {"task-00001": {"s2"}}


def unit(uid: int, *durations: float) -> WorkUnit:
    segs = [SegmentTask(f"k{uid}_{i}", f"s{uid}_{i}", f"v{uid}", "p", 0, 1, 0.0, d, 30.0, 0, 0, 0)
            for i, d in enumerate(durations)]
    return WorkUnit(uid, f"v{uid}", None, "video", segments=segs)


def test_groups_balance_video_time_and_keep_videos_whole():
    units = [unit(0, 10, 10), unit(1, 3), unit(2, 4), unit(3, 6, 1), unit(4, 2), unit(5, 1)]
    groups = group_units(units, 3)
    loads = sorted(sum(map(unit_seconds, g)) for g in groups)
    assert loads == [8.0, 9.0, 20.0]  # the long video alone, the rest spread over two tasks
    assert sorted(u.unit_id for g in groups for u in g) == list(range(6))
    assert all([u.unit_id for u in g] == sorted(u.unit_id for u in g) for g in groups)
    assert len(group_units(units[:2], 5)) == 2
    assert group_units(units, 3) == groups  # deterministic


@pytest.fixture(scope="module")
def tiny_kitchens(tmp_path_factory):
    from shards.synth import generate

    return generate("epic55", tmp_path_factory.mktemp("k"), participants=2, segments=8, seed=0, width=64,
                    height=48, segments_per_video=4)


@pytest.mark.parametrize("where", ["staging", "task"])
def test_a_foreign_staging_folder_stops_a_slurm_build_before_anything_is_submitted(tiny_kitchens, tmp_path, where,
                                                                                  capsys):
    from launcher.cli import main

    out = tmp_path / "train"
    staging = out / "staging"
    foreign = staging if where == "staging" else staging / "task-00000"
    foreign.mkdir(parents=True)
    if where == "task":
        (staging / stg.MARKER).write_text("")  # fpar's staging, someone else's task folder
    (foreign / "keep.txt").write_text("mine")
    code = main(["shards", "build", "--format", "epic55", "--root", str(tiny_kitchens / "videos"),
                 "--annotations", str(tiny_kitchens / "annotations"), "--split", "train", "--out", str(out),
                 "--slurm", "--tasks", "2"])
    assert code == 2
    assert f"{foreign} exists but was not created by fpar" in capsys.readouterr().err
    assert (foreign / "keep.txt").read_text() == "mine" and not (out / "slurm_build.json").exists()

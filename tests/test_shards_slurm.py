"""Shard builds as a SLURM job array on the real two-node cluster (slurm/cluster.sh).

Same bytes as a local build, a task cancelled mid-run and the command run again, a broken
video in one task's group. The cluster is started (idempotent) and left running: other
test modules may be using it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.cli import main
from shards.annotations import load_segments
from shards.schema import read_manifest, sample_key
from shards.synth import generate

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("FPAR_SLURM_DIR", "/tmp/fpar-slurm"))


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root")
    up = subprocess.run(["bash", str(REPO / "slurm" / "cluster.sh"), "start"], capture_output=True, text=True,
                        timeout=180)
    assert up.returncode == 0, up.stderr
    env = {"SLURM_CONF": str(STATE / "etc" / "slurm.conf"), "PYTHONPATH": str(REPO)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def kitchens(tmp_path_factory) -> Path:
    # 20 training segments in 4 videos of 6 or 4 segments: 3 decode tasks of a few seconds.
    out = tmp_path_factory.mktemp("kitchens")
    return generate("epic55", out, participants=3, segments=40, seed=0, width=128, height=96, segments_per_video=6)


def build_args(kitchens: Path, out: Path, *extra: str, root: Path | None = None) -> list[str]:
    return ["shards", "build", "--format", "epic55", "--root", str(root or kitchens / "videos"),
            "--annotations", str(kitchens / "annotations"), "--split", "train", "--out", str(out),
            "--frames", "8", "--short-side", "64", "--shard-samples", "4", "--no-progress", *extra]


SLURM = ("--slurm", "--tasks", "3", "--cpus-per-task", "1", "--time", "10")


def digests(out: Path) -> dict[str, str]:
    """sha256 of every tar and of the manifest."""
    files = sorted(out.glob("*.tar")) + [out / "manifest.json"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def local(kitchens, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("local") / "train"
    assert main(build_args(kitchens, out, "--workers", "2")) == 0
    return digests(out)


def test_array_build_is_byte_identical_to_a_local_build(slurm, kitchens, local, tmp_path, monkeypatch, capsys):
    # --no-wait: the command returns at once and the finish job completes the build alone.
    monkeypatch.chdir(REPO)
    out = tmp_path / "train"
    started = time.monotonic()
    assert main(build_args(kitchens, out, *SLURM, "--no-wait")) == 0
    record = json.loads((out / "slurm_build.json").read_text())
    assert f"decode array {record['array']} (3 tasks), finish job {record['finish']}" in capsys.readouterr().out
    deadline = time.monotonic() + 300
    while main(["shards", "status", str(out)]) != 0:
        assert time.monotonic() < deadline, capsys.readouterr().out
        time.sleep(1)
    print(f"3-task array build of 20 segments: {time.monotonic() - started:.1f} s", file=sys.stderr)
    assert "finished: 20 samples of 20 segments, 0 failed" in capsys.readouterr().out.splitlines()[-1]
    assert digests(out) == local and len(local) > 2
    logs = Path(record["logs"])
    hosts = {line.split("hostname=")[1].split(",")[0]
             for i in range(3) for line in (logs / f"{record['array']}_{i}_0_log.out").read_text().splitlines()
             if "hostname=" in line}
    assert hosts and hosts <= {"n1", "n2"}  # every task ran as a job on a cluster node
    assert not (out / "staging").exists()


def staged_by_task(out: Path) -> dict[Path, int]:
    return {d: len(list(d.glob("*.tar"))) for d in sorted((out / "staging").glob("task-*"))}


def test_cancelled_task_fails_the_build_and_the_same_command_resumes_it(slurm, kitchens, local, tmp_path,
                                                                        monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "train"
    args = build_args(kitchens, out, *SLURM)
    proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    cancelled = None
    deadline = time.monotonic() + 240
    while cancelled is None and time.monotonic() < deadline and proc.poll() is None:
        record = out / "slurm_build.json"
        for folder, count in staged_by_task(out).items() if record.is_file() else ():
            if count >= 1 and not (folder / "done.json").exists():  # running, mid-group
                task = int(folder.name.split("-")[1])
                cancelled = f"{json.loads(record.read_text())['array']}_{task}"
                subprocess.run(["scancel", cancelled], check=True)
                break
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=300)
    assert cancelled is not None, f"no task was caught running: {stdout}{stderr}"
    assert proc.returncode == 1, stderr
    assert "did not finish" in stderr and "Run the same command again" in stderr
    assert not (out / "manifest.json").exists() and not list(out.glob("*.tar"))
    state = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", cancelled], capture_output=True,
                           text=True, check=True).stdout.split()
    assert state and state[0].startswith("CANCELLED"), state
    kept = sum(staged_by_task(out).values())
    assert 0 < kept < 20
    capsys.readouterr()
    assert main(["shards", "status", str(out)]) == 1
    assert "1 failed or cancelled" in capsys.readouterr().out
    assert main(args) == 0
    assert f"({kept} done earlier)" in capsys.readouterr().err
    assert digests(out) == local


def test_broken_video_fails_its_segments_and_the_other_tasks_are_written(slurm, kitchens, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    root = tmp_path / "videos"
    shutil.copytree(kitchens / "videos", root)
    segments = load_segments("epic55", kitchens / "annotations", "train")
    bad_video = segments["video_id"].iloc[0]
    bad_path = next(root.rglob(f"{bad_video}.MP4"))
    bad_path.write_bytes(bad_path.read_bytes()[: bad_path.stat().st_size // 3])
    out = tmp_path / "train"
    assert main(build_args(kitchens, out, *SLURM, root=root)) == 1
    manifest = read_manifest(out)
    bad = set(segments.loc[segments["video_id"] == bad_video, "segment_id"])
    assert {f["segment_id"] for f in manifest["failures"]} == bad
    assert all(f["video_id"] == bad_video and bad_path.name in f["reason"] for f in manifest["failures"])
    written = {k for line in (out / "journal.jsonl").read_text().splitlines() for k in json.loads(line)["keys"]}
    assert written == {sample_key(s) for s in set(segments["segment_id"]) - bad}
    assert manifest["num_samples"] == len(segments) - len(bad)


def test_protocol_builds_each_split_on_slurm_as_a_local_build_does(slurm, tmp_path, monkeypatch):
    from launcher.protocol_run import ShardOptions, build_protocol_shards
    from launcher.protocols import get_protocol
    from launcher.shards_slurm import SlurmBuildOptions

    monkeypatch.chdir(REPO)
    raw = generate("gtea61", tmp_path / "raw", participants=4, segments=12, seed=0, width=96, height=72,
                   min_seconds=0.6, max_seconds=1.0, fps=12.0)
    protocol = get_protocol("gtea61_fixed")
    on_slurm = SlurmBuildOptions(tasks=2, time_min=10)
    local = build_protocol_shards(protocol, raw, raw, tmp_path / "local", ShardOptions(frames=4, short_side=72, workers=2))
    array = build_protocol_shards(protocol, raw, raw, tmp_path / "slurm", ShardOptions(frames=4, short_side=72, slurm=on_slurm))
    assert sorted(array) == sorted(local) == ["test_fixed", "train_fixed"]
    for split in local:
        assert json.loads((array[split] / "slurm_build.json").read_text())["tasks"] == 2
        assert digests(array[split]) == digests(local[split])


def test_requeued_task_keeps_what_it_staged_and_the_bytes_stay_the_same(slurm, kitchens, local, tmp_path,
                                                                         monkeypatch):
    # USR2 is SLURM's time-limit warning: submitit requeues the task, which resumes its group.
    import submitit

    monkeypatch.chdir(REPO)
    out = tmp_path / "train"
    proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", *build_args(kitchens, out, *SLURM)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    signalled, before = None, 0
    deadline = time.monotonic() + 240
    while signalled is None and time.monotonic() < deadline and proc.poll() is None:
        record = out / "slurm_build.json"
        for folder, count in staged_by_task(out).items() if record.is_file() else ():
            if count >= 1 and not (folder / "done.json").exists():
                signalled = f"{json.loads(record.read_text())['array']}_{int(folder.name.split('-')[1])}"
                before = count
                subprocess.run(["scancel", "--signal=USR2", signalled], check=True)
                break
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=300)
    assert signalled is not None, f"no task was caught running: {stdout}{stderr}"
    assert proc.returncode == 0, stderr
    assert digests(out) == local
    shown = subprocess.run(["scontrol", "show", "job", signalled], capture_output=True, text=True).stdout
    assert "Restarts=1" in shown, shown
    result = submitit.SlurmJob(json.loads((out / "slurm_build.json").read_text())["logs"], signalled).result()
    assert result["kept"] >= before and result["failed"] == 0

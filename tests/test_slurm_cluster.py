"""End to end on a real two-node SLURM cluster (slurm/cluster.sh) on this machine.

The jobs run the real Trainer and DeepSpeed engine over gloo on a toy problem
(``tests/slurm_entries.py``), so that each takes seconds on two CPU nodes. The module's
fixture starts the cluster (idempotent) and the last test stops it, twice, checking that
no daemon is left; the fixture stops it again in any case.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from fixtures import synthetic_epic55_shards  # noqa: F401  (fixture)
from launcher.cli import main as fpar

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "slurm" / "cluster.sh"
STATE = Path(os.environ.get("FPAR_SLURM_DIR", "/tmp/fpar-slurm"))
DAEMONS = ["slurmd-n2", "slurmd-n1", "slurmctld", "slurmdbd", "mariadbd", "munged"]
TOY = "tests.slurm_entries:toy_run"

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def cluster(action: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), action], capture_output=True, text=True,
                          timeout=180)


def daemon_pids() -> dict[str, int]:
    return {d: int((STATE / "pids" / d).read_text()) for d in DAEMONS
            if (STATE / "pids" / d).is_file()}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root")
    up = cluster("start")
    assert up.returncode == 0, up.stderr
    old = {k: os.environ.get(k) for k in ("SLURM_CONF", "PYTHONPATH", "FPAR_TOY_STEP_SLEEP")}
    os.environ["SLURM_CONF"] = str(STATE / "etc" / "slurm.conf")
    os.environ["PYTHONPATH"] = str(REPO)  # the jobs import tests.slurm_entries
    yield tmp_path_factory.mktemp("slurm")
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    cluster("stop")


@pytest.fixture
def toy_config(slurm):
    cfg = slurm / "toy.yaml"
    cfg.write_text("seed: 0\ntrain:\n  stages: [{epochs: 2}]\n")
    return cfg


def submit(*args: str) -> int:
    return fpar(["submit", *map(str, args), "--cpus-per-task", "1", "--time", "10"])


def test_start_is_idempotent(slurm):
    before = daemon_pids()
    again = cluster("start")
    assert again.returncode == 0, again.stderr
    assert daemon_pids() == before and len(before) == len(DAEMONS)
    assert all(alive(pid) for pid in before.values())
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True,
                           text=True, check=True).stdout.split("\n")
    assert sorted(line.split()[0] for line in nodes if line) == ["n1", "n2"]


def test_two_node_training_is_one_process_group(slurm, toy_config, monkeypatch):
    monkeypatch.chdir(REPO)
    run = slurm / "two_nodes"
    assert submit(toy_config, "--nodes", 2, "--entry", TOY, "--folder", run, "--wait") == 0
    groups = [json.loads((run / "group" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [g["hostname"] for g in groups] == ["n1", "n2"]
    assert all(g["world_size"] == 2 and g["members"] == ["n1", "n2"] for g in groups)
    placement = json.loads((run / "placement" / "rank1.json").read_text())
    assert placement["MASTER_ADDR"] == "n1" and placement["hostname"] == "n2"
    assert json.loads((run / "final.json").read_text())["step"] == 16


def test_two_node_sparnet_on_shards_trains_and_scores_every_segment(
        slurm, synthetic_epic55_shards, monkeypatch):
    # The real entry (fpar.train.run) on synthetic kitchens' shards, one rank per node.
    monkeypatch.chdir(REPO)
    shards = synthetic_epic55_shards
    run = slurm / "sparnet_two_nodes"
    config = REPO / "configs" / "experiments" / "tiny_cpu.yaml"
    assert submit(config, f"data.train_shards={shards / 'train'}",
                  f"eval.test_splits={{s1: {shards / 's1'}}}", "eval.validate_every_epochs=0",
                  "train.stages=[{epochs: 1}]", "--nodes", 2, "--folder", run, "--wait") == 0
    hosts = [json.loads((run / "placement" / f"rank{r}.json").read_text())["hostname"]
             for r in (0, 1)]
    assert hosts == ["n1", "n2"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] > 0 and "s1" in summary["metrics"]
    from fpar.evaluation import load_scores
    from shards.schema import read_manifest

    ids, _ = load_scores(run / "scores_s1.pt")
    assert len(ids) == len(set(ids)) == read_manifest(shards / "s1")["num_samples"]


def test_sweep_is_one_array_and_collect_builds_the_table(slurm, toy_config, monkeypatch,
                                                         capsys):
    monkeypatch.chdir(REPO)
    sweep_dir = slurm / "sweep"
    assert submit(toy_config, "--entry", TOY, "--folder", sweep_dir,
                  "--sweep", "seed=0,1,2", "--wait") == 0
    job_ids = [word for word in capsys.readouterr().out.split() if re.fullmatch(r"\d+_\d+", word)]
    assert len(job_ids) == 3 and len({j.split("_")[0] for j in job_ids}) == 1
    assert fpar(["collect", str(sweep_dir), "--out", str(slurm / "table")]) == 0
    table = (slurm / "table.md").read_text()
    assert "top1_class" in table and "toy" in table
    row = (slurm / "table.csv").read_text().splitlines()
    assert "top1_class/all/seeds" in row[0] and row[1].split(",")[0] == "toy"
    seeds = row[0].split(",").index("top1_class/all/seeds")
    assert row[1].split(",")[seeds] == "3"


def wait_for_file(path: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.25)


def test_usr2_checkpoints_requeues_and_finishes_like_an_uninterrupted_run(
        slurm, toy_config, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("FPAR_TOY_STEP_SLEEP", "0.4")
    from launcher.submit import SubmitOptions, submit_runs, wait_for

    def options(name: str) -> SubmitOptions:
        return SubmitOptions(config=str(toy_config), nodes=2, cpus_per_task=1, time_min=10,
                             entry=TOY, folder=str(slurm / name))

    # Both fit at once: each node declares two CPUs.
    ref_dir, ref_jobs = submit_runs(options("reference"))
    run_dir, jobs = submit_runs(options("preempted"))
    wait_for_file(run_dir / "checkpoints" / "latest", 90)
    subprocess.run(["scancel", "--signal=USR2", jobs[0].job_id], check=True)
    assert wait_for([*ref_jobs, *jobs]) == 0
    ref = json.loads((ref_dir / "final.json").read_text())
    out = json.loads((run_dir / "final.json").read_text())
    assert out["step"] == ref["step"] == 16
    assert out["weights"] == ref["weights"]
    log = next((run_dir / "submitit").glob("*/*_0_log.out")).read_text()
    assert "Requeued job" in log and log.count("Starting with JobEnvironment") == 2
    group = json.loads((run_dir / "group" / "rank0.json").read_text())
    assert group["resume"] is True  # the requeued start resumed from the checkpoint
    shown = subprocess.run(["scontrol", "show", "job", jobs[0].job_id], capture_output=True,
                           text=True, check=True).stdout
    assert re.search(r"\bRestarts=1\b", shown), shown


def test_stop_is_idempotent_and_leaves_no_daemon(slurm):
    pids = daemon_pids()
    assert len(pids) == len(DAEMONS)
    first, second = cluster("stop"), cluster("stop")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert not any(alive(pid) for pid in pids.values())
    assert daemon_pids() == {}
    status = cluster("status")
    assert status.returncode != 0 and "running" not in status.stdout

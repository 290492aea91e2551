"""The SLURM launcher without a cluster: environment mapping, sweeps, collect, requeue rules,
and one job through submitit's local executor."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fpar.config import ConfigError
from launcher import slurm_env, sweep
from launcher.collect import collect
from launcher.job import TrainJob
from launcher.submit import SubmitOptions, submit_runs

REPO = Path(__file__).resolve().parents[1]


def fake_slurm_task(monkeypatch, job_id="812", rank=1, ntasks=2, nodelist="n[1-2]",
                    restarts=None):
    for key in ("SUBMITIT_EXECUTOR", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                "MASTER_PORT", "OMP_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    env = {"SLURM_JOB_ID": job_id, "SLURM_PROCID": str(rank), "SLURM_LOCALID": "0",
           "SLURM_NTASKS": str(ntasks), "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": str(rank),
           "SLURM_JOB_NODELIST": nodelist, "SLURM_CPUS_PER_TASK": "3"}
    if restarts is not None:
        env["SLURM_RESTART_COUNT"] = str(restarts)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_master_port_is_a_function_of_the_job_id():
    assert slurm_env.master_port("812") == slurm_env.master_port("812")
    assert slurm_env.master_port("812") != slurm_env.master_port("813")
    ports = {slurm_env.master_port(str(j)) for j in range(100, 200)}
    assert len(ports) == 100
    assert all(slurm_env.PORT_BASE <= p < slurm_env.PORT_BASE + slurm_env.PORT_SPAN for p in ports)
    with pytest.raises(ValueError, match="no digits"):
        slurm_env.master_port("abc")


def test_slurm_task_maps_to_the_trainer_variables(monkeypatch):
    fake_slurm_task(monkeypatch, job_id="4321", rank=1, nodelist="gpu[07-08]")
    placement = slurm_env.current_placement()
    assert placement.hostnames == ("gpu07", "gpu08")
    env: dict[str, str] = {}
    values = slurm_env.export(placement, env)
    assert values == env
    assert env["RANK"] == "1" and env["LOCAL_RANK"] == "0" and env["WORLD_SIZE"] == "2"
    assert env["MASTER_ADDR"] == "gpu07"
    assert env["MASTER_PORT"] == str(slurm_env.master_port("4321"))
    assert env["OMP_NUM_THREADS"] == "3"
    assert slurm_env.dist_variables(placement, local=True)["MASTER_ADDR"] == "127.0.0.1"


def test_outside_a_job_the_placement_is_refused(monkeypatch):
    for key in ("SUBMITIT_EXECUTOR", "SLURM_JOB_ID", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="srun"):
        slurm_env.current_placement()


def test_sweep_is_the_cartesian_product_with_named_folders():
    axes = [sweep.parse_axis("seed=0,1,2"), sweep.parse_axis("data.train_shards=a/s1,a/s2")]
    points = sweep.expand(axes)
    assert len(points) == 6
    assert points[0].overrides == ["seed=0", "data.train_shards=a/s1"]
    assert points[1].overrides == ["seed=0", "data.train_shards=a/s2"]
    assert points[1].name == "seed=0,data.train_shards=a_s2"
    assert len({p.name for p in points}) == 6


@pytest.mark.parametrize("text", ["seed", "seed=", "=1,2", "seed=1,,2", "seed=1,1"])
def test_bad_sweep_options_are_refused(text):
    with pytest.raises(ConfigError, match="--sweep"):
        sweep.parse_axis(text)


def test_sweeping_a_key_twice_or_colliding_folders_is_refused():
    with pytest.raises(ConfigError, match="twice"):
        sweep.expand([sweep.parse_axis("seed=1"), sweep.parse_axis("seed=2")])
    with pytest.raises(ConfigError, match="folder"):
        sweep.expand([sweep.parse_axis("x=a/b,a_b")])


def test_a_bad_config_is_never_submitted(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: t\n")
    opts = SubmitOptions(config=str(cfg), sweep=["seed=0,1", "optim.lrr=1,2"],
                         folder=str(tmp_path / "sweep"), local=True)
    with pytest.raises(ConfigError, match="optim.lrr"):
        submit_runs(opts)
    assert not (tmp_path / "sweep").exists()


def test_job_resumes_on_requeue_and_never_requeues_a_config_error(monkeypatch, tmp_path):
    fake_slurm_task(monkeypatch, restarts=1)
    # The job exports the rank variables into this process: registered here so that they
    # are removed afterwards and later tests' child processes do not inherit rank 1 of 2.
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "OMP_NUM_THREADS"):
        monkeypatch.setenv(key, "unset")
    job = TrainJob(str(tmp_path / "missing.yaml"), [], str(tmp_path / "run"))
    resumed = job.checkpoint()
    assert resumed.function.resume is True and resumed.function.run_dir == job.run_dir
    with pytest.raises(ConfigError, match="missing.yaml"):
        job()  # fpar.train.run refuses the config before any process group exists
    assert job.checkpoint() is None
    placement = json.loads((tmp_path / "run" / "placement" / "rank1.json").read_text())
    assert placement["hostnames"] == ["n1", "n2"] and placement["restart_count"] == 1


def write_fake_sweep(root: Path) -> None:
    axes = [sweep.parse_axis("seed=0,1,2"), sweep.parse_axis("split=1,2")]
    points = sweep.expand(axes)
    sweep.write_sweep_file(root, "configs/sparnet.yaml", [], axes, points)
    for p in points:
        values = dict(p.values)
        if values == {"seed": "2", "split": "2"}:
            continue  # an unfinished run
        top1 = 10 * int(values["split"]) + int(values["seed"])
        (root / p.name).mkdir(parents=True)
        (root / p.name / "metrics.json").write_text(json.dumps(
            {"format": "egtea", "splits": {"test": {"top1": top1, "top5": 90.0}}}))


def test_collect_tabulates_seeds_per_split_then_the_mean(tmp_path):
    write_fake_sweep(tmp_path)
    md, csv_path = collect(tmp_path)
    text = md.read_text()
    assert "sparnet" in text
    assert "11.00 ± 1.00" in text  # split 1: seeds 10, 11, 12
    assert "20.50 ± 0.71" in text  # split 2: seeds 20, 21 (third unfinished)
    row = next(csv.DictReader(csv_path.open()))
    assert float(row["top1/split=1/mean"]) == pytest.approx(11.0)
    assert int(row["top1/split=2/seeds"]) == 2
    assert float(row["top1/mean/mean"]) == pytest.approx((11.0 + 20.5) / 2)
    assert "top5" not in row.get("metric", "") and not any(k.startswith("top5") for k in row)


def test_collect_without_any_metrics_names_the_folder(tmp_path):
    axes = [sweep.parse_axis("seed=0")]
    sweep.write_sweep_file(tmp_path, "x.yaml", [], axes, sweep.expand(axes))
    with pytest.raises(ValueError, match="no run has metrics"):
        collect(tmp_path)
    with pytest.raises(FileNotFoundError, match="sweep.json"):
        collect(tmp_path / "elsewhere")


def test_local_executor_runs_a_two_rank_process_group(tmp_path, monkeypatch):
    """`--local`: the same job through submitit's local executor (two tasks, gloo)."""
    monkeypatch.chdir(REPO)
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: probe\n")
    opts = SubmitOptions(config=str(cfg), folder=str(tmp_path / "run"), local=True,
                         tasks_per_node=2, entry="launcher.probe:run", time_min=5)
    folder, jobs = submit_runs(opts)
    results = jobs[0].results()
    assert sorted(r["rank"] for r in results) == [0, 1]
    assert all(r["world_size"] == 2 and r["rank_sum"] == 1 for r in results)
    assert all(r["master_addr"] == "127.0.0.1" for r in results)
    assert (folder / "probe" / "rank1.json").is_file()


def test_trust_checkpoint_reaches_the_entry_only_when_asked_and_survives_a_requeue(monkeypatch, tmp_path):
    import argparse

    from launcher import submit

    fake_slurm_task(monkeypatch, restarts=0)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS"):
        monkeypatch.setenv(key, "unset")
    (tmp_path / "probe_entry.py").write_text(
        "def run(config, overrides, run_dir, resume, **options):\n    return resume, options\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    trusted = TrainJob("c.yaml", [], str(tmp_path / "run"), entry="probe_entry:run", trust_checkpoint=True)
    assert trusted() == (False, {"trust_checkpoint": True})
    requeued = trusted.checkpoint().function
    assert requeued.resume is True and requeued.trust_checkpoint is True
    # Without the flag an entry of the four-argument form is called as before.
    assert TrainJob("c.yaml", [], str(tmp_path / "run"), entry="probe_entry:run")() == (False, {})
    # fpar submit --trust-checkpoint sets it; without it, checkpoints are read weights-only.
    parser = argparse.ArgumentParser()
    submit.register(parser.add_subparsers())
    assert submit._options(parser.parse_args(["submit", "c.yaml", "--trust-checkpoint"])).trust_checkpoint
    assert not submit._options(parser.parse_args(["submit", "c.yaml"])).trust_checkpoint

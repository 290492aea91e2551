"""``fpar shards build --slurm``: the decode step of a shard build as a SLURM job array.

The submitting command plans the build (``shards.build.plan_build``: the videos left to
decode in N groups balanced by video time, ``OUT/staging/plan.json``), submits through
submitit one array of N decode tasks (``shards.build_tasks.decode_group``, each with
``--cpus-per-task`` worker processes) and one finish job that depends on the whole array
(``afterany``) and runs ``shards.build.finish_build``: it writes the shards and the
manifest if every task marked itself done, and fails without writing anything otherwise.
The finish job, not the submitting command, writes the shards, so ``--no-wait`` builds
complete on their own. Every task writes only its own folder of the shared ``OUT``.

A decode task requeued by SLURM (preemption, time limit with its warning signal) keeps the
samples it staged. Running the same command again plans anew from what is on disk: only
the segments found neither staged nor in shards are decoded again.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import sys
import time
from pathlib import Path
from typing import Any

import submitit

from fpar.config import ConfigError
from shards.files import atomic_write_json, read_json

log = logging.getLogger(__name__)

JOBS_NAME = "slurm_build.json"  # in OUT: the last submission's job ids and log folder
# States after which a SLURM job does nothing more (sacct's first word).
# A preempted or requeued task is not ended: SLURM runs it again.
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
         "DEADLINE", "REVOKED"}
PRINT_EVERY_S = 30.0
RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT"}


@dataclasses.dataclass
class SlurmBuildOptions:
    """Resources of the array (the SLURM options of ``fpar shards build``)."""

    tasks: int = 8
    cpus_per_task: int = 1  # also each task's worker processes
    partition: str | None = None
    time_min: int = 120
    account: str | None = None
    mem_gb: float | None = None
    signal_delay_s: int = 90
    array_parallelism: int = 256

    def __post_init__(self) -> None:
        if self.tasks < 1 or self.cpus_per_task < 1 or self.time_min < 1:
            raise ValueError("--tasks, --cpus-per-task and --time must be at least 1")


class DecodeTask:
    """One array task: ``decode_group`` of its group; requeued, it keeps what it staged."""

    def __init__(self, out: str, task: int, workers: int, plan_id: str):
        self.out, self.task, self.workers, self.plan_id = out, task, workers, plan_id

    def __call__(self) -> dict:
        from shards.build_tasks import decode_group

        return decode_group(self.out, self.task, self.workers, self.plan_id)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self)


class FinishTask:
    """The job after the array: writes the shards and the manifest (``finish_build``)."""

    def __init__(self, cfg, plan_id: str):
        self.cfg, self.plan_id = cfg, plan_id

    def __call__(self) -> dict:
        from shards.build import finish_build

        report = finish_build(self.cfg, plan_id=self.plan_id)
        return {"planned": report.planned, "written": report.written, "failed": len(report.failures)}


def _executor(folder: Path, opts: SlurmBuildOptions, name: str, cpus: int, **extra) -> submitit.AutoExecutor:
    from launcher.submit import executor_parameters

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**executor_parameters(opts, name=name, cpus_per_task=cpus, nodes=1,
                                                     tasks_per_node=1, **extra))
    return executor


def _check_no_live_jobs(out: Path) -> None:
    path = out / JOBS_NAME
    if not path.is_file():
        return
    record = read_json(path)
    states = job_states(record)
    live = [job for job, state in states.items() if state not in ENDED and state != "UNKNOWN"]
    if live:
        raise ConfigError(f"{out}: jobs of an earlier submission still run ({', '.join(live[:5])}): "
                          f"follow them with `fpar shards status {out}`, or scancel them first")


def submit_build(cfg, opts: SlurmBuildOptions, restart: bool = False) -> dict:
    """Plans the build and submits the decode array and the finish job.

    Returns:
        The submission record (also in ``OUT/slurm_build.json``): ``array`` (job id, absent
        when nothing is left to decode), ``tasks``, ``finish`` (job id), ``plan``, ``logs``.

    Raises:
        ConfigError: as ``plan_build``, or when jobs of an earlier submission still run.
    """
    from shards.build import plan_build

    out = Path(cfg.out).resolve()
    cfg = dataclasses.replace(cfg, out=str(out))
    _check_no_live_jobs(out)
    plan = plan_build(cfg, opts.tasks, restart=restart)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    logs = out / "slurm_logs" / stamp  # outside staging/: the finish job removes staging/
    name = f"fpar-shards-{cfg.format}-{cfg.split}"
    record: dict[str, Any] = {"plan": plan["plan"], "tasks": len(plan["tasks"]), "logs": str(logs)}
    dependency = {}
    if plan["tasks"]:
        decode = _executor(logs, opts, name, opts.cpus_per_task)
        with decode.batch():
            jobs = [decode.submit(DecodeTask(str(out), i, opts.cpus_per_task, plan["plan"]))
                    for i in range(len(plan["tasks"]))]
        record["array"] = jobs[0].job_id.split("_")[0]
        dependency = {"slurm_additional_parameters": {"dependency": f"afterany:{record['array']}"}}
    finish = _executor(logs, opts, f"{name}-finish", 1, **dependency).submit(FinishTask(cfg, plan["plan"]))
    record["finish"] = finish.job_id
    atomic_write_json(out / JOBS_NAME, record)
    return record


def job_states(record: dict) -> dict[str, str]:
    """SLURM state of every job of a submission (``ARRAY_i`` per task, then the finish job)."""
    ids = [f"{record['array']}_{i}" for i in range(record["tasks"])] if record.get("array") else []
    ids.append(record["finish"])
    watcher = submitit.SlurmJob.watcher
    for job_id in ids:
        watcher.register_job(job_id)
    watcher.update()  # one sacct call for the whole submission
    return {job_id: (watcher.get_state(job_id, mode="cache").split() or ["UNKNOWN"])[0] for job_id in ids}


def progress_line(out: Path, record: dict | None, started: float | None = None, start_staged: int = 0,
                  status=None) -> str:
    """One line on the build: segments staged of planned, failures, tasks by state, ETA.
    ``status`` is the build's progress when the caller already read it."""
    from shards.build_tasks import build_status

    status = status or build_status(out)
    if status.finished:
        manifest = status.manifest
        return (f"{out}: finished: {manifest['num_samples']} samples of {manifest['num_segments']} segments, "
                f"{len(manifest['failures'])} failed, {len(manifest['shards'])} shards")
    line = (f"{out}: staged {status.staged} of {status.segments} segments to decode "
            f"({status.already_done} done earlier), {status.failed} failed")
    done = sum(t.done for t in status.tasks)
    if record and record.get("plan") == status.plan_id:
        states = job_states(record)
        tasks = [s for j, s in states.items() if j != record["finish"]]
        running = sum(s in RUNNING for s in tasks)
        completed = sum(s == "COMPLETED" for s in tasks)
        bad = sum(s in ENDED for s in tasks) - completed
        line += (f"; tasks: {running} running, {len(tasks) - running - completed - bad} pending, {completed} "
                 f"completed, {bad} failed or cancelled; finish job {states[record['finish']].lower()}")
    else:
        line += f"; tasks: {done} of {len(status.tasks)} done"
    left = status.segments - status.staged - status.failed
    if started is not None and left > 0:
        rate = (status.staged + status.failed - start_staged) / max(time.time() - started, 1e-6)
        line += f"; ETA {datetime.timedelta(seconds=round(left / rate))}" if rate > 0 else "; ETA -"
    return line


def wait_build(out: Path, record: dict, poll_s: float = 5.0) -> int:
    """Shows progress until the finish job ends; 0 when every segment was written, 1 else."""
    from shards.build_tasks import build_status

    started, first = time.time(), None
    last, shown, printed = "", "", 0.0
    while True:
        states = job_states(record)
        if first is None:
            status = build_status(out)
            first = 0 if status.finished else status.staged + status.failed
        line = progress_line(out, record, started, first)
        # A line when the tasks' states change, else at most every PRINT_EVERY_S seconds.
        tasks = line.partition("; tasks: ")[2].partition("; ETA")[0]
        ended = states[record["finish"]] in ENDED
        if line != last and (tasks != shown or ended or time.time() - printed >= PRINT_EVERY_S):
            print(line, file=sys.stderr, flush=True)
            last, shown, printed = line, tasks, time.time()
        if ended:
            break
        time.sleep(poll_s)
    manifest = out / "manifest.json"
    if states[record["finish"]] != "COMPLETED" or not manifest.is_file():
        bad = {j: s for j, s in states.items() if s != "COMPLETED"}
        print(f"fpar shards build: the build did not finish ({', '.join(f'{j} {s}' for j, s in bad.items())}); "
              f"no manifest was written. Logs: {record['logs']}. Run the same command again to resume: "
              "what was staged is kept", file=sys.stderr)
        return 1
    failures = read_json(manifest)["failures"]
    for failure in failures[:10]:
        print(f"  failed {failure['segment_id']} ({failure['video_id']}): {failure['reason']}", file=sys.stderr)
    if len(failures) > 10:
        print(f"  ... and {len(failures) - 10} more (fpar shards info {out})", file=sys.stderr)
    return 1 if failures else 0


def build_on_slurm(cfg, opts: SlurmBuildOptions, restart: bool = False, wait: bool = True) -> int:
    """Submits the build; with ``wait`` follows it to the end (exit status as a local build)."""
    record = submit_build(cfg, opts, restart)
    out = Path(cfg.out).resolve()
    print(f"decode array {record.get('array', '-')} ({record['tasks']} tasks), finish job {record['finish']}; "
          f"logs {record['logs']}")
    if not wait:
        print(f"follow it with: fpar shards status {out}")
        return 0
    try:
        return wait_build(out, record)
    except KeyboardInterrupt:
        print(f"stopped waiting; the jobs go on (fpar shards status {out}; scancel to stop them)", file=sys.stderr)
        return 130


def show_status(out: str | Path) -> int:
    """``fpar shards status OUT``: prints the progress line; 0 once the build finished with
    every segment written, 1 otherwise (unfinished, or segments failed)."""
    from shards.build_tasks import build_status

    out = Path(out).resolve()
    path = out / JOBS_NAME
    # One reading for the line and the exit status: the finish job may end between two.
    status = build_status(out)
    print(progress_line(out, read_json(path) if path.is_file() else None, status=status))
    return 0 if status.finished and not status.manifest["failures"] else 1

"""The decoding phase as tasks: the plan's groups of videos, one task per group.

:func:`write_plan` splits the videos still to decode into groups balanced by the video
time each must decode (a video is never split) and writes them to ``staging/plan.json``
under a fresh plan id. :func:`decode_group` is one task: it stages the samples of its
group's videos in its own folder with a local worker pool, records failures in its own
file and marks itself done. :func:`build_status` reads the progress of every task from
those files alone. The local build runs one task; a SLURM array runs one per array task.
"""

from __future__ import annotations

import heapq
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shards import staging as stg
from shards.build_pool import WorkerPool
from shards.config_base import ConfigError
from shards.files import atomic_write_json, read_json
from shards.schema import MANIFEST_NAME
from shards.worker import SegmentTask, WorkerSettings, WorkUnit


def unit_seconds(unit: WorkUnit) -> float:
    """The video time a unit decodes: the sum of its segments' durations."""
    return sum(max(s.stop_time - s.start_time, 0.0) for s in unit.segments)


def group_units(units: list[WorkUnit], tasks: int) -> list[list[WorkUnit]]:
    """Up to ``tasks`` groups of whole units, balanced by :func:`unit_seconds` (longest
    first onto the least loaded group); each group in unit order, no group empty."""
    if tasks < 1:
        raise ValueError(f"tasks must be >= 1, got {tasks}")
    count = min(tasks, len(units))
    heap = [(0.0, i) for i in range(count)]
    groups: list[list[WorkUnit]] = [[] for _ in range(count)]
    for unit in sorted(units, key=lambda u: (-unit_seconds(u), u.unit_id)):
        load, i = heapq.heappop(heap)
        groups[i].append(unit)
        heapq.heappush(heap, (load + unit_seconds(unit), i))
    return [sorted(g, key=lambda u: u.unit_id) for g in groups]


def _unit_from_dict(data: dict) -> WorkUnit:
    segments = [SegmentTask(**s) for s in data.pop("segments")]
    return WorkUnit(**data, segments=segments)


def read_plan(staging: Path) -> dict:
    """``staging/plan.json``; ConfigError when there is none."""
    path = staging / stg.PLAN_NAME
    if not path.is_file():
        raise ConfigError(f"{staging.parent}: no planned build here (no {path}); run fpar shards build first")
    return read_json(path)


def _process_start(pid: int) -> str | None:
    """The start time of a process (tells a live owner from a later process with its pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _owner_alive(plan: dict) -> bool:
    """Whether the process that wrote the plan still runs (only known on its own machine)."""
    owner = plan.get("owner") or {}
    if owner.get("host") != socket.gethostname() or owner.get("pid") == os.getpid():
        return False
    return owner.get("start") is not None and _process_start(int(owner["pid"])) == owner["start"]


def write_plan(staging: Path, units: list[WorkUnit], tasks: int, settings: dict, already_done: int) -> dict:
    """Groups the pending units into tasks and writes ``plan.json`` (replacing an earlier
    one: earlier failures and done marks no longer count, staged samples do).

    Raises:
        ConfigError: when a build started on this machine is still running here.
    """
    path = staging / stg.PLAN_NAME
    if path.is_file():
        old = read_json(path)
        if _owner_alive(old):
            raise ConfigError(f"{staging.parent}: another build is writing here (pid {old['owner']['pid']})")
    groups = group_units(units, tasks) if units else []
    plan = {
        "plan": uuid.uuid4().hex,
        "created": time.time(),
        "owner": _owner(),
        "settings": settings,
        "already_done": already_done,
        "segments": sum(len(u.segments) for u in units),
        "tasks": [
            {"videos": len(g), "segments": sum(len(u.segments) for u in g), "seconds": round(sum(map(unit_seconds, g)), 3),
             "units": [asdict(u) for u in g]}
            for g in groups
        ],
    }
    atomic_write_json(path, plan)
    return plan


def decode_group(out: str | Path, task: int, workers: int = 1, plan_id: str | None = None,
                 progress: bool = False) -> dict:
    """Runs task ``task`` of the folder's plan: stages its videos' samples in its own folder.

    A task run again (requeued, preempted) keeps the samples it staged and decodes the rest.

    Returns:
        ``{plan, staged, failed, kept}``: samples of its group staged, failures (as in its
        ``done.json``), and the samples found staged when it started (kept from a run before).

    Raises:
        ConfigError: when the plan is not ``plan_id`` (a newer build replaced it) or the
            task folder is not fpar's.
    """
    staging = stg.staging_dir(out)
    plan = read_plan(staging)
    if plan_id is not None and plan["plan"] != plan_id:
        raise ConfigError(f"{out}: the build was planned again since this task was submitted; it has nothing to do")
    if not 0 <= task < len(plan["tasks"]):
        raise ConfigError(f"{out}: the plan has {len(plan['tasks'])} tasks, not task {task}")
    folder = stg.claim_task(staging, task)
    units = [_unit_from_dict(dict(u)) for u in plan["tasks"][task]["units"]]
    have = {p.name[: -len(".tar")] for p in folder.glob("*.tar")}
    todo = []
    for unit in units:
        segments = [s for s in unit.segments if s.key not in have]
        if segments:
            todo.append(WorkUnit(unit.unit_id, unit.video_id, unit.source, unit.kind, unit.error, segments))
    failures = stg.FailureLog(folder, plan["plan"])
    settings = WorkerSettings(staging_dir=str(folder), parent_pid=os.getpid(), **plan["settings"])
    label = f"{settings.dataset} {settings.split}"
    WorkerPool(workers, settings, label, failures).execute(todo, progress)
    keys = {s.key for u in units for s in u.segments}
    staged = len(keys & {p.name[: -len(".tar")] for p in folder.glob("*.tar")})
    stg.mark_done(folder, plan["plan"], staged, failures.count)
    return {"plan": plan["plan"], "staged": staged, "failed": failures.count, "kept": len(keys & have)}


@dataclass
class TaskProgress:
    task: int
    videos: int
    segments: int
    staged: int
    failed: int
    done: bool


@dataclass
class BuildProgress:
    """Where a build stands, from its files alone."""

    out: Path
    finished: bool  # manifest.json written and staging gone
    plan_id: str | None = None
    created: float = 0.0
    already_done: int = 0
    segments: int = 0  # segments this plan decodes
    tasks: list[TaskProgress] = field(default_factory=list)
    manifest: dict | None = None

    @property
    def staged(self) -> int:
        return sum(t.staged for t in self.tasks)

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.tasks)


def build_status(out: str | Path) -> BuildProgress:
    """Progress of the build in ``out``: per task, segments staged and failed, and done."""
    out = Path(out)
    staging = stg.staging_dir(out)
    plan_path = staging / stg.PLAN_NAME
    if not plan_path.is_file():
        manifest = read_json(out / MANIFEST_NAME) if (out / MANIFEST_NAME).is_file() else None
        if manifest is None:
            raise ConfigError(f"{out}: no shard build here (neither {stg.PLAN_NAME} in staging/ nor {MANIFEST_NAME})")
        return BuildProgress(out, finished=True, manifest=manifest)
    plan = read_json(plan_path)
    progress = BuildProgress(out, finished=False, plan_id=plan["plan"], created=plan["created"],
                             already_done=plan["already_done"], segments=plan["segments"])
    failed = stg.failed_by_task(staging, plan["plan"])
    for i, task in enumerate(plan["tasks"]):
        folder = stg.task_dir(staging, i)
        keys = {s["key"] for u in task["units"] for s in u["segments"]}
        staged = len(keys & {p.name[: -len(".tar")] for p in folder.glob("*.tar")}) if folder.is_dir() else 0
        progress.tasks.append(TaskProgress(i, task["videos"], task["segments"], staged, len(failed.get(folder.name, ())),
                                           stg.read_done(folder, plan["plan"]) is not None))
    return progress

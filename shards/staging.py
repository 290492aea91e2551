"""The staging folder of a build: fpar's own, one folder per decode task, all state on disk.

``OUT/staging/`` holds ``plan.json`` (the groups of videos each decode task takes, under a
fresh plan id per run) and one folder per task, ``task-NNNNN/``: the samples it staged
(``KEY.tar`` each), ``failures.jsonl`` (one line per failed segment, tagged with the plan
id) and ``done.json`` once its group is finished. A task writes only in its own folder, so
the tasks may run on any machines that share the filesystem; nothing is held in a lock or
in one process's memory.

fpar marks every staging folder it creates (:data:`MARKER`) and deletes only marked ones:
an ``OUT/staging/`` (or a task folder inside it) that fpar did not create stops the build
and is left as it is.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from shards.config_base import ConfigError
from shards.files import atomic_write_json, read_json
from shards.writer import STAGING_DIR, TMP_SUFFIX

log = logging.getLogger(__name__)

MARKER = ".fpar-staging"
PLAN_NAME = "plan.json"
FAILURES_NAME = "failures.jsonl"
DONE_NAME = "done.json"
TASK_PREFIX = "task-"
# Files fpar writes at the top of a staging folder (removed with it).
OWN_FILES = (MARKER, PLAN_NAME)


def staging_dir(out: str | Path) -> Path:
    return Path(out) / STAGING_DIR


def task_dir(staging: Path, task: int) -> Path:
    return staging / f"{TASK_PREFIX}{task:05d}"


def _mark(folder: Path) -> None:
    (folder / MARKER).write_text("created by fpar shards build; deleted with this folder when the build finishes\n")


def is_marked(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def _foreign(folder: Path) -> ConfigError:
    return ConfigError(
        f"{folder} exists but was not created by fpar (it has no {MARKER} file): fpar stages "
        "samples there and deletes that folder when the build ends. Move or rename it (or build "
        "into another --out), then run the same command again; it was left as it is"
    )


def claim(out: str | Path) -> Path:
    """The build's staging folder, created and marked if absent.

    Raises:
        ConfigError: when ``OUT/staging`` or a task folder in it was not created by fpar.
    """
    staging = staging_dir(out)
    if staging.exists():
        if not (staging.is_dir() and is_marked(staging)):
            raise _foreign(staging)
        for child in staging.iterdir():
            if child.name.startswith(TASK_PREFIX) and not (child.is_dir() and is_marked(child)):
                raise _foreign(child)
        return staging
    staging.mkdir(parents=True)
    _mark(staging)
    return staging


def claim_task(staging: Path, task: int) -> Path:
    """A task's folder, created and marked if absent (a foreign one raises ConfigError)."""
    folder = task_dir(staging, task)
    if folder.exists():
        if not (folder.is_dir() and is_marked(folder)):
            raise _foreign(folder)
        return folder
    folder.mkdir()
    _mark(folder)
    return folder


def task_dirs(staging: Path) -> list[Path]:
    """The marked task folders of a staging folder, in task order."""
    if not staging.is_dir():
        return []
    return sorted(p for p in staging.iterdir() if p.name.startswith(TASK_PREFIX) and is_marked(p))


def remove(staging: Path) -> bool:
    """Deletes a staging folder fpar marked: its marked task folders and fpar's own files.

    Anything else found in it is kept (with the folder) and logged. Returns whether the
    folder is gone; an unmarked folder is never touched.
    """
    if not staging.is_dir() or not is_marked(staging):
        return not staging.exists()
    for folder in task_dirs(staging):
        shutil.rmtree(folder)
    left = [p.name for p in staging.iterdir() if p.name not in OWN_FILES]
    if left:
        log.warning("kept %s: it holds files fpar did not write there (%s)", staging, ", ".join(sorted(left)[:5]))
        return False
    for name in OWN_FILES:
        (staging / name).unlink(missing_ok=True)
    staging.rmdir()
    return True


def staged_samples(staging: Path, clean: bool = True) -> dict[str, Path]:
    """Every complete staged sample of every task folder, by key.

    With ``clean`` the unfinished ``.tmp`` files are deleted (only when no task runs).
    """
    found: dict[str, Path] = {}
    for folder in task_dirs(staging):
        for path in folder.iterdir():
            if path.name.endswith(TMP_SUFFIX):
                if clean:
                    path.unlink(missing_ok=True)
            elif path.suffix == ".tar":
                found.setdefault(path.name[: -len(".tar")], path)
    return found


class FailureLog:
    """A task's failed segments, one JSON line each, appended durably."""

    def __init__(self, folder: Path, plan_id: str):
        self.path, self.plan_id = folder / FAILURES_NAME, plan_id
        self.count = 0

    def append(self, failure: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"plan": self.plan_id, **failure}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.count += 1


def _failure_lines(staging: Path, plan_id: str):
    """(task folder, record) of every failure recorded under ``plan_id`` (torn lines skipped)."""
    for folder in task_dirs(staging):
        path = folder / FAILURES_NAME
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.pop("plan", None) == plan_id:
                yield folder, record


def read_failures(staging: Path, plan_id: str) -> list[dict]:
    """The failures every task recorded under ``plan_id``, one per segment (the last kept)."""
    return list({record["segment_id"]: record for _, record in _failure_lines(staging, plan_id)}.values())


def failed_by_task(staging: Path, plan_id: str) -> dict[str, set[str]]:
    """Segment ids recorded as failed under ``plan_id``, by task folder name."""
    failed: dict[str, set[str]] = {}
    for folder, record in _failure_lines(staging, plan_id):
        failed.setdefault(folder.name, set()).add(record["segment_id"])
    return failed


def mark_done(folder: Path, plan_id: str, staged: int, failed: int) -> None:
    atomic_write_json(folder / DONE_NAME, {"plan": plan_id, "staged": staged, "failed": failed})


def read_done(folder: Path, plan_id: str) -> dict | None:
    """A task folder's ``done.json`` when it belongs to ``plan_id``, else None."""
    path = folder / DONE_NAME
    if not path.is_file():
        return None
    done = read_json(path)
    return done if done.get("plan") == plan_id else None

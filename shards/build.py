"""Building a split's shards: plan, decode, lay out, resume, failures, manifest.

Three steps, the same whoever runs them (:func:`build_shards` on this machine, a SLURM
job array from ``launcher.shards_slurm``). :func:`plan_build`: the split's segments,
grouped by video into work units so that each video is opened once, and those not done yet
are split into groups, one per decode task (:mod:`shards.build_tasks`). Decoding: each task
stages one small tar per sample in its own folder of ``staging/`` with worker processes
(:mod:`shards.build_pool`). :func:`finish_build`: once every task is done, the shards are
written from the staged samples in the seeded layout of :mod:`shards.layout` (every shard a
random sample of the split), journalled one by one (:mod:`shards.writer`); ``manifest.json``
comes last and the staging folder is removed. The shards and the manifest are a function
of the annotations, the build options and ``seed`` alone, not of the tasks or workers.

Resuming: ``build.json`` records the content parameters and a fingerprint of the planned
segment keys; a re-run into the same folder must match them. It keeps the journalled
shards and the staged samples, decodes only the segments found in neither, and writes the
shards that are missing or out of date. Segments that failed are tried again (their
failures are recorded anew).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from shards.config_base import ConfigError, to_dict
from shards.datasets import get_dataset
from shards.decode import index_videos
from shards.files import atomic_write_json, read_json
from shards.motion import MotionConfig
from shards.schema import DEFAULT_FRAMES, DEFAULT_SHORT_SIDE, JPEG_QUALITY, MANIFEST_NAME, SCHEMA_VERSION, changes_since, sample_key, segment_id_from_key
from shards import staging as stg
from shards.build_tasks import decode_group, read_plan, write_plan
from shards.layout import DEFAULT_SHARD_SAMPLES, plan_layout, write_shards
from shards.worker import SegmentTask, WorkUnit
from shards.writer import Journal, recover, sweep

log = logging.getLogger(__name__)

BUILD_STATE_NAME = "build.json"
# Parameters that change the content or layout of the shards: a resumed build must use the
# same ones, and the manifest records them (not the folder or the worker count).
CONTENT_PARAMS = ("format", "split", "frames", "short_side", "flow", "jpeg_quality", "motion", "shard_samples", "seed")
MANIFEST_PARAMS = ("root", "annotations", *CONTENT_PARAMS)


@dataclass
class BuildConfig:
    """Everything that defines a shard build (saved in the manifest as ``params``)."""

    format: str  # a registered dataset (shards.datasets)
    root: str
    annotations: str
    split: str
    out: str
    workers: int = 1
    frames: int = DEFAULT_FRAMES
    short_side: int = DEFAULT_SHORT_SIDE
    flow: bool = False
    shard_samples: int = DEFAULT_SHARD_SAMPLES  # samples per shard (the last one fewer)
    seed: int = 0  # seed of the layout: which samples each shard holds, in which order
    jpeg_quality: int = JPEG_QUALITY
    motion: MotionConfig = field(default_factory=MotionConfig)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.frames < 1 or self.short_side < 8 or self.shard_samples < 1:
            raise ValueError("workers, frames and shard_samples must be >= 1, short_side >= 8")
        get_dataset(self.format)  # an unknown name fails here, with the closest known one


@dataclass
class BuildReport:
    """What a build did."""

    out: Path
    planned: int
    written: int  # samples written by this run
    already_done: int  # samples found in finished shards of an earlier run
    failures: list[dict]
    shards: int
    seconds: float
    clamped: int = 0  # segments (of the whole folder) whose stop was moved to the video's end

    @property
    def ok(self) -> bool:
        return not self.failures


def plan_units(segments, cfg: BuildConfig) -> list[WorkUnit]:
    """Groups the segment table by video into sorted work units (sources not located yet).

    Raises:
        ValueError: when two segments share a sample key (duplicate segment ids).
    """
    missing = [c for c in ("start_time", "stop_time") if c not in segments.columns]
    if missing:
        raise ValueError(f"segment table has no {' or '.join(missing)} column: a segment's frames are found from its time")
    rows = segments.sort_values(["video_id", "start_time", "stop_time", "segment_id"], kind="stable")
    units: dict[str, WorkUnit] = {}
    keys: dict[str, str] = {}
    for row in rows.itertuples(index=False):
        seg_id = str(row.segment_id)
        key = sample_key(seg_id)
        if key in keys:
            raise ValueError(f"segment id {seg_id!r} appears twice in {cfg.format} {cfg.split} (or maps to the same key as {keys[key]!r})")
        keys[key] = seg_id
        video = str(row.video_id)
        unit = units.setdefault(video, WorkUnit(len(units), video, None, "video"))
        if getattr(row, "frame_dir", None):
            unit.kind, unit.source = "folder", str(row.frame_dir)
        unit.segments.append(
            SegmentTask(
                key, seg_id, video, str(row.participant), int(row.start_frame), int(row.stop_frame),
                float(row.start_time), float(row.stop_time),
                float(row.fps), int(row.verb_class), int(row.noun_class), int(row.class_id),
            )
        )
    return list(units.values())


def locate_sources(units: list[WorkUnit], cfg: BuildConfig) -> None:
    """Finds each unit's video ``<video_id>.mp4|.MP4`` under the root (one walk), or its
    frame folder; a unit whose source is missing or ambiguous gets ``error`` set."""
    root = Path(cfg.root)
    frame_folder = get_dataset(cfg.format).frame_folder
    if frame_folder is not None:
        for unit in units:
            if unit.source is None:
                unit.source = str(frame_folder(root, unit.video_id))
            unit.kind = "folder"
        return
    videos = index_videos(root) if any(u.source is None for u in units) else {}
    for unit in units:
        if unit.source is not None:
            continue
        found = videos.get(unit.video_id, [])
        if not found:
            unit.error = f"no video file {unit.video_id}.mp4 or .MP4 under {root}"
        elif len(found) > 1:
            unit.error = f"ambiguous: {len(found)} files for {unit.video_id}: {', '.join(map(str, found[:3]))}"
        else:
            unit.source = str(found[0])


def _fingerprint(units: list[WorkUnit]) -> str:
    keys = sorted(s.key for u in units for s in u.segments)
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def _check_state(out: Path, cfg: BuildConfig, fingerprint: str) -> None:
    """Writes ``build.json`` on a first run; on a re-run, refuses a different build."""
    path = out / BUILD_STATE_NAME
    params = {k: v for k, v in to_dict(cfg).items() if k in CONTENT_PARAMS}
    state = {"schema_version": SCHEMA_VERSION, "params": params, "segments_sha256": fingerprint}
    if path.is_file():
        old = read_json(path)
        if old.get("schema_version") != SCHEMA_VERSION:
            raise ConfigError(
                f"{out} holds a partial build of shard schema v{old.get('schema_version')}, this builder "
                f"writes v{SCHEMA_VERSION} ({changes_since(old.get('schema_version'))}); "
                "it cannot be resumed: rebuild with --restart (or another --out)"
            )
        diffs = [k for k in state if old.get(k) != state[k]]
        if diffs:
            detail = []
            for k in diffs:
                if k == "params":
                    detail += [f"{p}: {old['params'].get(p)!r} -> {params[p]!r}" for p in params if old.get("params", {}).get(p) != params[p]]
                else:
                    detail.append(k)
            raise ConfigError(
                f"{out} holds a build with other settings ({'; '.join(detail)}); "
                f"continue it with the options it was started with (its {BUILD_STATE_NAME} lists them), "
                "use another --out, or --restart to delete it and start over"
            )
        return
    atomic_write_json(path, state)


def clear_output(out: Path, cfg: BuildConfig) -> None:
    """Deletes this dataset/split's shards, journal, state and manifest from ``out``, and
    the staging folder if fpar made it.

    Raises:
        ConfigError: when ``OUT/staging`` was not made by fpar (nothing is deleted then).
    """
    staging = stg.staging_dir(out)
    if staging.exists():
        stg.claim(out)  # refuses a foreign folder before anything is deleted
    sweep(out, cfg.format, cfg.split, keep=set())
    for name in (BUILD_STATE_NAME, MANIFEST_NAME, Journal(out).path.name):
        (out / name).unlink(missing_ok=True)
    stg.remove(staging)


def _load_units(cfg: BuildConfig, segments) -> list[WorkUnit]:
    if segments is None:
        from shards.annotations import load_segments

        segments = load_segments(cfg.format, cfg.annotations, cfg.split, root=cfg.root)
    return plan_units(segments, cfg)


def plan_build(cfg: BuildConfig, tasks: int = 1, segments=None, restart: bool = False) -> dict:
    """The first step of a build: checks the folder, finds what is left to decode, and
    writes the plan of ``tasks`` decode tasks (:func:`shards.build_tasks.write_plan`).

    Returns:
        The plan (``plan.json``); its ``tasks`` may be fewer than asked (one video each at
        least), none when everything is already staged or in shards.

    Raises:
        ConfigError: when ``cfg.out`` holds a build with other settings, a staging folder
            fpar did not make, or a build running on this machine.
    """
    units = _load_units(cfg, segments)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if restart:
        clear_output(out, cfg)
    _check_state(out, cfg, _fingerprint(units))
    staging = stg.claim(out)
    records, _ = recover(out, cfg.format, cfg.split)
    done = {k for r in records for k in r.keys} | set(stg.staged_samples(staging))
    pending = []
    for unit in units:
        todo = [s for s in unit.segments if s.key not in done]
        if todo:
            pending.append(WorkUnit(unit.unit_id, unit.video_id, unit.source, unit.kind, unit.error, todo))
    locate_sources(pending, cfg)
    settings = {
        "dataset": cfg.format, "split": cfg.split, "frames": cfg.frames, "short_side": cfg.short_side,
        "flow": cfg.flow, "jpeg_quality": cfg.jpeg_quality, "motion": to_dict(cfg.motion),
    }
    return write_plan(staging, pending, tasks, settings, len(done))


def build_shards(cfg: BuildConfig, segments=None, restart: bool = False, progress: bool = True) -> BuildReport:
    """Builds (or resumes) the shards of one split on this machine: plan, one decode task
    over ``cfg.workers`` processes, finish.

    Args:
        cfg: The build configuration.
        segments: The segment table; default ``shards.annotations.load_segments``.
        restart: Delete an earlier build of this dataset/split in ``cfg.out`` first.
        progress: Show a tqdm progress bar (segments/s and ETA).

    Returns:
        The :class:`BuildReport`; ``manifest.json`` is written in ``cfg.out``.

    Raises:
        ConfigError: when ``cfg.out`` holds a build with other settings or is in use.
    """
    started = time.monotonic()
    if segments is None:
        from shards.annotations import load_segments

        segments = load_segments(cfg.format, cfg.annotations, cfg.split, root=cfg.root)
    plan = plan_build(cfg, 1, segments, restart)
    if plan["tasks"]:
        decode_group(cfg.out, 0, cfg.workers, plan["plan"], progress)
    return finish_build(cfg, segments, plan["plan"], progress, started)


class BuildIncomplete(RuntimeError):
    """Some decode task of the plan has not finished: no shard or manifest is written."""


def finish_build(cfg: BuildConfig, segments=None, plan_id: str | None = None, progress: bool = False,
                 started: float | None = None) -> BuildReport:
    """The last step of a build: once every decode task of the plan is done, writes the
    shards in layout order, checks that every planned segment is in exactly one shard or in
    the failures, writes the manifest and removes the staging folder.

    Raises:
        BuildIncomplete: naming the tasks not done (nothing is written).
        ConfigError: when the folder's plan is not ``plan_id`` or its build had other settings.
    """
    started = time.monotonic() if started is None else started
    units = _load_units(cfg, segments)
    out = Path(cfg.out)
    staging = stg.staging_dir(out)
    _check_state(out, cfg, _fingerprint(units))
    plan = read_plan(staging)
    if plan_id is not None and plan["plan"] != plan_id:
        raise ConfigError(f"{out}: another build planned this folder again while this one ran")
    done = [stg.read_done(stg.task_dir(staging, i), plan["plan"]) for i in range(len(plan["tasks"]))]
    missing = [i for i, d in enumerate(done) if d is None]
    if missing:
        raise BuildIncomplete(
            f"{out}: decode task(s) {', '.join(map(str, missing[:10]))} of {len(done)} did not finish; "
            "no shard was written. Run the same command again: it keeps what was staged"
        )
    records, _ = recover(out, cfg.format, cfg.split)
    planned = {s.key: s for u in units for s in u.segments}
    staged = stg.staged_samples(staging)
    layout = plan_layout(list(planned), cfg.shard_samples, cfg.seed)
    table_fps = {k: s.fps for k, s in planned.items()}
    shards = write_shards(out, cfg.format, cfg.split, layout, records, staged, staging, table_fps, progress)
    Journal(out).rewrite(shards)
    stray = sweep(out, cfg.format, cfg.split, keep={r.name for r in shards})
    if stray:
        log.info("removed %d shard file(s) of earlier layouts or unfinished writes", len(stray))
    written: dict[str, str] = {}
    for record in shards:
        for key in record.keys:
            if key in written:
                raise RuntimeError(f"sample {key} is in both {written[key]} and {record.name}")
            written[key] = record.name
    failures = [f for f in stg.read_failures(staging, plan["plan"]) if sample_key(f["segment_id"]) not in written]
    failed = {sample_key(f["segment_id"]) for f in failures}
    for key in sorted(set(planned) - set(written) - failed):
        seg = planned[key]
        failures.append({"segment_id": seg.segment_id, "video_id": seg.video_id, "reason": "not written"})
    failures.sort(key=lambda f: (f["video_id"], f["segment_id"]))
    clamped = sorted(segment_id_from_key(k) for r in shards for k in r.clamped)
    rates = {v: note for r in shards for v, note in r.rates.items()}
    if clamped:
        log.info("%d segment(s) stopped past their video's last frame and were clamped to it", len(clamped))
    params = {k: v for k, v in to_dict(cfg).items() if k in MANIFEST_PARAMS}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "dataset": cfg.format,
        "split": cfg.split,
        "params": params,
        "num_segments": len(planned),
        "num_samples": sum(r.samples for r in shards),
        "shards": [r.summary() for r in shards],
        "failures": failures,
        "num_clamped": len(clamped),
        "clamped": clamped,
        "rate_mismatches": [rates[v] for v in sorted(rates)],
    }
    atomic_write_json(out / MANIFEST_NAME, manifest)
    stg.remove(staging)
    return BuildReport(
        out=out, planned=len(planned), written=sum(d["staged"] for d in done), already_done=plan["already_done"],
        failures=failures, shards=len(shards), seconds=time.monotonic() - started, clamped=len(clamped),
    )

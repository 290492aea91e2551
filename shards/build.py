"""Building a split's shards: plan, resume, parallel workers, failures, manifest.

The plan is deterministic: the split's segments sorted by (video, start, stop, id) and
grouped by video into work units, so that each video is opened once for all its segments.
Workers (spawned processes; decord and fork do not mix well) take units from a queue and
write their own shards; the main process journals each finished shard (see
:mod:`shards.writer`), keeps the progress bar, and writes ``manifest.json`` last.

Resuming: ``build.json`` records the build parameters and a fingerprint of the planned
segment keys; a re-run into the same folder must match them, recovers the folder to its
journal, and processes only segments that no finished shard holds. Segments that failed
are tried again (their failures are recorded anew). A worker that dies (e.g. a decoder
crash) costs the segments of the video it was on (recorded as failures); the samples of its
unfinished shard are queued again for a replacement worker.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import multiprocessing as mp
import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fpar.config import ConfigError, from_dict, to_dict
from fpar.io import atomic_write_json, read_json
from shards.decode import index_videos
from shards.motion import MotionConfig
from shards.schema import DEFAULT_FRAMES, DEFAULT_SHORT_SIDE, JPEG_QUALITY, MANIFEST_NAME, SCHEMA_CHANGES, SCHEMA_VERSION, sample_key, segment_id_from_key
from shards.worker import SegmentTask, WorkerSettings, WorkUnit, run_worker
from shards.writer import Journal, ShardRecord, recover, sweep

log = logging.getLogger(__name__)

BUILD_STATE_NAME = "build.json"
LOCK_NAME = ".build.lock"
# Parameters that change the content of a sample: a resumed build must use the same ones.
# Worker deaths (decoder crashes) tolerated before the build gives up.
MAX_WORKER_DEATHS = 8
CONTENT_PARAMS = ("format", "split", "frames", "short_side", "flow", "jpeg_quality", "motion")


@dataclass
class BuildConfig:
    """Everything that defines a shard build (saved in the manifest as ``params``)."""

    format: Literal["epic55", "epic100", "gtea61", "egtea"]
    root: str
    annotations: str
    split: str
    out: str
    workers: int = 1
    frames: int = DEFAULT_FRAMES
    short_side: int = DEFAULT_SHORT_SIDE
    flow: bool = False
    shard_bytes: int = 1_000_000_000
    jpeg_quality: int = JPEG_QUALITY
    motion: MotionConfig = field(default_factory=MotionConfig)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.frames < 1 or self.short_side < 8 or self.shard_bytes < 1:
            raise ValueError("workers and frames must be >= 1, short_side >= 8, shard_bytes >= 1")


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
    if cfg.format == "gtea61":
        for unit in units:
            if unit.source is None:
                candidates = [root / unit.video_id, root / "frames" / unit.video_id]
                unit.source = str(next((c for c in candidates if c.is_dir()), candidates[0]))
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
                f"writes v{SCHEMA_VERSION} ({SCHEMA_CHANGES.get(SCHEMA_VERSION, 'another layout')}); "
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
                "use another --out, or --restart to delete it and start over"
            )
        return
    atomic_write_json(path, state)


def clear_output(out: Path, cfg: BuildConfig) -> None:
    """Deletes this dataset/split's shards, journal, state and manifest from ``out``."""
    sweep(out, cfg.format, cfg.split, keep=set())
    for name in (BUILD_STATE_NAME, MANIFEST_NAME, Journal(out).path.name):
        (out / name).unlink(missing_ok=True)


def build_shards(cfg: BuildConfig, segments=None, restart: bool = False, progress: bool = True) -> BuildReport:
    """Builds (or resumes) the shards of one split.

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
    units = plan_units(segments, cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_NAME, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise ConfigError(f"{out}: another build is writing here") from err
        if restart:
            clear_output(out, cfg)
        _check_state(out, cfg, _fingerprint(units))
        records, next_number = recover(out, cfg.format, cfg.split)
        done = {k for r in records for k in r.keys}
        pending = []
        for unit in units:
            todo = [s for s in unit.segments if s.key not in done]
            if todo:
                pending.append(WorkUnit(unit.unit_id, unit.video_id, unit.source, unit.kind, unit.error, todo))
        locate_sources(pending, cfg)
        run = _Run(cfg, out, records, next_number)
        run.execute(pending, progress)
        report = run.finish(units, len(done), started)
    return report


def read_build_state(out: str | Path) -> dict | None:
    """The ``build.json`` of a shard folder, or None."""
    path = Path(out) / BUILD_STATE_NAME
    return read_json(path) if path.is_file() else None


def _drain(results, wait: float = 0.5) -> list[tuple]:
    out = []
    while True:
        try:
            out.append(results.get(timeout=wait))
        except queue.Empty:
            return out


class _Run:
    """The main process's side of one build run: workers, journal, progress, manifest."""

    def __init__(self, cfg: BuildConfig, out: Path, records: list[ShardRecord], next_number: int):
        self.cfg = cfg
        self.out = out
        self.records = list(records)
        self.journal = Journal(out)
        self.failures: list[dict] = []
        self.written = 0
        self.ctx = mp.get_context("spawn")
        self.counter = self.ctx.Value("q", next_number)
        self.settings = WorkerSettings(
            out_dir=str(out), dataset=cfg.format, split=cfg.split, frames=cfg.frames,
            short_side=cfg.short_side, flow=cfg.flow, jpeg_quality=cfg.jpeg_quality,
            shard_bytes=cfg.shard_bytes, motion=to_dict(cfg.motion), parent_pid=os.getpid(),
        )
        # Per worker: the unit it is on, the keys of that unit it reported (ok or failed),
        # and the keys sitting in its unfinished shard.
        self.current: dict[int, WorkUnit | None] = {}
        self.handled: dict[int, set[str]] = {}
        self.open_keys: dict[int, list[str]] = {}
        self.units: dict[int, WorkUnit] = {}
        self.outstanding: set[int] = set()
        self.segment_of: dict[str, tuple[WorkUnit, SegmentTask]] = {}
        self.ready: set[int] = set()
        self.deaths = 0

    def _spawn(self, wid: int, tasks, results):
        self.ready.discard(wid)
        self.current[wid], self.handled[wid], self.open_keys[wid] = None, set(), []
        proc = self.ctx.Process(
            target=run_worker, args=(wid, self.settings, tasks, results, self.counter), daemon=True,
            name=f"shard-worker-{wid}",
        )
        proc.start()
        return proc

    def _add_unit(self, unit: WorkUnit, tasks) -> None:
        self.units[unit.unit_id] = unit
        self.outstanding.add(unit.unit_id)
        tasks.put(unit)

    def execute(self, units: list[WorkUnit], progress: bool) -> None:
        """Runs the units on the workers until every one is finished."""
        if not units:
            return
        from tqdm import tqdm

        tasks, results = self.ctx.Queue(), self.ctx.Queue()
        for unit in units:
            self.segment_of.update((s.key, (unit, s)) for s in unit.segments)
            self._add_unit(unit, tasks)
        self.next_unit_id = max(self.units) + 1
        procs = {wid: self._spawn(wid, tasks, results) for wid in range(min(self.cfg.workers, len(units)))}
        exited: set[int] = set()
        stopping = False  # one None per worker has been queued
        self.bar = tqdm(
            total=sum(len(u.segments) for u in units), unit="seg", desc=f"{self.cfg.format} {self.cfg.split}",
            disable=not progress, dynamic_ncols=True,
        )
        clean = False
        try:
            while len(exited) < len(procs):
                try:
                    msg = results.get(timeout=1.0)
                except queue.Empty:
                    if any(w not in exited and not p.is_alive() for w, p in procs.items()):
                        # A worker that ended normally may have left its last messages in
                        # flight: read them before calling it dead.
                        for msg in _drain(results):
                            self._handle(msg)
                            if msg[0] == "exit":
                                exited.add(msg[1])
                    for wid, proc in list(procs.items()):
                        if wid not in exited and not proc.is_alive():
                            if wid not in self.ready:
                                raise RuntimeError(
                                    f"shard worker {wid} failed to start (exit code {proc.exitcode}); see its error above"
                                )
                            self.deaths += 1
                            if self.deaths > MAX_WORKER_DEATHS:
                                raise RuntimeError(f"{self.deaths} shard workers died; giving up (re-run to resume)")
                            for unit in self._worker_died(wid, proc):
                                self._add_unit(unit, tasks)
                            procs[wid] = self._spawn(wid, tasks, results)
                            if stopping:  # the replacement needs its own end marker
                                tasks.put(None)
                else:
                    self._handle(msg)
                    if msg[0] == "exit":
                        exited.add(msg[1])
                if not self.outstanding and not stopping:
                    stopping = True
                    for _ in procs:
                        tasks.put(None)
            clean = True
        finally:
            self.bar.close()
            for proc in procs.values():
                if clean:
                    proc.join(timeout=30)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)

    def _handle(self, msg: tuple) -> None:
        """Applies one worker message."""
        kind, wid = msg[0], msg[1]
        if kind == "ready":
            self.ready.add(wid)
        elif kind == "unit":
            self.current[wid], self.handled[wid] = self.units[msg[2]], set()
        elif kind == "ok":
            self.open_keys[wid].append(msg[2])
            self.handled[wid].add(msg[2])
            self.written += 1
            self.bar.update(1)
        elif kind == "rate":
            note = msg[2]
            log.warning(
                "%s runs at %.3f fps, the video-info table says %.3f: frames are taken by the "
                "file's own timestamps", note["video_id"], note["file_fps"], note["table_fps"],
            )
        elif kind == "fail":
            self.failures.append(msg[2])
            self.handled[wid].add(sample_key(msg[2]["segment_id"]))
            self.bar.update(1)
            log.warning("skipped %s (%s): %s", msg[2]["segment_id"], msg[2]["video_id"], msg[2]["reason"])
        elif kind == "shard":
            record: ShardRecord = msg[2]
            self.journal.append(record)
            self.records.append(record)
            finished = set(record.keys)
            self.open_keys[wid] = [k for k in self.open_keys[wid] if k not in finished]
        elif kind == "unit_done":
            self.outstanding.discard(msg[2])
            self.current[wid] = None

    def _worker_died(self, wid: int, proc) -> list[WorkUnit]:
        """Records the dead worker's current video as failed; returns, as new units, the
        samples its unfinished shard took with it."""
        log.error("shard worker %d died (exit code %s)", wid, proc.exitcode)
        unit = self.current[wid]
        if unit is not None:
            reason = f"worker process died (exit code {proc.exitcode}) while processing this video"
            for seg in unit.segments:
                if seg.key not in self.handled[wid]:
                    self.failures.append({"segment_id": seg.segment_id, "video_id": seg.video_id, "reason": reason})
                    self.bar.update(1)
            self.outstanding.discard(unit.unit_id)
        lost = self.open_keys[wid]
        self.written -= len(lost)
        regrouped: dict[int, WorkUnit] = {}
        for key in lost:
            origin, seg = self.segment_of[key]
            if origin.unit_id not in regrouped:
                regrouped[origin.unit_id] = WorkUnit(
                    self.next_unit_id, origin.video_id, origin.source, origin.kind, origin.error
                )
                self.next_unit_id += 1
            regrouped[origin.unit_id].segments.append(seg)
            self.segment_of[key] = (regrouped[origin.unit_id], seg)
        self.bar.total += len(lost)
        self.bar.refresh()
        return list(regrouped.values())

    def finish(self, units: list[WorkUnit], already_done: int, started: float) -> BuildReport:
        """Sweeps stray files, checks that every planned segment is in exactly one shard or
        in the failures, and writes the manifest."""
        names = {r.name for r in self.records}
        stray = sweep(self.out, self.cfg.format, self.cfg.split, keep=names)
        if stray:
            log.info("removed %d unfinished shard file(s)", len(stray))
        planned = {s.key: s for u in units for s in u.segments}
        written: dict[str, str] = {}
        for record in self.records:
            for key in record.keys:
                if key in written:
                    raise RuntimeError(f"sample {key} is in both {written[key]} and {record.name}")
                written[key] = record.name
        failed = {sample_key(f["segment_id"]) for f in self.failures}
        for key in sorted(set(planned) - set(written) - failed):
            seg = planned[key]
            self.failures.append({"segment_id": seg.segment_id, "video_id": seg.video_id, "reason": "not written"})
        self.failures.sort(key=lambda f: (f["video_id"], f["segment_id"]))
        shards = sorted(self.records, key=lambda r: r.name)
        clamped = sorted(segment_id_from_key(k) for r in shards for k in r.clamped)
        rates = {v: note for r in shards for v, note in r.rates.items()}
        if clamped:
            log.info("%d segment(s) stopped past their video's last frame and were clamped to it", len(clamped))
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "dataset": self.cfg.format,
            "split": self.cfg.split,
            "params": to_dict(self.cfg),
            "num_segments": len(planned),
            "num_samples": sum(r.samples for r in shards),
            "shards": [r.summary() for r in shards],
            "failures": self.failures,
            "num_clamped": len(clamped),
            "clamped": clamped,
            "rate_mismatches": [rates[v] for v in sorted(rates)],
        }
        atomic_write_json(self.out / MANIFEST_NAME, manifest)
        return BuildReport(
            out=self.out, planned=len(planned), written=self.written, already_done=already_done,
            failures=self.failures, shards=len(shards), seconds=time.monotonic() - started,
            clamped=len(clamped),
        )

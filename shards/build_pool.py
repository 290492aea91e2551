"""The decoding phase of a build: worker processes, each taking whole videos.

Workers are spawned processes (decord and fork do not mix well); each stages the samples
of the videos it takes (:mod:`shards.worker`). A worker that dies (e.g. a decoder crash)
costs the unfinished segments of the video it was on, recorded as failures; a replacement
is started, up to :data:`MAX_WORKER_DEATHS`. A worker stopped by a signal from outside
(SIGTERM of a cancelled or preempted SLURM task) stops the task instead. Failures go straight to the task's failure file
on disk (:class:`shards.staging.FailureLog`), never only to this process's memory.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import signal

from shards.schema import sample_key
from shards.staging import FailureLog
from shards.worker import WorkerSettings, WorkUnit, run_worker

log = logging.getLogger(__name__)

# Worker deaths (decoder crashes) tolerated before the build gives up.
MAX_WORKER_DEATHS = 8
# A worker ended by one of these was stopped from outside (scancel, preemption, Ctrl-C, and
# SLURM's time-limit warning USR2, which reaches every process of the task): its video did
# not fail, the whole task stops unfinished (or is requeued by submitit's USR2 handler).
STOP_SIGNALS = {-signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP, -signal.SIGUSR2}


class BuildInterrupted(RuntimeError):
    """A worker was stopped by a signal from outside: the task ends without marking itself done."""


def _drain(results, wait: float = 0.5) -> list[tuple]:
    out = []
    while True:
        try:
            out.append(results.get(timeout=wait))
        except queue.Empty:
            return out


class WorkerPool:
    """The main process's side of the decoding phase: workers, progress, failures.

    Args:
        workers: How many worker processes.
        settings: What every worker needs to know.
        label: The progress bar's title.
        failures: Where failed segments are recorded.
    """

    def __init__(self, workers: int, settings: WorkerSettings, label: str, failures: FailureLog):
        self.workers, self.settings, self.label = workers, settings, label
        self.failures = failures
        self.written = 0
        self.ctx = mp.get_context("spawn")
        # Per worker: the unit it is on, and the keys of that unit it reported (ok or failed).
        self.current: dict[int, WorkUnit | None] = {}
        self.handled: dict[int, set[str]] = {}
        self.units: dict[int, WorkUnit] = {}
        self.outstanding: set[int] = set()
        self.ready: set[int] = set()
        self.deaths = 0

    def _spawn(self, wid: int, tasks, results):
        self.ready.discard(wid)
        self.current[wid], self.handled[wid] = None, set()
        proc = self.ctx.Process(
            target=run_worker, args=(wid, self.settings, tasks, results), daemon=True,
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
            self._add_unit(unit, tasks)
        procs = {wid: self._spawn(wid, tasks, results) for wid in range(min(self.workers, len(units)))}
        exited: set[int] = set()
        stopping = False  # one None per worker has been queued
        self.bar = tqdm(
            total=sum(len(u.segments) for u in units), unit="seg", desc=self.label,
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
                            if proc.exitcode in STOP_SIGNALS:
                                raise BuildInterrupted(
                                    f"shard worker {wid} was stopped by signal {-proc.exitcode} (the build was "
                                    "cancelled or preempted); what was staged is kept"
                                )
                            self.deaths += 1
                            if self.deaths > MAX_WORKER_DEATHS:
                                raise RuntimeError(f"{self.deaths} shard workers died; giving up (re-run to resume)")
                            self._worker_died(wid, proc)
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
        elif kind == "unit_done":
            self.outstanding.discard(msg[2])
            self.current[wid] = None

    def _worker_died(self, wid: int, proc) -> None:
        """Records the segments of the dead worker's video that it had not finished as
        failed (its staged samples are complete files and stay)."""
        log.error("shard worker %d died (exit code %s)", wid, proc.exitcode)
        unit = self.current[wid]
        if unit is None:
            return
        reason = f"worker process died (exit code {proc.exitcode}) while processing this video"
        for seg in unit.segments:
            if seg.key not in self.handled[wid]:
                self.failures.append({"segment_id": seg.segment_id, "video_id": seg.video_id, "reason": reason})
                self.bar.update(1)
        self.outstanding.discard(unit.unit_id)

"""One shard-building worker process: decode, motion maps, encode, stage each sample.

Work arrives as :class:`WorkUnit` (one video and its pending segments) on a task queue.
Each finished sample is staged as its own small tar (:func:`shards.writer.stage_sample`);
the main process later writes the shards in the planned order from the staged samples.
Results go back to the main process as tuples on a result queue:

- ``("ready", wid)``: started up;
- ``("unit", wid, unit_id)``: started a unit;
- ``("ok", wid, key)``: a sample was staged;
- ``("rate", wid, {video_id, table_fps, file_fps})``: the video's real rate disagrees with
  the annotations' video-info table by more than :data:`RATE_TOLERANCE` (once per video);
- ``("fail", wid, {segment_id, video_id, reason})``: a segment was skipped;
- ``("unit_done", wid, unit_id)``; ``("exit", wid)`` when told to stop.

The worker imports neither pandas nor the models; it stops as soon as it notices that the
process that started it has gone, so an orphan of a killed build cannot race a restarted one.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from shards.decode import DecodeError, FrameFolder, VideoFile, sample_frames
from shards.motion import MotionConfig, MotionEstimator
from shards.schema import SchemaError, encode_sample
from shards.stopwatch import no_stopwatch
from shards.timing import SegmentOutside
from shards.writer import stage_sample

# A file whose real rate differs from the video-info table's by more than this is reported.
RATE_TOLERANCE = 0.01


@dataclass
class SegmentTask:
    """One annotated segment to turn into a sample."""

    key: str
    segment_id: str
    video_id: str
    participant: str
    start_frame: int  # as the annotations number it (EPIC: the frame release's frames)
    stop_frame: int
    start_time: float  # seconds: what decides the frames taken from the raw file
    stop_time: float
    fps: float  # the annotations' rate for the video (video-info table), cross-checked
    verb_class: int
    noun_class: int
    class_id: int


@dataclass
class WorkUnit:
    """A video (or frame folder) and its segments, sorted by start frame."""

    unit_id: int
    video_id: str
    source: str | None  # path of the video file or frame folder
    kind: str  # "video" or "folder"
    error: str | None = None  # set when the source could not be located
    segments: list[SegmentTask] = field(default_factory=list)


@dataclass
class WorkerSettings:
    """What every worker needs to know about the build."""

    staging_dir: str
    dataset: str
    split: str
    frames: int
    short_side: int
    flow: bool
    jpeg_quality: int
    motion: dict[str, Any]
    parent_pid: int
    decode_threads: int = 1


class ParentGone(RuntimeError):
    """The main build process no longer exists."""


def open_source(unit: WorkUnit, short_side: int, threads: int = 1):
    """Opens the unit's video or frame folder, raising DecodeError with the reason."""
    if unit.error:
        raise DecodeError(unit.error)
    if unit.kind == "folder":
        fps = unit.segments[0].fps if unit.segments else 30.0
        return FrameFolder(unit.source, short_side, fps=fps)
    return VideoFile(unit.source, short_side, threads=threads)


def make_sample(
    source, seg: SegmentTask, settings: WorkerSettings, estimator: MotionEstimator, stopwatch=None
) -> dict[str, bytes]:
    """Decodes, computes motion (and flow) and encodes one segment's sample members (the
    record says whether the segment's stop lay past the last decodable frame: ``clamped``).
    ``stopwatch`` (a :class:`shards.stopwatch.Stopwatch`) times each stage for the benchmark."""
    clock = stopwatch or no_stopwatch
    try:
        span = source.timing.span(seg.start_time, seg.stop_time)
    except SegmentOutside as err:
        raise DecodeError(str(err)) from None
    kept = [f - 1 for f in sample_frames(span.first + 1, span.last + 1, settings.frames)]
    fps = source.fps
    needed = estimator.required_indices(kept, source.num_frames, fps, settings.flow)
    with clock("decode"):
        decoded = dict(zip(needed, source.read(needed)))
    motion, flow = estimator.compute(decoded, kept, source.num_frames, fps, settings.flow, stopwatch)
    with clock("encode"):
        frames = np.stack([decoded[k] for k in kept])
    meta = {
        "dataset": settings.dataset,
        "split": settings.split,
        "segment_id": seg.segment_id,
        "video_id": seg.video_id,
        "participant": seg.participant,
        "verb_class": seg.verb_class,
        "noun_class": seg.noun_class,
        "class_id": seg.class_id,
        "fps": round(fps, 6),
        "start_frame": seg.start_frame,
        "stop_frame": seg.stop_frame,
        "start_time": seg.start_time,
        "stop_time": seg.stop_time,
        "native_frames": kept,
        "frame_times": source.timing.times(kept),
        "clamped": span.clamped,
    }
    with clock("encode"):
        return encode_sample(meta, frames, motion, flow, jpeg_quality=settings.jpeg_quality)


def rate_report(video_id: str, table_fps: float, file_fps: float) -> dict | None:
    """The report of a video whose real rate disagrees with its annotated one, or None."""
    if not table_fps > 0 or abs(file_fps / table_fps - 1.0) <= RATE_TOLERANCE:
        return None
    return {"video_id": video_id, "table_fps": table_fps, "file_fps": round(file_fps, 4)}


def rate_mismatch(source, unit: WorkUnit) -> dict | None:
    """:func:`rate_report` of a unit's video (frame folders carry no rate of their own)."""
    if unit.kind != "video" or not unit.segments:
        return None
    return rate_report(unit.video_id, unit.segments[0].fps, source.fps)


def run_worker(wid: int, settings: WorkerSettings, tasks, results) -> None:
    """Worker process entry point (spawned): serves units until it receives ``None``."""
    cv2.setNumThreads(1)
    estimator = MotionEstimator(MotionConfig(**settings.motion))

    def check_parent() -> None:
        if os.getppid() != settings.parent_pid:
            raise ParentGone()

    results.put(("ready", wid))
    try:
        while True:
            unit = tasks.get()
            if unit is None:
                results.put(("exit", wid))
                return
            check_parent()
            results.put(("unit", wid, unit.unit_id))
            _run_unit(wid, unit, settings, estimator, results, check_parent)
            results.put(("unit_done", wid, unit.unit_id))
    except ParentGone:
        sys.exit(3)


def _run_unit(wid, unit, settings, estimator, results, check_parent) -> None:
    def fail(seg: SegmentTask, reason: str) -> None:
        results.put(("fail", wid, {"segment_id": seg.segment_id, "video_id": seg.video_id, "reason": reason}))

    try:
        source = open_source(unit, settings.short_side, settings.decode_threads)
    except DecodeError as err:
        for seg in unit.segments:
            fail(seg, str(err))
        return
    mismatch = rate_mismatch(source, unit)
    if mismatch:
        results.put(("rate", wid, mismatch))
    for seg in unit.segments:
        check_parent()
        try:
            members = make_sample(source, seg, settings, estimator)
        except (DecodeError, SchemaError, ValueError, cv2.error) as err:
            fail(seg, str(err))
            continue
        except MemoryError:
            raise
        except Exception as err:  # one odd segment must not end the whole build
            fail(seg, f"unexpected {type(err).__name__}: {err}")
            continue
        check_parent()
        stage_sample(settings.staging_dir, seg.key, members)
        results.put(("ok", wid, seg.key))

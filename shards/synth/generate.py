"""Generating a synthetic-kitchens dataset: plan, annotation files, then videos in parallel."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from shards.files import atomic_write_json
from shards.synth.plan import DatasetPlan, Options, VideoPlan, make_plan, synth_layout
from shards.synth.render import VideoRenderer
from shards.synth.video import save_mask, write_mp4, write_png_folder

log = logging.getLogger(__name__)


def video_path(out: Path, fmt: str, video: VideoPlan) -> Path:
    """Where a planned video (or GTEA-61 frame folder) is written."""
    return synth_layout(fmt).video_path(out, video)


def mask_path(out: Path, video_id: str) -> Path:
    """``masks/<video_id>.npz`` (GTEA-61 ids contain slashes and become sub-folders)."""
    return out / "masks" / f"{video_id}.npz"


def render_video(fmt: str, out: Path, video: VideoPlan, seed: int, opts: Options) -> dict:
    """Renders and writes one video and its mask; returns its frame count and timing."""
    began = time.perf_counter()
    renderer = VideoRenderer(video, seed, opts.width, opts.height, video.fps, opts)
    mask = np.zeros((video.num_frames, opts.height, opts.width), np.uint8) if opts.masks else None
    frames = renderer.frames(mask)
    layout = synth_layout(fmt)
    target = layout.video_path(out, video)
    if layout.frame_folders:
        count = write_png_folder(target, frames)
    else:
        count = write_mp4(target, frames, video.fps, opts.width, opts.height, opts.crf,
                           preset=opts.preset)
    if count != video.num_frames:
        raise RuntimeError(f"{target}: wrote {count} frames, planned {video.num_frames}")
    if mask is not None:
        save_mask(mask_path(out, video.video_id), mask)
    return {"video_id": video.video_id, "frames": count, "seconds": time.perf_counter() - began}


def _render_all(plan: DatasetPlan, out: Path, progress: bool) -> list[dict]:
    opts = plan.options
    bar = tqdm(total=len(plan.videos), desc=f"synth {plan.fmt}", unit="video",
               disable=not progress)
    results = []
    try:
        if opts.workers == 1:
            for video in plan.videos:
                results.append(render_video(plan.fmt, out, video, plan.seed, opts))
                bar.update()
        else:
            with ProcessPoolExecutor(opts.workers) as pool:
                jobs = [pool.submit(render_video, plan.fmt, out, v, plan.seed, opts)
                        for v in plan.videos]
                for job in as_completed(jobs):
                    results.append(job.result())
                    bar.update()
    finally:
        bar.close()
    return results


def generate(fmt: str, out: str | Path, participants: int, segments: int, seed: int,
             progress: bool = False, **options) -> Path:
    """Generates a synthetic-kitchens dataset in ``fmt``'s real layout and file formats.

    Args:
        fmt: a registered dataset with a synthetic writer ("epic55", "epic100", "gtea61",
            "egtea").
        out: Output folder; gets ``annotations/``, ``videos/`` (or ``frames/``), ``masks/``
            and ``synth.json`` (the plan's parameters and per-video frame counts).
        participants: Number of participants (kitchens); GTEA-61 allows at most 4 (S1..S4).
        segments: Total number of labelled segments.
        seed: Everything (labels, timings, kitchens, motions) follows from it.
        progress: Show a progress bar over videos.
        **options: Fields of :class:`shards.synth.plan.Options` (width, height, fps,
            unseen_fraction, test_fraction, min_seconds, max_seconds, min_gap, max_gap,
            segments_per_video, camera_speed, camera_follow, stroke_fill, max_cycles,
            masks, crf, preset, workers).

    Returns:
        The output folder.
    """
    unknown = set(options) - set(Options.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown synth options: {sorted(unknown)}")
    opts = Options(**options)
    plan = make_plan(fmt, participants, segments, seed, opts)
    out = Path(out)
    write_annotations = synth_layout(fmt).annotations
    if write_annotations is not None:
        annotations = out / "annotations"
        annotations.mkdir(parents=True, exist_ok=True)
        write_annotations(plan, annotations)
    began = time.perf_counter()
    results = _render_all(plan, out, progress)
    elapsed = time.perf_counter() - began
    frames = sum(r["frames"] for r in results)
    log.info("%s: %d videos, %d frames in %.1f s (%.0f frames/s with %d worker(s))", out,
             len(results), frames, elapsed, frames / max(elapsed, 1e-9), opts.workers)
    atomic_write_json(out / "synth.json", {
        "format": fmt, "participants": plan.participants, "unseen_participants": plan.unseen,
        "segments": segments, "seed": seed, "options": asdict(opts),
        "videos": {v.video_id: {"participant": v.participant, "split": v.split,
                                "frames": v.num_frames, "fps": v.fps,
                                "path": str(video_path(out, fmt, v).relative_to(out))}
                   for v in plan.videos},
    })
    return out

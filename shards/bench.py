"""``fpar bench shards``: per-worker speed of the shard builder's three stages.

One process measures, separately, decoding (frames/s decoded, neighbours for motion
included), motion maps (kept frames/s, with warp flow when ``--flow``) and encoding plus
writing (kept frames/s into a tar shard). Input: a toy video it renders itself (default), or
the first segments of a real split (``--format --root --annotations --split``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

DESCRIPTION = "shard builder speed per worker: decoding, motion maps and writing, in frames/s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fpar bench shards``."""
    parser.add_argument("--format", choices=("epic55", "epic100", "gtea61", "egtea"), help="read a real split instead of a toy video")
    parser.add_argument("--root", help="with --format: video root (or GTEA-61 frame folders)")
    parser.add_argument("--annotations", help="with --format: annotation folder")
    parser.add_argument("--split", help="with --format: split name")
    parser.add_argument("--segments", type=int, default=8, help="segments measured (default 8)")
    parser.add_argument("--frames", type=int, default=32, help="frames kept per segment (default 32)")
    parser.add_argument("--short-side", type=int, default=256, help="stored short side (default 256)")
    parser.add_argument("--flow", action="store_true", help="also compute warp flow")
    parser.add_argument("--size", default="1280x720", help="toy video size WxH (default 1280x720)")
    parser.add_argument("--fps", type=float, default=60.0, help="toy video frame rate (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="toy video seed (default 0)")


def _toy_segments(args, tmp: Path):
    import pandas as pd

    from shards.toyvideo import make_toy_video

    width, height = (int(v) for v in args.size.lower().split("x"))
    length = 90
    num_frames = length * args.segments // 2 + length
    scale = width / 128
    make_toy_video(
        tmp / "toy.mp4", num_frames, width, height, seed=args.seed, fps=args.fps,
        pan=(0.75 * scale, 0.25 * scale), speed=(-1.25 * scale, 0.5 * scale),
    )
    starts = [1 + i * length // 2 for i in range(args.segments)]
    table = pd.DataFrame({
        "segment_id": [str(i) for i in range(args.segments)], "video_id": "toy", "participant": "P00",
        "start_frame": starts, "stop_frame": [s + length - 1 for s in starts],
        "start_time": [(s - 1) / args.fps for s in starts], "stop_time": [(s + length - 1) / args.fps for s in starts],
        "fps": args.fps,
        "verb_class": 0, "noun_class": 0, "class_id": -1, "split": "bench", "frame_dir": None,
    })
    return table, str(tmp), "epic55"


def run(args: argparse.Namespace) -> dict:
    """Measures the three stages on one process and returns frames/s for each."""
    import cv2
    import numpy as np

    from shards.build import BuildConfig, locate_sources, plan_units
    from shards.decode import sample_frames
    from shards.motion import MotionConfig, MotionEstimator
    from shards.schema import encode_sample
    from shards.layout import DEFAULT_SHARD_SAMPLES, plan_layout, write_shards
    from shards.worker import open_source
    from shards.writer import stage_sample, staged_keys

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="fpar-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.format:
            from shards.annotations import load_segments

            table = load_segments(args.format, args.annotations, args.split, root=args.root).head(args.segments)
            root, fmt, source = args.root, args.format, f"{args.format} {args.split}"
        else:
            table, root, fmt = _toy_segments(args, tmp)
            source = f"toy video {args.size} @ {args.fps:g} fps"
        cfg = BuildConfig(format=fmt, root=root, annotations=args.annotations or root, split="bench", out=str(tmp),
                          frames=args.frames, short_side=args.short_side, flow=args.flow)
        units = plan_units(table, cfg)
        locate_sources(units, cfg)
        estimator = MotionEstimator(MotionConfig())
        staging = tmp / "staging"
        staging.mkdir()
        seconds = {"open": 0.0, "decode": 0.0, "motion": 0.0, "write": 0.0, "layout": 0.0}
        decoded_frames = kept_frames = samples = 0
        for unit in units:
            start = time.perf_counter()
            video = open_source(unit, args.short_side)
            seconds["open"] += time.perf_counter() - start
            for seg in unit.segments:
                span = video.timing.span(seg.start_time, seg.stop_time)
                kept = [f - 1 for f in sample_frames(span.first + 1, span.last + 1, args.frames)]
                fps = video.fps
                needed = estimator.required_indices(kept, video.num_frames, fps, args.flow)
                start = time.perf_counter()
                decoded = dict(zip(needed, video.read(needed)))
                seconds["decode"] += time.perf_counter() - start
                start = time.perf_counter()
                motion, flow = estimator.compute(decoded, kept, video.num_frames, fps, args.flow)
                seconds["motion"] += time.perf_counter() - start
                start = time.perf_counter()
                frames = np.stack([decoded[k] for k in kept])
                members = encode_sample({"segment_id": seg.segment_id}, frames, motion, flow)
                stage_sample(staging, seg.key, members)
                seconds["write"] += time.perf_counter() - start
                decoded_frames += len(needed)
                kept_frames += len(kept)
                samples += 1
        # The shards are written from the staged samples in the seeded layout, as a build does.
        start = time.perf_counter()
        keys = staged_keys(staging)
        layout = plan_layout(sorted(keys), DEFAULT_SHARD_SAMPLES, 0)
        records = write_shards(tmp, "bench", "bench", layout, [], keys, staging, {})
        seconds["layout"] += time.perf_counter() - start
    total = sum(seconds.values())
    return {
        "benchmark": "shards",
        "input": source,
        "stored_size": list(frames.shape[1:3]),
        "samples": samples,
        "frames_per_sample": args.frames,
        "flow": bool(args.flow),
        "decode_frames_per_s": decoded_frames / max(seconds["decode"], 1e-9),
        "decoded_per_kept_frame": decoded_frames / max(kept_frames, 1),
        "motion_frames_per_s": kept_frames / max(seconds["motion"], 1e-9),
        "write_frames_per_s": kept_frames / max(seconds["write"], 1e-9),
        "layout_frames_per_s": kept_frames / max(seconds["layout"], 1e-9),
        "overall_frames_per_s": kept_frames / max(total, 1e-9),
        "samples_per_s": samples / max(total, 1e-9),
        "bytes_per_sample": sum(r.bytes for r in records) / max(samples, 1),
        "seconds": seconds,
    }

"""``fpar bench shards``: how close a shard build comes to decoding the frames it needs.

One process first only decodes, segment by segment, exactly the frames a build needs (kept
frames and their motion neighbours, at the stored size, as the build decodes them): the
floor of any build. Then it builds the same segments as a worker does (:func:`shards.worker.
make_sample`), timing each stage: decoding, the flow's input (grey, scaled), optical flow,
camera homographies, camera compensation, morphology (votes, cleaning, the map), warp flow,
encoding (JPEG), staging, and writing the shards in the seeded layout. ``build_vs_decode`` is
the build's rate as a fraction of the decode-only rate (``build_vs_decode_cpu`` the same in CPU
time of the process, which other work on the machine disturbs less). With ``--workers 1,2`` the build also
runs in that many processes at once (each building every segment) and reports kept frames/s.

Input: EPIC-like 1080p H.264 camera files at 59.94 and 50 fps (default), the 720p toy
video (``--input toy``), or the first segments of a real split (``--format ...``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from shards.datasets import dataset_names

DESCRIPTION = "shard builder speed per worker: each stage, and the build's rate as a fraction of decoding its frames"

MOTION_STAGES = ("flow_input", "flow", "homography", "compensation", "morphology", "warp_flow")
STAGES = ("open", "decode", *MOTION_STAGES, "encode", "staging", "layout")


def _counts(text: str) -> list[int]:
    try:
        counts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2, got {text!r}") from None
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"expected distinct numbers >= 1, got {text!r}")
    return counts


def _size(text: str) -> str:
    from shards.bench_inputs import parse_size

    try:
        parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fpar bench shards``."""
    parser.add_argument("--input", choices=("epic", "toy"), default="epic",
                        help="epic: EPIC-like 1920x1080 H.264 files at 59.94 and 50 fps, half-second closed GOPs "
                        "with B-frames (default); toy: the 1280x720 toy video")
    parser.add_argument("--format", choices=dataset_names(), help="read a real split instead")
    parser.add_argument("--root", help="with --format: video root (or GTEA-61 frame folders)")
    parser.add_argument("--annotations", help="with --format: annotation folder")
    parser.add_argument("--split", help="with --format: split name")
    parser.add_argument("--segments", type=int, default=9, help="segments measured (default 9)")
    parser.add_argument("--frames", type=int, default=32, help="frames kept per segment (default 32)")
    parser.add_argument("--short-side", type=int, default=256, help="stored short side (default 256)")
    parser.add_argument("--flow", action="store_true", help="also compute warp flow")
    parser.add_argument("--flow-stride", type=_counts, default=None,
                        help="DIS patch stride of the motion maps' flow (as fpar shards build --flow-stride; "
                        "default: the build's, 6); several, e.g. 6,4, build once with each and report each")
    parser.add_argument("--size", type=_size, help="generated video size WxH (default 1920x1080 epic, 1280x720 toy)")
    parser.add_argument("--fps", type=float, default=60.0, help="toy video frame rate (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="generated video seed (default 0)")
    parser.add_argument("--workers", type=_counts, default=None,
                        help="also build with these numbers of worker processes at once, e.g. 1,2")
    parser.add_argument("--work", help="folder for the generated videos, reused when run again (default: a temporary one)")


def _settings(args, staging: Path, stride: int):
    from dataclasses import asdict

    from shards.motion import MotionConfig
    from shards.schema import JPEG_QUALITY
    from shards.worker import WorkerSettings

    motion = asdict(MotionConfig(flow_stride=stride))
    return WorkerSettings(staging_dir=str(staging), dataset="bench", split="bench", frames=args.frames,
                          short_side=args.short_side, flow=args.flow, jpeg_quality=JPEG_QUALITY, motion=motion,
                          parent_pid=0)


def _inputs(args, folder: Path):
    """The work units (sources located) and a description of the videos."""
    from shards.bench_inputs import epic_segments, toy_segments
    from shards.build import BuildConfig, locate_sources, plan_units

    if args.format:
        from shards.annotations import load_segments

        table = load_segments(args.format, args.annotations, args.split, root=args.root).head(args.segments)
        cfg = BuildConfig(format=args.format, root=args.root, annotations=args.annotations, split="bench",
                          out=str(folder), frames=args.frames, short_side=args.short_side, flow=args.flow)
        units = plan_units(table, cfg)
        locate_sources(units, cfg)
        return units, f"{args.format} {args.split}", []
    table, videos = (epic_segments if args.input == "epic" else toy_segments)(args, folder)
    cfg = BuildConfig(format="epic55", root=str(folder), annotations=str(folder), split="bench", out=str(folder),
                      frames=args.frames, short_side=args.short_side, flow=args.flow)
    units = plan_units(table, cfg)
    paths = {v["video_id"]: v.pop("path") for v in videos}
    for unit in units:
        unit.source = paths[unit.video_id]
    name = "EPIC-like" if args.input == "epic" else "toy"
    return units, f"{name} " + ", ".join(f"{v['size'][0]}x{v['size'][1]} @ {v['fps']:g} fps" for v in videos), videos


def _kept_and_needed(source, seg, frames: int, estimator, flow: bool) -> tuple[list[int], list[int]]:
    from shards.decode import sample_frames

    span = source.timing.span(seg.start_time, seg.stop_time)
    kept = [f - 1 for f in sample_frames(span.first + 1, span.last + 1, frames)]
    return kept, estimator.required_indices(kept, source.num_frames, source.fps, flow)


def decode_only(units, args, estimator, stopwatch) -> tuple[int, int]:
    """Opens each video and decodes each segment's needed frames as the build does (timed as
    ``open`` and ``decode``); returns the kept and decoded frame counts."""
    from shards.worker import open_source

    for unit in units:  # untimed: the first decode of a process pays for loading the codecs
        source = open_source(unit, args.short_side)
        source.read(_kept_and_needed(source, unit.segments[0], args.frames, estimator, args.flow)[1])
    kept_frames = decoded = 0
    for unit in units:
        with stopwatch("open"):
            source = open_source(unit, args.short_side)
        for seg in unit.segments:
            kept, needed = _kept_and_needed(source, seg, args.frames, estimator, args.flow)
            with stopwatch("decode"):
                source.read(needed)
            kept_frames, decoded = kept_frames + len(kept), decoded + len(needed)
    return kept_frames, decoded


def build_segments(units, settings, stopwatch=None) -> list[str]:
    """Builds and stages every segment of ``units`` as a worker does; returns the staged keys."""
    import cv2

    from shards.motion import MotionConfig, MotionEstimator
    from shards.stopwatch import no_stopwatch
    from shards.worker import make_sample, open_source
    from shards.writer import stage_sample

    cv2.setNumThreads(1)
    clock = stopwatch or no_stopwatch
    estimator = MotionEstimator(MotionConfig(**settings.motion))
    keys = []
    for unit in units:
        with clock("open"):
            source = open_source(unit, settings.short_side)
        for seg in unit.segments:
            members = make_sample(source, seg, settings, estimator, stopwatch)
            with clock("staging"):
                stage_sample(settings.staging_dir, seg.key, members)
            keys.append(seg.key)
    return keys


def _timed_child(units, settings) -> float:
    start = time.perf_counter()
    build_segments(units, settings)
    return time.perf_counter() - start


def build_with_workers(units, args, folder: Path, workers: int, stride: int) -> float:
    """Kept frames/s of ``workers`` processes at once, each building every segment.

    Each worker gets the same work, so that the figure is the node's steady rate with that
    many workers: dealing 9 segments of unequal lengths out would measure the longest share
    (5 of 9 segments caps 2 workers at 1.8x before any contention), which a build of
    thousands of segments does not have.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    settings = []
    for w in range(workers):
        staging = folder / f"staging-{workers}-{w}"
        staging.mkdir()
        settings.append(_settings(args, staging, stride))
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_timed_child, [[] for _ in range(workers)], settings))  # start-up, untimed
        start = time.perf_counter()
        list(pool.map(_timed_child, [units] * workers, settings))
        wall = time.perf_counter() - start
    kept = sum(len(unit.segments) for unit in units) * args.frames
    return workers * kept / wall


def measure_build(units, args, folder: Path, stride: int) -> tuple[object, list]:
    """Builds the segments on this process with DIS patch stride ``stride``, then writes the
    shards in the seeded layout; returns the stopwatch and the shard records."""
    from shards.layout import DEFAULT_SHARD_SAMPLES, plan_layout, write_shards
    from shards.stopwatch import Stopwatch
    from shards.writer import staged_keys

    staging = folder / f"staging-stride-{stride}"
    staging.mkdir()
    stopwatch = Stopwatch()
    build_segments(units, _settings(args, staging, stride), stopwatch)
    with stopwatch("layout"):
        keys = staged_keys(staging)
        layout = plan_layout(sorted(keys), DEFAULT_SHARD_SAMPLES, 0)
        out = folder / f"shards-stride-{stride}"
        out.mkdir()
        records = write_shards(out, "bench", "bench", layout, [], keys, staging, {})
    return stopwatch, records


def _figures(stopwatch, floor, kept: int, samples: int) -> dict:
    """Rates, the build's fraction of the decode-only rate and per-stage times of one build."""
    seconds = {stage: stopwatch.seconds.get(stage, 0.0) for stage in STAGES}
    cpu = {stage: stopwatch.cpu_seconds.get(stage, 0.0) for stage in STAGES}
    total, floor_s = sum(seconds.values()), floor.seconds["open"] + floor.seconds["decode"]
    per_kept = lambda values: {s: 1000 * values[s] / max(kept, 1) for s in STAGES}  # noqa: E731
    return {
        "overall_frames_per_s": kept / max(total, 1e-9),
        "build_vs_decode": floor_s / max(total, 1e-9),
        "build_vs_decode_cpu": (floor.cpu_seconds["open"] + floor.cpu_seconds["decode"]) / max(sum(cpu.values()), 1e-9),
        "motion_frames_per_s": kept / max(sum(seconds[s] for s in MOTION_STAGES), 1e-9),
        "write_frames_per_s": kept / max(seconds["encode"] + seconds["staging"], 1e-9),
        "layout_frames_per_s": kept / max(seconds["layout"], 1e-9),
        "samples_per_s": samples / max(total, 1e-9),
        "ms_per_kept_frame": per_kept(seconds),
        "cpu_ms_per_kept_frame": per_kept(cpu),
        "seconds": seconds,
    }


def run(args: argparse.Namespace) -> dict:
    """Measures decode-only and the build's stages on one process; returns the figures."""
    import cv2

    from shards.motion import MotionConfig, MotionEstimator
    from shards.stopwatch import Stopwatch

    cv2.setNumThreads(1)
    strides = args.flow_stride or [MotionConfig().flow_stride]
    with tempfile.TemporaryDirectory(prefix="fpar-bench-") as tmp_name:
        tmp = Path(tmp_name)
        units, source, videos = _inputs(args, Path(args.work) if args.work else tmp)
        estimator = MotionEstimator(MotionConfig(flow_stride=strides[0]))
        floor = Stopwatch()
        kept_frames, decoded_frames = decode_only(units, args, estimator, floor)
        builds = {stride: measure_build(units, args, tmp, stride) for stride in strides}
        scaling = {str(n): build_with_workers(units, args, tmp, n, strides[0]) for n in args.workers or []}
        stored_size = _stored_size(units, args.short_side)
    stopwatch, records = builds[strides[0]]
    samples = sum(r.samples for r in records)
    result = {
        "benchmark": "shards",
        "input": source,
        "videos": videos,
        "stored_size": stored_size,
        "samples": samples,
        "frames_per_sample": args.frames,
        "flow": bool(args.flow),
        "flow_stride": strides[0],
        "decode_only_frames_per_s": kept_frames / max(floor.seconds["open"] + floor.seconds["decode"], 1e-9),
        "decode_frames_per_s": decoded_frames / max(stopwatch.seconds["decode"], 1e-9),
        "decoded_per_kept_frame": decoded_frames / max(kept_frames, 1),
        "decode_only_cpu_ms_per_kept_frame": {s: 1000 * floor.cpu_seconds.get(s, 0.0) / max(kept_frames, 1)
                                              for s in ("open", "decode")},
        **_figures(stopwatch, floor, kept_frames, samples),
        "bytes_per_sample": sum(r.bytes for r in records) / max(samples, 1),
    }
    if len(strides) > 1:
        result["by_flow_stride"] = {str(s): _figures(builds[s][0], floor, kept_frames, samples) for s in strides}
    if scaling:
        result["workers_frames_per_s"] = scaling
        first = scaling[str(min(args.workers))]
        result["workers_speedup"] = {n: r / first for n, r in scaling.items()}
    return result


def _stored_size(units, short_side: int) -> list[int]:
    from shards.worker import open_source

    source = open_source(units[0], short_side)
    return [int(source.height), int(source.width)]

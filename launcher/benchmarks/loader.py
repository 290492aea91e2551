"""``fpar bench loader``: training clips/s of the loader, shards vs the alternatives.

One process (one cv2 and one torch thread), N frames per clip, the training augmentation
(multi-scale corner crop, flip) and uint8 loader batches as the trainer gets them (the
normalisation runs on the model's device, :mod:`fpar.data.batch`):

* ``shards``: :func:`fpar.data.clip_throughput` over the shard folder (tar reading by
  index, JPEG decoding, crop, motion maps, batching), in this process;
* ``shards_64``: the demo's input, 64 px crops from shards stored at its 112 px (with
  ``--shards``: from those shards);
* ``shards_1_worker`` / ``shards_2_workers``: the same with 1 and 2 loader worker
  processes, each assembling whole batches in shared memory (the training process only
  receives them);
* ``decord``: the same segments decoded from their MP4 files on the fly;
* ``jpeg_files``: the same stored frames as one JPEG file per frame (Ego-RNN layout),
  read from the page cache;
* ``decode_bound``: decoding the N frames' JPEG bytes and nothing else.

The paths are measured in turn for ``--rounds`` rounds and each keeps its best round (on a
shared machine, the round least slowed by others); medians are reported too. "Cores per
1,000 clips/s" is 1,000 over the in-process rate: what a GPU eating 1,000 clips/s needs.
Goals: shards >= 5x decord, faster than JPEG files, >= 70% of the decode bound, and 2
workers >= 1.7x one worker. Data: synthetic
EPIC-55 kitchens at 456x256 built into shards with the default build (32 frames at short
side 256), in a temporary folder or ``--work`` (reused), or existing ``--shards`` with the
``--root`` of their videos.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

DESCRIPTION = ("training clips/s of one loader process: shards vs decord on the fly, "
               "JPEG files per frame and the JPEG decoding bound")

GOALS = {"shards_vs_decord": 5.0, "shards_vs_jpeg_files": 1.0, "shards_vs_decode_bound": 0.7,
         "two_workers_vs_one": 1.7}
# The demo's input (launcher/demo.py, default scale): 7 x 64 px from 14 frames stored at 112 px.
DEMO_CROP, DEMO_SHORT_SIDE, DEMO_STORED_FRAMES = 64, 112, 14


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fpar bench loader``."""
    parser.add_argument("--work", metavar="DIR",
                        help="folder for the generated videos and shards, reused when run "
                        "again (default: a temporary folder)")
    parser.add_argument("--shards", metavar="DIR",
                        help="measure an existing shard folder instead (needs --root)")
    parser.add_argument("--root", metavar="VIDEOS",
                        help="with --shards: folder holding the shards' source videos")
    parser.add_argument("--segments", type=int, default=64,
                        help="segments used by every path (default 64)")
    parser.add_argument("--clip-frames", type=int, default=7,
                        help="frames per training clip N, sampled from the frames stored per "
                        "segment (default 7)")
    parser.add_argument("--crop", type=int, default=224, help="crop side (default 224)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per batch (default 8)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="measuring time per path, over all rounds (default 20)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="the paths are measured in turn this many times; each path's "
                        "figure is its best round (default 4)")
    parser.add_argument("--size", default="456x256",
                        help="generated video size WxH (default 456x256)")
    parser.add_argument("--short-side", type=int, default=256,
                        help="stored short side of the generated shards (default 256)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the generated data and of the clips' draws (default 0)")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes generating videos and building shards (default 2)")


def prepare(work: Path, args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """Synthetic kitchens and their train shards in ``work`` (each step skipped if done):
    ``(shards, demo_shards, videos)``, the demo's stored at its short side and frame count."""
    from shards.synth import generate

    data = work / "data"
    if not (data / "synth.json").is_file():
        width, height = (int(v) for v in args.size.lower().split("x"))
        # Enough segments that the train split (about half of them) covers --segments.
        generate("epic55", data, participants=3, segments=max(16, args.segments * 2),
                 seed=args.seed, progress=True, width=width, height=height,
                 workers=args.workers)
    shard_dir = _build(data, work / "shards", args, short_side=args.short_side)
    demo = _build(data, work / "shards_demo", args, short_side=DEMO_SHORT_SIDE, frames=DEMO_STORED_FRAMES)
    return shard_dir, demo, data / "videos"


def _build(data: Path, out: Path, args: argparse.Namespace, **options) -> Path:
    from shards.build import BuildConfig, build_shards
    from shards.schema import MANIFEST_NAME

    if (out / MANIFEST_NAME).is_file():
        return out  # a finished build (whatever its motion settings)
    cfg = BuildConfig(format="epic55", root=str(data / "videos"), annotations=str(data / "annotations"),
                      split="train", out=str(out), workers=args.workers, **options)
    report = build_shards(cfg, progress=True)
    if not report.ok:
        raise RuntimeError(f"shard build failed for {len(report.failures)} segment(s): "
                           f"see {cfg.out}/manifest.json")
    return out


@contextlib.contextmanager
def _one_thread():
    """One cv2 and one torch thread: the figure is per loader process."""
    import cv2
    import torch

    cv_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(cv_threads)
        torch.set_num_threads(torch_threads)


def run(args: argparse.Namespace) -> dict:
    """Prepares (or finds) the data and measures the four paths."""
    if args.shards and not args.root:
        raise SystemExit("fpar bench loader: --shards needs --root (the videos' folder)")
    from launcher.benchmarks.output import stdout_to_stderr

    if args.shards:
        return _measure(Path(args.shards), Path(args.shards), Path(args.root), args)
    if args.work:
        with stdout_to_stderr():
            found = prepare(Path(args.work), args)
        return _measure(*found, args)
    with tempfile.TemporaryDirectory(prefix="fpar-bench-loader-") as tmp:
        with stdout_to_stderr():
            found = prepare(Path(tmp), args)
        return _measure(*found, args)


def _measure(shard_dir: Path, demo_dir: Path, video_root: Path, args: argparse.Namespace) -> dict:
    from fpar.data import DataConfig, clip_throughput
    from launcher.benchmarks import loader_paths as paths
    from shards.decode import index_videos
    from shards.schema import read_manifest
    from tqdm import tqdm

    from launcher.benchmarks.stats import median

    if args.rounds < 1 or args.seconds <= 0:
        raise SystemExit("fpar bench loader: --rounds must be >= 1 and --seconds > 0")
    cfg = DataConfig(format="epic55", num_frames=args.clip_frames, crop_size=args.crop,
                     batch_size=args.batch_size, workers=0)
    segments = paths.read_segments(shard_dir, index_videos(video_root), args.segments)
    if len(segments) < args.batch_size:
        raise SystemExit(f"fpar bench loader: {shard_dir} holds {len(segments)} samples, "
                         f"fewer than one batch of {args.batch_size}")
    share = args.seconds / args.rounds
    import dataclasses

    def shards(folder=shard_dir, **change):
        return lambda: clip_throughput(folder, dataclasses.replace(cfg, **change), seconds=share,
                                       seed=args.seed)

    measures = {
        "shards": shards(),
        f"shards_{DEMO_CROP}": shards(demo_dir, crop_size=DEMO_CROP),
        "shards_1_worker": shards(workers=1),
        "shards_2_workers": shards(workers=2),
        "decord": lambda: paths.clip_rate(paths.CLIP_MAKERS["decord"], segments, cfg, share,
                                          args.seed),
        "jpeg_files": lambda: paths.clip_rate(paths.CLIP_MAKERS["jpeg_files"], segments, cfg,
                                              share, args.seed),
        "decode_bound": lambda: paths.decode_bound_rate(segments, cfg, share, args.seed),
    }
    rounds: dict[str, list[float]] = {name: [] for name in measures}
    with _one_thread(), tempfile.TemporaryDirectory(prefix="fpar-frames-") as frames_dir:
        paths.write_frame_folders(segments, Path(frames_dir))
        # Round-robin, so that a burst of load from other processes hits every path alike.
        for _ in tqdm(range(args.rounds), desc="rounds", unit="round"):
            for name, measure in measures.items():
                rounds[name].append(measure())
    best = {name: max(values) for name, values in rounds.items()}
    ratios = {f"shards_vs_{name}": best["shards"] / best[name]
              for name in ("decord", "jpeg_files", "decode_bound")}
    ratios["two_workers_vs_one"] = best["shards_2_workers"] / best["shards_1_worker"]
    manifest = read_manifest(shard_dir)
    return {
        "benchmark": "loader",
        "settings": {"frames": args.clip_frames, "crop": args.crop, "batch_size": args.batch_size,
                     "segments": len(segments), "stored_frames": len(segments[0].jpegs),
                     "stored_size": list(segments[0].frame_size), "seconds": args.seconds,
                     "rounds": args.rounds, "threads": 1,
                     "shards": str(shard_dir), "shard_samples": manifest["num_samples"],
                     "demo_shards": str(demo_dir)},
        "clips_per_s": best,
        "clips_per_s_median": {name: median(values) for name, values in rounds.items()},
        "ratios": ratios,
        "fraction_of_decode_bound": ratios["shards_vs_decode_bound"],
        "clips_per_s_per_worker": {"1": best["shards_1_worker"], "2": best["shards_2_workers"] / 2},
        "cores_per_1000_clips_per_s": {f"{args.clip_frames}x{args.crop}": 1000.0 / best["shards"],
                                       f"{args.clip_frames}x{DEMO_CROP}": 1000.0 / best[f"shards_{DEMO_CROP}"]},
        "goals": {name: {"goal": goal, "met": ratios[name] >= goal} for name, goal in GOALS.items()},
    }

"""``fpar shards build`` and ``fpar shards info``: make a split's shards, describe them."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from shards.config_base import ConfigError
from shards.datasets import dataset_names

log = logging.getLogger(__name__)

def parse_spans(text: str) -> tuple[int, ...]:
    """Parses comparison distances such as ``1,3`` into a tuple of positive integers."""
    try:
        spans = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of distances: {text!r} (e.g. 1,3)") from None
    if not spans or min(spans) < 1:
        raise argparse.ArgumentTypeError(f"distances must be >= 1: {text!r}")
    return spans


def register(subparsers):
    """Adds ``fpar shards build|info``; returns the build parser and the actions' subparsers
    (``launcher.shards_cli`` adds the SLURM options and ``status``)."""
    parser = subparsers.add_parser(
        "shards", help="build WebDataset shards from raw videos, or describe built shards",
        description="Build the shards of one dataset split (frames, motion maps, optional warp flow), or describe them.",
    )
    sub = parser.add_subparsers(dest="shards_command", metavar="ACTION")
    build = sub.add_parser(
        "build", help="decode a split's segments into size-targeted tar shards (resumable)",
        description="Decode every annotated segment of a split into one WebDataset sample: M frames taken "
        "uniformly over the segment, their motion maps and optionally warp flow. Re-running the same "
        "command after a crash or kill resumes it. Exit status 1 when any segment failed "
        "(listed in the manifest and by 'fpar shards info').",
    )
    build.add_argument("--format", required=True, choices=dataset_names(), help="dataset")
    build.add_argument("--root", required=True, help="folder searched (recursively) for <video_id>.mp4|.MP4; GTEA-61: the frame folders")
    build.add_argument("--annotations", required=True, help="folder of the dataset's annotation files")
    build.add_argument("--split", required=True, help="split name (e.g. train, s1, s2, validation, test_split1, test_fixed)")
    build.add_argument("--out", required=True, help="output folder of the shards, manifest.json and journal")
    build.add_argument("--workers", type=int, default=None, help="worker processes (default 1); each takes whole videos")
    build.add_argument("--frames", type=int, default=None, help="frames kept per segment, M (default 32); training may use any N <= M")
    build.add_argument("--short-side", type=int, default=None, help="stored frame short side in pixels (default 256)")
    build.add_argument("--flow", action="store_true", help="also store the 5 stacked x/y warp-flow pairs around each kept frame")
    build.add_argument("--shard-samples", type=int, default=None,
                       help="samples per shard (default 256: ~150 MB at 32 frames of 256 px); every shard is a "
                       "seeded random sample of the split")
    build.add_argument("--seed", type=int, default=None,
                       help="seed of the layout (which samples each shard holds, in which order; default 0): "
                       "the same inputs and seed give byte-identical shards")
    build.add_argument("--jpeg-quality", type=int, default=None, help="JPEG quality of frames and flow (default 90)")
    build.add_argument("--flow-side", type=int, default=None, help="optical flow runs on frames scaled to this short side, never enlarged (default 160)")
    build.add_argument("--flow-scale", type=float, default=None, help="optical flow runs on frames scaled by this factor instead of --flow-side (0 < f <= 1)")
    build.add_argument("--flow-stride", type=int, default=None,
                       help="DIS patch stride of the motion maps' flow, in flow pixels (default 6; 4, as DIS's presets, "
                       "costs ~1.75x as much for the maps: see README 'Motion maps')")
    build.add_argument("--motion-halo", type=float, default=None,
                       help="erosion of the moving points (takes back the flow's spread around objects), as a fraction "
                       "of the flow's short side (default 0.04; --flow-stride 4 --motion-halo 0.03 gives the maps of earlier builds)")
    build.add_argument("--motion-threshold", type=float, default=None, help="moving if the camera-compensated flow exceeds this fraction of the flow's short side in a comparison (default 0.006)")
    build.add_argument("--motion-votes", type=int, choices=(1, 2), default=None, help="of the two neighbours t-d*step and t+d*step at one distance d, how many must see a point move (default 2)")
    build.add_argument("--motion-step", type=int, default=None, help="frame spacing unit of the comparisons, in frames (default: 1/30 s at the file's real rate)")
    build.add_argument("--motion-spans", type=parse_spans, default=None, help="comma-separated distances d of the compared neighbours, in 1/30 s (or in --motion-step frames) (default 1,3)")
    build.add_argument("--restart", action="store_true", help="delete an earlier build of this dataset/split in --out and start over")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=run_build)

    info = sub.add_parser("info", help="samples, shards, bytes, schema version, build parameters and failures of a shard folder")
    info.add_argument("dir", help="shard folder (holding manifest.json)")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.add_argument("--failures", type=int, default=20, help="failures listed in the text output (default 20)")
    info.set_defaults(func=run_info)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    return build, sub


def config_from_args(args: argparse.Namespace):
    """The :class:`shards.build.BuildConfig` the command line describes."""
    from shards.build import BuildConfig
    from shards.motion import MotionConfig

    motion = {
        key: value
        for key, value in (
            ("flow_side", args.flow_side), ("flow_scale", args.flow_scale), ("threshold", args.motion_threshold),
            ("min_votes", args.motion_votes), ("step", args.motion_step), ("spans", args.motion_spans),
            ("flow_stride", args.flow_stride), ("halo", args.motion_halo),
        )
        if value is not None
    }
    optional = {
        key: value
        for key, value in (("frames", args.frames), ("short_side", args.short_side), ("jpeg_quality", args.jpeg_quality),
                           ("shard_samples", args.shard_samples), ("seed", args.seed))
        if value is not None
    }
    try:
        return BuildConfig(
            format=args.format, root=args.root, annotations=args.annotations, split=args.split, out=args.out,
            workers=1 if args.workers is None else args.workers, flow=args.flow, motion=MotionConfig(**motion), **optional,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from err


def run_build(args: argparse.Namespace) -> int:
    """``fpar shards build``: returns 0 when every segment was written, 1 otherwise."""
    from shards.annotations import AnnotationError
    from shards.build import build_shards
    from shards.build_pool import BuildInterrupted

    try:
        cfg = config_from_args(args)
        report = build_shards(cfg, restart=args.restart, progress=not args.no_progress)
    except (ConfigError, AnnotationError, ValueError) as err:
        print(f"fpar shards build: {err}", file=sys.stderr)
        return 2
    except BuildInterrupted as err:
        print(f"fpar shards build: {err}; run the same command again to resume", file=sys.stderr)
        return 1
    print(
        f"{report.out}: {report.written} samples written, {report.already_done} already done, "
        f"{report.clamped} clamped at their video's end, "
        f"{len(report.failures)} failed of {report.planned} segments; {report.shards} shards; {report.seconds:.1f}s"
    )
    for failure in report.failures[:10]:
        print(f"  failed {failure['segment_id']} ({failure['video_id']}): {failure['reason']}", file=sys.stderr)
    if len(report.failures) > 10:
        print(f"  ... and {len(report.failures) - 10} more (fpar shards info {report.out})", file=sys.stderr)
    return 0 if report.ok else 1


def summarize(shard_dir: str) -> dict:
    """The ``info`` summary of a built shard folder (see :func:`shards.schema.read_manifest`)."""
    from shards.schema import read_manifest

    manifest = read_manifest(shard_dir)
    return {
        "dir": str(shard_dir),
        "schema_version": manifest["schema_version"],
        "dataset": manifest.get("dataset"),
        "split": manifest.get("split"),
        "samples": manifest["num_samples"],
        "segments": manifest.get("num_segments"),
        "shards": len(manifest["shards"]),
        "bytes": sum(s["bytes"] for s in manifest["shards"]),
        "failed": len(manifest["failures"]),
        "clamped": manifest.get("num_clamped", 0),
        "rate_mismatches": manifest.get("rate_mismatches", []),
        "params": manifest["params"],
        "failures": manifest["failures"],
    }


def run_info(args: argparse.Namespace) -> int:
    """``fpar shards info``: 0 when the folder has a valid manifest, 1 otherwise."""
    from shards.schema import SchemaError

    try:
        summary = summarize(args.dir)
    except SchemaError as err:
        print(f"fpar shards info: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    params = summary["params"]
    print(f"{summary['dir']}: {summary['dataset']} {summary['split']}, schema v{summary['schema_version']}")
    print(
        f"  samples {summary['samples']} of {summary['segments']} segments, {summary['failed']} failed, "
        f"{summary['clamped']} clamped at their video's end"
    )
    for note in summary["rate_mismatches"]:
        print(f"  {note['video_id']}: file runs at {note['file_fps']} fps, video-info table {note['table_fps']}")
    print(f"  shards {summary['shards']}, {summary['bytes'] / 1e6:.1f} MB")
    print(
        f"  frames {params.get('frames')} at short side {params.get('short_side')}, flow {params.get('flow')}, "
        f"jpeg {params.get('jpeg_quality')}, motion {params.get('motion')}"
    )
    for failure in summary["failures"][: args.failures]:
        print(f"  failed {failure['segment_id']} ({failure['video_id']}): {failure['reason']}")
    if summary["failed"] > args.failures:
        print(f"  ... {summary['failed'] - args.failures} more (--json lists all)")
    return 0

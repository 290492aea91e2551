"""``fpar data check`` and ``fpar data throughput``: read a shard folder as training does."""

from __future__ import annotations

import argparse
import json
import math
import sys

from fpar.commands import data_group
from fpar.data.config import FORMATS, DataConfig


def _reader_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", help="shard folder (with manifest.json)")
    parser.add_argument("--format", choices=FORMATS, default="epic55",
                        help="dataset format, decides the label keys (default: epic55)")
    parser.add_argument("--num-frames", type=int, default=7, help="frames per clip (default: 7)")
    parser.add_argument("--crop-size", type=int, default=224, help="crop side in pixels (default: 224)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per batch (default: 8)")
    parser.add_argument("--workers", type=int, default=0,
                        help="loader worker processes (default: 0, read in this process)")
    parser.add_argument("--flow", action="store_true", help="also read the stored warp flow")


def _config(args: argparse.Namespace, **extra) -> DataConfig:
    return DataConfig(format=args.format, num_frames=args.num_frames, crop_size=args.crop_size,
                      batch_size=args.batch_size, eval_batch_size=args.batch_size,
                      workers=args.workers, use_flow=args.flow, **extra)


def _check(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fpar.data.stream import ShardStream
    from shards.schema import SchemaError

    try:
        cfg = _config(args, max_shortfall=1.0)
        stream = ShardStream(cfg, args.shards, train=False, rank=0, world_size=1, seed=0)
        total = math.ceil(stream.num_samples / cfg.eval_batch_size)
        for _ in tqdm(stream.eval_batches(), total=total, desc="reading", unit="batch"):
            pass
    except (SchemaError, ValueError) as err:
        print(f"fpar data check: {err}", file=sys.stderr)
        return 2
    report = stream.epoch_report()
    print(json.dumps(report, indent=2))
    return 0 if report["shortfall"] == 0 and report["skipped_undecodable"] == 0 else 1


def _throughput(args: argparse.Namespace) -> int:
    from fpar.data.stream import clip_throughput
    from shards.schema import SchemaError

    try:
        rate = clip_throughput(args.shards, _config(args), seconds=args.seconds, train=not args.eval)
    except (SchemaError, ValueError) as err:
        print(f"fpar data throughput: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"clips_per_second": rate, "mode": "eval" if args.eval else "train",
                      "workers": args.workers}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``fpar data check`` and ``fpar data throughput``."""
    group = data_group(subparsers)
    check = group.add_parser(
        "check", help="read every sample of a shard folder once and report damage",
        description="Decode every sample of a shard folder as evaluation does (centre crops) "
        "and print the counts: expected (from the manifest), seen, skipped_undecodable, "
        "shortfall (samples the tars do not deliver) and the first problems. Exit code 1 "
        "when anything was missing or undecodable, 2 when the folder cannot be read.",
    )
    _reader_options(check)
    check.set_defaults(func=_check)
    rate = group.add_parser(
        "throughput", help="clips per second one reader delivers from a shard folder",
        description="Read training epochs (or evaluation passes) back to back for a while and "
        "print the clips per second delivered as finished batches (first batch not counted).",
    )
    _reader_options(rate)
    rate.add_argument("--seconds", type=float, default=20.0, help="how long to read (default: 20)")
    rate.add_argument("--eval", action="store_true", help="evaluation mode (centre crops, no shuffle)")
    rate.set_defaults(func=_throughput)

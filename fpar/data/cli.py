"""``fpar data check``, ``throughput`` and ``order``: read a shard folder as training does."""

from __future__ import annotations

import argparse
import json
import math
import sys

from fpar.data.config import DataConfig
from shards.command_groups import data_group
from shards.datasets import dataset_names


def _reader_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", help="shard folder (with manifest.json)")
    parser.add_argument("--format", choices=dataset_names(), default="epic55",
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
    from shards.schema import SchemaError, verify_shards

    try:
        mismatched = verify_shards(args.shards) if args.verify else []
        cfg = _config(args, max_shortfall=1.0)
        stream = ShardStream(cfg, args.shards, train=False, rank=0, world_size=1, seed=0)
        total = math.ceil(stream.num_samples / cfg.eval_batch_size)
        for _ in tqdm(stream.eval_batches(), total=total, desc="reading", unit="batch"):
            pass
    except (SchemaError, ValueError) as err:
        print(f"fpar data check: {err}", file=sys.stderr)
        return 2
    report = stream.epoch_report()
    if args.verify:
        report["verified"] = {"shards": len(stream.shards), "mismatched": mismatched}
    print(json.dumps(report, indent=2))
    for line in mismatched:
        print(f"fpar data check: {line}", file=sys.stderr)
    damaged = report["shortfall"] or report["skipped_undecodable"] or mismatched
    return 1 if damaged else 0


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


def _order(args: argparse.Namespace) -> int:
    from fpar.data.plan import rank_plan, shard_entries
    from fpar.data.reader import SampleReader
    from shards.schema import SchemaError, read_manifest, segment_id_from_key

    try:
        if args.world_size < 1 or not 0 <= args.rank < args.world_size or args.batch_size < 1:
            raise ValueError(f"need 0 <= --rank < --world-size and --batch-size >= 1, got rank "
                             f"{args.rank}, world size {args.world_size}, batch size {args.batch_size}")
        shards = shard_entries(args.shards, read_manifest(args.shards))
        reader = SampleReader(shards, ())
        plan = rank_plan(len(reader), train=True, seed=args.seed, epoch=args.epoch, rank=args.rank,
                         world_size=args.world_size, batch_size=args.batch_size)
        keys = [reader.key(i) for i in plan.indices]
    except (SchemaError, ValueError) as err:
        print(f"fpar data order: {err}", file=sys.stderr)
        return 2
    ids = [segment_id_from_key(k) if k is not None else None for k in keys]
    if args.json:
        print(json.dumps({"epoch": args.epoch, "seed": args.seed, "rank": args.rank,
                          "world_size": args.world_size, "batch_size": args.batch_size,
                          "steps": plan.total // args.batch_size, "segments": ids,
                          "repeats": sorted(plan.repeats)}))
        return 0
    for position, segment in enumerate(ids):
        step = position // args.batch_size
        mark = "\t(repeat)" if position in plan.repeats else ""
        print(f"{step}\t{segment}{mark}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``fpar data check`` and ``fpar data throughput``."""
    group = data_group(subparsers)
    check = group.add_parser(
        "check", help="read every sample of a shard folder once and report damage",
        description="Decode every sample of a shard folder as evaluation does (centre crops) "
        "and print the counts: expected (from the manifest), seen, skipped_undecodable, "
        "shortfall (samples the tars do not deliver) and the first problems; a malformed "
        "sample (a pack header, size or map that breaks the schema or the build's parameters) "
        "counts as undecodable. With --verify, every tar is first compared with the size "
        "and sha256 the manifest records. Exit code 1 when anything was missing, undecodable "
        "or mismatched, 2 when the folder cannot be read.",
    )
    _reader_options(check)
    check.add_argument("--verify", action="store_true",
                       help="also compare every tar with the size and sha256 in the manifest")
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
    order = group.add_parser(
        "order", help="the segment ids of a training epoch in the order a rank trains on them",
        description="Print the segment ids one rank trains on in an epoch, in order, one line per "
        "sample (step, segment id): a function of (seed, epoch) and the global batch "
        "(batch size x world size), the same for any number of loader workers; with the same "
        "global batch, any world size reads the same global sequence.",
    )
    order.add_argument("shards", help="shard folder (with manifest.json)")
    order.add_argument("--epoch", type=int, default=0, help="epoch (default: 0)")
    order.add_argument("--seed", type=int, default=0, help="the run's seed (default: 0)")
    order.add_argument("--rank", type=int, default=0, help="rank (default: 0)")
    order.add_argument("--world-size", type=int, default=1, help="ranks (default: 1)")
    order.add_argument("--batch-size", type=int, default=8, help="clips per batch on each rank (default: 8)")
    order.add_argument("--json", action="store_true", help="print one JSON object")
    order.set_defaults(func=_order)

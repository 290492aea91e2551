"""``fpar protocol``: a GTEA-61 or EGTEA Gaze+ protocol from raw data to the paper's table."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from launcher.protocols import METRICS, PROTOCOLS

log = logging.getLogger(__name__)


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` -> ``[0, 1, 2]``.

    Raises:
        argparse.ArgumentTypeError: On an empty list, a non-integer or a repeat.
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers like 0,1,2, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is repeated in {text!r}")
    return seeds


def _submit_options(args: argparse.Namespace):
    from launcher.submit import SubmitOptions

    return SubmitOptions(
        config=args.config, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
        tasks_per_node=args.tasks_per_node, cpus_per_task=args.cpus_per_task,
        partition=args.partition, time_min=args.time, account=args.account, local=args.local,
        resume=args.resume, signal_delay_s=args.signal_delay,
        array_parallelism=args.array_parallelism, job_name=args.job_name)


def _run(args: argparse.Namespace) -> int:
    from launcher.collect import collect
    from launcher.protocol_run import (ProtocolError, ShardOptions, fill_missing_metrics,
                                       run_protocol)
    from launcher.submit import wait_for

    try:
        slurm = None
        if args.slurm:
            from launcher.shards_slurm import SlurmBuildOptions

            tasks = {} if args.shard_tasks is None else {"tasks": args.shard_tasks}
            slurm = SlurmBuildOptions(cpus_per_task=args.workers, partition=args.partition,
                                      time_min=args.time, account=args.account, **tasks)
        elif args.shard_tasks is not None:
            raise ValueError("--shard-tasks is for --slurm shard builds")
        shard_options = ShardOptions(frames=args.frames, short_side=args.short_side,
                                     flow=args.flow, workers=args.workers, slurm=slurm)
        folder, jobs = run_protocol(args.protocol, args.config, args.overrides, args.root,
                                    args.annotations, args.shards, args.out, args.seeds,
                                    shard_options, _submit_options(args))
    except (ValueError, OSError, ProtocolError) as err:  # ConfigError, AnnotationError too
        log.error("not submitted: %s", err)
        return 2
    for job in jobs:
        print(job.job_id)
    print(folder)
    if not args.wait:
        print(f"when the runs end: fpar collect {folder}")
        return 0
    status = wait_for(jobs)
    for line in fill_missing_metrics(folder):
        log.warning("no metrics: %s", line)
    try:
        md, csv = collect(folder, metrics=list(METRICS))
    except (OSError, ValueError) as err:
        log.error("%s", err)
        return 1
    print(md.read_text(), end="")
    print(f"written: {md} {csv}")
    return status


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``fpar protocol``."""
    lines = "; ".join(f"{name}: {p.title} ({', '.join(s.name for s in p.splits)})"
                      for name, p in PROTOCOLS.items())
    p = subparsers.add_parser(
        "protocol", help="run a GTEA-61 / EGTEA Gaze+ protocol: splits x seeds as one job "
        "array, then the paper's table",
        description="Runs an evaluation protocol of the paper. Protocols: " + lines + ". "
        "Builds (or completes) the shards of every dataset split the protocol reads "
        "(under SHARDS/<split>; splits with the same segments share one folder), then "
        "submits one job array over splits x seeds, as `fpar submit --sweep` does "
        "(SLURM, or --local). Each run trains CONFIG on its split's training shards, "
        "scores its test split and writes <run>/metrics.json (top-1 and mean class "
        "accuracy). `fpar collect OUT` (or --wait) tabulates them as the paper's "
        "Table 1: per split the mean and standard deviation over seeds, then the mean "
        "over splits, in OUT/results.md and OUT/results.csv.")
    p.add_argument("protocol", choices=sorted(PROTOCOLS), help="which protocol")
    p.add_argument("config", help="experiment YAML of the protocol's dataset "
                   "(e.g. configs/experiments/gtea61_sparnet_conv5.yaml)")
    p.add_argument("overrides", nargs="*", metavar="a.b=value",
                   help="config overrides for every run (the split's shard folders and "
                   "the seed are set by the protocol)")
    data = p.add_argument_group("data and shards")
    data.add_argument("--root", required=True, type=Path,
                      help="raw data: the videos folder (EGTEA Gaze+) or the frame folder "
                      "root holding S1..S4 (GTEA-61)")
    data.add_argument("--annotations", type=Path, default=None,
                      help="annotation folder (EGTEA Gaze+ split files); default --root "
                      "(GTEA-61 reads its labels from the frame folders)")
    data.add_argument("--shards", required=True, type=Path,
                      help="parent folder of the shard folders, one per dataset split; "
                      "a build there resumes")
    data.add_argument("--frames", type=int, default=None,
                      help="frames stored per segment (default: the shard builder's)")
    data.add_argument("--short-side", type=int, default=None,
                      help="stored frame short side in pixels (default: the shard builder's)")
    data.add_argument("--flow", action="store_true", help="also store warp flow")
    data.add_argument("--workers", type=int, default=1,
                      help="shard building processes (default 1); with --slurm per decode task")
    data.add_argument("--slurm", action="store_true",
                      help="build the shards on SLURM as `fpar shards build --slurm` does: per "
                      "split a job array of --shard-tasks decode tasks (--workers CPUs each, "
                      "on --partition/--account, --time per task) and a finish job; the same "
                      "bytes as a local build")
    data.add_argument("--shard-tasks", type=int, default=None,
                      help="decode tasks per split with --slurm (default 8)")
    runs = p.add_argument_group("runs")
    runs.add_argument("--out", required=True, type=Path,
                      help="the sweep folder: one run folder per split and seed "
                      "(split=<name>,seed=<n>), protocol.json, results.md/csv")
    runs.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], metavar="S,S,...",
                      help="seeds each split runs with (default 0,1,2, as in the paper)")
    runs.add_argument("--wait", action="store_true",
                      help="wait for every run, then print and write the table; exit 1 "
                      "if a run failed")
    runs.add_argument("--resume", action="store_true",
                      help="continue each run from its folder's latest checkpoint")
    res = p.add_argument_group("resources (as fpar submit)")
    res.add_argument("--local", action="store_true",
                     help="run through submitit's local executor on this machine")
    res.add_argument("--nodes", type=int, default=1, help="nodes per run (default 1)")
    res.add_argument("--gpus-per-node", type=int, default=0,
                     help="GPUs per node (default 0: CPU training with gloo)")
    res.add_argument("--tasks-per-node", type=int, default=None,
                     help="ranks per node (default: one per GPU, or 1 without GPUs)")
    res.add_argument("--cpus-per-task", type=int, default=None,
                     help="CPUs per rank (default: SLURM's)")
    res.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    res.add_argument("--time", type=int, default=60, metavar="MIN",
                     help="time limit per run in minutes (default 60); a preempted or "
                     "timed-out run requeues and resumes")
    res.add_argument("--account", default=None, help="SLURM account to charge")
    res.add_argument("--signal-delay", type=int, default=90, metavar="S",
                     help="seconds before the time limit at which SLURM sends USR2 (default 90)")
    res.add_argument("--array-parallelism", type=int, default=64,
                     help="most runs running at once on SLURM (default 64)")
    res.add_argument("--job-name", default=None,
                     help="SLURM job name (default fpar-<protocol>)")
    p.set_defaults(func=_run)

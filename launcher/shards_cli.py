"""``fpar shards``: the shard commands of ``shards.cli``, plus building on SLURM and ``status``.

The SLURM executor lives here (``launcher.shards_slurm``, submitit) so that ``shards``
imports nothing from the launcher; both executors run the same plan / decode / finish steps.
"""

from __future__ import annotations

import argparse
import sys

SLURM_ONLY = ("tasks", "cpus_per_task", "partition", "time", "account", "mem")


def register(subparsers) -> None:
    """Adds ``fpar shards build|info|status`` (build with ``--slurm``)."""
    from shards import cli

    build, actions = cli.register(subparsers)
    slurm = build.add_argument_group(
        "SLURM", "with --slurm the videos are decoded by a job array of --tasks tasks (videos never split, "
        "groups balanced by video time), then a job that depends on the array writes the shards and the "
        "manifest: the same bytes as a local build. Re-running the command resumes")
    slurm.add_argument("--slurm", action="store_true", help="build on SLURM through submitit (OUT must be on a filesystem every node sees)")
    slurm.add_argument("--tasks", type=int, default=None, help="decode tasks of the array (default 8)")
    slurm.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per task, each running one worker process (default 1)")
    slurm.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    slurm.add_argument("--time", type=int, default=None, metavar="MIN", help="time limit per task in minutes (default 120); a task that "
                       "reaches it is requeued and keeps what it staged")
    slurm.add_argument("--account", default=None, help="SLURM account to charge")
    slurm.add_argument("--mem", type=float, default=None, metavar="GB", help="memory per task in GB (default: the cluster's)")
    slurm.add_argument("--no-wait", action="store_true", help="print the job ids and return; `fpar shards status OUT` "
                       "follows the build (default: wait, showing progress, and exit as a local build)")
    build.set_defaults(func=run_build)
    status = actions.add_parser(
        "status", help="progress of a shard build (local or SLURM): segments staged, failures, tasks, ETA",
        description="Prints where the build in DIR stands: segments staged of those to decode, failures, "
        "decode tasks running/pending/completed/failed (SLURM builds) or done, or the finished manifest's "
        "counts. Exit status 0 once the build finished with every segment written, 1 otherwise.")
    status.add_argument("dir", help="the build's --out folder")
    status.set_defaults(func=run_status)


def run_build(args: argparse.Namespace) -> int:
    """``fpar shards build``: locally, or with ``--slurm`` as a job array."""
    from shards import cli

    given = [name for name in SLURM_ONLY if getattr(args, name) is not None] + (["no_wait"] if args.no_wait else [])
    if not args.slurm:
        if given:
            print(f"fpar shards build: --{given[0].replace('_', '-')} is for --slurm builds", file=sys.stderr)
            return 2
        return cli.run_build(args)
    if args.workers is not None:
        print("fpar shards build: --workers is for local builds; with --slurm each task runs --cpus-per-task workers",
              file=sys.stderr)
        return 2
    import submitit

    from fpar.config import ConfigError
    from launcher.shards_slurm import SlurmBuildOptions, build_on_slurm
    from shards.annotations import AnnotationError

    try:
        cfg = cli.config_from_args(args)
        opts = SlurmBuildOptions(**{k: v for k, v in (
            ("tasks", args.tasks), ("cpus_per_task", args.cpus_per_task), ("partition", args.partition),
            ("time_min", args.time), ("account", args.account), ("mem_gb", args.mem)) if v is not None})
        return build_on_slurm(cfg, opts, restart=args.restart, wait=not args.no_wait)
    except (ConfigError, AnnotationError, ValueError) as err:
        print(f"fpar shards build: {err}", file=sys.stderr)
        return 2
    except (OSError, submitit.core.utils.FailedJobError) as err:
        print(f"fpar shards build: could not submit to SLURM: {err}", file=sys.stderr)
        return 2


def run_status(args: argparse.Namespace) -> int:
    from fpar.config import ConfigError
    from launcher.shards_slurm import show_status

    try:
        return show_status(args.dir)
    except ConfigError as err:
        print(f"fpar shards status: {err}", file=sys.stderr)
        return 2

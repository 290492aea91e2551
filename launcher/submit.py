"""``fpar submit``: training jobs on SLURM through submitit (or its local executor).

One job per run; a sweep (``--sweep key=v1,v2 ...``) is one job array, one task per
combination, each with its overrides and its own run folder ``SWEEP_DIR/<key=value,...>``.
Every task calls ``launcher.job.TrainJob``, which maps the job environment and calls
``fpar.train.run``, the same entry as ``fpar train``. The configuration (with every
sweep point) is checked before anything is submitted: a job that could only fail on its
configuration is never queued.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from fpar.commands import add_trust_checkpoint
from fpar.config import ConfigError
from launcher import sweep as sweeps
from launcher.slurm_env import TRAIN_ENTRY

if TYPE_CHECKING:  # submitit is imported where a job is submitted, not by ``fpar --help``
    import submitit

    from launcher.job import TrainJob

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SubmitOptions:
    """What to run and on what resources (the options of ``fpar submit``)."""

    config: str
    overrides: list[str] = dataclasses.field(default_factory=list)
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    partition: str | None = None
    time_min: int = 60
    account: str | None = None
    folder: str | None = None
    local: bool = False
    sweep: list[str] = dataclasses.field(default_factory=list)
    eval_splits: list[str] | None = None
    resume: bool = False
    trust_checkpoint: bool = False
    entry: str = TRAIN_ENTRY
    signal_delay_s: int = 90
    array_parallelism: int = 64
    job_name: str | None = None

    def tasks(self) -> int:
        """Tasks per node: as asked, else one per GPU, else one."""
        if self.tasks_per_node is not None:
            return self.tasks_per_node
        return self.gpus_per_node if self.gpus_per_node > 0 else 1


def check_config(opts: SubmitOptions, points: Sequence[sweeps.SweepPoint]) -> Any:
    """Loads the experiment with every run's overrides; returns the first run's config.

    Raises:
        ConfigError: Naming the run and the key at fault.
    """
    from fpar.experiment import load_experiment

    first = None
    for point in points or [sweeps.SweepPoint(())]:
        try:
            cfg = load_experiment(opts.config, [*opts.overrides, *point.overrides])
        except ConfigError as err:
            where = f" (sweep run {point.name})" if point.values else ""
            raise ConfigError(f"{opts.config}{where}: {err}") from err
        first = first or cfg
    return first


def build_executor(opts: SubmitOptions, log_folder: Path) -> submitit.AutoExecutor:
    """An executor for the options: SLURM, or submitit's local one with ``local``.

    Raises:
        ValueError: For resources the chosen executor cannot give.
    """
    if opts.nodes < 1 or opts.tasks() < 1:
        raise ValueError("--nodes and --tasks-per-node must be at least 1")
    if opts.local and opts.nodes != 1:
        raise ValueError("--local runs on this machine only: use --nodes 1")
    import submitit

    executor = submitit.AutoExecutor(folder=log_folder, cluster="local" if opts.local else None)
    executor.update_parameters(**executor_parameters(
        opts, name=opts.job_name or "fpar", nodes=opts.nodes, tasks_per_node=opts.tasks(),
        gpus_per_node=opts.gpus_per_node or None, cpus_per_task=opts.cpus_per_task))
    return executor


def executor_parameters(opts: Any, **resources: Any) -> dict[str, Any]:
    """submitit's parameters from what every fpar SLURM submission shares (``opts``: time
    limit, warning delay, array parallelism, partition, account, memory) and ``resources``
    (name, nodes, tasks, CPUs, GPUs; None: the cluster's default)."""
    params: dict[str, Any] = {
        "timeout_min": opts.time_min,
        "slurm_signal_delay_s": opts.signal_delay_s,
        "slurm_array_parallelism": opts.array_parallelism,
        **{key: value for key, value in resources.items() if value is not None},
    }
    for key, value in (("slurm_partition", opts.partition), ("slurm_account", opts.account),
                       ("mem_gb", getattr(opts, "mem_gb", None))):
        if value:
            params[key] = value
    return params


def submit_runs(opts: SubmitOptions) -> tuple[Path, list[submitit.Job]]:
    """Checks the configuration, then submits one job, or one array for a sweep.

    Returns:
        The run folder (the sweep folder for a sweep) and the submitted jobs.

    Raises:
        ConfigError: Before submitting anything, for a configuration that cannot load.
    """
    axes = [sweeps.parse_axis(text) for text in opts.sweep]
    points = sweeps.expand(axes) if axes else []
    cfg = check_config(opts, points)
    folder = Path(opts.folder) if opts.folder else Path(cfg.output_dir) / cfg.name
    folder = folder.resolve()
    # Job ids restart when a cluster's state is wiped: a fresh log folder per submission
    # keeps submitit from reading another job's files.
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    executor = build_executor(opts, folder / "submitit" / stamp)

    def job_for(run_dir: Path, extra: Sequence[str]) -> TrainJob:
        from launcher.job import TrainJob

        return TrainJob(opts.config, [*opts.overrides, *extra], str(run_dir),
                        resume=opts.resume, entry=opts.entry, eval_splits=opts.eval_splits,
                        trust_checkpoint=opts.trust_checkpoint)

    if not points:
        job = executor.submit(job_for(folder, []))
        log.info("submitted job %s: run folder %s", job.job_id, folder)
        return folder, [job]
    sweeps.write_sweep_file(folder, opts.config, opts.overrides, axes, points)
    with executor.batch():
        pending = [executor.submit(job_for(folder / p.name, p.overrides)) for p in points]
    log.info("submitted %d runs as one array (%s): sweep folder %s", len(pending),
             pending[0].job_id.split("_")[0] if pending else "-", folder)
    return folder, list(pending)


def wait_for(jobs: Sequence[submitit.Job]) -> int:
    """Waits for every job; returns 0 when all succeeded, else 1 (failures are logged)."""
    failed = 0
    for job in jobs:
        try:
            job.results()
        except Exception as err:  # a failed job's error text comes back from the job
            failed += 1
            log.error("job %s failed: %s", job.job_id, err)
        else:
            log.info("job %s finished", job.job_id)
    return 1 if failed else 0


def _options(args: argparse.Namespace) -> SubmitOptions:
    eval_splits = None
    if args.eval is not None:
        eval_splits = [s for s in args.eval.split(",") if s] if args.eval else []
    return SubmitOptions(
        config=args.config, overrides=list(args.overrides), nodes=args.nodes,
        gpus_per_node=args.gpus_per_node, tasks_per_node=args.tasks_per_node,
        cpus_per_task=args.cpus_per_task, partition=args.partition, time_min=args.time,
        account=args.account, folder=args.folder, local=args.local, sweep=list(args.sweep),
        eval_splits=eval_splits, resume=args.resume, trust_checkpoint=args.trust_checkpoint, entry=args.entry,
        signal_delay_s=args.signal_delay, array_parallelism=args.array_parallelism,
        job_name=args.job_name)


def _run(args: argparse.Namespace) -> int:
    opts = _options(args)
    try:
        if opts.eval_splits == []:
            opts.eval_splits = list(check_config(opts, []).test_splits())
            if not opts.eval_splits:
                raise ConfigError("--eval: the configuration names no test split "
                                  "(eval.test_splits or data.test_shards); give --eval SPLIT,...")
        folder, jobs = submit_runs(opts)
    except ValueError as err:  # ConfigError included: nothing was submitted
        log.error("not submitted: %s", err)
        return 2
    for job in jobs:
        print(job.job_id)
    print(folder)
    return wait_for(jobs) if args.wait else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``fpar submit``."""
    p = subparsers.add_parser(
        "submit", help="train on SLURM (or submitit's local executor); sweeps as job arrays",
        description="Submits training of CONFIG to SLURM through submitit. Each task maps "
        "its place in the job to RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR (first node)/"
        "MASTER_PORT (from the job id) and calls fpar.train.run. On SLURM's warning "
        "signal (USR2, --signal-delay seconds before the time limit, or scancel "
        "--signal=USR2) every rank checkpoints at the next step and the job requeues and "
        "resumes; a job requeued without warning resumes from its last checkpoint. "
        "Prints the job id(s) and the run (or sweep) folder.")
    p.add_argument("config", help="experiment YAML file")
    p.add_argument("overrides", nargs="*", metavar="a.b=value",
                   help="config overrides, applied after the file (and before sweep values)")
    p.add_argument("--nodes", type=int, default=1, help="nodes per job (default 1)")
    p.add_argument("--gpus-per-node", type=int, default=0,
                   help="GPUs per node (default 0: CPU training with gloo)")
    p.add_argument("--tasks-per-node", type=int, default=None,
                   help="ranks per node (default: one per GPU, or 1 without GPUs)")
    p.add_argument("--cpus-per-task", type=int, default=None,
                   help="CPUs per rank; also the rank's OMP_NUM_THREADS (default: SLURM's)")
    p.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    p.add_argument("--time", type=int, default=60, metavar="MIN",
                   help="time limit per job in minutes (default 60); preempted or timed-out "
                   "jobs requeue and resume")
    p.add_argument("--account", default=None, help="SLURM account to charge")
    p.add_argument("--folder", default=None, metavar="DIR",
                   help="run folder (sweep folder with --sweep); default output_dir/name of "
                   "the config; submitit's logs go to DIR/submitit/<time>/")
    p.add_argument("--local", action="store_true",
                   help="run through submitit's local executor on this machine (one node)")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="sweep an override key over values (repeatable; the runs are the "
                   "cartesian product, one job array): e.g. --sweep seed=0,1,2 "
                   "--sweep data.train_shards=shards/split1,shards/split2; run folders "
                   "are DIR/<key=value,...>/ and `fpar collect DIR` tabulates them. "
                   "--sweep @FILE: an axis whose every value sets several keys, from a "
                   "YAML/JSON file 'key: NAME' + 'values: {VALUE: {a.b: v, ...}}' (as "
                   "`fpar protocol` writes for its splits)")
    p.add_argument("--eval", nargs="?", const="", default=None, metavar="SPLIT,...",
                   help="evaluate the trained run in the run folder instead of training "
                   "(fpar.train.evaluate per split; default: the config's test splits)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run folder's latest checkpoint")
    add_trust_checkpoint(p)
    p.add_argument("--signal-delay", type=int, default=90, metavar="S",
                   help="seconds before the time limit at which SLURM sends USR2 (default 90)")
    p.add_argument("--array-parallelism", type=int, default=64,
                   help="most sweep runs running at once (default 64)")
    p.add_argument("--job-name", default=None, help="SLURM job name (default fpar)")
    p.add_argument("--entry", default=TRAIN_ENTRY, metavar="MODULE:FUNCTION",
                   help=f"function each task calls with (config, overrides, run_dir, resume) "
                   f"(default {TRAIN_ENTRY}); launcher.probe:run checks that the ranks "
                   "form one process group without training")
    p.add_argument("--wait", action="store_true",
                   help="wait for the job(s) to end; exit 1 if any failed")
    p.set_defaults(func=_run)

"""``fpar train`` and ``fpar eval``: run in this process, or as K local ranks.

With ``--nproc 1`` (or under torchrun / SLURM, where RANK is already set) the command
runs ``fpar.train.run`` / ``fpar.train.evaluate`` here. With ``--nproc K`` it starts K
copies of itself, one per rank, each with the distributed environment set.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from fpar.commands import TRUST_CHECKPOINT, add_trust_checkpoint

log = logging.getLogger(__name__)

#: Exit code of a run that stopped at a checkpoint on a preemption request.
EXIT_PREEMPTED = 3


def register(subparsers) -> None:
    """Adds ``train`` and ``eval`` to the ``fpar`` command."""
    train = subparsers.add_parser(
        "train", help="train an experiment (DeepSpeed; one or several local processes)",
        description="Train an experiment config. A run folder that holds a complete "
        "checkpoint continues from it. Exit code 3 means preempted (checkpoint saved).")
    train.add_argument("config", nargs="?", help="experiment YAML (configs/experiments/*.yaml); "
                       "may be left out with --resume (the run folder's config.yaml is used)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="config overrides, e.g. train.precision=bf16 data.batch_size=4")
    train.add_argument("--nproc", type=int, default=1,
                       help="local processes (ranks) to start; default 1")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its latest complete checkpoint")
    train.add_argument("--run-dir", metavar="DIR",
                       help="run folder (default: output_dir/name from the config)")
    add_trust_checkpoint(train)
    train.set_defaults(func=train_main)

    ev = subparsers.add_parser(
        "eval", help="score a split with a trained run's checkpoint (scores file)",
        description="Write an EPIC-format scores file for a split: exactly one row per "
        "segment, also with several processes. A segment is scored from the run's "
        "eval.clips x eval.crops test-time views (--clips/--crops override), averaged by "
        "eval.aggregate; the file records the views. Beside it, ms_SPLIT.json: the MS head's "
        "per-cell F1 and IoU of 'moving' (regression heads: squared error) at the head's "
        "resolution against the split's motion maps, next to predicting all static and "
        "each cell's moving frequency in the training split, and the head's F1 on the cells "
        "that frequency calls static (what the head finds beyond where things usually "
        "move); printed as one line.")
    ev.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT",
                    help="run folder (its latest complete checkpoint) or a checkpoint folder")
    ev.add_argument("--split", required=True,
                    help="train, val, test, a name of eval.test_splits, or a shard folder")
    ev.add_argument("--nproc", type=int, default=1, help="local processes (ranks); default 1")
    ev.add_argument("--out", metavar="FILE", help="scores file (default RUN_DIR/scores_SPLIT.pt)")
    ev.add_argument("--clips", type=int, metavar="K",
                    help="temporal positions per segment, evenly spread inside each chunk "
                    "(default: the run's eval.clips; 1 = the chunk centres)")
    ev.add_argument("--crops", type=int, metavar="C",
                    help="crops per position: 1 centre, 3 left/centre/right full-height "
                    "squares (PySlowFast), 5 corners and centre, 10 those and their mirrors "
                    "(TSN over-sampling) (default: the run's eval.crops)")
    ev.add_argument("--aggregate", choices=("prob", "logit"),
                    help="combine the K x C views by the mean of the softmax, stored as its "
                    "log (prob), or the mean of the logits (logit) (default: the run's "
                    "eval.aggregate)")
    add_trust_checkpoint(ev)
    ev.set_defaults(func=eval_main)


def _under_launcher() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _child_argv(args: argparse.Namespace, command: str) -> list[str]:
    argv = ["-m", "launcher.cli"]
    if getattr(args, "verbose", False):
        argv.append("-v")
    return argv + [command] + ([TRUST_CHECKPOINT] if args.trust_checkpoint else [])


def train_main(args: argparse.Namespace) -> int:
    """Runs ``fpar train``; a bad config or precision is reported before anything starts."""
    from fpar.config import ConfigError
    from fpar.engine.checkpoint_files import CheckpointRefused

    try:
        return _train(args)
    except (ConfigError, FileNotFoundError, CheckpointRefused) as err:
        print(f"fpar train: error: {err}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from fpar.engine import preemption
    from fpar.run_setup import default_run_dir, resolve_config

    if args.config is None and args.resume is None:
        print("fpar train: give a config file or --resume RUN_DIR", file=sys.stderr)
        return 2
    if args.config and "=" in args.config and not Path(args.config).exists():
        args.overrides = [args.config, *args.overrides]
        args.config = None
    run_dir = args.run_dir or args.resume
    cfg = resolve_config(args.config, args.overrides, run_dir)
    from fpar.engine.deepspeed_setup import check_precision
    from fpar.preflight import check_experiment

    # Before any process starts: precision, shard folders, ImageNet weights.
    check_precision(cfg.train.precision, cfg.train.zero_stage)
    check_experiment(cfg)
    run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
    if args.nproc > 1:
        if _under_launcher():
            print("fpar train: --nproc > 1 under torchrun/SLURM; let the launcher start ranks",
                  file=sys.stderr)
            return 2
        from launcher.local_launch import launch

        argv = _child_argv(args, "train")
        argv += [args.config] if args.config else []
        argv += list(args.overrides) + ["--run-dir", str(run_dir)]
        argv += ["--resume", str(run_dir)] if args.resume else []
        return launch(argv, args.nproc)
    from fpar.train import run

    preemption.install_handlers()
    try:
        summary = run(args.config if args.config else None, args.overrides, run_dir,
                      resume=bool(args.resume), trust_checkpoint=args.trust_checkpoint)
    except preemption.Preempted as err:
        log.warning("%s", err)
        return EXIT_PREEMPTED
    log.info("finished: %s", summary)
    return 0


def eval_main(args: argparse.Namespace) -> int:
    """Runs ``fpar eval``; a split without shards is reported as an error."""
    from fpar.config import ConfigError
    from fpar.engine.checkpoint_files import CheckpointRefused

    try:
        return _eval(args)
    except (ConfigError, FileNotFoundError, CheckpointRefused) as err:
        print(f"fpar eval: error: {err}", file=sys.stderr)
        return 2


def _view_overrides(args: argparse.Namespace) -> list[str]:
    """``eval.clips=K``-style overrides of the options given."""
    return [f"eval.{flag}={getattr(args, flag)}" for flag in ("clips", "crops", "aggregate")
            if getattr(args, flag) is not None]


def _eval(args: argparse.Namespace) -> int:
    if args.clips is not None or args.crops is not None or args.aggregate is not None:
        from fpar.config import ConfigError
        from fpar.experiment import EvalConfig

        try:  # a bad count is refused before any process starts
            EvalConfig(clips=1 if args.clips is None else args.clips,
                       crops=1 if args.crops is None else args.crops)
        except ValueError as err:
            raise ConfigError(str(err).replace("eval.", "--")) from err
    if args.nproc > 1:
        if _under_launcher():
            print("fpar eval: --nproc > 1 under torchrun/SLURM", file=sys.stderr)
            return 2
        from launcher.local_launch import launch

        argv = _child_argv(args, "eval") + [args.checkpoint, "--split", args.split]
        argv += ["--out", args.out] if args.out else []
        for flag in ("clips", "crops", "aggregate"):
            if getattr(args, flag) is not None:
                argv += [f"--{flag}", str(getattr(args, flag))]
        return launch(argv, args.nproc)
    from fpar.train import evaluate

    path = evaluate(args.checkpoint, args.split, args.out, _view_overrides(args),
                    trust_checkpoint=args.trust_checkpoint)
    print(path)
    from fpar.evaluation.ms_score import headline
    from fpar.run_layout import ms_path
    from shards.files import read_json

    ms = ms_path(path, Path(args.split).name)
    if ms.is_file() and ms.stat().st_mtime >= path.stat().st_mtime:
        print(f"{ms}: {headline(read_json(ms)['scores'])}")
    return 0

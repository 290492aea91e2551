"""The callable every task of a SLURM (or submitit-local) job runs.

``TrainJob`` maps the task's place in the job to the trainer's environment and calls the
same entry as a local run, ``fpar.train.run(config, overrides, run_dir, resume)``. It owns
no training logic; what it adds is the life cycle on a shared cluster:

* SLURM's warning signal (USR2, ``--signal=USR2@<delay>``) only asks the trainer to stop:
  every rank checkpoints at the next step boundary (the ranks agree first), the entry
  raises ``Preempted``, and then submitit's own handler runs on rank 0: it pickles
  ``checkpoint()`` (this job with ``resume=True``) and requeues the job.
* A job that SLURM requeued without warning (node failure, ``scontrol requeue``) resumes
  from the last periodic checkpoint of its run folder.
* A bad configuration (``ConfigError``) fails the job for good: ``checkpoint()`` returns
  None, so submitit does not requeue it.

Without submitit, ``python -m launcher.job CONFIG --run-dir DIR`` under ``srun`` does the
same mapping (see ``slurm/train.sbatch``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import submitit

from launcher import slurm_env
from shards.files import atomic_write_json

log = logging.getLogger(__name__)

TRAIN_ENTRY = slurm_env.TRAIN_ENTRY
EVAL_ENTRY = "fpar.train:evaluate"
PREEMPT_SIGNAL = signal.SIGUSR2


def resolve_entry(spec: str) -> Callable[..., Any]:
    """Imports ``module:function``.

    Raises:
        ValueError: If ``spec`` is malformed or names nothing callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"entry {spec!r} is not of the form module:function")
    func = getattr(importlib.import_module(module_name), attr, None)
    if not callable(func):
        raise ValueError(f"entry {spec!r}: {module_name} has no callable {attr}")
    return func


def has_checkpoint(run_dir: str | Path) -> bool:
    """True when the run folder holds a complete checkpoint to resume from."""
    from fpar.engine.checkpoint import latest_tag
    from fpar.run_layout import checkpoints_dir

    return latest_tag(checkpoints_dir(run_dir)) is not None


class TrainJob(submitit.helpers.Checkpointable):
    """One training (or evaluation) job; every task of the job calls it.

    Args:
        config: The experiment YAML file.
        overrides: ``a.b=value`` overrides, applied after the file.
        run_dir: The run folder (checkpoints, logs, metrics).
        resume: Continue from the run folder's latest checkpoint.
        entry: ``module:function`` called with ``(config, overrides, run_dir, resume)``.
        eval_splits: When given, evaluate these splits of the run instead of training
            (``fpar.train.evaluate(run_dir, split)`` for each).
        trust_checkpoint: Read the run's checkpoints with full unpickling (they may run
            code); passed to the entry as ``trust_checkpoint=True`` only when set, so an
            entry with the four-argument signature keeps working without it.
    """

    def __init__(self, config: str, overrides: Sequence[str] = (), run_dir: str = "",
                 resume: bool = False, entry: str = TRAIN_ENTRY,
                 eval_splits: Sequence[str] | None = None, trust_checkpoint: bool = False) -> None:
        if not run_dir:
            raise ValueError("TrainJob needs a run folder")
        self.config = str(config)
        self.overrides = list(overrides)
        self.run_dir = str(run_dir)
        self.resume = resume
        self.entry = entry
        self.eval_splits = list(eval_splits) if eval_splits is not None else None
        self.trust_checkpoint = trust_checkpoint
        self.permanent_failure = ""

    def __call__(self) -> Any:
        if not logging.getLogger().handlers:  # the job's log file shows fpar's messages
            logging.basicConfig(level=logging.INFO,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        placement = slurm_env.current_placement()
        is_local = os.environ.get("SUBMITIT_EXECUTOR") == "local"
        slurm_env.export(placement, local=is_local)
        self._record(placement)
        if self.eval_splits is not None:
            return self._evaluate()
        # A requeue the job did not ask for (no USR2) still continues from the run folder.
        resume = self.resume or placement.restart_count > 0
        if resume and not has_checkpoint(self.run_dir):
            log.warning("%s: no complete checkpoint yet; starting from the beginning", self.run_dir)
            resume = False
        return self._train(resume)

    def _train(self, resume: bool) -> Any:
        from fpar.config import ConfigError
        from fpar.engine import preemption

        entry = resolve_entry(self.entry)
        # submitit's handler (checkpoint + requeue) runs later, at a step boundary.
        requeue_handler = signal.getsignal(PREEMPT_SIGNAL)
        preemption.clear()
        signal.signal(PREEMPT_SIGNAL, preemption.request)
        try:
            return entry(self.config, self.overrides, self.run_dir, resume, **self._trust())
        except ConfigError as err:
            self.permanent_failure = f"configuration error: {err}"
            raise
        except preemption.Preempted as stop:
            if not callable(requeue_handler):  # not under submitit: the caller decides
                raise
            log.info("checkpoint %s saved at step %d; requeueing", stop.checkpoint, stop.step)
            # On rank 0 this pickles checkpoint() and requeues, then exits; the other ranks
            # return from it and leave: the requeue ends the job's steps anyway.
            requeue_handler(PREEMPT_SIGNAL, None)
            sys.exit(-1)
        finally:
            signal.signal(PREEMPT_SIGNAL, requeue_handler)

    def _evaluate(self) -> dict[str, str]:
        evaluate = resolve_entry(EVAL_ENTRY)
        return {split: str(evaluate(self.run_dir, split, **self._trust())) for split in self.eval_splits or []}

    def _trust(self) -> dict[str, bool]:
        return {"trust_checkpoint": True} if self.trust_checkpoint else {}

    def _record(self, placement: slurm_env.Placement) -> None:
        """Writes where this task ran (``<run_dir>/placement/rank<k>.json``)."""
        record = placement.as_dict()
        record.update({k: os.environ[k] for k in ("MASTER_ADDR", "MASTER_PORT")})
        atomic_write_json(Path(self.run_dir) / "placement" / f"rank{placement.global_rank}.json",
                          record)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission | None:
        """What submitit requeues on preemption or time-out: this job, resuming.

        Returns:
            None after a failure that a requeue would only repeat (submitit then stops).
        """
        if self.permanent_failure:
            log.error("not requeueing: %s", self.permanent_failure)
            return None
        resumed = TrainJob(self.config, self.overrides, self.run_dir, resume=True,
                           entry=self.entry, eval_splits=self.eval_splits,
                           trust_checkpoint=self.trust_checkpoint)
        return submitit.helpers.DelayedSubmission(resumed)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one task of a plain ``srun`` step (no submitit): ``python -m launcher.job``."""
    parser = argparse.ArgumentParser(
        prog="python -m launcher.job",
        description="One task of a SLURM job step: maps SLURM_* to RANK/LOCAL_RANK/"
        "WORLD_SIZE/MASTER_ADDR/MASTER_PORT and runs the trainer. Start it with srun.")
    parser.add_argument("config", help="experiment YAML file")
    parser.add_argument("overrides", nargs="*", help="a.b=value overrides")
    parser.add_argument("--run-dir", required=True, help="run folder (checkpoints, metrics)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the run folder's latest checkpoint")
    parser.add_argument("--entry", default=TRAIN_ENTRY,
                        help=f"module:function to call (default {TRAIN_ENTRY})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from fpar.engine import preemption

    # Plain sbatch: the warning signal (sbatch --signal=B:USR2@90 forwards it) checkpoints
    # and stops; `sbatch --requeue` plus resume on restart does the rest.
    job = TrainJob(args.config, args.overrides, args.run_dir, resume=args.resume,
                   entry=args.entry)
    try:
        job()
    except preemption.Preempted as stop:
        log.info("preempted at step %d (%s)", stop.step, stop.checkpoint)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

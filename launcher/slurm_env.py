"""From a job's placement (submitit or plain SLURM) to the torchrun-style variables.

The trainer reads RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, whoever
started it. Here a SLURM (or submitit-local) task turns its place in the job into those
five: the rendezvous host is the job's first node and the port is derived from the job id,
so every task of a job computes the same port without talking to the others, and two jobs
sharing a node (array tasks, for instance) do not collide.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any, MutableMapping

#: The function a task calls unless told otherwise (here, not in ``launcher.job``, so that
#: ``fpar submit --help`` does not need submitit).
TRAIN_ENTRY = "fpar.train:run"

# Ports from here upward are rarely handed out as ephemeral ports (Linux uses 32768+).
PORT_BASE = 20000
PORT_SPAN = 10000


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one task of a job runs.

    Attributes:
        job_id: The job's id (``123`` or, for an array task, ``123_4``).
        raw_job_id: SLURM's unique id of this job (array tasks each have their own).
        global_rank: Rank of the task over the whole job.
        local_rank: Rank of the task on its node.
        world_size: Tasks in the job.
        hostnames: The job's nodes, in SLURM's order.
        hostname: The node this task runs on.
        restart_count: How often SLURM requeued this job before this start.
    """

    job_id: str
    raw_job_id: str
    global_rank: int
    local_rank: int
    world_size: int
    hostnames: tuple[str, ...]
    hostname: str
    restart_count: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON records."""
        out = dataclasses.asdict(self)
        out["hostnames"] = list(self.hostnames)
        return out


def master_port(raw_job_id: str) -> int:
    """The rendezvous port of a job, a pure function of its id.

    Args:
        raw_job_id: SLURM_JOB_ID (unique per array task) or the local job's id.

    Returns:
        A port in ``[PORT_BASE, PORT_BASE + PORT_SPAN)``.
    """
    digits = "".join(ch for ch in str(raw_job_id) if ch.isdigit())
    if not digits:
        raise ValueError(f"job id {raw_job_id!r} has no digits to derive a port from")
    return PORT_BASE + int(digits) % PORT_SPAN


def placement_from_submitit(env: Any) -> Placement:
    """Reads a submitit ``JobEnvironment`` (SLURM or local executor).

    Args:
        env: ``submitit.JobEnvironment()`` of the running task.
    """
    restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    return Placement(
        job_id=str(env.job_id),
        raw_job_id=str(env.raw_job_id),
        global_rank=int(env.global_rank),
        local_rank=int(env.local_rank),
        world_size=int(env.num_tasks),
        hostnames=tuple(env.hostnames),
        hostname=socket.gethostname(),
        restart_count=restart,
    )


def current_placement() -> Placement:
    """The placement of this task, inside submitit or a plain ``srun`` step.

    Raises:
        RuntimeError: Outside any SLURM or submitit job.
    """
    import submitit
    from submitit.slurm.slurm import SlurmJobEnvironment

    if os.environ.get("SUBMITIT_EXECUTOR"):
        return placement_from_submitit(submitit.JobEnvironment())
    if "SLURM_JOB_ID" in os.environ and "SLURM_PROCID" in os.environ:
        return placement_from_submitit(SlurmJobEnvironment())
    raise RuntimeError("not inside a SLURM job step (SLURM_JOB_ID/SLURM_PROCID unset); "
                       "start it with srun, or use `fpar train` for a local run")


def dist_variables(placement: Placement, local: bool = False) -> dict[str, str]:
    """The five variables the trainer reads, for one task.

    Args:
        placement: The task's placement.
        local: True for submitit's local executor: every task is on this machine, so the
            rendezvous is on the loopback address whatever the host's name resolves to.
    """
    if not placement.hostnames:
        raise RuntimeError(f"job {placement.job_id}: empty node list")
    return {
        "RANK": str(placement.global_rank),
        "LOCAL_RANK": str(placement.local_rank),
        "WORLD_SIZE": str(placement.world_size),
        "MASTER_ADDR": "127.0.0.1" if local else placement.hostnames[0],
        "MASTER_PORT": str(master_port(placement.raw_job_id)),
    }


def export(placement: Placement, environ: MutableMapping[str, str] | None = None,
           local: bool = False) -> dict[str, str]:
    """Sets the trainer's variables in ``environ`` (default ``os.environ``).

    CPU threads follow the CPUs SLURM gave the task, so that tasks sharing a node do not
    oversubscribe it (unless the user chose OMP_NUM_THREADS).

    Returns:
        The variables set.
    """
    env = os.environ if environ is None else environ
    values = dist_variables(placement, local=local)
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and "OMP_NUM_THREADS" not in env:
        values["OMP_NUM_THREADS"] = cpus
    env.update(values)
    return values

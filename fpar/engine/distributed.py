"""Process-group set-up and teardown from the torchrun-style environment variables.

DeepSpeed falls back to MPI discovery when any of RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR or MASTER_PORT is missing, so a lone process sets all five itself and a
partial set is refused. On a machine without CUDA the CPU accelerator (gloo) is chosen
before deepspeed is imported, and compiled DeepSpeed ops are cached inside the project.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import gc
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

ENV_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int
    local_rank: int
    world_size: int
    master_addr: str
    master_port: int

    @property
    def is_main(self) -> bool:
        """True on global rank 0, the rank that writes logs and shared files."""
        return self.rank == 0


def find_free_port() -> int:
    """Returns a TCP port on localhost that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_env(environ: dict[str, str] | None = None) -> DistEnv:
    """Reads the job layout from the environment, filling in a lone process's values.

    Args:
        environ: The environment to read and complete (default ``os.environ``).

    Returns:
        The layout.

    Raises:
        RuntimeError: If only some of the five variables are set, or they disagree.
    """
    env = os.environ if environ is None else environ
    present = [k for k in ENV_KEYS if k in env]
    if not present:
        env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(find_free_port()))
    elif len(present) != len(ENV_KEYS):
        missing = [k for k in ENV_KEYS if k not in env]
        raise RuntimeError(
            f"distributed environment incomplete: {', '.join(present)} set but "
            f"{', '.join(missing)} missing (set all of {', '.join(ENV_KEYS)} or none)")
    try:
        layout = DistEnv(int(env["RANK"]), int(env["LOCAL_RANK"]), int(env["WORLD_SIZE"]),
                         env["MASTER_ADDR"], int(env["MASTER_PORT"]))
    except ValueError as err:
        raise RuntimeError(f"distributed environment: not an integer ({err})") from err
    if not 0 <= layout.rank < layout.world_size:
        raise RuntimeError(f"RANK={layout.rank} outside WORLD_SIZE={layout.world_size}")
    return layout


def prepare_accelerator(environ: dict[str, str] | None = None) -> str:
    """Chooses DeepSpeed's accelerator and op cache; call before importing deepspeed.

    Returns:
        ``"cuda"`` or ``"cpu"``.
    """
    env = os.environ if environ is None else environ
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        env.setdefault("DS_ACCELERATOR", "cpu")
    cache = Path(env.get("FPAR_CACHE", REPO_ROOT / ".cache"))
    env.setdefault("TORCH_EXTENSIONS_DIR", str(cache / "torch_extensions"))
    return device


def _skip_shm_comm_op() -> None:
    """Lets DeepSpeed's CPU backend use plain gloo collectives instead of its shm op.

    The op is compiled on first use under a lock file in TORCH_EXTENSIONS_DIR; a process
    killed while it holds that lock (a preempted or cancelled job) leaves the file behind,
    and every later start then waits on it forever. ``FPAR_DEEPSPEED_SHM=1`` opts back in.
    """
    import deepspeed.ops
    from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder

    deepspeed.ops.__compatible_ops__[ShareMemCommBuilder.NAME] = False


def init_process_group(layout: DistEnv, timeout_s: float = 1800.0) -> torch.device:
    """Starts the process group through DeepSpeed (nccl on GPUs, gloo on CPU).

    Returns:
        The device this rank computes on.
    """
    device_type = prepare_accelerator()
    import deepspeed  # imported late: the accelerator must be chosen first

    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(layout.local_rank)
    elif os.environ.get("FPAR_DEEPSPEED_SHM", "0") != "1":
        _skip_shm_comm_op()
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False,
                                   timeout=datetime.timedelta(seconds=timeout_s))
        # Engines dropped after teardown (a benchmark's closures, an exception's frames)
        # still hold groups; collected here, they go before the interpreter is torn down.
        atexit.register(gc.collect)
    return torch.device("cuda", layout.local_rank) if device_type == "cuda" else torch.device("cpu")


def teardown() -> None:
    """Leaves the process group cleanly: a barrier, destroy, then frees what held it.

    A gloo group whose threads are still running when the interpreter is torn down
    now and then aborts the process ("terminate called without an active exception",
    exit -6) after a finished run. destroy only unregisters the groups: a DeepSpeed
    engine sits in a reference cycle and keeps its data-parallel group (and, on rank 0,
    the TCP store) alive until a garbage collection, so one is run here; a released
    engine (``Trainer.close``) is then gone with its threads.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            # DeepSpeed keeps groups of the world it saw (a clone for broadcasts); its own
            # destroy releases them, so that a later group in this process starts clean.
            comm = sys.modules.get("deepspeed.comm.comm")
            if comm is not None and getattr(comm, "cdb", None) is not None:
                comm.destroy_process_group()
            else:
                dist.destroy_process_group()
            gc.collect()
            left = process_group_threads()
            if left:
                log.debug("process-group threads still running after teardown: %s", left)


def process_group_threads() -> list[str]:
    """Names of this process's running gloo and TCP-store threads (Linux; else empty)."""
    names = []
    tasks = Path("/proc/self/task")
    for task in (tasks.iterdir() if tasks.is_dir() else ()):
        try:
            name = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        if name.startswith(("pt_gloo", "gloo_", "pt_tcpstore")):
            names.append(name)
    return sorted(names)


def barrier() -> None:
    """Waits for every rank (no-op outside a process group)."""
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sums a short list of floats over ranks (one collective for all of them)."""
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        # gloo reduces CPU tensors; nccl needs them on the GPU.
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def gather_objects(obj: Any) -> list[Any]:
    """Gathers one picklable object from every rank onto every rank, in rank order."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def average_buffers(module: torch.nn.Module) -> None:
    """Makes every rank hold the same buffers: floating ones (BatchNorm running
    statistics) averaged over ranks, the others taken from rank 0.

    Data-parallel training keeps parameters equal but lets each rank's running
    statistics follow its own batches; evaluation and checkpoints need one set.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for buf in module.buffers():
        if buf.is_floating_point():
            # Reduced in fp32: gloo lacks some half types and bf16 sums lose precision.
            total = buf.data.float()
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
            buf.data.copy_(total / world)
        else:
            dist.broadcast(buf.data, src=0)

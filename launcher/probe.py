"""A connectivity check with the trainer's signature: do the job's ranks form one group?

``fpar submit ... --entry launcher.probe:run`` runs this in every task instead of the
trainer: it joins the process group from the same five variables the trainer reads,
all-reduces the ranks and gathers the hostnames over gloo, and writes what it saw to
``<run_dir>/probe/rank<k>.json``. A cluster where this passes runs the trainer's
rendezvous too.
"""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path
from typing import Any, Sequence

from shards.files import atomic_write_json


def run(config: str | None = None, overrides: Sequence[str] = (), run_dir: str | None = None,
        resume: bool = False) -> dict[str, Any]:
    """Joins the process group, checks it with two collectives, records the result.

    Args:
        config: Unused (same signature as ``fpar.train.run``).
        overrides: Unused.
        run_dir: Where ``probe/rank<k>.json`` goes.
        resume: Unused.

    Returns:
        This rank's record: rank, world size, hostname, every rank's hostname, the
        all-reduced sum of ranks (``world*(world-1)/2`` when the group is whole).
    """
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        total = torch.tensor([float(rank)])
        dist.all_reduce(total)
        hostnames: list[Any] = [None] * world
        dist.all_gather_object(hostnames, socket.gethostname())
        dist.barrier()
    finally:
        dist.destroy_process_group()
    record = {"rank": rank, "local_rank": int(os.environ["LOCAL_RANK"]), "world_size": world,
              "hostname": socket.gethostname(), "hostnames": hostnames,
              "rank_sum": int(total.item()), "master_addr": os.environ["MASTER_ADDR"],
              "master_port": int(os.environ["MASTER_PORT"])}
    if run_dir:
        atomic_write_json(Path(run_dir) / "probe" / f"rank{rank}.json", record)
    return record

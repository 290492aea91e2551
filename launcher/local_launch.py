"""Local multi-process launch: K child processes on this machine, one per rank.

Each child gets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (a free port)
and runs the given command. SIGTERM / SIGINT / SIGUSR1 sent to the parent are passed on
to every child (which checkpoint and stop at the next step); if one child fails, the
others are stopped after a grace period so that no rank waits forever in a collective.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Sequence

from fpar.engine.distributed import find_free_port

log = logging.getLogger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def rank_env(rank: int, world_size: int, port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of local rank ``rank`` of a ``world_size``-process job.

    With several ranks, each gets an equal share of this process's CPUs as its
    OMP_NUM_THREADS (unless one is set): every rank's torch would otherwise start one
    thread per core, and K ranks on the same cores slow each other several times over.
    """
    env = dict(os.environ if base is None else base)
    env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if world_size > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, usable_cores() // world_size))
    return env


def launch(argv: Sequence[str], nproc: int, grace_s: float = 30.0) -> int:
    """Runs ``python argv...`` as ``nproc`` ranks and waits for all of them.

    Args:
        argv: Arguments after the interpreter (e.g. ``["-m", "launcher.cli", "train", ...]``).
        nproc: Number of ranks.
        grace_s: How long the others may run on after one rank failed.

    Returns:
        0 if every rank succeeded, else the first non-zero exit code.
    """
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    port = find_free_port()
    children = [subprocess.Popen([sys.executable, *argv], env=rank_env(r, nproc, port))
                for r in range(nproc)]
    previous = {}

    def forward(signum, frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in FORWARDED:
        previous[signum] = signal.signal(signum, forward)
    try:
        return _wait(children, grace_s)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait(children: list[subprocess.Popen], grace_s: float) -> int:
    failed_at = None
    code = 0
    while True:
        codes = [c.poll() for c in children]
        bad = [rc for rc in codes if rc not in (None, 0)]
        if bad and failed_at is None:
            failed_at = time.monotonic()
            code = bad[0]
            log.error("a rank exited with code %d; stopping the others", code)
        if all(rc is not None for rc in codes):
            return code
        if failed_at is not None and time.monotonic() - failed_at > grace_s:
            for child in children:
                if child.poll() is None:
                    child.kill()
        time.sleep(0.2)

"""The preemption flag: set from a signal handler, honoured by the trainer at a step boundary.

``request()`` only flips a flag (safe inside a signal handler). At every step boundary
the trainer asks ``requested()``, the ranks agree (any rank asking stops them all), every
rank saves a checkpoint, and the run raises ``Preempted``; re-running with resume on the
same run directory continues exactly.
"""

from __future__ import annotations

import signal
from typing import Iterable

_flag = {"requested": False, "signal": None}


class Preempted(RuntimeError):
    """Raised by a run that stopped at a checkpoint because preemption was requested."""

    def __init__(self, checkpoint: str, step: int) -> None:
        super().__init__(f"preempted: checkpoint {checkpoint} saved at step {step}; "
                         "resume with the same run directory to continue")
        self.checkpoint = checkpoint
        self.step = step


def request(signum: int | None = None, frame: object = None) -> None:
    """Asks the running trainer to checkpoint and stop (usable as a signal handler)."""
    _flag["requested"] = True
    _flag["signal"] = signum


def requested() -> bool:
    """True once ``request`` has been called in this process."""
    return bool(_flag["requested"])


def clear() -> None:
    """Forgets an earlier request (a new run in the same process starts clean)."""
    _flag["requested"] = False
    _flag["signal"] = None


def install_handlers(signums: Iterable[int] = (signal.SIGUSR1, signal.SIGTERM)) -> None:
    """Makes the given signals request preemption instead of killing the process."""
    for signum in signums:
        signal.signal(signum, request)

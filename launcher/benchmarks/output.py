"""Keeping a benchmark's standard output for its one result line."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Sends everything written to file descriptor 1 to descriptor 2 meanwhile.

    Child processes (``fpar train``) and libraries (DeepSpeed's logger) print to stdout;
    redirecting the descriptor, not just ``sys.stdout``, catches them too, so that the
    benchmark's JSON line stays alone on stdout.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)

"""Seconds spent per named stage, for the builder's benchmark (a no-op when not asked for)."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from typing import ContextManager


class Stopwatch:
    """Adds the wall time of each ``with stopwatch("stage"):`` block to ``seconds[stage]``, and
    the CPU time of the process (all its threads: decoders run their own) to
    ``cpu_seconds[stage]``, which other processes sharing the cores disturb less."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str):
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start
            self.cpu_seconds[stage] += time.process_time() - cpu_start


def no_stopwatch(_stage: str) -> ContextManager[None]:
    """Stands in for a :class:`Stopwatch` when nobody measures."""
    return nullcontext()

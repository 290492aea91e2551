"""Sweeps: the cartesian product of ``--sweep key=v1,v2`` options, one run per point.

Every sweep key is an ordinary override key: ``--sweep seed=0,1,2`` gives the runs the
override ``seed=0``, ``seed=1``, ``seed=2``; ``--sweep data.train_shards=a,b`` switches
datasets splits by their shard folders; any ``a.b`` key works. A run's folder is
``SWEEP_DIR/<key=value,...>/`` and ``SWEEP_DIR/sweep.json`` lists the runs, so that
``fpar collect`` can find them and tell the repeat key (the seed) from the others.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any, Sequence

from fpar.config import ConfigError
from fpar.io import atomic_write_json, read_json

SWEEP_FILE = "sweep.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


@dataclasses.dataclass(frozen=True)
class SweepAxis:
    """One ``--sweep key=v1,v2,...`` option."""

    key: str
    values: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its values (in axis order) and folder name."""

    values: tuple[tuple[str, str], ...]

    @property
    def overrides(self) -> list[str]:
        """The ``key=value`` overrides of this run."""
        return [f"{k}={v}" for k, v in self.values]

    @property
    def name(self) -> str:
        """Folder name ``key=value,...``; characters unsafe in paths become ``_``."""
        return _UNSAFE.sub("_", ",".join(self.overrides))


def parse_axis(text: str) -> SweepAxis:
    """Parses ``key=v1,v2,...``.

    Raises:
        ConfigError: On a missing key or value, or a value repeated.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    values = tuple(v.strip() for v in raw.split(",")) if sep else ()
    if not key or not values or any(not v for v in values):
        raise ConfigError(f"--sweep '{text}' is not of the form key=v1,v2,...")
    if len(set(values)) != len(values):
        raise ConfigError(f"--sweep '{text}': a value is repeated")
    return SweepAxis(key, values)


def expand(axes: Sequence[SweepAxis]) -> list[SweepPoint]:
    """All combinations, the first axis varying slowest.

    Raises:
        ConfigError: When a key is swept twice or two runs would share a folder.
    """
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--sweep: a key is given twice ({', '.join(keys)})")
    points = [SweepPoint(tuple(zip(keys, combo)))
              for combo in itertools.product(*(a.values for a in axes))]
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ConfigError("--sweep: two runs would share a folder name; use values that "
                          "differ in letters, digits or . _ = + -")
    return points


def write_sweep_file(sweep_dir: Path, config: str, overrides: Sequence[str],
                     axes: Sequence[SweepAxis], points: Sequence[SweepPoint]) -> Path:
    """Records the sweep for ``fpar collect``; returns the file's path."""
    path = sweep_dir / SWEEP_FILE
    atomic_write_json(path, {
        "config": str(config),
        "overrides": list(overrides),
        "axes": [{"key": a.key, "values": list(a.values)} for a in axes],
        "runs": [{"name": p.name, "values": dict(p.values), "overrides": p.overrides}
                 for p in points],
    })
    return path


def read_sweep_file(sweep_dir: str | Path) -> dict[str, Any]:
    """Reads ``SWEEP_DIR/sweep.json``.

    Raises:
        FileNotFoundError: If the folder holds no sweep.
    """
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a sweep folder (no {SWEEP_FILE}; "
                                "it is written by `fpar submit --sweep`)")
    data = read_json(path)
    for key in ("axes", "runs"):
        if key not in data:
            raise ValueError(f"{path}: missing key '{key}'")
    return data

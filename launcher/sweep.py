"""Sweeps: the cartesian product of ``--sweep key=v1,v2`` options, one run per point.

Every sweep key is an ordinary override key: ``--sweep seed=0,1,2`` gives the runs the
override ``seed=0``, ``seed=1``, ``seed=2``; ``--sweep data.train_shards=a,b`` switches
datasets splits by their shard folders; any ``a.b`` key works. A run's folder is
``SWEEP_DIR/<key=value,...>/`` and ``SWEEP_DIR/sweep.json`` lists the runs, so that
``fpar collect`` can find them and tell the repeat key (the seed) from the others.

An axis may also bundle: each of its values names a set of overrides applied together, as
when a dataset split switches the training shards and the test splits at once. Such an
axis comes from a file, ``--sweep @axis.yaml``::

    key: split
    values:
      loso1: {data.train_shards: shards/train_loso1, eval.test_splits: {test_loso1: ...}}
      loso2: [data.train_shards=shards/train_loso2, "eval.test_splits={test_loso2: ...}"]

(a value's overrides as a mapping of key to value, or as ``key=value`` strings). Its key
only names the axis (run folders ``split=loso1,...``); it is not a config key.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from fpar.config import ConfigError, load_yaml, parse_override
from shards.files import atomic_write_json, read_json

SWEEP_FILE = "sweep.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


@dataclasses.dataclass(frozen=True)
class SweepAxis:
    """One ``--sweep`` option: a key and its values.

    Attributes:
        key: The override key, or for a bundling axis the axis's name.
        values: The values, in run order.
        settings: Empty for a plain axis (value v gives ``key=v``); else, per value, the
            ``key=value`` overrides it sets.
    """

    key: str
    values: tuple[str, ...]
    settings: tuple[tuple[str, ...], ...] = ()

    def overrides_for(self, value: str) -> tuple[str, ...]:
        """The overrides that one of this axis's values sets."""
        if not self.settings:
            return (f"{self.key}={value}",)
        return self.settings[self.values.index(value)]


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its values (in axis order) and folder name.

    Attributes:
        values: ``(axis key, value)`` per axis.
        bundles: ``(axis key, overrides)`` for the bundling axes among them.
    """

    values: tuple[tuple[str, str], ...]
    bundles: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def overrides(self) -> list[str]:
        """The ``key=value`` overrides of this run (a bundle's in its place)."""
        bundled = dict(self.bundles)
        out: list[str] = []
        for key, value in self.values:
            out.extend(bundled[key] if key in bundled else [f"{key}={value}"])
        return out

    @property
    def name(self) -> str:
        """Folder name ``key=value,...`` of the axis values; characters unsafe in paths
        become ``_``."""
        return _UNSAFE.sub("_", ",".join(f"{k}={v}" for k, v in self.values))


def override_text(key: str, value: Any) -> str:
    """``key=value`` that reads back as ``value`` (JSON, a YAML subset, where needed)."""
    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value and "\n" not in value:
                return f"{key}={value}"
        except yaml.YAMLError:
            pass
    return f"{key}={json.dumps(value)}"


def bundled_axis(key: str, settings: Mapping[str, Sequence[str] | Mapping[str, Any]]) -> SweepAxis:
    """An axis whose every value sets several overrides at once.

    Args:
        key: The axis name (a folder-name part, not a config key).
        settings: Per value, its overrides: ``key=value`` strings or a key -> value mapping.

    Raises:
        ConfigError: On an empty axis, a value without overrides, or a malformed override.
    """
    where = f"--sweep axis '{key}'"
    if not key or "=" in key or not settings:
        raise ConfigError(f"{where}: needs a name without '=' and at least one value")
    values, bundles = [], []
    for value, given in settings.items():
        value = str(value)
        if isinstance(given, Mapping):
            texts = tuple(override_text(str(k), v) for k, v in given.items())
        elif isinstance(given, Sequence) and not isinstance(given, str):
            texts = tuple(str(t) for t in given)
        else:
            raise ConfigError(f"{where}, value '{value}': give its overrides as a mapping "
                              "or a list of key=value strings")
        if not value or not texts:
            raise ConfigError(f"{where}: value '{value}' sets no override")
        for text in texts:
            parse_override(text)  # a malformed one is refused here, naming itself
        values.append(value)
        bundles.append(texts)
    return SweepAxis(key, tuple(values), tuple(bundles))


def write_axis_file(path: str | Path, axis: SweepAxis) -> Path:
    """Writes a bundling axis as the file ``--sweep @FILE`` reads; returns its path."""
    path = Path(path)
    atomic_write_json(path, {"key": axis.key,
                             "values": {v: list(axis.overrides_for(v)) for v in axis.values}})
    return path


def _axis_from_file(path: Path) -> SweepAxis:
    if not path.is_file():
        raise ConfigError(f"--sweep @{path}: no such file")
    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("key"), str) \
            or not isinstance(data.get("values"), dict):
        raise ConfigError(f"--sweep @{path}: expected 'key: NAME' and 'values: {{value: "
                          "overrides}}'")
    try:
        return bundled_axis(data["key"], data["values"])
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def parse_axis(text: str) -> SweepAxis:
    """Parses ``key=v1,v2,...``, or ``@FILE``: a bundling axis (see the module docstring).

    Raises:
        ConfigError: On a missing key or value, or a value repeated.
    """
    if text.startswith("@"):
        return _axis_from_file(Path(text[1:]))
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
    _check_disjoint(axes)
    points = []
    for combo in itertools.product(*(a.values for a in axes)):
        bundles = tuple((a.key, a.overrides_for(v)) for a, v in zip(axes, combo) if a.settings)
        points.append(SweepPoint(tuple(zip(keys, combo)), bundles))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ConfigError("--sweep: two runs would share a folder name; use values that "
                          "differ in letters, digits or . _ = + -")
    return points


def _check_disjoint(axes: Sequence[SweepAxis]) -> None:
    """Refuses two axes that set the same config key (the later would silently win)."""
    owner: dict[str, str] = {}
    for axis in axes:
        for key in {".".join(parse_override(t)[0]) for v in axis.values
                    for t in axis.overrides_for(v)}:
            if key in owner and owner[key] != axis.key:
                raise ConfigError(f"--sweep: axes '{owner[key]}' and '{axis.key}' both set {key}")
            owner[key] = axis.key


def write_sweep_file(sweep_dir: Path, config: str, overrides: Sequence[str],
                     axes: Sequence[SweepAxis], points: Sequence[SweepPoint]) -> Path:
    """Records the sweep for ``fpar collect``; returns the file's path."""
    path = sweep_dir / SWEEP_FILE
    atomic_write_json(path, {
        "config": str(config),
        "overrides": list(overrides),
        "axes": [{"key": a.key, "values": list(a.values),
                  **({"settings": {v: list(a.overrides_for(v)) for v in a.values}}
                     if a.settings else {})} for a in axes],
        "runs": [{"name": p.name, "values": dict(p.values), "overrides": p.overrides}
                 for p in points],
    })
    return path


def record_metrics(sweep_dir: str | Path, metrics: Sequence[str]) -> Path:
    """Names the metrics ``fpar collect`` tabulates by default for this sweep."""
    path = Path(sweep_dir) / SWEEP_FILE
    data = read_sweep_file(sweep_dir)
    data["metrics"] = list(metrics)
    atomic_write_json(path, data)
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

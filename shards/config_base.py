"""What every configuration shares, from the lowest floor up: its error and its plain-data form.

The shard builder's configs and fpar's experiment configs are dataclasses; both raise
:class:`ConfigError` for a bad value and are written out through :func:`to_dict`
(``fpar.config`` uses the same two).
"""

from __future__ import annotations

import dataclasses
from typing import Any


class ConfigError(ValueError):
    """A configuration that cannot be turned into its dataclass."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """Returns the plain-data form of a config dataclass (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cfg)


__all__ = ["ConfigError", "to_dict"]

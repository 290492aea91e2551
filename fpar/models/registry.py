"""Name -> builder registry: each model family registers its builders on import."""

from __future__ import annotations

import difflib
from typing import Callable

from torch import nn

from fpar.config import ConfigError
from fpar.models.config import ModelConfig

Builder = Callable[[ModelConfig], nn.Module]

_REGISTRY: dict[str, tuple[Builder, str]] = {}


def register_model(name: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(cfg) -> nn.Module`` under ``name``.

    Args:
        name: Registry name, the value of ``ModelConfig.name``.
        description: One line shown by ``fpar models``.
    """

    def wrap(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is registered twice")
        _REGISTRY[name] = (builder, description)
        return builder

    return wrap


def build_model(cfg: ModelConfig) -> nn.Module:
    """Builds the model named by ``cfg.name``.

    Raises:
        ConfigError: If no model has that name (the message suggests the closest).
    """
    if cfg.name not in _REGISTRY:
        close = difflib.get_close_matches(cfg.name, list(_REGISTRY), n=1, cutoff=0.4)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"model.name: unknown model '{cfg.name}'{hint}; known: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[cfg.name][0](cfg)


def list_models() -> list[dict[str, str]]:
    """Returns ``[{"name", "description"}]`` for every registered model, in registration order."""
    return [{"name": n, "description": d} for n, (_, d) in _REGISTRY.items()]

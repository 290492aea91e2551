"""Optimiser parameter groups, learning-rate schedules and training stages.

A model lists its parameters by group (``model.param_groups()``); the config gives a
learning rate per group and the stages of the recipe. Each stage names the groups it
trains; the others are frozen for that stage. SparNet trains in one stage; Ego-RNN and
the imprinting recipe train in two or more, each one starting a fresh optimiser.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import nn

from fpar.config import ConfigError

ALL_GROUPS = "all"

#: Parameter-group names models use. A learning rate for one of these that the model lacks
#: is ignored (configs composed from a common base name every group); any other name is a
#: typo and refused.
KNOWN_GROUPS = frozenset({"backbone", "backbone_layer4", "cam_fc", "convlstm", "classifier",
                          "ms_head", "flow", "film", "discriminator"})


@dataclasses.dataclass
class StageConfig:
    """One training stage.

    Attributes:
        name: Shown in logs.
        epochs: Epochs this stage trains.
        trainable: Parameter groups trained in this stage (``["all"]`` = every group); the
            other groups are frozen.
        lr: Learning rates of this stage by group name; a group not named takes
            ``OptimConfig.lr`` of that group, then ``OptimConfig.lr["default"]``.
        milestones: Epochs (counted from the stage start) where a step schedule
            multiplies the learning rate by ``OptimConfig.gamma``; None = the optimiser's.
    """

    name: str = "main"
    epochs: int = 1
    trainable: list[str] = dataclasses.field(default_factory=lambda: [ALL_GROUPS])
    lr: dict[str, float] = dataclasses.field(default_factory=dict)
    milestones: list[int] | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"stage '{self.name}': epochs must be >= 1, got {self.epochs}")
        if not self.trainable:
            raise ValueError(f"stage '{self.name}': trainable names no parameter group")


@dataclasses.dataclass
class OptimConfig:
    """Adam with a learning rate per parameter group and a schedule.

    Attributes:
        lr: Learning rate by group name; ``default`` applies to groups not named.
        weight_decay: Adam's L2 weight decay.
        betas: Adam's beta1, beta2.
        eps: Adam's epsilon.
        scheduler: ``multistep`` (decay by ``gamma`` at ``milestones`` epochs), ``cosine``
            (to ``min_lr_ratio`` of the start over the stage) or ``constant``.
        milestones: Epochs of the step decay, counted from each stage's start.
        gamma: Factor of the step decay.
        min_lr_ratio: Final fraction of the learning rate under the cosine schedule.
        warmup_steps: Linear warm-up at the start of each stage (0 = none).
    """

    lr: dict[str, float] = dataclasses.field(default_factory=lambda: {"default": 1e-4})
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    scheduler: Literal["multistep", "cosine", "constant"] = "multistep"
    milestones: list[int] = dataclasses.field(default_factory=list)
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if "default" not in self.lr:
            raise ValueError("lr: a 'default' learning rate is needed")
        for name, value in self.lr.items():
            if value < 0:
                raise ValueError(f"lr.{name}: must be >= 0, got {value}")


def group_lr(optim: OptimConfig, stage: StageConfig, group: str) -> float:
    """The learning rate of ``group`` in ``stage``."""
    for table in (stage.lr, optim.lr):
        if group in table:
            return table[group]
    return stage.lr.get("default", optim.lr["default"])


def stage_param_groups(model: nn.Module, optim: OptimConfig,
                       stage: StageConfig) -> list[dict]:
    """Freezes what ``stage`` does not train and returns the optimiser's parameter groups.

    Args:
        model: A model with ``param_groups() -> dict[str, list[Parameter]]``.
        optim: Learning rates by group.
        stage: The stage's trainable groups and learning-rate overrides.

    Returns:
        ``torch.optim`` group dicts (``params``, ``lr``, ``name``), in the model's group order.

    Raises:
        ConfigError: If the stage names a group the model does not have, or trains nothing.
    """
    groups: dict[str, list[nn.Parameter]] = model.param_groups()
    wanted = set(groups) if ALL_GROUPS in stage.trainable else set(stage.trainable)
    unknown = sorted(wanted - set(groups))
    if unknown:
        raise ConfigError(
            f"stage '{stage.name}': trainable names unknown group(s) {unknown}; "
            f"the model has {sorted(groups)}")
    for key in list(stage.lr) + list(optim.lr):
        if key != "default" and key not in groups and key not in KNOWN_GROUPS:
            raise ConfigError(f"lr.{key}: the model has no parameter group '{key}' "
                              f"(groups: {sorted(groups)})")
    out = []
    for name, params in groups.items():
        train = name in wanted
        for p in params:
            p.requires_grad_(train)
        if train:
            out.append({"params": params, "lr": group_lr(optim, stage, name), "name": name})
    if not out:
        raise ConfigError(f"stage '{stage.name}': no parameters to train")
    return out


def build_adam(groups: list[dict], optim: OptimConfig) -> torch.optim.Optimizer:
    """Adam over ``groups`` with the configured betas, epsilon and weight decay."""
    return torch.optim.Adam(groups, betas=tuple(optim.betas), eps=optim.eps,
                            weight_decay=optim.weight_decay)


def lr_factor(step: int, optim: OptimConfig, stage: StageConfig, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimiser steps of a stage."""
    factor = 1.0
    if optim.warmup_steps > 0 and step < optim.warmup_steps:
        factor = (step + 1) / optim.warmup_steps
    total = max(1, stage.epochs * steps_per_epoch)
    if optim.scheduler == "multistep":
        milestones = optim.milestones if stage.milestones is None else stage.milestones
        epoch = step // max(1, steps_per_epoch)
        factor *= optim.gamma ** sum(1 for m in milestones if epoch >= m)
    elif optim.scheduler == "cosine":
        progress = min(1.0, step / total)
        cos = 0.5 * (1.0 + math.cos(math.pi * progress))
        factor *= optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * cos
    return factor


def scheduler_factory(optim: OptimConfig, stage: StageConfig, steps_per_epoch: int):
    """Returns ``f(optimizer) -> LambdaLR`` for ``deepspeed.initialize(lr_scheduler=...)``.

    The schedule is a pure function of the step, so its saved state is only the step count.
    """

    def build(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, optim, stage, steps_per_epoch))

    return build

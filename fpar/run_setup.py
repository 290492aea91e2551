"""What a run is made of before it trains: its experiment, folder, per-rank batch, data and model.

The training entry (:mod:`fpar.train`), evaluation of a run folder, the report and the
launchers all resolve a run's experiment here, so they read a run folder the same way.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

import torch

from fpar.config import ConfigError
from fpar.engine import checkpoint as ckpt
from fpar.engine import deepspeed_setup, distributed
from fpar.experiment import ExperimentConfig, load_experiment
from fpar.run_layout import CONFIG_FILE, checkpoints_dir

log = logging.getLogger("fpar.train")


def resolve_config(config: str | Path | ExperimentConfig | None, overrides: Sequence[str],
                   run_dir: str | Path | None) -> ExperimentConfig:
    """The experiment of a run: a YAML path, a config object, or the run folder's saved one.

    ``train.precision: auto`` comes back as the precision this machine uses (see
    :func:`fpar.engine.deepspeed_setup.resolve_precision`), which the run folder records.

    Raises:
        ConfigError: If nothing names a config or a key is wrong.
    """
    if isinstance(config, ExperimentConfig):
        cfg = config
        if overrides:
            from fpar.config import apply_overrides, from_dict, to_dict

            cfg = from_dict(ExperimentConfig, apply_overrides(to_dict(config), overrides))
    else:
        if config is None:
            if run_dir is None or not (Path(run_dir) / CONFIG_FILE).is_file():
                raise ConfigError("no config: give a config file, or a run folder holding "
                                  f"{CONFIG_FILE} to resume")
            config = Path(run_dir) / CONFIG_FILE
        cfg = load_experiment(config, overrides)
    precision = deepspeed_setup.resolve_precision(cfg.train.precision)
    if precision == cfg.train.precision:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision=precision))


def default_run_dir(cfg: ExperimentConfig) -> Path:
    """``output_dir/name``: the same on every rank, so ranks agree without talking."""
    return Path(cfg.output_dir) / cfg.name


def keep_global_batch(cfg: ExperimentConfig, run_dir: Path, world_size: int) -> ExperimentConfig:
    """The config with the per-rank batch that keeps a checkpoint's global batch.

    A run checkpointed at W ranks and resumed at W' reads on in the same sample sequence
    when its global batch (``data.batch_size * W``) stays the same, so the per-rank batch
    becomes ``global / W'`` (said in the log and in the run's ``config.yaml``).

    Raises:
        ConfigError: The global batch cannot be split evenly over ``world_size`` ranks, or
            ZeRO >= 1 optimizer states would have to be re-partitioned.
    """
    root = checkpoints_dir(run_dir)
    tag = ckpt.latest_tag(root) if root.is_dir() else None
    if tag is None:
        return cfg
    saved = ckpt.read_trainer_state(root / tag)
    global_batch, saved_world = int(saved.get("global_batch") or 0), int(saved.get("world_size") or 0)
    if saved_world == world_size:
        return cfg
    if cfg.train.zero_stage >= 1:
        # DeepSpeed refuses to re-partition ZeRO optimizer states over another number of ranks.
        raise ConfigError(
            f"{root / tag} holds ZeRO-{cfg.train.zero_stage} optimizer states partitioned over "
            f"{saved_world} rank(s), which DeepSpeed cannot load on {world_size}: resume on "
            f"{saved_world} rank(s) (ZeRO 0 checkpoints resume on any number)")
    if not global_batch:
        return cfg
    if global_batch % world_size:
        raise ConfigError(
            f"{root / tag} was trained with a global batch of {global_batch} clips on {saved_world} "
            f"rank(s); {world_size} ranks cannot split it evenly: resume on a number of ranks "
            f"dividing {global_batch}")
    per_rank = global_batch // world_size
    if per_rank != cfg.data.batch_size:
        log.warning("resuming %s on %d rank(s) instead of %d: data.batch_size %d -> %d keeps the "
                    "global batch of %d clips", tag, world_size, saved_world, cfg.data.batch_size,
                    per_rank, global_batch)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch_size=per_rank))
    return cfg


def data_streams(cfg: ExperimentConfig, layout: distributed.DistEnv, device: torch.device):
    """This rank's training stream and validation stream (None when the run does not validate)."""
    from fpar.data import ShardStream

    kwargs = dict(rank=layout.rank, world_size=layout.world_size, seed=cfg.seed,
                  pin_memory=device.type == "cuda")
    train = ShardStream(cfg.data, cfg.data.train_shards, train=True, **kwargs)
    val = ShardStream(cfg.data, cfg.data.val_shards, train=False, **kwargs) \
        if cfg.data.val_shards and cfg.eval.validate_every_epochs else None
    return train, val


def model_parts(cfg: ExperimentConfig):
    """(model factory, loss function) of the experiment, as the trainer takes them."""
    from fpar.models import build_model, compute_loss

    return (lambda: build_model(cfg.model)), (lambda out, batch: compute_loss(cfg.model, out, batch))


__all__ = ["data_streams", "default_run_dir", "keep_global_batch", "model_parts",
           "resolve_config"]

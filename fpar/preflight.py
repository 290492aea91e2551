"""What a run checks before its first step, so that a user's mistake stops it at once.

A run reads several shard folders (train, validation, each test split) and ImageNet
weights; without these checks a wrong test-split path surfaces only when training is over.
Every failure is a :class:`~fpar.config.ConfigError` naming the config key and the path.
"""

from __future__ import annotations

from pathlib import Path

from fpar.config import ConfigError
from fpar.experiment import ExperimentConfig
from shards.datasets import get_dataset
from shards.schema import SchemaError, read_manifest


def check_shard_folder(cfg: ExperimentConfig, key: str, folder: str | Path) -> dict:
    """Checks one shard folder against the config and returns its manifest.

    Checked: the folder and its manifest exist, the schema version is this code's, the
    shards are of ``data.format``, the format has the batch's label keys, and the shards
    hold flow when ``data.use_flow`` asks for it.

    Raises:
        ConfigError: ``"<key>: <path>: <what is wrong>"``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{key}: {folder}: no such shard folder (write it with "
                          f"`fpar shards build ... --out {folder}`)")
    try:
        manifest = read_manifest(folder)
    except SchemaError as err:
        raise ConfigError(f"{key}: {err}") from err
    dataset = manifest.get("dataset")
    if dataset != cfg.data.format:
        raise ConfigError(f"{key}: {folder}: holds {dataset} shards, but data.format is "
                          f"{cfg.data.format}")
    carried = get_dataset(dataset).labels
    lacking = [k for k in cfg.data.label_keys if k not in carried]
    if lacking:
        raise ConfigError(f"{key}: {folder}: {dataset} shards have no {lacking} labels "
                          f"(they have {list(carried)}); check data.labels")
    if cfg.data.use_flow and manifest["params"].get("flow") is False:
        raise ConfigError(f"{key}: {folder}: data.use_flow is set but the shards hold no flow "
                          "(build them with --flow)")
    return manifest


def check_labels(cfg: ExperimentConfig) -> None:
    """Every classifier head has labels, and every mirror pair is a class of its head.

    Raises:
        ConfigError: Naming ``model.num_classes`` or ``data.mirror_pairs``.
    """
    keys = cfg.data.label_keys
    unlabelled = [head for head in cfg.model.num_classes if head not in keys]
    if unlabelled:
        raise ConfigError(f"model.num_classes: heads {unlabelled} have no labels in "
                          f"{cfg.data.format} batches (labels: {list(keys)})")
    for head, pairs in cfg.data.mirror_pairs.items():
        count = cfg.model.num_classes.get(head)
        if count is None:
            raise ConfigError(f"data.mirror_pairs.{head}: the model has no {head} head")
        outside = [c for pair in pairs for c in pair if c >= count]
        if outside:
            raise ConfigError(f"data.mirror_pairs.{head}: classes {outside} are beyond the "
                              f"{count} of model.num_classes.{head}")


def check_experiment(cfg: ExperimentConfig, training: bool = True) -> None:
    """All checks of a run, before any process group, model or step.

    Args:
        cfg: The experiment (precision already resolved).
        training: Check the training and validation folders too (not only the test splits).

    Raises:
        ConfigError: The first problem found, naming the key and the path.
    """
    from fpar.models.trunk import imagenet_file

    if training and not cfg.data.train_shards:
        raise ConfigError("data.train_shards: no training shard folder configured")
    check_labels(cfg)
    for key, folder in cfg.shard_folders(training):
        check_shard_folder(cfg, key, folder)
    if training:
        imagenet_file(cfg.model)

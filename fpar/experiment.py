"""The top-level experiment configuration: one YAML file per row of the paper tables.

``ExperimentConfig`` gathers the data, model, optimiser, training and evaluation
sections; ``load_experiment`` reads it from YAML (with ``_base_`` composition and
``a.b=value`` overrides) through ``fpar.config``, so every key and type is checked.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, Sequence

from fpar.config import ConfigError, load_config
from fpar.data.config import DataConfig
from fpar.data.views import CROP_COUNTS, View, view_set
from fpar.engine.optim import OptimConfig, StageConfig
from fpar.models.config import ModelConfig


@dataclasses.dataclass
class TrainConfig:
    """How the optimisation runs.

    Attributes:
        stages: Training stages in order (one for SparNet, two for Ego-RNN).
        precision: ``auto`` (bf16 on GPUs that support it, fp16 with loss scaling on
            older GPUs, fp32 on CPU), ``fp32``, ``bf16`` or ``fp16`` (fp16 needs a CUDA
            GPU). A run's ``config.yaml`` records the precision it resolved to.
        zero_stage: DeepSpeed ZeRO stage (0-3).
        grad_accum_steps: Micro-batches per optimiser step.
        grad_clip: Global gradient-norm clip (0 = off).
        checkpoint_every_steps: Save every N optimiser steps (0 = only at epoch ends).
        keep_checkpoints: Recent checkpoints kept (at least 2).
        max_nonfinite_steps: Consecutive steps with a non-finite loss or gradient norm
            that stop the run.
        log_every_steps: Interval of the plain log lines (off a terminal) and TensorBoard.
        max_steps_per_epoch: Cap on optimiser steps per epoch (0 = the whole epoch); for
            smoke runs.
        max_steps: Stop after this many optimiser steps of the whole run, with a checkpoint
            (0 = train every epoch); a run started again with a larger value continues.
        log_samples: Each rank appends the segment ids of every micro-batch it trains on
            to ``samples/rank<r>.jsonl`` in the run folder (what a run read, e.g. to check
            that a resumed run continued the same sequence).
    """

    stages: list[StageConfig] = dataclasses.field(default_factory=lambda: [StageConfig()])
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    zero_stage: int = 0
    grad_accum_steps: int = 1
    grad_clip: float = 0.0
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 2
    max_nonfinite_steps: int = 5
    log_every_steps: int = 10
    max_steps_per_epoch: int = 0
    max_steps: int = 0
    log_samples: bool = False

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("train.stages: at least one stage is needed")
        if self.grad_accum_steps < 1:
            raise ValueError(f"train.grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.max_nonfinite_steps < 1:
            raise ValueError("train.max_nonfinite_steps must be >= 1")
        if self.max_steps < 0:
            raise ValueError(f"train.max_steps must be >= 0, got {self.max_steps}")
        if self.keep_checkpoints < 2:
            raise ValueError("train.keep_checkpoints must be >= 2 (one may be half written)")

    @property
    def total_epochs(self) -> int:
        """Epochs over all stages."""
        return sum(s.epochs for s in self.stages)


@dataclasses.dataclass
class EvalConfig:
    """Validation during training and the final evaluation.

    Attributes:
        validate_every_epochs: Validate every N epochs (0 = never) when ``data.val_shards``
            is set; the best validation score keeps its checkpoint.
        best_metric: Validation metric that picks the best checkpoint (higher is better):
            ``top1_action`` (verb and noun both right), ``top1_verb``, ``top1_noun``,
            ``top1_class`` or ``mean_top1`` (mean over heads).
        test_splits: Splits evaluated at the end of training, each ``name: shard folder``
            (e.g. ``s1`` and ``s2`` on EPIC-55); empty = ``test: data.test_shards`` when set.
        final_checkpoint: Which weights the final evaluation uses: ``last`` or ``best``.
        clips: Test-time temporal positions per segment (K, evenly spread inside each
            chunk; 1 = the chunk centres) of the test splits' scores and ``fpar eval``.
        crops: Crops per position (C): 1 (centre), 3 (PySlowFast's three-crop), 5 (corners
            and centre) or 10 (those and their mirrors, TSN's over-sampling); see
            :mod:`fpar.data.views`. Validation during training always uses one view.
        aggregate: How the K x C views of a segment are combined: ``prob`` (mean of the
            softmax, stored as its log) or ``logit`` (mean of the logits).
    """

    validate_every_epochs: int = 1
    best_metric: str = "mean_top1"
    test_splits: dict[str, str] = dataclasses.field(default_factory=dict)
    final_checkpoint: Literal["last", "best"] = "last"
    clips: int = 1
    crops: int = 1
    aggregate: Literal["prob", "logit"] = "prob"

    def __post_init__(self) -> None:
        if self.clips < 1:
            raise ValueError(f"eval.clips must be >= 1, got {self.clips}")
        if self.crops not in CROP_COUNTS:
            raise ValueError(f"eval.crops must be one of {', '.join(map(str, CROP_COUNTS))}, "
                             f"got {self.crops}")

    def views(self) -> tuple[View, ...]:
        """The test-time views of every segment."""
        return view_set(self.clips, self.crops)


@dataclasses.dataclass
class ExperimentConfig:
    """One experiment: what to read, what to build, how to train and evaluate it.

    Attributes:
        name: Run name; the default run folder is ``output_dir/name``.
        seed: Seeds model initialisation, data order and augmentation.
        output_dir: Parent folder of run folders.
        data: Shards, sampling and batching.
        model: The model and its losses.
        optim: Adam, learning rates per group, schedule.
        train: Stages, precision, ZeRO, checkpoints.
        eval: Validation and final evaluation.
    """

    name: str = "experiment"
    seed: int = 0
    output_dir: str = "runs"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def test_splits(self) -> dict[str, str]:
        """The splits evaluated at the end of training (name -> shard folder)."""
        if self.eval.test_splits:
            return dict(self.eval.test_splits)
        return {"test": self.data.test_shards} if self.data.test_shards else {}

    def shard_folders(self, training: bool = True) -> list[tuple[str, str]]:
        """``(config key, folder)`` of every shard folder a run reads: train and validation
        (when ``training``) and each test split."""
        named = [("data.train_shards", self.data.train_shards),
                 ("data.val_shards", self.data.val_shards)] if training else []
        if self.eval.test_splits:
            named += [(f"eval.test_splits.{k}", v) for k, v in self.eval.test_splits.items()]
        else:
            named.append(("data.test_shards", self.data.test_shards))
        return [(key, folder) for key, folder in named if folder]

    def shard_dir(self, split: str) -> str:
        """The shard folder of a split name: ``train``, ``val``, ``test`` or a test split.

        Raises:
            ConfigError: If the split is unknown or has no folder configured.
        """
        named = {"train": self.data.train_shards, "val": self.data.val_shards,
                 "validation": self.data.val_shards, "test": self.data.test_shards}
        named.update(self.eval.test_splits)
        folder = named.get(split)
        if folder is None:
            known = sorted(k for k, v in named.items() if v)
            raise ConfigError(f"split '{split}': no shard folder configured "
                              f"(configured: {', '.join(known) or 'none'})")
        return folder


def load_experiment(path: str | Path | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Loads an experiment from YAML with ``a.b=value`` overrides.

    Raises:
        ConfigError: Naming the key that is wrong.
    """
    return load_config(ExperimentConfig, path, overrides)


__all__ = ["ConfigError", "EvalConfig", "ExperimentConfig", "TrainConfig", "load_experiment"]

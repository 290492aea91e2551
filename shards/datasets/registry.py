"""Name -> dataset registry: each dataset family registers its datasets on import.

A :class:`Dataset` holds every fact of a dataset that the rest of fpar needs: how its
annotations are read and split, what decides a segment's time, its label heads and class
counts, mirror pairs, which splits are scored, how it is evaluated and submitted, how the
synthetic kitchens write it and its default config. Modules outside the dataset modules ask
the registry; none compares a dataset's name.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd


class UnknownDataset(ValueError):
    """A dataset name no module registered."""


def native_release_fps(native_fps: float) -> float:
    """Datasets that number the frames they ship: the file's own rate."""
    return float(native_fps)


@dataclass(frozen=True)
class SplitProtocol:
    """A published train/test protocol of a dataset: the pairs ``train_<x>``/``test_<x>``
    of its splits whose ``<x>`` matches ``pattern`` (one pair per fold)."""

    name: str
    title: str
    pattern: str


@dataclass(frozen=True)
class Dataset:
    """One dataset: its files, labels, splits, evaluation and synthetic writer.

    Attributes:
        name: The value of ``data.format`` and of every ``--format``.
        title: The dataset's published name, for tables and messages.
        reader: Module or object with ``SPLITS``, ``NUM_CLASSES`` and
            ``load(source, split, require_labels)``, ``available_splits(source)``,
            ``class_names(source)`` (see ``shards.annotations``).
        labels: Label keys a batch carries (EGTEA: its action class and verb and noun).
        tasks: Heads scored by the metrics, in table order.
        eval_splits: Splits scored when none is named (those the scores cover completely).
        split_files: Per split, the annotation files it may be read from (their names tell a
            file's split when a user passes a file); empty when splits are not files.
        release_fps: native rate of a video -> the rate its annotated frame numbers count.
        frame_folder: For datasets of frame folders (GTEA-61): ``(root, video_id) -> folder``;
            None for datasets of video files. Such datasets read their splits from ``root``.
        metrics: Name of the evaluation protocol in ``fpar.evaluation.protocols``.
        submission: Name of the challenge submission writer there, or None.
        action_noun_stride: Action id = verb * stride + noun (EPIC's official ids); None
            when the dataset has no verb x noun actions.
        mirror_pairs: Per label key, classes a horizontal flip swaps (none in the real ones).
        protocols: The published train/test protocols, swept by ``fpar protocol``.
        synth: ``() -> shards.synth.plan.SynthLayout``: how ``fpar synth`` writes it (None:
            not generated).
        default_config: Its dataset config under ``configs/datasets``.
        extras: Readers of further files its metrics need (``name -> fn(annotations)``).
    """

    name: str
    title: str
    reader: Any
    labels: tuple[str, ...]
    tasks: tuple[str, ...]
    eval_splits: tuple[str, ...]
    split_files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    release_fps: Callable[[float], float] = native_release_fps
    frame_folder: Callable[[Path, str], Path] | None = None
    metrics: str = "classification"
    submission: str | None = None
    action_noun_stride: int | None = None
    mirror_pairs: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    protocols: tuple[SplitProtocol, ...] = ()
    synth: Callable[[], Any] | None = None
    default_config: str | None = None
    extras: Mapping[str, Callable[..., Any]] = field(default_factory=dict)

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split name the dataset knows."""
        return tuple(self.reader.SPLITS)

    @property
    def num_classes(self) -> dict[str, int]:
        """The size of each classifier head."""
        return dict(self.reader.NUM_CLASSES)

    def source(self, annotations: str | Path, root: str | Path | None = None) -> Path:
        """Where the splits are read: ``root`` for frame-folder datasets, else the files."""
        if self.frame_folder is not None and root is not None:
            return Path(root)
        return Path(annotations)

    def load_segments(self, annotations: str | Path, split: str, root: str | Path | None = None,
                      *, require_labels: bool = False) -> pd.DataFrame:
        """One split as the segment table (``shards.annotations.table.SEGMENT_COLUMNS`` first,
        labels 0-based, -1 when absent; ``require_labels`` refuses a file without labels).

        Raises:
            AnnotationError: a missing file or a bad row, naming the file and line.
            ValueError: a split the dataset does not have.
        """
        return self.reader.load(self.source(annotations, root), split, require_labels=require_labels)

    def available_splits(self, annotations: str | Path, root: str | Path | None = None) -> list[str]:
        """The splits whose files (or subject folders) exist."""
        return self.reader.available_splits(self.source(annotations, root))

    def class_names(self, annotations: str | Path, root: str | Path | None = None) -> dict[str, list[str]]:
        """Class names by id for each label key."""
        return self.reader.class_names(self.source(annotations, root))


_REGISTRY: dict[str, Dataset] = {}


def register_dataset(dataset: Dataset) -> Dataset:
    """Adds ``dataset`` under its name (a dataset module calls it once per dataset)."""
    if dataset.name in _REGISTRY:
        raise ValueError(f"dataset '{dataset.name}' is registered twice")
    _REGISTRY[dataset.name] = dataset
    return dataset


def unregister_dataset(name: str) -> None:
    """Removes a dataset (tests that register their own)."""
    _REGISTRY.pop(name, None)


def get_dataset(name: str) -> Dataset:
    """The dataset registered as ``name``.

    Raises:
        UnknownDataset: no dataset has that name (the message suggests the closest).
    """
    _load_user_modules()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1, cutoff=0.4)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownDataset(f"unknown dataset '{name}'{hint}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def dataset_names() -> tuple[str, ...]:
    """Every registered dataset, in registration order (the choices of ``--format``)."""
    _load_user_modules()
    return tuple(_REGISTRY)


# Modules of the user's own datasets, imported (once) before the registry answers: the
# user names them, so no file fpar reads can make it import anything.
MODULES_VARIABLE = "FPAR_DATASETS"
_loaded = False


def _load_user_modules() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in filter(None, (m.strip() for m in os.environ.get(MODULES_VARIABLE, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UnknownDataset(f"{MODULES_VARIABLE}: cannot import dataset module '{module}' ({err})") from None

"""The evaluation protocols the datasets declare (``shards.datasets``: ``protocols``).

A protocol is one dataset's list of splits, each a (train split, test split) pair of the
split names ``shards.annotations`` reads; every pair is trained and tested with several
seeds and is one column of the paper's Table 1, whose last column is the mean over them:

- ``gtea61_fixed``: train on S1, S3, S4 and test on S2;
- ``gtea61_loso``: leave one subject out, fold k tests on S{k} (4 folds);
- ``egtea``: the three official train/test splits of EGTEA Gaze+.

The pairs are found among the dataset's own split names (``train_<x>`` with
``test_<x>``), so the readers stay the only place that knows what a split holds.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Mapping

from launcher.sweep import SweepAxis, bundled_axis
from shards.annotations import available_splits, load_segments, splits
from shards.datasets import dataset_names, get_dataset

log = logging.getLogger(__name__)

# What each run reports and the table shows: top-1 and mean class accuracy, in %.
METRICS = ("top1", "mean_class_accuracy")
SPLIT_AXIS = "split"


@dataclasses.dataclass(frozen=True)
class ProtocolSplit:
    """One column of the table: train on one split, test on another.

    Attributes:
        name: The column's name and the sweep value (``fixed``, ``loso1``, ``split2``).
        train: The dataset split trained on (e.g. ``train_loso1``).
        test: The dataset split tested on (e.g. ``test_loso1``).
    """

    name: str
    train: str
    test: str


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A dataset's evaluation protocol: its splits, each run over several seeds."""

    name: str
    format: str
    title: str
    splits: tuple[ProtocolSplit, ...]

    def dataset_splits(self) -> list[str]:
        """Every dataset split the protocol reads, in order, each once."""
        return list(dict.fromkeys(n for s in self.splits for n in (s.train, s.test)))


def paired_splits(fmt: str, scheme: str) -> tuple[ProtocolSplit, ...]:
    """The ``train_<x>``/``test_<x>`` pairs of ``fmt`` whose ``<x>`` matches ``scheme``.

    Raises:
        ValueError: If a matching train split has no test split, or nothing matches.
    """
    names = splits(fmt)
    pairs = []
    for name in names:
        kind, _, suffix = name.partition("_")
        if kind != "train" or not re.fullmatch(scheme, suffix):
            continue
        if f"test_{suffix}" not in names:
            raise ValueError(f"{fmt}: split {name} has no test_{suffix}")
        pairs.append(ProtocolSplit(suffix, name, f"test_{suffix}"))
    if not pairs:
        raise ValueError(f"{fmt}: no train_<x>/test_<x> split pair matches {scheme!r}")
    return tuple(pairs)


def declared_protocols() -> dict[str, Protocol]:
    """Every protocol of every registered dataset, by name."""
    return {spec.name: Protocol(spec.name, fmt, spec.title, paired_splits(fmt, spec.pattern))
            for fmt in dataset_names() for spec in get_dataset(fmt).protocols}


PROTOCOLS: dict[str, Protocol] = declared_protocols()


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``.

    Raises:
        ValueError: Naming the known protocols.
    """
    protocols = declared_protocols()
    if name not in protocols:
        raise ValueError(f"protocol {name!r} unknown; choose from {', '.join(protocols)}")
    return protocols[name]


def shard_sources(protocol: Protocol, annotations: str | Path,
                  root: str | Path | None = None) -> dict[str, str]:
    """For each dataset split the protocol reads, the split whose shards it uses.

    Splits holding the same segments share shards (GTEA-61's fixed split is its second
    LOSO fold): each uses the first such split in the dataset's own order, whichever
    protocol asks, so that a shard folder is built once for all of them.

    Raises:
        shards.annotations.AnnotationError: If a split the protocol needs cannot be read.
    """
    fmt = protocol.format
    needed = protocol.dataset_splits()
    present = set(available_splits(fmt, annotations, root)) | set(needed)
    members: dict[str, frozenset[str]] = {}
    for name in splits(fmt):
        if name in present:
            ids = load_segments(fmt, annotations, name, root=root)["segment_id"].astype(str)
            members[name] = frozenset(ids)
    sources = {}
    for name in needed:
        sources[name] = next(other for other in members if members[other] == members[name])
        if sources[name] != name:
            log.info("%s holds the same segments as %s: using its shards", name, sources[name])
    return sources


def split_axis(protocol: Protocol, shard_dirs: Mapping[str, str | Path]) -> SweepAxis:
    """The sweep axis over the protocol's splits: each value sets the run's shards.

    Args:
        protocol: The protocol.
        shard_dirs: Shard folder of every dataset split the protocol reads.

    Returns:
        Axis ``split`` whose value (e.g. ``loso1``) sets ``data.train_shards``,
        ``data.test_shards`` and ``eval.test_splits`` (``{test split name: folder}``, so
        the run writes ``scores_<test split>.pt``).
    """
    settings = {}
    for split in protocol.splits:
        test = str(shard_dirs[split.test])
        settings[split.name] = {"data.train_shards": str(shard_dirs[split.train]),
                                "data.test_shards": test,
                                "eval.test_splits": {split.test: test}}
    return bundled_axis(SPLIT_AXIS, settings)


__all__ = ["METRICS", "PROTOCOLS", "Protocol", "ProtocolSplit", "SPLIT_AXIS", "get_protocol",
           "paired_splits", "shard_sources", "split_axis"]

"""EGTEA Gaze+: 106 action classes (with their verb and noun) over three official
train/test splits; the action class is scored, verb and noun ride along in batches."""

from __future__ import annotations

from shards.annotations import egtea
from shards.datasets.registry import Dataset, SplitProtocol, register_dataset


def _synth():
    from shards.synth.layouts import egtea_layout

    return egtea_layout()


EGTEA = register_dataset(Dataset(
    name="egtea",
    title="EGTEA Gaze+",
    reader=egtea,
    labels=("class", "verb", "noun"),
    tasks=("class",),
    eval_splits=("test_split1", "test_split2", "test_split3"),
    split_files={split: (f"{split}.txt",) for split in egtea.SPLITS},
    protocols=(SplitProtocol("egtea", "EGTEA Gaze+, the 3 official splits", r"split\d+"),),
    synth=_synth,
    default_config="configs/datasets/egtea.yaml",
))

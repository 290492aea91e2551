"""GTEA-61: 61 action classes in frame folders of four subjects; a fixed split (test S2)
and leave-one-subject-out (fold k tests S{k}), as in Ego-RNN and SparNet."""

from __future__ import annotations

from pathlib import Path

from shards.annotations import gtea61
from shards.datasets.registry import Dataset, SplitProtocol, register_dataset


def frame_folder(root: Path, video_id: str) -> Path:
    """``<root>/<video_id>`` or ``<root>/frames/<video_id>`` (the first that exists)."""
    candidates = [Path(root) / video_id, Path(root) / "frames" / video_id]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def _synth():
    from shards.synth.layouts import gtea61_layout

    return gtea61_layout()


GTEA61 = register_dataset(Dataset(
    name="gtea61",
    title="GTEA-61",
    reader=gtea61,
    labels=("class",),
    tasks=("class",),
    eval_splits=("test_fixed", "test_loso1", "test_loso2", "test_loso3", "test_loso4"),
    frame_folder=frame_folder,
    protocols=(
        SplitProtocol("gtea61_fixed", "GTEA-61, fixed split (test subject S2)", r"fixed"),
        SplitProtocol("gtea61_loso", "GTEA-61, leave one subject out (4 folds)", r"loso\d+"),
    ),
    synth=_synth,
    default_config="configs/datasets/gtea61.yaml",
))

"""EPIC-KITCHENS-55 and EPIC-KITCHENS-100: verb and noun heads, frame numbers of the release.

EPIC's ``start_frame``/``stop_frame`` count the public frame release: EPIC-55 resampled every
video to 60 fps; EPIC-100 keeps 60 for the EPIC-55 videos and 50 for its 2020 videos
(recorded at 50 fps). Timestamps are the truth (``shards.timing``).
"""

from __future__ import annotations

from shards.annotations import epic55, epic100
from shards.datasets.registry import Dataset, register_dataset
from shards.timing import epic55_release_fps, epic100_release_fps


def _synth(extension: bool):
    def layout():
        from shards.synth.layouts import epic_layout

        return epic_layout(extension)

    return layout


EPIC55 = register_dataset(Dataset(
    name="epic55",
    title="EPIC-KITCHENS-55",
    reader=epic55,
    labels=("verb", "noun"),
    tasks=("verb", "noun"),
    eval_splits=("s1", "s2"),
    split_files={
        "train": ("EPIC_train_action_labels.csv",),
        "s1": ("EPIC_test_s1_labels.csv", "EPIC_test_s1_timestamps.csv"),
        "s2": ("EPIC_test_s2_labels.csv", "EPIC_test_s2_timestamps.csv"),
    },
    release_fps=epic55_release_fps,
    metrics="epic_kitchens_55",
    submission="epic_kitchens_55",
    action_noun_stride=352,
    synth=_synth(extension=False),
    default_config="configs/datasets/epic55.yaml",
    extras={"many_shot": epic55.read_many_shot},
))

EPIC100 = register_dataset(Dataset(
    name="epic100",
    title="EPIC-KITCHENS-100",
    reader=epic100,
    labels=("verb", "noun"),
    tasks=("verb", "noun"),
    eval_splits=("validation", "test"),
    split_files={
        "train": ("EPIC_100_train.csv",),
        "validation": ("EPIC_100_validation.csv",),
        "test": ("EPIC_100_test_labels.csv", "EPIC_100_test_timestamps.csv"),
    },
    release_fps=epic100_release_fps,
    metrics="epic_kitchens_100",
    submission="epic_kitchens_100",
    action_noun_stride=1000,
    synth=_synth(extension=True),
    default_config="configs/datasets/epic100.yaml",
    extras={"unseen_participants": epic100.read_unseen_participants,
            "tail_classes": epic100.read_tail_classes},
))

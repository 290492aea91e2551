"""How ``fpar synth`` writes each dataset: its planner, annotation files and video paths.

A dataset's ``synth`` (``shards.datasets``) returns its :class:`SynthLayout`; ``generate``
and ``make_plan`` take everything dataset-specific from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from shards.synth.plan import DatasetPlan, Options, VideoPlan, plan_egtea, plan_epic, plan_gtea61

Planner = Callable[[int, int, int, Options, np.random.Generator], DatasetPlan]


@dataclass(frozen=True)
class SynthLayout:
    """One dataset's synthetic writer.

    Attributes:
        plan: ``(participants, segments, seed, options, rng) -> DatasetPlan``.
        annotations: Writes the annotation files of a plan into a folder (None: the layout
            of the videos is the annotation, as GTEA-61's frame folders).
        video_path: ``(out, video) -> path`` of a planned video or frame folder.
        frame_folders: Videos are written as PNG frame folders, not MP4 files.
        default_fps: Rate when none is asked: EPIC's 29.97 (its 59.94/50 would double the
            files, and its annotations number frames at the release rate whatever the
            video's), EGTEA's and GTEA-61's real 24, which their readers assume.
        several_rates: Whether videos may be given different rates (EPIC does).
    """

    plan: Planner
    annotations: Callable[[DatasetPlan, Path], None] | None
    video_path: Callable[[Path, VideoPlan], Path]
    frame_folders: bool = False
    default_fps: float = 30.0
    several_rates: bool = False


def synth_layout(name: str) -> SynthLayout:
    """The synthetic writer of dataset ``name``.

    Raises:
        ValueError: unknown dataset, or one that has no synthetic writer.
    """
    from shards.datasets import get_dataset

    dataset = get_dataset(name)
    if dataset.synth is None:
        raise ValueError(f"dataset '{name}' has no synthetic writer")
    return dataset.synth()


def _epic_video(out: Path, video: VideoPlan) -> Path:
    return out / "videos" / video.participant / f"{video.video_id}.MP4"


def epic_layout(extension: bool) -> SynthLayout:
    """EPIC-KITCHENS-55, or with ``extension`` EPIC-KITCHENS-100."""
    from shards.synth.formats import write_epic55, write_epic100

    return SynthLayout(partial(plan_epic, extension=extension), write_epic100 if extension else write_epic55,
                       _epic_video, default_fps=29.97, several_rates=True)


def egtea_layout() -> SynthLayout:
    """EGTEA Gaze+: session videos and the three split files."""
    from shards.synth.formats import write_egtea

    return SynthLayout(plan_egtea, write_egtea, lambda out, video: out / "videos" / f"{video.video_id}.mp4",
                       default_fps=24.0)


def gtea61_layout() -> SynthLayout:
    """GTEA-61: one PNG frame folder per action instance, ``frames/<S>/<class>/<k>``."""
    return SynthLayout(plan_gtea61, None, lambda out, video: out / "frames" / video.video_id,
                       frame_folders=True, default_fps=24.0)

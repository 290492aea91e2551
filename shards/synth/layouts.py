"""The synthetic writers of the built-in datasets (their ``synth`` in ``shards.datasets``):
planner, annotation files and video paths, as :class:`shards.synth.plan.SynthLayout`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from shards.synth.formats import write_egtea, write_epic55, write_epic100
from shards.synth.plan import SynthLayout, VideoPlan, plan_egtea, plan_epic, plan_gtea61


def _epic_video(out: Path, video: VideoPlan) -> Path:
    return out / "videos" / video.participant / f"{video.video_id}.MP4"


def epic_layout(extension: bool) -> SynthLayout:
    """EPIC-KITCHENS-55, or with ``extension`` EPIC-KITCHENS-100."""
    return SynthLayout(partial(plan_epic, extension=extension), write_epic100 if extension else write_epic55,
                       _epic_video, default_fps=29.97, several_rates=True)


def egtea_layout() -> SynthLayout:
    """EGTEA Gaze+: session videos and the three split files."""
    return SynthLayout(plan_egtea, write_egtea, lambda out, video: out / "videos" / f"{video.video_id}.mp4",
                       default_fps=24.0)


def gtea61_layout() -> SynthLayout:
    """GTEA-61: one PNG frame folder per action instance, ``frames/<S>/<class>/<k>``."""
    return SynthLayout(plan_gtea61, None, lambda out, video: out / "frames" / video.video_id,
                       frame_folders=True, default_fps=24.0)

"""From a segment's annotated time to the frames of the raw file that show it.

EPIC-KITCHENS' ``start_frame``/``stop_frame`` count the frames of the public *frame
release*, not of the raw video: EPIC-55 resampled every video to 60 fps for that release,
and EPIC-100 keeps 60 fps for the EPIC-55 videos and 50 fps for the 2020 extension. The raw
files run at 59.94, 50, 47.95, 29.97 or 90 fps, so indexing them with those numbers takes
frames from the wrong time on every video that is not ~60 fps. The annotations' timestamps
are the truth in both releases: the builder maps them to the raw file through the file's
own frame timestamps (:class:`FrameTimes`), never through a nominal rate.

A frame shows the interval from its timestamp to the next frame's. The frames of a segment
[t0, t1] are the one showing t0 through the last one that starts before t1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

# EPIC writes HH:MM:SS.ff (EPIC-55) or HH:MM:SS.fff (EPIC-100 narration times).
_TIMESTAMP = re.compile(r"^\s*(\d+):([0-5]?\d):([0-5]?\d(?:\.\d*)?)\s*$")


class SegmentOutside(ValueError):
    """A segment whose time does not overlap the decodable part of its video."""


def parse_timestamp(text: str) -> float:
    """``HH:MM:SS.ff`` -> seconds; raises ValueError on anything else."""
    match = _TIMESTAMP.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a timestamp HH:MM:SS.ff")
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def release_fps(fmt: str, native_fps: float) -> float:
    """The rate at which a dataset's public frame release numbers a video's frames (the
    dataset's ``release_fps``): EPIC-55 60 for every video; EPIC-100 50 for the 2020
    extension (recorded at 50 fps), 60 for the others; datasets that number the frames they
    ship (GTEA-61's folders, EGTEA's 24 fps session videos) the native rate."""
    from shards.datasets.registry import get_dataset

    return get_dataset(fmt).release_fps(native_fps)


def epic55_release_fps(native_fps: float) -> float:
    """EPIC-55's release numbers every video's frames at 60 fps."""
    return 60.0


def epic100_release_fps(native_fps: float) -> float:
    """EPIC-100: 50 fps for the 2020 videos (recorded at 50), 60 for the others."""
    return 50.0 if abs(native_fps - 50.0) < 0.5 else 60.0


def release_frame(seconds: float, rate: float) -> int:
    """The 1-based release frame number of time ``seconds`` (as EPIC numbers them)."""
    return max(1, int(math.floor(seconds * rate + 1e-9)))


@dataclass(frozen=True)
class NativeSpan:
    """The raw file's frames (0-based, inclusive) that show a segment."""

    first: int
    last: int
    clamped: bool  # the segment's stop lay past the last decodable frame


class FrameTimes:
    """When each decodable frame of a file starts, measured from the first frame.

    Args:
        starts: presentation time of every frame in decode order, in seconds.
        end: when the last frame stops being shown (its timestamp plus its duration).
    """

    def __init__(self, starts: np.ndarray, end: float):
        starts = np.asarray(starts, np.float64)
        if starts.ndim != 1 or starts.size == 0:
            raise ValueError("a video needs at least one frame timestamp")
        origin = starts[0]
        self.starts = starts - origin
        if starts.size > 1 and not np.all(np.diff(self.starts) > 0):
            raise ValueError("frame timestamps do not increase")
        self.end = float(end - origin)
        if not self.end > self.starts[-1]:
            raise ValueError("the last frame ends before it starts")

    @classmethod
    def uniform(cls, count: int, fps: float) -> "FrameTimes":
        """Frames at a constant rate (image folders, whose files carry no time)."""
        if count < 1 or not fps > 0:
            raise ValueError(f"need count >= 1 and fps > 0, got {count}, {fps}")
        return cls(np.arange(count) / fps, count / fps)

    @property
    def count(self) -> int:
        return int(self.starts.size)

    @property
    def fps(self) -> float:
        """The file's real rate: the median frame interval (robust to a few odd frames)."""
        if self.count < 2:
            return 1.0 / self.end
        return float(1.0 / np.median(np.diff(self.starts)))

    def span(self, start: float, stop: float) -> NativeSpan:
        """The frames showing [start, stop] seconds; a stop past the end is clamped.

        Raises:
            SegmentOutside: the segment starts at or after the end of the last frame.
        """
        if not (math.isfinite(start) and math.isfinite(stop)) or stop < start or start < 0:
            raise SegmentOutside(f"segment time {start}..{stop} s is not a valid interval")
        if start >= self.end:
            raise SegmentOutside(
                f"segment {start:.3f}..{stop:.3f} s starts after the video's last decodable frame "
                f"ends ({self.end:.3f} s: {self.count} frames at {self.fps:.3f} fps)"
            )
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        clamped = stop > self.end
        last = self.count - 1 if clamped else int(np.searchsorted(self.starts, stop, side="left")) - 1
        return NativeSpan(max(0, first), max(first, last), clamped)

    def times(self, indices) -> list[float]:
        """The start times (s) of frames at 0-based ``indices``, rounded to 0.1 ms."""
        return [round(float(self.starts[int(i)]), 4) for i in indices]

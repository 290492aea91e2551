"""Frame-exact access to source videos (PyAV) and frame folders (GTEA-61).

A source is opened once per video and serves every segment of it. Frames are addressed by
0-based index in presentation order, and each source knows when every frame is shown
(``timing``), which is how a segment's annotated time becomes indices (:mod:`shards.timing`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import cv2
import numpy as np

from shards.timing import FrameTimes

VIDEO_EXTENSIONS = (".mp4",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class DecodeError(RuntimeError):
    """A video or frame folder that cannot be opened or decoded."""


class FrameSource(Protocol):
    """What the builder needs from a video: its frames' times and exact frames at the stored size."""

    path: Path
    num_frames: int
    fps: float  # the file's real rate, from its frame timestamps
    timing: FrameTimes

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Returns uint8 RGB frames (n, H, W, 3) at 0-based ``indices`` (any order, repeats ok)."""


def stored_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(H, W) after resizing so that the shorter side is ``short_side`` (aspect kept)."""
    if height <= 0 or width <= 0:
        raise DecodeError(f"invalid frame size {width}x{height}")
    scale = short_side / min(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def sample_frames(start_frame: int, stop_frame: int, count: int) -> list[int]:
    """``count`` 1-based frame numbers spread uniformly over [start, stop] (chunk centres).

    Segments shorter than ``count`` frames repeat frames, so every sample has ``count``.
    """
    length = stop_frame - start_frame + 1
    if length < 1:
        raise ValueError(f"empty segment: start_frame {start_frame} > stop_frame {stop_frame}")
    return [start_frame + int((i + 0.5) * length / count) for i in range(count)]


def _unique_read(indices: Sequence[int], read_sorted) -> np.ndarray:
    unique = sorted(set(int(i) for i in indices))
    batch = read_sorted(unique)
    where = {index: row for row, index in enumerate(unique)}
    return batch[[where[int(i)] for i in indices]]


class VideoFile:
    """A video file decoded with PyAV (FFmpeg), each frame found by its presentation timestamp.

    Frame ``i`` is the ``i``-th presentation timestamp of the stream. A read seeks to the key
    frame before the first wanted frame and decodes forward, keeping the frames whose
    timestamps are wanted, so the result does not depend on what was read before, on open
    GOPs or on leading frames. Wanted frames are scaled to the stored size while their
    colours are converted (swscale, area filter), cheaper than converting full-size frames.
    decord's ``get_batch``, used before schema v4, returned frames one or two positions early
    for a few percent of reads (nondeterministically, also from a freshly opened reader).
    """

    def __init__(self, path: str | Path, short_side: int, threads: int = 1):
        import av

        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
            if not self._container.streams.video:
                raise DecodeError(f"{self.path}: no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_count = max(1, threads)
            ctx = self._stream.codec_context
            self.height, self.width = stored_size(int(ctx.height), int(ctx.width), short_side)
            pts, durations = [], []
            for packet in self._container.demux(self._stream):
                if packet.pts is not None and packet.size > 0:
                    pts.append(int(packet.pts))
                    durations.append(int(packet.duration or 0))
        except DecodeError:
            raise
        except Exception as err:  # PyAV raises many error classes for broken files
            raise DecodeError(f"{self.path}: cannot open: {_short(err)}") from err
        if not pts:
            raise DecodeError(f"{self.path}: no decodable frames")
        order = np.argsort(pts, kind="stable")
        self._pts = np.asarray(pts, np.int64)[order]
        self._index = {int(p): i for i, p in enumerate(self._pts)}
        base = float(self._stream.time_base)
        last = max(int(np.asarray(durations)[order][-1]), int(np.median(np.diff(self._pts))) if len(pts) > 1 else 1)
        try:
            self.timing = FrameTimes(self._pts * base, (self._pts[-1] + last) * base)
        except ValueError as err:
            raise DecodeError(f"{self.path}: unusable frame timestamps: {err}") from err
        self.num_frames = len(self._pts)
        self.fps = self.timing.fps

    def _decode_from(self, start: int, first: int, wanted: set[int], out: dict[int, np.ndarray]) -> None:
        """Seeks to the key frame before frame ``start`` and decodes forward until every
        wanted frame from ``first`` on has been seen (or the file ends)."""
        self._container.seek(int(self._pts[start]), stream=self._stream, backward=True, any_frame=False)
        last = max(wanted)
        for frame in self._container.decode(self._stream):
            index = self._index.get(int(frame.pts)) if frame.pts is not None else None
            if index is None or index < first:
                continue
            if index in wanted and index not in out:
                out[index] = frame.reformat(width=self.width, height=self.height, format="rgb24",
                                            interpolation="AREA").to_ndarray()
            if index >= last:
                return

    def read(self, indices: Sequence[int]) -> np.ndarray:
        bad = [i for i in indices if i < 0 or i >= self.num_frames]
        if bad:
            raise DecodeError(f"{self.path}: frame index {bad[0]} outside 0..{self.num_frames - 1}")

        def read_sorted(unique: list[int]) -> np.ndarray:
            out: dict[int, np.ndarray] = {}
            try:
                # A seek may land on a key frame after which the first wanted frame is a
                # leading frame that cannot be decoded: seek further back until it is found.
                back = 0
                while len(out) < len(unique):
                    missing = [i for i in unique if i not in out]
                    start = max(0, missing[0] - back)
                    self._decode_from(start, missing[0], set(missing), out)
                    if missing[0] not in out:
                        if start == 0:
                            break
                        back = max(16, 4 * back)
            except Exception as err:  # PyAV decoding errors
                raise DecodeError(f"{self.path}: decoding frames {unique[0]}..{unique[-1]} failed: {_short(err)}") from err
            lost = [i for i in unique if i not in out]
            if lost:
                raise DecodeError(f"{self.path}: frame {lost[0]} could not be decoded")
            return np.stack([out[i] for i in unique])

        return _unique_read(indices, read_sorted)


class FrameFolder:
    """A folder of numbered frame images (GTEA-61 layout), read in file-name order.

    Image files carry no time: frame i is shown at i / fps, so a segment's time maps back to
    the folder's own numbering.
    """

    def __init__(self, path: str | Path, short_side: int, fps: float = 30.0):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DecodeError(f"{self.path}: frame folder not found")
        self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self._files:
            raise DecodeError(f"{self.path}: no frame images (.jpg/.png)")
        first = self._load(0, resize=False)
        self.height, self.width = stored_size(first.shape[0], first.shape[1], short_side)
        self.num_frames = len(self._files)
        self.fps = float(fps)
        self.timing = FrameTimes.uniform(self.num_frames, self.fps)

    def _load(self, index: int, resize: bool = True) -> np.ndarray:
        image = cv2.imread(str(self._files[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise DecodeError(f"{self._files[index]}: cannot decode image")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if resize and image.shape[:2] != (self.height, self.width):
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return image

    def read(self, indices: Sequence[int]) -> np.ndarray:
        bad = [i for i in indices if i < 0 or i >= self.num_frames]
        if bad:
            raise DecodeError(f"{self.path}: frame index {bad[0]} outside 0..{self.num_frames - 1}")
        return _unique_read(indices, lambda unique: np.stack([self._load(i) for i in unique]))


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def index_videos(root: str | Path, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> dict[str, list[Path]]:
    """Walks ``root`` once and maps each video file stem to every path with that stem.

    Extensions match case-insensitively (``.MP4`` and ``.mp4``). More than one path for a stem
    is kept so the caller can report the ambiguity instead of guessing. Symbolic links are
    followed, but each real folder is visited once (a link back up the tree is no loop) and
    paths reaching the same real file count once (the first in sorted order is kept).
    """
    wanted = tuple(e.lower() for e in extensions)
    found: dict[str, dict[str, Path]] = {}
    visited: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((info.st_dev, info.st_ino))
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in wanted:
                path = Path(folder) / name
                same = found.setdefault(stem, {})
                real = os.path.realpath(path)
                if real not in same or path < same[real]:
                    same[real] = path
    return {stem: sorted(paths.values()) for stem, paths in found.items()}

"""Frame-accurate access to source videos (decord) and frame folders (GTEA-61).

A source is opened once per video and serves every segment of it. Frames are addressed by
0-based decoded index, and each source knows when every frame is shown (``timing``), which is
how a segment's annotated time becomes indices (:mod:`shards.timing`). Videos are
read with decord's ``get_batch`` on explicit indices, which seeks exactly (decoding from the
previous key frame) rather than by timestamp, and decord scales to the stored size while
converting colours, which is cheaper than converting full-size frames and resizing them.
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


class DecordVideo:
    """A video file opened with decord at the stored size."""

    def __init__(self, path: str | Path, short_side: int, threads: int = 1):
        import decord

        self.path = Path(path)
        height, width = probe_size(self.path)
        self.height, self.width = stored_size(height, width, short_side)
        self._resize_after = False
        try:
            self._reader = decord.VideoReader(
                str(self.path), ctx=decord.cpu(0), width=self.width, height=self.height, num_threads=threads
            )
            self.num_frames = len(self._reader)
            if self.num_frames > 0 and not self._scales_correctly():
                # decord2 3.4 returns 4-channel frames for some output sizes (e.g. 96x64,
                # 96x72); decode at the native size and resize with OpenCV instead.
                self._reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=threads)
                self._resize_after = True
        except Exception as err:  # decord raises its own DECORDError and RuntimeError
            raise DecodeError(f"{self.path}: cannot open with decord: {_short(err)}") from err
        if self.num_frames <= 0:
            raise DecodeError(f"{self.path}: no decodable frames")
        self.timing = self._frame_times()
        self.fps = self.timing.fps

    def _frame_times(self) -> FrameTimes:
        """Each frame's presentation time from the stream's own time base (not a nominal fps)."""
        try:
            stamps = self._reader.get_frame_timestamp(np.arange(self.num_frames))
            return FrameTimes(stamps[:, 0], float(stamps[-1, 1]))
        except Exception as err:  # decord errors, or timestamps that do not increase
            raise DecodeError(f"{self.path}: unusable frame timestamps: {_short(err)}") from err

    def _scales_correctly(self) -> bool:
        try:
            first = self._reader.get_batch([0]).asnumpy()
        except Exception:  # noqa: BLE001 - any failure here means: do not trust the scaler
            return False
        finally:
            self._park()
        return first.shape == (1, self.height, self.width, 3)

    def _park(self) -> None:
        """Stops the decoder thread: after ``get_batch`` it goes on decoding the rest of the
        file until the next seek (decord2 3.4), which kept a second core busy while a worker
        computed motion maps (two workers on two cores gained 1.17x over one). A seek to the
        first frame idles it and costs ~5 ms at 1080p."""
        try:
            self._reader.seek(0)
        except Exception:  # noqa: BLE001 - parking is best effort; the next read seeks anyway
            pass

    def read(self, indices: Sequence[int]) -> np.ndarray:
        bad = [i for i in indices if i < 0 or i >= self.num_frames]
        if bad:
            raise DecodeError(f"{self.path}: frame index {bad[0]} outside 0..{self.num_frames - 1}")

        def read_sorted(unique: list[int]) -> np.ndarray:
            try:
                batch = self._reader.get_batch(unique).asnumpy()
            except Exception as err:
                raise DecodeError(f"{self.path}: decoding frames {unique[0]}..{unique[-1]} failed: {_short(err)}") from err
            finally:
                self._park()
            if self._resize_after:
                size = (self.width, self.height)
                batch = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in batch])
            if batch.shape != (len(unique), self.height, self.width, 3):
                raise DecodeError(f"{self.path}: decoder returned shape {batch.shape}")
            return batch

        return _unique_read(indices, read_sorted)


def has_leading_frames(path: Path, packets: int = 600) -> bool:
    """Whether frames follow a key frame in decode order but precede it on screen.

    Open-GOP HEVC and MPEG-4 files do this; decord then counts the key frame's position in
    decode order as its frame index and seeks to the wrong frames (off by the leading
    frames, silently). Encoders keep one GOP structure per file, so the first ``packets``
    packets tell.
    """
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            key_pts = None
            for n, packet in enumerate(container.demux(stream)):
                if packet.pts is None:
                    continue
                if packet.is_keyframe:
                    key_pts = packet.pts
                elif key_pts is not None and packet.pts < key_pts:
                    return True
                if n >= packets:
                    break
    except Exception as err:  # PyAV raises many error classes for broken files
        raise DecodeError(f"{path}: cannot read packets: {_short(err)}") from err
    return False


class PyAVVideo:
    """A video decoded with PyAV, each frame found by its presentation timestamp.

    Exact where decord's index is not (:func:`has_leading_frames`): it seeks to the key
    frame before the first wanted frame and decodes forward, keeping frames by pts.
    """

    def __init__(self, path: str | Path, short_side: int, threads: int = 1):
        import av

        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
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
            raise DecodeError(f"{self.path}: cannot open with PyAV: {_short(err)}") from err
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
                image = frame.to_ndarray(format="rgb24")
                if image.shape[:2] != (self.height, self.width):
                    image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
                out[index] = image
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


def open_video(path: str | Path, short_side: int, threads: int = 1):
    """decord where its frame index is exact, PyAV (by timestamps) where it is not."""
    path = Path(path)
    if has_leading_frames(path):
        return PyAVVideo(path, short_side, threads)
    return DecordVideo(path, short_side, threads)


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


def probe_size(path: Path) -> tuple[int, int]:
    """(height, width) of the first video stream, read from the container header (PyAV)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError(f"{path}: no video stream")
            ctx = container.streams.video[0].codec_context
            return int(ctx.height), int(ctx.width)
    except DecodeError:
        raise
    except Exception as err:  # PyAV raises many error classes for broken files
        raise DecodeError(f"{path}: cannot open: {_short(err)}") from err


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

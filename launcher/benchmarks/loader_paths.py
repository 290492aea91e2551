"""The ways of getting the same training clips that ``fpar bench loader`` compares.

Every path makes, per segment, the clip the shard reader makes: N frames chosen TSN-style
(one random frame per equal chunk) and the same multi-scale corner crop and flip, drawn
from the same seeded generator (:func:`fpar.data.sampling.rng_for` of seed, epoch and the
sample key), then batched and normalised. What differs is where the frames come from:

* ``decord``: the segment's frames decoded from the source MP4 on the fly (one reader
  opened per clip, as a dataset item would), at the stored size;
* ``jpeg_files``: one JPEG file per frame and one PNG file per motion map (the Ego-RNN /
  SparNet frame-folder layout), read and decoded per clip, with the same cv2 decoder as
  the shard reader;
* ``decode_bound``: only ``cv2.imdecode`` of the N frames' JPEG bytes, already in memory,
  at full size: what any JPEG-based reader pays at least.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from fpar.data.batch import stack_arrays
from fpar.data.config import DataConfig
from fpar.data.sampling import rng_for, temporal_indices
from fpar.data.transforms import (
    crop_frames,
    crop_maps,
    map_size,
    train_box,
)
from shards.schema import FRAMES_EXT, META_EXT, unpack_images


@dataclass
class Segment:
    """One shard sample's segment: where it lies in its video and its stored JPEGs."""

    key: str
    video: Path | None
    first_index: int  # 0-based indices of the video's frames that the shard's frames span
    last_index: int
    frame_size: tuple[int, int]  # stored (H, W)
    jpegs: list[bytes]  # the M stored frames
    maps: np.ndarray  # the M motion maps, uint8 (M, h, w)
    folder: Path | None = None  # the frame and map files, once written


def read_segments(shard_dir: Path, videos: dict[str, list[Path]] | None, limit: int) -> list[Segment]:
    """The first ``limit`` samples of a shard folder, with their source videos located.

    Raises:
        FileNotFoundError: A sample's video is not under the video root.
    """
    from fpar.data.reader import tar_samples
    from shards.schema import decode_sample, shard_paths

    segments: list[Segment] = []
    for path in shard_paths(shard_dir):
        with open(path, "rb") as fh:
            for sample in tar_samples(str(path), fh):
                meta = json.loads(bytes(sample[META_EXT]))
                video = None
                if videos is not None:
                    found = videos.get(str(meta["video_id"]))
                    if not found:
                        raise FileNotFoundError(f"{path}: sample {sample['__key__']}: video "
                                                f"{meta['video_id']} not under the video root")
                    video = found[0]
                segments.append(Segment(
                    sample["__key__"], video, int(meta["native_frames"][0]), int(meta["native_frames"][-1]),
                    tuple(int(v) for v in meta["frame_size"]),
                    [bytes(b) for b in unpack_images(sample[FRAMES_EXT])],
                    decode_sample(sample, flow=False)["motion"]))
                if len(segments) == limit:
                    return segments
    return segments


def write_frame_folders(segments: list[Segment], root: Path) -> None:
    """Writes each segment's stored frames and motion maps as one file each.

    ``root/KEY/00001.jpg ...`` hold the shard's JPEG bytes unchanged and
    ``root/KEY/map_00001.png ...`` the maps as PNG files.
    """
    for seg in segments:
        seg.folder = root / seg.key
        seg.folder.mkdir(parents=True, exist_ok=True)
        for i, blob in enumerate(seg.jpegs, start=1):
            (seg.folder / f"{i:05d}.jpg").write_bytes(blob)
        for i, one in enumerate(seg.maps, start=1):
            cv2.imwrite(str(seg.folder / f"map_{i:05d}.png"), one)


def _draw(seg: Segment, count: int, cfg: DataConfig, seed: int, epoch: int):
    """The clip's frame positions among ``count`` and its crop, as the shard reader draws."""
    rng = rng_for(seed, epoch, seg.key)
    picks = temporal_indices(count, cfg.num_frames, True, rng)
    height, width = seg.frame_size
    return picks, train_box(width, height, cfg.scales, cfg.flip, rng)


def _decord_clip(seg: Segment, cfg: DataConfig, seed: int, epoch: int) -> dict:
    import decord

    height, width = seg.frame_size
    reader = decord.VideoReader(str(seg.video), ctx=decord.cpu(0), width=width, height=height,
                                num_threads=1)
    picks, box = _draw(seg, seg.last_index - seg.first_index + 1, cfg, seed, epoch)
    frames = reader.get_batch((picks + seg.first_index).tolist()).asnumpy()
    return {"frames": crop_frames(list(frames), box, cfg.crop_size)}


def _read(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise ValueError(f"{path}: cannot be decoded")
    return image


def _file_clip(seg: Segment, cfg: DataConfig, seed: int, epoch: int) -> dict:
    picks, box = _draw(seg, len(seg.jpegs), cfg, seed, epoch)
    frames = [_read(seg.folder / f"{p + 1:05d}.jpg", cv2.IMREAD_COLOR_RGB) for p in picks]
    maps = np.stack([_read(seg.folder / f"map_{p + 1:05d}.png", cv2.IMREAD_GRAYSCALE)
                     for p in picks])
    height, width = seg.frame_size
    side = map_size(cfg.motion_size, cfg.crop_size, min(height, width), min(maps.shape[1:]))
    return {"frames": crop_frames(frames, box, cfg.crop_size),
            "motion": crop_maps(maps, box, side)}


CLIP_MAKERS: dict[str, Callable[[Segment, DataConfig, int, int], dict]] = {
    "decord": _decord_clip,
    "jpeg_files": _file_clip,
}


def clip_rate(make: Callable, segments: list[Segment], cfg: DataConfig, seconds: float,
              seed: int = 0) -> float:
    """Clips/s of ``make`` over the segments, epoch after epoch, batched.

    Runs at least one whole batch, then until ``seconds`` have passed. Batches are
    finished as the shard reader's are: stacked into the uint8 loader batch.
    """
    clips = 0
    batch: list[dict] = []
    started = time.perf_counter()
    for epoch, seg in _endless(segments):
        batch.append(make(seg, cfg, seed, epoch))
        if len(batch) == cfg.batch_size:
            stack_arrays([clip["frames"] for clip in batch], pin=False)
            if "motion" in batch[0]:
                stack_arrays([clip["motion"] for clip in batch], pin=False)
            clips += len(batch)
            batch = []
            if time.perf_counter() - started >= seconds:
                break
    return clips / (time.perf_counter() - started)


def decode_bound_rate(segments: list[Segment], cfg: DataConfig, seconds: float,
                      seed: int = 0) -> float:
    """Clips/s of decoding only the N picked frames' JPEG bytes (full size, cv2)."""
    clip_bytes = []
    for seg in segments:
        picks, _ = _draw(seg, len(seg.jpegs), cfg, seed, 0)
        clip_bytes.append([np.frombuffer(seg.jpegs[p], np.uint8) for p in picks])
    clips = 0
    started = time.perf_counter()
    while True:
        for blobs in clip_bytes:
            for blob in blobs:
                cv2.imdecode(blob, cv2.IMREAD_COLOR_RGB)
            clips += 1
        if time.perf_counter() - started >= seconds:
            return clips / (time.perf_counter() - started)


def _endless(segments: list[Segment]) -> Iterator[tuple[int, Segment]]:
    epoch = 0
    while True:
        for seg in segments:
            yield epoch, seg
        epoch += 1

"""Writing frames: H.264 MP4 through PyAV, PNG frame folders, and the mask archives.

Videos are encoded without B-frames and with a fixed GOP, so every frame has a distinct,
increasing timestamp. x264 adds an I-frame at a scene cut; one that falls just after a key frame
is a sync sample of the MP4 but no key frame to the decoder, as in camera files re-encoded with
x264's defaults (decord seeks wrongly around them, :mod:`shards.decode`).
"""

from __future__ import annotations

import io
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from shards.files import atomic_write_bytes

NTSC_RATES = {59.94: Fraction(60000, 1001), 29.97: Fraction(30000, 1001), 47.95: Fraction(48000, 1001),
              23.976: Fraction(24000, 1001), 119.88: Fraction(120000, 1001)}


def exact_rate(fps: float) -> Fraction:
    """The frame rate as a fraction: 59.94 -> 60000/1001 (EPIC's real rate), 30 -> 30/1."""
    for approx, exact in NTSC_RATES.items():
        if abs(fps - approx) < 5e-3 or abs(fps - float(exact)) < 1e-9:
            return exact
    return Fraction(fps).limit_denominator(1001)


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float, width: int,
              height: int, crf: int = 20, gop: int | None = None,
              preset: str = "ultrafast") -> int:
    """Encodes RGB ``frames`` to an H.264 MP4 at ``path`` atomically; returns the frame count.

    Args:
        path: Output file; written under a temporary name, then renamed.
        frames: (height, width, 3) uint8 RGB arrays.
        fps: Frame rate (59.94 is stored as 60000/1001).
        crf: x264 constant rate factor (lower = better quality, bigger files).
        gop: Keyframe interval in frames (default: one second).
        preset: x264 speed preset (ultrafast: fastest, largest files).
    """
    import av  # PyAV only where videos are written: a GPU node reading shards lacks it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    rate = exact_rate(fps)
    count = 0
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.time_base = 1 / rate
            stream.codec_context.max_b_frames = 0
            stream.options = {"preset": preset, "crf": str(crf), "bf": "0",
                              "g": str(gop or max(1, round(float(rate)))), "threads": "1"}
            for frame in frames:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                vf.pts = count
                vf.time_base = stream.codec_context.time_base
                for packet in stream.encode(vf):
                    container.mux(packet)
                count += 1
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


def write_png_folder(folder: str | Path, frames: Iterable[np.ndarray]) -> int:
    """Writes RGB ``frames`` as ``00001.png``, ``00002.png``... into ``folder``; returns count.

    The folder is filled under a temporary name and renamed, so a reader never sees half of
    an instance; an existing folder is replaced.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    count = 0
    try:
        for count, frame in enumerate(frames, start=1):
            ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_PNG_COMPRESSION, 1])
            if not ok:
                raise RuntimeError(f"PNG encoding failed for {folder}/{count:05d}.png")
            (tmp / f"{count:05d}.png").write_bytes(data.tobytes())
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return count


def save_mask(path: str | Path, mask: np.ndarray) -> None:
    """Saves a (T, H, W) uint8 {0,1} mask as ``.npz`` (key ``mask``) atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, mask=mask.astype(np.uint8, copy=False))
    atomic_write_bytes(path, buf.getvalue())

"""Geometric augmentation applied identically to frames, motion maps and flow.

A crop is described once, as a box in *relative* coordinates of the stored frame plus a
flip flag (:class:`CropBox`). Every array of the clip is then warped with the affine map
that box implies at its own resolution, so frames decoded at half size, motion maps at a
quarter of the frame size and flow fields all receive exactly the same crop and flip
(pixel centres correspond exactly, no per-resolution rounding).

Training uses Ego-RNN's multi-scale corner crop: the crop's width and height are the
frame's short side times a scale drawn per axis from ``scales``, placed at one of the four
corners or the centre, resized to ``crop_size``; then a horizontal flip with probability
1/2 that also negates the x components of the flow. Testing takes a fixed centre crop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import cv2
import numpy as np


CORNERS = ("c", "tl", "tr", "bl", "br")


@dataclass(frozen=True)
class CropBox:
    """A crop as fractions of the frame's width/height, and whether to mirror it."""

    x0: float
    y0: float
    w: float
    h: float
    flip: bool = False


def train_box(
    width: int,
    height: int,
    scales: Sequence[float],
    flip: bool,
    rng: np.random.Generator,
) -> CropBox:
    """Draws a multi-scale corner crop (and flip) for a stored frame of this size.

    Args:
        width: Stored frame width in pixels.
        height: Stored frame height in pixels.
        scales: Candidate scales; one is drawn for each axis.
        flip: Whether a horizontal flip may be drawn (probability 1/2).
        rng: Source of the draw.

    Returns:
        The crop box.
    """
    base = min(width, height)
    cw = int(base * scales[int(rng.integers(len(scales)))])
    ch = int(base * scales[int(rng.integers(len(scales)))])
    corner = CORNERS[int(rng.integers(len(CORNERS)))]
    if corner == "c":
        x0, y0 = (width - cw) // 2, (height - ch) // 2
    else:
        x0 = 0 if corner[1] == "l" else width - cw
        y0 = 0 if corner[0] == "t" else height - ch
    mirrored = bool(flip and rng.random() < 0.5)
    return CropBox(x0 / width, y0 / height, cw / width, ch / height, mirrored)


def centre_box(width: int, height: int, fraction: float) -> CropBox:
    """The deterministic centre crop: a square of ``fraction`` of the short side."""
    side = int(round(min(width, height) * fraction))
    x0, y0 = (width - side) // 2, (height - side) // 2
    return CropBox(x0 / width, y0 / height, side / width, side / height, False)


def _affine(box: CropBox, in_w: int, in_h: int, out_w: int, out_h: int) -> np.ndarray:
    """Affine matrix sending input pixel centres inside ``box`` onto an out_w x out_h grid."""
    ax = out_w / (box.w * in_w)
    ay = out_h / (box.h * in_h)
    # Pixel i covers [i, i + 1); centres sit at i + 0.5 in continuous coordinates.
    tx = (0.5 - box.x0 * in_w) * ax - 0.5
    ty = (0.5 - box.y0 * in_h) * ay - 0.5
    if box.flip:
        ax, tx = -ax, out_w - 1 - tx
    return np.array([[ax, 0.0, tx], [0.0, ay, ty]], dtype=np.float64)


def warp_stack(stack: np.ndarray, box: CropBox, out_size: int,
               out: np.ndarray | None = None) -> np.ndarray:
    """Crops/resizes/flips an (H, W, C) array (any C) to (out_size, out_size, C).

    When the box falls on whole pixels of ``stack`` (always so for frames at the stored
    size, since boxes are drawn in stored pixels) the region is resized directly, which
    samples the same pixel centres as the affine warp at a fraction of its cost.
    Otherwise (maps and flow at lower resolution, frames decoded at reduced size) an
    affine warp keeps the box exact.

    Args:
        stack: (H, W) or (H, W, C) array.
        box: The crop (and flip).
        out_size: Side of the output.
        out: Optional (out_size, out_size, C) array of ``stack``'s dtype to write into.

    Returns:
        The cropped array (``out`` when given).
    """
    h, w = stack.shape[:2]
    region_box = pixel_region(box, w, h, out_size)
    if region_box is not None:
        x0, y0, x1, y1, shrink = region_box
        region = stack[y0:y1, x0:x1]
        if region.ndim == 2:
            region = region[:, :, None]
        if shrink:
            # cv2's area resize takes at most 4 channels at a time.
            parts = [_resize(region[:, :, c : c + 4], out_size, cv2.INTER_AREA)
                     for c in range(0, region.shape[2], 4)]
            result = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)
        else:
            result = _resize(region, out_size, cv2.INTER_LINEAR, out)
        if box.flip:
            result = result[:, ::-1]
    else:  # the affine map mirrors by itself
        result = cv2.warpAffine(stack, _affine(box, w, h, out_size, out_size),
                                (out_size, out_size), dst=out, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    if result.ndim == 2:
        result = result[:, :, None]
    if out is None:
        return np.ascontiguousarray(result)
    if box.flip or not np.shares_memory(result, out):
        np.copyto(out, result)
    return out


def pixel_region(box: CropBox, width: int, height: int,
                 out_size: int) -> tuple[int, int, int, int, bool] | None:
    """``(x0, y0, x1, y1, shrink)`` when ``box`` is resized from a pixel region of a
    ``width`` x ``height`` array, None when it needs the affine warp.

    That is when the box falls on whole pixels, or when it shrinks the array by more than
    half: bilinear sampling would alias, and area interpolation (no affine warp) is taken
    from the nearest whole-pixel box instead.
    """
    edges = (box.x0 * width, box.y0 * height, (box.x0 + box.w) * width, (box.y0 + box.h) * height)
    rounded = [round(v) for v in edges]
    whole = max(abs(v - r) for v, r in zip(edges, rounded)) < 1e-6
    shrink = min(out_size / (box.w * width), out_size / (box.h * height)) < 0.5
    if not (whole or shrink):
        return None
    x0, y0, x1, y1 = rounded
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1), shrink


def _resize(region: np.ndarray, out_size: int, interpolation: int,
            out: np.ndarray | None = None) -> np.ndarray:
    if region.shape[:2] == (out_size, out_size):
        return region
    result = cv2.resize(region, (out_size, out_size), dst=out, interpolation=interpolation)
    return result[:, :, None] if result.ndim == 2 else result


def crop_frames(frames: Iterable[np.ndarray] | np.ndarray, box: CropBox, size: int,
                out: np.ndarray | None = None) -> np.ndarray:
    """Applies ``box`` to each (H, W, 3) uint8 frame; returns contiguous (N, size, size, 3).

    Each frame is cropped straight into the output (``out``, e.g. a clip's rows of a batch
    buffer, or a new array). ``frames`` may be an iterator decoding them one by one (then
    ``out`` is needed for N).
    """
    shape = (len(out) if out is not None else len(frames), size, size, 3)
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"crop output is {out.dtype} {out.shape}, expected uint8 {shape}")
    return _crop_each(frames, box, size, out)


def crop_maps(maps: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """Applies ``box`` to (N, h, w) maps at their own resolution; returns (N, size, size)."""
    region = pixel_region(box, maps.shape[2], maps.shape[1], size)
    if region is not None and not region[4]:
        return _crop_each(maps, box, size, np.empty((len(maps), size, size), dtype=maps.dtype))
    # One warp of all maps as channels: OpenCV's multi-channel warp rounds differently from
    # its single-channel one, and this is the warp the maps have always had.
    stacked = np.ascontiguousarray(np.moveaxis(maps, 0, -1))
    return np.moveaxis(warp_stack(stacked, box, size), -1, 0)


def _crop_each(images: Iterable[np.ndarray], box: CropBox, size: int, out: np.ndarray) -> np.ndarray:
    """Crops each (H, W[, C]) image into its row of ``out`` and mirrors it there in place.

    Images of one size share one pixel region, worked out once; mirroring the crop in
    place leaves no negative strides (copying a reversed view is slow).
    """
    i, image_shape, region, upright = -1, None, None, None
    for i, image in enumerate(images):
        if image.shape != image_shape:
            image_shape = image.shape
            region = pixel_region(box, image.shape[1], image.shape[0], size)
            if region is not None and region[4]:
                region = None  # shrinking by more than half: warp_stack's area path
        row = out[i]
        if region is None:
            upright = upright or replace(box, flip=False)
            warp_stack(image, upright, size, out=row if row.ndim == 3 else row[:, :, None])
        else:
            x0, y0, x1, y1, _ = region
            _into(row, _resize(image[y0:y1, x0:x1], size, cv2.INTER_LINEAR, row))
        if box.flip:
            _into(row, cv2.flip(row, 1, dst=row))
    if i + 1 != len(out):
        raise ValueError(f"{i + 1} images for a crop output of {len(out)}")
    return out


def _into(row: np.ndarray, result: np.ndarray) -> None:
    """Makes sure an OpenCV result meant for ``row`` is in it (OpenCV allocates a new
    array instead of writing into one it cannot use)."""
    if result is not row and not np.shares_memory(result, row):
        np.copyto(row, result.reshape(row.shape))


def crop_flow(flow: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """Applies ``box`` to flow (N, C, H, W) whose even channels are x components.

    A horizontal flip mirrors the field and also reverses horizontal motion, so the x
    channels change sign: for float flow -v, for the stored uint8 flow 255 - q (q encodes
    q * 2/255 - 1 of the bound, so 255 - q is exactly its negation). Returns
    (N, C, size, size) of the input's dtype (float32 or uint8).
    """
    n, c, h, w = flow.shape
    dtype = np.uint8 if flow.dtype == np.uint8 else np.float32
    stacked = np.ascontiguousarray(flow.reshape(n * c, h, w).transpose(1, 2, 0), dtype=dtype)
    out = warp_stack(stacked, box, size).transpose(2, 0, 1).reshape(n, c, size, size)
    out = np.ascontiguousarray(out)
    if box.flip:
        out[:, 0::2] = 255 - out[:, 0::2] if dtype == np.uint8 else -out[:, 0::2]
    return out


def map_size(cfg_motion_size: int | None, crop_size: int, frame_short: int, map_short: int) -> int:
    """Output side of the motion maps: configured, or the stored maps' scale kept."""
    if cfg_motion_size is not None:
        return cfg_motion_size
    return max(1, int(round(crop_size * map_short / frame_short)))

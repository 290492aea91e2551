"""Kitchens and the head-mounted camera.

Each participant owns a kitchen style (palette, texture family and scale, clutter, light) so
that unseen participants are a real domain shift. The kitchen is painted once on a "world"
canvas larger than the frame; the camera pans, zooms, rolls and jitters over it with speeds
comparable to the objects' motion, so that on-screen displacement alone does not tell a verb;
like a wearer's head it also turns towards the object in hand (:func:`follow`), which keeps
that object near the view centre while the kitchen moves behind it.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

TEXTURE_FAMILIES = ("noise", "tiles", "wood", "granite")
REFERENCE_HEIGHT = 256.0
"""Sizes and speeds are specified for a 256-pixel-high frame and scaled to the real one."""


@dataclass(frozen=True)
class KitchenStyle:
    """How one participant's kitchen looks."""

    palette: np.ndarray  # (5, 3) float RGB 0..255
    wall_family: str
    counter_family: str
    texture_scale: float  # pixels at the reference height
    clutter: int
    brightness: float
    tint: np.ndarray  # (3,) RGB gain of the light
    gradient: tuple[float, float, float]  # light falloff: (angle rad, strength, vignette)
    horizon: float  # fraction of the world height where the wall meets the counter


def sample_style(rng: np.random.Generator) -> KitchenStyle:
    """Draws a kitchen style; styles of different participants differ in every attribute."""
    base_hue = rng.uniform(0.0, 1.0)
    scheme = rng.choice([0.08, 0.33, 0.5])  # analogous, triadic or complementary palettes
    palette = []
    for k in range(5):
        hue = (base_hue + scheme * (k % 3) + rng.normal(0, 0.03)) % 1.0
        sat = rng.uniform(0.1, 0.75)
        val = rng.uniform(0.3, 0.95)
        palette.append(np.array(colorsys.hsv_to_rgb(hue, sat, val)) * 255.0)
    families = rng.permutation(TEXTURE_FAMILIES)
    warm = rng.uniform(-0.18, 0.18)
    return KitchenStyle(
        palette=np.stack(palette),
        wall_family=str(families[0]),
        counter_family=str(families[1]),
        texture_scale=float(np.exp(rng.uniform(np.log(3.0), np.log(36.0)))),
        clutter=int(rng.integers(3, 30)),
        brightness=float(rng.uniform(0.6, 1.2)),
        tint=np.array([1.0 + warm, 1.0, 1.0 - warm]),
        gradient=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.0, 0.45)),
                  float(rng.uniform(0.0, 0.35))),
        horizon=float(rng.uniform(0.3, 0.6)),
    )


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Value noise in [0, 1] with blobs about ``scale`` pixels wide (two octaves)."""
    out = np.zeros((h, w), np.float32)
    for octave, weight in ((1.0, 0.7), (0.4, 0.3)):
        step = max(1.0, scale * octave)
        small = rng.random((max(2, int(h / step) + 2), max(2, int(w / step) + 2)))
        out += weight * cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _texture(rng: np.random.Generator, family: str, h: int, w: int, scale: float) -> np.ndarray:
    """A (h, w) field in [0, 1] of the given texture family."""
    grain = _smooth_noise(rng, h, w, max(1.5, scale / 4))
    if family == "noise":
        return 0.8 * _smooth_noise(rng, h, w, scale) + 0.2 * grain
    if family == "tiles":
        tile = max(6, int(scale * 2.5))
        shades = rng.random((h // tile + 2, w // tile + 2)).astype(np.float32)
        yy, xx = np.mgrid[0:h, 0:w]
        field = 0.35 + 0.4 * shades[yy // tile, xx // tile] + 0.25 * grain
        grout = ((yy % tile) < max(1, tile // 10)) | ((xx % tile) < max(1, tile // 10))
        field[grout] = 0.05
        return np.clip(field, 0, 1)
    if family == "wood":
        warp = _smooth_noise(rng, h, w, scale * 3) * scale * 2
        yy = np.arange(h, dtype=np.float32)[:, None]
        rings = 0.5 + 0.5 * np.sin(2 * np.pi * (yy + warp) / max(3.0, scale * 0.6))
        return 0.6 * rings + 0.4 * grain
    if family == "granite":
        fine = _smooth_noise(rng, h, w, 1.5)
        specks = (fine > 0.72).astype(np.float32) - (fine < 0.25).astype(np.float32)
        return np.clip(0.5 + 0.25 * _smooth_noise(rng, h, w, scale) + 0.3 * specks, 0, 1)
    raise ValueError(f"unknown texture family {family!r}")


def _paint(field: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return low[None, None, :] + field[..., None] * (high - low)[None, None, :]


def light_gain(style: KitchenStyle) -> np.ndarray:
    """The RGB gain the kitchen's light applies to everything, objects included."""
    return style.brightness * style.tint


def paint_kitchen(style: KitchenStyle, h: int, w: int, unit: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Paints the kitchen's world canvas, (h, w, 3) uint8 RGB, light included."""
    scale = style.texture_scale * unit
    split = int(h * style.horizon)
    pal = style.palette
    canvas = np.empty((h, w, 3), np.float32)
    canvas[:split] = _paint(_texture(rng, style.wall_family, split, w, scale), pal[0] * 0.6, pal[0])
    canvas[split:] = _paint(_texture(rng, style.counter_family, h - split, w, scale),
                            pal[1] * 0.55, pal[1])
    # Counter edge: a strong horizontal structure, like the front of a worktop.
    edge = max(2, int(6 * unit))
    canvas[split:split + edge] = pal[2] * 0.7
    for _ in range(style.clutter):
        colour = pal[int(rng.integers(2, 5))] * rng.uniform(0.7, 1.1)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.6:  # cabinets, shelves, appliances
            hw, hh = int(rng.uniform(15, 90) * unit), int(rng.uniform(10, 70) * unit)
            cv2.rectangle(canvas, (cx - hw, cy - hh), (cx + hw, cy + hh), colour.tolist(), -1)
            cv2.rectangle(canvas, (cx - hw, cy - hh), (cx + hw, cy + hh),
                          (colour * 0.5).tolist(), max(1, int(2 * unit)))
        else:  # round things: plates on a rack, hob rings, clocks
            radius = int(rng.uniform(6, 40) * unit)
            cv2.circle(canvas, (cx, cy), radius, colour.tolist(), -1, cv2.LINE_AA)
            cv2.circle(canvas, (cx, cy), max(1, radius // 2), (colour * 0.6).tolist(),
                       max(1, int(2 * unit)), cv2.LINE_AA)
    angle, strength, vignette = style.gradient
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = ((xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle))
    r2 = (xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2
    shade = (1.0 + strength * u) * (1.0 - vignette * r2 * 2)
    canvas *= shade[..., None]
    canvas *= light_gain(style)[None, None, :]
    return np.clip(canvas, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class CameraPath:
    """World-to-screen affine per frame: (T, 2, 3) float, plus the world centre per frame."""

    matrices: np.ndarray
    centres: np.ndarray  # (T, 2) world point at the screen centre
    zoom: np.ndarray | None = None  # (T,) scale factor
    roll: np.ndarray | None = None  # (T,) radians


def _matrices(centre: np.ndarray, zoom: np.ndarray, roll: np.ndarray, width: int,
              height: int) -> np.ndarray:
    cos, sin = np.cos(roll) * zoom, np.sin(roll) * zoom
    mats = np.empty((len(centre), 2, 3))
    mats[:, 0, 0], mats[:, 0, 1] = cos, -sin
    mats[:, 1, 0], mats[:, 1, 1] = sin, cos
    mats[:, 0, 2] = width / 2 - (cos * centre[:, 0] - sin * centre[:, 1])
    mats[:, 1, 2] = height / 2 - (sin * centre[:, 0] + cos * centre[:, 1])
    return mats


def follow(path: CameraPath, targets: np.ndarray, gain: float, fps: float, width: int,
           height: int, lag: float = 0.15) -> CameraPath:
    """The head turning towards what the hands hold: ``path`` pulled towards ``targets``.

    ``targets`` (T, 2) is the world point to look at per frame (NaN where nothing is
    handled); the camera centre moves ``gain`` of the way from its own pan to it, through a
    Gaussian lag of ``lag`` seconds, so a held object stays near the view centre while the
    kitchen moves behind it. Frames without a target interpolate between their neighbours.
    """
    if gain <= 0 or not np.isfinite(targets).any():
        return path
    pull = targets - path.centres
    known = np.isfinite(pull[:, 0])
    frames = np.arange(len(pull))
    for axis in range(2):
        pull[:, axis] = np.interp(frames, frames[known], pull[known, axis])
    sigma = max(lag * fps, 0.5)
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(pull, ((radius, radius), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, a], kernel, mode="valid") for a in range(2)], 1)
    centres = path.centres + gain * smooth
    return CameraPath(_matrices(centres, path.zoom, path.roll, width, height), centres,
                      path.zoom, path.roll)


def camera_path(rng: np.random.Generator, num_frames: int, fps: float, width: int,
                height: int, world_centre: tuple[float, float], unit: float,
                speed: float) -> CameraPath:
    """A head-mounted camera: smooth pans of about ``speed`` px/s, zoom, roll and jitter.

    Pans are sums of three sinusoids per axis with random frequencies (0.08-0.5 Hz) whose
    amplitudes give an RMS speed of ``speed`` (x) and 0.7 ``speed`` (y) world px per second.
    """
    t = np.arange(num_frames, dtype=np.float64) / fps
    centre = np.zeros((num_frames, 2))
    for axis, axis_speed in ((0, speed), (1, 0.7 * speed)):
        freqs = rng.uniform(0.08, 0.5, size=3)
        phases = rng.uniform(0, 2 * np.pi, size=3)
        amps = axis_speed * np.sqrt(2.0) / (2 * np.pi * freqs * np.sqrt(3.0))
        centre[:, axis] = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)
    # Head tremor: a little smoothed white noise, independent of fps in pixels.
    jitter = rng.normal(0.0, 1.0 * unit, size=(num_frames, 2))
    if num_frames >= 3:
        jitter = cv2.GaussianBlur(jitter.astype(np.float32), (1, 3), 0).astype(np.float64)
    centre += jitter + np.asarray(world_centre)[None, :]
    zf, zp = rng.uniform(0.1, 0.35), rng.uniform(0, 2 * np.pi)
    zoom = 1.0 + 0.08 * np.sin(2 * np.pi * zf * t + zp)
    rf, rp = rng.uniform(0.1, 0.4), rng.uniform(0, 2 * np.pi)
    roll = np.deg2rad(2.0) * np.sin(2 * np.pi * rf * t + rp)
    return CameraPath(_matrices(centre, zoom, roll, width, height), centre, zoom, roll)


def camera_reach(speed: float) -> float:
    """Largest distance (world px) the camera centre can wander from its mean position."""
    # Three sinusoids at the lowest frequency give the largest amplitude; plus jitter.
    return 3 * speed * np.sqrt(2.0) / (2 * np.pi * 0.08 * np.sqrt(3.0)) + 10.0

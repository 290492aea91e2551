"""The wearer's hands: arms entering from the lower edge, one of them handling the object.

In real egocentric video the hands are in most frames, and the one holding the acting object
says, in a single frame, which object is about to move. Here the acting hand reaches from
below the frame to the object in the padded window before its segment, holds it for the
span of its motion (moving with it, or with its lid, door or drawer) and withdraws after.
The other hand, in a segment where it is shown, rests still on the counter elsewhere in the
view. A hand that moves (reaching, holding a moving object, withdrawing) is in the true
mask; a resting one is not. Skin tone and sleeve colour belong to the participant.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

from shards.synth.objects import SUBPIXEL_BITS, Pose, object_polygons, to_screen

IDLE_SHOWN = 0.5  # share of segments in which the free hand rests in view


@dataclass(frozen=True)
class Skin:
    """One participant's hands: skin and sleeve colours (RGB, light included)."""

    skin: tuple[float, float, float]
    shade: tuple[float, float, float]
    sleeve: tuple[float, float, float]
    texture: np.ndarray  # (64, 64) in [-1, 1]: creases and fabric that move with the arm


def participant_skin(seed: int, participant_index: int, light: np.ndarray) -> Skin:
    """A skin tone from very light to very dark and a sleeve colour, per participant."""
    rng = np.random.default_rng([seed, 0x5C1A, participant_index])
    value = rng.uniform(0.25, 0.95)
    rgb = np.array(colorsys.hsv_to_rgb(rng.uniform(0.02, 0.09), rng.uniform(0.3, 0.65), value))
    sleeve = np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.8),
                                          rng.uniform(0.15, 0.9)))

    def lit(c: np.ndarray) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.clip(c * 255.0 * light, 0, 255))

    small = rng.random((12, 12)).astype(np.float32)
    fine = rng.random((64, 64)).astype(np.float32)
    texture = 0.6 * cv2.resize(small, (64, 64), interpolation=cv2.INTER_CUBIC) + 0.4 * fine
    texture = 2 * (texture - texture.min()) / max(float(np.ptp(texture)), 1e-6) - 1
    return Skin(lit(rgb), lit(rgb * 0.72), lit(sleeve), texture)


@dataclass(frozen=True)
class HandPlan:
    """Which hand acts in a segment and where the free one rests (if shown)."""

    side: int  # +1: the right hand acts (enters lower right); -1: the left
    idle: tuple[float, float] | None  # world point the free hand rests on, or None


def plan_hands(rng: np.random.Generator, count: int, mid: np.ndarray, width: int,
               height: int) -> HandPlan:
    """Draws a segment's hands around the view centre ``mid`` (world) at the segment's middle."""
    side = 1 if rng.random() < 0.7 else -1
    shown = rng.random() < IDLE_SHOWN
    spot = mid + np.array([-side * rng.uniform(0.15, 0.4) * width, rng.uniform(0.15, 0.35) * height])
    return HandPlan(side, (float(spot[0]), float(spot[1])) if count >= 2 and shown else None)


def grasp_point(noun: str, pose: Pose, part: bool) -> np.ndarray:
    """World point a hand holds: the lid/door/drawer when only that moves, else the body,
    a little below its centre (hands come from below)."""
    body, moving = object_polygons(noun, pose)
    polys = moving if part and moving else body
    pts = np.concatenate([p for p, _ in polys])
    centre = pts.mean(0)
    return np.array([centre[0], centre[1] + 0.2 * pose.size])


def shoulder(side: int, width: int, height: int) -> np.ndarray:
    """Screen point below the lower edge where an arm comes from."""
    return np.array([width * (0.5 + side * 0.3), height * 1.25])


def draw_hand(frame: np.ndarray, hand: np.ndarray, side: int, size: float, skin: Skin,
              mask: np.ndarray | None = None) -> None:
    """Draws an arm from below the frame to the screen point ``hand`` (the grip), with a
    palm and fingers of an object-sized hand; fills ``mask`` with 1 under it when given."""
    h, w = frame.shape[:2]
    root = shoulder(side, w, h)
    along = hand - root
    length = float(np.hypot(*along)) or 1.0
    unit = along / length
    normal = np.array([-unit[1], unit[0]])
    wrist = hand - unit * 0.32 * size
    elbow = root + 0.55 * (wrist - root)
    polys = [  # (points, colour): sleeve, forearm, palm, fingers, thumb
        (np.array([root + normal * 0.3 * size, elbow + normal * 0.24 * size,
                   elbow - normal * 0.24 * size, root - normal * 0.3 * size]), skin.sleeve),
        (np.array([elbow + normal * 0.17 * size, wrist + normal * 0.13 * size,
                   wrist - normal * 0.13 * size, elbow - normal * 0.17 * size]), skin.shade),
    ]
    palm = cv2.ellipse2Poly((0, 0), (100, 130), 0, 0, 360, 20).astype(np.float64) / 100.0
    rot = np.stack([normal, unit], 1) * 0.15 * size
    polys.append((palm @ rot.T + hand - unit * 0.12 * size, skin.skin))
    for k in range(4):
        base = hand + normal * (k - 1.5) * 0.075 * size
        tip = base + unit * 0.2 * size
        polys.append((np.array([base - normal * 0.03 * size, tip - normal * 0.025 * size,
                                tip + normal * 0.025 * size, base + normal * 0.03 * size]),
                      skin.skin))
    thumb0 = hand - unit * 0.1 * size - normal * side * 0.13 * size
    thumb1 = thumb0 + (unit - normal * side) * 0.12 * size
    polys.append((np.array([thumb0 - unit * 0.03 * size, thumb1 - unit * 0.02 * size,
                            thumb1 + unit * 0.02 * size, thumb0 + unit * 0.03 * size]), skin.skin))
    drawn = np.zeros((h, w), np.uint8)
    for pts, colour in polys:
        fixed = to_screen(pts, None)
        cv2.fillPoly(frame, [fixed], colour, cv2.LINE_AA, SUBPIXEL_BITS)
        cv2.fillPoly(drawn, [fixed], 1, cv2.LINE_8, SUBPIXEL_BITS)
    if mask is not None:
        mask |= drawn
    _shade(frame, drawn.astype(bool), hand, unit, normal, size, skin.texture)


def _shade(frame: np.ndarray, drawn: np.ndarray, hand: np.ndarray, unit: np.ndarray,
           normal: np.ndarray, size: float, texture: np.ndarray) -> None:
    """Modulates the arm's pixels by ``texture`` in the arm's own coordinates, so that its
    surface moves with it (motion estimates need detail inside it, not only its outline)."""
    ys, xs = np.nonzero(drawn)
    if not len(xs):
        return
    rel = np.stack([xs - hand[0], ys - hand[1]], 1)
    cell = size / 12.0  # texels per object size: finger-scale creases
    u = (rel @ normal / cell) % texture.shape[1]
    v = (rel @ unit / cell) % texture.shape[0]
    gain = 1.0 + 0.18 * texture[v.astype(int), u.astype(int)]
    pix = frame[ys, xs].astype(np.float32) * gain[:, None]
    frame[ys, xs] = np.clip(pix, 0, 255).astype(np.uint8)


def reach(t: int, first: int, start: int, stop: int, last: int) -> float:
    """How far the acting hand is out towards the object at frame ``t``: 0 below the frame,
    1 holding it (from ``start`` to ``stop``), smooth in between."""
    if start <= t <= stop:
        return 1.0
    u = (t - first) / max(1, start - first) if t < start else (last - t) / max(1, last - stop)
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


__all__ = ["HandPlan", "Skin", "draw_hand", "grasp_point", "participant_skin", "plan_hands",
           "reach", "shoulder"]

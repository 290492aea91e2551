"""Verbs as motions of the object relative to the kitchen (never relative to the screen).

Each verb maps segment progress ``u`` in [0, 1] to an offset from the object's base pose:
(dx, dy) in object sizes, a size factor, an in-plane rotation and the part openness. The
ranges of positions, sizes and openness overlap between verbs, so one frame cannot tell
the verb: only the change over time does, once the camera's motion is taken out.

Speeds are those of real hand actions: shakes at 1.5-2.5 Hz and stirs at 0.6-1.2 Hz, up to
a most number of cycles per segment (``max_cycles``); one-way motions (take, put, move,
open, close) done in one 0.7-1.5 s stroke somewhere in the segment, or over at least
``stroke_fill`` of it; and on top of every verb the sway of the hand
holding the object (or the handle of a lid, door or drawer), so that the object keeps
moving before and after its stroke and through the slow phases of its verb.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shards.synth.vocab import PART_VERBS, VERBS


@dataclass(frozen=True)
class MotionParams:
    """Per-segment randomness of a verb's motion."""

    amplitude: float  # object sizes (translation) or degrees (turn)
    cycles: float  # oscillations per segment (shake, stir)
    direction: float  # +1 / -1: stir and turn sense
    drift: float  # sideways drift of take/put, object sizes
    openness: float  # how far open/close go (0..1)
    sway: float = 0.0  # hand sway amplitude, object sizes (whole objects) or openness (parts)
    sway_hz: tuple[float, float] = (1.0, 1.0)  # sway frequency along x and y
    sway_phase: tuple[float, float] = (0.0, 0.0)
    stroke: tuple[float, float] = (0.0, 1.0)  # the span of progress u a one-way motion takes


STROKE_VERBS = frozenset({"take", "put", "move-left", "move-right", "open", "close"})
"""One-way motions: done in one stroke of a hand somewhere inside the segment."""


def _stroke(rng: np.random.Generator, seconds: float, fill: float) -> tuple[float, float]:
    """Where in the segment a one-way motion happens: 0.7-1.5 s, like a real hand's, but
    at least ``fill`` of the segment (annotators cut segments around the action)."""
    length = min(1.0, max(rng.uniform(0.7, 1.5) / max(seconds, 1e-6), fill))
    first = rng.uniform(0.0, 1.0 - length)
    return float(first), float(first + length)


def sample_params(verb: int, rng: np.random.Generator, seconds: float = 2.5,
                  stroke_fill: float = 0.0, max_cycles: float = float("inf")) -> MotionParams:
    """Draws the motion parameters of one segment of ``verb`` lasting ``seconds``.

    ``stroke_fill``: the least share of the segment a one-way stroke takes; ``max_cycles``:
    the most oscillations of a shake or stir per segment (a few frames sampled from a
    segment cannot tell more apart: 7 frames see at most 3 cycles).
    """
    name = VERBS[verb]
    amplitude = {
        "take": rng.uniform(1.5, 2.4), "put": rng.uniform(1.5, 2.4),
        "move-left": rng.uniform(1.8, 3.0), "move-right": rng.uniform(1.8, 3.0),
        "shake": rng.uniform(0.15, 0.3), "stir": rng.uniform(0.3, 0.45),
        "turn": rng.uniform(180.0, 300.0),
    }.get(name, 0.0)
    rate = rng.uniform(1.5, 2.5) if name == "shake" else rng.uniform(0.6, 1.2)
    return MotionParams(
        amplitude=float(amplitude),
        cycles=float(max(1.0, min(rate * seconds, max_cycles))),
        direction=float(rng.choice([-1.0, 1.0])),
        drift=float(rng.uniform(-0.3, 0.3)),
        openness=float(rng.uniform(0.75, 1.0)),
        sway=float(rng.uniform(0.06, 0.1)),
        sway_hz=(float(rng.uniform(1.2, 2.5)), float(rng.uniform(1.2, 2.5))),
        sway_phase=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
        stroke=_stroke(rng, seconds, stroke_fill) if name in STROKE_VERBS else (0.0, 1.0),
    )


def sway(verb: int, seconds: float, p: MotionParams, held: bool = True) -> tuple[float, float, float, float]:
    """(dx, dy, rotation deg, openness) the hands add ``seconds`` into the segment.

    Zero at the segment's start, so the object leaves its rest pose without a jump; never
    negative on a part's openness, so a closed lid does not sink into its body. For
    open/close, the part sways, and the body too when it is ``held`` (a jar, not a fridge).
    """
    angles = [2 * np.pi * hz * seconds + ph for hz, ph in zip(p.sway_hz, p.sway_phase)]
    wave = [np.sin(a) - np.sin(ph) for a, ph in zip(angles, p.sway_phase)]
    if VERBS[verb] in PART_VERBS:
        opening = p.sway * 0.5 * sum(1.0 - np.cos(a - ph) for a, ph in zip(angles, p.sway_phase))
        if not held:
            return 0.0, 0.0, 0.0, opening
        return p.sway * wave[0], p.sway * wave[1], 25.0 * p.sway * wave[0], opening
    return p.sway * wave[0], p.sway * wave[1], 25.0 * p.sway * wave[0], 0.0


def offset(verb: int, u: float, p: MotionParams) -> tuple[float, float, float, float, float]:
    """(dx, dy, size factor, rotation deg, openness) of ``verb`` at progress ``u``."""
    name = VERBS[verb]
    u = float(np.clip(u, 0.0, 1.0))
    if name in STROKE_VERBS:
        first, last = p.stroke
        u = float(np.clip((u - first) / max(last - first, 1e-6), 0.0, 1.0))
    if name == "take":  # up and out, coming towards the camera
        return p.drift * u, -p.amplitude * u, 1.0 + 0.3 * u, 0.0, 0.0
    if name == "put":  # in and down, moving away from the camera
        v = 1.0 - u
        return p.drift * v, -p.amplitude * v, 1.0 + 0.3 * v, 0.0, 0.0
    if name in PART_VERBS:
        return 0.0, 0.0, 1.0, 0.0, p.openness * (u if name == "open" else 1.0 - u)
    if name == "shake":
        phase = 2 * np.pi * p.cycles * u
        return p.amplitude * np.sin(phase), 0.15 * np.sin(2 * phase), 1.0, 8.0 * np.sin(phase), 0.0
    if name == "stir":
        phase = 2 * np.pi * p.cycles * u * p.direction
        r = p.amplitude
        return r * (np.cos(phase) - 1.0), 0.6 * r * np.sin(phase), 1.0, 0.0, 0.0
    if name == "move-left":
        return -p.amplitude * u, 0.0, 1.0, 0.0, 0.0
    if name == "move-right":
        return p.amplitude * u, 0.0, 1.0, 0.0, 0.0
    if name == "turn":
        return 0.0, 0.0, 1.0, p.direction * p.amplitude * u, 0.0
    raise ValueError(f"no motion defined for verb {name!r}")


def path_centre(verb: int, p: MotionParams, samples: int = 9) -> tuple[float, float]:
    """Mean (dx, dy) over the segment: where to put the base so the path is centred."""
    pts = [offset(verb, u, p)[:2] for u in np.linspace(0, 1, samples)]
    return float(np.mean([a for a, _ in pts])), float(np.mean([b for _, b in pts]))

"""Verbs as motions of the object relative to the kitchen (never relative to the screen).

Each verb maps segment progress ``u`` in [0, 1] to an offset from the object's base pose:
(dx, dy) in object sizes, a size factor, an in-plane rotation and the part openness. The
ranges of positions, sizes and openness overlap between verbs, so one frame cannot tell
the verb: only the change over time does, once the camera's motion is taken out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shards.synth.vocab import VERBS


@dataclass(frozen=True)
class MotionParams:
    """Per-segment randomness of a verb's motion."""

    amplitude: float  # object sizes (translation) or degrees (turn)
    cycles: float  # oscillations per segment (shake, stir)
    direction: float  # +1 / -1: stir and turn sense
    drift: float  # sideways drift of take/put, object sizes
    openness: float  # how far open/close go (0..1)


def sample_params(verb: int, rng: np.random.Generator) -> MotionParams:
    """Draws the motion parameters of one segment of ``verb``."""
    name = VERBS[verb]
    amplitude = {
        "take": rng.uniform(1.2, 2.0), "put": rng.uniform(1.2, 2.0),
        "move-left": rng.uniform(1.2, 2.2), "move-right": rng.uniform(1.2, 2.2),
        "shake": rng.uniform(0.25, 0.4), "stir": rng.uniform(0.3, 0.45),
        "turn": rng.uniform(120.0, 220.0),
    }.get(name, 0.0)
    return MotionParams(
        amplitude=float(amplitude),
        cycles=float(rng.uniform(2.0, 3.5) if name == "shake" else rng.uniform(1.2, 2.2)),
        direction=float(rng.choice([-1.0, 1.0])),
        drift=float(rng.uniform(-0.3, 0.3)),
        openness=float(rng.uniform(0.75, 1.0)),
    )


def offset(verb: int, u: float, p: MotionParams) -> tuple[float, float, float, float, float]:
    """(dx, dy, size factor, rotation deg, openness) of ``verb`` at progress ``u``."""
    name = VERBS[verb]
    u = float(np.clip(u, 0.0, 1.0))
    if name == "take":  # up and out, coming towards the camera
        return p.drift * u, -p.amplitude * u, 1.0 + 0.3 * u, 0.0, 0.0
    if name == "put":  # in and down, moving away from the camera
        v = 1.0 - u
        return p.drift * v, -p.amplitude * v, 1.0 + 0.3 * v, 0.0, 0.0
    if name == "open":
        return 0.0, 0.0, 1.0, 0.0, p.openness * u
    if name == "close":
        return 0.0, 0.0, 1.0, 0.0, p.openness * (1.0 - u)
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

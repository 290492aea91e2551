"""Noun shapes: side views built from polygons, with an optional movable part (lid, door...).

Shapes are in object units (about 1 = object height), y pointing down. Several nouns share a
colour family (knife/spoon/kettle are steel, plate/fridge white, bowl/tomato red), so the
noun must be read from the shape, not from colour alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point bits: smooth motion at sub-pixel speeds


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def _ellipse(cx: float, cy: float, rx: float, ry: float, a0: float = 0.0, a1: float = 360.0,
             n: int = 24) -> np.ndarray:
    ang = np.deg2rad(np.linspace(a0, a1, n, endpoint=a1 - a0 < 360))
    return np.stack([cx + rx * np.cos(ang), cy + ry * np.sin(ang)], 1)


def _band(cx: float, cy: float, r_out: float, r_in: float, a0: float, a1: float) -> np.ndarray:
    """An arc-shaped band (handles): outer arc forward, inner arc back."""
    outer = _ellipse(cx, cy, r_out, r_out, a0, a1, 12)
    inner = _ellipse(cx, cy, r_in, r_in, a0, a1, 12)[::-1]
    return np.concatenate([outer, inner])


@dataclass(frozen=True)
class Shape:
    """One noun's geometry: polygons with a colour role ("main", "dark", "light", "accent")."""

    body: list[tuple[np.ndarray, str]]
    part: list[tuple[np.ndarray, str]] = field(default_factory=list)
    part_mode: str = ""  # "rotate" (about hinge, degrees), "slide" (by vector), "swing" (door)
    hinge: tuple[float, float] = (0.0, 0.0)
    part_amount: float | tuple[float, float] = 0.0  # angle, or slide vector when fully open


BASE_COLOURS: dict[str, tuple[int, int, int]] = {
    "pan": (60, 62, 72), "bottle": (40, 150, 70), "jar": (205, 165, 80),
    "drawer": (150, 100, 60), "kettle": (190, 195, 205), "fridge": (232, 232, 236),
    "box": (185, 135, 75), "cup": (45, 95, 205), "knife": (175, 180, 190),
    "plate": (236, 236, 226), "bowl": (205, 60, 50), "spoon": (165, 165, 175),
    "tomato": (220, 45, 30), "sponge": (240, 210, 45),
}


def _shapes() -> dict[str, Shape]:
    s: dict[str, Shape] = {}
    s["pan"] = Shape(
        body=[(np.array([[-0.6, -0.1], [0.6, -0.1], [0.5, 0.25], [-0.5, 0.25]]), "main"),
              (_rect(0.58, -0.06, 1.15, 0.05), "dark")],
        part=[(_ellipse(0.0, -0.1, 0.62, 0.22, 180, 360, 14), "light"),
              (_rect(-0.06, -0.38, 0.06, -0.3), "dark")],
        part_mode="rotate", hinge=(-0.6, -0.1), part_amount=-110.0)
    s["bottle"] = Shape(
        body=[(_rect(-0.2, -0.25, 0.2, 0.6), "main"),
              (np.array([[-0.2, -0.25], [0.2, -0.25], [0.08, -0.45], [-0.08, -0.45]]), "main"),
              (_rect(-0.2, 0.05, 0.2, 0.3), "light")],
        part=[(_rect(-0.1, -0.6, 0.1, -0.45), "accent")],
        part_mode="slide", part_amount=(0.15, -0.45))
    s["jar"] = Shape(
        body=[(_rect(-0.35, -0.3, 0.35, 0.42), "main"), (_rect(-0.25, -0.1, 0.25, 0.2), "light")],
        part=[(_rect(-0.39, -0.44, 0.39, -0.3), "accent")],
        part_mode="rotate", hinge=(-0.39, -0.3), part_amount=-100.0)
    s["drawer"] = Shape(
        body=[(_rect(-0.6, -0.45, 0.6, 0.45), "main"), (_rect(-0.5, -0.2, 0.5, 0.25), "dark")],
        part=[(_rect(-0.52, -0.18, 0.52, 0.23), "light"), (_rect(-0.15, -0.02, 0.15, 0.06), "dark")],
        part_mode="slide", part_amount=(0.75, 0.12))
    s["kettle"] = Shape(
        body=[(_ellipse(0.0, 0.1, 0.42, 0.36), "main"),
              (np.array([[0.3, 0.0], [0.72, -0.28], [0.76, -0.22], [0.38, 0.18]]), "main"),
              (_band(-0.38, 0.05, 0.3, 0.2, 110, 250), "dark")],
        part=[(_ellipse(0.0, -0.22, 0.22, 0.12, 180, 360, 10), "accent")],
        part_mode="rotate", hinge=(-0.22, -0.22), part_amount=-120.0)
    s["fridge"] = Shape(
        body=[(_rect(-0.38, -0.75, 0.38, 0.75), "dark")],
        part=[(_rect(-0.36, -0.73, 0.36, 0.73), "main"), (_rect(0.24, -0.35, 0.3, 0.1), "accent")],
        part_mode="swing", hinge=(-0.36, 0.0), part_amount=0.85)
    s["box"] = Shape(
        body=[(_rect(-0.45, -0.3, 0.45, 0.35), "main"), (_rect(-0.45, 0.0, 0.45, 0.06), "dark")],
        part=[(_rect(-0.45, -0.38, 0.45, -0.3), "light")],
        part_mode="rotate", hinge=(0.45, -0.3), part_amount=110.0)
    s["cup"] = Shape(
        body=[(np.array([[-0.3, -0.35], [0.3, -0.35], [0.22, 0.35], [-0.22, 0.35]]), "main"),
              (_band(0.28, 0.0, 0.22, 0.12, -90, 90), "main"),
              (_rect(-0.3, -0.35, 0.3, -0.28), "light")])
    s["knife"] = Shape(
        body=[(np.array([[-0.05, -0.1], [0.7, -0.1], [0.9, 0.02], [-0.05, 0.05]]), "light"),
              (_rect(-0.5, -0.08, -0.05, 0.06), "dark")])
    s["plate"] = Shape(
        body=[(_ellipse(0.0, 0.0, 0.62, 0.16), "main"), (_ellipse(0.0, -0.01, 0.4, 0.08), "light")])
    s["bowl"] = Shape(
        body=[(_ellipse(0.0, -0.1, 0.5, 0.45, 0, 180, 16), "main"),
              (_ellipse(0.0, -0.1, 0.5, 0.1), "dark")])
    s["spoon"] = Shape(
        body=[(_ellipse(0.5, 0.0, 0.22, 0.13), "main"), (_rect(-0.6, -0.035, 0.3, 0.035), "main")])
    s["tomato"] = Shape(
        body=[(_ellipse(0.0, 0.05, 0.32, 0.29), "main"),
              (np.array([[0.0, -0.3], [0.12, -0.2], [0.0, -0.22], [-0.12, -0.2]]), "accent")])
    s["sponge"] = Shape(
        body=[(_rect(-0.42, -0.2, 0.42, 0.2), "main"), (_rect(-0.42, -0.2, 0.42, -0.07), "accent")])
    return s


SHAPES: dict[str, Shape] = _shapes()
ACCENTS: dict[str, tuple[int, int, int]] = {"tomato": (40, 140, 40), "sponge": (40, 120, 60)}


def colour_roles(noun: str, rng: np.random.Generator, light: np.ndarray) -> dict[str, tuple]:
    """Colours of one instance of ``noun``: base colour jittered, lit by the kitchen light."""
    base = np.array(BASE_COLOURS[noun], np.float64) * rng.uniform(0.88, 1.12, size=3)
    accent = np.array(ACCENTS.get(noun, tuple(np.array(BASE_COLOURS[noun]) * 0.45 + 20)))
    roles = {"main": base, "dark": base * 0.55, "light": np.minimum(base * 1.2 + 25, 255),
             "accent": accent}
    return {k: tuple(float(c) for c in np.clip(v * light, 0, 255)) for k, v in roles.items()}


def _part_transform(shape: Shape, q: float, pts: np.ndarray) -> np.ndarray:
    """Moves part points for openness ``q`` (0 closed, 1 fully open)."""
    if not shape.part_mode or q == 0.0:
        return pts
    hx, hy = shape.hinge
    if shape.part_mode == "rotate":
        a = np.deg2rad(float(shape.part_amount) * q)
        c, s = np.cos(a), np.sin(a)
        d = pts - (hx, hy)
        return np.stack([hx + c * d[:, 0] - s * d[:, 1], hy + s * d[:, 0] + c * d[:, 1]], 1)
    if shape.part_mode == "slide":
        return pts + np.asarray(shape.part_amount) * q
    if shape.part_mode == "swing":  # a door turning about a vertical axis, seen from the front
        out = pts.copy()
        out[:, 0] = hx + (pts[:, 0] - hx) * (1.0 - float(shape.part_amount) * q)
        return out
    raise ValueError(f"unknown part mode {shape.part_mode!r}")


@dataclass(frozen=True)
class Pose:
    """Where an object is: world position, size in px, in-plane rotation (deg), openness."""

    x: float
    y: float
    size: float
    angle: float = 0.0
    openness: float = 0.0


def object_polygons(noun: str, pose: Pose) -> tuple[list, list]:
    """World-space polygons of ``noun`` at ``pose``: (body, part), each [(points, role)]."""
    shape = SHAPES[noun]
    a = np.deg2rad(pose.angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * pose.size

    def place(pts: np.ndarray) -> np.ndarray:
        return pts @ rot.T + (pose.x, pose.y)

    body = [(place(p), role) for p, role in shape.body]
    part = [(place(_part_transform(shape, pose.openness, p)), role) for p, role in shape.part]
    return body, part


def to_screen(pts: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """Applies a 2x3 affine (None = identity) and converts to cv2 fixed-point int32."""
    if matrix is not None:
        pts = pts @ matrix[:, :2].T + matrix[:, 2]
    return np.round(pts * (1 << SUBPIXEL_BITS)).astype(np.int32)


def draw_polygons(image: np.ndarray, polys: list, colours: dict[str, tuple],
                  matrix: np.ndarray | None = None, mask: np.ndarray | None = None) -> None:
    """Fills ``polys`` into ``image`` (and with 1 into ``mask`` when given)."""
    for pts, role in polys:
        fixed = to_screen(pts, matrix)
        cv2.fillPoly(image, [fixed], colours[role], cv2.LINE_AA, SUBPIXEL_BITS)
        if mask is not None:
            cv2.fillPoly(mask, [fixed], 1, cv2.LINE_8, SUBPIXEL_BITS)


TEXTURE_EXTENT = 1.5  # a surface texture covers [-E, E]^2 object units (parts slide out to ~1.4)
TEXTURE_SIZE = 64


def _noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Smooth noise in about [-1, 1] over the texture, with ``cells`` blobs per side."""
    small = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(small, (TEXTURE_SIZE, TEXTURE_SIZE), interpolation=cv2.INTER_CUBIC)


def surface_texture(rng: np.random.Generator) -> np.ndarray:
    """A brightness gain (TEXTURE_SIZE^2 float32, ~0.6-1.4) painted onto one object instance.

    Real kitchen objects are shaded by the light, worn, labelled and reflective; a flat
    colour would leave optical flow nothing to follow inside the object (only its outline
    registers). Shading, blotches, grain and a few marks give the surface its own detail,
    which moves with the object (and its part) in every frame.
    """
    n = TEXTURE_SIZE
    coords = (np.arange(n, dtype=np.float32) + 0.5) * (2 * TEXTURE_EXTENT / n) - TEXTURE_EXTENT
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    light = rng.uniform(-0.6, 0.6)  # the light comes from above, a little to one side
    shade = -(np.sin(light) * xx + np.cos(light) * yy) * rng.uniform(0.15, 0.3)
    blotches = _noise(rng, int(rng.integers(4, 8))) * rng.uniform(0.1, 0.18)
    grain = _noise(rng, n // 3) * rng.uniform(0.05, 0.1)
    gain = 1.0 + shade + blotches + grain
    for _ in range(int(rng.integers(2, 6))):  # labels, dents, highlights
        cx, cy = rng.uniform(-0.6, 0.6, 2)
        rx, ry = rng.uniform(0.04, 0.2, 2)
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1.0
        gain[inside] *= rng.choice([0.65, 1.35])
    return np.clip(gain, 0.5, 1.5).astype(np.float32)


def _affine3(matrix: np.ndarray | None) -> np.ndarray:
    out = np.eye(3)
    if matrix is not None:
        out[:2] = matrix
    return out


def _part_affine(shape: Shape, q: float) -> np.ndarray:
    """The 3x3 affine that :func:`_part_transform` applies at openness ``q``."""
    ref = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    moved = _part_transform(shape, q, ref)
    out = np.eye(3)
    out[:2, 0], out[:2, 1], out[:2, 2] = moved[1] - moved[0], moved[2] - moved[0], moved[0]
    return out


def _shade(patch: np.ndarray, polys: list, texture: np.ndarray, to_patch: np.ndarray) -> None:
    """Multiplies the pixels of ``polys`` (patch coordinates) by ``texture`` placed by ``to_patch``."""
    height, width = patch.shape[:2]
    cover = np.zeros((height, width), np.uint8)
    cv2.fillPoly(cover, [to_screen(p, to_patch[:2]) for p, _ in polys], 255, cv2.LINE_AA,
                 SUBPIXEL_BITS)
    step = 2 * TEXTURE_EXTENT / TEXTURE_SIZE
    texel = np.array([[step, 0, -TEXTURE_EXTENT], [0, step, -TEXTURE_EXTENT], [0, 0, 1]])
    gain = cv2.warpAffine(texture, (to_patch @ texel)[:2], (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)
    weight = cover.astype(np.float32) / 255.0
    scaled = patch.astype(np.float32) * (1.0 + weight * (gain - 1.0))[..., None]
    patch[:] = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def draw_object(image: np.ndarray, noun: str, pose: Pose, colours: dict[str, tuple],
                texture: np.ndarray | None = None, matrix: np.ndarray | None = None,
                mask: np.ndarray | None = None, mask_body: bool = True) -> None:
    """Draws one object instance (body, then part) with its surface texture.

    Args:
        image: (H, W, 3) uint8 frame or world canvas, drawn into in place.
        noun: Which shape.
        pose: Where the object is in world coordinates.
        colours: :func:`colour_roles` of the instance.
        texture: :func:`surface_texture` of the instance (None: flat colours).
        matrix: World-to-image 2x3 affine (None: draw in world coordinates).
        mask: (H, W) uint8, gets 1 under the part, and under the body too if ``mask_body``.
        mask_body: Whether the body moves (False for open/close, where only the part does).
    """
    body, part = object_polygons(noun, pose)
    draw_polygons(image, body, colours, matrix, mask if mask_body else None)
    draw_polygons(image, part, colours, matrix, mask)
    if texture is None:
        return
    screen = [p @ matrix[:, :2].T + matrix[:, 2] if matrix is not None else p for p, _ in body + part]
    low = np.floor(np.min([p.min(0) for p in screen], 0)).astype(int) - 2
    high = np.ceil(np.max([p.max(0) for p in screen], 0)).astype(int) + 3
    x0, y0 = max(low[0], 0), max(low[1], 0)
    x1, y1 = min(high[0], image.shape[1]), min(high[1], image.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    a = np.deg2rad(pose.angle)
    placed = np.array([[np.cos(a) * pose.size, -np.sin(a) * pose.size, pose.x],
                       [np.sin(a) * pose.size, np.cos(a) * pose.size, pose.y], [0, 0, 1]])
    shift = np.array([[1.0, 0, -x0], [0, 1.0, -y0], [0, 0, 1]])
    to_patch = shift @ _affine3(matrix) @ placed
    patch = image[y0:y1, x0:x1].copy()
    _shade(patch, [(p, r) for p, r in SHAPES[noun].body], texture, to_patch)
    if part:
        # The part is redrawn over the body: the body's shading must not leak onto it.
        shape = SHAPES[noun]
        part_polys = [(_part_transform(shape, pose.openness, p), r) for p, r in shape.part]
        draw_polygons(patch, part_polys, colours, to_patch[:2])
        _shade(patch, [(p, r) for p, r in shape.part], texture,
               to_patch @ _part_affine(shape, pose.openness))
    image[y0:y1, x0:x1] = patch

"""Small self-made videos with a known answer: a panning textured scene and a moving square.

The benchmark and the tests need real encoded video (H.264 with B-frames, so that seeking
is exercised) whose moving pixels are known exactly. The scene is a textured background
seen through a camera that pans; a textured square moves on its own; static squares of
the same kind stay put, so that "salient" and "moving" differ. The true mask marks the
moving square only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass
class ToyVideo:
    """What was written: the exact RGB frames before encoding and the moving-square masks."""

    path: Path
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB, as rendered (before lossy encoding)
    masks: np.ndarray  # (T, H, W) uint8 in {0, 1}: pixels of the independently moving square
    fps: float


def _texture(rng: np.random.Generator, height: int, width: int, blur: float) -> np.ndarray:
    noise = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    smooth = cv2.GaussianBlur(noise, (0, 0), blur)
    # Stretch the contrast back after blurring, so that optical flow has texture to follow.
    smooth = cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX)
    return smooth.astype(np.uint8)


def render_toy_frames(
    num_frames: int,
    width: int,
    height: int,
    seed: int = 0,
    pan: tuple[float, float] = (1.5, 0.5),
    speed: tuple[float, float] = (-2.5, 1.0),
    square: int | None = None,
    distractors: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Renders the toy scene.

    Args:
        num_frames: Number of frames T.
        width: Frame width in pixels.
        height: Frame height in pixels.
        seed: Seed of every random choice (textures, positions).
        pan: Camera motion per frame (x, y) in pixels; the background moves by minus this.
        speed: On-screen motion per frame (x, y) of the moving square, on top of the pan.
        square: Side of the squares in pixels (default: a quarter of the short side).
        distractors: Number of static squares of the same look that do not move in the world.

    Returns:
        ``(frames, masks)``: uint8 RGB frames (T, H, W, 3) and uint8 masks (T, H, W) of the
        moving square.
    """
    rng = np.random.default_rng(seed)
    side = square or max(8, min(width, height) // 4)
    margin_x = int(abs(pan[0]) * num_frames) + 2
    margin_y = int(abs(pan[1]) * num_frames) + 2
    world_h, world_w = height + 2 * margin_y, width + 2 * margin_x
    world = _texture(rng, world_h, world_w, blur=1.5)
    for _ in range(distractors):
        patch = _texture(rng, side, side, blur=1.0)
        y = int(rng.integers(0, world_h - side))
        x = int(rng.integers(0, world_w - side))
        world[y : y + side, x : x + side] = patch
    object_patch = _texture(rng, side, side, blur=1.0)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    masks = np.zeros((num_frames, height, width), np.uint8)
    start = np.array([width * 0.6 - side / 2, height * 0.4 - side / 2])
    for t in range(num_frames):
        # Sub-pixel camera positions are rendered with an affine warp of the world.
        cam_x = margin_x + pan[0] * t
        cam_y = margin_y + pan[1] * t
        shift = np.float32([[1, 0, -cam_x], [0, 1, -cam_y]])
        frame = cv2.warpAffine(world, shift, (width, height), flags=cv2.INTER_LINEAR)
        pos = start + np.array(speed) * t
        # Bounce inside the frame so that the square stays visible on long videos.
        span = np.array([width - side, height - side], float)
        pos = _bounce(pos, span)
        x0, y0 = int(round(pos[0])), int(round(pos[1]))
        frame[y0 : y0 + side, x0 : x0 + side] = object_patch
        masks[t, y0 : y0 + side, x0 : x0 + side] = 1
        frames[t] = frame
    return frames, masks


def _bounce(pos: np.ndarray, span: np.ndarray) -> np.ndarray:
    period = 2 * span
    folded = np.mod(pos, period)
    return np.where(folded > span, period - folded, folded)


# Encoder options per codec: B-frames where the codec has them, so that decoding order and
# presentation order differ as in camera files.
_CODEC_OPTIONS = {
    "libx264": {"crf": "18", "bf": "2", "preset": "veryfast"},
    "libx265": {"crf": "20", "bframes": "2", "preset": "ultrafast", "log-level": "error"},
    "mpeg4": {"qscale": "3", "bf": "2"},
}


def write_video(
    path: str | Path, frames, fps: float = 30.0, gop: int = 12, codec: str = "libx264",
    size: tuple[int, int] | None = None,
) -> Path:
    """Encodes RGB frames in an MP4 file using PyAV (H.264 by default, with B-frames).

    Args:
        path: Output file (.mp4 / .MP4).
        frames: uint8 RGB frames (T, H, W, 3), or an iterable of (H, W, 3) frames (then
            ``size`` gives (H, W)); H and W must be even.
        fps: Frame rate written in the container (59.94 and kin as their exact fractions).
        gop: Key-frame interval, small so that seeking is exercised.
        codec: "libx264", "libx265" (HEVC) or "mpeg4" (MPEG-4 Part 2).

    Returns:
        The path written.
    """
    import av

    from shards.synth.video import exact_rate

    if codec not in _CODEC_OPTIONS:
        raise ValueError(f"codec must be one of {', '.join(_CODEC_OPTIONS)}, got {codec!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size if size is not None else frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=exact_rate(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        options = dict(_CODEC_OPTIONS[codec])
        if codec == "libx265":
            options["x265-params"] = f"keyint={gop}:log-level=error"
        stream.codec_context.options = options
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def make_toy_video(
    path: str | Path, num_frames: int = 48, width: int = 128, height: int = 96, seed: int = 0,
    fps: float = 30.0, **scene: object,
) -> ToyVideo:
    """Renders the toy scene and writes it as H.264; returns the frames and true masks."""
    frames, masks = render_toy_frames(num_frames, width, height, seed=seed, **scene)
    return ToyVideo(write_video(path, frames, fps=fps), frames, masks, fps)


# A camera file as EPIC-KITCHENS' head-mounted cameras write them: 1920x1080 H.264 (High
# profile, CABAC) with a closed GOP of half a second and two B-frames between references.
EPIC_LIKE_SIZE = (1920, 1080)
EPIC_LIKE_GOP_SECONDS = 0.5


def epic_like_frames(num_frames: int, width: int = 1920, height: int = 1080, fps: float = 59.94, seed: int = 0):
    """Yields RGB frames of a textured scene seen by a wandering camera, with one textured
    square moving on its own: camera and object speeds are per second, so the motion between
    frames is what a head-mounted camera sees at ``fps``. Frames are rendered one at a time."""
    rng = np.random.default_rng(seed)
    unit = width / 1920
    sway = np.array([160.0, 90.0]) * unit  # camera wander (pixels) around the world's centre
    margin = (sway + 8).astype(int)
    world = _texture(rng, height + 2 * margin[1], width + 2 * margin[0], blur=3.0 * unit)
    side = height // 5
    object_patch = _texture(rng, side, side, blur=2.0 * unit)
    speed = np.array([-420.0, 240.0]) * unit / fps  # the object's on-screen speed, per frame
    span = np.array([width - side, height - side], float)
    start = np.array([width * 0.6 - side / 2, height * 0.4 - side / 2])
    for t in range(num_frames):
        phase = 2 * np.pi * t / fps
        cam = margin + sway * np.array([np.sin(phase / 3.1), np.sin(phase / 2.3 + 1.0)])
        shift = np.float32([[1, 0, -cam[0]], [0, 1, -cam[1]]])
        frame = cv2.warpAffine(world, shift, (width, height), flags=cv2.INTER_LINEAR)
        x0, y0 = (int(round(v)) for v in _bounce(start + speed * t, span))
        frame[y0 : y0 + side, x0 : x0 + side] = object_patch
        yield frame


def make_epic_like_video(
    path: str | Path, seconds: float, fps: float = 59.94, size: tuple[int, int] = EPIC_LIKE_SIZE, seed: int = 0,
    gop_seconds: float = EPIC_LIKE_GOP_SECONDS,
) -> Path:
    """Writes an EPIC-like camera file (H.264, ``size`` = (W, H), closed GOP with B-frames)."""
    import av

    from shards.synth.video import exact_rate

    width, height = size
    rate = exact_rate(fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = max(1, int(round(float(rate) * gop_seconds)))
        # superfast keeps CABAC and B-frames (ultrafast drops both, and decodes faster
        # than any camera file); closed GOPs, as cameras write them.
        stream.codec_context.options = {"crf": "20", "bf": "2", "preset": "superfast", "profile": "high",
                                        "x264-params": "open-gop=0:scenecut=0"}
        for frame in epic_like_frames(int(round(seconds * float(rate))), width, height, float(rate), seed):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path

"""Motion maps and warp flow: motion that the head-mounted camera does not explain.

The idea follows Improved Dense Trajectories: the camera's motion between two frames is a
homography, fitted robustly (RANSAC) to the dense optical flow; what remains once it is
removed (the residual or "warp") flow is the motion of things in the world. Frame t is
compared with its neighbours d/30 s before and after it for each distance d of ``spans``,
counted in the raw file's frames at its real rate (:meth:`MotionConfig.offsets`); all those flows start from frame t, so they agree on the same pixel grid. A point is
*moving* when, at some distance, both neighbours (``min_votes`` = 2) see a residual above a
threshold (a fraction of the image size).

Choices, measured on synthetic kitchens against their true masks (objects a sixth of the
frame high, moving a few pixels per frame, a camera panning as much) and on the toy videos:

* Two distances, adjacent frames and ~1/10 s (``spans`` = 1, 3 at 30 fps): a slow hand
  moves less than the flow's noise between adjacent frames, but a fast one moves too far
  over 1/10 s for the flow to follow fine texture; each distance finds what the other
  misses (IDT's trajectories span ~10 frames for the same reason).
* Flow runs at a short side of ``flow_side`` (160) pixels, with DIS down to full
  resolution of that copy: coarser flow blurs small objects into the background.
* DIS searches a patch every ``flow_stride`` (6) pixels, not every 4 as its presets do: the
  patch search is most of the maps' cost, and 2.25x fewer patches with a ``halo`` of 0.04
  instead of 0.03 give maps as close to the true masks (closer, on the synthetic kitchens) in
  ~60% of the time (README "Shards"). ``flow_stride`` 4 with ``halo`` 0.03 are the earlier maps.
* Both neighbours must agree: a point that one flow drags along with a passing object
  (occlusion, smoothing) rarely moves in the other direction too.
* Dense flow spreads an object's motion over about half a DIS patch around it, and leaves
  isolated specks on weak texture: an opening (``speck``) drops the specks and an erosion
  (``halo``) takes the spread back. A closing (``fill``) is available for objects whose
  flat interiors flow cannot follow; on textured objects it only widens the halo.

The stored map is the fraction of moving points in each cell of a grid at 1/MAP_STRIDE of
the frame size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, ContextManager, Literal, Sequence

import cv2
import numpy as np

from shards.schema import FLOW_PAIRS, MAP_STRIDE, quantise_flow
from shards.stopwatch import no_stopwatch


@dataclass
class MotionConfig:
    """How motion maps and warp flow are computed (saved with the build parameters)."""

    method: Literal["dis", "farneback"] = "dis"
    flow_side: int = 160  # flow runs on frames scaled to this short side (never enlarged)
    flow_scale: float = 0.0  # > 0: flow runs on frames scaled by this factor instead
    step: int = 0  # frame spacing unit; 0: 1/30 s in the file's frames at its real rate
    spans: tuple[int, ...] = (1, 3)  # frame t is compared with its neighbours d steps away
    min_votes: int = 2  # of the two comparisons at one distance d, how many must exceed
    threshold: float = 0.006  # residual magnitude, as a fraction of the flow's short side
    ransac_px: float = 1.0  # RANSAC inlier distance in flow pixels
    grid: int = 6  # spacing (flow pixels) of the points the camera homography is fitted to
    fill: float = 0.0  # closing of the moving points, kernel as a fraction of the flow's short side
    speck: float = 0.05  # opening (drops isolated specks), same unit
    halo: float = 0.04  # erosion (takes back the flow's spread around objects), same unit
    flow_stride: int = 6  # DIS patch stride (flow pixels); DIS's presets use 4, ~2.4x slower

    def __post_init__(self) -> None:
        if not 0 <= self.flow_scale <= 1:
            raise ValueError(f"flow_scale must be in (0, 1] (or 0: use flow_side), got {self.flow_scale}")
        if self.flow_side < 8:
            raise ValueError(f"flow_side must be >= 8 pixels, got {self.flow_side}")
        for name in ("threshold", "fill", "speck", "halo"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be a fraction in [0, 1), got {getattr(self, name)}")
        self.spans = tuple(int(d) for d in self.spans)
        if not self.spans or min(self.spans) < 1 or len(set(self.spans)) != len(self.spans):
            raise ValueError(f"spans must be distinct distances >= 1, got {list(self.spans)}")
        if not 1 <= self.flow_stride <= DIS_PATCH:
            raise ValueError(f"flow_stride must be 1..{DIS_PATCH} pixels (the DIS patch size), got {self.flow_stride}")
        if self.min_votes not in (1, 2):
            raise ValueError(f"min_votes must be 1 or 2 (of the two neighbours at one distance), got {self.min_votes}")

    def frame_step(self, fps: float) -> int:
        """Frames of a file at ``fps`` between the frames of one warp-flow pair (1/30 s)."""
        return self.step if self.step > 0 else max(1, int(round(fps / 30.0)))

    def offsets(self, fps: float) -> list[int]:
        """Frames of a file at ``fps`` from frame t to its neighbours at each distance of spans.

        With ``step`` 0 each distance d is d/30 s rounded to the file's frames on its own, so
        that the ~1/10 s comparison stays ~1/10 s at 47.95 or 50 fps (5 frames, not 6).
        """
        if not fps > 0:
            raise ValueError(f"frame rate must be positive, got {fps}")
        if self.step > 0:
            return [d * self.step for d in self.spans]
        return [max(1, int(round(d * fps / 30.0))) for d in self.spans]

    def scale_for(self, height: int, width: int) -> float:
        """The factor frames of this size are scaled by before optical flow."""
        if self.flow_scale > 0:
            return self.flow_scale
        return min(1.0, self.flow_side / max(1, min(height, width)))


DIS_PATCH = 8  # the ultrafast preset's patch size (pixels)

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def make_flow_fn(method: str = "dis", stride: int = 6) -> FlowFn:
    """Returns ``flow(gray_a, gray_b) -> (h, w, 2) float32`` dense flow from a to b (DIS
    patches every ``stride`` pixels)."""
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        # The presets stop at 1/4 or 1/2 resolution, where small hands and objects blur into
        # the background. Full resolution with the ultrafast preset's few iterations finds
        # them; the fast preset at full resolution costs about twice as much, finds no more.
        dis.setFinestScale(0)
        # The patch search dominates the cost, and a pixel's flow averages the patches over
        # it: stride 6 searches 2.25x fewer patches than the presets' 4, in ~40% of the time,
        # and the maps lose nothing against the true masks once the halo is one step wider.
        dis.setPatchStride(stride)
        return lambda a, b: dis.calc(a, b, None)
    if method == "farneback":
        return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ValueError(f"unknown optical flow method '{method}' (dis, farneback)")


@lru_cache(maxsize=8)
def _fit_points(height: int, width: int, grid: int) -> np.ndarray:
    """(x, y) float32 of the grid points a homography is fitted to, row by row (read only)."""
    ys, xs = np.mgrid[grid // 2 : height : grid, grid // 2 : width : grid]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    points.flags.writeable = False
    return points


def fit_camera(flow: np.ndarray, grid: int = 6, ransac_px: float = 1.0) -> np.ndarray:
    """Fits the homography that best explains ``flow`` (RANSAC over grid points).

    Falls back to the median translation when too few points agree on a homography.
    """
    height, width = flow.shape[:2]
    src = _fit_points(height, width, grid)
    dst = src + flow[grid // 2 :: grid, grid // 2 :: grid].reshape(-1, 2)
    homography = None
    if len(src) >= 8:
        homography, inliers = cv2.findHomography(src, dst, cv2.RANSAC, ransac_px, maxIters=500, confidence=0.99)
        if inliers is None or inliers.sum() < max(8, 0.2 * len(src)):
            homography = None
    if homography is None:
        dx, dy = np.median(flow.reshape(-1, 2), axis=0)
        homography = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float64)
    return homography


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel's (x, y) as float32: as (h, w, 2), and as the (h * w, 1, 2) points
    OpenCV transforms (made once per frame size; read only)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    grid = np.stack([xs, ys], axis=-1)
    grid.flags.writeable = False
    points = grid.reshape(-1, 1, 2)
    return grid, points


def camera_flow(homography: np.ndarray, height: int, width: int) -> np.ndarray:
    """The flow field (h, w, 2) that ``homography`` induces on every pixel."""
    grid, points = _pixel_grid(height, width)
    moved = cv2.perspectiveTransform(points, homography).reshape(height, width, 2)
    moved -= grid
    return moved


def remove_camera(flow: np.ndarray, homography: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`residual_flow` for a homography already fitted to ``flow``."""
    height, width = flow.shape[:2]
    grid = _pixel_grid(height, width)[0]
    cam = camera_flow(homography, height, width)
    target = grid + cam
    x, y = target[..., 0], target[..., 1]
    visible = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    return flow - cam, visible


def residual_flow(flow: np.ndarray, grid: int = 6, ransac_px: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Removes the camera's motion from ``flow``.

    Returns:
        ``(residual, visible)``: the warp flow (h, w, 2) and a bool mask of the points the
        camera keeps inside the other frame (elsewhere the flow has nothing to match).
    """
    return remove_camera(flow, fit_camera(flow, grid, ransac_px))


class MotionEstimator:
    """Computes the motion maps and warp flow of one segment's kept frames."""

    def __init__(self, config: MotionConfig | None = None):
        self.config = config or MotionConfig()
        self._flow = make_flow_fn(self.config.method, self.config.flow_stride)

    def required_indices(self, kept: Sequence[int], num_frames: int, fps: float, with_flow: bool) -> list[int]:
        """Every 0-based frame index needed for the kept frames (kept ones included)."""
        needed = set(int(k) for k in kept)
        offsets, step = self.config.offsets(fps), self.config.frame_step(fps)
        for k in kept:
            needed.update(n for pair in self._pairs(int(k), num_frames, offsets) for n in pair)
            if with_flow:
                for a, b in self._flow_pairs(int(k), num_frames, step):
                    needed.update((a, b))
        return sorted(needed)

    @staticmethod
    def _pairs(k: int, num_frames: int, offsets: Sequence[int]) -> list[list[int]]:
        """The neighbours of ``k`` at each offset (one side at the video's ends)."""
        pairs = []
        for d in offsets:
            pair = [n for n in (k - d, k + d) if 0 <= n < num_frames]
            if pair:
                pairs.append(pair)
        return pairs

    @staticmethod
    def _flow_pairs(k: int, num_frames: int, step: int) -> list[tuple[int, int]]:
        # The 5 consecutive pairs centred on k, shifted (not shrunk) at the video's ends.
        first = k - (FLOW_PAIRS // 2) * step
        last_start = num_frames - 1 - step
        first = max(0, min(first, last_start - (FLOW_PAIRS - 1) * step))
        pairs = []
        for p in range(FLOW_PAIRS):
            a = min(max(first + p * step, 0), max(last_start, 0))
            pairs.append((a, min(a + step, num_frames - 1)))
        return pairs

    def _clean(self, moving: np.ndarray, side: int) -> np.ndarray:
        """Fill, despeckle, then trim the halo of a uint8 moving mask at flow resolution."""
        cfg = self.config
        for fraction, op in ((cfg.fill, cv2.MORPH_CLOSE), (cfg.speck, cv2.MORPH_OPEN), (cfg.halo, cv2.MORPH_ERODE)):
            size = int(round(fraction * side))
            if size >= 2:
                kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
                moving = cv2.morphologyEx(moving, op, kernel)
        return moving

    def compute(
        self, frames: dict[int, np.ndarray], kept: Sequence[int], num_frames: int, fps: float, with_flow: bool,
        stopwatch: Callable[[str], ContextManager[None]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Motion maps (and quantised warp flow) for the kept frames.

        Args:
            frames: uint8 RGB frames at the stored size, by 0-based index; must hold every
                index of :meth:`required_indices`.
            kept: The kept frames' 0-based indices (M of them, repeats allowed).
            num_frames: Frames in the video.
            fps: The file's real frame rate (sets the comparisons' distances in frames).
            with_flow: Also return the 5 stacked x/y warp-flow pairs around each kept frame.
            stopwatch: Times the stages (a :class:`shards.stopwatch.Stopwatch`), or None.

        Returns:
            ``(motion, flow)``: uint8 (M, H // MAP_STRIDE, W // MAP_STRIDE) moving fractions,
            and uint8 (M, 10, h', w') flow quantised by :func:`shards.schema.quantise_flow`
            in pixels of the stored frames, or None.
        """
        cfg = self.config
        clock = stopwatch or no_stopwatch
        offsets, step = cfg.offsets(fps), cfg.frame_step(fps)
        height, width = next(iter(frames.values())).shape[:2]
        scale = cfg.scale_for(height, width)
        small_size = (max(8, int(round(width * scale))), max(8, int(round(height * scale))))
        map_size = (width // MAP_STRIDE, height // MAP_STRIDE)
        gray_cache: dict[int, np.ndarray] = {}
        flow_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

        def gray(index: int) -> np.ndarray:
            if index not in gray_cache:
                with clock("flow_input"):
                    g = cv2.cvtColor(frames[index], cv2.COLOR_RGB2GRAY)
                    gray_cache[index] = cv2.resize(g, small_size, interpolation=cv2.INTER_AREA)
            return gray_cache[index]

        def residual(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            if (a, b) not in flow_cache:
                first, second = gray(a), gray(b)
                with clock("flow"):
                    flow = self._flow(first, second)
                with clock("homography"):
                    homography = fit_camera(flow, cfg.grid, cfg.ransac_px)
                with clock("compensation"):
                    flow_cache[(a, b)] = remove_camera(flow, homography)
            return flow_cache[(a, b)]

        threshold_px = cfg.threshold * min(small_size)
        maps = np.zeros((len(kept), map_size[1], map_size[0]), np.uint8)
        flows = None
        for row, k in enumerate(int(k) for k in kept):
            pairs = self._pairs(k, num_frames, offsets)
            if pairs:
                for pair in pairs:
                    for n in pair:
                        residual(k, n)
                with clock("morphology"):
                    moving = np.zeros(gray(k).shape, bool)
                    for pair in pairs:
                        votes = np.zeros(gray(k).shape, np.int32)
                        for n in pair:
                            res, visible = flow_cache[(k, n)]
                            votes += (np.hypot(res[..., 0], res[..., 1]) > threshold_px) & visible
                        moving |= votes >= min(cfg.min_votes, len(pair))
                    moving = self._clean(moving.astype(np.uint8), min(small_size)).astype(np.float32)
                    fraction = cv2.resize(moving, map_size, interpolation=cv2.INTER_AREA)
                    maps[row] = np.clip(np.rint(fraction * 255), 0, 255).astype(np.uint8)
            if with_flow:
                pairs = self._flow_pairs(k, num_frames, step)
                residuals = [residual(a, b)[0] if a != b else None for a, b in pairs]
                with clock("warp_flow"):
                    stack = []
                    for res in residuals:
                        if res is None:
                            res = np.zeros((*gray(k).shape, 2), np.float32)
                        stack.extend((res[..., 0], res[..., 1]))
                    pixels = np.stack(stack) / scale
                    if flows is None:
                        flows = np.empty((len(kept), *pixels.shape), np.uint8)
                    flows[row] = quantise_flow(pixels)
        return maps, flows

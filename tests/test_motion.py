"""Motion maps against known masks, camera compensation, warp flow."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shards.decode import DecordVideo
from shards.motion import MotionConfig, MotionEstimator, camera_flow, residual_flow
from shards.schema import FLOW_CHANNELS, MAP_STRIDE, flow_to_pixels
from shards.toyvideo import make_toy_video

KEPT = list(range(3, 45, 5))


def _scores(maps: np.ndarray, masks: np.ndarray, kept: list[int]) -> tuple[float, float]:
    """Mean IoU of the moving cells (fraction >= 1/2) and the flagged fraction of background."""
    ious, background = [], []
    h, w = maps.shape[1:]
    for row, k in enumerate(kept):
        truth = cv2.resize(masks[k].astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5
        moving = maps[row] >= 128
        ious.append((truth & moving).sum() / max(1, (truth | moving).sum()))
        background.append(moving[~truth].mean())
    return float(np.mean(ious)), float(np.mean(background))


def _maps(path, kept, with_flow=False, **config):
    video = DecordVideo(path, short_side=96)
    estimator = MotionEstimator(MotionConfig(flow_scale=1.0, **config))
    needed = estimator.required_indices(kept, video.num_frames, 30.0, with_flow)
    frames = dict(zip(needed, video.read(needed)))
    return estimator.compute(frames, kept, video.num_frames, 30.0, with_flow)


@pytest.mark.parametrize("seed", [3, 7])
def test_motion_maps_find_the_moving_object_not_the_panning_background(tmp_path, seed):
    toy = make_toy_video(tmp_path / "pan.mp4", num_frames=48, seed=seed)
    maps, _ = _maps(toy.path, KEPT)
    assert maps.shape == (len(KEPT), 96 // MAP_STRIDE, 128 // MAP_STRIDE) and maps.dtype == np.uint8
    iou, background = _scores(maps, toy.masks, KEPT)
    print(f"toy video seed {seed}: motion-map IoU {iou:.3f}, background flagged {background:.3%}")
    assert iou > 0.5
    assert background < 0.05


def test_a_static_scene_seen_by_a_panning_camera_is_not_moving(tmp_path, monkeypatch):
    # The square moves on screen exactly against the pan: it stands still in the world.
    # (Short enough that it does not reach the frame's edge and bounce.)
    toy = make_toy_video(tmp_path / "static.mp4", num_frames=30, seed=2, speed=(-2.0, -1.0), pan=(2.0, 1.0))
    kept = list(range(2, 28, 3))
    maps, _ = _maps(toy.path, kept)
    assert (maps >= 128).mean() < 0.02
    # Without camera compensation most of the frame would count as moving.
    monkeypatch.setattr("shards.motion.fit_camera", lambda *args: np.eye(3))
    uncompensated, _ = _maps(toy.path, kept)
    assert (uncompensated >= 128).mean() > 0.5


def test_residual_of_a_pure_homography_flow_is_zero():
    homography = np.array([[1.01, 0.02, 3.0], [-0.01, 0.99, -2.0], [1e-5, 2e-5, 1.0]])
    flow = camera_flow(homography, 60, 80).astype(np.float32)
    residual, visible = residual_flow(flow)
    assert np.abs(residual[visible]).max() < 0.05
    assert 0.8 < visible.mean() < 1.0  # points the camera moves out of view are excluded


def test_warp_flow_is_stacked_quantised_and_zero_on_the_background(tmp_path):
    toy = make_toy_video(tmp_path / "flow.mp4", num_frames=30, seed=4)
    kept = [0, 14, 29]  # both ends of the video included
    maps, flow = _maps(toy.path, kept, with_flow=True)
    assert flow.shape == (3, FLOW_CHANNELS, 96, 128) and flow.dtype == np.uint8
    pixels = flow_to_pixels(flow)
    truth = toy.masks[14].astype(bool)
    background = np.abs(pixels[1][:, ~truth]).mean()
    on_object = np.abs(pixels[1][:, truth]).mean()
    assert background < 0.3 and on_object > 3 * background
    # x channels carry the square's camera-compensated motion (-2.5 - (-1.5) = -1 px/frame here
    # rounded to whole pixels by the renderer): mostly negative on the object.
    assert np.median(pixels[1][0::2][:, truth]) < 0


def test_required_frames_stay_inside_the_video():
    estimator = MotionEstimator(MotionConfig(step=2, radius=1))
    needed = estimator.required_indices([0, 10, 19], 20, 30.0, with_flow=True)
    assert min(needed) == 0 and max(needed) == 19
    assert {8, 12, 2, 17}.issubset(needed)
    assert estimator._flow_pairs(0, 20, 2) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert estimator._flow_pairs(19, 20, 2)[-1] == (17, 19)
    assert MotionConfig().frame_step(59.94) == 2 and MotionConfig().frame_step(25.0) == 1

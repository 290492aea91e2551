"""Motion maps against known masks, camera compensation, warp flow."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shards.decode import VideoFile, sample_frames
from shards.motion import MotionConfig, MotionEstimator, camera_flow, residual_flow
from shards.schema import FLOW_CHANNELS, MAP_STRIDE, flow_to_pixels
from shards.synth import generate
from shards.synth.plan import Options, make_plan
from shards.synth.render import VideoRenderer
from shards.toyvideo import make_toy_video

KEPT = list(range(3, 45, 5))
EARLIER = dict(flow_stride=4, halo=0.03)  # the earlier default: DIS's preset stride, ~1.75x the maps' cost


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
    video = VideoFile(path, short_side=96)
    estimator = MotionEstimator(MotionConfig(flow_scale=1.0, **config))
    needed = estimator.required_indices(kept, video.num_frames, 30.0, with_flow)
    frames = dict(zip(needed, video.read(needed)))
    return estimator.compute(frames, kept, video.num_frames, 30.0, with_flow)


@pytest.mark.parametrize("seed", [3, 7])
def test_motion_maps_find_the_moving_object_not_the_panning_background(tmp_path, seed):
    """Flow on the 128x96 frames themselves (96 px, under the default flow side of 160): DIS
    patches every 6 pixels cover the small object with fewer patches, so the default loses
    some overlap there that patches every 4 pixels keep (README "Motion maps")."""
    toy = make_toy_video(tmp_path / "pan.mp4", num_frames=48, seed=seed)
    for name, config, least_iou in (("default", {}, 0.7), ("stride 4", EARLIER, 0.75)):
        maps, _ = _maps(toy.path, KEPT, **config)
        assert maps.shape == (len(KEPT), 96 // MAP_STRIDE, 128 // MAP_STRIDE) and maps.dtype == np.uint8
        iou, background = _scores(maps, toy.masks, KEPT)
        print(f"toy video seed {seed}, {name}: motion-map IoU {iou:.3f}, background flagged {background:.3%}")
        assert iou > least_iou
        assert background < 0.02


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
    estimator = MotionEstimator(MotionConfig(step=2, spans=(1, 3)))
    needed = estimator.required_indices([0, 10, 19], 20, 30.0, with_flow=True)
    assert min(needed) == 0 and max(needed) == 19
    assert {8, 12, 4, 16, 2, 6, 17, 13}.issubset(needed)
    assert estimator._pairs(10, 20, [2, 6]) == [[8, 12], [4, 16]]
    assert estimator._pairs(19, 20, [2, 6]) == [[17], [13]]  # one side only at the video's end
    assert estimator._flow_pairs(0, 20, 2) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert estimator._flow_pairs(19, 20, 2)[-1] == (17, 19)
    assert MotionConfig().frame_step(59.94) == 2 and MotionConfig().frame_step(25.0) == 1


def test_comparison_distances_are_times_at_the_files_real_rate():
    # Adjacent frames and ~1/10 s at every rate EPIC's raw videos use.
    offsets = {fps: MotionConfig().offsets(fps) for fps in (29.97, 47.95, 50.0, 59.94, 90.0)}
    assert offsets == {29.97: [1, 3], 47.95: [2, 5], 50.0: [2, 5], 59.94: [2, 6], 90.0: [3, 9]}
    for fps, (near, far) in offsets.items():
        assert abs(far / fps - 0.1) <= 0.5 / fps  # the 1/10 s comparison, to the nearest frame
    assert MotionConfig(step=4).offsets(90.0) == [4, 12]  # an explicit step is in frames


def test_flow_runs_at_the_configured_short_side():
    config = MotionConfig()
    assert config.scale_for(256, 456) == pytest.approx(160 / 256)
    assert config.scale_for(96, 128) == 1.0  # small frames are never enlarged
    assert MotionConfig(flow_scale=0.5).scale_for(256, 456) == 0.5


@pytest.mark.parametrize("bad", [dict(spans=()), dict(spans=(0, 2)), dict(spans=(2, 2)), dict(min_votes=3),
                                 dict(flow_scale=1.5), dict(flow_side=4), dict(halo=1.0), dict(threshold=-0.1),
                                 dict(flow_stride=0), dict(flow_stride=9)])
def test_bad_motion_settings_are_refused_by_name(bad):
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
        MotionConfig(**bad)


def _distractor_mask(renderer: VideoRenderer, t: int) -> np.ndarray:
    """Pixels of frame ``t`` showing the static look-alikes painted around the action."""
    track = next(tr for tr in renderer.tracks if tr.first <= t <= tr.last)
    painted = np.any(track.canvas != renderer.world, axis=2).astype(np.uint8)
    return cv2.warpAffine(painted, renderer.camera.matrices[t], (renderer.width, renderer.height),
                          flags=cv2.INTER_NEAREST)


KITCHENS = dict(width=228, height=128, fps=30.0, unseen_fraction=0.0, segments_per_video=4)


@pytest.fixture(scope="module")
def kitchens(tmp_path_factory):
    out = tmp_path_factory.mktemp("kitchens")
    generate("epic55", out, participants=2, segments=8, seed=5, **KITCHENS)
    return out, make_plan("epic55", 2, 8, 5, Options(**KITCHENS))


def _kitchen_scores(kitchens, config: MotionConfig) -> tuple[list[float], list[float], list[float]]:
    """Per segment IoU with the true masks; per frame flagged background and look-alikes."""
    tmp_path, plan = kitchens
    width, height, fps, frames_per_segment = KITCHENS["width"], KITCHENS["height"], KITCHENS["fps"], 4
    estimator = MotionEstimator(config)
    ious, background, distractors = [], [], []
    for video in plan.videos:
        source = VideoFile(tmp_path / "videos" / video.participant / f"{video.video_id}.MP4", short_side=height)
        masks = np.load(tmp_path / "masks" / f"{video.video_id}.npz")["mask"]
        renderer = VideoRenderer(video, plan.seed, width, height, fps)
        for seg in video.segments:
            kept = [f - 1 for f in sample_frames(seg.start_frame, seg.stop_frame, frames_per_segment)]
            needed = estimator.required_indices(kept, source.num_frames, fps, False)
            maps, _ = estimator.compute(dict(zip(needed, source.read(needed))), kept, source.num_frames, fps, False)
            size = maps.shape[:0:-1]
            overlap = []
            for row, t in enumerate(kept):
                truth = cv2.resize(masks[t].astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
                lookalike = cv2.resize(_distractor_mask(renderer, t).astype(np.float32), size,
                                       interpolation=cv2.INTER_AREA) >= 0.5
                lookalike &= ~truth
                flagged = maps[row] >= 128
                if truth.any():
                    overlap.append((truth & flagged).sum() / (truth | flagged).sum())
                background.append(flagged[~truth & ~lookalike].mean())
                if lookalike.any():
                    distractors.append(flagged[lookalike].mean())
            ious.append(np.mean(overlap))
    return ious, background, distractors


def test_motion_maps_find_the_moving_object_in_synthetic_kitchens(kitchens):
    """Demo-sized kitchens (228x128, 30 fps): the maps overlap the true masks, not the rest,
    with the default flow (DIS patches every 6 pixels) and with the earlier, slower one (every
    4, as DIS's presets), which the default must match."""
    scores = {}
    for name, config in (("default", MotionConfig()), ("earlier", MotionConfig(**EARLIER))):
        ious, background, distractors = scores[name] = _kitchen_scores(kitchens, config)
        print(f"synthetic kitchens 228x128, {name} flow: motion-map IoU {np.mean(ious):.3f} over {len(ious)} "
              f"segments (min {np.min(ious):.3f}), background flagged {np.mean(background):.2%}, "
              f"static look-alikes flagged {np.mean(distractors):.2%}")
        assert len(ious) == 8 and len(distractors) > 0
        assert np.mean(ious) >= 0.5
        assert np.mean(background) < 0.05
        assert np.mean(distractors) < 0.1
    assert np.mean(scores["default"][0]) >= np.mean(scores["earlier"][0]) - 0.01

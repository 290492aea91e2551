"""Synthetic kitchens (EPIC-55 layout): videos that decode to the rendered frames, masks that tell the truth."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from launcher.cli import main
from shards.annotations import load_segments
from shards.annotations.epic55 import read_many_shot
from shards.decode import VideoFile
from shards.synth.plan import Options, make_plan
from shards.synth.objects import object_polygons
from shards.synth.render import VideoRenderer
from shards.synth.scene import REFERENCE_HEIGHT
from shards.synth.vocab import NOUNS, PART_VERBS, VERBS

W, H, FPS = 128, 72, 15.0


@pytest.fixture(scope="module")
def epic55(tmp_path_factory):
    """The acceptance dataset (4 participants, 40 segments, seed 0), small frames."""
    out = tmp_path_factory.mktemp("synth") / "epic55"
    code = main(["synth", "--format", "epic55", "--out", str(out), "--participants", "4",
                 "--segments", "40", "--seed", "0", "--width", str(W), "--height", str(H),
                 "--fps", str(FPS)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def tables(epic55):
    ann = epic55 / "annotations"
    return {split: load_segments("epic55", ann, split) for split in ("train", "s1", "s2")}


@pytest.fixture(scope="module")
def plan():
    return make_plan("epic55", 4, 40, 0, Options(width=W, height=H, fps=FPS))


def test_reader_loads_every_split_with_labels(tables):
    assert sum(len(t) for t in tables.values()) == 40
    for split, table in tables.items():
        assert len(table) > 0, split
        assert (table.verb_class >= 0).all() and (table.noun_class >= 0).all(), split
    # The last quarter of participants are unseen kitchens: only in S2.
    assert set(tables["s2"].participant) == {"P04"}
    assert "P04" not in set(tables["train"].participant) | set(tables["s1"].participant)
    # Seen kitchens have separate train and S1 videos.
    assert not set(tables["train"].video_id) & set(tables["s1"].video_id)
    assert set(tables["s1"].participant) <= set(tables["train"].participant)


def test_videos_hold_the_frames_the_annotations_promise(epic55, tables):
    info = pd.read_csv(epic55 / "annotations" / "EPIC_video_info.csv")
    segs = pd.concat(tables.values())
    for row in info.itertuples():
        vr = VideoFile(epic55 / "videos" / row.video[:3] / f"{row.video}.MP4", short_side=H)
        assert vr.fps == pytest.approx(row.fps, rel=1e-6)
        assert vr.num_frames == round(row.duration * row.fps), row.video
        mine = segs[segs.video_id == row.video]
        # Times lie inside the video; frames count the 60 fps frame release, as EPIC-55's do.
        assert len(mine) and (mine.stop_time <= vr.num_frames / row.fps + 0.005).all()
        assert (mine.start_frame >= 1).all() and (mine.start_frame < mine.stop_frame).all()
        ratio = mine.stop_frame / mine.stop_time
        assert ratio.between(59.5, 60.5).all(), ratio.tolist()
        assert row.resolution == f"{W}x{H}" and vr.read([0])[0].shape == (H, W, 3)


def test_decoded_frames_are_the_rendered_ones(epic55, plan):
    """Reads are frame-exact: frame k decodes closest to rendered frame k."""
    video = plan.videos[0]
    rendered = list(VideoRenderer(video, plan.seed, W, H, FPS).frames())
    vr = VideoFile(epic55 / "videos" / video.participant / f"{video.video_id}.MP4", short_side=H)
    picks = [3, 40, len(rendered) // 2, len(rendered) - 2]
    decoded = vr.read(picks).astype(np.float32)
    for got, k in zip(decoded, picks):
        errors = [np.abs(got - rendered[j]).mean() for j in (k - 2, k, k + 1)]
        assert errors[1] < 12.0 and errors[1] < min(errors[0], errors[2]), (k, errors)


def test_masks_match_videos_and_segments(epic55, plan):
    for video in plan.videos:
        mask = np.load(epic55 / "masks" / f"{video.video_id}.npz")["mask"]
        assert mask.shape == (video.num_frames, H, W) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        inside = np.zeros(video.num_frames, bool)
        tracks = VideoRenderer(video, plan.seed, W, H, FPS, plan.options).tracks
        for seg, track in zip(video.segments, tracks):
            span = mask[seg.start_frame - 1:seg.stop_frame]
            # The hand reaches before the segment and withdraws after it: it moves then.
            inside[track.first:track.last + 1] = True
            # The object may leave the picture at the end of "take": most frames show it.
            assert (span.sum((1, 2)) > 0).mean() > 0.8, seg.segment_id
        assert mask[~inside].sum() == 0, "nothing is labelled moving between segments"


def _object_colour_share(frame: np.ndarray, mask: np.ndarray, colours: dict) -> float:
    """Share of (eroded) mask pixels whose colour is near one of the object's colours."""
    core = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    if core.sum() < 5:
        return float("nan")
    pix = frame[core].astype(np.float32)
    refs = np.array(list(colours.values()), np.float32)
    dist = np.linalg.norm(pix[:, None, :] - refs[None], axis=2).min(1)
    return float((dist < 45).mean())


def test_mask_covers_the_moving_object(epic55, plan):
    """Decoded pixels under the mask have the moving object's colours and move over time."""
    shares, differs = [], []
    for video in plan.videos[:4]:
        renderer = VideoRenderer(video, plan.seed, W, H, FPS, plan.options)
        mask = np.load(epic55 / "masks" / f"{video.video_id}.npz")["mask"]
        vr = VideoFile(epic55 / "videos" / video.participant / f"{video.video_id}.MP4", short_side=H)
        for seg, track in zip(video.segments, renderer.tracks):
            a = seg.start_frame - 1 + (seg.stop_frame - seg.start_frame) // 4
            b = seg.stop_frame - 1 - (seg.stop_frame - seg.start_frame) // 4
            fa, fb = vr.read([a, b])
            for frame, t in ((fa, a), (fb, b)):
                skin = renderer.skin  # the hand holds it
                colours = {**track.colours, "skin": skin.skin, "shade": skin.shade,
                           "sleeve": skin.sleeve}
                share = _object_colour_share(frame, mask[t], colours)
                if not np.isnan(share):
                    shares.append(share)
            # Far apart inside a segment, the masked region is not the same.
            differs.append(not np.array_equal(mask[a], mask[b]))
    assert np.median(shares) > 0.8, shares
    assert all(differs)


def test_camera_moves_as_much_as_the_objects(epic55, plan):
    video = plan.videos[0]
    renderer = VideoRenderer(video, plan.seed, W, H, FPS)
    vr = VideoFile(epic55 / "videos" / video.participant / f"{video.video_id}.MP4", short_side=H)
    # Background shifts between frames of a gap (nothing labelled moving there).
    first = video.segments[0].start_frame - 1
    g0, g1 = vr.read([0, min(first, 6)])
    (dx, dy), _ = cv2.phaseCorrelate(cv2.cvtColor(g0, cv2.COLOR_RGB2GRAY).astype(np.float64),
                                     cv2.cvtColor(g1, cv2.COLOR_RGB2GRAY).astype(np.float64))
    assert np.hypot(dx, dy) > 0.3
    assert np.abs(g0.astype(int) - g1.astype(int)).mean() > 3
    # Over a segment the camera travels about as far as a translating object does.
    ratios = []
    for video in plan.videos:
        renderer = VideoRenderer(video, plan.seed, W, H, FPS)
        for seg, track in zip(video.segments, renderer.tracks):
            if VERBS[seg.verb] in PART_VERBS | {"turn"}:
                continue
            t = np.arange(track.start, track.stop + 1)
            obj = np.array([[track.pose(k).x, track.pose(k).y] for k in t])
            cam = renderer.camera.centres[t]
            ratios.append(np.abs(np.diff(cam, axis=0)).sum() / np.abs(np.diff(obj, axis=0)).sum())
    assert np.median(ratios) > 0.5, ratios


def _fastest_point_speeds(renderer: VideoRenderer, track) -> np.ndarray:
    """Per frame of the segment: the speed of the fastest moving vertex, reference px/s."""
    points = []
    for t in range(track.start, track.stop + 1):
        body, part = object_polygons(NOUNS[track.noun], track.pose(t))
        points.append(np.concatenate([p for p, _ in (body if track.moves_whole else []) + part]))
    unit = renderer.height / REFERENCE_HEIGHT
    return np.linalg.norm(np.diff(np.array(points), axis=0), axis=2).max(1) * renderer.fps / unit


def test_objects_move_at_hand_speeds_all_through_their_segment(plan):
    """Several px per frame at 456x256 and 30 fps (60 px/s), and never still for long."""
    for video in plan.videos[:6]:
        renderer = VideoRenderer(video, plan.seed, W, H, FPS)
        for seg, track in zip(video.segments, renderer.tracks):
            speeds = _fastest_point_speeds(renderer, track)
            assert np.median(speeds) > 50, (seg.segment_id, VERBS[seg.verb], np.median(speeds))
            assert np.percentile(speeds, 10) > 20, (seg.segment_id, VERBS[seg.verb], np.percentile(speeds, 10))


def test_objects_have_surface_detail_for_the_flow_to_follow(plan):
    """Inside a moving object (edges eroded away), most pixels differ from their neighbours."""
    shares = []
    for video in plan.videos[:4]:
        renderer = VideoRenderer(video, plan.seed, W, H, FPS)
        mask = np.zeros((video.num_frames, H, W), np.uint8)
        frames = list(renderer.frames(mask))
        for seg in video.segments:
            t = (seg.start_frame + seg.stop_frame) // 2
            core = cv2.erode(mask[t], np.ones((5, 5), np.uint8)).astype(bool)
            if core.sum() < 10:
                continue
            grey = cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY).astype(np.float32)
            local_var = cv2.blur(grey * grey, (3, 3)) - cv2.blur(grey, (3, 3)) ** 2
            shares.append((local_var[core] > 1.0).mean())
    assert len(shares) >= 8 and np.median(shares) > 0.85, shares  # flat colours: ~0.55


def test_kitchens_belong_to_participants(plan):
    worlds = {}
    for video in plan.videos:
        renderer = VideoRenderer(video, plan.seed, W, H, FPS)
        worlds.setdefault(video.participant, []).append(renderer.world)
    for views in worlds.values():
        assert all(np.array_equal(views[0], w) for w in views[1:])
    # Different participants: different palettes and textures, not one texture family.
    names = sorted(worlds)
    for i, p in enumerate(names):
        for q in names[i + 1:]:
            diff = np.abs(worlds[p][0].astype(int) - worlds[q][0].astype(int)).mean()
            assert diff > 15, (p, q, diff)


def test_many_shot_lists_follow_train_counts(epic55, tables):
    many = read_many_shot(epic55 / "annotations")
    counts = tables["train"].verb_class.value_counts()
    assert many["verb"], "some verb is many-shot"
    assert many["verb"] <= set(counts.index)
    assert min(counts[v] for v in many["verb"]) >= max(
        (counts[v] for v in set(counts.index) - many["verb"]), default=0)


def test_synth_json_describes_the_run(epic55, plan):
    meta = json.loads((epic55 / "synth.json").read_text())
    assert meta["seed"] == 0 and meta["unseen_participants"] == ["P04"]
    assert {v: d["frames"] for v, d in meta["videos"].items()} == {
        v.video_id: v.num_frames for v in plan.videos}


def _render(video, seed: int, hands: int) -> tuple[VideoRenderer, np.ndarray, np.ndarray]:
    opts = Options(width=W, height=H, fps=FPS, hands=hands)
    renderer = VideoRenderer(video, seed, W, H, FPS, opts)
    mask = np.zeros((video.num_frames, H, W), np.uint8)
    frames = np.stack(list(renderer.frames(mask)))
    return renderer, frames, mask


def test_hands_are_in_the_true_masks_while_they_move(plan):
    """The acting hand reaches, holds the moving object and withdraws, in the mask; a
    resting hand is drawn but not in the mask; without hands the kitchen is unchanged."""
    resting = 0
    for video in plan.videos[:3]:
        with_hands, frames, mask = _render(video, plan.seed, 2)
        bare, bare_frames, bare_mask = _render(video, plan.seed, 0)
        np.testing.assert_array_equal(bare.camera.matrices, with_hands.camera.matrices)
        skin = with_hands.skin
        arm = np.array([skin.skin, skin.shade, skin.sleeve], np.float32)
        for track, hand in zip(with_hands.tracks, with_hands.hands):
            before = (track.first + track.start) // 2  # reaching: only the hand moves
            assert bare_mask[before].sum() == 0 and mask[before].sum() > 0
            drawn = np.abs(frames[before].astype(int) - bare_frames[before]).sum(2) > 0
            assert (mask[before].astype(bool) & drawn).sum() >= 0.9 * mask[before].sum()
            middle = (track.start + track.stop) // 2  # holding the moving object
            extra = mask[middle].astype(bool) & ~bare_mask[middle].astype(bool)
            assert extra.sum() > 0
            pix = frames[middle][extra].astype(np.float32)
            near_arm = np.linalg.norm(pix[:, None] - arm[None], axis=2).min(1) < 45
            assert near_arm.mean() > 0.8
            t = track.first  # the acting hand is below the frame
            idle = with_hands.hand_points(t)[1]
            assert mask[t].sum() == 0
            if idle is not None and 2 <= idle[0] < W - 2 and 2 <= idle[1] < H - 2:
                assert not np.array_equal(frames[t], bare_frames[t])  # drawn, not moving
                resting += 1
    assert resting > 0
    skins = {VideoRenderer(v, plan.seed, W, H, FPS, plan.options).skin.skin for v in plan.videos}
    assert len(skins) == len({v.participant for v in plan.videos}) > 1


def test_hands_option_is_checked_and_recorded(tmp_path):
    with pytest.raises(ValueError, match="hands"):
        Options(hands=3, fps=30.0).validate()
    out = tmp_path / "bare"
    assert main(["synth", "--format", "epic55", "--out", str(out), "--participants", "2",
                 "--segments", "4", "--width", str(W), "--height", str(H), "--fps", str(FPS),
                 "--hands", "0"]) == 0
    assert json.loads((out / "synth.json").read_text())["options"]["hands"] == 0

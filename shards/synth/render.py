"""Draws the frames of one planned video and the true mask of what moves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from shards.synth import motions
from shards.synth.hands import (draw_hand, grasp_point, participant_skin, plan_hands, reach,
                                shoulder)
from shards.synth.objects import Pose, colour_roles, draw_object, surface_texture
from shards.synth.plan import Options, VideoPlan
from shards.synth.scene import (REFERENCE_HEIGHT, camera_path, camera_reach, follow,
                                light_gain, paint_kitchen, sample_style)
from shards.synth.vocab import HELD_NOUNS, NOUNS, PART_VERBS, VERBS

OBJECT_SIZE = 78.0  # object height in px at the reference frame height
CAMERA_REACH_SPEED = 80.0  # the pan speed the world canvas is sized for (px/s, reference)
DISTRACTORS = (2, 5)  # static look-alikes per segment (min, max+1)


@dataclass
class ActorTrack:
    """The moving object of one segment and the frames during which it is drawn."""

    noun: int
    verb: int
    first: int  # 0-based frame indices, inclusive: visible window
    last: int
    start: int  # 0-based frames of the labelled segment, inclusive
    stop: int
    base: Pose
    params: motions.MotionParams
    colours: dict
    texture: np.ndarray  # the instance's surface (objects.surface_texture)
    canvas: np.ndarray  # the world with this segment's static distractors painted in
    fps: float
    distractors: tuple = ()  # (noun, Pose) of the static look-alikes painted in ``canvas``

    @property
    def moves_whole(self) -> bool:
        """Whether the body moves (and is in the mask), not only the lid, door or drawer."""
        return VERBS[self.verb] not in PART_VERBS or NOUNS[self.noun] in HELD_NOUNS

    def pose(self, t: int) -> Pose:
        """The object's pose at frame ``t`` (held still outside the segment)."""
        span = max(1, self.stop - self.start)
        t = min(max(t, self.start), self.stop)
        u = (t - self.start) / span
        dx, dy, factor, angle, openness = motions.offset(self.verb, u, self.params)
        sx, sy, sangle, sopen = motions.sway(self.verb, (t - self.start) / self.fps, self.params,
                                             self.moves_whole)
        size = self.base.size * factor
        return Pose(self.base.x + (dx + sx) * self.base.size, self.base.y + (dy + sy) * self.base.size,
                    size, self.base.angle + angle + sangle, self.base.openness + openness + sopen)


def kitchen_rng(seed: int, participant_index: int) -> np.random.Generator:
    """The generator of one participant's kitchen: shared by all of that participant's videos."""
    return np.random.default_rng([seed, 0xC17C, participant_index])


class VideoRenderer:
    """Renders a :class:`VideoPlan` frame by frame.

    Args:
        plan: The video to draw.
        dataset_seed: The dataset seed (kitchens depend on it and the participant only).
        width, height, fps: Output geometry and rate.
        options: Camera and motion options (:class:`Options`; its defaults when None).
    """

    def __init__(self, plan: VideoPlan, dataset_seed: int, width: int, height: int, fps: float,
                 options: Options | None = None):
        self.plan, self.width, self.height, self.fps = plan, width, height, fps
        self.options = opts = options if options is not None else Options()
        unit = height / REFERENCE_HEIGHT
        krng = kitchen_rng(dataset_seed, plan.participant_index)
        self.style = sample_style(krng)
        self.light = light_gain(self.style)
        reach = camera_reach(max(opts.camera_speed, CAMERA_REACH_SPEED) * unit)
        world_w = int(width / 0.9 + 2 * reach + 4 * OBJECT_SIZE * unit)
        world_h = int(height / 0.9 + 2 * reach + 4 * OBJECT_SIZE * unit)
        self.world = paint_kitchen(self.style, world_h, world_w, unit, krng)
        rng = np.random.default_rng(plan.seed)
        self.camera = camera_path(rng, plan.num_frames, fps, width, height,
                                  (world_w / 2, world_h / 2), unit, opts.camera_speed * unit)
        self.size = OBJECT_SIZE * unit
        self.tracks = self._tracks(rng)
        self.camera = follow(self.camera, self._held_points(), opts.camera_follow, fps,
                             width, height)
        self.skin, self.hands = None, []
        if opts.hands:
            # A stream of its own: the kitchens without hands stay exactly what they were.
            hand_rng = np.random.default_rng([plan.seed, 0x4A4D])
            self.skin = participant_skin(dataset_seed, plan.participant_index, self.light)
            self.hands = [plan_hands(hand_rng, opts.hands,
                                     self.camera.centres[(tr.start + tr.stop) // 2], width, height)
                          for tr in self.tracks]

    def _held_points(self) -> np.ndarray:
        """(T, 2) world centre of the object being handled per frame (NaN: none)."""
        points = np.full((self.plan.num_frames, 2), np.nan)
        for tr in self.tracks:
            for t in range(tr.first, tr.last + 1):
                pose = tr.pose(t)
                points[t] = pose.x, pose.y
        return points

    def _tracks(self, rng: np.random.Generator) -> list[ActorTrack]:
        segs = self.plan.segments
        tracks = []
        for k, seg in enumerate(segs):
            start, stop = seg.start_frame - 1, seg.stop_frame - 1
            prev_stop = segs[k - 1].stop_frame - 1 if k else -1
            next_start = segs[k + 1].start_frame - 1 if k + 1 < len(segs) else self.plan.num_frames
            # Visible a little before and after, never overlapping the neighbours' windows.
            pad = int(round(0.4 * self.fps))
            first = max(start - pad, (prev_stop + start) // 2 + 1, 0)
            last = min(stop + pad, (stop + next_start) // 2, self.plan.num_frames - 1)
            params = motions.sample_params(seg.verb, rng, (stop - start) / self.fps,
                                           self.options.stroke_fill, self.options.max_cycles)
            mid = self.camera.centres[(start + stop) // 2]
            cx, cy = motions.path_centre(seg.verb, params)
            size = self.size * rng.uniform(0.85, 1.15)
            target = mid + rng.uniform(-1, 1, 2) * (0.18 * self.width, 0.12 * self.height)
            angle = float(rng.uniform(-12, 12))
            base = Pose(target[0] - cx * size, target[1] - cy * size, size, angle, 0.0)
            canvas, distractors = self._with_distractors(rng, mid, seg)
            colours = colour_roles(NOUNS[seg.noun], rng, self.light)
            tracks.append(ActorTrack(seg.noun, seg.verb, first, last, start, stop, base, params,
                                     colours, surface_texture(rng), canvas, self.fps,
                                     tuple(distractors)))
        return tracks

    def _with_distractors(self, rng: np.random.Generator, mid: np.ndarray,
                          seg) -> tuple[np.ndarray, list]:
        """The world with static objects of the same kinds around the action (not in the
        mask), and their (noun, pose)."""
        canvas, placed = self.world.copy(), []
        for _ in range(int(rng.integers(*DISTRACTORS))):
            # Same noun as the actor now and then, so "which object" is not given by kind.
            noun = seg.noun if rng.random() < 0.3 else int(rng.integers(len(NOUNS)))
            pos = mid + rng.uniform(-1, 1, 2) * (0.45 * self.width, 0.4 * self.height)
            pose = Pose(float(pos[0]), float(pos[1]), self.size * rng.uniform(0.8, 1.2),
                        float(rng.uniform(-15, 15)), float(rng.uniform(0, 1)))
            colours = colour_roles(NOUNS[noun], rng, self.light)
            draw_object(canvas, NOUNS[noun], pose, colours, surface_texture(rng))
            placed.append((noun, pose))
        return canvas, placed

    def screen_scale(self, t: int) -> float:
        """Screen pixels per world pixel at frame ``t``."""
        m = self.camera.matrices[t]
        return float(np.hypot(m[0, 0], m[1, 0]))

    def hand_points(self, t: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Screen points of the acting hand's grip and the resting hand at frame ``t`` (None:
        not drawn; the acting one may still be below the frame)."""
        k = self._track_at(t)
        if k < 0 or not self.hands:
            return None, None
        tr, hand, m = self.tracks[k], self.hands[k], self.camera.matrices[t]
        idle = m @ np.array([*hand.idle, 1.0]) if hand.idle is not None else None
        out = reach(t, tr.first, tr.start, tr.stop, tr.last)
        if out <= 0:
            return None, idle
        grip = m @ np.array([*grasp_point(NOUNS[tr.noun], tr.pose(t), not tr.moves_whole), 1.0])
        root = shoulder(hand.side, self.width, self.height)
        return root + out * (grip - root), idle

    def _track_at(self, t: int) -> int:
        for k, tr in enumerate(self.tracks):
            if tr.first <= t <= tr.last:
                return k
        return -1

    def frames(self, mask: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Yields (H, W, 3) uint8 RGB frames; fills ``mask`` (T, H, W) with what moves."""
        track_of = np.full(self.plan.num_frames, -1)
        for k, tr in enumerate(self.tracks):
            track_of[tr.first:tr.last + 1] = k
        for t in range(self.plan.num_frames):
            matrix = self.camera.matrices[t]
            k = int(track_of[t])
            canvas = self.tracks[k].canvas if k >= 0 else self.world
            frame = cv2.warpAffine(canvas, matrix, (self.width, self.height),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
            if k >= 0:
                tr = self.tracks[k]
                grip, idle = self.hand_points(t)
                size = self.size * self.screen_scale(t)
                if idle is not None:  # resting: still in the kitchen, not in the mask
                    draw_hand(frame, idle, -self.hands[k].side, size, self.skin)
                moving = tr.start <= t <= tr.stop
                target = mask[t] if (mask is not None and moving) else None
                draw_object(frame, NOUNS[tr.noun], tr.pose(t), tr.colours, tr.texture, matrix,
                            target, mask_body=tr.moves_whole)
                if grip is not None:  # reaching, holding the moving object, withdrawing
                    draw_hand(frame, grip, self.hands[k].side, size, self.skin,
                              mask[t] if mask is not None else None)
            yield frame

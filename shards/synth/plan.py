"""What to generate: participants, splits, videos, segment timings and labels.

The plan is made from the seed alone, before any pixel is drawn, so annotation files are
byte-identical for a seed whatever the number of workers. Each video gets its own seed for
rendering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from shards.datasets import get_dataset
from shards.synth.vocab import NOUNS, VERBS, action_combos, compatible

EGTEA_RECIPES = ("PastaSalad", "GreekSalad", "ContinentalBreakfast", "BaconAndEggs",
                 "Cheeseburger", "TurkeySandwich", "Pizza")
GTEA_SUBJECTS = ("S1", "S2", "S3", "S4")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")


@dataclass
class Options:
    """Generation options shared by every format (the CLI exposes each one)."""

    width: int = 456
    height: int = 256
    # One rate, or several given to the videos in turn (EPIC formats); None: the
    # dataset's default (shards.synth.layouts).
    fps: float | tuple[float, ...] | None = None
    unseen_fraction: float = 0.25
    test_fraction: float = 0.25
    min_seconds: float = 1.5
    max_seconds: float = 4.0
    min_gap: float = 0.5
    max_gap: float = 1.5
    segments_per_video: int = 8
    # The head-mounted camera: RMS pan speed (px/s at a 256-px-high frame) and the share of
    # the handled object's motion the head follows (0: none; 1: the object stays centred).
    camera_speed: float = 40.0
    camera_follow: float = 1.0
    # One-way strokes take at least this share of their segment; shakes and stirs make at
    # most this many cycles per segment (7 sampled frames tell at most 3 apart).
    stroke_fill: float = 0.6
    max_cycles: float = 1.5
    # The wearer's hands (shards.synth.hands): 0 none; 1 the hand that handles the object;
    # 2 also the free hand, resting in view in half of the segments.
    hands: int = 2
    masks: bool = True
    crf: int = 23
    preset: str = "superfast"
    workers: int = 1

    def validate(self) -> None:
        """Raises ValueError naming the option that is out of range."""
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(f"width/height must be even and >= 16, got {self.width}x{self.height}")
        if self.fps is None or not self.rates() or not all(r > 0 for r in self.rates()):
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not 0.0 <= self.unseen_fraction < 1.0:
            raise ValueError(f"unseen_fraction must be in [0, 1), got {self.unseen_fraction}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got "
                             f"{self.min_seconds}, {self.max_seconds}")
        if not 0 < self.min_gap <= self.max_gap:
            raise ValueError(f"need 0 < min_gap <= max_gap, got {self.min_gap}, {self.max_gap}")
        if self.camera_speed < 0 or not 0.0 <= self.camera_follow <= 1.0:
            raise ValueError(f"need camera_speed >= 0 and camera_follow in [0, 1], got "
                             f"{self.camera_speed}, {self.camera_follow}")
        if not 0.0 <= self.stroke_fill <= 1.0 or self.max_cycles < 1.0:
            raise ValueError(f"need stroke_fill in [0, 1] and max_cycles >= 1, got "
                             f"{self.stroke_fill}, {self.max_cycles}")
        if self.hands not in (0, 1, 2):
            raise ValueError(f"hands must be 0, 1 or 2, got {self.hands}")
        if self.segments_per_video < 1 or self.workers < 1:
            raise ValueError("segments_per_video and workers must be >= 1")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        if self.preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}, got {self.preset!r}")

    def rates(self) -> tuple[float, ...]:
        """The frame rates videos are written at, in the order they are given out."""
        if self.fps is None:
            return ()
        if isinstance(self.fps, (int, float)):
            return (float(self.fps),)
        return tuple(float(r) for r in self.fps)


@dataclass
class SegmentPlan:
    """One labelled action inside a video. Frames are 1-based and inclusive."""

    segment_id: str
    start_frame: int
    stop_frame: int
    verb: int
    noun: int
    split: str
    class_id: int = -1  # single-label formats: index into the action combos
    fold: int = -1  # EGTEA: the split (0..2) whose test set holds this clip


@dataclass
class VideoPlan:
    """One video (or GTEA-61 frame folder) of one participant."""

    video_id: str
    participant: str
    participant_index: int
    split: str
    num_frames: int
    seed: int
    fps: float = 30.0  # the rate it is written at; its segments' frames count its own frames
    segments: list[SegmentPlan] = field(default_factory=list)


@dataclass
class DatasetPlan:
    """Everything to generate for one dataset."""

    fmt: str  # the dataset's name
    participants: list[str]
    unseen: list[str]
    videos: list[VideoPlan]
    options: Options
    seed: int
    combos: list[tuple[int, int]]


def _tail_weights(n: int) -> np.ndarray:
    """Mildly long-tailed class frequencies, so many-shot and tail lists mean something."""
    w = 1.0 / (1.0 + 0.3 * np.arange(n))
    return w / w.sum()


def _sample_verb_noun(rng: np.random.Generator) -> tuple[int, int]:
    verb = int(rng.choice(len(VERBS), p=_tail_weights(len(VERBS))))
    nouns = [n for n in range(len(NOUNS)) if compatible(verb, n)]
    w = _tail_weights(len(NOUNS))[nouns]
    return verb, int(rng.choice(nouns, p=w / w.sum()))


def _split_counts(n: int, fractions: list[float]) -> list[int]:
    """Splits ``n`` items by ``fractions`` (first share gets the rounding rest, and >= 1)."""
    counts = [int(round(n * f)) for f in fractions[1:]]
    while sum(counts) > max(0, n - 1) and any(counts):
        counts[counts.index(max(counts))] -= 1
    return [n - sum(counts)] + counts


def _layout(rng: np.random.Generator, durations: list[int], opts: Options, fps: float) -> tuple[list, int]:
    """Places segments of ``durations`` frames with gaps; returns [(start, stop)], total frames."""
    pos = 0
    spans = []
    for d in durations:
        pos += max(1, int(round(rng.uniform(opts.min_gap, opts.max_gap) * fps)))
        spans.append((pos + 1, pos + d))
        pos += d
    pos += max(1, int(round(rng.uniform(opts.min_gap, opts.max_gap) * fps)))
    return spans, pos


def _durations(rng: np.random.Generator, n: int, opts: Options, fps: float) -> list[int]:
    return [max(2, int(round(rng.uniform(opts.min_seconds, opts.max_seconds) * fps)))
            for _ in range(n)]


Planner = Callable[[int, int, int, Options, np.random.Generator], DatasetPlan]


@dataclass(frozen=True)
class SynthLayout:
    """One dataset's synthetic writer.

    Attributes:
        plan: ``(participants, segments, seed, options, rng) -> DatasetPlan``.
        annotations: Writes the annotation files of a plan into a folder (None: the layout
            of the videos is the annotation, as GTEA-61's frame folders).
        video_path: ``(out, video) -> path`` of a planned video or frame folder.
        frame_folders: Videos are written as PNG frame folders, not MP4 files.
        default_fps: Rate when none is asked: EPIC's 29.97 (its 59.94/50 would double the
            files, and its annotations number frames at the release rate whatever the
            video's), EGTEA's and GTEA-61's real 24, which their readers assume.
        several_rates: Whether videos may be given different rates (EPIC does).
    """

    plan: Planner
    annotations: Callable[[DatasetPlan, Path], None] | None
    video_path: Callable[[Path, VideoPlan], Path]
    frame_folders: bool = False
    default_fps: float = 30.0
    several_rates: bool = False


def synth_layout(name: str) -> SynthLayout:
    """The synthetic writer of dataset ``name``.

    Raises:
        ValueError: unknown dataset, or one that has no synthetic writer.
    """
    dataset = get_dataset(name)
    if dataset.synth is None:
        raise ValueError(f"dataset '{name}' has no synthetic writer")
    return dataset.synth()


def make_plan(fmt: str, participants: int, segments: int, seed: int, opts: Options) -> DatasetPlan:
    """Plans a dataset ``fmt`` (a registered dataset with a synthetic writer) with
    ``segments`` segments over ``participants`` people."""
    layout = synth_layout(fmt)
    if opts.fps is None:
        opts.fps = layout.default_fps
    opts.validate()
    if len(opts.rates()) > 1 and not layout.several_rates:
        raise ValueError(f"several frame rates are for the EPIC formats; {fmt} videos share one rate")
    if participants < 1 or segments < 1:
        raise ValueError(f"need participants >= 1 and segments >= 1, got {participants}, {segments}")
    rng = np.random.default_rng([seed, 0x5EED])
    plan = layout.plan(participants, segments, seed, opts, rng)
    plan.fmt = fmt
    return plan


def _video_seeds(seed: int, n: int) -> list[int]:
    children = np.random.SeedSequence([seed, 0x51DE0]).spawn(n)
    return [int(c.generate_state(1)[0]) for c in children]


def _per_participant(segments: int, participants: int) -> list[int]:
    return [segments // participants + (i < segments % participants) for i in range(participants)]


def plan_epic(participants: int, segments: int, seed: int, opts: Options,
              rng: np.random.Generator, extension: bool = False) -> DatasetPlan:
    """EPIC kitchens: seen participants in train and the test splits, unseen ones only in
    test; ``extension``: EPIC-100's splits, video numbers and narration ids."""
    names = [f"P{i + 1:02d}" for i in range(participants)]
    n_unseen = min(participants - 1, int(round(participants * opts.unseen_fraction)))
    if opts.unseen_fraction > 0 and participants >= 2:
        n_unseen = max(1, n_unseen)
    unseen = names[participants - n_unseen:] if n_unseen else []
    if not extension:
        seen_splits, seen_fr = ["train", "s1"], [1 - opts.test_fraction, opts.test_fraction]
        unseen_splits, unseen_fr = ["s2"], [1.0]
    else:
        half = opts.test_fraction / 2
        seen_splits, seen_fr = ["train", "validation", "test"], [1 - opts.test_fraction, half, half]
        # Unseen participants: the first half are validation's, the rest test's (one: both).
        unseen_splits, unseen_fr = ["validation", "test"], [0.5, 0.5]
    groups = []  # (participant index, split, count)
    for i, (name, count) in enumerate(zip(names, _per_participant(segments, participants))):
        if name in unseen:
            k = unseen.index(name)
            if len(unseen) >= 2 and len(unseen_splits) == 2:
                splits = [unseen_splits[0] if k < (len(unseen) + 1) // 2 else unseen_splits[1]]
                counts = [count]
            else:
                splits, counts = unseen_splits, _split_counts(count, unseen_fr)
        else:
            splits, counts = seen_splits, _split_counts(count, seen_fr)
        groups += [(i, s, c) for s, c in zip(splits, counts) if c > 0]
    videos: list[VideoPlan] = []
    number = {n: 0 for n in names}
    for i, split, count in groups:
        for chunk in range(math.ceil(count / opts.segments_per_video)):
            n = min(opts.segments_per_video, count - chunk * opts.segments_per_video)
            number[names[i]] += 1
            vid = f"{names[i]}_{number[names[i]] + (100 if extension else 0):02d}"
            rates = opts.rates()
            fps = rates[len(videos) % len(rates)]
            spans, total = _layout(rng, _durations(rng, n, opts, fps), opts, fps)
            video = VideoPlan(vid, names[i], i, split, total, 0, fps)
            for k, (a, b) in enumerate(spans):
                verb, noun = _sample_verb_noun(rng)
                video.segments.append(SegmentPlan("", a, b, verb, noun, split))
            videos.append(video)
    uid = 0
    for video in videos:
        for k, seg in enumerate(video.segments):
            seg.segment_id = f"{video.video_id}_{k}" if extension else str(uid)
            uid += 1
    for video, s in zip(videos, _video_seeds(seed, len(videos))):
        video.seed = s
    return DatasetPlan("", names, unseen, videos, opts, seed, action_combos())


def plan_egtea(participants: int, segments: int, seed: int, opts: Options,
                rng: np.random.Generator) -> DatasetPlan:
    combos = action_combos()[:106]
    names = [f"P{i + 1:02d}" for i in range(participants)]
    weights = _tail_weights(len(combos))
    videos: list[VideoPlan] = []
    for i, (name, count) in enumerate(zip(names, _per_participant(segments, participants))):
        for chunk in range(math.ceil(count / opts.segments_per_video)):
            n = min(opts.segments_per_video, count - chunk * opts.segments_per_video)
            recipe = EGTEA_RECIPES[(i + chunk) % len(EGTEA_RECIPES)]
            session = f"{name}-R{chunk + 1:02d}-{recipe}"
            fps = opts.rates()[0]
            spans, total = _layout(rng, _durations(rng, n, opts, fps), opts, fps)
            video = VideoPlan(session, name, i, "all", total, 0, fps)
            for a, b in spans:
                cls = int(rng.choice(len(combos), p=weights))
                start_ms = int(round((a - 1) / fps * 1000))
                stop_ms = int(round(b / fps * 1000))
                clip = f"{session}-{start_ms}-{stop_ms}-F{a:06d}-F{b:06d}"
                verb, noun = combos[cls]
                video.segments.append(SegmentPlan(clip, a, b, verb, noun, "all", class_id=cls))
            videos.append(video)
    # Three train/test partitions of the clips, each clip tested in exactly one of them.
    clips = [seg for v in videos for seg in v.segments]
    for rank, index in enumerate(rng.permutation(len(clips))):
        clips[int(index)].fold = rank % 3
    for video, s in zip(videos, _video_seeds(seed, len(videos))):
        video.seed = s
    return DatasetPlan("", names, [], videos, opts, seed, combos)


def plan_gtea61(participants: int, segments: int, seed: int, opts: Options,
               rng: np.random.Generator) -> DatasetPlan:
    if participants > len(GTEA_SUBJECTS):
        raise ValueError(f"GTEA-61 has subjects S1..S4: participants must be <= 4, got {participants}")
    subjects = list(GTEA_SUBJECTS[:participants])
    # Every subject performs every class (as in GTEA-61), so leave-one-subject-out folds
    # test classes that the other subjects trained on.
    n_classes = max(1, min(61, segments // len(subjects)))
    combos = action_combos()[:61]
    fps = opts.rates()[0]
    durations = _durations(rng, segments, opts, fps)
    instances: dict[tuple[str, int], int] = {}
    videos: list[VideoPlan] = []
    for i in range(segments):
        subj = i % len(subjects)
        cls = (i // len(subjects)) % n_classes
        key = (subjects[subj], cls)
        instances[key] = instances.get(key, 0) + 1
        verb, noun = combos[cls]
        folder = f"{VERBS[verb]}_{NOUNS[noun]}"
        vid = f"{subjects[subj]}/{folder}/{instances[key]}"
        # A frame folder holds just the action: the segment is the whole "video".
        video = VideoPlan(vid, subjects[subj], subj, subjects[subj], durations[i], 0, fps)
        video.segments.append(SegmentPlan(vid, 1, durations[i], verb, noun, subjects[subj],
                                          class_id=cls))
        videos.append(video)
    for video, s in zip(videos, _video_seeds(seed, len(videos))):
        video.seed = s
    return DatasetPlan("", subjects, [], videos, opts, seed, combos)

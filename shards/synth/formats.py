"""Annotation files of each dataset, in the real file names, columns and formatting.

Everything is written with explicit string formatting (no float repr surprises), ``\\n`` line
ends and atomic writes, so one seed always gives the same bytes.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from shards.files import atomic_write_text
from shards.synth.plan import DatasetPlan, SegmentPlan, VideoPlan
from shards.synth.video import exact_rate
from shards.annotations import egtea, epic55, epic100
from shards.timing import epic55_release_fps, epic100_release_fps, release_frame
from shards.synth.vocab import NOUNS, VERBS, names_with_placeholders

VERB_CATEGORY = {"take": "retrieve", "put": "leave", "open": "access", "close": "block",
                 "shake": "shake", "stir": "mix", "move-left": "move", "move-right": "move",
                 "turn": "rotate"}
NOUN_CATEGORY = {"pan": "cookware", "bottle": "containers", "jar": "containers",
                 "drawer": "storage", "kettle": "appliances", "fridge": "appliances",
                 "box": "containers", "cup": "crockery", "knife": "cutlery",
                 "plate": "crockery", "bowl": "crockery", "spoon": "cutlery",
                 "tomato": "vegetables", "sponge": "cleaning equipment"}


def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _write(path: Path, rows: list[list]) -> None:
    atomic_write_text(path, _csv(rows))


def timestamp(seconds: float, decimals: int = 2) -> str:
    """``HH:MM:SS.ff`` as in the EPIC files."""
    scale = 10 ** decimals
    ticks = int(round(seconds * scale))
    whole, frac = divmod(ticks, scale)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}.{frac:0{decimals}d}"


def fps_text(fps: float) -> str:
    """The fps as the EPIC video-info files write it (15 significant digits)."""
    return f"{float(exact_rate(fps)):.15g}"


def _segments(plan: DatasetPlan, *splits: str) -> list[tuple[VideoPlan, SegmentPlan]]:
    return [(v, s) for v in plan.videos for s in v.segments if s.split in splits]


def _label_fields(seg: SegmentPlan) -> list:
    verb, noun = VERBS[seg.verb], NOUNS[seg.noun]
    return [f"{verb} {noun}", verb, seg.verb, noun, seg.noun, f"['{noun}']", f"[{seg.noun}]"]


def segment_seconds(video: VideoPlan, seg: SegmentPlan) -> tuple[float, float]:
    """When a planned segment starts (its first frame) and stops (its last frame ends)."""
    rate = float(exact_rate(video.fps))
    return (seg.start_frame - 1) / rate, seg.stop_frame / rate


def _timing(release_fps, video: VideoPlan, seg: SegmentPlan) -> list:
    """start/stop timestamps and frames as the release writes them: the frames count the
    public frame release's frames (60 fps; EPIC-100's 50 fps videos: 50), not the video's."""
    start, stop = segment_seconds(video, seg)
    numbering = release_fps(float(exact_rate(video.fps)))
    first = release_frame(start, numbering)
    return [timestamp(start), timestamp(stop), first, max(first, release_frame(stop, numbering))]


def many_shot(counts: Counter, used: int) -> list:
    """Classes with at least half the uniform share of the train segments (and >= 2).

    EPIC-55 calls a class many-shot above 100 train instances; the synthetic kitchens are
    far smaller, so the threshold is relative to the train size.
    """
    total = sum(counts.values())
    threshold = max(2, -(-total // (2 * max(1, used))))
    return sorted(c for c, n in counts.items() if n >= threshold)


def tail_classes(counts: Counter, head_share: float = 0.8) -> list[int]:
    """EPIC-100 tail: classes outside the most frequent ones that hold ``head_share`` of train."""
    ranked = sorted(counts, key=lambda c: (-counts[c], c))
    total, acc, head = sum(counts.values()), 0, set()
    for c in ranked:
        if acc >= head_share * total:
            break
        head.add(c)
        acc += counts[c]
    return sorted(c for c in ranked if c not in head)


def write_epic55(plan: DatasetPlan, folder: Path) -> None:
    """EPIC-KITCHENS-55 files: train labels, S1/S2 timestamps and labels, classes, info."""
    head = ["uid", "participant_id", "video_id", "narration", "start_timestamp",
            "stop_timestamp", "start_frame", "stop_frame", "verb", "verb_class", "noun",
            "noun_class", "all_nouns", "all_noun_classes"]
    ts_head = ["uid", "participant_id", "video_id", "start_timestamp", "stop_timestamp",
               "start_frame", "stop_frame"]

    def labelled(split: str) -> list[list]:
        rows = []
        for v, s in _segments(plan, split):
            lab = _label_fields(s)
            rows.append([s.segment_id, v.participant, v.video_id, lab[0],
                         *_timing(epic55_release_fps, v, s), *lab[1:]])
        return [head] + rows

    _write(folder / "EPIC_train_action_labels.csv", labelled("train"))
    for split in ("s1", "s2"):
        _write(folder / f"EPIC_test_{split}_labels.csv", labelled(split))
        _write(folder / f"EPIC_test_{split}_timestamps.csv", [ts_head] + [
            [s.segment_id, v.participant, v.video_id, *_timing(epic55_release_fps, v, s)]
            for v, s in _segments(plan, split)])
    sizes = epic55.NUM_CLASSES
    verbs = names_with_placeholders(VERBS, sizes["verb"], "verb")
    nouns = names_with_placeholders(NOUNS, sizes["noun"], "noun")
    _write(folder / "EPIC_verb_classes.csv",
           [["verb_id", "class_key", "verbs"]] + [[i, n, f"['{n}']"] for i, n in enumerate(verbs)])
    _write(folder / "EPIC_noun_classes.csv",
           [["noun_id", "class_key", "nouns"]] + [[i, n, f"['{n}']"] for i, n in enumerate(nouns)])
    _write(folder / "EPIC_video_info.csv", [["video", "resolution", "duration", "fps"]] + [
        [v.video_id, f"{plan.options.width}x{plan.options.height}",
         f"{v.num_frames / float(exact_rate(v.fps)):.6f}", fps_text(v.fps)] for v in plan.videos])
    train = _segments(plan, "train")
    vc = Counter(s.verb for _, s in train)
    nc = Counter(s.noun for _, s in train)
    ac = Counter((s.verb, s.noun) for _, s in train)
    _write(folder / "EPIC_many_shot_verbs.csv",
           [["verb_class", "verb"]] + [[c, VERBS[c]] for c in many_shot(vc, len(VERBS))])
    _write(folder / "EPIC_many_shot_nouns.csv",
           [["noun_class", "noun"]] + [[c, NOUNS[c]] for c in many_shot(nc, len(NOUNS))])
    _write(folder / "EPIC_many_shot_actions.csv",
           [["action_class", "noun", "noun_class", "verb", "verb_class"]] +
           [[f"({v}, {n})", NOUNS[n], n, VERBS[v], v] for v, n in many_shot(ac, len(ac))])


def write_epic100(plan: DatasetPlan, folder: Path) -> None:
    """EPIC-KITCHENS-100 files: train/validation/test(+labels), classes, info, unseen, tail."""
    ts_head = ["narration_id", "participant_id", "video_id", "narration_timestamp",
               "start_timestamp", "stop_timestamp", "start_frame", "stop_frame"]
    head = ts_head + ["narration", "verb", "verb_class", "noun", "noun_class", "all_nouns",
                      "all_noun_classes"]

    def rows(split: str, labels: bool) -> list[list]:
        out = []
        for v, s in _segments(plan, split):
            start, stop = segment_seconds(v, s)
            said = timestamp(start + 0.1 * (stop - start), 3)
            row = [s.segment_id, v.participant, v.video_id, said, *_timing(epic100_release_fps, v, s)]
            out.append(row + (_label_fields(s) if labels else []))
        return [head if labels else ts_head] + out

    _write(folder / "EPIC_100_train.csv", rows("train", True))
    _write(folder / "EPIC_100_validation.csv", rows("validation", True))
    _write(folder / "EPIC_100_test_labels.csv", rows("test", True))
    _write(folder / "EPIC_100_test_timestamps.csv", rows("test", False))
    sizes = epic100.NUM_CLASSES
    for kind, names, cats in (("verb", VERBS, VERB_CATEGORY), ("noun", NOUNS, NOUN_CATEGORY)):
        table = names_with_placeholders(names, sizes[kind], kind)
        _write(folder / f"EPIC_100_{kind}_classes.csv", [["id", "key", "instances", "category"]] +
               [[i, n, f"['{n}']", cats.get(n, "placeholder")] for i, n in enumerate(table)])
    _write(folder / "EPIC_100_video_info.csv", [["video_id", "duration", "fps", "resolution"]] + [
        [v.video_id, f"{v.num_frames / float(exact_rate(v.fps)):.6f}", fps_text(v.fps),
         f"{plan.options.width}x{plan.options.height}"] for v in plan.videos])
    for split in ("validation", "test"):
        people = sorted({v.participant for v in plan.videos
                         if v.split == split and v.participant in plan.unseen})
        _write(folder / f"EPIC_100_unseen_participant_ids_{split}.csv",
               [["participant_id"]] + [[p] for p in people])
    train = _segments(plan, "train")
    _write(folder / "EPIC_100_tail_verbs.csv",
           [["verb"]] + [[c] for c in tail_classes(Counter(s.verb for _, s in train))])
    _write(folder / "EPIC_100_tail_nouns.csv",
           [["noun"]] + [[c] for c in tail_classes(Counter(s.noun for _, s in train))])


def write_egtea(plan: DatasetPlan, folder: Path) -> None:
    """EGTEA Gaze+ split files (3 splits) and the action/verb/noun index files."""
    clips = [s for v in plan.videos for s in v.segments]
    for k in range(3):
        for part, keep in (("train", lambda s: s.fold != k), ("test", lambda s: s.fold == k)):
            lines = [f"{s.segment_id} {s.class_id + 1} {s.verb + 1} {s.noun + 1}\n"
                     for s in clips if keep(s)]
            atomic_write_text(folder / f"{part}_split{k + 1}.txt", "".join(lines))
    sizes = egtea.NUM_CLASSES
    actions = [f"{VERBS[v].capitalize()} {NOUNS[n]}" for v, n in plan.combos]
    for name, table in (("action", actions),
                        ("verb", names_with_placeholders(VERBS, sizes["verb"], "verb")),
                        ("noun", names_with_placeholders(NOUNS, sizes["noun"], "noun"))):
        atomic_write_text(folder / f"{name}_idx.txt",
                          "".join(f"{n} {i + 1}\n" for i, n in enumerate(table)))


"""GTEA-61 has no annotation file: its labels are the class folders."""

"""Shards take every segment's frames from its time, on raw videos of every EPIC frame rate.

Each test video's frame i shows the number i as a 12-bit pattern of large blocks that
survives the encoder, the resize to the stored size and JPEG, so the test reads back from
the stored frames which raw frames the builder took. The annotations are written the way
the EPIC releases write them: timestamps, and start/stop frames that count the public
frame release's frames (60 fps; EPIC-100's 50 fps videos at 50), not the raw file's.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from launcher.cli import main
from shards.schema import SchemaError, decode_sample, read_manifest, shard_paths
from shards.synth.formats import fps_text, timestamp
from shards.synth.video import exact_rate
from shards.timing import parse_timestamp, release_fps, release_frame
from shards.toyvideo import write_video

pytestmark = pytest.mark.slow
FRAMES, SIDE = 8, 96
BITS, ROWS, COLS = 12, 4, 5  # bit b sits in block (b // 4, b % 4) of a 4 x 5 grid, half a block in

# video id: (fps, width, height, codec, seconds)
VIDEOS = {
    "P01_01": (59.94, 480, 270, "libx264", 4.0),
    "P01_02": (29.97, 256, 144, "libx264", 4.0),
    "P01_03": (90.0, 2560, 1440, "libx264", 3.0),
    "P01_04": (50.0, 320, 180, "libx265", 4.0),
    "P01_05": (47.95, 320, 180, "mpeg4", 4.0),
}


def pattern(index: int, height: int, width: int) -> np.ndarray:
    image = np.full((height, width, 3), 40, np.uint8)
    bh, bw = height // ROWS, width // COLS
    for bit in range(BITS):
        if (index >> bit) & 1:
            r, c = divmod(bit, 4)
            image[r * bh + bh // 2 : (r + 1) * bh + bh // 2, c * bw + bw // 2 : (c + 1) * bw + bw // 2] = 215
    return image


def read_index(frame: np.ndarray) -> int:
    height, width = frame.shape[:2]
    bh, bw = height / ROWS, width / COLS
    grey = frame.mean(axis=2)
    index = 0
    for bit in range(BITS):
        r, c = divmod(bit, 4)
        y, x = int((r + 1) * bh), int((c + 1) * bw)
        patch = grey[y - int(bh / 4) : y + int(bh / 4) + 1, x - int(bw / 4) : x + int(bw / 4) + 1]
        index |= int(patch.mean() > 128) << bit
    return index


def segments_for(video: str, seconds: float) -> list[tuple[float, float]]:
    """Segment times: from the very start, the middle, one past the end (clamped), a short one."""
    spans = [(0.0, 0.8), (0.95, 1.9), (seconds - 0.9, seconds + 0.03), (1.2, 1.25)]
    if video == "P01_02":
        spans.append((seconds + 1.0, seconds + 2.0))  # really outside its video: a failure
    return spans


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rates")
    for video, (fps, width, height, codec, seconds) in VIDEOS.items():
        count = int(round(seconds * float(exact_rate(fps))))
        frames = (pattern(i, height, width) for i in range(count))
        write_video(root / "videos" / "P01" / f"{video}.MP4", frames, fps=fps, codec=codec, size=(height, width))
    return root


def write_annotations(root: Path, fmt: str, wrong_rate: str | None = None) -> Path:
    folder = root / f"annotations_{fmt}"
    folder.mkdir(exist_ok=True)
    rows, uid = [], 0
    for video, (fps, *_, seconds) in VIDEOS.items():
        numbering = release_fps(fmt, fps)
        for start, stop in segments_for(video, seconds):
            first = release_frame(start, numbering)
            rows.append([uid, "P01", video, timestamp(start), timestamp(stop), first,
                         max(first, release_frame(stop, numbering))])
            uid += 1
    labels = [[*r[:3], "take cup", *r[3:], "take", r[0] % 3, "cup", 2, "['cup']", "[2]"] for r in rows]
    if fmt == "epic55":
        head = ["uid", "participant_id", "video_id", "start_timestamp", "stop_timestamp", "start_frame", "stop_frame"]
        label_head = head[:3] + ["narration"] + head[3:] + ["verb", "verb_class", "noun", "noun_class", "all_nouns", "all_noun_classes"]
        write_csv(folder / "EPIC_train_action_labels.csv", [label_head, *labels])
        write_csv(folder / "EPIC_test_s1_timestamps.csv", [head, *rows])
        info = [["video", "resolution", "duration", "fps"]]
        info += [[v, f"{w}x{h}", f"{s:.6f}", fps_text(59.94 if v == wrong_rate else f)]
                 for v, (f, w, h, _, s) in VIDEOS.items()]
        write_csv(folder / "EPIC_video_info.csv", info)
    else:
        head = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
                "stop_timestamp", "start_frame", "stop_frame"]
        label_rows = [[f"{r[2]}_{r[0]}", r[1], r[2], r[3], r[3], r[4], r[5], r[6], "take cup", "take",
                       r[0] % 3, "cup", 2, "['cup']", "[2]"] for r in rows]
        write_csv(folder / "EPIC_100_train.csv", [head + ["narration", "verb", "verb_class", "noun", "noun_class",
                                                          "all_nouns", "all_noun_classes"], *label_rows])
        info = [["video_id", "duration", "fps", "resolution"]]
        info += [[v, f"{s:.6f}", fps_text(f), f"{w}x{h}"] for v, (f, w, h, _, s) in VIDEOS.items()]
        write_csv(folder / "EPIC_100_video_info.csv", info)
    return folder


def write_csv(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def build(dataset: Path, annotations: Path, fmt: str, split: str, out: Path) -> int:
    return main([
        "shards", "build", "--format", fmt, "--root", str(dataset / "videos"), "--annotations", str(annotations),
        "--split", split, "--out", str(out), "--frames", str(FRAMES), "--short-side", str(SIDE),
        "--workers", "2", "--no-progress",
    ])


def check_samples(out: Path, annotations_rows: dict[str, dict]) -> dict[str, int]:
    """Checks every stored frame against its segment's time; returns frames checked per video."""
    checked: dict[str, int] = {}
    for raw in wds.WebDataset([str(p) for p in shard_paths(out)], shardshuffle=False):
        sample = decode_sample(raw)
        meta = sample["meta"]
        video = meta["video_id"]
        fps, *_, seconds = VIDEOS[video]
        rate = float(exact_rate(fps))
        row = annotations_rows[meta["segment_id"]]
        assert (meta["start_frame"], meta["stop_frame"]) == (int(row["start_frame"]), int(row["stop_frame"]))
        assert meta["fps"] == pytest.approx(rate, rel=1e-3)
        indices = [read_index(frame) for frame in sample["frames"]]
        assert indices == meta["native_frames"], (meta["segment_id"], indices, meta["native_frames"])
        start, stop = meta["start_time"], meta["stop_time"]
        end = round(seconds * rate) / rate
        assert meta["clamped"] == (stop > end)
        stop = min(stop, end)
        times = np.array(indices) / rate
        assert np.all(np.diff(indices) >= 0), "frames out of order"
        # Every frame shows part of the segment: it starts before the stop, ends after the start.
        assert np.all(times < stop + 1e-6) and np.all(times + 1 / rate > start - 1e-6), (meta["segment_id"], times, start, stop)
        # Together they cover it: no more than one chunk (of M) from either end.
        chunk = max((stop - start) / FRAMES, 1 / rate)
        assert times[0] - start <= chunk + 1 / rate and stop - (times[-1] + 1 / rate) <= chunk + 1 / rate
        checked[video] = checked.get(video, 0) + len(indices)
    return checked


def rows_by_id(path: Path, id_column: str) -> dict[str, dict]:
    with open(path) as fh:
        return {r[id_column]: r for r in csv.DictReader(fh)}


def test_patterns_read_back_at_the_stored_size():
    for index in (0, 1, 77, 269, 4095):
        small = pattern(index, 1440, 2560)[::15, ::15]  # 96 x 171, as stored
        assert read_index(small) == index


@pytest.mark.parametrize("fmt", ["epic55", "epic100"])
def test_frames_come_from_the_segments_time_at_every_rate(dataset, tmp_path, fmt, capsys):
    annotations = write_annotations(dataset, fmt, wrong_rate="P01_05" if fmt == "epic55" else None)
    out = tmp_path / "train"
    assert build(dataset, annotations, fmt, "train", out) == 1  # the one segment outside its video
    manifest = read_manifest(out)
    name, id_column = (("EPIC_train_action_labels.csv", "uid") if fmt == "epic55" else ("EPIC_100_train.csv", "narration_id"))
    rows = rows_by_id(annotations / name, id_column)
    outside = [i for i, r in rows.items() if parse_timestamp(r["start_timestamp"]) > VIDEOS[r["video_id"]][-1]]
    assert len(outside) == 1
    assert [f["segment_id"] for f in manifest["failures"]] == outside
    assert "starts after the video's last decodable frame" in manifest["failures"][0]["reason"]
    assert manifest["num_samples"] == len(rows) - 1
    assert manifest["num_clamped"] == len(VIDEOS)  # the one stopping 0.03 s past each video's end
    checked = check_samples(out, rows)
    assert set(checked) == set(VIDEOS)
    mismatches = [m["video_id"] for m in manifest["rate_mismatches"]]
    assert mismatches == (["P01_05"] if fmt == "epic55" else [])
    print(f"{fmt}: {manifest['num_samples']} segments kept of {len(rows)} (1 outside its video), "
          f"{manifest['num_clamped']} clamped; frames checked per video: "
          + ", ".join(f"{v} {VIDEOS[v][0]} fps {n}" for v, n in sorted(checked.items())))


def test_test_split_from_a_timestamps_file(dataset, tmp_path):
    annotations = write_annotations(dataset, "epic55")
    out = tmp_path / "s1"
    assert build(dataset, annotations, "epic55", "s1", out) == 1
    rows = rows_by_id(annotations / "EPIC_test_s1_timestamps.csv", "uid")
    manifest = read_manifest(out)
    assert manifest["num_samples"] == len(rows) - 1 and len(manifest["failures"]) == 1
    checked = check_samples(out, rows)
    assert sum(checked.values()) == FRAMES * (len(rows) - 1)


def test_folders_of_the_old_mapping_are_refused(dataset, tmp_path, capsys):
    annotations = write_annotations(dataset, "epic55")
    out = tmp_path / "old"
    out.mkdir()
    (out / "build.json").write_text(json.dumps({"schema_version": 1, "params": {}, "segments_sha256": ""}))
    (out / "manifest.json").write_text(json.dumps({"schema_version": 1, "shards": [], "num_samples": 0,
                                                   "failures": [], "params": {}}))
    assert build(dataset, annotations, "epic55", "train", out) == 2
    err = capsys.readouterr().err
    assert "schema v1" in err and "--restart" in err and "Traceback" not in err
    with pytest.raises(SchemaError, match="rebuild the shards"):
        read_manifest(out)

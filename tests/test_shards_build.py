"""End to end on synthetic EPIC-55 kitchens: build, info, read back, failures, kill and resume."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import webdataset as wds

from launcher.cli import main
from shards.annotations import load_segments
from shards.schema import FLOW_CHANNELS, MAP_STRIDE, decode_sample, read_manifest, sample_key, shard_paths
from shards.synth import generate

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
FRAMES, SIDE = 8, 96


@pytest.fixture(scope="module")
def kitchens(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kitchens")
    return generate("epic55", out, participants=3, segments=24, seed=0, width=128, height=96)


def build_args(kitchens: Path, out: Path, *extra: str, root: Path | None = None) -> list[str]:
    return [
        "shards", "build", "--format", "epic55", "--root", str(root or kitchens / "videos"),
        "--annotations", str(kitchens / "annotations"), "--split", "train", "--out", str(out),
        "--frames", str(FRAMES), "--short-side", str(SIDE), "--flow-scale", "1.0", "--no-progress", *extra,
    ]


def shard_keys(out: Path) -> list[str]:
    keys = []
    for path in sorted(out.glob("*.tar")):
        with tarfile.open(path) as tar:
            keys += [name.split(".", 1)[0] for name in tar.getnames() if name.endswith(".json")]
    return keys


@pytest.fixture(scope="module")
def built(kitchens, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "train"
    assert main(build_args(kitchens, out, "--workers", "2", "--flow", "--shard-samples", "4")) == 0
    return out


def test_info_counts_one_sample_per_segment(kitchens, built, capsys):
    segments = load_segments("epic55", kitchens / "annotations", "train")
    capsys.readouterr()
    assert main(["shards", "info", str(built), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == info["segments"] == len(segments) > 0
    assert info["failed"] == 0 and info["shards"] > 1 and info["params"]["flow"] is True
    assert sorted(shard_keys(built)) == sorted(sample_key(s) for s in segments["segment_id"])
    manifest = read_manifest(built)
    for entry in manifest["shards"]:
        data = (built / entry["name"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert not list(built.glob("*.tmp"))


def test_reader_gets_schema_shapes_and_motion_matches_the_true_masks(kitchens, built):
    segments = load_segments("epic55", kitchens / "annotations", "train").set_index("segment_id")
    inside, outside, ious, background = [], [], [], []
    seen = 0
    for raw in wds.WebDataset([str(p) for p in shard_paths(built)], shardshuffle=False):
        sample = decode_sample(raw)
        meta = sample["meta"]
        row = segments.loc[meta["segment_id"]]
        height, width = meta["frame_size"]
        assert min(height, width) == SIDE
        assert sample["frames"].shape == (FRAMES, height, width, 3)
        assert sample["motion"].shape == (FRAMES, height // MAP_STRIDE, width // MAP_STRIDE)
        assert sample["flow"].shape == (FRAMES, FLOW_CHANNELS, height, width)
        assert (meta["verb_class"], meta["noun_class"]) == (row.verb_class, row.noun_class)
        times = np.array(meta["frame_times"])
        assert times[0] >= row.start_time - 1 / meta["fps"] and times[-1] < row.stop_time
        masks = np.load(kitchens / "masks" / f"{meta['video_id']}.npz")["mask"]
        for position, frame in enumerate(meta["native_frames"]):
            truth = cv2.resize(masks[frame].astype(np.float32), sample["motion"].shape[:0:-1], interpolation=cv2.INTER_AREA) >= 0.5
            moving = sample["motion"][position]
            if truth.any():
                inside.append(moving[truth].mean())
                flagged = moving >= 128
                ious.append((truth & flagged).sum() / (truth | flagged).sum())
            outside.append(moving[~truth].mean())
            background.append((moving[~truth] >= 128).mean())
        seen += 1
    assert seen == len(segments)
    print(f"synthetic kitchens 128x96: motion-map IoU {np.mean(ious):.3f}, mean moving fraction inside the "
          f"true masks {np.mean(inside) / 255:.3f} vs outside {np.mean(outside) / 255:.3f}, "
          f"background cells flagged {np.mean(background):.2%}")
    # Objects here are only ~25 px high and the maps 24x32 cells, where one cell of halo
    # costs much overlap: measured ~0.5 (0.58-0.6 at the demo's 228x128, in test_motion.py).
    assert np.mean(ious) > 0.4
    assert np.mean(background) < 0.05


def test_rerun_skips_finished_work(kitchens, built, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in built.glob("*.tar")}
    assert main(build_args(kitchens, built, "--workers", "2", "--flow", "--shard-samples", "4")) == 0
    assert {p.name: p.stat().st_mtime_ns for p in built.glob("*.tar")} == before
    # Other settings into the same folder are refused rather than mixed in.
    assert main(build_args(kitchens, built, "--shard-samples", "4")) == 2
    # The flow's patch stride changes the maps: it is a build parameter like the others.
    assert read_manifest(built)["params"]["motion"]["flow_stride"] == 6
    capsys.readouterr()
    assert main(build_args(kitchens, built, "--workers", "2", "--flow", "--shard-samples", "4", "--flow-stride", "4")) == 2
    assert "'flow_stride': 4" in capsys.readouterr().err


def test_broken_video_is_reported_and_the_rest_is_built(kitchens, tmp_path, capsys):
    root = tmp_path / "videos"
    shutil.copytree(kitchens / "videos", root)
    segments = load_segments("epic55", kitchens / "annotations", "train")
    bad_video = segments["video_id"].iloc[0]
    bad_path = next(root.rglob(f"{bad_video}.MP4"))
    bad_path.write_bytes(bad_path.read_bytes()[: bad_path.stat().st_size // 3])
    out = tmp_path / "shards"
    assert main(build_args(kitchens, out, "--workers", "2", root=root)) == 1
    failures = read_manifest(out)["failures"]
    bad = set(segments.loc[segments["video_id"] == bad_video, "segment_id"])
    assert {f["segment_id"] for f in failures} == bad
    assert all(f["video_id"] == bad_video and bad_path.name in f["reason"] for f in failures)
    good = set(segments["segment_id"]) - bad
    assert sorted(shard_keys(out)) == sorted(sample_key(s) for s in good)
    capsys.readouterr()
    assert main(["shards", "info", str(out)]) == 0
    assert f"{len(bad)} failed" in capsys.readouterr().out


def folder_bytes(out: Path) -> dict[str, bytes]:
    """Every shard and the manifest, byte for byte."""
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))} | {"manifest": (out / "manifest.json").read_bytes()}


def test_every_shard_is_a_sample_of_the_whole_split(kitchens, built):
    manifest = read_manifest(built)
    videos = {}
    for raw in wds.WebDataset([str(p) for p in shard_paths(built)], shardshuffle=False):
        videos.setdefault(raw["__url__"], set()).add(json.loads(raw["json"])["video_id"])
    # Written in (video, time) order, 4-sample shards of 8-segment videos would each hold one video.
    assert len(videos) == len(manifest["shards"]) >= 3
    assert all(len(v) >= 2 for v in videos.values())


def test_builds_are_byte_identical_with_any_worker_count(kitchens, built, tmp_path):
    out = tmp_path / "one_worker"
    assert main(build_args(kitchens, out, "--workers", "1", "--flow", "--shard-samples", "4")) == 0
    assert folder_bytes(out) == folder_bytes(built)


def test_killed_build_resumes_to_the_same_bytes(kitchens, built, tmp_path):
    out = tmp_path / "shards"
    args = build_args(kitchens, out, "--workers", "2", "--flow", "--shard-samples", "4")
    proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = out / "staging"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if staging.is_dir() and len(list(staging.rglob("*.tar"))) >= 3:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # the main process only: its workers must notice and stop
    proc.wait()
    assert not (out / "manifest.json").exists(), "the build finished before it could be killed"
    assert main(args) == 0
    keys = shard_keys(out)
    assert [k for k, n in Counter(keys).items() if n > 1] == []
    assert folder_bytes(out) == folder_bytes(built)
    assert not staging.exists()


def test_a_staging_folder_fpar_did_not_make_stops_the_build_and_survives(kitchens, tmp_path, capsys):
    out = tmp_path / "shards"
    foreign = out / "staging"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    args = build_args(kitchens, out, "--shard-samples", "4")
    for extra in ([], ["--restart"]):
        capsys.readouterr()
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert str(foreign) in err and "not created by fpar" in err and "Move or rename it" in err
        assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and (foreign / "notes.txt").read_text() == "mine"
    assert not list(out.glob("*.tar")) and not (out / "manifest.json").exists()
    foreign.rename(tmp_path / "moved")  # as the message says
    assert main(args) == 0
    assert not foreign.exists() and (tmp_path / "moved" / "notes.txt").read_text() == "mine"

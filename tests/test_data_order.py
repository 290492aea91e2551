"""Training order: a uniform mix of the split, a function of (seed, epoch), elastic over ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from launcher.cli import main
from shards.files import atomic_write_json
from shards.layout import plan_layout
from shards.schema import MANIFEST_NAME, SCHEMA_VERSION, encode_sample, sample_key, shard_name
from shards.writer import ShardWriter

REPO = Path(__file__).resolve().parents[1]
PARTICIPANTS, VIDEOS, SEGMENTS = 8, 4, 8  # 256 segments, 32 videos


def segments(participants=PARTICIPANTS, videos=VIDEOS, per_video=SEGMENTS) -> list[dict]:
    return [{"segment_id": f"P{p:02d}_{v:02d}_{s}", "video_id": f"P{p:02d}_{v:02d}", "participant": f"P{p:02d}",
             "verb_class": (p + v + s) % 4, "noun_class": s % 3}
            for p in range(1, participants + 1) for v in range(1, videos + 1) for s in range(per_video)]


def write_folder(out: Path, rows: list[dict], per_shard: int, shuffled: bool, size=(8, 8), frames=2) -> Path:
    """Shards of ``rows`` in video order (as old builds wrote them) or in the builder's layout."""
    out.mkdir(parents=True)
    by_key = {sample_key(r["segment_id"]): r for r in rows}
    if shuffled:
        groups = plan_layout(list(by_key), per_shard, seed=0)
    else:
        keys = list(by_key)
        groups = [keys[i : i + per_shard] for i in range(0, len(keys), per_shard)]
    rng = np.random.default_rng(0)
    records = []
    for number, keys in enumerate(groups):
        name = shard_name("epic55", "train", number)
        writer = ShardWriter(out, lambda: name, 1 << 40, records.append)
        for key in keys:
            meta = dict(by_key[key], dataset="epic55", class_id=-1, fps=60.0)
            pixels = (rng.random((frames, *size, 3)) * 255).astype(np.uint8)
            motion = (rng.random((frames, size[0] // 4, size[1] // 4)) * 255).astype(np.uint8)
            writer.write(key, encode_sample(meta, pixels, motion))
        writer.finish()
    atomic_write_json(out / MANIFEST_NAME, {
        "schema_version": SCHEMA_VERSION, "dataset": "epic55", "split": "train", "params": {"flow": False},
        "shards": [r.summary() for r in records], "num_samples": len(rows), "failures": [],
        "num_segments": len(rows)})
    return out


def order(capsys, folder: Path, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["data", "order", str(folder), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("shuffled", [True, False], ids=["built-layout", "video-order"])
def test_first_batches_are_a_mix_of_the_whole_split(tmp_path, capsys, shuffled):
    rows = segments()
    folder = write_folder(tmp_path / "shards", rows, per_shard=64, shuffled=shuffled)
    info = {r["segment_id"]: r for r in rows}
    for epoch in (0, 1, 5):
        first = order(capsys, folder, "--epoch", str(epoch), "--batch-size", "64")["segments"][:64]
        people = Counter(info[s]["participant"] for s in first)
        videos = Counter(info[s]["video_id"] for s in first)
        assert len(people) == PARTICIPANTS, people
        share = 64 / (PARTICIPANTS * VIDEOS)
        assert max(videos.values()) <= 3 * share, videos.most_common(3)


def test_order_is_the_same_for_any_world_size_with_the_same_global_batch(tmp_path, capsys):
    folder = write_folder(tmp_path / "shards", segments(per_video=3), per_shard=10, shuffled=True)
    one = order(capsys, folder, "--epoch", "2", "--seed", "3", "--batch-size", "8")
    parts = [order(capsys, folder, "--epoch", "2", "--seed", "3", "--batch-size", "2",
                   "--rank", str(r), "--world-size", "4") for r in range(4)]
    merged = [s for step in range(one["steps"]) for p in parts for s in p["segments"][step * 2 : (step + 1) * 2]]
    assert merged == one["segments"]
    n = len(segments(per_video=3))
    assert sorted(one["segments"][:n]) == sorted(r["segment_id"] for r in segments(per_video=3))
    assert order(capsys, folder, "--epoch", "3", "--seed", "3", "--batch-size", "8")["segments"] != one["segments"]
    assert main(["data", "order", str(folder), "--rank", "4", "--world-size", "4"]) == 2


def _train(run_dir: Path, shards: Path, nproc: int, *overrides: str) -> dict:
    command = [sys.executable, "-m", "launcher.cli", "train", str(REPO / "configs/experiments/tiny_cpu.yaml"),
               f"data.train_shards={shards}", "data.format=epic55", "train.log_samples=true",
               "train.precision=fp32", "model.input_size=32", "data.crop_size=32", "data.num_frames=2",
               *overrides, "--run-dir", str(run_dir), "--nproc", str(nproc)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _sequence(run_dir: Path, world: int, batch: int) -> dict[tuple[int, int], list[str]]:
    """(epoch, step) -> the step's global batch, rank slices in rank order (last write wins)."""
    steps: dict[tuple[int, int], dict[int, list[str]]] = {}
    for rank in range(world):
        path = run_dir / "samples" / f"rank{rank}.jsonl"
        for line in path.read_text().splitlines():
            record = json.loads(line)
            steps.setdefault((record["epoch"], record["step"]), {})[rank] = record["segments"]
    return {k: [s for r in sorted(v) for s in v[r]] for k, v in steps.items()}


@pytest.mark.slow
def test_resumed_at_another_world_size_continues_the_global_sequence(tmp_path):
    rows = segments(participants=3, videos=2, per_video=4)  # 24 samples: 6 steps of 4 per epoch
    shards = write_folder(tmp_path / "shards", rows, per_shard=7, shuffled=True, size=(32, 40))
    elastic, reference = tmp_path / "elastic", tmp_path / "reference"
    _train(elastic, shards, 2, "data.batch_size=2", "train.max_steps=4")  # stops in epoch 0
    resumed = _train(elastic, shards, 1, "data.batch_size=2")  # the global batch of 4 is kept
    assert "data.batch_size 2 -> 4 keeps the global batch of 4" in resumed.stderr
    _train(reference, shards, 1, "data.batch_size=4")
    first = _sequence(elastic, 2, 2)
    first = {k: v for k, v in first.items() if k[1] < 4}
    later = {k: v for k, v in _sequence(elastic, 1, 4).items() if k[1] >= 4}
    expected = _sequence(reference, 1, 4)
    assert {**first, **later} == expected
    for epoch in (0, 1):
        seen = [s for (e, _), ids in sorted(expected.items()) if e == epoch for s in ids]
        assert sorted(seen) == sorted(r["segment_id"] for r in rows)


def _checkpoint(run_dir: Path, **state) -> None:
    from fpar.engine import checkpoint as ckpt

    tag = run_dir / "checkpoints" / "step00000004"
    tag.mkdir(parents=True)
    atomic_write_json(tag / ckpt.STATE, {"world_size": 2, "global_batch": 6, **state})
    atomic_write_json(tag / ckpt.COMPLETE, {"step": 4})


def test_resume_at_another_world_size_keeps_the_global_batch_or_says_why_not(tmp_path):
    from fpar.config import ConfigError
    from fpar.experiment import load_experiment
    from fpar.run_setup import keep_global_batch

    cfg = load_experiment(REPO / "configs/experiments/tiny_cpu.yaml", ["data.batch_size=3"])
    _checkpoint(tmp_path)
    assert keep_global_batch(cfg, tmp_path, 2) is cfg
    assert keep_global_batch(cfg, tmp_path, 3).data.batch_size == 2
    assert keep_global_batch(cfg, tmp_path, 1).data.batch_size == 6
    with pytest.raises(ConfigError, match="global batch of 6 clips on 2 rank.*4 ranks cannot split"):
        keep_global_batch(cfg, tmp_path, 4)
    zero1 = load_experiment(REPO / "configs/experiments/tiny_cpu.yaml", ["train.zero_stage=1"])
    with pytest.raises(ConfigError, match="ZeRO-1 optimizer states partitioned over 2"):
        keep_global_batch(zero1, tmp_path, 1)

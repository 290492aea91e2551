"""ShardStream on tiny shards: rank splits, determinism, resume, damage, evaluation."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tarfile
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from fpar.data import DataConfig, DataShortfallError, ShardStream
from shards.files import atomic_write_json
from shards.schema import (
    FRAMES_EXT,
    MANIFEST_NAME,
    META_EXT,
    MOTION_EXT,
    SCHEMA_VERSION,
    encode_sample,
    pack_images,
    sample_key,
    unpack_images,
)
from shards.writer import ShardWriter

SIZES = (5, 2, 1)
ALL_IDS = {f"seg{i}" for i in range(sum(SIZES))}


def build_shards(out: Path, sizes=SIZES, bad_jpeg: str | None = None, count=8,
                 tamper: dict | None = None, params: dict | None = None) -> Path:
    """Writes tars of ``sizes`` samples (ids seg0, seg1, ...) and their manifest.

    ``tamper`` maps segment ids to a function changing that sample's members in place.
    """
    out.mkdir(parents=True)
    names = iter(f"toy-train-{i:06d}.tar" for i in range(len(sizes)))
    records = []
    writer = ShardWriter(out, lambda: next(names), 1 << 40, records.append)
    rng = np.random.default_rng(0)
    number = 0
    for size in sizes:
        for _ in range(size):
            segment = f"seg{number}"
            frames = (rng.random((count, 32, 40, 3)) * 255).astype(np.uint8)
            motion = (rng.random((count, 8, 10)) * 255).astype(np.uint8)
            meta = {"dataset": "epic55", "segment_id": segment, "video_id": "P01_01",
                    "participant": "P01", "verb_class": number % 4, "noun_class": number % 3,
                    "class_id": -1, "fps": 60.0, "frame_indices": list(range(1, count + 1))}
            members = encode_sample(meta, frames, motion)
            if segment == bad_jpeg:
                members[FRAMES_EXT] = pack_images([b"\xff\xd8not a jpeg"] * count)
            if tamper and segment in tamper:
                tamper[segment](members)
            writer.write(sample_key(segment), members)
            number += 1
        writer.finish()
    manifest = {"schema_version": SCHEMA_VERSION, "dataset": "epic55", "split": "train",
                "params": params or {"flow": False}, "shards": [r.summary() for r in records],
                "num_samples": number, "failures": [], "num_segments": number}
    atomic_write_json(out / MANIFEST_NAME, manifest)
    return out


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    return build_shards(tmp_path_factory.mktemp("data") / "shards")


def config(**kw) -> DataConfig:
    base = dict(crop_size=16, num_frames=3, batch_size=2, eval_batch_size=3)
    return DataConfig(**{**base, **kw})


def epoch(cfg, shard_dir, rank, world, number=0, start_step=0, seed=7):
    stream = ShardStream(cfg, shard_dir, train=True, rank=rank, world_size=world, seed=seed)
    return stream, list(stream.epoch_batches(number, start_step=start_step))


def own_ids(batches):
    ids = []
    for batch in batches:
        ids += [s for s, rep in zip(batch["segment_id"], batch["is_repeat"].tolist()) if not rep]
    return ids


@pytest.mark.parametrize("world,batch", [(2, 2), (2, 3), (3, 2)])
def test_ranks_see_disjoint_samples_whose_union_is_the_epoch(shard_dir, world, batch):
    cfg = config(batch_size=batch)
    for number in (0, 1):
        runs = [epoch(cfg, shard_dir, r, world, number) for r in range(world)]
        steps = {stream.steps_per_epoch for stream, _ in runs} | {len(b) for _, b in runs}
        assert steps == {math.ceil(len(ALL_IDS) / (world * batch))}
        per_rank = [own_ids(b) for _, b in runs]
        flat = [s for ids in per_rank for s in ids]
        assert len(flat) == len(set(flat)) and set(flat) == ALL_IDS
        for (_, batches), ids in zip(runs, per_rank):
            assert all(len(b["segment_id"]) == batch for b in batches)
            assert batches[0]["frames"].shape == (batch, 3, 16, 16, 3)
            assert batches[0]["motion"].shape == (batch, 3, 4, 4)
            assert batches[0]["verb"].dtype == torch.int64
            repeats = [s for b in batches for s, r in zip(b["segment_id"], b["is_repeat"]) if r]
            assert set(repeats) <= ALL_IDS  # padding repeats the epoch's first samples


def test_order_is_a_function_of_seed_and_epoch(shard_dir):
    cfg = config()
    _, first = epoch(cfg, shard_dir, 0, 1, number=0)
    _, again = epoch(cfg, shard_dir, 0, 1, number=0)
    _, other = epoch(cfg, shard_dir, 0, 1, number=1)
    _, reseeded = epoch(cfg, shard_dir, 0, 1, number=0, seed=8)
    assert own_ids(first) == own_ids(again)
    for a, b in zip(first, again):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["motion"], b["motion"])
    assert own_ids(first) != own_ids(other)
    assert own_ids(first) != own_ids(reseeded)
    assert set(own_ids(other)) == ALL_IDS


def test_resumed_epoch_is_the_tail_of_the_full_one(shard_dir):
    cfg = config()
    stream, full = epoch(cfg, shard_dir, 1, 2, number=3)
    for start in (1, stream.steps_per_epoch):
        _, tail = epoch(cfg, shard_dir, 1, 2, number=3, start_step=start)
        assert len(tail) == len(full) - start
        for a, b in zip(full[start:], tail):
            assert a["segment_id"] == b["segment_id"]
            assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["is_repeat"], b["is_repeat"])


def test_worker_processes_give_the_same_batches(shard_dir):
    _, inline = epoch(config(workers=0), shard_dir, 0, 2, number=2)
    before = torch.get_rng_state().clone()
    _, workers = epoch(config(workers=2), shard_dir, 0, 2, number=2)
    # Loader workers draw nothing from the global generator, which a resumed run restores.
    assert torch.equal(before, torch.get_rng_state())
    assert [b["segment_id"] for b in inline] == [b["segment_id"] for b in workers]
    for a, b in zip(inline, workers):
        for key in ("frames", "motion", "verb", "is_repeat"):
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("world", [1, 2, 3])
def test_eval_gives_each_segment_exactly_once(shard_dir, world):
    seen = []
    for rank in range(world):
        stream = ShardStream(config(), shard_dir, train=False, rank=rank, world_size=world, seed=0)
        batches = list(stream.eval_batches())
        assert all(len(b["segment_id"]) <= 3 for b in batches)
        assert not any(b["is_repeat"].any() for b in batches)
        seen += [s for b in batches for s in b["segment_id"]]
        assert stream.epoch_report()["seen"] == sum(len(b["segment_id"]) for b in batches)
    assert sorted(seen) == sorted(ALL_IDS)


def damage(shard_dir: Path, out: Path, how: str) -> Path:
    """Copies the shards and breaks the 5-sample tar: garbage after its 2nd sample, or cut."""
    shutil.copytree(shard_dir, out)
    tar_path = out / "toy-train-000000.tar"
    with tarfile.open(tar_path) as tar:
        third = [m for m in tar.getmembers() if m.name.startswith(sample_key("seg2") + ".")][0]
    data = bytearray(tar_path.read_bytes())
    if how == "garbage":
        data[third.offset : third.offset + 1024] = bytes(range(256)) * 4
    else:
        data = data[: third.offset]
    tar_path.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_broken_tar_is_a_shortfall(shard_dir, tmp_path, how):
    broken = damage(shard_dir, tmp_path / "broken", how)
    with pytest.raises(DataShortfallError, match="toy-train-000000.tar"):
        epoch(config(), broken, 0, 1)
    stream, batches = epoch(config(max_shortfall=0.5), broken, 0, 1)
    report = stream.epoch_report()
    assert report["expected"] == 8 and report["shortfall"] == 3 and report["seen"] == 5
    assert len(batches) == stream.steps_per_epoch and set(own_ids(batches)) == ALL_IDS - {"seg2", "seg3", "seg4"}
    assert any("read 2 of 5" in p for p in report["problems"])
    evaluation = ShardStream(config(max_shortfall=0.5), broken, train=False, rank=0, world_size=1, seed=0)
    assert len([s for b in evaluation.eval_batches() for s in b["segment_id"]]) == 5
    assert evaluation.epoch_report()["shortfall"] == 3


def test_undecodable_sample_is_skipped_and_counted(tmp_path, caplog):
    shards = build_shards(tmp_path / "bad", bad_jpeg="seg6")
    stream, batches = epoch(config(), shards, 0, 1)
    report = stream.epoch_report()
    assert report["skipped_undecodable"] == 1 and report["seen"] == 7 and report["shortfall"] == 0
    assert len(batches) == 4 and set(own_ids(batches)) == ALL_IDS - {"seg6"}
    assert sum(int(b["is_repeat"].sum()) for b in batches) == 1
    assert "skipped undecodable sample" in caplog.text and "seg6" in caplog.text
    _, in_workers = epoch(config(workers=2), shards, 0, 1)  # stand-ins filled alike
    for a, b in zip(batches, in_workers):
        assert a["segment_id"] == b["segment_id"] and torch.equal(a["frames"], b["frames"])
        assert torch.equal(a["is_repeat"], b["is_repeat"])
    evaluation = ShardStream(config(), shards, train=False, rank=0, world_size=1, seed=0)
    ids = [s for b in evaluation.eval_batches() for s in b["segment_id"]]
    assert sorted(ids) == sorted(ALL_IDS - {"seg6"})
    assert evaluation.epoch_report()["skipped_undecodable"] == 1


def test_bad_arguments_are_refused(shard_dir, tmp_path):
    with pytest.raises(ValueError, match="rank 2"):
        ShardStream(config(), shard_dir, train=True, rank=2, world_size=2, seed=0)
    with pytest.raises(ValueError, match="cannot give each of 9 ranks"):
        ShardStream(config(), shard_dir, train=True, rank=0, world_size=9, seed=0)
    with pytest.raises(ValueError, match="no flow"):
        ShardStream(config(use_flow=True), shard_dir, train=True, rank=0, world_size=1, seed=0)
    with pytest.raises(ValueError, match="manifest"):
        ShardStream(config(), tmp_path, train=True, rank=0, world_size=1, seed=0)
    stream = ShardStream(config(), shard_dir, train=False, rank=0, world_size=1, seed=0)
    with pytest.raises(ValueError, match="eval_batches"):
        next(stream.epoch_batches(0))


def main(argv: list[str]) -> int:
    """Runs ``fpar data ...`` through a parser holding only this module's commands."""
    import argparse

    from fpar.data.cli import register

    parser = argparse.ArgumentParser(prog="fpar")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_check_command_reports_damage(shard_dir, tmp_path, capsys):
    assert main(["data", "check", str(shard_dir), "--crop-size", "16", "--num-frames", "2"]) == 0
    assert '"seen": 8' in capsys.readouterr().out
    broken = damage(shard_dir, tmp_path / "broken", "garbage")
    assert main(["data", "check", str(broken), "--crop-size", "16", "--num-frames", "2"]) == 1
    assert '"shortfall": 3' in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path)]) == 2
    assert "no manifest" in capsys.readouterr().err


def _record(members: dict, **changes) -> None:
    meta = json.loads(members[META_EXT])
    members[META_EXT] = json.dumps({**meta, **changes}).encode()


def _bomb(size: int) -> bytes:
    """zlib data inflating to ``size`` zero bytes (about 1000:1)."""
    packer, chunk = zlib.compressobj(9), bytes(1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(size >> 20)) + packer.flush()


def _huge_frames(members: dict) -> None:
    """Each JPEG's frame header rewritten to announce 60000 x 60000 pixels (10 GB decoded)."""
    images = []
    for blob in unpack_images(members[FRAMES_EXT]):
        data = bytearray(blob)
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
        images.append(bytes(data))
    members[FRAMES_EXT] = pack_images(images)


MALFORMED = {
    # A pack header announcing ~4e9 frames: struct.error out of unpack_images before.
    "seg1": lambda m: m.update({FRAMES_EXT: b"IPK1" + struct.pack("<I", 0xFFFFFFF0) + m[FRAMES_EXT][8:]}),
    # A record asking for maps of 100000 x 125000 cells: MemoryError out of np.empty before.
    "seg3": lambda m: _record(m, motion_size=[100_000, 125_000], frame_size=[400_000, 500_000]),
    # Maps of the promised 8 x 10 cells, each inflating to 64 MiB.
    "seg5": lambda m: m.update({MOTION_EXT: pack_images([_bomb(64 << 20)] * 8)}),
    # JPEGs announcing a size far from the record's.
    "seg6": _huge_frames,
    # A frame count beyond the build's frames (the manifest's params).
    "seg7": lambda m: _record(m, num_frames=9),
}


@pytest.fixture(scope="module")
def malformed_dir(tmp_path_factory) -> Path:
    return build_shards(tmp_path_factory.mktemp("malformed") / "shards", tamper=MALFORMED,
                        params={"flow": False, "frames": 8, "short_side": 32})


def test_malformed_samples_are_counted_as_undecodable_with_bounded_memory(malformed_dir):
    tracemalloc.start()
    try:
        evaluation = ShardStream(config(), malformed_dir, train=False, rank=0, world_size=1, seed=0)
        ids = [s for b in evaluation.eval_batches() for s in b["segment_id"]]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20  # one bomb alone would have taken 64 MiB
    assert sorted(ids) == sorted(ALL_IDS - set(MALFORMED))  # the rest of each tar was read
    report = evaluation.epoch_report()
    assert report["skipped_undecodable"] == 5 and report["shortfall"] == 0 and report["seen"] == 3
    problems = " ".join(report["problems"])
    assert "seg1" in problems and "header holds 4294967280 images" in problems
    assert "seg3" in problems and "outside 1..256" in problems
    assert "seg5" in problems and "inflates beyond the 80 bytes" in problems
    assert "seg6" in problems and "header announces 60000x60000, the record 32x40" in problems
    assert "seg7" in problems and "num_frames 9 outside 1..8" in problems
    stream, batches = epoch(config(), malformed_dir, 0, 1)  # training skips them alike
    assert set(own_ids(batches)) == ALL_IDS - set(MALFORMED)
    assert stream.epoch_report()["skipped_undecodable"] == 5


def test_check_command_counts_malformed_samples(malformed_dir, capsys):
    assert main(["data", "check", str(malformed_dir), "--crop-size", "16", "--num-frames", "2"]) == 1
    captured = capsys.readouterr()
    assert '"skipped_undecodable": 5' in captured.out and "Traceback" not in captured.err


def _edit_manifest(folder: Path, **changes) -> None:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    first = dict(manifest["shards"][0], **changes)
    atomic_write_json(folder / MANIFEST_NAME, dict(manifest, shards=[first, *manifest["shards"][1:]]))


@pytest.mark.parametrize("name", ["../outside/toy-train-000000.tar", "/tmp/toy-train-000000.tar",
                                  "sub/toy-train-000000.tar", "notes.txt"])
def test_manifest_naming_a_path_outside_the_folder_is_refused(shard_dir, tmp_path, capsys, name):
    folder = tmp_path / "shards"
    shutil.copytree(shard_dir, folder)
    (tmp_path / "outside").mkdir()
    shutil.copy(folder / "toy-train-000000.tar", tmp_path / "outside")
    _edit_manifest(folder, name=name)
    with pytest.raises(ValueError, match="not a plain shard file name"):
        ShardStream(config(), folder, train=True, rank=0, world_size=1, seed=0)
    assert main(["data", "check", str(folder)]) == 2
    assert name[:20] in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["fifo", "symlink", "folder"])
def test_manifest_shard_that_is_no_regular_file_is_refused(shard_dir, tmp_path, kind):
    folder = tmp_path / "shards"
    shutil.copytree(shard_dir, folder)
    target = folder / "toy-train-000001.tar"
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)  # opening it for reading would block the reader for ever
    elif kind == "symlink":
        target.symlink_to(folder / "toy-train-000000.tar")
    else:
        target.mkdir()
    with pytest.raises(ValueError, match="toy-train-000001.tar.*not a regular file"):
        ShardStream(config(), folder, train=True, rank=0, world_size=1, seed=0)


def test_check_verify_compares_size_and_sha256(shard_dir, tmp_path, capsys):
    args = ["--crop-size", "16", "--num-frames", "2", "--verify"]
    assert main(["data", "check", str(shard_dir), *args]) == 0
    assert '"mismatched": []' in capsys.readouterr().out
    folder = tmp_path / "shards"
    shutil.copytree(shard_dir, folder)
    tar_path = folder / "toy-train-000001.tar"
    data = bytearray(tar_path.read_bytes())
    data[-1] ^= 1  # the tar's zero padding: every sample still reads
    tar_path.write_bytes(bytes(data))
    assert main(["data", "check", str(folder), *args[:4]]) == 0  # unnoticed without --verify
    capsys.readouterr()
    assert main(["data", "check", str(folder), *args]) == 1
    captured = capsys.readouterr()
    assert "toy-train-000001.tar: sha256" in captured.err and '"seen": 8' in captured.out
    _edit_manifest(folder, bytes=5)
    assert main(["data", "check", str(folder), *args]) == 1
    assert "toy-train-000000.tar:" in capsys.readouterr().err

"""Size-targeted shards, the journal, and recovery of a folder after a crash."""

from __future__ import annotations

import hashlib
import itertools
import tarfile

import pytest

from shards.writer import Journal, ShardRecord, ShardWriter, read_samples, recover, stage_sample, staged_keys, sweep


def _members(size: int, tag: int) -> dict[str, bytes]:
    return {"json": b'{"i": %d}' % tag, "frames.jpgs": bytes([tag % 256]) * size}


def test_shards_roll_over_at_the_target_size_and_are_described_exactly(tmp_path):
    records: list[ShardRecord] = []
    numbers = itertools.count()
    writer = ShardWriter(tmp_path, lambda: f"epic55-train-{next(numbers):06d}.tar", 20_000, records.append)
    sizes = [3000, 9000, 7000, 500, 30_000, 100, 4000]
    for i, size in enumerate(sizes):
        writer.write(f"k{i}", _members(size, i))
    writer.finish()
    assert writer.finish() is None  # nothing open any more
    assert [r.name for r in records] == [f"epic55-train-{i:06d}.tar" for i in range(len(records))]
    keys = [k for r in records for k in r.keys]
    assert keys == [f"k{i}" for i in range(len(sizes))]
    for record in records:
        path = tmp_path / record.name
        data = path.read_bytes()
        assert record.bytes == len(data) and record.sha256 == hashlib.sha256(data).hexdigest()
        with tarfile.open(path) as tar:
            names = tar.getnames()
        assert names == [f"{k}.{ext}" for k in record.keys for ext in ("frames.jpgs", "json")]
        payload = sum(ShardWriter.sample_bytes(k, _members(sizes[int(k[1:])], 0)) for k in record.keys)
        # Only a sample larger than the target alone may take a shard past it.
        assert payload <= 20_000 or record.samples == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_a_refused_rename_leaves_no_shard_behind(tmp_path):
    def refuse() -> None:
        raise RuntimeError("parent gone")

    writer = ShardWriter(tmp_path, lambda: "x-y-000000.tar", 1 << 20, lambda r: pytest.fail("reported"), before_rename=refuse)
    writer.write("a", _members(100, 1))
    with pytest.raises(RuntimeError):
        writer.finish()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_recover_keeps_journaled_shards_and_deletes_the_rest(tmp_path):
    journal = Journal(tmp_path)
    kept = tmp_path / "epic55-train-000000.tar"
    kept.write_bytes(b"x" * 1024)
    journal.append(ShardRecord(kept.name, 2, 1024, "h", ["a", "b"]))
    # Journaled but the file changed size (not what was recorded): redone.
    changed = tmp_path / "epic55-train-000001.tar"
    changed.write_bytes(b"x" * 10)
    journal.append(ShardRecord(changed.name, 1, 1024, "h", ["c"]))
    # Renamed but killed before its journal line; a partial shard; a torn journal line.
    (tmp_path / "epic55-train-000002.tar").write_bytes(b"y")
    (tmp_path / "epic55-train-000007.tar.tmp").write_bytes(b"z")
    with open(journal.path, "a") as fh:
        fh.write('{"name": "epic55-train-0000')
    other = tmp_path / "epic55-val-000009.tar"
    other.write_bytes(b"o")

    records, next_number = recover(tmp_path, "epic55", "train")
    assert [r.name for r in records] == [kept.name]
    assert next_number == 8  # above every number seen, the deleted .tmp included
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([kept.name, other.name, "journal.jsonl"])
    assert [r.name for r in Journal(tmp_path).read()] == [kept.name]

    (tmp_path / "epic55-train-000010.tar").write_bytes(b"late")
    assert sweep(tmp_path, "epic55", "train", keep={kept.name}) == ["epic55-train-000010.tar"]
    assert other.exists() and kept.exists()


def test_staged_samples_are_complete_files_and_read_back(tmp_path):
    stage_sample(tmp_path, "a", _members(100, 1))
    stage_sample(tmp_path, "b", _members(50, 2))
    (tmp_path / "c.tar.tmp").write_bytes(b"torn")  # killed while staging
    assert staged_keys(tmp_path) == {"a", "b"} and not (tmp_path / "c.tar.tmp").exists()
    assert read_samples(tmp_path / "a.tar") == {"a": _members(100, 1)}
    # Equal samples give equal bytes (fixed member order and metadata).
    stage_sample(tmp_path, "a2", _members(100, 1))
    assert read_samples(tmp_path / "a2.tar")["a2"] == read_samples(tmp_path / "a.tar")["a"]


def test_a_later_journal_line_replaces_an_earlier_one(tmp_path):
    journal = Journal(tmp_path)
    shard = tmp_path / "epic55-train-000000.tar"
    shard.write_bytes(b"y" * 2048)
    journal.append(ShardRecord(shard.name, 1, 1024, "old", ["a"]))
    journal.append(ShardRecord(shard.name, 2, 2048, "new", ["a", "b"]))
    records, _ = recover(tmp_path, "epic55", "train")
    assert [(r.sha256, r.keys) for r in records] == [("new", ["a", "b"])]

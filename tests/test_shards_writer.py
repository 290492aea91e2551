"""Size-targeted shards, the journal, and recovery of a folder after a crash."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import tarfile

import pytest

from shards.writer import Journal, ShardRecord, ShardWriter, name_allocator, recover, sweep


def _members(size: int, tag: int) -> dict[str, bytes]:
    return {"json": b'{"i": %d}' % tag, "frames.jpgs": bytes([tag % 256]) * size}


def test_shards_roll_over_at_the_target_size_and_are_described_exactly(tmp_path):
    records: list[ShardRecord] = []
    counter = mp.get_context("spawn").Value("q", 0)
    writer = ShardWriter(tmp_path, name_allocator("epic55", "train", counter), 20_000, records.append)
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
    assert counter.value == len(records)


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

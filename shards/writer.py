"""Tar shards, staged samples, the journal of finished shards, and recovery after a crash.

A shard is written as ``NAME.tar.tmp``, flushed to disk, then renamed to ``NAME.tar``: a
``.tar`` file is always complete. The builder's main process appends one line per finished
shard (its name, size, sha256 and sample keys) to ``journal.jsonl`` after the rename; only
shards in the journal count, and a later line for the same name replaces an earlier one.
On restart, :func:`recover` deletes every ``.tmp`` file and every shard the journal does not
know (killed between rename and journal line), so their samples are written again and none
twice. Every member is written with fixed metadata, so the same samples in the same order
give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from shards.files import atomic_write_text

JOURNAL_NAME = "journal.jsonl"
TMP_SUFFIX = ".tmp"


@dataclass
class ShardRecord:
    """A finished shard as the journal and the manifest describe it."""

    name: str
    samples: int
    bytes: int
    sha256: str
    keys: list[str] = field(default_factory=list)
    clamped: list[str] = field(default_factory=list)  # keys whose stop was past the video's end
    rates: dict[str, dict] = field(default_factory=dict)  # video id -> its rate mismatch report

    def summary(self) -> dict:
        """The manifest's entry (without the key list)."""
        return {"name": self.name, "samples": self.samples, "bytes": self.bytes, "sha256": self.sha256}


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, fh):
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._fh.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def _add_members(tar: tarfile.TarFile, key: str, members: dict[str, bytes]) -> None:
    """``KEY.EXT`` members in a fixed order with fixed metadata, so equal samples give equal bytes."""
    for ext in sorted(members):
        data = members[ext]
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size = len(data)
        info.mode = 0o644
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))


class ShardWriter:
    """Appends samples to the current shard and starts a new one past ``target_bytes``.

    Args:
        out_dir: Folder of the shards.
        next_name: Called for the name of each new shard (must never repeat).
        target_bytes: A shard is closed before a sample that would take it past this size
            (a single larger sample still gets a shard of its own).
        on_finished: Called with the :class:`ShardRecord` of each shard once it is renamed.
        before_rename: Optional check called just before a shard is renamed into place;
            raising from it leaves the shard unfinished (see :meth:`abort`).
    """

    def __init__(
        self,
        out_dir: str | Path,
        next_name: Callable[[], str],
        target_bytes: int,
        on_finished: Callable[[ShardRecord], None],
        before_rename: Callable[[], None] | None = None,
    ):
        self.out_dir = Path(out_dir)
        self.next_name = next_name
        self.target_bytes = int(target_bytes)
        self.on_finished = on_finished
        self.before_rename = before_rename
        self._tar: tarfile.TarFile | None = None
        self._file = None
        self._hash: _HashingFile | None = None
        self._name = ""
        self._keys: list[str] = []
        self._clamped: list[str] = []
        self._rates: dict[str, dict] = {}

    @staticmethod
    def sample_bytes(key: str, members: dict[str, bytes]) -> int:
        """Bytes a sample takes in a tar (headers and padding to 512-byte blocks)."""
        return sum(512 + (len(data) + 511) // 512 * 512 for data in members.values())

    def write(self, key: str, members: dict[str, bytes], clamped: bool = False, rate: dict | None = None) -> None:
        """Adds one sample: ``KEY.EXT`` members in a fixed order, with fixed metadata.

        ``clamped`` and ``rate`` (a rate mismatch report of the sample's video) are kept in
        the shard's record, so that a resumed build still counts them.
        """
        size = self.sample_bytes(key, members)
        if self._tar is not None and self._keys and self._hash.size + size > self.target_bytes:
            self.finish()
        if self._tar is None:
            self._open()
        _add_members(self._tar, key, members)
        self._keys.append(key)
        if clamped:
            self._clamped.append(key)
        if rate:
            self._rates[rate["video_id"]] = rate

    def _open(self) -> None:
        self._name = self.next_name()
        self._file = open(self._tmp_path, "wb")
        self._hash = _HashingFile(self._file)
        self._tar = tarfile.open(fileobj=self._hash, mode="w", format=tarfile.PAX_FORMAT)
        self._keys, self._clamped, self._rates = [], [], {}

    @property
    def _tmp_path(self) -> Path:
        return self.out_dir / (self._name + TMP_SUFFIX)

    def finish(self) -> ShardRecord | None:
        """Completes the current shard (flush, fsync, rename) and reports it."""
        if self._tar is None:
            return None
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self.before_rename is not None:
            self.before_rename()
        os.replace(self._tmp_path, self.out_dir / self._name)
        record = ShardRecord(
            self._name, len(self._keys), self._hash.size, self._hash.sha.hexdigest(), self._keys,
            self._clamped, self._rates,
        )
        self._tar = self._file = self._hash = None
        self.on_finished(record)
        return record

    def abort(self) -> None:
        """Drops the current shard (its samples were never reported finished)."""
        if self._tar is None:
            return
        try:
            self._file.close()
        finally:
            self._tar = self._file = self._hash = None
            self._tmp_path.unlink(missing_ok=True)


class Journal:
    """The append-only list of finished shards (one JSON line each) of a shard folder."""

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / JOURNAL_NAME

    def read(self) -> list[ShardRecord]:
        """Records in order; a torn last line (killed mid-write) is ignored."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(ShardRecord(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue
        return records

    def append(self, record: ShardRecord) -> None:
        """Adds a record durably (flushed and fsynced before returning)."""
        with open(self.path, "a") as fh:
            fh.write(json.dumps(asdict(record)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def rewrite(self, records: list[ShardRecord]) -> None:
        """Replaces the journal atomically with ``records``."""
        atomic_write_text(self.path, "".join(json.dumps(asdict(r)) + "\n" for r in records))


def _shard_pattern(dataset: str, split: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(dataset)}-{re.escape(split)}-(\d{{6,}})\.tar({re.escape(TMP_SUFFIX)})?$")


def recover(out_dir: str | Path, dataset: str, split: str) -> tuple[list[ShardRecord], int]:
    """Brings a shard folder back to its journal after an interrupted build.

    Keeps journal records whose shard exists with the recorded size; deletes ``.tmp`` files
    and shards the journal does not list; rewrites the journal.

    Returns:
        ``(records, next_number)``: the finished shards and the first shard number above
        every number found (journal and files, deleted ones included).
    """
    out_dir = Path(out_dir)
    journal = Journal(out_dir)
    pattern = _shard_pattern(dataset, split)
    latest: dict[str, ShardRecord] = {}
    highest = -1
    for record in journal.read():
        match = pattern.match(record.name)
        if match:
            highest = max(highest, int(match.group(1)))
        latest[record.name] = record
    records = []
    for name, record in latest.items():
        path = out_dir / name
        if path.is_file() and path.stat().st_size == record.bytes:
            records.append(record)
    seen = {r.name for r in records}
    for path in out_dir.iterdir() if out_dir.is_dir() else []:
        match = pattern.match(path.name)
        if not match:
            continue
        highest = max(highest, int(match.group(1)))
        if match.group(2) or path.name not in seen:
            path.unlink(missing_ok=True)
    if journal.path.exists() or records:
        journal.rewrite(records)
    return records, highest + 1


def sweep(out_dir: str | Path, dataset: str, split: str, keep: set[str]) -> list[str]:
    """Deletes shard files (and ``.tmp`` files) of this dataset/split not in ``keep``."""
    pattern = _shard_pattern(dataset, split)
    removed = []
    for path in Path(out_dir).iterdir():
        match = pattern.match(path.name)
        if match and (match.group(2) or path.name not in keep):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


STAGING_DIR = "staging"


def stage_sample(staging_dir: str | Path, key: str, members: dict[str, bytes]) -> Path:
    """Writes one sample as ``KEY.tar`` in the staging folder (complete once renamed)."""
    folder = Path(staging_dir)
    path = folder / f"{key}.tar"
    tmp = folder / f"{key}.tar{TMP_SUFFIX}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_members(tar, key, members)
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


def staged_keys(staging_dir: str | Path) -> set[str]:
    """Keys of the complete staged samples (unfinished ``.tmp`` files are deleted)."""
    folder = Path(staging_dir)
    keys = set()
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.name.endswith(TMP_SUFFIX):
            path.unlink(missing_ok=True)
        elif path.suffix == ".tar":
            keys.add(path.name[: -len(".tar")])
    return keys


def read_samples(path: str | Path, keys: set[str] | None = None) -> dict[str, dict[str, bytes]]:
    """The members of the samples of a tar (a shard or a staged sample), by key."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, _, ext = info.name.partition(".")
            if keys is None or key in keys:
                samples.setdefault(key, {})[ext] = tar.extractfile(info).read()
    return samples

"""Reads raw samples from shard tars and notices what the tars fail to hold.

Shards are plain tars in WebDataset's layout, read with the standard library's ``tarfile``:
consecutive members sharing a key (the name up to the first dot of its last part) form
one sample. Training and evaluation read samples by index (:class:`SampleReader`); the
streaming :func:`tar_samples` serves whole-tar reads (benchmarks, checks).

A tar can end at garbage in the middle, and after a truncation the last sample comes out
with members missing. So every shard is checked against the sample count the manifest
promises: samples that never arrive, or arrive incomplete, come out as ``None`` with the
reason, and the caller counts them as a shortfall.
"""

from __future__ import annotations

import logging
import mmap
import os
import stat
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from fpar.data.plan import ShardEntry
from shards.schema import SampleBounds

log = logging.getLogger(__name__)


@dataclass
class RawInput:
    """One input of a rank's reading order: the raw sample, or why it is missing."""

    index: int
    sample: dict | None
    problem: str | None = None
    bounds: SampleBounds | None = None


def split_name(name: str) -> tuple[str, str] | None:
    """``"dir/KEY.frames.jpgs"`` -> ``("dir/KEY", "frames.jpgs")``; None without an extension."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        return None
    return (f"{folder}/{stem}" if folder else stem), ext


def tar_samples(path: str, fh: BinaryIO) -> Iterator[dict]:
    """The samples of a tar stream: ``{"__key__", "__url__", ext: bytes, ...}`` in tar order.

    Raises:
        ValueError: If one sample holds the same extension twice.
        tarfile.ReadError: If the stream is no tar or a member's data is cut short.
    """
    sample: dict | None = None
    with tarfile.open(fileobj=fh, mode="r|") as tar:
        for member in tar:
            parts = split_name(member.name) if member.isfile() else None
            if parts is None:
                continue
            key, ext = parts
            if sample is not None and sample["__key__"] != key:
                yield sample
                sample = None
            if sample is None:
                sample = {"__key__": key, "__url__": path}
            if ext in sample:
                raise ValueError(f"{path}: {member.name} appears twice in sample {key}")
            sample[ext] = tar.extractfile(member).read()
    if sample is not None:
        yield sample


class SampleReader:
    """Random access to a shard folder's samples by their folder index.

    Each tar's member headers are scanned once (seeking over the data), giving every
    sample's member offsets. Tars are memory-mapped: a sample's members are views of the
    page cache, so reading copies nothing and a decoder touches only the bytes it decodes
    (the few picked frames of a frame pack, not all of them). A tar that
    holds fewer samples than its manifest promises (garbage mid-tar, truncation), or a
    sample that lacks a required member or whose data the file cuts short, gives a
    ``RawInput`` without sample, with the reason.

    Args:
        shards: The folder's shards in its order (:func:`fpar.data.plan.shard_entries`).
        required: Members a sample must have (a tuple of names: any one of them).
        open_files: Tar files kept mapped at once (a dropped map lives on while a sample
            still views it).
        index: The shards' scanned headers (:meth:`index`) of an earlier reader of the
            same shards: a pass then starts without scanning again.
    """

    def __init__(self, shards: Sequence[ShardEntry], required: Sequence[str | tuple[str, ...]],
                 open_files: int = 16, index: dict[int, tuple[list, str | None]] | None = None):
        self.shards = list(shards)
        self.required = tuple(required)
        self.open_files = open_files
        self._starts = np.cumsum([0] + [s.samples for s in self.shards])
        self._index: dict[int, tuple[list, str | None]] = dict(index or {})
        self._files: OrderedDict[int, mmap.mmap] = OrderedDict()

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _file(self, number: int) -> mmap.mmap:
        mapped = self._files.pop(number, None)
        if mapped is None:
            with open(self.shards[number].path, "rb") as fh:
                mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            while len(self._files) >= self.open_files:
                # Not closed: samples may still view it; it is unmapped when they are gone.
                self._files.popitem(last=False)
        self._files[number] = mapped
        return mapped

    def _scan(self, number: int) -> tuple[list, str | None]:
        """``([(key, {ext: (offset, size)})...], problem)`` of one shard, cached."""
        if number in self._index:
            return self._index[number]
        shard = self.shards[number]
        samples: list[tuple[str, dict]] = []
        problem = None
        try:
            info = os.lstat(shard.path)
            if not stat.S_ISREG(info.st_mode):  # a FIFO would block, a link leads elsewhere
                raise OSError(f"{shard.path} is not a regular file")
            size = info.st_size
            with tarfile.open(shard.path, mode="r:") as tar:
                for member in tar:
                    parts = split_name(member.name) if member.isfile() else None
                    if parts is None:
                        continue
                    key, ext = parts
                    if not samples or samples[-1][0] != key:
                        samples.append((key, {}))
                    end = member.offset_data + member.size
                    samples[-1][1][ext] = (member.offset_data, member.size) if end <= size else None
        except Exception as err:  # any read failure ends this shard's index, not the epoch
            problem = f"{type(err).__name__}: {err}"
        if len(samples) > shard.samples:
            log.warning("%s: more samples than the manifest's %d; extra ignored", shard.name, shard.samples)
            del samples[shard.samples:]
        if len(samples) < shard.samples:
            reason = problem or "tar ends early (garbage or truncation)"
            problem = f"{shard.name}: {reason}; read {len(samples)} of {shard.samples} samples"
        self._index[number] = (samples, problem)
        return samples, problem

    def index(self) -> dict[int, tuple[list, str | None]]:
        """Every shard's scanned member offsets (scanning those not yet scanned)."""
        for number in range(len(self.shards)):
            self._scan(number)
        return dict(self._index)

    def key(self, index: int) -> str | None:
        """The sample key at folder index ``index`` (None when the tar lacks it)."""
        number, k = self._locate(index)
        samples, _ = self._scan(number)
        return samples[k][0] if k < len(samples) else None

    def _locate(self, index: int) -> tuple[int, int]:
        number = int(np.searchsorted(self._starts, index, side="right")) - 1
        if not 0 <= index < len(self) or not 0 <= number < len(self.shards):
            raise IndexError(f"sample index {index} outside 0..{len(self) - 1}")
        return number, index - int(self._starts[number])

    def read(self, index: int) -> RawInput:
        """The sample at folder index ``index``, or why it cannot be had."""
        number, k = self._locate(index)
        samples, problem = self._scan(number)
        shard = self.shards[number]
        if k >= len(samples):
            return RawInput(index, None, problem)
        key, members = samples[k]
        lacking = [m for m in self.required
                   if all(members.get(name) is None for name in ((m,) if isinstance(m, str) else m))]
        if lacking:
            return RawInput(index, None, f"{shard.name}: sample {key} lacks {lacking}")
        mapped = self._file(number)
        sample = {"__key__": key, "__url__": shard.path}
        for ext, where in members.items():
            if where is None:
                continue
            offset, size = where
            if offset + size > len(mapped):
                return RawInput(index, None, f"{shard.name}: sample {key}: {ext} cut short")
            sample[ext] = memoryview(mapped)[offset : offset + size]
        return RawInput(index, sample, bounds=shard.bounds)

    def close(self) -> None:
        """Drops the maps (each is unmapped once no sample views it)."""
        self._files.clear()

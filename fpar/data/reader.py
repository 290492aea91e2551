"""Reads the raw samples of a rank's shard pieces and notices what the tars fail to hold.

Shards are plain tars in WebDataset's layout, read here with the standard library's
``tarfile`` as a stream (no seeking, no index): consecutive members sharing a key (the
name up to the first dot of its last part) form one sample, keyed by the rest of the name.

A streamed tar ends silently at garbage in the middle, and after a truncation at a
member boundary the last sample comes out with members missing. So every piece is checked
against the sample count the manifest promises: samples that never arrive, or arrive
incomplete, come out as ``None`` with the reason, and the caller counts them as a
shortfall.
"""

from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Sequence

from fpar.data.plan import Piece

log = logging.getLogger(__name__)


@dataclass
class RawInput:
    """One input of a rank's reading order: the raw sample, or why it is missing."""

    index: int
    sample: dict | None
    problem: str | None = None


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


def read_pieces(pieces: Sequence[Piece], required: Sequence[str]) -> Iterator[RawInput]:
    """Yields one :class:`RawInput` per sample position of ``pieces``, in reading order.

    Samples before a piece's ``lo`` are read past without being kept (tars have no index).

    Args:
        pieces: Shard pieces in reading order.
        required: Members a sample must have; one without them counts as missing.

    Yields:
        ``RawInput(index, sample, None)`` for a sample read whole, or
        ``RawInput(index, None, reason)`` for one the tar does not deliver.
    """
    base = 0
    for piece in pieces:
        shard = piece.shard
        got = 0
        error = None
        try:
            with open(shard.path, "rb") as fh:
                for k, sample in enumerate(tar_samples(shard.path, fh)):
                    if k >= piece.hi:
                        if k >= shard.samples:
                            log.warning("%s: more samples than the manifest's %d; extra ignored",
                                        shard.name, shard.samples)
                        break
                    got = k + 1
                    if k >= piece.lo:
                        lacking = [m for m in required if m not in sample]
                        if lacking:
                            key = sample.get("__key__")
                            yield RawInput(base + k - piece.lo, None,
                                           f"{shard.name}: sample {key} lacks {lacking}")
                        else:
                            yield RawInput(base + k - piece.lo, sample)
                    if got == piece.hi < shard.samples:
                        break  # the rest of this shard belongs to another rank
        except Exception as err:  # any read failure ends this shard, not the epoch
            error = f"{type(err).__name__}: {err}"
        if got < piece.hi:
            reason = error or "tar ends early (garbage or truncation)"
            problem = f"{shard.name}: {reason}; read {got} of {shard.samples} samples"
            for k in range(max(got, piece.lo), piece.hi):
                yield RawInput(base + k - piece.lo, None, problem)
        base += piece.hi - piece.lo

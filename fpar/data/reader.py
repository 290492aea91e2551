"""Reads the raw samples of a rank's shard pieces and notices what the tars fail to hold.

WebDataset's tar iteration ends a shard silently at garbage in the middle of the tar and,
after a truncation at a member boundary, yields the last sample with members missing. So
every piece is checked against the sample count the manifest promises: samples that never
arrive, or arrive incomplete, come out as ``None`` with the reason, and the caller counts
them as a shortfall.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

from webdataset.filters import reraise_exception
from webdataset.tariterators import group_by_keys, tar_file_expander

from fpar.data.plan import Piece

log = logging.getLogger(__name__)


@dataclass
class RawInput:
    """One input of a rank's reading order: the raw sample, or why it is missing."""

    index: int
    sample: dict | None
    problem: str | None = None


def _tar_samples(path: str, fh) -> Iterator[dict]:
    source = [{"url": path, "stream": fh}]
    files = tar_file_expander(source, handler=reraise_exception)
    return group_by_keys(files, handler=reraise_exception)


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
                for k, sample in enumerate(_tar_samples(shard.path, fh)):
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

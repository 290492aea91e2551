"""The epoch plan: which stored samples a rank reads, in which order, and who decodes them.

Everything here is a pure function of the manifest's shard counts and
``(seed, epoch, rank, world_size, batch_size)``, so every rank and every loader worker
computes the same plan without talking to each other, and a resumed run recomputes it.

A *position* is a slot in a rank's sequence for one pass. Training positions
``[0, n_rank)`` are the rank's own samples in shuffled order; positions
``[n_rank, steps * batch_size)`` repeat the rank's first samples so that every rank runs
the same number of steps. Batch ``s`` is positions ``[s * B, (s + 1) * B)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fpar.data.sampling import rng_for


@dataclass(frozen=True)
class ShardEntry:
    """One tar file of a shard folder and the sample count its manifest promises."""

    name: str
    path: str
    samples: int


@dataclass(frozen=True)
class Piece:
    """Samples ``[lo, hi)`` (in tar order) of one shard, read as part of a rank's range."""

    shard: ShardEntry
    lo: int
    hi: int


@dataclass(frozen=True)
class RankPlan:
    """What one rank reads in one pass and how its positions map onto what it reads.

    Attributes:
        pieces: Shard pieces in reading order; input index ``i`` counts samples across
            the pieces in this order.
        order: ``order[p]`` is the input index at position ``p`` for ``p < n_rank``.
        total: Number of positions of the pass (``steps * B`` in training, ``n_rank`` at
            evaluation).
    """

    pieces: tuple[Piece, ...]
    order: tuple[int, ...]
    total: int

    @property
    def n_rank(self) -> int:
        """Samples the manifest assigns to this rank."""
        return len(self.order)

    def source(self, position: int) -> tuple[int, bool]:
        """Input index read for ``position`` and whether that position is a repeat."""
        if position < self.n_rank:
            return self.order[position], False
        return self.order[(position - self.n_rank) % self.n_rank], True


def split_range(total: int, parts: int, index: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of part ``index`` when ``total`` items go to ``parts``.

    The first ``total % parts`` parts get one item more, so sizes differ by at most one.
    """
    base, extra = divmod(total, parts)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def shard_order(shards: list[ShardEntry], seed: int, epoch: int, shuffle: bool) -> list[ShardEntry]:
    """The shards in this epoch's order: shuffled by ``(seed, epoch)`` or as listed."""
    if not shuffle:
        return list(shards)
    perm = rng_for(seed, epoch, "shards").permutation(len(shards))
    return [shards[i] for i in perm]


def pieces_for_range(shards: list[ShardEntry], start: int, stop: int) -> list[Piece]:
    """Shard pieces covering global sample positions ``[start, stop)`` of ``shards``."""
    pieces = []
    offset = 0
    for shard in shards:
        lo, hi = max(start, offset), min(stop, offset + shard.samples)
        if lo < hi:
            pieces.append(Piece(shard, lo - offset, hi - offset))
        offset += shard.samples
    return pieces


def buffer_shuffle_order(n: int, bufsize: int, rng: np.random.Generator) -> list[int]:
    """Output order of a streaming shuffle buffer over inputs ``0..n-1``.

    The buffer holds ``bufsize`` inputs and emits a random one each time a new input
    arrives, then drains in random order. Because input ``i`` is always emitted after at
    most ``bufsize`` later inputs were read, a reader can follow this order while holding
    about ``bufsize`` undecoded samples.
    """
    out: list[int] = []
    buf: list[int] = []
    for i in range(n):
        buf.append(i)
        if len(buf) >= bufsize:
            j = int(rng.integers(len(buf)))
            out.append(buf[j])
            buf[j] = buf[-1]
            buf.pop()
    out.extend(buf[k] for k in rng.permutation(len(buf)))
    return out


def steps_per_epoch(num_samples: int, world_size: int, batch_size: int) -> int:
    """Training steps every rank runs: the largest rank's share in batches, rounded up."""
    return math.ceil(math.ceil(num_samples / world_size) / batch_size)


def rank_plan(
    shards: list[ShardEntry],
    *,
    train: bool,
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    batch_size: int,
    shuffle_buffer: int,
) -> RankPlan:
    """Computes the plan of ``rank`` for one pass over ``shards``.

    Training shuffles the shards by ``(seed, epoch)``, gives each rank a contiguous
    range of the concatenated sample sequence (sizes differ by at most one), shuffles
    that range with a seeded buffer and pads it with repeats up to ``steps * B``.
    Evaluation keeps manifest order, splits the same way and never pads.
    """
    ordered = shard_order(shards, seed, epoch, shuffle=train)
    num_samples = sum(s.samples for s in shards)
    start, stop = split_range(num_samples, world_size, rank)
    pieces = pieces_for_range(ordered, start, stop)
    n_rank = stop - start
    if train:
        rng = rng_for(seed, epoch, "buffer", rank)
        order = buffer_shuffle_order(n_rank, shuffle_buffer, rng)
        total = steps_per_epoch(num_samples, world_size, batch_size) * batch_size
    else:
        order = list(range(n_rank))
        total = n_rank
    return RankPlan(tuple(pieces), tuple(order), total)


def shard_entries(shard_dir: str | Path, manifest_shards: list[dict]) -> list[ShardEntry]:
    """Turns the manifest's ``shards`` list into entries with full paths."""
    root = Path(shard_dir)
    return [ShardEntry(s["name"], str(root / s["name"]), int(s["samples"])) for s in manifest_shards]

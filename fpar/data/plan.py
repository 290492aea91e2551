"""The epoch plan: which samples a rank reads, in which order.

Samples are numbered ``0..N-1`` in the folder's order (shards by name, samples in tar
order; the counts come from the manifest). A training epoch is one permutation of them,
drawn from ``(seed, epoch)`` alone: the *global sequence*. Global step ``s`` takes the
sequence's positions ``[s * G, (s + 1) * G)`` for a global batch of ``G`` clips, and rank
``r`` of ``W`` takes the slice ``[r * B, (r + 1) * B)`` of it (``B = G / W``). So the order
of an epoch does not depend on the number of ranks or loader workers, and a run
checkpointed at one world size and resumed at another with the same global batch reads on
where it stopped: no sample of the epoch twice, none skipped (MosaicML Streaming calls
this elastic determinism). The last global step is filled with the sequence's first
samples again, flagged ``is_repeat``, so every rank runs the same number of steps.

Reading by sample rather than by shard needs random access into the tars
(:class:`fpar.data.reader.SampleReader`), and buys a uniform mix of the whole split in
every batch, whatever order the shards were written in.

Evaluation keeps the folder's order and splits it into contiguous ranges, one per rank.
Everything here is a pure function of the manifest's counts and the arguments, so every
rank and loader worker computes the same plan without talking to the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fpar.data.sampling import rng_for
from shards.schema import SampleBounds, bounds_of, check_shard_names


@dataclass(frozen=True)
class ShardEntry:
    """One tar file of a shard folder and the sample count its manifest promises."""

    name: str
    path: str
    samples: int
    bounds: SampleBounds = SampleBounds()


@dataclass(frozen=True)
class RankPlan:
    """What one rank reads in one pass.

    Attributes:
        indices: The folder index read at each position of the pass.
        repeats: Positions (of ``indices``) that repeat a sample already in the epoch.
        views: Test-time views of every sample (:mod:`fpar.data.views`), empty for one
            view: then ``len(views)`` consecutive positions read the same sample, one view
            each.
    """

    indices: tuple[int, ...]
    repeats: frozenset[int] = frozenset()
    views: tuple = ()

    @property
    def total(self) -> int:
        """Positions of the pass (``steps * B`` in training, the rank's range at evaluation)."""
        return len(self.indices)

    @property
    def n_rank(self) -> int:
        """Positions that are not repeats."""
        return self.total - len(self.repeats)

    def source(self, position: int) -> tuple[int, bool]:
        """Folder index read for ``position`` and whether that position is a repeat."""
        return self.indices[position], position in self.repeats

    def view(self, position: int) -> tuple[int, object]:
        """``(view number, view)`` of ``position``; ``(0, None)`` for a one-view pass."""
        if not self.views:
            return 0, None
        number = position % len(self.views)
        return number, self.views[number]


def with_views(plan: RankPlan, views: tuple) -> RankPlan:
    """An evaluation plan reading each of its samples once per view, views consecutive."""
    if plan.repeats:
        raise ValueError("test-time views are for evaluation passes, which repeat no sample")
    indices = tuple(index for index in plan.indices for _ in views)
    return RankPlan(indices, frozenset(), tuple(views))


def split_range(total: int, parts: int, index: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of part ``index`` when ``total`` items go to ``parts``.

    The first ``total % parts`` parts get one item more, so sizes differ by at most one.
    """
    base, extra = divmod(total, parts)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def epoch_sequence(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The global sequence of a training epoch: a permutation of ``0..N-1``."""
    return rng_for(seed, epoch, "order").permutation(num_samples)


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    """Global steps of an epoch: every sample once, the last step filled up."""
    return math.ceil(num_samples / global_batch)


def rank_plan(num_samples: int, *, train: bool, seed: int, epoch: int, rank: int,
              world_size: int, batch_size: int) -> RankPlan:
    """Computes the plan of ``rank`` for one pass.

    Args:
        num_samples: Samples of the folder (N).
        train: A training epoch (global sequence) or the evaluation pass (folder order).
        batch_size: Clips per batch on each rank (B); the global batch is ``B * W``.
    """
    if train:
        global_batch = batch_size * world_size
        sequence = epoch_sequence(num_samples, seed, epoch)
        steps = steps_per_epoch(num_samples, global_batch)
        indices, repeats = [], set()
        for step in range(steps):
            first = step * global_batch + rank * batch_size
            for q in range(first, first + batch_size):
                if q >= num_samples:
                    repeats.add(len(indices))
                indices.append(int(sequence[q % num_samples]))
        return RankPlan(tuple(indices), frozenset(repeats))
    start, stop = split_range(num_samples, world_size, rank)
    return RankPlan(tuple(range(start, stop)))


def shard_entries(shard_dir: str | Path, manifest: dict) -> list[ShardEntry]:
    """The manifest's shards, sorted by name, with full paths (the folder's order).

    Raises:
        shards.schema.SchemaError: A shard name that is no plain shard file name, or names
            something other than a regular file in the folder.
    """
    root = Path(shard_dir)
    check_shard_names(root, manifest["shards"])
    bounds = bounds_of(manifest.get("params") or {})
    ordered = sorted(manifest["shards"], key=lambda s: s["name"])
    return [ShardEntry(s["name"], str(root / s["name"]), int(s["samples"]), bounds) for s in ordered]

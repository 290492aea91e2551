"""ShardStream: one rank's view of a shard folder, as training epochs or one evaluation pass.

How the work is split:

* Training. An epoch is one permutation of the folder's samples drawn from
  ``(seed, epoch)`` (the global sequence, :mod:`fpar.data.plan`); global step ``s`` is
  its next ``batch_size * world_size`` samples and each rank takes its slice of them. The
  order is thus the same for any number of ranks or loader workers, every batch is a
  uniform sample of the split (however the shards were written), and a resumed run at
  another world size with the same global batch continues the same sequence. Samples are
  read by index (one seek per member), so each rank reads only its own samples.
* Equal steps. Every rank runs ``ceil(N / (B * W))`` steps; the last global step is
  filled with the sequence's first samples again, flagged ``is_repeat``, so the ranks'
  non-repeated samples are disjoint and together are exactly the epoch.
* Damage. A sample the tars fail to deliver (garbage mid-tar, truncation) is a
  shortfall: counted, warned about and, beyond ``max_shortfall``, an error. A delivered
  sample that cannot be decoded is skipped with a counted warning. In training either is
  replaced in its batch by a repeat of a sample of the same batch, so batch shapes and
  the step count never change.
* Evaluation. The folder's order, split into contiguous ranges, no padding: each
  segment is produced by exactly one rank; skipped segments are reported, never
  duplicated.
* Batches. A batch is a window of consecutive positions, its clips cropped straight into
  the batch's buffers (:mod:`fpar.data.assemble`). Loader worker ``k`` of ``K`` assembles
  the windows ``w % K == k`` in shared memory (:mod:`fpar.data.worker`), so the batches
  do not depend on the worker count, and a resumed epoch (``start_step``) reads nothing
  before its window.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from fpar.data.accounting import DataShortfallError, PassReport, fill_batches
from fpar.data.assemble import BatchParts, local_allocator, loader_batch
from fpar.data.clip import required_members
from fpar.data.config import DataConfig
from fpar.data.plan import (RankPlan, rank_plan, shard_entries, split_range, steps_per_epoch,
                            with_views)
from fpar.data.reader import SampleReader
from fpar.data.views import View, single_view
from fpar.data.worker import PassBatches, emit_batches, init_worker, pass_through, worker_context
from shards.schema import read_manifest

__all__ = ["ShardStream", "DataShortfallError", "clip_throughput"]


class ShardStream:
    """One rank's stream of batches from a shard folder.

    Args:
        cfg: Data settings.
        shard_dir: Folder with the tar shards and ``manifest.json``.
        train: Training (shuffled epochs, augmentation) or evaluation (centre crops).
        rank: This process's rank in ``[0, world_size)``.
        world_size: Number of ranks reading the folder together.
        seed: Run seed; with the epoch it fixes order, frames and augmentation.
        pin_memory: Collate batches into pinned memory (for a model on a GPU).

    Raises:
        shards.schema.SchemaError: The folder has no valid manifest.
        ValueError: Bad rank/world size, too few samples for the ranks, or flow asked of
            shards built without it.
    """

    def __init__(self, cfg: DataConfig, shard_dir: str | Path, *, train: bool, rank: int,
                 world_size: int, seed: int, pin_memory: bool = False):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.cfg, self.train, self.rank, self.world_size, self.seed = cfg, train, rank, world_size, seed
        self.pin_memory = pin_memory
        self.shard_dir = Path(shard_dir)
        manifest = read_manifest(self.shard_dir)
        self.shards = shard_entries(self.shard_dir, manifest)
        self.num_samples = sum(s.samples for s in self.shards)
        if self.num_samples == 0:
            raise ValueError(f"{self.shard_dir}: the manifest lists no samples")
        if train and self.num_samples < world_size:
            raise ValueError(
                f"{self.shard_dir}: {self.num_samples} samples cannot give each of "
                f"{world_size} ranks a training sample"
            )
        if cfg.use_flow and manifest["params"].get("flow") is False:
            raise ValueError(f"{self.shard_dir}: data.use_flow is set but the shards hold no flow")
        batch = cfg.batch_size if train else cfg.eval_batch_size
        self.steps_per_epoch = steps_per_epoch(self.num_samples, batch * world_size)
        self._report: PassReport | None = None
        self._index: dict | None = None

    @property
    def num_rank_samples(self) -> int:
        """Samples of this rank per pass (before padding)."""
        start, stop = split_range(self.num_samples, self.world_size, self.rank)
        return stop - start

    def plan(self, epoch: int, train: bool = True) -> RankPlan:
        """This rank's reading plan: a training epoch, or the evaluation pass."""
        return rank_plan(self.num_samples, train=train, seed=self.seed, epoch=epoch if train else 0,
                         rank=self.rank, world_size=self.world_size, batch_size=self.cfg.batch_size)

    def _windows(self, plan: RankPlan, epoch: int, size: int, start: int, train: bool) -> Iterator[BatchParts]:
        """The assembled windows ``start ..`` of a pass, in order."""
        if self._index is None:  # the tars' headers, scanned once for every pass and worker
            self._index = SampleReader(self.shards, required_members(self.cfg.use_flow)).index()
        common = dict(train=train, seed=self.seed, epoch=epoch, size=size, start=start, index=self._index)
        if self.cfg.workers == 0:
            yield from emit_batches(plan, self.shards, self.cfg, worker=0, num_workers=1,
                                    allocate=local_allocator(self.pin_memory), **common)
            return
        dataset = PassBatches(plan, self.shards, self.cfg, **common)
        # The loader's own generator: DataLoader otherwise draws its workers' base seed
        # from the global torch generator at every pass, which a resumed run would not
        # replay (its dropout masks would then differ from the uninterrupted run's).
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        source = DataLoader(dataset, batch_size=None, num_workers=self.cfg.workers,
                            worker_init_fn=init_worker, pin_memory=self.pin_memory,
                            prefetch_factor=self.cfg.prefetch_factor,
                            multiprocessing_context=worker_context(), generator=generator,
                            collate_fn=pass_through)
        pending: dict[int, BatchParts] = {}
        want = start * size
        for parts in source:
            pending[parts.first] = parts
            while want in pending:
                yield pending.pop(want)
                want += size
        if want < plan.total:
            raise RuntimeError(f"rank {self.rank}: pass ended at position {want} of {plan.total}")

    def epoch_batches(self, epoch: int, start_step: int = 0) -> Iterator[dict]:
        """Training batches of ``epoch``, from step ``start_step`` to the end.

        Yields exactly ``steps_per_epoch - start_step`` batches of ``batch_size`` clips,
        the same on every call with the same ``(seed, epoch)``; a resumed epoch equals the
        tail of the uninterrupted one. Batch keys: ``frames``, ``motion``, [``flow``], the
        label keys, ``segment_id``, ``is_repeat``.
        """
        if not self.train:
            raise ValueError("epoch_batches() needs a stream built with train=True; use eval_batches()")
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step {start_step} not in [0, {self.steps_per_epoch}]")
        plan = self.plan(epoch, train=True)
        size = self.cfg.batch_size
        report = PassReport(max(0, plan.n_rank - start_step * size), self.cfg.max_shortfall)
        self._report = report
        for parts in fill_batches(self._recorded(plan, epoch, size, start_step, True, report), self.rank):
            report.repeats += sum(parts.repeat)
            yield loader_batch(parts)
        report.finish()

    def eval_batches(self, views: Sequence[View] = ()) -> Iterator[dict]:
        """Evaluation batches: this rank's share of the segments, each exactly once.

        Batches hold up to ``eval_batch_size`` clips: the last one, and any with skipped
        (undecodable or missing) segments, fewer; skipped segments are reported in
        :meth:`epoch_report`. With several test-time ``views`` (:mod:`fpar.data.views`)
        each segment comes as that many consecutive clips, a ``view`` number each (the
        segment's views may straddle batches), and the report counts views.
        """
        plan = self.plan(0, train=False)
        if not single_view(views):
            plan = with_views(plan, tuple(views))
        report = PassReport(plan.n_rank, self.cfg.max_shortfall)
        self._report = report
        for parts in self._recorded(plan, 0, self.cfg.eval_batch_size, 0, False, report):
            if parts.good:
                yield loader_batch(parts, parts.good)
        report.finish()

    def _recorded(self, plan: RankPlan, epoch: int, size: int, start: int, train: bool,
                  report: PassReport) -> Iterator[BatchParts]:
        """The windows of a pass, each position counted in ``report`` as it arrives."""
        for parts in self._windows(plan, epoch, size, start, train):
            for item in parts.items:
                report.record(item)
            yield parts

    def epoch_report(self) -> dict:
        """Counts of the last (or current) pass: expected, seen, skipped_undecodable,
        shortfall (samples missing from the shards), shortfall_fraction, repeats, problems."""
        if self._report is None:
            return PassReport(0, self.cfg.max_shortfall).as_dict()
        return self._report.as_dict()


def clip_throughput(shard_dir: str | Path, cfg: DataConfig, seconds: float = 20.0,
                    train: bool = True, seed: int = 0) -> float:
    """Clips per second one rank's stream delivers (loader batches built), for benchmarks.

    Reads training epochs (or evaluation passes) back to back until ``seconds`` of steady
    reading have passed. The first batch of each pass is not counted, nor the time until
    it arrives: that is the loader workers' start-up, paid once per epoch.
    """
    stream = ShardStream(cfg, shard_dir, train=train, rank=0, world_size=1, seed=seed)
    passes = stream.steps_per_epoch if train else -(-stream.num_samples // cfg.eval_batch_size)
    if passes < 2:
        raise ValueError(f"{shard_dir}: one batch per pass leaves nothing to time after the "
                         "start-up; use a smaller batch or more samples")
    clips, spent, epoch = 0, 0.0, 0
    while True:
        batches = stream.epoch_batches(epoch) if train else stream.eval_batches()
        started = None
        for batch in batches:
            now = time.perf_counter()
            if started is not None:
                clips += len(batch["segment_id"])
                if spent + now - started >= seconds:
                    return clips / (spent + now - started)
            started = started or now
        if started is not None:
            spent += time.perf_counter() - started
        epoch += 1

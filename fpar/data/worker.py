"""What one loader worker does in a pass: assemble the batches it owns, in order.

Batch window ``w`` of a pass (positions ``w * B .. w * B + B - 1``) is assembled by worker
``w % K`` of ``K``, which reads just its samples, by index, and crops them into one
shared-memory buffer per batch: the batches do not depend on the number of workers (a
run resumed on a machine with another worker count sees exactly the same ones), and the
training process receives each batch as a handle instead of unpickling its pixels.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
from typing import Iterator, Sequence

import cv2
import torch
from torch.utils.data import IterableDataset, get_worker_info

from fpar.data.assemble import Allocate, BatchParts, assemble, shared_allocator
from fpar.data.clip import required_members
from fpar.data.config import DataConfig
from fpar.data.plan import RankPlan, ShardEntry
from fpar.data.reader import SampleReader


def emit_batches(plan: RankPlan, shards: Sequence[ShardEntry], cfg: DataConfig, *, train: bool,
                 seed: int, epoch: int, size: int, start: int, worker: int, num_workers: int,
                 allocate: Allocate, index: dict | None = None) -> Iterator[BatchParts]:
    """Assembles the windows ``w >= start`` with ``w % num_workers == worker``, in order
    (``index``: the shards' scanned headers, :meth:`SampleReader.index`)."""
    reader = SampleReader(shards, required_members(cfg.use_flow), index=index)
    windows = -(-plan.total // size)
    first = start + (worker - start) % num_workers
    try:
        for window in range(first, windows, num_workers):
            yield assemble(reader, plan, window * size, size, cfg, train=train, seed=seed,
                           epoch=epoch, allocate=allocate)
    finally:
        reader.close()


class PassBatches(IterableDataset):
    """The batch windows of one pass as a torch IterableDataset (one share per worker)."""

    def __init__(self, plan: RankPlan, shards: Sequence[ShardEntry], cfg: DataConfig, *,
                 train: bool, seed: int, epoch: int, size: int, start: int, index: dict | None):
        super().__init__()
        self.plan, self.shards, self.cfg, self.train = plan, list(shards), cfg, train
        self.seed, self.epoch, self.size, self.start, self.index = seed, epoch, size, start, index

    def __iter__(self) -> Iterator[BatchParts]:
        info = get_worker_info()
        if info is None:
            raise RuntimeError("PassBatches is read by loader workers; without workers the "
                               "stream assembles batches itself")
        return emit_batches(self.plan, self.shards, self.cfg, train=self.train, seed=self.seed,
                            epoch=self.epoch, size=self.size, start=self.start, worker=info.id,
                            num_workers=info.num_workers, allocate=shared_allocator,
                            index=self.index)


def pass_through(parts: BatchParts) -> BatchParts:
    """The loader's per-item conversion: none (a worker's item is a whole batch already)."""
    return parts


def init_worker(_worker_id: int) -> None:
    """Keeps each loader worker on one thread: the parallelism is the workers."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of loader workers: forked from a clean server process.

    Plain fork copies the trainer after it has used OpenCV's and torch's thread pools
    (and maybe CUDA); a worker forked then can deadlock on a lock held by a thread that
    does not exist in the child, which happened here intermittently. The fork server is
    started once per process, with this module preloaded so workers start quickly.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context

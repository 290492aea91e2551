"""What one loader worker does in a pass: read and decode the positions it owns, in order.

Worker ``k`` of ``K`` owns the positions ``p`` with ``p % K == k`` and reads just their
samples, by index. That keeps the batches independent of the number of workers: a run
resumed on a machine with another worker count sees exactly the same batches.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
from typing import Iterator, Sequence

import cv2
import torch
from torch.utils.data import IterableDataset, get_worker_info

from fpar.data.clip import UndecodableSample, make_clip, required_members
from fpar.data.config import DataConfig
from fpar.data.plan import RankPlan, ShardEntry
from fpar.data.reader import SampleReader

OK, MISSING, UNDECODABLE = "ok", "missing", "undecodable"


def emit_positions(
    plan: RankPlan,
    shards: Sequence[ShardEntry],
    cfg: DataConfig,
    *,
    train: bool,
    seed: int,
    epoch: int,
    start: int,
    worker: int,
    num_workers: int,
) -> Iterator[dict]:
    """Yields one item per position ``p >= start`` owned by ``worker``, in position order.

    Each item is ``{"pos", "status", "repeat", "clip" | "problem"}``: ``status`` is "ok"
    with the decoded clip, "missing" (the tar did not deliver the sample) or "undecodable"
    (it did, but decoding failed), with ``problem`` saying why.
    """
    reader = SampleReader(shards, required_members(cfg.use_flow))
    first = start + (worker - start) % num_workers
    try:
        for pos in range(first, plan.total, num_workers):
            index, repeat = plan.source(pos)
            raw = reader.read(index)
            if raw.sample is None:
                yield {"pos": pos, "status": MISSING, "repeat": repeat, "problem": raw.problem}
                continue
            try:
                clip = make_clip(raw.sample, cfg, train=train, seed=seed, epoch=epoch)
            except UndecodableSample as err:
                yield {"pos": pos, "status": UNDECODABLE, "repeat": repeat, "problem": str(err)}
                continue
            yield {"pos": pos, "status": OK, "repeat": repeat, "clip": clip}
    finally:
        reader.close()


class PassDataset(IterableDataset):
    """The positions of one pass as a torch IterableDataset (one share per worker)."""

    def __init__(self, plan: RankPlan, shards: Sequence[ShardEntry], cfg: DataConfig, *,
                 train: bool, seed: int, epoch: int, start: int):
        super().__init__()
        self.plan, self.shards, self.cfg, self.train = plan, list(shards), cfg, train
        self.seed, self.epoch, self.start = seed, epoch, start

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return emit_positions(self.plan, self.shards, self.cfg, train=self.train, seed=self.seed,
                              epoch=self.epoch, start=self.start, worker=worker,
                              num_workers=num_workers)


def pass_through(item: dict) -> dict:
    """The loader's per-item conversion: none (clips stay numpy, views included, until the
    batch is stacked once)."""
    return item


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

"""What one loader worker does in a pass: decode the positions it owns, in order.

Worker ``k`` of ``K`` owns the positions ``p`` with ``p % K == k``. Every worker of a rank
reads the rank's whole range of raw samples (tar reading costs little next to JPEG
decoding, and the workers' reads of the same files share the page cache) but decodes only
its own positions. That keeps the batches independent of the number of workers: a run
resumed on a machine with another worker count sees exactly the same batches.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
from collections import Counter
from typing import Iterator

import cv2
import torch
from torch.utils.data import IterableDataset, get_worker_info

from fpar.data.clip import UndecodableSample, make_clip, required_members
from fpar.data.config import DataConfig
from fpar.data.plan import RankPlan
from fpar.data.reader import read_pieces

OK, MISSING, UNDECODABLE = "ok", "missing", "undecodable"


def emit_positions(
    plan: RankPlan,
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
    first = start + (worker - start) % num_workers
    owned = range(first, plan.total, num_workers)
    sources = [plan.source(p) for p in owned]
    uses = Counter(index for index, _ in sources)
    store: dict = {}
    inputs = read_pieces(plan.pieces, required_members(cfg.use_flow))
    read = 0
    for pos, (index, repeat) in zip(owned, sources):
        # The buffer-shuffled order never runs more than a buffer ahead of the reading,
        # so only about shuffle_buffer / K raw samples wait here at a time.
        while read <= index:
            raw = next(inputs, None)
            if raw is None:
                break
            read += 1
            if raw.index in uses:
                store[raw.index] = raw
        raw = store.get(index)
        uses[index] -= 1
        if uses[index] == 0:
            store.pop(index, None)
        if raw is None or raw.sample is None:
            problem = raw.problem if raw is not None else f"input {index} never read"
            yield {"pos": pos, "status": MISSING, "repeat": repeat, "problem": problem}
            continue
        try:
            clip = make_clip(raw.sample, cfg, train=train, seed=seed, epoch=epoch)
        except UndecodableSample as err:
            yield {"pos": pos, "status": UNDECODABLE, "repeat": repeat, "problem": str(err)}
            continue
        yield {"pos": pos, "status": OK, "repeat": repeat, "clip": clip}


class PassDataset(IterableDataset):
    """The positions of one pass as a torch IterableDataset (one share per worker)."""

    def __init__(self, plan: RankPlan, cfg: DataConfig, *, train: bool, seed: int, epoch: int,
                 start: int):
        super().__init__()
        self.plan, self.cfg, self.train = plan, cfg, train
        self.seed, self.epoch, self.start = seed, epoch, start

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return emit_positions(self.plan, self.cfg, train=self.train, seed=self.seed,
                              epoch=self.epoch, start=self.start, worker=worker,
                              num_workers=num_workers)


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

"""One loader batch built in place: each clip is cropped straight into the batch's buffer.

A batch is a window of consecutive positions of a rank's pass (:mod:`fpar.data.plan`).
:func:`assemble` reads and decodes the window's samples into batch-sized buffers (in a
loader worker: shared memory, so the finished batch crosses to the training process as a
handle, not as pickled pixels) and records each position's fate. Slots whose sample is
missing or undecodable are then filled from decoded rows (:func:`fill_rows`), and
:func:`loader_batch` gives the batch of the contract in :mod:`fpar.data.batch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from fpar.data.batch import batch_buffer
from fpar.data.clip import UndecodableSample, make_clip
from fpar.data.config import DataConfig
from fpar.data.plan import RankPlan
from fpar.data.reader import SampleReader

OK, MISSING, UNDECODABLE = "ok", "missing", "undecodable"
MAP_KEYS = ("motion", "flow")

Allocate = Callable[[Sequence[int]], torch.Tensor]


@dataclass
class BatchParts:
    """A batch window as assembled: buffers with one row per position, and what each got.

    ``items`` hold per row ``{"pos", "status", "repeat"[, "problem"]}``; ``good`` lists the
    rows holding a decoded clip; the other rows of the buffers are undefined until filled.
    ``view`` holds each row's view number in a pass with several test-time views.
    """

    first: int
    items: list[dict]
    good: list[int]
    frames: torch.Tensor
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    labels: dict[str, list[int]] = field(default_factory=dict)
    segment_id: list[str] = field(default_factory=list)
    repeat: list[bool] = field(default_factory=list)
    view: list[int] | None = None

    def pin_memory(self) -> "BatchParts":
        """Moves the buffers to pinned memory (the DataLoader's pinning thread calls this)."""
        self.frames = self.frames.pin_memory()
        self.maps = {key: buffer.pin_memory() for key, buffer in self.maps.items()}
        return self


def assemble(reader: SampleReader, plan: RankPlan, first: int, size: int, cfg: DataConfig, *,
             train: bool, seed: int, epoch: int, allocate: Allocate) -> BatchParts:
    """Decodes positions ``first .. first + size - 1`` (those below ``plan.total``).

    Raises:
        ValueError: decoded clips whose maps differ in shape, naming their segments.
    """
    positions = range(first, min(first + size, plan.total))
    rows = len(positions)
    frames = allocate((rows, cfg.num_frames, cfg.crop_size, cfg.crop_size, 3))
    frame_rows = frames.numpy()
    parts = BatchParts(first, [], [], frames, labels={k: [-1] * rows for k in cfg.label_keys},
                       segment_id=[""] * rows, repeat=[True] * rows,
                       view=[plan.view(pos)[0] for pos in positions] if plan.views else None)
    decoded: dict[str, list] = {key: [] for key in MAP_KEYS}
    for row, pos in enumerate(positions):
        index, repeat = plan.source(pos)
        item: dict = {"pos": pos, "repeat": repeat}
        parts.items.append(item)
        raw = reader.read(index)
        if raw.sample is None:
            item.update(status=MISSING, problem=raw.problem)
            continue
        try:
            clip = make_clip(raw.sample, cfg, train=train, seed=seed, epoch=epoch,
                             frames_out=frame_rows[row], view=plan.view(pos)[1],
                             bounds=raw.bounds)
        except UndecodableSample as err:
            item.update(status=UNDECODABLE, problem=str(err))
            continue
        item["status"] = OK
        parts.good.append(row)
        parts.repeat[row] = bool(repeat)
        parts.segment_id[row] = clip["segment_id"]
        for key in cfg.label_keys:
            parts.labels[key][row] = clip[key]
        for key in MAP_KEYS:
            if key in clip:
                decoded[key].append(clip[key])
    for key, arrays in decoded.items():
        if arrays:
            parts.maps[key] = _rows_of(arrays, parts, allocate)
    return parts


def _rows_of(arrays: list[np.ndarray], parts: BatchParts, allocate: Allocate) -> torch.Tensor:
    """The decoded rows' maps in one batch buffer (rows without a clip left undefined)."""
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        ids = [parts.segment_id[row] for row in parts.good]
        raise ValueError(f"clips {ids} differ in map shape {sorted(shapes)} (shards built with "
                         "different sizes? set data.motion_size)")
    out = allocate((len(parts.items), *arrays[0].shape))
    rows = out.numpy()
    for row, array in zip(parts.good, arrays):
        rows[row] = array
    return out


def fill_rows(parts: BatchParts, donor: BatchParts, donor_rows: Sequence[int]) -> None:
    """Fills every row of ``parts`` without a clip with a copy of a decoded row of
    ``donor`` (cycling through ``donor_rows``), flagged as a repeat."""
    good = set(parts.good)
    empty = [row for row in range(len(parts.items)) if row not in good]
    for key, buffer in donor.maps.items():
        if key not in parts.maps:  # no row of this batch decoded: no buffer yet
            parts.maps[key] = torch.empty((len(parts.items), *buffer.shape[1:]), dtype=buffer.dtype)
    for n, row in enumerate(empty):
        src = donor_rows[n % len(donor_rows)]
        parts.frames[row].copy_(donor.frames[src])
        for key, buffer in parts.maps.items():
            buffer[row].copy_(donor.maps[key][src])
        for key, values in parts.labels.items():
            values[row] = donor.labels[key][src]
        parts.segment_id[row] = donor.segment_id[src]
        parts.repeat[row] = True


def loader_batch(parts: BatchParts, rows: Sequence[int] | None = None) -> dict:
    """The loader batch (:mod:`fpar.data.batch`) of ``parts``, or of just ``rows``."""
    if rows is not None and len(rows) == len(parts.items):
        rows = None
    pick = (lambda t: t) if rows is None else (lambda t: t[list(rows)])
    keep = range(len(parts.items)) if rows is None else rows
    batch = {"frames": pick(parts.frames)}
    batch.update({key: pick(buffer) for key, buffer in parts.maps.items()})
    for key, values in parts.labels.items():
        batch[key] = torch.tensor([values[r] for r in keep], dtype=torch.int64)
    batch["segment_id"] = [parts.segment_id[r] for r in keep]
    batch["is_repeat"] = torch.tensor([parts.repeat[r] for r in keep], dtype=torch.bool)
    if parts.view is not None:
        batch["view"] = torch.tensor([parts.view[r] for r in keep], dtype=torch.int64)
    return batch


def local_allocator(pin: bool) -> Allocate:
    """Batch buffers of this process (pinned for a GPU)."""
    return lambda shape: batch_buffer(shape, pin=pin)


def shared_allocator(shape: Sequence[int]) -> torch.Tensor:
    """A uint8 batch buffer in shared memory: a loader worker hands it to the training
    process as a handle, without pickling its bytes."""
    return batch_buffer(shape, shared=True)

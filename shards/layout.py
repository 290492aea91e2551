"""Which samples a shard folder's shards hold, in which order, and writing them.

The layout is a pure function of (the planned sample keys, ``shard_samples``, ``seed``):
the keys in sorted order are permuted by the seed and cut into shards of
``shard_samples``, so every shard is a random sample of the whole split (not a run of one
video) and two builds of the same inputs write the same shards, byte for byte, whatever
the number of workers or the crashes on the way. Workers stage one small tar per sample;
the shards are written from the staged samples, in layout order, once every video has
been decoded (:func:`write_shards`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from shards.schema import shard_name
from shards.worker import rate_report
from shards.writer import Journal, ShardRecord, ShardWriter, read_samples

log = logging.getLogger(__name__)

DEFAULT_SHARD_SAMPLES = 256
_LAYOUT_STREAM = 0x1A7047  # keeps the layout's random stream apart from any other use of the seed


def plan_layout(keys: list[str], shard_samples: int, seed: int) -> list[list[str]]:
    """The keys of each shard, in order: a seeded permutation of the sorted keys, cut up."""
    if shard_samples < 1:
        raise ValueError(f"shard_samples must be >= 1, got {shard_samples}")
    canonical = sorted(keys)
    perm = np.random.default_rng([int(seed), _LAYOUT_STREAM]).permutation(len(canonical))
    ordered = [canonical[i] for i in perm]
    return [ordered[i : i + shard_samples] for i in range(0, len(ordered), shard_samples)]


def write_shards(
    out: Path,
    dataset: str,
    split: str,
    layout: list[list[str]],
    records: list[ShardRecord],
    staged: set[str] | Mapping[str, Path],
    staging: Path,
    table_fps: dict[str, float],
    progress: bool = False,
) -> list[ShardRecord]:
    """Writes every shard of the layout that is missing or holds other samples.

    A shard holds its planned keys that are available (staged, or in a shard of an earlier
    run); a shard whose keys are all unavailable is not written.

    Args:
        out: The shard folder.
        layout: :func:`plan_layout`'s keys per shard.
        records: Finished shards from the journal (earlier runs).
        staged: Keys staged in ``staging`` (``KEY.tar`` each), or the staged file of each key.
        table_fps: The annotations' rate of each key's video, to report disagreements.

    Returns:
        The records of the folder's shards, in layout order.
    """
    from tqdm import tqdm

    if not isinstance(staged, Mapping):
        staged = {k: staging / f"{k}.tar" for k in staged}
    by_name = {r.name: r for r in records}
    in_shard = {k: r.name for r in records for k in r.keys}
    journal = Journal(out)
    final: list[ShardRecord] = []
    for number, planned in enumerate(tqdm(layout, desc=f"{dataset} {split} shards", unit="shard", disable=not progress)):
        name = shard_name(dataset, split, number)
        keys = [k for k in planned if k in staged or k in in_shard]
        old = by_name.get(name)
        if old is not None and old.keys == keys:
            final.append(old)
            continue
        if not keys:
            continue
        samples = {}
        for key in keys:
            samples.update(read_samples(staged[key]) if key in staged else {})
        for shard in {in_shard[k] for k in keys if k not in samples}:
            samples.update(read_samples(out / shard, set(keys) - set(samples)))
        done: list[ShardRecord] = []
        writer = ShardWriter(out, lambda: name, 1 << 62, on_finished=done.append)
        for key in keys:
            meta = json.loads(samples[key]["json"])
            rate = rate_report(meta.get("video_id", ""), table_fps.get(key, 0.0), meta.get("fps", 0.0))
            writer.write(key, samples[key], clamped=bool(meta.get("clamped")), rate=rate)
        writer.finish()
        journal.append(done[0])
        final.append(done[0])
    return final

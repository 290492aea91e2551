"""Seeded randomness and temporal sampling: which N of the M stored frames a clip uses.

All randomness of the reader flows from ``(seed, epoch, ...)`` through :func:`rng_for`, so
a sample's frames and augmentation depend only on its key, never on which worker decoded
it or when, and a resumed run draws exactly what the interrupted one drew.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np


def _stable_int(text: str) -> int:
    """A 64-bit integer from ``text`` that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def rng_for(seed: int, epoch: int, *parts: int | str) -> np.random.Generator:
    """Returns a generator determined by ``seed``, ``epoch`` and extra ``parts``.

    Args:
        seed: Run seed.
        epoch: Epoch number.
        *parts: Further identifiers (rank, a sample key, a purpose tag); strings are hashed
            with a process-independent hash.

    Returns:
        A fresh ``numpy.random.Generator``.
    """
    entropy = [int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch) & 0xFFFFFFFFFFFFFFFF]
    for part in parts:
        entropy.append(_stable_int(part) if isinstance(part, str) else int(part) & 0xFFFFFFFF)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def temporal_indices(
    num_stored: int, num_frames: int, train: bool, rng: np.random.Generator | None = None,
    clip: int = 0, clips: int = 1,
) -> np.ndarray:
    """Chooses ``num_frames`` of ``num_stored`` frames, one per equal chunk (TSN-style).

    The stored frames are split into ``num_frames`` equal chunks; training takes a
    uniformly random frame inside each chunk, testing the centre one, or with ``clips``
    K > 1 test positions the ``clip``-th of K evenly spread ones: chunk offsets
    ``(2k + 1) / 2K`` of a chunk (TSN's test-time segments). With fewer stored frames
    than wanted, chunks are shorter than a frame and frames repeat in order.

    Args:
        num_stored: M, frames stored for the segment (>= 1).
        num_frames: N, frames the clip needs (>= 1).
        train: Random positions (True) or test positions (False).
        rng: Generator for the random positions; required when ``train``.
        clip: At test, which of the ``clips`` positions (k in ``[0, clips)``).
        clips: At test, K positions per chunk (1: the chunk centres).

    Returns:
        int64 array of N non-decreasing indices in ``[0, num_stored)``.
    """
    if num_stored < 1:
        raise ValueError(f"a segment needs at least one stored frame, got {num_stored}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    chunk = num_stored / num_frames
    if train:
        if rng is None:
            raise ValueError("training-time sampling needs a random generator")
        offsets = (rng.random(num_frames) * chunk).tolist()
    elif clips == 1:
        offsets = [chunk / 2.0] * num_frames
    else:
        if not 0 <= clip < clips:
            raise ValueError(f"clip {clip} is not in [0, {clips})")
        offsets = [chunk * (2 * clip + 1) / (2 * clips)] * num_frames
    # Python floats: the same IEEE arithmetic as numpy's, without its per-call overhead.
    last = num_stored - 1
    return np.array([min(max(math.floor(i * chunk + offset), 0), last)
                     for i, offset in enumerate(offsets)], dtype=np.int64)

"""The data side of ``fpar bench gpu``: the shard loader feeding the engine, and JPEG decoding.

* Loader: :class:`fpar.data.ShardStream` with K worker processes yields training batches
  as the trainer reads them, uint8 and collated into pinned (page-locked) memory, moved
  with ``to_device`` (non-blocking copies, normalised on the device) and stepped. Per
  step: the time waiting for the batch (``data``) and the step itself (``compute``:
  copy, normalisation, forward, backward, optimiser, synchronised). The first batch of every epoch also pays
  the workers' start-up and is reported apart from the steady-state figures.
* JPEG decoding: the shard's stored frames decoded on the CPU (``cv2.imdecode``, one
  thread, as one loader worker does) and on the GPU (``torchvision.io.decode_jpeg`` on a
  list of JPEGs, one batched call per training batch's frames).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from launcher.benchmarks.gpu_measure import waiting_fraction
from launcher.benchmarks.gpu_steps import EngineStep, synchronize
from launcher.benchmarks.stats import median


def loader_steps(stepper: EngineStep, shard_dir: str | Path, workers: int, warmup: int,
                 steps: int, pin: bool = True, seed: int = 0) -> dict:
    """Steps ``stepper`` on batches read from ``shard_dir`` by ``workers`` loader processes.

    Returns:
        Median data and compute times of the steady-state steps (every batch but an
        epoch's first), the median waiting fraction, clips/s, and the epoch start cost.
    """
    from fpar.data import ShardStream

    if steps < 1 or warmup < 0 or workers < 0:
        raise ValueError("loader measurement needs steps >= 1, warmup >= 0, workers >= 0")
    data_cfg = dataclasses.replace(stepper.cfg.data, workers=workers,
                                   train_shards=str(shard_dir))
    pinned = pin and torch.cuda.is_available()
    stream = ShardStream(data_cfg, shard_dir, train=True, rank=0, world_size=1, seed=seed,
                         pin_memory=pinned)
    batch_size = data_cfg.batch_size
    records: list[tuple[bool, float, float]] = []  # (epoch's first batch, data, compute)
    done, epoch = 0, 0
    while done < warmup + steps:
        batches = stream.epoch_batches(epoch)
        first = True
        try:
            while done < warmup + steps:
                began = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    break
                ready = time.perf_counter()
                stepper.step(stepper.to_device(batch))
                synchronize(stepper.device)
                if done >= warmup:
                    records.append((first, ready - began, time.perf_counter() - ready))
                first = False
                done += 1
        finally:
            batches.close()  # stops this epoch's workers
        epoch += 1
    steady = [r for r in records if not r[0]] or records
    data_s, compute_s = [r[1] for r in steady], [r[2] for r in steady]
    starts = [r[1] for r in records if r[0]]
    step_s = median([d + c for d, c in zip(data_s, compute_s)])
    return {"workers": workers, "batch_size": batch_size, "pinned": pinned,
            "steps": len(records), "steady_steps": len(steady),
            "steps_per_epoch": stream.steps_per_epoch,
            "data_s": median(data_s), "compute_s": median(compute_s), "step_s": step_s,
            "waiting_fraction": waiting_fraction(data_s, compute_s),
            "clips_per_s": batch_size / step_s,
            "epoch_start_data_s": median(starts) if starts else None}


def _picked_jpegs(shard_dir: Path, frames: int, clips: int) -> list[bytes]:
    """``frames`` evenly spaced stored JPEGs of each of the first ``clips`` samples."""
    from launcher.benchmarks.loader_paths import read_segments

    segments = read_segments(Path(shard_dir), None, clips)
    if not segments:
        raise ValueError(f"{shard_dir}: no samples to decode")
    blobs = []
    for segment in segments:
        stored = len(segment.jpegs)
        for index in np.linspace(0, stored - 1, min(frames, stored)).round().astype(int):
            blobs.append(segment.jpegs[index])
    return blobs


def _rate(work, items: int, seconds: float, device: torch.device) -> float:
    """Items per second of ``work()`` (each call handles ``items``), after one warm-up call."""
    work()
    synchronize(device)
    calls, began = 0, time.perf_counter()
    while True:
        work()
        calls += 1
        synchronize(device)
        elapsed = time.perf_counter() - began
        if elapsed >= seconds:
            return calls * items / elapsed


def jpeg_decode_rates(shard_dir: str | Path, frames: int, clips: int, seconds: float,
                      device: torch.device) -> dict:
    """Frames/s of decoding one batch's stored JPEGs on one CPU thread and on ``device``."""
    import cv2
    from torchvision.io import decode_jpeg

    blobs = _picked_jpegs(Path(shard_dir), frames, clips)
    arrays = [np.frombuffer(b, dtype=np.uint8) for b in blobs]
    tensors = [torch.from_numpy(a.copy()) for a in arrays]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        cpu = _rate(lambda: [cv2.imdecode(a, cv2.IMREAD_COLOR) for a in arrays], len(arrays),
                    seconds, torch.device("cpu"))
    finally:
        cv2.setNumThreads(threads)
    batched = _rate(lambda: decode_jpeg(tensors, device=device), len(tensors), seconds, device)
    first = decode_jpeg(tensors[:1], device=device)[0]
    return {"frames_per_call": len(tensors), "frame_shape": list(first.shape),
            "decode_device": str(device), "cpu_one_thread_frames_per_s": cpu,
            "device_batched_frames_per_s": batched, "device_vs_cpu_thread": batched / cpu}

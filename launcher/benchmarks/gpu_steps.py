"""The steps ``fpar bench gpu`` times: the trainer's engine on synthetic and on loaded batches.

The model, Adam parameter groups, learning-rate schedule and DeepSpeed config come from
the same functions the trainer uses (:mod:`fpar.engine.optim`,
:func:`fpar.engine.deepspeed_setup.build_ds_config` and ``initialize``), and one step is
what :class:`fpar.trainer.Trainer` does per micro-batch: the batch moved and cast by
``to_device``, forward through the engine, ``compute_loss``,
``deepspeed_setup.backward``, ``engine.step``. A variant adds channels-last and
``torch.compile`` (DeepSpeed's ``engine.compile``).

Channels-last converts the trunk's input on every call, so every convolution of the trunk
runs on NHWC activations; the weights keep their layout (convolutions take them in the
input's), because ``deepspeed.initialize`` broadcasts every parameter viewed as bytes,
which a channels-last weight (last stride not 1) cannot be.

The data side:

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
import gc
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from launcher.benchmarks.gpu_measure import Variant, waiting_fraction
from launcher.benchmarks.stats import median

REPO = Path(__file__).resolve().parents[2]
PAPER_CONFIG = REPO / "configs" / "experiments" / "epic55_sparnet_conv5.yaml"
#: fp16 steps skipped for an overflow before ``first_update`` gives up (2^16 down to 2^0).
MAX_SKIPPED = 16


def experiment(config: str | Path, overrides: Sequence[str], variant: Variant, batch: int):
    """The experiment at ``config`` with random weights, the variant's precision and ZeRO
    stage, and ``batch`` clips per step (``overrides`` last, so they win)."""
    from fpar.experiment import load_experiment

    fixed = ["model.pretrained=none", f"train.precision={variant.precision}",
             f"train.zero_stage={variant.zero_stage}", f"data.batch_size={batch}",
             "train.grad_accum_steps=1"]
    return load_experiment(config, fixed + list(overrides))


def synthetic_batch(cfg, batch: int, device: torch.device, seed: int = 0) -> dict:
    """A loader batch (uint8 frames and maps at 1/4 of the crop, one label per head), made
    on the CPU and left there (``to_device`` moves and normalises it)."""
    from fpar.data.batch import random_batch
    from shards.schema import MAP_STRIDE

    return random_batch(batch, cfg.data.num_frames, cfg.data.crop_size, dict(cfg.model.num_classes),
                        seed, MAP_STRIDE)


def _channels_last_input(module, args):
    return (args[0].contiguous(memory_format=torch.channels_last),) + tuple(args[1:])


class EngineStep:
    """A DeepSpeed engine for one experiment and variant, stepped on given batches.

    Args:
        cfg: The experiment (precision and ZeRO stage as wanted).
        variant: Channels-last and compile switches (its precision must match ``cfg``).
        device: Where the engine computes.
    """

    def __init__(self, cfg, variant: Variant, device: torch.device) -> None:
        from fpar.engine import deepspeed_setup
        from fpar.engine.optim import build_adam, scheduler_factory, stage_param_groups
        from fpar.models import build_model

        if cfg.train.precision != variant.precision:
            raise ValueError(f"config precision {cfg.train.precision} != variant "
                             f"{variant.name}")
        deepspeed_setup.check_precision(cfg.train.precision, cfg.train.zero_stage,
                                        cuda_available=device.type == "cuda")
        self.cfg, self.variant, self.device = cfg, variant, device
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model)
        if variant.channels_last:
            if not hasattr(model, "trunk"):
                raise ValueError(f"channels-last: model {cfg.model.name} has no trunk")
            model.trunk.register_forward_pre_hook(_channels_last_input)
        stage = cfg.train.stages[0]
        optimizer = build_adam(stage_param_groups(model, cfg.optim, stage), cfg.optim)
        ds_config = deepspeed_setup.build_ds_config(
            cfg.train.precision, cfg.train.zero_stage, cfg.data.batch_size, 1,
            cfg.train.grad_clip)
        self.engine, _ = deepspeed_setup.initialize(
            model, optimizer, ds_config, scheduler_factory(cfg.optim, stage, 1000))
        self.dtype = deepspeed_setup.engine_dtype(self.engine)
        if variant.compile:
            self.engine.compile()
        self.engine.train()

    def to_device(self, batch: dict) -> dict:
        """The batch as the trainer hands it to the engine."""
        from fpar.data.batch import prepare_batch

        return prepare_batch(batch, self.device, self.dtype)

    def forward_backward(self, on_device: dict) -> torch.Tensor:
        """Forward, loss and backward (no optimiser step): what the FLOP count covers."""
        from fpar.engine import deepspeed_setup
        from fpar.models import compute_loss

        loss, _ = compute_loss(self.cfg.model, self.engine(on_device), on_device)
        deepspeed_setup.backward(self.engine, loss)
        return loss

    def step(self, on_device: dict) -> float:
        """One optimiser step on a batch already on the device; returns the loss."""
        loss = self.forward_backward(on_device)
        self.engine.step()
        return float(loss.detach())

    def clear_grads(self) -> None:
        """Drops gradients left by a step that failed half way (out of memory)."""
        self.engine.zero_grad()
        for p in self.engine.module.parameters():
            p.grad = None

    def loss_scale(self) -> float | None:
        """fp16's current dynamic loss scale (None in other precisions)."""
        from fpar.engine import deepspeed_setup

        return deepspeed_setup.loss_scale(self.engine)

    def close(self) -> None:
        """Releases the engine and the device memory it held."""
        from fpar.engine import deepspeed_setup

        deepspeed_setup.release(self.engine)
        self.engine = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(stepper: EngineStep, on_device: dict, warmup: int, steps: int) -> dict:
    """Runs ``warmup`` then ``steps`` synchronised steps; returns their times and losses."""
    first = None
    for i in range(warmup):
        began = time.perf_counter()
        stepper.step(on_device)
        synchronize(stepper.device)
        if i == 0:
            first = time.perf_counter() - began  # includes compilation, autotuning
    times, losses = [], []
    skipped_before = stepper.engine.skipped_steps
    for _ in range(steps):
        began = time.perf_counter()
        losses.append(stepper.step(on_device))
        synchronize(stepper.device)
        times.append(time.perf_counter() - began)
    return {"times": times, "losses": losses, "first_step_s": first,
            "skipped_steps": stepper.engine.skipped_steps - skipped_before}


def peak_memory(device: torch.device) -> dict | None:
    """Peak allocated and reserved device memory (GiB) since the last reset."""
    if device.type != "cuda":
        return None
    gib = 2.0 ** 30
    return {"allocated_gib": torch.cuda.max_memory_allocated(device) / gib,
            "reserved_gib": torch.cuda.max_memory_reserved(device) / gib,
            "total_gib": torch.cuda.get_device_properties(device).total_memory / gib}


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def fits_function(stepper: EngineStep, seed: int = 0):
    """``fits(batch)`` for the batch search: one step at that batch; False on OOM."""
    from launcher.benchmarks.gpu_measure import is_oom

    def fits(batch: int) -> bool:
        on_device = None
        try:
            on_device = stepper.to_device(synthetic_batch(stepper.cfg, batch, stepper.device, seed))
            stepper.step(on_device)
            synchronize(stepper.device)
            return True
        except Exception as err:  # noqa: BLE001 - anything but OOM is re-raised
            if not is_oom(err):
                raise
            return False
        finally:
            del on_device
            stepper.clear_grads()
            gc.collect()
            if stepper.device.type == "cuda":
                torch.cuda.empty_cache()

    return fits


def first_update(cfg, variant: Variant, device: torch.device, seed: int = 0) -> dict:
    """The first applied optimiser step's relative weight update, ``||w1 - w0|| / ||w0||``
    over the trained weights, on a synthetic batch: equal across precisions when each scales
    its gradients right (fp16 without loss scaling moves far less). fp16 steps skipped for
    an overflow (the dynamic scale coming down from 2^16) change nothing and are repeated."""
    stepper = EngineStep(cfg, variant, device)
    try:
        weights = [p for p in stepper.engine.module.parameters() if p.requires_grad]
        before = [p.detach().float().clone() for p in weights]
        on_device = stepper.to_device(synthetic_batch(cfg, cfg.data.batch_size, device, seed))
        for _ in range(MAX_SKIPPED + 1):
            skipped = stepper.engine.skipped_steps
            loss = stepper.step(on_device)
            if stepper.engine.skipped_steps == skipped:
                break
        synchronize(device)
        moved = sum(float((p.detach().float() - b).pow(2).sum()) for p, b in zip(weights, before))
        norm = sum(float(b.pow(2).sum()) for b in before)
        return {"relative_update": (moved / norm) ** 0.5, "loss": loss,
                "skipped_steps": stepper.engine.skipped_steps,
                "loss_scale": stepper.loss_scale(), "batch_size": cfg.data.batch_size}
    finally:
        stepper.close()


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

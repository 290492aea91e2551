"""The parts of ``fpar bench gpu``: each builds its engines, measures and returns a dict.

A variant that fails (a compile error, out of memory at the timed batch) is recorded with
its error and the others still run: on a scarce GPU every figure counts.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch

from launcher.benchmarks.gpu_measure import (
    Variant,
    count_flops,
    is_oom,
    largest_batch,
    step_figures,
    workers_enough,
)
from launcher.benchmarks.gpu_steps import (
    EngineStep,
    experiment,
    fits_function,
    peak_memory,
    reset_peak_memory,
    synthetic_batch,
    timed_steps,
)

FLOP_COUNT_BATCH = 2


def _stepper(args, variant: Variant, device, batch: int) -> EngineStep:
    return EngineStep(experiment(args.config, args.overrides, variant, batch), variant, device)


def _error(err: BaseException) -> dict:
    return {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:500],
            "out_of_memory": is_oom(err)}


def flops_per_clip(args, variants: list[Variant], device) -> float:
    """FLOPs of one clip's training step (eager, first variant's precision); steps are
    linear in the batch, so a batch of two is counted and halved."""
    eager = Variant(precision=variants[0].precision, zero_stage=variants[0].zero_stage)
    stepper = _stepper(args, eager, device, FLOP_COUNT_BATCH)
    try:
        on_device = stepper.to_device(synthetic_batch(stepper.cfg, FLOP_COUNT_BATCH, device))
        flops = count_flops(lambda: stepper.forward_backward(on_device))
        stepper.clear_grads()
    finally:
        stepper.close()
    if flops <= 0:
        raise RuntimeError("the FLOP counter saw no matrix products in a training step")
    return flops / FLOP_COUNT_BATCH


def time_variant(args, variant: Variant, device, flops: float, peak: float | None,
                 batch: int | None = None) -> dict:
    """Step figures of one variant at ``batch`` (default ``--batch-size``)."""
    batch = batch or args.batch_size
    reset_peak_memory(device)
    stepper = None
    try:
        stepper = _stepper(args, variant, device, batch)
        on_device = stepper.to_device(synthetic_batch(stepper.cfg, batch, device, args.seed))
        timed = timed_steps(stepper, on_device, args.warmup, args.steps)
        out = step_figures(timed["times"], batch, flops, peak)
        out.update(batch_size=batch, first_step_s=timed["first_step_s"],
                   skipped_steps=timed["skipped_steps"], loss_scale=stepper.loss_scale(),
                   losses_finite=all(math.isfinite(v) for v in timed["losses"]),
                   memory=peak_memory(device))
        return out
    except Exception as err:  # noqa: BLE001 - recorded, the other variants still run
        return _error(err)
    finally:
        if stepper is not None:
            stepper.close()


def search_batches(args, variants, results, device, flops, peaks, over) -> dict:
    """Per precision: the largest batch of its fastest eager variant, and its figures."""
    out = {}
    for precision in dict.fromkeys(v.precision for v in variants):
        eager = [v for v in variants if v.precision == precision and not v.compile
                 and "clips_per_s" in results.get(v.name, {})]
        if not eager:
            out[precision] = {"skipped": "no eager variant of this precision was measured"}
            continue
        if over():
            out[precision] = {"skipped": "time budget spent"}
            continue
        variant = max(eager, key=lambda v: results[v.name]["clips_per_s"])
        stepper = None
        try:
            stepper = _stepper(args, variant, device, args.search_start)
            found = largest_batch(fits_function(stepper, args.seed), start=args.search_start,
                                  limit=args.max_batch, granularity=args.granularity)
        except Exception as err:  # noqa: BLE001
            out[precision] = {"variant": variant.name} | _error(err)
            continue
        finally:
            if stepper is not None:
                stepper.close()
        entry = {"variant": variant.name, "largest": found.largest,
                 "first_failed": found.first_failed, "capped_at_max_batch": found.capped,
                 "tried": [list(t) for t in found.tried]}
        if found.largest:
            entry["timed_batch"] = timed_batch(found.largest, found.first_failed,
                                               args.granularity)
            entry["at_timed_batch"] = time_variant(args, variant, device, flops,
                                                   peaks[precision][0], batch=entry["timed_batch"])
        out[precision] = entry
    return out


def timed_batch(largest: int, first_failed: int | None, granularity: int) -> int:
    """The batch the figures of the search are timed at: the largest that fit when the
    search never ran out of memory, else 7/8 of it (a multiple of ``granularity`` where one
    fits): at the very edge a step can run out of memory on fragmentation alone."""
    if first_failed is None:
        return largest
    below = largest * 7 // 8
    return below // granularity * granularity or max(1, below)


def prepare_shards(work: Path, seed: int) -> Path:
    """Synthetic EPIC-55 kitchens (456x256) and their train shards in ``work`` (reused)."""
    from launcher.benchmarks.loader import prepare
    from launcher.benchmarks.machine import usable_cores

    spec = argparse.Namespace(size="456x256", segments=192, seed=seed,
                              workers=max(1, usable_cores() - 1), short_side=256)
    return prepare(work, spec)[0]


def loader_part(args, variants, results, device, shard_dir: Path, over=lambda: False) -> dict:
    """The fastest eager bf16 (else first) variant fed by the loader, per worker count."""
    from launcher.benchmarks.gpu import GOALS, worker_counts
    from launcher.benchmarks.machine import usable_cores

    measured = [v for v in variants if not v.compile and "clips_per_s" in results.get(v.name, {})]
    if not measured:
        return {"skipped": "no eager variant was measured"}
    variant = max(measured, key=lambda v: (v.precision == "bf16", results[v.name]["clips_per_s"]))
    counts = worker_counts(args.loader_workers, usable_cores())
    per_workers: dict[str, dict] = {}
    stepper = _stepper(args, variant, device, args.batch_size)
    try:
        from launcher.benchmarks.gpu_loader import loader_steps

        for workers in counts:
            if over():
                per_workers[str(workers)] = {"skipped": "time budget spent"}
                continue
            try:
                per_workers[str(workers)] = loader_steps(
                    stepper, shard_dir, workers, warmup=2, steps=args.loader_steps,
                    pin=not args.no_pin, seed=args.seed)
            except Exception as err:  # noqa: BLE001
                per_workers[str(workers)] = _error(err)
    finally:
        stepper.close()
    fractions = {int(k): v["waiting_fraction"] for k, v in per_workers.items()
                 if "waiting_fraction" in v}
    out = {"variant": variant.name, "shards": str(shard_dir), "cores": usable_cores(),
           "in_memory_clips_per_s": results[variant.name]["clips_per_s"],
           "per_workers": per_workers, "waiting_threshold": GOALS["waiting_fraction"],
           "workers_enough": workers_enough(fractions, GOALS["waiting_fraction"]),
           "normalisation": "in the loader workers (float32 batches are copied to the GPU)"}
    if args.gpu_decode:
        out["jpeg_decode"] = _decode_part(args, variant, device, shard_dir)
    return out


def _decode_part(args, variant, device, shard_dir: Path) -> dict:
    from launcher.benchmarks.gpu_loader import jpeg_decode_rates

    cfg = experiment(args.config, args.overrides, variant, args.batch_size)
    try:
        return jpeg_decode_rates(shard_dir, cfg.data.num_frames, args.batch_size, 3.0, device)
    except Exception as err:  # noqa: BLE001
        return _error(err)


def settings(cfg, args, device, device_name: str | None) -> dict:
    """What was timed: the model, the input and the run's options."""
    return {"config": str(args.config), "overrides": list(args.overrides),
            "model": cfg.model.name, "backbone": cfg.model.backbone,
            "features_from": cfg.model.features_from, "ms_tap": cfg.model.ms_tap,
            "convlstm_hidden": cfg.model.convlstm_hidden,
            "heads": dict(cfg.model.num_classes), "frames": cfg.data.num_frames,
            "crop": cfg.data.crop_size, "batch_size": args.batch_size,
            "warmup": args.warmup, "steps": args.steps, "device": str(device),
            "device_name": device_name, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
            "cudnn_benchmark": torch.backends.cudnn.benchmark}


def goals(report: dict, targets: dict) -> dict:
    """The best figures reached against the goals (bf16 clips/s and MFU, loader waiting)."""
    candidates = [v for k, v in report["variants"].items() if k.startswith("bf16")]
    search = report.get("batch_search", {}).get("bf16", {})
    if isinstance(search.get("at_timed_batch"), dict):
        candidates.append(search["at_timed_batch"])
    rates = [v["clips_per_s"] for v in candidates if "clips_per_s" in v]
    mfus = [v["mfu"] for v in candidates if v.get("mfu") is not None]
    loader = report.get("loader", {}).get("per_workers", {})
    waits = [v["waiting_fraction"] for v in loader.values() if "waiting_fraction" in v]
    reached = {"clips_per_s": max(rates) if rates else None,
               "mfu": max(mfus) if mfus else None,
               "waiting_fraction": min(waits) if waits else None}
    out = {}
    for key, goal in targets.items():
        value = reached[key]
        met = None if value is None else (value < goal if key == "waiting_fraction"
                                          else value >= goal)
        out[key] = {"goal": goal, "reached": value, "met": met}
    return out

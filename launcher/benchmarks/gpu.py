"""``fpar bench gpu``: the paper's SparNet trained through the real engine on one GPU.

The configuration is ``configs/experiments/epic55_sparnet_conv5.yaml`` (ResNet-34, ConvLSTM
512, MS head at conv5_x, verb and noun heads, 7 frames of 224 px) with random weights.

1. Synthetic batches (already in memory) for every variant (bf16 / fp16 with dynamic loss
   scaling, channels-last, ``torch.compile``, ZeRO 0 / 1): median step time, clips/s,
   TFLOP/s and MFU (FLOPs of a step counted by ``torch.utils.flop_counter``, the peak from
   the GPU's name or ``--peak-tflops``), peak memory, fp16's loss scale.
2. The largest batch that fits, per precision (the fastest eager variant; doubling, then
   bisecting on out-of-memory), and the figures one eighth below it (timing at the very
   edge fails on fragmentation alone). cuDNN's autotuner (``cudnn.benchmark``) is on.
3. Real shards through the loader with K worker processes and pinned batches: data time
   against compute time, and the fewest workers with which the GPU waits < 5% of a step.
4. With ``--gpu-decode``: the shards' JPEGs decoded in one batched ``decode_jpeg`` call on
   the GPU against one CPU thread.

A variant that fails (a compile error, out of memory at the timed batch) is recorded with
its error and the others still run: on a scarce GPU every figure counts. Needs CUDA: without
it the command says so and exits 2. The steps timed are :mod:`launcher.benchmarks.gpu_steps`
(imported only when the benchmark runs, so that ``fpar --help`` loads no torch), the
device-free arithmetic :mod:`launcher.benchmarks.gpu_measure`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from launcher.benchmarks.gpu_measure import (
    Variant,
    best_variant,
    count_flops,
    is_oom,
    largest_batch,
    parse_variants,
    peak_tflops,
    step_figures,
    workers_enough,
)

DESCRIPTION = ("the paper's SparNet on one GPU through the DeepSpeed engine: step time, "
               "clips/s, MFU, memory, largest batch, loader workers (needs CUDA)")

DEFAULT_VARIANTS = ("bf16,bf16+cl,bf16+compile,bf16+cl+compile,fp16,fp16+cl,fp16+compile,"
                    "fp16+cl+compile,bf16+z1,fp16+z1")
GOALS = {"clips_per_s": 1000.0, "mfu": 0.20, "waiting_fraction": 0.05}
FLOP_COUNT_BATCH = 2  # steps are linear in the batch: two clips are counted, then halved


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fpar bench gpu``."""
    from launcher.benchmarks.gpu_steps import PAPER_CONFIG

    parser.add_argument("--config", default=str(PAPER_CONFIG),
                        help="experiment to time (default: the paper's epic55_sparnet_conv5)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override, repeatable")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help="comma-separated precision[+cl][+compile][+z1] (cl: "
                        f"channels-last); default {DEFAULT_VARIANTS}")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="clips per step of the variants (default 32, the paper's)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (default 5)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--peak-tflops", type=float,
                        help="the GPU's dense half-precision peak (default: from its name)")
    parser.add_argument("--no-search", action="store_true", help="skip the batch search")
    parser.add_argument("--search-start", type=int, default=32,
                        help="first batch of the search (default 32)")
    parser.add_argument("--max-batch", type=int, default=2048,
                        help="largest batch the search tries (default 2048)")
    parser.add_argument("--granularity", type=int, default=8,
                        help="the search's precision in clips (default 8)")
    parser.add_argument("--shards", metavar="DIR",
                        help="training shard folder for the loader part (default: synthetic "
                        "kitchens generated in --work or a temporary folder)")
    parser.add_argument("--work", metavar="DIR", help="folder for generated shards, reused")
    parser.add_argument("--no-loader", action="store_true", help="skip the loader part")
    parser.add_argument("--loader-workers", default="auto",
                        help="comma-separated worker counts (default: 1, 2, 4, ... up to "
                        "the usable cores)")
    parser.add_argument("--loader-steps", type=int, default=20,
                        help="timed loader steps per worker count (default 20)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin loader batches")
    parser.add_argument("--gpu-decode", action="store_true",
                        help="also time batched JPEG decoding on the GPU against the CPU")
    parser.add_argument("--budget-s", type=float, default=0.0,
                        help="skip the parts not started after this many seconds (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and batches")


def run(args: argparse.Namespace) -> dict:
    """Refuses a machine without CUDA (exit 2), else measures everything."""
    import torch

    if not torch.cuda.is_available():
        print(f"fpar bench gpu: no CUDA device is available (torch {torch.__version__}, "
              f"built for CUDA {torch.version.cuda or 'none'}); this benchmark needs a GPU. "
              "On a CPU use `fpar bench train`.", file=sys.stderr)
        raise SystemExit(2)
    from launcher.benchmarks.output import stdout_to_stderr

    with stdout_to_stderr():
        return measure(args)


def worker_counts(text: str, cores: int) -> list[int]:
    """``auto`` (1, 2, 4, ... up to ``cores``, and ``cores`` itself) or a list like ``1,4``."""
    if text == "auto":
        counts, k = [], 1
        while k < cores:
            counts.append(k)
            k *= 2
        return counts + [max(1, cores)]
    try:
        counts = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise SystemExit(f"fpar bench gpu: --loader-workers {text!r}: not integers") from None
    if not counts or counts[0] < 0:
        raise SystemExit(f"fpar bench gpu: --loader-workers {text!r}: give counts >= 0")
    return counts


def measure(args: argparse.Namespace, device=None) -> dict:
    """Runs every part on ``device`` (default: this rank's CUDA device)."""
    from fpar.engine import distributed

    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        raise SystemExit("fpar bench gpu: --steps and --batch-size must be >= 1, --warmup >= 0")
    try:
        variants = parse_variants(args.variants)
    except ValueError as err:
        raise SystemExit(f"fpar bench gpu: --variants: {err}") from None
    layout = distributed.read_env()
    found = distributed.init_process_group(layout)
    device = found if device is None else device
    if device.type == "cuda":
        import torch

        # Speed, not bit-reproducibility, is measured: cuDNN may pick its fastest kernels.
        torch.backends.cudnn.benchmark = True
    try:
        return _measure(args, variants, device)
    finally:
        distributed.teardown()


def _measure(args, variants, device) -> dict:
    import torch

    from launcher.benchmarks.gpu_steps import experiment

    began = time.monotonic()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    over = lambda: bool(args.budget_s) and time.monotonic() - began > args.budget_s  # noqa: E731
    cfg = experiment(args.config, args.overrides, variants[0], args.batch_size)
    peaks = {p: peak_tflops(name, p, args.peak_tflops) for p in {v.precision for v in variants}}
    clip_flops = flops_per_clip(args, variants, device)
    results: dict = {}
    for variant in variants:
        if over():
            results[variant.name] = {"skipped": "time budget spent"}
            continue
        results[variant.name] = time_variant(args, variant, device, clip_flops,
                                             peaks[variant.precision][0])
    report = {
        "benchmark": "gpu",
        "settings": settings(cfg, args, device, name),
        "peak_tflops": {p: {"tflops": v, "source": s} for p, (v, s) in peaks.items()},
        "flops": {"per_clip": clip_flops, "per_step": clip_flops * args.batch_size,
                  "counter": "torch.utils.flop_counter.FlopCounterMode, forward + backward"},
        "variants": results, "best_variant": best_variant(results),
    }
    report["batch_search"] = {"skipped": "--no-search"} if args.no_search else \
        search_batches(args, variants, results, device, clip_flops, peaks, over)
    if args.no_loader:
        report["loader"] = {"skipped": "--no-loader"}
    elif over():
        report["loader"] = {"skipped": "time budget spent"}
    else:
        report["loader"] = _loader_part(args, variants, results, device, over)
    report["goals"] = goals(report, GOALS)
    report["elapsed_s"] = time.monotonic() - began
    return report


def _loader_part(args, variants, results, device, over) -> dict:
    if args.shards:
        return loader_part(args, variants, results, device, Path(args.shards), over)
    if args.work:
        shards = prepare_shards(Path(args.work), args.seed)
        return loader_part(args, variants, results, device, shards, over)
    with tempfile.TemporaryDirectory(prefix="fpar-bench-gpu-") as tmp:
        shards = prepare_shards(Path(tmp), args.seed)
        return loader_part(args, variants, results, device, shards, over)


def _stepper(args, variant: Variant, device, batch: int):
    from launcher.benchmarks.gpu_steps import EngineStep, experiment

    return EngineStep(experiment(args.config, args.overrides, variant, batch), variant, device)


def _error(err: BaseException) -> dict:
    return {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:500],
            "out_of_memory": is_oom(err)}


def flops_per_clip(args, variants: list[Variant], device) -> float:
    """FLOPs of one clip's training step (eager, first variant's precision); steps are
    linear in the batch, so a batch of two is counted and halved."""
    from launcher.benchmarks.gpu_steps import synthetic_batch

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
    from launcher.benchmarks.gpu_steps import (
        peak_memory,
        reset_peak_memory,
        synthetic_batch,
        timed_steps,
    )

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
    from launcher.benchmarks.gpu_steps import fits_function

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
    from launcher.local_launch import usable_cores

    spec = argparse.Namespace(size="456x256", segments=192, seed=seed,
                              workers=max(1, usable_cores() - 1), short_side=256)
    return prepare(work, spec)[0]


def loader_part(args, variants, results, device, shard_dir: Path, over=lambda: False) -> dict:
    """The fastest eager bf16 (else first) variant fed by the loader, per worker count."""
    from launcher.benchmarks.gpu_steps import loader_steps
    from launcher.local_launch import usable_cores

    measured = [v for v in variants if not v.compile and "clips_per_s" in results.get(v.name, {})]
    if not measured:
        return {"skipped": "no eager variant was measured"}
    variant = max(measured, key=lambda v: (v.precision == "bf16", results[v.name]["clips_per_s"]))
    counts = worker_counts(args.loader_workers, usable_cores())
    per_workers: dict[str, dict] = {}
    stepper = _stepper(args, variant, device, args.batch_size)
    try:
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
    from launcher.benchmarks.gpu_steps import experiment, jpeg_decode_rates

    cfg = experiment(args.config, args.overrides, variant, args.batch_size)
    try:
        return jpeg_decode_rates(shard_dir, cfg.data.num_frames, args.batch_size, 3.0, device)
    except Exception as err:  # noqa: BLE001
        return _error(err)


def settings(cfg, args, device, device_name: str | None) -> dict:
    """What was timed: the model, the input and the run's options."""
    import torch

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

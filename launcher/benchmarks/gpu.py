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

Needs CUDA: without it the command says so and exits 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

DESCRIPTION = ("the paper's SparNet on one GPU through the DeepSpeed engine: step time, "
               "clips/s, MFU, memory, largest batch, loader workers (needs CUDA)")

DEFAULT_VARIANTS = ("bf16,bf16+cl,bf16+compile,bf16+cl+compile,fp16,fp16+cl,fp16+compile,"
                    "fp16+cl+compile,bf16+z1,fp16+z1")
GOALS = {"clips_per_s": 1000.0, "mfu": 0.20, "waiting_fraction": 0.05}


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
    from launcher.benchmarks.gpu_measure import parse_variants

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

    from launcher.benchmarks import gpu_parts
    from launcher.benchmarks.gpu_measure import best_variant, peak_tflops
    from launcher.benchmarks.gpu_steps import experiment

    began = time.monotonic()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    over = lambda: bool(args.budget_s) and time.monotonic() - began > args.budget_s  # noqa: E731
    cfg = experiment(args.config, args.overrides, variants[0], args.batch_size)
    peaks = {p: peak_tflops(name, p, args.peak_tflops) for p in {v.precision for v in variants}}
    flops_per_clip = gpu_parts.flops_per_clip(args, variants, device)
    results: dict = {}
    for variant in variants:
        if over():
            results[variant.name] = {"skipped": "time budget spent"}
            continue
        results[variant.name] = gpu_parts.time_variant(args, variant, device, flops_per_clip,
                                                       peaks[variant.precision][0])
    report = {
        "benchmark": "gpu",
        "settings": gpu_parts.settings(cfg, args, device, name),
        "peak_tflops": {p: {"tflops": v, "source": s} for p, (v, s) in peaks.items()},
        "flops": {"per_clip": flops_per_clip, "per_step": flops_per_clip * args.batch_size,
                  "counter": "torch.utils.flop_counter.FlopCounterMode, forward + backward"},
        "variants": results, "best_variant": best_variant(results),
    }
    report["batch_search"] = {"skipped": "--no-search"} if args.no_search else \
        gpu_parts.search_batches(args, variants, results, device, flops_per_clip, peaks, over)
    if args.no_loader:
        report["loader"] = {"skipped": "--no-loader"}
    elif over():
        report["loader"] = {"skipped": "time budget spent"}
    else:
        report["loader"] = _loader_part(args, variants, results, device, over)
    report["goals"] = gpu_parts.goals(report, GOALS)
    report["elapsed_s"] = time.monotonic() - began
    return report


def _loader_part(args, variants, results, device, over) -> dict:
    from launcher.benchmarks.gpu_parts import loader_part, prepare_shards

    if args.shards:
        return loader_part(args, variants, results, device, Path(args.shards), over)
    if args.work:
        shards = prepare_shards(Path(args.work), args.seed)
        return loader_part(args, variants, results, device, shards, over)
    with tempfile.TemporaryDirectory(prefix="fpar-bench-gpu-") as tmp:
        shards = prepare_shards(Path(tmp), args.seed)
        return loader_part(args, variants, results, device, shards, over)

"""The benchmark parts of ``launcher.gpu_check``: ``fpar bench gpu`` in four runs, the most
telling first, so that a check cut short still has the loader and the precisions.

``bench_loader``: the shards through K loader workers with pinned batches, and their JPEGs
decoded in one batched call on the GPU. ``bench_variants``: bf16 and fp16, with and without
channels-last. ``bench_compile``: ``torch.compile`` of the precision ``auto`` picks.
``bench_search``: the largest batch of its fastest eager variant.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from launcher.gpu_check_steps import fpar

#: Seconds kept back from each part's budget for the engine's start and the report.
RESERVE_S = 45.0


def bench_steps(check, train_shards: Path, precision: str) -> None:
    """Runs the four parts as steps of ``check``; ``precision``: what ``auto`` picks."""
    import torch

    if not torch.cuda.is_available():  # --allow-cpu: the benchmark itself refuses a CPU
        check.step("bench", lambda: {"skipped": "no CUDA device"})
        return
    other = "fp16" if precision == "bf16" else "bf16"
    halves = [precision] + ([other] if other == "fp16" else [])  # no emulated bf16
    check.step("bench_loader", lambda: bench(
        check, "bench_loader", "--variants", precision, "--no-search", "--shards",
        str(train_shards), "--loader-workers", "auto", "--loader-steps", "10", "--gpu-decode"))
    variants = check.step("bench_variants", lambda: bench(
        check, "bench_variants", "--variants", ",".join(f"{p},{p}+cl" for p in halves),
        "--no-search", "--no-loader"))
    check.step("bench_compile", lambda: bench(
        check, "bench_compile", "--variants", f"{precision}+cl+compile", "--no-search",
        "--no-loader"))
    fastest = fastest_eager(variants.get("result", {}), precision)
    check.step("bench_search", lambda: bench(
        check, "bench_search", "--variants", fastest, "--no-loader", "--search-start", "64",
        "--max-batch", "1024", "--granularity", "16"))


def fastest_eager(result: dict, precision: str) -> str:
    """The faster of ``precision`` and ``precision+cl`` in a bench result (default: plain)."""
    timed = {k: v["clips_per_s"] for k, v in result.get("variants", {}).items()
             if k in (precision, f"{precision}+cl") and "clips_per_s" in v}
    return max(timed, key=timed.get) if timed else precision


def bench(check, name: str, *options: str) -> dict:
    """One ``fpar bench gpu --json`` run within what is left of the time limit."""
    budget = max(30.0, check.remaining() - RESERVE_S)
    argv = fpar("bench", "gpu", "--json", *shlex.split(check.args.bench_args), *options,
                "--budget-s", f"{budget:.0f}")
    result = json.loads(check.command(name, argv).strip().splitlines()[-1])
    failed = [k for k, v in result.get("variants", {}).items() if "error" in v]
    return {"ok": not failed, "failed_variants": failed, "result": result}

"""``fpar bench scale``: training speed at 1 and 2 processes on this machine.

Each process count trains the same experiment (the demo's, at ``--scale``) on the same
small synthetic shards through ``fpar train --nproc K`` (local launch, gloo on a CPU), with
the per-rank batch fixed, so K ranks step K times the clips. Rank 0's ``metrics.jsonl``
gives every step's time; the first ``--warmup`` steps are left out and the median kept.
Figures per K: step time, clips/s over all ranks, and the scaling efficiency
clips/s(K) / (K x clips/s(1)).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fpar.run_layout import METRICS_LOG

DESCRIPTION = "training step time and clips/s at 1 and 2 local processes (fpar train --nproc)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fpar bench scale``."""
    from launcher.demo import SCALES

    parser.add_argument("--scale", choices=sorted(SCALES), default="tiny",
                        help="demo scale of the model and stored data (default: tiny)")
    parser.add_argument("--nprocs", default="1,2",
                        help="comma-separated process counts (default 1,2)")
    parser.add_argument("--segments", type=int,
                        help="synthetic segments generated, about half of them for training "
                        "(default: the scale's; the same data as fpar bench accuracy then)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs of each training run (default 3)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="first steps of each run left out (default 2)")
    parser.add_argument("--system", default="sparnet", help="model name (default sparnet)")
    parser.add_argument("--work", metavar="DIR",
                        help="folder for the data, shards and runs; data and shards are "
                        "reused (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and training")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes generating videos and building shards (default 2)")


def step_records(run_dir: Path) -> list[dict]:
    """The step records rank 0 wrote to the run's ``metrics.jsonl``."""
    path = run_dir / METRICS_LOG
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {number} is not JSON: {err}") from err
        if record.get("kind") == "step":
            records.append(record)
    return records


def summarise_steps(records: list[dict], warmup: int, nproc: int, batch_size: int) -> dict:
    """Median step time and clips/s (all ranks) after ``warmup`` steps.

    Raises:
        ValueError: If no step is left after the warm-up.
    """
    from launcher.benchmarks.stats import median

    timed = records[warmup:]
    if not timed:
        raise ValueError(f"{len(records)} step(s) recorded, none left after {warmup} warm-up "
                         "step(s): raise --epochs or --segments")
    step_s = median([r["step_time"] for r in timed])
    clips = int(timed[0].get("clips", batch_size * nproc))
    return {"nproc": nproc, "steps_timed": len(timed), "step_s": step_s,
            "data_s": median([r["data_time"] for r in timed]),
            "compute_s": median([r["compute_time"] for r in timed]),
            "clips_per_step": clips, "clips_per_s": clips / step_s}


def run(args: argparse.Namespace) -> dict:
    """Prepares the shards, trains at each process count and returns the step figures."""
    from launcher.benchmarks.accuracy import parse_list

    nprocs = parse_list(args.nprocs, "--nprocs", int)
    if min(nprocs) < 1 or args.epochs < 1 or args.warmup < 0:
        raise SystemExit("fpar bench scale: process counts and --epochs must be >= 1")
    if args.work:
        return _measure(Path(args.work), args, nprocs)
    with tempfile.TemporaryDirectory(prefix="fpar-bench-scale-") as tmp:
        return _measure(Path(tmp), args, nprocs)


def _measure(work: Path, args: argparse.Namespace, nprocs: list[int]) -> dict:
    from launcher import demo
    from launcher.benchmarks.output import stdout_to_stderr

    scale = dataclasses.replace(demo.SCALES[args.scale], epochs=args.epochs)
    if args.segments:
        scale = dataclasses.replace(scale, segments=args.segments)
    runs = {}
    with stdout_to_stderr():
        data = demo.make_data(work, scale, args.seed, args.workers)
        shards = demo.make_shards(work, data, scale, args.workers)
        for nproc in nprocs:
            run_dir = work / "runs" / f"nproc{nproc}"
            if run_dir.exists():  # a fresh run each time: a finished one would be resumed
                shutil.rmtree(run_dir)
            overrides = demo.overrides_for(args.system, scale, shards, args.seed)
            overrides += ["eval.test_splits={}", "model.pretrained=none",
                          "train.log_every_steps=1"]
            cmd = [sys.executable, "-m", "launcher.cli", "train", str(demo.CONFIG), *overrides,
                   "--run-dir", str(run_dir), "--nproc", str(nproc)]
            subprocess.run(cmd, check=True)
            runs[nproc] = summarise_steps(step_records(run_dir), args.warmup, nproc,
                                          scale.batch_size)
    base = runs.get(1)
    for nproc, figures in runs.items():
        figures["efficiency"] = (figures["clips_per_s"] / (nproc * base["clips_per_s"])
                                 if base else None)
    return {
        "benchmark": "scale",
        "settings": {"scale": args.scale, "system": args.system, "backbone": scale.backbone,
                     "crop": scale.crop, "frames": scale.num_frames,
                     "batch_size_per_rank": scale.batch_size, "epochs": args.epochs,
                     "warmup_steps": args.warmup, "backend": "gloo (CPU)" if not _cuda() else "nccl"},
        "runs": {str(nproc): figures for nproc, figures in runs.items()},
    }


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()

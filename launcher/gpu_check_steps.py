"""The steps of ``launcher.gpu_check`` (see there for what each one proves) and their runner.

The benchmark steps run ``fpar bench gpu`` in four runs, the most telling first, so that a
check cut short still has the loader and the precisions. ``bench_loader``: the shards
through K loader workers with pinned batches, and their JPEGs decoded in one batched call
on the GPU. ``bench_variants``: bf16 and fp16, with and without channels-last.
``bench_compile``: ``torch.compile`` of the precision ``auto`` picks. ``bench_search``: the
largest batch of its fastest eager variant.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fpar.run_layout import BEST, LATEST, METRICS_LOG, checkpoints_dir
from launcher.benchmarks.gpu_steps import REPO

LOG_TAIL = 3000
#: Largest relative difference of a precision's first update from fp32's.
UPDATE_TOLERANCE = 0.10
#: Seconds kept back from each benchmark part's budget for the engine's start and the report.
RESERVE_S = 45.0


class CheckError(RuntimeError):
    """A step could not run: the check stops here."""


class Check:
    """Runs the steps in order, keeps their records and rewrites the summary after each."""

    def __init__(self, args: argparse.Namespace, work: Path, out: Path) -> None:
        self.args, self.work, self.out = args, work, out
        self.began = time.monotonic()
        self.steps: dict[str, dict] = {}
        self.warnings: dict[str, dict] = {}
        (work / "logs").mkdir(parents=True, exist_ok=True)

    def remaining(self) -> float:
        return self.args.time_limit - (time.monotonic() - self.began)

    def write(self, finished: bool = False, stopped_by: str | None = None) -> dict:
        """The summary so far, written to ``out`` atomically (a kill leaves the last one)."""
        from launcher.benchmarks.machine import machine_info
        from shards.files import atomic_write_json

        summary = {"check": "gpu",
                   "ok": finished and stopped_by is None
                   and all(s["ok"] for s in self.steps.values()),
                   "finished": finished, "stopped_by": stopped_by, "steps": self.steps,
                   "warnings": {"total": sum(w["count"] for w in self.warnings.values()),
                                "per_step": self.warnings},
                   "elapsed_s": round(time.monotonic() - self.began, 1),
                   "machine": machine_info(), "work": str(self.work)}
        atomic_write_json(self.out, summary)
        return summary

    def step(self, name: str, body) -> dict:
        began = time.monotonic()
        try:
            record = body() or {}
        except CheckError as err:
            self.steps[name] = {"ok": False, "error": str(err),
                                "seconds": round(time.monotonic() - began, 1)}
            self.write(stopped_by=str(err))
            raise
        except Exception as err:  # noqa: BLE001 - any failure stops the check, named
            self.steps[name] = {"ok": False, "error": f"{type(err).__name__}: {err}",
                                "seconds": round(time.monotonic() - began, 1)}
            self.write(stopped_by=f"{name}: {err}")
            raise CheckError(f"{name}: {err}") from err
        record = {"ok": record.pop("ok", True), **record,
                  "seconds": round(time.monotonic() - began, 1)}
        self.steps[name] = record
        self.write()
        return record

    def command(self, name: str, argv: list[str], timeout: float | None = None) -> str:
        """Runs ``argv`` (logged to logs/<name>.log); returns its stdout; raises on failure."""
        limit = self.remaining() if timeout is None else min(timeout, self.remaining())
        if limit < 5:
            raise CheckError(f"{name}: the time limit ({self.args.time_limit:.0f} s) is spent")
        log = self.work / "logs" / f"{name}.log"
        try:
            proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired as err:
            log.write_text(f"$ {shlex.join(argv)}\n{err.stdout or ''}\n{err.stderr or ''}")
            raise CheckError(f"{name}: timed out after {limit:.0f} s (log {log})") from None
        log.write_text(f"$ {shlex.join(argv)}\n[exit {proc.returncode}]\n"
                       f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        found = warnings_in(proc.stdout + "\n" + proc.stderr)  # DeepSpeed logs to stdout
        if found["count"]:
            self.warnings[name] = found
        if proc.returncode != 0:
            raise CheckError(f"{name}: exit {proc.returncode} (log {log}): "
                             f"{proc.stderr[-LOG_TAIL:]}")
        return proc.stdout


WARNING_LINE = re.compile(r"\b[A-Za-z]*Warning:|\bWARNING\b|\[W[0-9]{3,4} ")


def warnings_in(stderr: str, keep: int = 5) -> dict:
    """Python warnings, logged WARNING lines and torch's C++ warnings (``[W...``) in a
    child's output: their count and the first distinct ones."""
    lines = [line.strip() for line in stderr.splitlines() if WARNING_LINE.search(line)]
    return {"count": len(lines), "first": list(dict.fromkeys(lines))[:keep]}


def fpar(*args: str) -> list[str]:
    return [sys.executable, "-m", "launcher.cli", *args]


def child(*args: str) -> list[str]:
    return [sys.executable, "-m", "launcher.gpu_check_child", *args]


def copy_until(run_dir: Path, dest: Path, keep_tag: str) -> None:
    """``dest``: the run folder as it stood at checkpoint ``keep_tag`` (later ones removed)."""
    from fpar.engine import checkpoint as ckpt

    shutil.copytree(run_dir, dest)
    root = checkpoints_dir(dest)
    keep_step = int(keep_tag.removeprefix("step"))
    for tag in ckpt.complete_tags(root):
        if int(tag.removeprefix("step")) > keep_step:
            shutil.rmtree(root / tag)
    (root / LATEST).write_text(keep_tag + "\n")
    if (root / BEST).is_file():
        (root / BEST).unlink()




def run_steps(check) -> None:
    """Runs every step in order; raises CheckError at the first one that cannot run."""
    device = check.step("device", lambda: device_info(check.args.allow_cpu))
    shards = Path(check.args.shards).resolve() if check.args.shards else check.work / "shards"
    check.step("data", lambda: use_data(check, shards) if check.args.shards
               else build_data(check, shards))
    precisions = [p.strip() for p in check.args.precisions.split(",") if p.strip()]
    runs = {p: check.work / "runs" / p for p in precisions}
    for precision, run_dir in runs.items():
        check.step(f"train_{precision}", lambda: train(check, run_dir, shards, precision))
    check.step("update", lambda: first_updates(check, precisions))
    for run_dir in runs.values():
        check.step(f"restore_{run_dir.name}", lambda: restore(check, run_dir))
        check.step(f"resume_{run_dir.name}", lambda: resume(check, run_dir))
    first = runs.get("bf16") or next(iter(runs.values()), None)
    if first is not None:
        check.step("eval", lambda: evaluate(check, first, shards / "s1"))
    if not check.args.skip_bench:
        bench_steps(check, shards / "train", device.get("precision_auto", "bf16"))


def device_info(allow_cpu: bool) -> dict:
    import torch

    from fpar.engine import deepspeed_setup

    if not torch.cuda.is_available():
        if not allow_cpu:
            raise CheckError("no CUDA device")
        return {"device": "cpu"}
    props = torch.cuda.get_device_properties(0)
    driver = None
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        driver = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None
    return {"device": torch.cuda.get_device_name(0), "memory_gib": props.total_memory / 2**30,
            "capability": f"{props.major}.{props.minor}", "driver": driver,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "bf16_native": deepspeed_setup.native_bf16(),
            "precision_auto": deepspeed_setup.resolve_precision("auto"),
            "devices": torch.cuda.device_count()}


def build_data(check, shards: Path) -> dict:
    from launcher.local_launch import usable_cores
    from shards.schema import read_manifest

    args = check.args
    data = check.work / "data"
    width, height = (int(v) for v in args.size.lower().split("x"))
    workers = str(max(1, usable_cores() - 1))
    if not (data / "synth.json").is_file():
        check.command("synth", fpar("synth", "--format", "epic55", "--out", str(data),
                                    "--participants", str(args.participants),
                                    "--segments", str(args.segments), "--seed", "0",
                                    "--width", str(width), "--height", str(height),
                                    "--workers", workers))
    counts = {}
    for split in ("train", "s1"):
        check.command(f"shards_{split}", fpar(
            "shards", "build", "--format", "epic55", "--root", str(data / "videos"),
            "--annotations", str(data / "annotations"), "--split", split,
            "--out", str(shards / split), "--workers", workers, "--frames", str(args.frames),
            "--short-side", str(args.short_side), "--no-progress"))
        counts[split] = read_manifest(shards / split)["num_samples"]
    _enough(args, counts)
    return {"samples": counts}


def use_data(check, shards: Path) -> dict:
    """Prebuilt shards: both splits present and enough training samples."""
    from shards.schema import read_manifest

    counts = {}
    for split in ("train", "s1"):
        try:
            counts[split] = read_manifest(shards / split)["num_samples"]
        except (OSError, ValueError, KeyError) as err:
            raise CheckError(f"data: --shards {shards}: no readable {split} shards ({err})") \
                from None
    _enough(check.args, counts)
    return {"samples": counts, "prebuilt": str(shards)}


def _enough(args, counts: dict) -> None:
    needed = args.batch_size * args.steps
    if counts["train"] < needed:
        raise CheckError(f"data: {counts['train']} training samples, fewer than the "
                         f"{needed} that {args.steps} steps of {args.batch_size} need; "
                         "raise --segments")


def first_updates(check, precisions: list[str]) -> dict:
    """Each precision's first relative update against fp32's (see ``update`` in the child)."""
    out = check.work / "first_updates.json"
    wanted = list(dict.fromkeys(["fp32", *precisions]))
    check.command("update", child("update", str(out), check.args.config,
                                  ",".join(wanted), str(check.args.batch_size),
                                  *check.args.overrides))
    updates = json.loads(out.read_text())
    reference = updates["fp32"]["relative_update"]
    ratios = {p: updates[p]["relative_update"] / reference for p in wanted if p != "fp32"}
    return {"ok": reference > 0 and all(abs(r - 1.0) <= UPDATE_TOLERANCE
                                        for r in ratios.values()),
            "ratio_to_fp32": ratios, "tolerance": UPDATE_TOLERANCE, "updates": updates}


def train_overrides(check, shards: Path, precision: str) -> list[str]:
    args = check.args
    return [f"data.train_shards={shards / 'train'}", "data.val_shards=null",
            "eval.test_splits={}", f"data.batch_size={args.batch_size}",
            # In-process reading: a DataLoader draws its workers' base seed from the global
            # torch generator, which would move the saved CPU RNG state of a resumed run.
            f"data.eval_batch_size={args.batch_size}", "data.workers=0",
            "model.pretrained=none", f"train.precision={precision}",
            "train.stages=[{name: end_to_end, epochs: 1, trainable: [all]}]",
            f"train.max_steps_per_epoch={args.steps}",
            f"train.checkpoint_every_steps={args.steps // 2}",
            # fp16 starts at a loss scale of 2^16 and skips steps until it has come down.
            "train.max_nonfinite_steps=50", "train.log_every_steps=1",
            f"name=gpu_check_{precision}", *args.overrides]


def _steps_of(run_dir: Path) -> list[dict]:
    lines = (run_dir / METRICS_LOG).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == "step"]


def train(check, run_dir: Path, shards: Path, precision: str) -> dict:
    from fpar.engine import checkpoint as ckpt

    out = check.command(f"train_{precision}", child(
        "train", str(run_dir), check.args.config, *train_overrides(check, shards, precision)))
    tags = ckpt.complete_tags(checkpoints_dir(run_dir))
    if len(tags) < 2:
        raise CheckError(f"train_{precision}: expected a halfway and a final checkpoint, "
                         f"found {tags}")
    steps = _steps_of(run_dir)
    losses = [s["loss"] for s in steps]
    return {"ok": bool(losses) and all(v is not None and math.isfinite(v) for v in losses[-1:]),
            "tags": tags, "losses": losses,
            "skipped_steps": sum(int(s.get("skipped") or 0) for s in steps),
            "loss_scales": [s.get("loss_scale") for s in steps],
            "step_time_s": [round(s["step_time"], 4) for s in steps],
            "summary": json.loads(out.strip().splitlines()[-1]) if out.strip() else None}


def restore(check, run_dir: Path) -> dict:
    from launcher.checkpoint_compare import compare_checkpoints

    name = run_dir.name
    out_dir = check.work / "restored" / name
    result_file = check.work / "restored" / f"{name}.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    check.command(f"restore_{name}", child("restore", str(run_dir), str(out_dir), str(result_file)))
    result = json.loads(result_file.read_text())
    tag = result["tag"]
    compared = compare_checkpoints(checkpoints_dir(run_dir) / tag, out_dir / tag,
                                   pattern="*_states.pt")
    meaningful = result["tensors_moved_since_init"] > 0
    return {"ok": compared["identical"] and not result["module_differences"] and meaningful,
            **result, "resaved_identical": compared, "weights_moved_since_init": meaningful}


def resume(check, run_dir: Path) -> dict:
    from fpar.engine import checkpoint as ckpt
    from launcher.checkpoint_compare import compare_checkpoints, compare_states

    tags = ckpt.complete_tags(checkpoints_dir(run_dir))
    halfway, last = tags[-2], tags[-1]
    resumed = run_dir.with_name(run_dir.name + "_resumed")
    copy_until(run_dir, resumed, halfway)
    check.command(f"resume_{run_dir.name}", child("train", str(resumed), "--resume"))
    a, b = checkpoints_dir(run_dir) / last, checkpoints_dir(resumed) / last
    if not (b / ckpt.COMPLETE).is_file():
        raise CheckError(f"resume_{run_dir.name}: the resumed run wrote no {last}")
    compared = compare_checkpoints(a, b, pattern="*_states.pt")  # weights, optimiser, scaler
    rng = compare_checkpoints(a, b, pattern="rng_rank*.pt")
    state_diffs = compare_states(json.loads((a / ckpt.STATE).read_text()),
                                 json.loads((b / ckpt.STATE).read_text()))
    losses_a = {s["step"]: s["loss"] for s in _steps_of(run_dir)}
    losses_b = {s["step"]: s["loss"] for s in _steps_of(resumed)}
    same_losses = all(losses_a.get(k) == v for k, v in losses_b.items())
    return {"ok": compared["identical"] and rng["identical"] and not state_diffs and same_losses,
            "resumed_from": halfway, "compared": last, "checkpoint": compared, "rng_states": rng,
            "trainer_state_differences": state_diffs, "losses_equal": same_losses,
            "losses_uninterrupted": losses_a, "losses_resumed": losses_b}


def evaluate(check, run_dir: Path, s1: Path) -> dict:
    import numpy as np

    from fpar.evaluation.scores import load_scores
    from shards.schema import read_manifest

    out = check.work / f"scores_{run_dir.name}_s1.pt"
    check.command("eval", fpar("eval", str(run_dir), "--split", str(s1), "--out", str(out)))
    ids, outputs = load_scores(out)
    expected = read_manifest(s1)["num_samples"]
    finite = all(bool(np.isfinite(np.asarray(v)).all()) for v in outputs.values())
    return {"ok": len(ids) == expected and len(set(ids)) == len(ids) and finite,
            "rows": len(ids), "segments": expected, "finite": finite,
            "outputs": {k: list(np.asarray(v).shape) for k, v in outputs.items()}}


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

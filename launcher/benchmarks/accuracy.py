"""``fpar bench accuracy``: SparNet vs the baseline on synthetic kitchens over several seeds.

The demo's steps (synthetic EPIC-55 kitchens, shards, ``fpar train``, official metrics)
are run once for the data and once per (system, seed) for training, with the same budget
for both systems. Reported per system: verb / noun / action top-1 on S1 (seen kitchens)
and S2 (unseen kitchens), each as mean and sample std over the seeds, plus every value;
next to them the majority-class rates (``majority_top1``) and the verb pose oracle;
per test-time view set (``--views``) the top-1 and ``fpar eval`` time (``views``); and the
MS head's score (``ms_score``: F1 and IoU of "moving" cells, next to the all-static and
training-frequency predictors, :mod:`fpar.evaluation.ms_score`).
Every step resumes in ``--work``: finished data, shards and runs are reused.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from launcher.benchmarks.views import compare_views, parse_view_sets

DESCRIPTION = ("SparNet vs baseline top-1 (verb/noun/action, seen/unseen kitchens) on "
               "synthetic EPIC-55, mean and std over seeds")

SPLITS = ("s1", "s2")
TASKS = ("verb", "noun", "action")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fpar bench accuracy``."""
    from launcher.demo import SCALES

    parser.add_argument("--scale", choices=sorted(SCALES), default="default",
                        help="demo scale of data, model and budget (default: default; "
                        "tiny: seconds, for tests)")
    parser.add_argument("--seeds", default="0,1,2",
                        help="comma-separated training seeds, one run per system each "
                        "(default 0,1,2)")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the synthetic kitchens, the same for every run (default 0)")
    parser.add_argument("--systems", default="sparnet,baseline",
                        help="comma-separated model names to compare (default sparnet,baseline)")
    parser.add_argument("--ms-tap", choices=("conv3_x", "conv4_x", "conv5_x"), default=None,
                        help="trunk stage the MS head reads (default: the scale's last stage, "
                        "as in the demo); runs with another tap are kept apart in --work")
    parser.add_argument("--work", metavar="DIR",
                        help="folder for data, shards and runs, reused when run again "
                        "(default: a temporary folder, removed afterwards)")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes generating videos and building shards (default 2)")
    parser.add_argument("--views", default="1x1,2x3", metavar="KxC,...",
                        help="test-time view sets (clips x crops) each run is scored with "
                        "again by fpar eval, with top-1 and eval time (default 1x1,2x3)")


def parse_list(text: str, what: str, cast=str) -> list:
    """``"a,b"`` -> ``[a, b]``; an empty list or a bad item is an error naming ``what``."""
    try:
        items = [cast(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise SystemExit(f"fpar bench: {what}: {err}") from err
    if not items:
        raise SystemExit(f"fpar bench: {what}: no values in {text!r}")
    return items


def summarise(per_seed: dict[int, dict]) -> dict:
    """Mean/std/values of top-1 per split and task, from each seed's metrics dict."""
    from launcher.benchmarks.stats import mean_std

    seeds = sorted(per_seed)
    out = {}
    for split in SPLITS:
        out[split] = {}
        for task in TASKS:
            values = [float(per_seed[s][split][task]["top1"]) for s in seeds]
            out[split][task] = {**mean_std(values), "values": values}
    return out


MS_FIELDS = (("head", "f1"), ("head", "iou"), ("all_static", "f1"), ("train_frequency", "f1"),
             ("head_beyond_prior", "f1"), ("head_agrees_with_prior", None))


def summarise_ms(per_seed: dict[int, dict]) -> dict:
    """Mean/std/values of the MS score per split (head F1 and IoU, the trivial predictors' F1,
    the head's F1 where the training frequency says static and how often it agrees with it),
    for the splits whose metrics hold one (``ms``; a model without the head has no ``head``)."""
    from launcher.benchmarks.stats import mean_std

    seeds = sorted(per_seed)
    out = {}
    for split in SPLITS:
        scores = [per_seed[s][split].get("ms") for s in seeds]
        if any(m is None for m in scores):
            continue
        out[split] = {"side": scores[0]["side"], "moving_share": scores[0]["moving_share"]}
        for who, key in MS_FIELDS:
            if all(m.get(who) is not None for m in scores):
                values = [float(m[who] if key is None else m[who][key]) for m in scores]
                out[split][who if key is None else f"{who}_{key}"] = {**mean_std(values),
                                                                      "values": values}
    return out


def verb_oracle(data: Path, scale) -> dict:
    """Verb top-1 (%) of the pose oracle on the demo's sampled frames (shards.synth.oracle):
    camera compensated ("world") and on the screen, with the majority-class rate."""
    from shards.synth.oracle import oracle_accuracy, plan_of

    acc = oracle_accuracy(plan_of(data), scale.stored_frames, scale.num_frames)
    return {space: {split: round(100.0 * v, 1) for split, v in by_split.items()}
            for space, by_split in acc.items()}


def majority_rates(data: Path) -> dict:
    """Top-1 (%) on s1/s2 of always answering the most frequent training verb / noun."""
    from shards.synth.oracle import majority_rates as rates, plan_of

    return {task: {split: round(100.0 * v, 1) for split, v in by_split.items()}
            for task, by_split in rates(plan_of(data)).items()}


def run(args: argparse.Namespace) -> dict:
    """Trains and scores every (system, seed) and returns the accuracy summary."""
    seeds = parse_list(args.seeds, "--seeds", int)
    systems = parse_list(args.systems, "--systems")
    args.view_sets = parse_view_sets(args.views)
    if args.work:
        return _measure(Path(args.work), args, seeds, systems)
    with tempfile.TemporaryDirectory(prefix="fpar-bench-accuracy-") as tmp:
        return _measure(Path(tmp), args, seeds, systems)


def _run_dir(work: Path, system: str, seed: int, ms_tap: str | None) -> Path:
    """A trained run's folder: one per system, MS tap and training seed."""
    tap = f"-{ms_tap}" if ms_tap and system != "baseline" else ""
    return work / "runs" / f"{system}{tap}_seed{seed}"


def _measure(work: Path, args: argparse.Namespace, seeds: list[int], systems: list[str]) -> dict:
    from launcher import demo
    from launcher.benchmarks.output import stdout_to_stderr

    scale = demo.SCALES[args.scale]
    work.mkdir(parents=True, exist_ok=True)
    train_seconds: dict[str, list[float]] = {s: [] for s in systems}
    metrics: dict[str, dict[int, dict]] = {s: {} for s in systems}
    with stdout_to_stderr():
        data = demo.make_data(work, scale, args.data_seed, args.workers)
        oracle = verb_oracle(data, scale)
        shards = demo.make_shards(work, data, scale, args.workers)
        for seed in seeds:
            for system in systems:
                run_dir = _run_dir(work, system, seed, args.ms_tap)
                began = time.perf_counter()
                extra = [f"model.ms_tap={args.ms_tap}"] if args.ms_tap else []
                demo.train_system(work, system, scale, shards, seed, run_dir=run_dir, extra=extra)
                train_seconds[system].append(time.perf_counter() - began)
                metrics[system][seed] = demo.evaluate_run(run_dir)
        views = {system: compare_views({seed: _run_dir(work, system, seed, args.ms_tap)
                                        for seed in seeds}, data / "annotations", args.view_sets)
                 for system in systems}
    results = {system: summarise(metrics[system]) for system in systems}
    first = systems[0]
    gains = {
        f"{other}->{first}": {split: {task: results[first][split][task]["mean"]
                                      - results[other][split][task]["mean"] for task in TASKS}
                              for split in SPLITS}
        for other in systems[1:]
    }
    segments = {split: int(metrics[first][seeds[0]][split]["segments"]) for split in SPLITS}
    return {
        "benchmark": "accuracy",
        "scale": args.scale,
        "seeds": seeds,
        "data_seed": args.data_seed,
        "test_segments": segments,
        "ms_tap": args.ms_tap or scale.features_from,
        "top1": results,
        "ms_score": {system: summarise_ms(metrics[system]) for system in systems},
        "mean_gain": gains,
        "oracle_verb_top1": oracle,
        "majority_top1": majority_rates(data),
        "views": views,
        # Runs already finished in --work are reused and count (almost) nothing here.
        "train_wall_s_this_call": {s: sum(v) for s, v in train_seconds.items()},
        "work": str(work) if args.work else None,
    }

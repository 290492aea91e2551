"""``fpar demo``: from nothing to a challenge submission on synthetic EPIC-55 kitchens.

Generates a synthetic EPIC-55-format dataset with seen and unseen kitchens, builds its
shards (frames and motion maps), trains SparNet and the baseline with the same budget,
scores both on S1 (seen) and S2 (unseen), writes each run's metrics, the submission
archive and the report pages, and prints a comparison table. Every step resumes: a demo
run again in the same folder reuses what is already complete.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import subprocess
import sys
import time
from pathlib import Path

from shards.files import atomic_write_json

log = logging.getLogger("fpar.demo")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "experiments" / "demo.yaml"
SPLITS = ("train", "s1", "s2")
SYSTEMS = ("sparnet", "baseline")


@dataclasses.dataclass(frozen=True)
class DemoScale:
    """Everything a scale changes: data size, stored and trained resolution, budget."""

    participants: int
    segments: int
    width: int
    height: int
    fps: float | tuple[float, ...]  # several: given to the videos in turn
    stored_frames: int
    short_side: int
    num_frames: int
    crop: int
    convlstm_hidden: int
    batch_size: int
    epochs: int
    backbone: str = "resnet18"
    features_from: str = "conv4_x"


SCALES: dict[str, DemoScale] = {
    # Seconds: what the test suite runs end to end.
    "tiny": DemoScale(participants=3, segments=30, width=128, height=72, fps=(15.0, 25.0),
                      stored_frames=6, short_side=72, num_frames=3, crop=64,
                      convlstm_hidden=16, batch_size=4, epochs=1),
    # About eleven minutes on two CPU cores. 64 px crops buy twice the steps of 96 px in the
    # same time, which the models need more than the pixels (verbs and nouns both rise).
    "default": DemoScale(participants=6, segments=600, width=228, height=128, fps=29.97,
                         stored_frames=14, short_side=112, num_frames=7, crop=64,
                         convlstm_hidden=128, batch_size=8, epochs=20),
    # A real comparison for a bigger machine (or a GPU).
    "large": DemoScale(participants=12, segments=3000, width=456, height=256, fps=(29.97, 59.94),
                       stored_frames=32, short_side=128, num_frames=7, crop=112,
                       convlstm_hidden=256, batch_size=16, epochs=12,
                       backbone="resnet34", features_from="conv5_x"),
}


def _step(title: str) -> float:
    log.info("== %s", title)
    return time.perf_counter()


def make_data(out: Path, scale: DemoScale, seed: int, workers: int) -> Path:
    """Generates the synthetic kitchens once (skipped when ``synth.json`` exists)."""
    from shards.synth import generate

    data = out / "data"
    if (data / "synth.json").is_file():
        log.info("synthetic kitchens already in %s", data)
        return data
    generate("epic55", data, participants=scale.participants, segments=scale.segments,
             seed=seed, progress=True, width=scale.width, height=scale.height, fps=scale.fps,
             workers=workers)
    return data


def make_shards(out: Path, data: Path, scale: DemoScale, workers: int) -> dict[str, Path]:
    """Builds (or completes) the train, S1 and S2 shards."""
    from shards.build import BuildConfig, build_shards

    folders = {}
    for split in SPLITS:
        cfg = BuildConfig(format="epic55", root=str(data / "videos"),
                          annotations=str(data / "annotations"), split=split,
                          out=str(out / "shards" / split), workers=workers,
                          frames=scale.stored_frames, short_side=scale.short_side)
        report = build_shards(cfg, progress=True)
        if not report.ok:
            raise RuntimeError(f"shard build of {split} failed for {len(report.failures)} "
                               f"segment(s): see {cfg.out}/manifest.json")
        folders[split] = Path(cfg.out)
    return folders


def overrides_for(system: str, scale: DemoScale, shards: dict[str, Path], seed: int) -> list[str]:
    """The config overrides that turn demo.yaml into one system at one scale."""
    return [
        f"name=demo_{system}", f"seed={seed}", f"model.name={system}",
        f"data.train_shards={shards['train']}",
        f"eval.test_splits={{s1: {shards['s1']}, s2: {shards['s2']}}}",
        f"data.num_frames={scale.num_frames}", f"data.crop_size={scale.crop}",
        f"data.batch_size={scale.batch_size}", f"model.input_size={scale.crop}",
        f"model.backbone={scale.backbone}", f"model.features_from={scale.features_from}",
        f"model.ms_tap={scale.features_from}", f"model.convlstm_hidden={scale.convlstm_hidden}",
        f"train.stages=[{{name: end_to_end, epochs: {scale.epochs}, trainable: [all]}}]",
    ]


def train_system(out: Path, system: str, scale: DemoScale, shards: dict[str, Path],
                 seed: int, run_dir: Path | None = None, extra: list[str] = ()) -> Path:
    """Trains one system in a child process (``fpar train``), unless already finished.

    The run goes to ``run_dir`` (default ``out/runs/<system>``); ``extra`` overrides come
    after the scale's.
    """
    run_dir = run_dir if run_dir is not None else out / "runs" / system
    from fpar.run_layout import SUMMARY_FILE

    if (run_dir / SUMMARY_FILE).is_file():
        log.info("%s already trained in %s", system, run_dir)
        return run_dir
    cmd = [sys.executable, "-m", "launcher.cli", "train", str(CONFIG),
           *overrides_for(system, scale, shards, seed), *extra, "--run-dir", str(run_dir)]
    subprocess.run(cmd, check=True)
    return run_dir


def evaluate_run(run_dir: Path) -> dict[str, dict]:
    """Official metrics of every scored split of a run (its ``metrics.json``)."""
    from fpar.evaluation.run_metrics import score_run
    from fpar.run_layout import METRICS_FILE
    from shards.files import read_json

    path = run_dir / METRICS_FILE
    metrics = read_json(path)["splits"] if path.is_file() else score_run(run_dir)["splits"]
    missing = {"s1", "s2"} - set(metrics)
    if missing:
        raise RuntimeError(f"{run_dir}: no metrics for split(s) {sorted(missing)}")
    return metrics


def write_submission(run_dir: Path, data: Path, out: Path) -> Path:
    """The EPIC-55 challenge archive (seen.json, unseen.json) of a run's S1+S2 scores."""
    from fpar.evaluation import build_submission, load_scores, merge_scores, write_archive
    from fpar.run_layout import scores_path

    names = [scores_path(run_dir, s) for s in ("s1", "s2")]
    ids, outputs = merge_scores([load_scores(p) for p in names], [str(p) for p in names])
    stamps = [data / "annotations" / f"EPIC_test_{s}_timestamps.csv" for s in ("s1", "s2")]
    return write_archive(build_submission("epic55", ids, outputs, stamps), out)


def table(results: dict[str, dict[str, dict]]) -> str:
    """Markdown: verb/noun/action top-1 on seen and unseen kitchens, one row per system."""
    head = ["system"] + [f"{task} {split}" for split in ("s1", "s2")
                         for task in ("verb", "noun", "action")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, metrics in results.items():
        cells = [f"{metrics[split][task]['top1']:.1f}" for split in ("s1", "s2")
                 for task in ("verb", "noun", "action")]
        lines.append("| " + " | ".join([system] + cells) + " |")
    return "\n".join(lines)


def run_demo(out: Path, scale_name: str = "default", seed: int = 0, workers: int = 2) -> dict:
    """Runs the whole demo into ``out`` and returns its summary (also ``out/demo.json``)."""
    scale = SCALES[scale_name]
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    start = _step(f"synthetic EPIC-55 kitchens ({scale.participants} participants, "
                  f"{scale.segments} segments)")
    data = make_data(out, scale, seed, workers)
    timings["data_s"] = time.perf_counter() - start
    start = _step("shards: train, s1 (seen), s2 (unseen)")
    shards = make_shards(out, data, scale, workers)
    timings["shards_s"] = time.perf_counter() - start
    results, reports, archives = {}, {}, {}
    for system in SYSTEMS:
        start = _step(f"train {system}")
        run_dir = train_system(out, system, scale, shards, seed)
        timings[f"train_{system}_s"] = time.perf_counter() - start
        results[system] = evaluate_run(run_dir)
        archives[system] = str(write_submission(run_dir, data, out / f"submission_{system}.zip"))
        from fpar.report import make_report

        reports[system] = str(make_report(run_dir))
    summary = {"out": str(out), "scale": scale_name, "seed": seed, "timings": timings,
               "table": table(results), "reports": reports, "submissions": archives,
               "metrics": {s: str(out / "runs" / s / "metrics.json") for s in SYSTEMS}}
    atomic_write_json(out / "demo.json", summary)
    return summary


def _main(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    summary = run_demo(Path(args.out), args.scale, args.seed, args.workers)
    print("\nTop-1 accuracy (%) on synthetic EPIC-55: s1 = seen kitchens, s2 = unseen kitchens")
    print(summary["table"])
    print(f"\ndata:        {summary['out']}/data")
    print(f"shards:      {summary['out']}/shards/{{train,s1,s2}}")
    for system in SYSTEMS:
        print(f"{system + ':':<12} run {summary['out']}/runs/{system}, "
              f"report {summary['reports'][system]}, submission {summary['submissions'][system]}")
    print(f"summary:     {summary['out']}/demo.json  ({time.perf_counter() - began:.0f} s)")
    return 0


def register(subparsers) -> None:
    """Adds ``fpar demo``."""
    parser = subparsers.add_parser(
        "demo", help="end-to-end demo on generated data: synth -> shards -> train SparNet and "
        "the baseline -> metrics, submission, report",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="default",
                        help="tiny: seconds (tests); default: ~13 min on 2 CPU cores; "
                        "large: a real comparison on a bigger machine")
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, model and order")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes for generating videos and building shards")
    parser.set_defaults(func=_main)


__all__ = ["SCALES", "DemoScale", "run_demo"]

"""Test-time views in ``fpar bench accuracy``: a trained run scored again from K x C views.

Each view set is one ``fpar eval --clips K --crops C`` per test split (a child process, as a
user runs it), timed from start to exit, with the official top-1 of its scores. Results are
kept in ``<run>/views_<K>x<C>/`` and reused when the benchmark runs again.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from fpar.run_layout import scores_path

SPLITS = ("s1", "s2")
TASKS = ("verb", "noun", "action")


def parse_view_sets(text: str) -> list[tuple[int, int]]:
    """``"1x1,2x3"`` -> ``[(1, 1), (2, 3)]`` (clips x crops); a bad item exits naming it."""
    from fpar.data.views import view_set

    sets = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        try:
            clips, crops = (int(v) for v in item.lower().split("x"))
            view_set(clips, crops)
        except ValueError as err:
            raise SystemExit(f"fpar bench: --views: {item!r} is not CLIPSxCROPS with clips >= 1 "
                             f"and crops 1, 3, 5 or 10 ({err})") from err
        sets.append((clips, crops))
    if not sets:
        raise SystemExit(f"fpar bench: --views: no view sets in {text!r}")
    return sets


def score_views(run_dir: Path, annotations: Path, clips: int, crops: int) -> dict:
    """Top-1 per split and task and the ``fpar eval`` wall time of one view set."""
    from fpar.evaluation import evaluate, load_scores
    from shards.files import atomic_write_json, read_json

    folder = run_dir / f"views_{clips}x{crops}"
    summary = folder / "views.json"
    if summary.is_file():
        return read_json(summary)
    result: dict = {"clips": clips, "crops": crops, "views": clips * crops, "eval_wall_s": {}}
    for split in SPLITS:
        out = scores_path(folder, split)
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "launcher.cli", "eval", str(run_dir), "--split",
                        split, "--clips", str(clips), "--crops", str(crops), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
        result["eval_wall_s"][split] = round(time.perf_counter() - began, 1)
        ids, outputs = load_scores(out)
        metrics = evaluate("epic55", ids, outputs, annotations, splits=[split])["splits"][split]
        result[split] = {task: float(metrics[task]["top1"]) for task in TASKS}
    atomic_write_json(summary, result)
    return result


def compare_views(runs: dict[int, Path], annotations: Path, sets: list[tuple[int, int]]) -> dict:
    """Per view set: top-1 per split and task (mean over the runs, one per seed) and the
    mean ``fpar eval`` wall time per split."""
    from launcher.benchmarks.stats import mean_std

    out = {}
    for clips, crops in sets:
        per_seed = [score_views(run, annotations, clips, crops) for run in runs.values()]
        out[f"{clips}x{crops}"] = {
            "top1": {split: {task: mean_std([r[split][task] for r in per_seed])["mean"]
                             for task in TASKS} for split in SPLITS},
            "eval_wall_s": {split: mean_std([r["eval_wall_s"][split] for r in per_seed])["mean"]
                            for split in SPLITS},
        }
    return out

"""The names of a run folder's files and folders, in one place.

A run folder (``output_dir/name`` unless given) holds::

    config.yaml          the experiment as the run used it (resumes read it back)
    log.txt              rank 0's log
    metrics.jsonl        step and epoch records, one JSON object a line
    tensorboard/         the same records for TensorBoard
    samples/             rank<r>.jsonl: the segments each rank trained on (train.log_samples)
    checkpoints/         stepNNNNNNNN/ tags, with the pointers ``latest`` and ``best``
    summary.json         what a finished run reached (absent until it finishes)
    scores_<split>.pt    one row of outputs per segment of each evaluated split
    ms_<split>.json      the MS score's tallies, beside the split's scores file
    metrics.json         the official metrics of the labelled splits
    report/              the HTML report (``fpar report``)

The trainer, evaluation, reports, launchers and benchmarks name these files through this
module only, so a name changes in one line.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.txt"
METRICS_LOG = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
LATEST = "latest"  # in checkpoints/: the newest complete tag
BEST = "best"  # in checkpoints/: the tag of the best validation score
SUMMARY_FILE = "summary.json"
SCORES_PREFIX = "scores_"
SCORES_SUFFIX = ".pt"
MS_PREFIX = "ms_"
METRICS_FILE = "metrics.json"
REPORT_DIR = "report"


def checkpoints_dir(run_dir: str | Path) -> Path:
    """``run/checkpoints``: the run's checkpoint tags and their pointers."""
    return Path(run_dir) / CHECKPOINTS_DIR


def scores_path(run_dir: str | Path, split: str) -> Path:
    """``run/scores_<split>.pt``: where the run's scores of a split go."""
    return Path(run_dir) / f"{SCORES_PREFIX}{split}{SCORES_SUFFIX}"


def scores_files(run_dir: str | Path) -> dict[str, Path]:
    """The run's scores files by split name (``scores_<name>.pt``)."""
    return {p.name[len(SCORES_PREFIX):-len(SCORES_SUFFIX)]: p
            for p in sorted(Path(run_dir).glob(f"{SCORES_PREFIX}*{SCORES_SUFFIX}"))}


def ms_path(scores_file: str | Path, split: str) -> Path:
    """Where the MS tallies of a scores file go: ``ms_<split>.json`` beside it."""
    return Path(scores_file).with_name(f"{MS_PREFIX}{split}.json")


__all__ = ["BEST", "CHECKPOINTS_DIR", "CONFIG_FILE", "LATEST", "LOG_FILE", "METRICS_FILE",
           "METRICS_LOG", "MS_PREFIX", "REPORT_DIR", "SAMPLES_DIR", "SCORES_PREFIX", "SCORES_SUFFIX",
           "SUMMARY_FILE", "TENSORBOARD_DIR", "checkpoints_dir", "ms_path", "scores_files",
           "scores_path"]

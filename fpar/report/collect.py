"""Reading a finished run folder for the report: config, training log, scores and metrics.

A run folder (see :mod:`fpar.run_layout`) holds ``config.yaml``, ``metrics.jsonl``,
``summary.json``, ``checkpoints/`` and one ``scores_<split>.pt`` per evaluated split. The
ground truth of a split is found through the ``manifest.json`` of the split's shard
folder (it records the annotation folder and dataset split the shards were built from),
unless the caller names an annotation folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from fpar.evaluation import EvaluationError, evaluate, flatten_metrics, load_scores
from fpar.evaluation.groundtruth import align, labelled_segments
from fpar.evaluation.metrics import LABEL_COLUMNS
from fpar.evaluation.run_metrics import ground_truth_of
from fpar.evaluation.scores import read_views
from fpar.experiment import ExperimentConfig
from fpar.run_layout import CONFIG_FILE, METRICS_LOG, SUMMARY_FILE, scores_files
from shards.datasets import get_dataset
from shards.files import read_json

log = logging.getLogger(__name__)



class ReportError(ValueError):
    """A run folder the report cannot be made from (the message names the file)."""


@dataclasses.dataclass
class RunContents:
    """What a run folder says about itself.

    Attributes:
        run_dir: The run folder.
        config: The experiment as the run saved it.
        config_text: ``config.yaml`` verbatim.
        summary: ``summary.json`` (None when the run did not finish).
        steps: The last record of every optimiser step (a resumed run repeats some).
        epochs: Epoch records in order (the last one of each epoch).
        problems: Lines of ``metrics.jsonl`` that could not be read, described.
    """

    run_dir: Path
    config: ExperimentConfig
    config_text: str
    summary: dict[str, Any] | None
    steps: list[dict]
    epochs: list[dict]
    problems: list[str]


@dataclasses.dataclass
class SplitSource:
    """Where one evaluated split's scores and ground truth are.

    Attributes:
        name: The run's name for the split (``scores_<name>.pt``), e.g. ``s1``.
        scores: The scores file.
        shards: The split's shard folder, when the config names one.
        annotations: The annotation folder (GTEA-61: frame folder), if known.
        split: The dataset's split name the shards were built from (e.g. ``s1``).
        root: GTEA-61 frame root, when it differs from ``annotations``.
    """

    name: str
    scores: Path
    shards: str | None = None
    annotations: Path | None = None
    split: str | None = None
    root: str | None = None


@dataclasses.dataclass
class SplitResult:
    """The metrics of one split and the per-segment predictions behind them.

    Attributes:
        source: Where it came from.
        metrics: ``fpar.evaluation.evaluate``'s metrics of the split (None if unlabelled).
        flat: ``flatten_metrics`` of the same (None if unlabelled).
        labels: True class per task, ground-truth order.
        preds: Top-1 predicted class per task, same order.
        note: Why there are no metrics, when there are none.
        views: The scores file's record of the test-time views behind it (None: none).
    """

    source: SplitSource
    metrics: dict | None = None
    flat: dict[str, float] | None = None
    labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    preds: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    note: str | None = None
    views: dict | None = None


def read_metrics_log(path: Path) -> tuple[list[dict], list[dict], list[str]]:
    """Step and epoch records of a ``metrics.jsonl``; unreadable lines are reported.

    A run killed while writing leaves a cut last line, and a resumed run writes some steps
    twice: the last record of each step and epoch wins.

    Returns:
        ``(steps, epochs, problems)``: records sorted by step / epoch, and one message per
        bad line naming the file and line number.
    """
    steps: dict[int, dict] = {}
    epochs: dict[int, dict] = {}
    problems: list[str] = []
    if not path.is_file():
        return [], [], [f"{path}: not found"]
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
                if record.get("kind") == "step":
                    steps[int(record["step"])] = record
                elif record.get("kind") == "epoch":
                    epochs[int(record["epoch"])] = record
            except (ValueError, KeyError, TypeError) as err:
                problems.append(f"{path} line {number}: unreadable record ({err})")
    return [steps[k] for k in sorted(steps)], [epochs[k] for k in sorted(epochs)], problems


def read_run(run_dir: str | Path) -> RunContents:
    """Reads a run folder's config, summary and training log.

    Raises:
        ReportError: If the folder or its ``config.yaml`` is missing or invalid.
    """
    from fpar.config import ConfigError
    from fpar.experiment import load_experiment

    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ReportError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    try:
        config = load_experiment(config_path)
    except (ConfigError, ValueError) as err:
        raise ReportError(f"{config_path}: {err}") from err
    summary = None
    if (run_dir / SUMMARY_FILE).is_file():
        try:
            summary = read_json(run_dir / SUMMARY_FILE)
        except ValueError as err:
            raise ReportError(f"{run_dir / SUMMARY_FILE}: not valid JSON ({err})") from err
    steps, epochs, problems = read_metrics_log(run_dir / METRICS_LOG)
    for problem in problems:
        log.warning("%s", problem)
    return RunContents(run_dir, config, config_path.read_text(encoding="utf-8"), summary,
                       steps, epochs, problems)


def find_splits(run: RunContents, annotations: str | Path | None = None,
                root: str | Path | None = None) -> list[SplitSource]:
    """The run's evaluated splits: every ``scores_<name>.pt``, config order first.

    Args:
        run: The run.
        annotations: Annotation folder to use for every split instead of the one each
            split's shard manifest records.
        root: GTEA-61 frame root, likewise.
    """
    configured = run.config.test_splits()
    found = scores_files(run.run_dir)
    names = [n for n in configured if n in found] + [n for n in found if n not in configured]
    sources = []
    for name in names:
        shards = configured.get(name)
        if shards is None:
            try:
                shards = run.config.shard_dir(name)
            except ValueError:
                shards = None
        built = ground_truth_of(shards)
        ann = annotations if annotations is not None else built.get("annotations")
        sources.append(SplitSource(
            name=name, scores=found[name], shards=shards,
            annotations=Path(ann) if ann else None,
            split=built.get("split") or name,
            root=str(root) if root is not None else built.get("root")))
    return sources


def evaluate_split(fmt: str, source: SplitSource) -> SplitResult:
    """Official metrics of one split and the predictions behind them.

    An unlabelled split (EPIC-55's real test sets) or one without known annotations
    gives a result with a ``note`` and no metrics instead of failing.

    Raises:
        ReportError: If the scores file cannot be read.
    """
    try:
        ids, outputs = load_scores(source.scores)
        views = read_views(source.scores)
    except (ValueError, OSError) as err:
        raise ReportError(f"{source.scores}: {err}") from err
    if source.annotations is None:
        return SplitResult(source, views=views, note=f"split {source.name}: no annotation folder known (the "
                           "shard manifest names none; give --annotations): no metrics")
    root = source.root  # read by frame-folder datasets (GTEA-61) only
    try:
        result = evaluate(fmt, ids, outputs, source.annotations, splits=[source.split], root=root)
        metrics = result["splits"][source.split]
        tasks = get_dataset(fmt).tasks
        columns = [LABEL_COLUMNS[t] for t in tasks]
        segments = labelled_segments(fmt, source.annotations, source.split, root, columns)
    except (EvaluationError, ValueError) as err:
        return SplitResult(source, views=views, note=f"split {source.name}: no metrics ({err})")
    rows = align(ids, segments, f"{fmt} split {source.split!r}")
    labels = {t: segments[LABEL_COLUMNS[t]].to_numpy(dtype=np.int64) for t in tasks}
    preds = {t: np.asarray(outputs[t])[rows].argmax(1).astype(np.int64) for t in tasks}
    flat = flatten_metrics({"splits": {source.split: metrics}})[source.split]
    return SplitResult(source, metrics, flat, labels, preds, views=views)


def class_names_of(fmt: str, annotations: Path | None,
                   root: str | None = None) -> dict[str, list[str]]:
    """Class names per task from the annotation files; empty when they cannot be read."""
    if annotations is None:
        return {}
    from shards.annotations import class_names

    try:
        return class_names(fmt, annotations, root)
    except (ValueError, OSError) as err:
        log.warning("class names of %s unavailable (%s); classes shown by number", annotations, err)
        return {}

"""Official metrics of a training run's scores files, kept in ``<run>/metrics.json``.

A run writes ``scores_<name>.pt`` per evaluated split; the ground truth of each is found
through the ``manifest.json`` of that split's shard folder, which records the annotation
folder, the dataset split and (GTEA-61) the frame root the shards were built from. The
training entry, the demo, the protocols, ``fpar collect`` and the report all read the one
file this module writes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fpar.evaluation.groundtruth import EvaluationError
from fpar.evaluation.metrics import evaluate
from fpar.evaluation.scores import load_scores
from fpar.run_layout import METRICS_FILE, SCORES_PREFIX, ms_path, scores_files
from fpar.run_setup import resolve_config
from shards.files import atomic_write_json, read_json

log = logging.getLogger(__name__)

def ground_truth_of(shard_dir: str | Path | None) -> dict[str, Any]:
    """What a shard folder was built from: ``annotations``, ``split`` and ``root``.

    Returns an empty dict when the folder has no readable manifest.
    """
    if not shard_dir or not (Path(shard_dir) / "manifest.json").is_file():
        return {}
    try:
        manifest = read_json(Path(shard_dir) / "manifest.json")
    except ValueError:
        return {}
    params = manifest.get("params", {})
    return {"annotations": params.get("annotations"),
            "split": manifest.get("split", params.get("split")), "root": params.get("root")}


def score_run(run_dir: str | Path, annotations: str | Path | None = None,
              root: str | Path | None = None) -> dict[str, Any]:
    """Evaluates every scores file of a run and writes ``<run>/metrics.json``.

    Args:
        run_dir: A run folder (``config.yaml`` and ``scores_<name>.pt``).
        annotations: Annotation folder for every split instead of each split's manifest's.
        root: GTEA-61 frame root, likewise.

    Returns:
        ``{"format": ..., "splits": {name: metrics}}`` (``fpar.evaluation.evaluate``'s
        layout, plus ``ms``: the MS score of :mod:`fpar.evaluation.ms_score` where the run
        wrote ``ms_<name>.json``); unlabelled splits are left out with a log line.

    Raises:
        FileNotFoundError: If the run has no scores file.
        EvaluationError: If a labelled split's scores do not match its segments.
    """
    run_dir = Path(run_dir)
    files = scores_files(run_dir)
    if not files:
        raise FileNotFoundError(f"{run_dir}: no {SCORES_PREFIX}*.pt file")
    cfg = resolve_config(None, (), run_dir)
    fmt = cfg.data.format
    result: dict[str, Any] = {"format": fmt, "splits": {}}
    for name, path in files.items():
        try:
            shards = cfg.shard_dir(name)
        except ValueError:
            shards = None
        built = ground_truth_of(shards)
        ann = annotations if annotations is not None else built.get("annotations")
        if ann is None:
            log.warning("%s: no annotation folder known for split %s; not scored", run_dir, name)
            continue
        split = built.get("split") or name
        split_root = root if root is not None else built.get("root")
        ids, outputs = load_scores(path)
        try:
            scored = evaluate(fmt, ids, outputs, ann, splits=[split], root=split_root)
        except EvaluationError as err:
            if "label" in str(err).lower():
                log.info("%s: split %s has no labels; not scored", run_dir, name)
                continue
            raise
        result["splits"][name] = scored["splits"][split]
        ms = ms_path(path, name)
        if ms.is_file():
            result["splits"][name]["ms"] = read_json(ms)["scores"]
    atomic_write_json(run_dir / METRICS_FILE, result)
    return result

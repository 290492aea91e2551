"""``fpar collect SWEEP_DIR``: a sweep's finished runs as the paper's results table.

Each run of the sweep (``SWEEP_DIR/sweep.json`` lists them) contributes its metrics JSON,
``<run>/metrics.json``: either the result of ``fpar metrics --out`` (``{"splits": {...}}``,
flattened to ``verb_top1``-style names, prefixed with the evaluated split when there are
several) or a flat ``{name: number}`` mapping. A run without one gets it computed from its
scores files (``scores_<split>.pt``) when ``--annotations`` is given. The seed key's values
are the repeats; the other sweep keys name the table's split columns (per split: mean and
spread over seeds; then the mean over splits), through ``fpar.evaluation.tables``. Runs
without metrics (unfinished, failed) are listed and left out.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from fpar.run_layout import METRICS_FILE
from launcher.sweep import read_sweep_file
from shards.files import read_json

log = logging.getLogger(__name__)



def flat_metrics(data: dict[str, Any]) -> dict[str, float]:
    """Numeric metrics of one run from either metrics JSON layout."""
    if isinstance(data.get("splits"), dict):
        from fpar.evaluation.metrics import flatten_metrics

        per_split = flatten_metrics(data)
        if len(per_split) == 1:
            return next(iter(per_split.values()))
        return {f"{split}/{k}": v for split, values in per_split.items() for k, v in values.items()}
    return {k: float(v) for k, v in data.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def compute_metrics(run_dir: Path, annotations: Path) -> dict[str, Any]:
    """Official metrics from a run's scores files; written to ``<run>/metrics.json``.

    Raises:
        FileNotFoundError: If the run has no scores file.
    """
    from fpar.evaluation.run_metrics import score_run

    return score_run(run_dir, annotations=annotations)


def gather_rows(sweep_dir: Path, seed_key: str, system: str | None,
                annotations: Path | None) -> tuple[list[dict], list[str]]:
    """One table row per finished run, and a line per run left out."""
    sweep = read_sweep_file(sweep_dir)
    keys = [axis["key"] for axis in sweep["axes"]]
    split_keys = [k for k in keys if k != seed_key]
    name = system or Path(sweep.get("config", "run")).stem
    rows, missing = [], []
    for run in sweep["runs"]:
        run_dir = sweep_dir / run["name"]
        path = run_dir / METRICS_FILE
        try:
            if path.is_file():
                data = read_json(path)
            elif annotations is not None:
                data = compute_metrics(run_dir, annotations)
            else:
                raise FileNotFoundError(f"no {METRICS_FILE} (give --annotations to compute it "
                                        "from the run's scores files)")
        except (OSError, ValueError) as err:
            missing.append(f"{run['name']}: {err}")
            continue
        values = run["values"]
        split = ",".join(f"{k}={values[k]}" for k in split_keys) or "all"
        rows.append({"system": name, "split": split, "seed": values.get(seed_key, "0"),
                     **flat_metrics(data)})
    return rows, missing


def default_metrics(rows: list[dict]) -> list[str]:
    """The top-1 metrics every run has, in the first run's order (else every metric)."""
    common = [k for k in rows[0] if k not in ("system", "split", "seed")
              and all(k in r for r in rows)]
    top1 = [k for k in common if "top1" in k or "top_1" in k]
    return top1 or common


def collect(sweep_dir: str | Path, out: str | Path | None = None, seed_key: str = "seed",
            metrics: list[str] | None = None, system: str | None = None,
            annotations: str | Path | None = None, precision: int = 2) -> tuple[Path, Path]:
    """Aggregates a sweep into ``<out>.md`` and ``<out>.csv`` (default ``SWEEP_DIR/results``).

    Returns:
        The Markdown and CSV paths.

    Raises:
        ValueError: When no run has metrics, or a chosen metric is absent.
    """
    from fpar.evaluation.tables import aggregate, write_table

    sweep_dir = Path(sweep_dir)
    rows, missing = gather_rows(sweep_dir, seed_key, system,
                                Path(annotations) if annotations else None)
    for line in missing:
        log.warning("left out %s", line)
    if not rows:
        raise ValueError(f"{sweep_dir}: no run has metrics yet ({len(missing)} left out)")
    # A sweep may name its table's metrics (``launcher.sweep.record_metrics``).
    chosen = metrics or read_sweep_file(sweep_dir).get("metrics") or default_metrics(rows)
    table = aggregate(rows, chosen)
    return write_table(table, Path(out) if out else sweep_dir / "results", precision)


def _run(args: argparse.Namespace) -> int:
    try:
        md, csv = collect(args.sweep_dir, args.out, args.seed_key, args.metric or None,
                          args.system, args.annotations, args.precision)
    except (OSError, ValueError) as err:
        log.error("%s", err)
        return 1
    print(md.read_text(), end="")
    print(f"written: {md} {csv}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``fpar collect``."""
    p = subparsers.add_parser(
        "collect", help="tabulate a sweep's runs: mean and spread over seeds per split",
        description="Reads every run of a sweep made by `fpar submit --sweep` "
        "(SWEEP_DIR/sweep.json) and writes the results table: per split (the values of "
        "the sweep keys other than the seed key) mean and standard deviation over seeds, "
        "then the mean over splits, as Markdown and CSV. A run's metrics come from "
        "<run>/metrics.json (`fpar metrics --out` or a flat name: number mapping), or are "
        "computed from its scores files with --annotations. Unfinished runs are left out "
        "with a warning.")
    p.add_argument("sweep_dir", type=Path, help="the sweep folder (holds sweep.json)")
    p.add_argument("--out", type=Path, default=None, metavar="PREFIX",
                   help="writes PREFIX.md and PREFIX.csv (default SWEEP_DIR/results)")
    p.add_argument("--seed-key", default="seed",
                   help="sweep key whose values are repeats of one setting (default seed)")
    p.add_argument("--metric", action="append", default=[], metavar="NAME",
                   help="metric to tabulate, repeatable (default: those the sweep names, "
                   "as `fpar protocol` does, else every top-1 metric)")
    p.add_argument("--system", default=None,
                   help="row name (default: the config file's name)")
    p.add_argument("--annotations", type=Path, default=None,
                   help="annotation folder: compute missing metrics from scores files")
    p.add_argument("--precision", type=int, default=2, help="decimals in Markdown (default 2)")
    p.set_defaults(func=_run)

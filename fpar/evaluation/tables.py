"""Results tables in the layout of the paper's Table 1: systems by splits, over seeds.

Input rows are one finished run each: ``{"system": name, "split": s, "seed": n, metric:
value, ...}``. Per system and split the seeds give a mean and a sample standard deviation
(ddof=1; NaN with a single seed); the "mean" column then averages the split means, and
is left empty for a system that lacks a split the others have.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from shards.files import atomic_write_text

SYSTEM_KEY = "system"
SPLIT_KEY = "split"
SEED_KEY = "seed"
OVERALL = "mean"


class TableError(ValueError):
    """Result rows that cannot be aggregated."""


def _check_rows(rows: Sequence[dict], metrics: Sequence[str]) -> pd.DataFrame:
    if not rows:
        raise TableError("no result rows to aggregate")
    if not metrics:
        raise TableError("no metric names given")
    needed = [SYSTEM_KEY, SPLIT_KEY, SEED_KEY, *metrics]
    for i, row in enumerate(rows):
        absent = [key for key in needed if key not in row]
        if absent:
            raise TableError(f"result row {i} ({_describe(row)}) lacks {', '.join(absent)}")
        for metric in metrics:
            value = row[metric]
            number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            if not number or not math.isfinite(value):
                raise TableError(
                    f"result row {i} ({_describe(row)}): {metric} = {value!r} is not a finite number"
                )
    frame = pd.DataFrame([{key: row[key] for key in needed} for row in rows])
    frame[[SYSTEM_KEY, SPLIT_KEY]] = frame[[SYSTEM_KEY, SPLIT_KEY]].astype(str)
    dupes = frame.duplicated([SYSTEM_KEY, SPLIT_KEY, SEED_KEY], keep="first")
    if dupes.any():
        i = int(np.flatnonzero(dupes.to_numpy())[0])
        raise TableError(
            f"result row {i} ({_describe(rows[i])}) repeats an earlier run of the same system, "
            "split and seed"
        )
    return frame


def _describe(row: dict) -> str:
    return ", ".join(f"{k}={row[k]!r}" for k in (SYSTEM_KEY, SPLIT_KEY, SEED_KEY) if k in row)


def aggregate(rows: list[dict], metrics: list[str]) -> pd.DataFrame:
    """Aggregates runs into a systems x (metric, split, statistic) table.

    Args:
        rows: One dict per run with keys ``system``, ``split``, ``seed`` and every metric.
        metrics: The metric keys to tabulate, in column order.

    Returns:
        DataFrame indexed by system (first-seen order) with MultiIndex columns
        ``(metric, split, stat)``: for each split (first-seen order) ``mean``, ``std`` and
        ``seeds`` (runs found), then ``(metric, "mean", "mean")``, the mean of the split
        means (NaN when the system lacks one of the splits).

    Raises:
        TableError: A row missing a key or holding a non-number, or a repeated run.
    """
    frame = _check_rows(rows, metrics)
    systems = list(dict.fromkeys(frame[SYSTEM_KEY]))
    splits = list(dict.fromkeys(frame[SPLIT_KEY]))
    grouped = frame.groupby([SYSTEM_KEY, SPLIT_KEY], sort=False)
    columns: dict[tuple[str, str, str], pd.Series] = {}
    for metric in metrics:
        # (system, split) rows -> systems x (stat, split), missing pairs as NaN.
        stats = grouped[metric].agg(["mean", "std", "count"]).unstack(SPLIT_KEY)
        stats = stats.reindex(index=systems)
        for split in splits:
            columns[(metric, split, "mean")] = stats[("mean", split)]
            columns[(metric, split, "std")] = stats[("std", split)]
            columns[(metric, split, "seeds")] = stats[("count", split)].fillna(0).astype(int)
        # skipna=False: a system missing a split gets no overall mean rather than an
        # average over fewer splits than the others.
        split_means = pd.DataFrame({s: columns[(metric, s, "mean")] for s in splits})
        columns[(metric, OVERALL, "mean")] = split_means.mean(axis=1, skipna=False)
    table = pd.DataFrame(columns, index=pd.Index(systems, name=SYSTEM_KEY))
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["metric", "split", "stat"])
    return table


def _cell(mean: float, std: float | None, precision: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{precision}f}"
    if std is not None and not math.isnan(std):
        text += f" ± {std:.{precision}f}"
    return text


def to_markdown(table: pd.DataFrame, precision: int = 2) -> str:
    """Renders ``aggregate``'s table as Markdown: "mean ± std" per split, then the mean."""
    keys = list(dict.fromkeys((m, s) for m, s, _ in table.columns))
    header = [SYSTEM_KEY] + [f"{m} {s}" for m, s in keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system, row in table.iterrows():
        cells = [str(system)]
        for metric, split in keys:
            std = row.get((metric, split, "std")) if split != OVERALL else None
            cells.append(_cell(row[(metric, split, "mean")], std, precision))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, out_prefix: str | Path, precision: int = 2) -> tuple[Path, Path]:
    """Writes ``<out_prefix>.md`` (Markdown) and ``<out_prefix>.csv`` (every statistic).

    CSV columns are ``metric/split/stat`` with full precision.

    Returns:
        The Markdown and CSV paths.
    """
    out_prefix = Path(out_prefix)
    md_path = out_prefix.with_name(out_prefix.name + ".md")
    csv_path = out_prefix.with_name(out_prefix.name + ".csv")
    flat = df.copy()
    flat.columns = ["/".join(map(str, c)) for c in df.columns]
    atomic_write_text(md_path, to_markdown(df, precision))
    atomic_write_text(csv_path, flat.to_csv(index=True))
    return md_path, csv_path

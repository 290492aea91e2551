"""Results tables: per-split mean and std over seeds, then the mean over splits."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fpar.evaluation.tables import TableError, aggregate, to_markdown, write_table


def _rows():
    rows = [{"system": "baseline", "split": "fold1", "seed": s, "top1": v, "mca": v - 10}
            for s, v in enumerate([50.0, 52.0, 54.0])]
    rows += [{"system": "baseline", "split": "fold2", "seed": s, "top1": v, "mca": v - 10}
             for s, v in enumerate([40.0, 44.0])]
    rows += [{"system": "sparnet", "split": "fold2", "seed": 0, "top1": 70.0, "mca": 65.0},
             {"system": "sparnet", "split": "fold1", "seed": 0, "top1": 60.0, "mca": 55.0},
             {"system": "sparnet", "split": "fold1", "seed": 1, "top1": 62.0, "mca": 57.0}]
    return rows


def test_aggregate_statistics():
    table = aggregate(_rows(), ["top1", "mca"])
    assert list(table.index) == ["baseline", "sparnet"]
    base = table.loc["baseline"]
    assert base[("top1", "fold1", "mean")] == 52.0
    assert base[("top1", "fold1", "std")] == pytest.approx(2.0)  # sample std of 50, 52, 54
    assert base[("top1", "fold1", "seeds")] == 3
    assert base[("top1", "fold2", "std")] == pytest.approx(math.sqrt(8.0))
    assert base[("top1", "mean", "mean")] == pytest.approx((52.0 + 42.0) / 2)
    assert base[("mca", "mean", "mean")] == pytest.approx(37.0)
    spar = table.loc["sparnet"]
    assert spar[("top1", "fold1", "mean")] == 61.0
    assert math.isnan(spar[("top1", "fold2", "std")])  # one seed: no spread
    assert spar[("top1", "mean", "mean")] == pytest.approx(65.5)
    assert list(table.columns.get_level_values("metric").unique()) == ["top1", "mca"]


def test_a_system_missing_a_split_gets_no_overall_mean():
    rows = _rows() + [{"system": "tsn", "split": "fold1", "seed": 0, "top1": 30.0, "mca": 20.0}]
    table = aggregate(rows, ["top1"])
    assert table.loc["tsn", ("top1", "fold2", "seeds")] == 0
    assert math.isnan(table.loc["tsn", ("top1", "mean", "mean")])
    md = to_markdown(table)
    assert "| tsn | 30.00 | – | – |" in md


def test_markdown_and_csv(tmp_path):
    table = aggregate(_rows(), ["top1"])
    md_path, csv_path = write_table(table, tmp_path / "out" / "table1")
    lines = md_path.read_text().splitlines()
    assert lines[0] == "| system | top1 fold1 | top1 fold2 | top1 mean |"
    assert lines[2] == "| baseline | 52.00 ± 2.00 | 42.00 ± 2.83 | 47.00 |"
    assert lines[3] == "| sparnet | 61.00 ± 1.41 | 70.00 | 65.50 |"
    csv = pd.read_csv(csv_path, index_col=0)
    assert csv.loc["baseline", "top1/fold2/mean"] == 42.0
    assert csv.loc["sparnet", "top1/mean/mean"] == 65.5
    assert csv_path.name == "table1.csv" and md_path.name == "table1.md"


@pytest.mark.parametrize(
    "row, message",
    [
        ({"system": "x", "split": "a", "top1": 1.0}, "row 7 \\(system='x', split='a'\\) lacks seed"),
        ({"system": "x", "split": "a", "seed": 0}, "lacks top1"),
        ({"system": "x", "split": "a", "seed": 0, "top1": float("nan")}, "top1 = nan is not a finite number"),
        ({"system": "x", "split": "a", "seed": 0, "top1": "52"}, "top1 = '52' is not a finite number"),
        ({"system": "sparnet", "split": "fold1", "seed": 0, "top1": 1.0}, "row 7 .* repeats an earlier run"),
    ],
)
def test_bad_rows_are_named(row, message):
    with pytest.raises(TableError, match=message):
        aggregate(_rows()[:7] + [row], ["top1"])


def test_empty_input():
    with pytest.raises(TableError, match="no result rows"):
        aggregate([], ["top1"])

"""Report pieces on hand-made inputs: figures, page assembly, training log, notes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fpar.report import figures
from fpar.report.assemble import clip_sections, comparison_section, metrics_section
from fpar.report.collect import SplitResult, SplitSource, read_metrics_log
from fpar.report.page import Figure, Section, Table, render_page, write_page
from fpar.report.samples import ClipSample
from launcher.cli import main


def image(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_confusion_matrix_keeps_the_most_frequent_classes_readable(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.repeat(np.arange(5), 20), rng.integers(5, 300, 200)])
    preds = labels.copy()
    preds[::3] = 7
    small = figures.confusion_matrix(labels[:100], preds[:100], ["a", "b", "c", "d", "e"],
                                     tmp_path / "small.png", "five classes")
    big = figures.confusion_matrix(labels, preds, [], tmp_path / "big.png", "many", max_classes=12)
    h_small, h_big = image(small).shape[0], image(big).shape[0]
    # 12 shown classes, not ~300: the figure grows with the shown classes only.
    assert h_small < h_big < 2 * h_small
    bars = figures.per_class_accuracy(labels, preds, [], tmp_path / "acc.png", "acc",
                                      max_classes=12)
    assert image(bars).shape[1] < 1000


def test_figure_inputs_are_checked(tmp_path):
    frames = np.zeros((3, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="attention must be"):
        figures.attention_overlays(frames, np.zeros((2, 4, 4)), tmp_path / "a.png", "t")
    with pytest.raises(ValueError, match="predicted must be"):
        figures.motion_maps(frames, np.zeros((3, 4, 4)), np.zeros((3, 4)), tmp_path / "m.png", "t")
    with pytest.raises(ValueError, match="no labelled segments"):
        figures.per_class_accuracy(np.array([]), np.array([]), [], tmp_path / "p.png", "t")
    assert not list(tmp_path.iterdir())


def test_motion_overlay_paints_moving_cells_and_leaves_static_ones(tmp_path):
    frames = np.full((2, 64, 64, 3), 128, np.uint8)
    target = np.zeros((2, 4, 4))
    target[:, :2, :2] = 1.0  # top-left quarter moves
    path = figures.motion_maps(frames, target, np.zeros((2, 4, 4)), tmp_path / "m.png", "t")
    pixels = image(path).astype(int)
    grey = np.abs(pixels - 128).sum(-1) < 12
    # The painted target row has far more non-grey pixels than the all-static prediction row.
    rows = np.array_split(np.arange(pixels.shape[0]), 3)
    painted = [(~grey[r]).mean() for r in rows]
    assert painted[1] > painted[2] + 0.05


def test_training_log_keeps_last_record_and_reports_a_cut_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"kind": "step", "step": 1, "loss": 3.0}, {"kind": "step", "step": 2, "loss": 2.0},
               {"kind": "resume", "tag": "step00000001"},
               {"kind": "step", "step": 2, "loss": 1.5, "parts": {"loss_verb": 1.0}},
               {"kind": "epoch", "epoch": 0, "step": 2, "val": {"top1_verb": 0.5}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"kind": "step", "st')
    steps, epochs, problems = read_metrics_log(path)
    assert [(s["step"], s["loss"]) for s in steps] == [(1, 3.0), (2, 1.5)]
    assert epochs[0]["val"] == {"top1_verb": 0.5}
    assert len(problems) == 1 and "metrics.jsonl line 6" in problems[0]
    png = figures.training_curves(steps, epochs, tmp_path / "curves.png")
    assert image(png).std() > 5


def test_page_escapes_text_and_refuses_links_outside_its_folder(tmp_path):
    section = Section("<b>x</b>", notes=["a < b & c"],
                      tables=[Table(["k"], [[float("nan")], [1.23456]])])
    text = render_page("run <1>", [section])
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text
    assert "a &lt; b &amp; c" in text and "n/a" in text and "1.23" in text
    with pytest.raises(ValueError, match="inside the report folder"):
        render_page("t", [Section("s", figures=[Figure("../x.png", "c")])])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        write_page(tmp_path, "t", [Section("s", figures=[Figure("missing.png", "c")])])
    assert not (tmp_path / "index.html").exists()


def _result(name: str, flat: dict | None, note: str | None = None) -> SplitResult:
    return SplitResult(SplitSource(name, Path(f"scores_{name}.pt"), split=name),
                       metrics={} if flat else None, flat=flat, note=note)


def test_metrics_table_carries_exact_values_and_notes_unlabelled_splits():
    section = metrics_section([
        _result("s1", {"segments": 4.0, "verb_top1": 1 / 3}),
        _result("s2", {"segments": 8.0, "verb_top1": 0.125}),
        _result("test", None, note="split test: no metrics (no labels)")])
    table = section.tables[0]
    assert table.header == ["metric", "seen kitchens (S1)", "unseen kitchens (S2)"]
    assert table.rows == [["segments", 4, 8], ["verb_top1", 1 / 3, 0.125]]
    assert table.attrs[1][1] == {"split": "s1", "metric": "verb_top1", "value": repr(1 / 3)}
    assert section.notes == ["split test: no metrics (no labels)"]


def test_metrics_section_says_how_many_views_made_the_scores():
    multi = _result("s1", {"segments": 4.0})
    multi.views = {"clips": 10, "crops": 3, "views": 30, "aggregate": "logit"}
    section = metrics_section([multi, _result("s2", {"segments": 8.0})])
    assert section.notes == ["s1: scored from 30 views (10 clips x 3 crops, mean of logits)"]


def test_comparison_needs_two_labelled_splits(tmp_path):
    one = comparison_section("epic55", [_result("s1", {"verb_top1": 10.0})], tmp_path)
    assert not one.figures and "needs two or more" in one.notes[0]
    two = comparison_section("gtea61", [_result("a", {"top1": 50.0, "top5": 90.0}),
                                        _result("b", {"top1": 40.0, "top5": 80.0})], tmp_path)
    assert [f.file for f in two.figures] == ["split_comparison.png"]
    assert image(tmp_path / "split_comparison.png").std() > 5


def test_clip_figures_follow_what_the_model_returned(tmp_path):
    frames = np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    with_ms = ClipSample("s1", "12", frames, {"verb": 1, "noun": -1}, {"verb": 1, "noun": 0},
                         attention=None, fraction=np.zeros((3, 8, 8)),
                         ms_target=np.ones((3, 2, 2)), ms_pred=np.full((3, 2, 2), 0.3))
    att, ms = clip_sections("sparnet", [with_ms], {"verb": ["take", "put"]}, tmp_path, None)
    assert not att.figures and "sparnet applies no spatial attention" in att.notes[0]
    assert [f.file for f in ms.figures] == ["motion_s1_12.png"] and not ms.notes
    assert "true put" in ms.figures[0].caption and "predicted put 0" in ms.figures[0].caption
    att, ms = clip_sections("x", [], {}, tmp_path, "no clips were run (--samples 0)")
    assert att.notes == ms.notes == ["no clips were run (--samples 0)"]


def test_cli_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a run folder (no config.yaml)" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("model: {nme: sparnet}\n")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "config.yaml" in err and "nme" in err


def test_class_names_and_ids_are_drawn_literally(tmp_path):
    # Unbalanced or bad TeX in a name: parsed as math, matplotlib raised on it.
    names = ["$\\frac{$", "cost $5 or $6", "a_b^c", "100%"]
    labels, preds = np.array([0, 1, 2, 3, 0]), np.array([0, 2, 2, 3, 1])
    figures.per_class_accuracy(labels, preds, names, tmp_path / "acc.png", "split $x$")
    figures.confusion_matrix(labels, preds, names, tmp_path / "conf.png", "$\\undefined$")
    figures.split_comparison({"$a": {"top1": 1.0}, "b$": {"top1": 2.0}}, tmp_path / "cmp.png",
                             "$a vs b$")
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    figures.attention_overlays(frames, np.ones((2, 4, 4)), tmp_path / "att.png", "P01_01$\\x{$")
    for name in ("acc", "conf", "cmp", "att"):
        assert Image.open(tmp_path / f"{name}.png").size[0] > 100
    import matplotlib

    assert matplotlib.rcParams["text.parse_math"]  # only the report's figures draw literally

"""`fpar demo --scale tiny` end to end: every artefact it promises exists and is right."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from fpar.evaluation import load_scores
from shards.annotations import load_segments
from shards.schema import read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "demo", "--scale", "tiny",
                           "--out", str(out), "--workers", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_prints_the_comparison_table(demo):
    out, stdout = demo
    assert "| system | verb s1 | noun s1 | action s1 | verb s2 | noun s2 | action s2 |" in stdout
    assert "| sparnet |" in stdout and "| baseline |" in stdout
    summary = json.loads((out / "demo.json").read_text())
    assert summary["table"] in stdout


def test_shards_hold_one_sample_per_segment(demo):
    out, _ = demo
    for split in ("train", "s1", "s2"):
        segments = load_segments("epic55", out / "data" / "annotations", split)
        manifest = read_manifest(out / "shards" / split)
        assert manifest["num_samples"] == len(segments) > 0
        assert sum(s["samples"] for s in manifest["shards"]) == len(segments)
        assert not manifest["failures"]


def test_scores_metrics_and_submission(demo):
    out, _ = demo
    ann = out / "data" / "annotations"
    for system in ("sparnet", "baseline"):
        run = out / "runs" / system
        metrics = json.loads((run / "metrics.json").read_text())["splits"]
        for split in ("s1", "s2"):
            ids, outputs = load_scores(run / f"scores_{split}.pt")
            segments = load_segments("epic55", ann, split)
            assert sorted(ids) == sorted(segments["segment_id"])
            assert outputs["verb"].shape == (len(ids), 125)
            assert outputs["noun"].shape == (len(ids), 352)
            assert metrics[split]["segments"] == len(segments)
            for task in ("verb", "noun", "action"):
                assert 0.0 <= metrics[split][task]["top1"] <= 100.0
        with zipfile.ZipFile(out / f"submission_{system}.zip") as archive:
            assert sorted(archive.namelist()) == ["seen.json", "unseen.json"]
            for name, split in (("seen.json", "s1"), ("unseen.json", "s2")):
                doc = json.loads(archive.read(name))
                assert doc["version"] == "0.1" and doc["challenge"] == "action_recognition"
                wanted = set(load_segments("epic55", ann, split)["segment_id"])
                assert set(doc["results"]) == wanted
                first = next(iter(doc["results"].values()))
                assert len(first["verb"]) == 125 and len(first["noun"]) == 352
                assert len(first["action"]) == 100


def test_report_pages_link_their_figures(demo):
    out, _ = demo
    for system in ("sparnet", "baseline"):
        page = out / "runs" / system / "report" / "index.html"
        html = page.read_text()
        pngs = sorted(p.name for p in page.parent.glob("*.png"))
        assert pngs and all(name in html for name in pngs)
    sparnet_html = (out / "runs" / "sparnet" / "report" / "index.html").read_text()
    assert "motion" in sparnet_html.lower()

"""``fpar report`` on finished runs trained on synthetic kitchens (end to end, CPU).

One synthetic EPIC-55 dataset is generated and sharded (train, S1, S2); a SparNet + CAM
run (attention and MS head) and a baseline run (neither) are trained in their own
processes (DeepSpeed sets its process group up once per interpreter), then reported.
"""

from __future__ import annotations

import html.parser
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fpar.evaluation import evaluate, flatten_metrics, load_scores
from launcher.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 2
SPLITS = ("s1", "s2")
# Frames resized to a 64 px short side: big enough for the 64 px crops of tiny_cpu.yaml.
SYNTH = {"width": 128, "height": 72, "min_seconds": 0.6, "max_seconds": 1.0, "fps": 12.0,
         "segments_per_video": 4}


class PageParser(html.parser.HTMLParser):
    """Collects image sources, links, metric cells and the text of each section."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.cells: dict[tuple[str, str], tuple[str, str]] = {}
        self.sections: dict[str, str] = {}
        self._cell: dict | None = None
        self._section: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "section":
            self._section = attrs.get("id")
            self.sections[self._section] = ""
        elif tag == "td" and "data-metric" in attrs:
            self._cell = {**attrs, "text": ""}

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            key = (self._cell["data-split"], self._cell["data-metric"])
            self.cells[key] = (self._cell["data-value"], self._cell["text"])
            self._cell = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._section is not None:
            self.sections[self._section] += data


def parse(page: Path) -> PageParser:
    parser = PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _build_shards(synth: Path, out: Path) -> dict[str, Path]:
    from shards.build import BuildConfig, build_shards

    folders = {}
    for split in ("train", *SPLITS):
        folders[split] = out / split
        report = build_shards(BuildConfig(
            format="epic55", root=str(synth / "videos"), annotations=str(synth / "annotations"),
            split=split, out=str(folders[split]), frames=4, short_side=64), progress=False)
        assert report.ok, report.failures[:3]
    return folders


def _train(run_dir: Path, model: str, shards: dict[str, Path]) -> None:
    lr = ", ".join(f"{g}: 0.003" for g in ("default", "backbone", "backbone_layer4",
                                            "convlstm", "classifier", "ms_head", "cam_fc"))
    proc = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "train", "configs/experiments/tiny_cpu.yaml",
         f"model.name={model}", f"data.train_shards={shards['train']}",
         f"data.val_shards={shards['s1']}",
         f"eval.test_splits={{s1: {shards['s1']}, s2: {shards['s2']}}}",
         "train.stages=[{epochs: 2}]", f"optim.lr={{{lr}}}", "--run-dir", str(run_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{model name: finished run folder}, plus the synthetic annotation folder."""
    from shards.synth import generate

    base = tmp_path_factory.mktemp("report")
    synth = generate("epic55", base / "synth", 3, 24, seed=1, **SYNTH)
    shards = _build_shards(synth, base / "shards")
    out = {"annotations": synth / "annotations"}
    for model in ("sparnet_cam", "baseline"):
        out[model] = base / model
        _train(out[model], model, shards)
    return out


@pytest.fixture(scope="module")
def reports(runs):
    """The page of each run: the CAM run at its default place, the baseline under --out."""
    assert main(["report", str(runs["sparnet_cam"]), "--samples", str(SAMPLES)]) == 0
    other = runs["baseline"].parent / "baseline_page"
    assert main(["report", str(runs["baseline"]), "--out", str(other),
                 "--samples", str(SAMPLES)]) == 0
    return {"sparnet_cam": runs["sparnet_cam"] / "report" / "index.html",
            "baseline": other / "index.html"}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sparnet_cam", "baseline"])
def test_page_links_exactly_its_figures_and_they_are_real_images(reports, model):
    page = reports[model]
    parsed = parse(page)
    pngs = {p.name for p in page.parent.glob("*.png")}
    figure_links = {link for link in parsed.links if not link.startswith("#")}
    assert set(parsed.images) == pngs and figure_links == pngs
    assert not any(src.startswith(("/", "http")) for src in parsed.images)
    for name in pngs:
        with Image.open(page.parent / name) as img:
            img.verify()
        with Image.open(page.parent / name) as img:
            pixels = np.asarray(img.convert("L"), dtype=float)
            assert img.width >= 300 and img.height >= 200, name
        assert pixels.std() > 5, f"{name} is blank"
    expected = {"training_curves.png", "split_comparison.png"} | {
        f"{kind}_{split}_{task}.png" for kind in ("per_class", "confusion")
        for split in SPLITS for task in ("verb", "noun")}
    assert expected <= pngs


@pytest.mark.slow
def test_page_metrics_equal_the_official_evaluation_of_the_scores(runs, reports):
    cells = parse(reports["sparnet_cam"]).cells
    nonzero = 0
    for split in SPLITS:
        ids, outputs = load_scores(runs["sparnet_cam"] / f"scores_{split}.pt")
        result = evaluate("epic55", ids, outputs, runs["annotations"], splits=[split])
        flat = flatten_metrics(result)[split]
        assert {m for s, m in cells if s == split} == set(flat)
        for metric, value in flat.items():
            shown, text = cells[(split, metric)]
            if math.isnan(value):
                assert shown == "nan" and text == "n/a"
            else:
                assert float(shown) == value and float(text) == pytest.approx(value, abs=0.005)
                nonzero += value != 0
    assert nonzero >= 4  # segment counts and class counts at least: the check is not vacuous


@pytest.mark.slow
def test_attention_and_motion_figures_follow_the_model(reports):
    cam = reports["sparnet_cam"].parent
    for kind in ("attention", "motion"):
        for split in SPLITS:
            assert len(list(cam.glob(f"{kind}_{split}_*.png"))) == SAMPLES
    cam_sections = parse(reports["sparnet_cam"]).sections
    assert "no spatial attention" not in cam_sections["attention"]
    base = reports["baseline"].parent
    assert not list(base.glob("attention_*.png")) and not list(base.glob("motion_*.png"))
    sections = parse(reports["baseline"]).sections
    assert "baseline applies no spatial attention" in sections["attention"]
    assert "baseline has no motion-segmentation head" in sections["motion"]
    assert not (reports["baseline"].parent.parent / "baseline" / "report").exists()
    # The MS score table: the head's F1 as metrics.json has it; the baseline has none.
    metrics = json.loads((reports["sparnet_cam"].parents[1] / "metrics.json").read_text())
    for split in SPLITS:
        ms = metrics["splits"][split]["ms"]
        assert f"{ms['head']['f1']:.3f}" in cam_sections["motion"]
        assert ms["all_static"]["f1"] == 0.0 and 0.0 <= ms["train_frequency"]["f1"] <= 1.0
        assert f"{ms['head_beyond_prior']['f1']:.3f}" in cam_sections["motion"]
    assert "MS score" in cam_sections["motion"] and "MS score" in sections["motion"]
    assert "head F1" in sections["motion"]
    assert "head F1 where the training frequency says static" in cam_sections["motion"]


@pytest.mark.slow
def test_report_without_clips_or_annotations_says_why(runs, tmp_path):
    out = tmp_path / "page"
    assert main(["report", str(runs["sparnet_cam"]), "--out", str(out), "--samples", "0",
                 "--annotations", str(tmp_path / "nowhere")]) == 0
    sections = parse(out / "index.html").sections
    assert "--samples 0" in sections["attention"] and "--samples 0" in sections["motion"]
    assert "no metrics" in sections["metrics"] and "nowhere" in sections["metrics"]
    assert "a comparison needs two or more" in sections["comparison"]
    assert {p.name for p in out.glob("*.png")} == {"training_curves.png"}

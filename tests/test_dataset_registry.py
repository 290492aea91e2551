"""The dataset registry: every registered dataset is whole, and a new one is one module.

The toy dataset below is registered here and nowhere else: the end-to-end test points
fpar's processes at this module with ``FPAR_DATASETS`` and runs it through
``fpar shards build``, ``train``, ``eval`` and ``metrics``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fpar.config import load_yaml
from fpar.evaluation.metric_sets import METRIC_SETS
from fpar.evaluation.submission import SUBMISSION_FORMATS
from launcher.protocols import paired_splits
from shards.annotations.table import SEGMENT_COLUMNS, AnnotationError, require_file
from shards.datasets import (
    Dataset,
    UnknownDataset,
    dataset_names,
    get_dataset,
    register_dataset,
    unregister_dataset,
)
from shards.datasets.registry import MODULES_VARIABLE
from shards.synth.plan import Options, make_plan, synth_layout

REPO = Path(__file__).resolve().parents[1]
BUILT_IN = ("epic55", "epic100", "gtea61", "egtea")
TOY = "toykitchen"


class ToyReader:
    """Two classes (a square moving left or right); ``train`` is labelled, ``test`` not."""

    SPLITS = ("train", "test")
    NUM_CLASSES = {"class": 2}
    FILES = {"train": "toy_train.csv", "test": "toy_test.csv"}

    @classmethod
    def load(cls, source: Path, split: str, require_labels: bool = False) -> pd.DataFrame:
        if split not in cls.SPLITS:
            raise ValueError(f"{TOY} has no split {split!r}")
        path = require_file(source, cls.FILES[split])
        rows = pd.read_csv(path, dtype={"clip": str, "video": str})
        labelled = "label" in rows.columns
        if require_labels and not labelled:
            raise AnnotationError(path, "this split has no labels")
        fps = 30.0
        return pd.DataFrame({
            "segment_id": rows["clip"], "video_id": rows["video"], "participant": "P01",
            "start_frame": (rows["start"] * fps).astype(int) + 1,
            "stop_frame": (rows["stop"] * fps).astype(int),
            "start_time": rows["start"].astype(float), "stop_time": rows["stop"].astype(float),
            "fps": fps, "verb_class": -1, "noun_class": -1,
            "class_id": rows["label"].astype(int) if labelled else -1, "split": split,
        })[SEGMENT_COLUMNS]

    @classmethod
    def available_splits(cls, source: Path) -> list[str]:
        return [s for s in cls.SPLITS if (Path(source) / cls.FILES[s]).is_file()]

    @classmethod
    def class_names(cls, source: Path) -> dict[str, list[str]]:
        return {"class": ["left", "right"]}


if TOY not in dataset_names():
    register_dataset(Dataset(name=TOY, title="Toy kitchen", reader=ToyReader, labels=("class",),
                             tasks=("class",), eval_splits=("train",),
                             split_files={s: (f,) for s, f in ToyReader.FILES.items()}))


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_registered_dataset_is_whole(name):
    dataset = get_dataset(name)
    assert dataset.name == name and dataset.title
    assert set(dataset.eval_splits) <= set(dataset.splits)
    assert set(dataset.split_files) <= set(dataset.splits)
    assert set(dataset.tasks) <= set(dataset.labels) <= set(dataset.num_classes)
    assert dataset.metrics in METRIC_SETS
    assert dataset.submission is None or dataset.submission in SUBMISSION_FORMATS
    if dataset.submission is not None:
        assert set(SUBMISSION_FORMATS[dataset.submission].files) <= set(dataset.splits)
    if dataset.action_noun_stride is not None:
        assert dataset.action_noun_stride >= dataset.num_classes["noun"]
    config = load_yaml(REPO / dataset.default_config)
    assert config["data"]["format"] == name
    assert config["model"]["num_classes"] == {t: dataset.num_classes[t] for t in dataset.tasks}
    for protocol in dataset.protocols:  # each names train_<x>/test_<x> pairs it has
        assert paired_splits(name, protocol.pattern)
    # Its synthetic writer plans segments in its splits, with its labels.
    plan = make_plan(name, 4, 24, 0, Options())
    assert plan.fmt == name and sum(len(v.segments) for v in plan.videos) >= 4
    assert synth_layout(name).default_fps > 0


def test_an_unknown_dataset_names_the_closest():
    with pytest.raises(UnknownDataset, match="did you mean 'epic100'"):
        get_dataset("epic10")


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset(get_dataset("epic55"))


def test_a_dataset_without_a_synthetic_writer_is_refused_by_synth():
    assert get_dataset(TOY).synth is None
    with pytest.raises(ValueError, match="no synthetic writer"):
        make_plan(TOY, 1, 2, 0, Options())


def test_a_config_naming_an_unknown_dataset_is_refused(tmp_path):
    from fpar.config import ConfigError
    from fpar.experiment import load_experiment

    config = tmp_path / "x.yaml"
    config.write_text(f"_base_: [{REPO / 'configs/experiments/tiny_cpu.yaml'}]\ndata: {{format: epic56}}\n")
    with pytest.raises(ConfigError, match="did you mean 'epic55'"):
        load_experiment(config)


def test_a_dataset_module_that_cannot_be_imported_is_a_clear_error():
    env = dict(os.environ, **{MODULES_VARIABLE: "no_such_dataset_module"})
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "models"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{MODULES_VARIABLE}: cannot import dataset module 'no_such_dataset_module'" in proc.stderr


def test_a_registered_dataset_can_be_removed():
    register_dataset(Dataset(name="gone", title="Gone", reader=ToyReader, labels=("class",),
                             tasks=("class",), eval_splits=("train",)))
    assert "gone" in dataset_names()
    unregister_dataset("gone")
    assert "gone" not in dataset_names()


def _write_toy(folder: Path) -> tuple[Path, Path]:
    """Six short videos, each holding two clips; every clip's class is its square's motion."""
    from shards.toyvideo import make_toy_video

    videos, annotations = folder / "videos", folder / "annotations"
    videos.mkdir(parents=True)
    annotations.mkdir()
    rows = {"train": [], "test": []}
    for k in range(6):
        label = k % 2
        make_toy_video(videos / f"v{k}.mp4", num_frames=60, seed=k,
                       speed=((2.5 if label else -2.5), 0.0))
        split = "test" if k >= 4 else "train"
        for j, (start, stop) in enumerate(((0.1, 0.9), (1.0, 1.9))):
            rows[split].append({"clip": f"v{k}_{j}", "video": f"v{k}", "start": start,
                                "stop": stop, "label": label})
    pd.DataFrame(rows["train"]).to_csv(annotations / ToyReader.FILES["train"], index=False)
    pd.DataFrame(rows["test"]).drop(columns="label").to_csv(annotations / ToyReader.FILES["test"], index=False)
    return videos, annotations


def _fpar(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
               **{MODULES_VARIABLE: Path(__file__).stem})
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_a_dataset_registered_in_one_module_runs_from_shards_to_metrics(tmp_path):
    videos, annotations = _write_toy(tmp_path)
    shards = tmp_path / "shards"
    for split in ToyReader.SPLITS:
        _fpar("shards", "build", "--format", TOY, "--root", str(videos), "--annotations",
              str(annotations), "--split", split, "--out", str(shards / split), "--frames", "4",
              "--short-side", "96", "--no-progress")
        manifest = json.loads((shards / split / "manifest.json").read_text())
        assert manifest["dataset"] == TOY and manifest["num_samples"] == (8 if split == "train" else 4)
    run = tmp_path / "run"
    _fpar("train", str(REPO / "configs/experiments/tiny_cpu.yaml"), f"data.format={TOY}",
          "data.mirror_pairs={}", "model.num_classes={class: 2}", f"data.train_shards={shards / 'train'}",
          f"eval.test_splits={{train: {shards / 'train'}, test: {shards / 'test'}}}",
          "train.stages=[{epochs: 1}]", "--run-dir", str(run))
    for split in ToyReader.SPLITS:
        _fpar("eval", str(run), "--split", split)
    ids = {s: set(ToyReader.load(annotations, s)["segment_id"]) for s in ToyReader.SPLITS}
    from fpar.evaluation.scores import load_scores

    for split in ToyReader.SPLITS:
        scored, outputs = load_scores(run / f"scores_{split}.pt")
        assert set(scored) == ids[split] and outputs["class"].shape == (len(ids[split]), 2)
    # The labelled split is scored with the dataset's metrics; the other is refused by name.
    proc = _fpar("metrics", str(run / "scores_train.pt"), "--format", TOY, "--annotations",
                 str(annotations), "--json")
    result = json.loads(proc.stdout)
    assert result["format"] == TOY and result["splits"]["train"]["segments"] == 8
    assert 0.0 <= result["splits"]["train"]["top1"] <= 100.0
    refused = _fpar("metrics", str(run / "scores_test.pt"), "--format", TOY, "--annotations",
                    str(annotations), "--split", "test", check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "toy_test.csv" in refused.stderr and "label" in refused.stderr
    scores = np.asarray(load_scores(run / "scores_train.pt")[1]["class"])
    assert np.isfinite(scores).all()

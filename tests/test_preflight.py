"""What a run checks before its first step: shard folders, labels, weights, precision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from fpar.config import ConfigError
from fpar.engine.deepspeed_setup import resolve_precision
from fpar.preflight import check_experiment
from fpar.run_setup import resolve_config
from fpar.train import run
from launcher.cli import main as fpar_main
from shards.files import atomic_write_json
from shards.schema import MANIFEST_NAME, READABLE_VERSIONS, SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "experiments" / "tiny_cpu.yaml")


def shard_folder(path: Path, dataset: str = "epic55", version: int = SCHEMA_VERSION) -> Path:
    """A folder whose manifest passes for ``dataset`` (its tars are never opened here)."""
    path.mkdir(parents=True)
    atomic_write_json(path / MANIFEST_NAME, {
        "schema_version": version, "dataset": dataset, "split": "train",
        "params": {"flow": False}, "shards": [{"name": "x-000000.tar", "samples": 8, "bytes": 1,
                                                "sha256": ""}],
        "num_samples": 8, "failures": [], "num_segments": 8})
    return path


@pytest.fixture
def folders(tmp_path) -> dict[str, Path]:
    return {"train": shard_folder(tmp_path / "train"), "s1": shard_folder(tmp_path / "s1"),
            "missing": tmp_path / "nowhere" / "s2"}


def overrides(folders: dict[str, Path], s2: Path) -> list[str]:
    return [f"data.train_shards={folders['train']}",
            f"eval.test_splits={{s1: {folders['s1']}, s2: {s2}}}"]


def test_missing_test_split_stops_the_run_before_its_first_step(folders, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        run(TINY, overrides(folders, folders["missing"]), run_dir)
    assert str(err.value).startswith(f"eval.test_splits.s2: {folders['missing']}: no such shard")
    assert not run_dir.exists()  # no config, no log, no step, no checkpoint


def test_cli_reports_one_line_without_traceback(folders, tmp_path, capsys):
    code = fpar_main(["train", TINY, *overrides(folders, folders["missing"]),
                      "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"fpar train: error: eval.test_splits.s2: {folders['missing']}: no such shard folder "
        f"(write it with `fpar shards build ... --out {folders['missing']}`)"]
    assert not (tmp_path / "run").exists()


def test_folder_without_manifest_of_another_dataset_or_schema(folders, tmp_path):
    half_built = tmp_path / "half"
    half_built.mkdir()
    cases = {
        half_built: r"eval.test_splits.s2: .*half/manifest.json: no manifest",
        shard_folder(tmp_path / "gtea", dataset="gtea61"):
            r"eval.test_splits.s2: .*gtea: holds gtea61 shards, but data.format is epic55",
        shard_folder(tmp_path / "old", version=min(READABLE_VERSIONS) - 1):
            rf"eval.test_splits.s2: .*old/manifest.json: .*version {min(READABLE_VERSIONS) - 1}.*rebuild",
    }
    for s2, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            check_experiment(resolve_config(TINY, overrides(folders, s2), None))
    cfg = resolve_config(TINY, overrides(folders, folders["s1"]), None)
    check_experiment(cfg)  # every folder fine: no error
    bad = resolve_config(TINY, [*overrides(folders, folders["s1"]), "data.labels=[class]"], None)
    with pytest.raises(ConfigError, match=r"model.num_classes: heads \['verb', 'noun'\] have no"):
        check_experiment(bad)
    wide = resolve_config(TINY, [*overrides(folders, folders["s1"]),
                                 "data.mirror_pairs={verb: [[6, 700]]}"], None)
    with pytest.raises(ConfigError, match=r"data.mirror_pairs.verb: classes \[700\]"):
        check_experiment(wide)


def test_auto_precision_resolves_per_device(monkeypatch):
    assert resolve_precision("auto", cuda_available=False) == "fp32"
    assert resolve_precision("auto", cuda_available=True, bf16_supported=True) == "bf16"
    assert resolve_precision("auto", cuda_available=True, bf16_supported=False) == "fp16"
    assert resolve_precision("fp16", cuda_available=False) == "fp16"  # refused later
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_config(TINY, [], None).train.precision == "fp32"
    paper = REPO / "configs" / "experiments" / "epic55_sparnet_conv5.yaml"
    assert yaml.safe_load((REPO / "configs" / "models" / "sparnet.yaml").read_text())[
        "train"]["precision"] == "auto"
    assert resolve_config(paper, [], None).train.precision == "fp32"
